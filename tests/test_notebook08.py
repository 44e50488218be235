"""Notebook 08 (decoupled training across processes): determinism and clean failure on bad parameters.

(Its own cells, checks included, run under nbval at the smoke profile: `make test`.)
"""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NB08 = ROOT / "notebooks" / "08_parallel_decoupled.ipynb"


def test_two_smoke_runs_write_identical_results_and_no_timing(run_notebook, tmp_path):
    paths = [run_notebook(NB08, tmp_path / name, methods=["bprop", "dni"]) for name in ("a", "b")]
    a, b = (p.read_bytes() for p in paths)
    assert a == b
    result = json.loads(a)
    assert set(result["runs"]) == {"bprop-seed0", "dni-seed0"}
    assert set(result["claims"]) == {"dni_error_within_1_point_of_bprop"}
    assert "seconds" not in json.dumps(result["runs"]) and "elapsed" not in json.dumps(result["runs"])
    assert sorted(p.name for p in (tmp_path / "a" / "figures").iterdir()) == [
        "08_parallel_decoupled_curves.smoke.pdf", "08_parallel_decoupled_curves.smoke.png",
        "08_parallel_decoupled_wallclock.smoke.pdf", "08_parallel_decoupled_wallclock.smoke.png"]


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
