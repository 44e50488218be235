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
                    "--group-episodes", "1", "--tables", "copy", "grouped-copy"])
    out = capsys.readouterr().out
    assert "before" in out and "fused Adam" in out and "2 processes" in out
    assert "one by one" in out and "grouped" in out and "ratio" in out
    assert all(label in out for label in ("BPTT", "DNI", "DNI + Aux")) and "where a DNI batch's time goes" in out
    assert "language-model" not in out and "two-timescale" not in out


def test_the_copy_bench_prints_the_grouped_language_model_and_two_timescale_tables(capsys):
    import pytest

    from dni_utils.tools import copybench

    copybench.main(["--tables", "grouped-lm", "grouped-timescales", "--lm-runs", "1", "2", "--lm-chunks", "1",
                    "--lm-hidden", "8", "--lm-batch", "4", "--ts-runs", "2", "--ts-windows", "1"])
    out = capsys.readouterr().out
    assert "R DNI language-model runs at sizes (LSTM 8, batch 4, T = 8" in out
    assert "R cDNI two-timescale runs at notebook 07's paper sizes (encoder 256, LSTMs 128 and 128" in out
    assert out.count("ratio") == 2 and len([line for line in out.splitlines() if line.endswith("x")]) == 3
    with pytest.raises(ValueError, match=r"tables=\['lm'\] is invalid"):
        copybench.main(["--tables", "lm"])
