"""The benchmark runs and prints its table (its timings are measured, never asserted)."""

from dni_utils import bench


def test_bench_prints_ratios_and_flops(capsys):
    assert bench.main(["--depth", "1", "--width", "8", "--batch", "8", "--rounds", "1", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "dni (linear synth)" in out and "GFLOP/step" in out and "target: DNI (linear synth) step <= 1.3x" in out


def test_a_linear_synthesizer_adds_two_products_per_interface():
    f = bench.flops(depth=2, width=16, batch=4)
    # Per interface, the synthesizer's forward and weight-gradient products: 2 x (2 B W W) FLOPs.
    assert f["dni (linear synth)"] - f["bprop"] == 2 * 2 * (2 * 4 * 16 * 16)
