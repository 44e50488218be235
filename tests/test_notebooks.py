"""Notebook-level behaviour: determinism and clean failure on bad parameters.

(Each notebook's own cells, claims included, are checked by nbval at the smoke profile: `make test`.)
"""

import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
NB01 = ROOT / "notebooks" / "01_ff_mnist.ipynb"
NB03 = ROOT / "notebooks" / "03_ff_async_updates.ipynb"
NB04 = ROOT / "notebooks" / "04_ff_complete_unlock.ipynb"
NB02 = ROOT / "notebooks" / "02_ff_cifar10.ipynb"


def test_two_smoke_runs_with_the_same_seed_write_identical_results_and_auto_is_the_cpu_without_cuda(run_notebook, tmp_path):
    """Same seed, same bytes. On a machine without CUDA the second run asks for device ``auto``,
    which is then the CPU: the same result file, which records ``cpu`` (one pair of runs for both)."""
    second = "cpu" if torch.cuda.is_available() else "auto"
    a = run_notebook(NB01, tmp_path / "a", methods=["bprop", "cdni"], device="cpu")
    b = run_notebook(NB01, tmp_path / "b", methods=["bprop", "cdni"], device=second)
    assert a.read_bytes() == b.read_bytes()
    assert json.loads(a.read_text())["environment"]["device"] == "cpu"


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(profile="laptop"), "profile='laptop' is unknown"),
        (dict(methods=["bprop", "magic"]), "methods=['bprop', 'magic'] is invalid"),
        (dict(dataset="imagenet"), "dataset='imagenet' is unknown"),
        (dict(depths=[0]), "depths=[0] is invalid"),
        (dict(device="gpu"), "device='gpu' is unknown"),
        (dict(max_steps=-2), "max_steps=-2 is invalid"),
        pytest.param(dict(device="cuda"), "device='cuda' was asked for, but this machine has no CUDA device",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
    ],
)
def test_bad_parameters_fail_clearly_and_leave_nothing_behind(fails_cleanly, tmp_path, params, message):
    fails_cleanly(NB01, tmp_path, message, **params)


def test_a_bad_parameter_fails_the_same_way_through_papermill_and_a_kernel(fails_cleanly_in_a_kernel, tmp_path):
    """The other bad-parameter tests run the notebooks' cells in this process; this one as a user does."""
    fails_cleanly_in_a_kernel(NB01, tmp_path, "profile='laptop' is unknown", profile="laptop")


@pytest.mark.parametrize("nb", [NB03, NB04])
def test_async_and_unlock_notebooks_write_identical_results_with_the_same_seed(run_notebook, tmp_path, nb):
    a = run_notebook(nb, tmp_path / "a", steps=10)
    b = run_notebook(nb, tmp_path / "b", steps=10)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize(
    "nb, params, message",
    [
        (NB03, dict(profile="laptop"), "profile='laptop' is unknown"),
        (NB03, dict(p_updates=[0.5, 0.0]), "p_updates=[0.5, 0.0] is invalid"),
        (NB03, dict(methods=["bprop", "magic"]), "methods=['bprop', 'magic'] is invalid"),
        (NB04, dict(compare=["magic"]), "methods=['magic'] is invalid"),
        (NB04, dict(dataset="imagenet"), "dataset='imagenet' is unknown"),
    ],
)
def test_bad_parameters_of_notebooks_03_and_04_fail_clearly_and_leave_nothing_behind(fails_cleanly, tmp_path, nb, params, message):
    fails_cleanly(nb, tmp_path, message, **params)


def test_notebook_02_smoke_is_deterministic_and_labelled_synthetic(run_notebook, tmp_path):
    a = run_notebook(NB02, tmp_path / "a", archs=["cnn"], methods=["bprop", "cdni"])
    b = run_notebook(NB02, tmp_path / "b", archs=["cnn"], methods=["bprop", "cdni"])
    assert a.read_bytes() == b.read_bytes()
    result = json.loads(a.read_text())
    assert result["data"]["synthetic"] is True and "SYNTHETIC" in result["title"]
    assert [r["setting"] for r in result["rows"]] == ["CNN, 3 layers", "CNN, 3 layers"]


def test_notebook_02_on_an_image_folder_says_which_data_it_used(run_notebook, tmp_path, monkeypatch, jpeg_tree):
    monkeypatch.setenv("DNI_DATA_DIR", str(jpeg_tree(tmp_path / "data", per_class=(8, 2))))
    monkeypatch.setenv("DNI_CACHE_DIR", str(tmp_path / "cache"))
    result = json.loads(run_notebook(NB02, tmp_path / "run", dataset="cifar10-jpeg", archs=["fcn"],
                                     methods=["bprop"], steps=4).read_text())
    assert result["title"] == "CIFAR-10 feed-forward table on CIFAR-10 (JPEG q75 copy)"
    assert result["data"]["label"] == "CIFAR-10 (JPEG q75 copy)" and result["data"]["synthetic"] is False
    assert result["data"]["n_train"] == 80 and result["data"]["reduced"] is True


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(profile="laptop"), "profile='laptop' is unknown"),
        (dict(archs=["rnn"]), "archs=['rnn'] is invalid"),
        (dict(dataset="imagenet"), "dataset='imagenet' is unknown"),
        (dict(depths=[0]), "depths=[0] is invalid"),
    ],
)
def test_notebook_02_bad_parameters_fail_clearly_and_leave_nothing_behind(fails_cleanly, tmp_path, params, message):
    fails_cleanly(NB02, tmp_path, message, **params)
