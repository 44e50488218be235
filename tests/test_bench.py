"""The benchmark runs and prints its table (its timings are measured, never asserted)."""

from dni_utils.tools import bench


def test_bench_prints_ratios_and_flops(capsys):
    assert bench.main(["--depth", "1", "--width", "8", "--batch", "8", "--rounds", "1", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "dni (linear synth)" in out and "GFLOP/step" in out and "target: DNI (linear synth) step <= 1.3x" in out


def test_a_linear_synthesizer_adds_two_products_per_interface():
    f = bench.flops(depth=2, width=16, batch=4)
    # Per interface, the synthesizer's forward and weight-gradient products: 2 x (2 B W W) FLOPs.
    assert f["dni (linear synth)"] - f["bprop"] == 2 * 2 * (2 * 4 * 16 * 16)


def test_the_copy_bench_prints_every_set_up_and_where_the_time_goes(capsys):
    from dni_utils.tools import copybench

    copybench.main(["--length", "2", "--hidden", "8", "--batch", "4", "--episodes", "2", "--runs", "1", "2",
                    "--group-episodes", "1"])
    out = capsys.readouterr().out
    assert "before" in out and "fused Adam" in out and "2 processes" in out
    assert "one by one" in out and "grouped" in out and "ratio" in out
    assert all(label in out for label in ("BPTT", "DNI", "DNI + Aux")) and "where a DNI batch's time goes" in out
