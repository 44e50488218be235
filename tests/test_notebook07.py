"""Notebook 07 (two networks at two timescales): determinism and clean failure on bad parameters.

(Its own cells, checks included, run under nbval at the smoke profile: `make test`.)
"""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NB07 = ROOT / "notebooks" / "07_two_timescales.ipynb"


def test_two_smoke_runs_with_the_same_seeds_write_identical_results(same_results_for_any_workers, tmp_path):
    a = same_results_for_any_workers(NB07, tmp_path, methods=["bptt", "dni"])
    result = json.loads(a.read_text())
    assert result["data"]["reduced"] and set(result["claims"]) == {
        f"dni_{c}_at_T{t}" for c in ("reaches_target_sooner_than_bptt", "within_margin_of_bptt") for t in (2, 4)}
    assert result["runs"]["bptt-T4-seed0"]["timeline"]["A"] == [3, 7, 11]
    assert sorted(p.name for p in (tmp_path / "a" / "figures").iterdir()) == [
        "07_two_timescales_curves.smoke.pdf", "07_two_timescales_curves.smoke.png",
        "07_two_timescales_updates.smoke.pdf", "07_two_timescales_updates.smoke.png"]


def test_grouped_runs_are_recorded_as_such(run_notebook, tmp_path):
    # two seeds of one (method, T) cell train as one group (the numbers of a grouped run are compared
    # with its ungrouped run's in tests/test_grouped_timescales.py)
    params = dict(methods=["cdni"], periods=[4], seeds=[0, 1], workers=1)
    result = json.loads(run_notebook(NB07, tmp_path, group_runs="on", **params).read_text())
    assert result["params"]["group_runs"] == "on"
    assert "2 runs to train, 24 training steps in all, on cpu with 1 process in 1 groups of runs that differ only in " \
           "their seed" in (tmp_path / "printed.txt").read_text()
    assert sorted(result["runs"]) == ["cdni-T4-seed0", "cdni-T4-seed1"]


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(dataset="cifar10"), "dataset='cifar10' is unknown here"),
        (dict(methods=["bptt", "rtrl"]), "methods=['bptt', 'rtrl'] is invalid"),
        (dict(periods=[0]), "periods=[0] is invalid"),
        (dict(periods=[5]), "ticks=48 is invalid: expected a multiple of the period T=5"),
        (dict(group_runs="maybe"), "group_runs='maybe' is unknown: expected one of ('auto', 'on', 'off')"),
    ],
)
def test_bad_parameters_fail_clearly_and_leave_nothing_behind(fails_cleanly, tmp_path, params, message):
    fails_cleanly(NB07, tmp_path, message, **params)


def test_missing_data_offline_fails_with_the_instructions(fails_cleanly, tmp_path, monkeypatch):
    monkeypatch.setenv("DNI_OFFLINE", "1")
    monkeypatch.setenv("DNI_DATA_DIR", str(tmp_path / "empty"))
    fails_cleanly(NB07, tmp_path, "DNI_OFFLINE is set", dataset="mnist")


def test_a_dry_run_caps_every_run_records_the_cap_and_asserts_no_claim(run_notebook, tmp_path):
    out = run_notebook(NB07, tmp_path, methods=["bptt", "cdni"], periods=[4], max_steps=3, device="cpu")
    result = json.loads(out.read_text())
    assert result["params"]["max_steps"] == 3 and result["environment"]["device"] == "cpu"
    assert {k: r["history"][-1]["tick"] for k, r in result["runs"].items()} == {"bptt-T4-seed0": 12, "cdni-T4-seed0": 12}
    assert "dry run (max_steps=3): the claims are not asserted" in (tmp_path / "printed.txt").read_text()


def test_a_bad_device_or_step_cap_fails_clearly(fails_cleanly, tmp_path):
    fails_cleanly(NB07, tmp_path / "a", "device='tpu' is unknown", device="tpu")
    fails_cleanly(NB07, tmp_path / "b", "max_steps=-1 is invalid", max_steps=-1)
