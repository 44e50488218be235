"""Notebook 08 (decoupled training across processes): determinism and clean failure on bad parameters.

(Its own cells, checks included, run under nbval at the smoke profile: `make test`.)
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NB08 = ROOT / "notebooks" / "08_parallel_decoupled.ipynb"


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(dataset="cifar10"), "dataset='cifar10' is unknown here"),
        (dict(methods=["bprop", "hogwild"]), "methods=['bprop', 'hogwild'] is invalid"),
        (dict(steps=5), "steps=5 is invalid for gpipe: expected a multiple of in_flight=2"),
        (dict(stages=9), "stages=9 is invalid: expected at most depth=4"),
    ],
)
def test_bad_parameters_fail_clearly_and_leave_nothing_behind(fails_cleanly, tmp_path, params, message):
    fails_cleanly(NB08, tmp_path, message, **params)


def test_missing_data_offline_fails_with_the_instructions(fails_cleanly, tmp_path, monkeypatch):
    monkeypatch.setenv("DNI_OFFLINE", "1")
    monkeypatch.setenv("DNI_DATA_DIR", str(tmp_path / "empty"))
    fails_cleanly(NB08, tmp_path, "DNI_OFFLINE is set", dataset="mnist")


def test_two_dry_runs_write_identical_results_record_the_cap_print_the_estimate_and_no_timing(run_notebook, tmp_path):
    """One pair of notebook runs for determinism and the dry run: both capped at 3 batches (each run
    spawns its stages twice, for the estimate and for the run, so a notebook run costs seconds)."""
    paths = [run_notebook(NB08, tmp_path / name, methods=["bprop", "dni"], max_steps=3, device="cpu")
             for name in ("a", "b")]
    a, b = (p.read_bytes() for p in paths)
    assert a == b
    result = json.loads(a)
    assert set(result["runs"]) == {"bprop-seed0", "dni-seed0"}
    assert set(result["claims"]) == {"dni_error_within_1_point_of_bprop"}
    assert "seconds" not in json.dumps(result["runs"]) and "elapsed" not in json.dumps(result["runs"])
    assert sorted(p.name for p in (tmp_path / "a" / "figures").iterdir()) == [
        "08_parallel_decoupled_curves.smoke.pdf", "08_parallel_decoupled_curves.smoke.png",
        "08_parallel_decoupled_wallclock.smoke.pdf", "08_parallel_decoupled_wallclock.smoke.png"]
    assert result["params"]["max_steps"] == 3 and result["environment"]["device"] == "cpu"
    assert {r["config"]["steps"] for r in result["runs"].values()} == {2}  # 3, rounded down to in_flight=2
    printed = (tmp_path / "a" / "printed.txt").read_text()
    assert "runs: 2 runs to train, 4 batches in all, on cpu, one after another; every run capped at 3 batches" in printed
    estimates = [line for line in printed.splitlines() if line.startswith("wall-clock: estimated")]
    assert len(estimates) == 2 and "uncapped (20 batches in all)" in estimates[1]
    assert all(re.fullmatch(r"wall-clock: (.*) in [0-9.,]+ s( \([^()]*\))?", line) for line in estimates)
    assert "dry run (max_steps=3): the claims are not asserted" in printed


def test_an_unknown_device_fails_clearly_and_leaves_nothing_behind(fails_cleanly, tmp_path):
    fails_cleanly(NB08, tmp_path, "device='tpu' is unknown", device="tpu")
