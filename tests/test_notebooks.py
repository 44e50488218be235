"""Notebook-level behaviour: determinism and clean failure on bad parameters.

(Each notebook's own cells, claims included, are checked by nbval at the smoke profile: `make test`.)
"""

from pathlib import Path

import papermill as pm
import pytest

ROOT = Path(__file__).resolve().parents[1]
NB01 = ROOT / "notebooks" / "01_ff_mnist.ipynb"


def _run(tmp: Path, **params) -> Path:
    params = {"profile": "smoke", "progress": False, "results_dir": str(tmp / "results"),
              "figures_dir": str(tmp / "figures"), **params}
    tmp.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(NB01), str(tmp / "out.ipynb"), parameters=params, cwd=str(NB01.parent),
                        progress_bar=False, log_output=False)
    return tmp / "results" / f"01_ff_mnist.{params['profile']}.json"


def test_two_smoke_runs_with_the_same_seed_write_identical_results(tmp_path):
    a = _run(tmp_path / "a", methods=["bprop", "cdni"])
    b = _run(tmp_path / "b", methods=["bprop", "cdni"])
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(profile="laptop"), "profile='laptop' is unknown"),
        (dict(methods=["bprop", "magic"]), "methods=['bprop', 'magic'] is invalid"),
        (dict(dataset="imagenet"), "dataset='imagenet' is unknown"),
        (dict(depths=[0]), "depths=[0] is invalid"),
    ],
)
def test_bad_parameters_fail_clearly_and_leave_nothing_behind(tmp_path, params, message):
    with pytest.raises(pm.PapermillExecutionError) as info:
        _run(tmp_path, **params)
    assert message in str(info.value)
    assert not (tmp_path / "results").exists() and not (tmp_path / "figures").exists()
