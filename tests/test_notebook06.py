"""Notebook 06 (Penn Treebank characters): determinism and clean failure on bad parameters.

(Its own cells, checks included, run under nbval at the smoke profile: `make test`.)
"""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NB06 = ROOT / "notebooks" / "06_ptb_char.ipynb"


def test_two_smoke_runs_with_the_same_seeds_write_identical_results(same_results_for_any_workers, tmp_path):
    a = same_results_for_any_workers(NB06, tmp_path, methods=["bptt", "dni"])
    result = json.loads(a.read_text())
    assert result["data"]["synthetic"] and "seconds" not in a.read_text()
    assert {r["setting"] for r in result["rows"]} >= {"generated Markov text, T=2", "generated Markov text, T=8"}
    assert sorted(p.name for p in (tmp_path / "a" / "figures").iterdir()) == [
        "06_ptb_char_curves.smoke.pdf", "06_ptb_char_curves.smoke.png",
        "06_ptb_char_wallclock.smoke.pdf", "06_ptb_char_wallclock.smoke.png"]


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(dataset="wiki"), "dataset='wiki' is unknown"),
        (dict(methods=["bptt", "rtrl"]), "methods=['bptt', 'rtrl'] is invalid"),
        (dict(truncations=[0]), "truncations=[0] is invalid"),
        (dict(methods=["bptt"]), "pair=[4, 8] is invalid: the grid has no dni run at T=4"),
        (dict(seeds=[-1]), "seeds=[-1] is invalid"),
        (dict(profile="laptop"), "profile='laptop' is unknown"),
        (dict(group_runs="maybe"), "group_runs='maybe' is unknown: expected one of ('auto', 'on', 'off')"),
    ],
)
def test_bad_parameters_fail_clearly_and_leave_nothing_behind(fails_cleanly, tmp_path, params, message):
    fails_cleanly(NB06, tmp_path, message, **params)


def test_missing_data_offline_fails_with_the_instructions(fails_cleanly, tmp_path, monkeypatch):
    monkeypatch.setenv("DNI_OFFLINE", "1")
    monkeypatch.setenv("DNI_DATA_DIR", str(tmp_path / "empty"))
    fails_cleanly(NB06, tmp_path, "DNI_OFFLINE is set", dataset="ptb")


def test_a_dry_run_caps_every_run_records_the_cap_and_asserts_no_claim(run_notebook, tmp_path):
    out = run_notebook(NB06, tmp_path, methods=["bptt", "dni"], max_steps=2, device="cpu")
    result = json.loads(out.read_text())
    assert result["params"]["max_steps"] == 2 and result["environment"]["device"] == "cpu"
    # 2 segments of 40 steps x 8 streams, validated once at the end
    assert all([h["chars"] for h in r["history"]] == [640] for r in result["runs"].values())
    assert "dry run (max_steps=2): the claims are not asserted" in (tmp_path / "printed.txt").read_text()


@pytest.mark.parametrize("ratios, holds", [
    ((2.5, 2.5), False),  # BPTT at the short T gains as much: the gain is the shorter T's, not DNI's
    ((2.5, 1.2), True),
    ((0.9, 0.5), False),  # beats the control but is slower than BPTT at the long T
    ((2.0, None), True),  # the control never reached the BPC
    ((None, 1.0), False),  # DNI never reached it
])
def test_the_data_efficiency_claim_holds_only_beyond_the_bptt_control(monkeypatch, ratios, holds):
    from dni_utils.experiments import nb06_ptb_char as nb06

    ratio, control = ratios
    monkeypatch.setattr(nb06, "efficiency", lambda runs, pair: [{"ratio": 3.0, "control_ratio": 1.0},
                                                                {"ratio": ratio, "control_ratio": control}])
    assert nb06.claims({}, {"truncations": [], "pair": [8, 40]})["dni_T8_reaches_bptt_T40_in_fewer_characters"] is holds
