"""Notebook 05 (Copy / Repeat Copy): determinism and clean failure on bad parameters.

(Its own cells, checks included, run under nbval at the smoke profile: `make test`.)
"""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NB05 = ROOT / "notebooks" / "05_rnn_copy.ipynb"


def test_two_smoke_runs_with_the_same_seeds_write_identical_results(run_notebook, tmp_path):
    # workers=1: the runs in the notebook's process (the results do not depend on it; no start-up of workers)
    a = run_notebook(NB05, tmp_path / "a", tasks=["copy"], methods=["bptt", "dni_aux"], workers=1)
    b = run_notebook(NB05, tmp_path / "b", tasks=["copy"], methods=["bptt", "dni_aux"], workers=1)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(tasks=["copy", "sort"]), "task='sort' is unknown"),
        (dict(methods=["bptt", "rtrl"]), "methods=['bptt', 'rtrl'] is invalid"),
        (dict(truncations=[0]), "truncations=[0] is invalid"),
    ],
)
def test_bad_parameters_fail_clearly_and_leave_nothing_behind(fails_cleanly, tmp_path, params, message):
    fails_cleanly(NB05, tmp_path, message, **params)
