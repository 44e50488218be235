"""Notebook 05 (Copy / Repeat Copy): determinism and clean failure on bad parameters.

(Its own cells, checks included, run under nbval at the smoke profile: `make test`.)
"""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NB05 = ROOT / "notebooks" / "05_rnn_copy.ipynb"


def test_two_smoke_runs_with_the_same_seeds_write_identical_results(run_notebook, tmp_path):
    # workers=1: the runs in the notebook's process (the results do not depend on it; no start-up of workers)
    a = run_notebook(NB05, tmp_path / "a", tasks=["copy"], methods=["bptt", "dni_aux"], workers=1)
    b = run_notebook(NB05, tmp_path / "b", tasks=["copy"], methods=["bptt", "dni_aux"], workers=1)
    assert a.read_bytes() == b.read_bytes()


def test_grouped_runs_are_recorded_as_such(run_notebook, tmp_path):
    # two seeds of one (task, T, method) cell train as one group, as do the exact bounds' runs (the
    # numbers of a grouped run are compared with its ungrouped run's in tests/test_grouped_recurrent.py)
    params = dict(tasks=["copy"], truncations=[2], methods=["dni"], seeds=[0, 1], workers=1)
    result = json.loads(run_notebook(NB05, tmp_path, group_runs="on", **params).read_text())
    assert result["params"]["group_runs"] == "on"
    assert "2 runs to train, 24 training steps in all, on cpu with 1 process in 1 groups of runs that differ only in " \
           "their seed" in (tmp_path / "printed.txt").read_text()
    assert sorted(result["runs"]) == [f"copy-T2-{m}-seed{s}" for m in ("dni", "exact_gradient", "exact_target")
                                      for s in (0, 1)]


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(tasks=["copy", "sort"]), "task='sort' is unknown"),
        (dict(methods=["bptt", "rtrl"]), "methods=['bptt', 'rtrl'] is invalid"),
        (dict(truncations=[0]), "truncations=[0] is invalid"),
        (dict(group_runs="maybe"), "group_runs='maybe' is unknown: expected one of ('auto', 'on', 'off')"),
    ],
)
def test_bad_parameters_fail_clearly_and_leave_nothing_behind(fails_cleanly, tmp_path, params, message):
    fails_cleanly(NB05, tmp_path, message, **params)
