"""Paper-profile dry runs: every notebook at ``profile=paper`` with ``max_steps=1`` trains one step of
every configuration of its paper grid on the CPU, offline. That proves that every paper-size network,
synthesizer and data path builds and trains, and the notebook prints what the uncapped profile
would cost on this machine (from its warm-up). One seed: the other seeds are the same
configurations. Offline, the paper's data sets are replaced by the stand-ins named below (the same
shapes; the real ones are not on a CI machine).

They guard the paper sizes only (the smoke runs of ``make test`` go through the same code), and
take 4 to 5 minutes on 2 cores in all, so they are marked ``slow`` and run with ``make dryrun``,
not ``make test``: run it after changing a profile table or anything that only the paper sizes
reach. ``SLOW`` (the paper-size CNNs of notebooks 01 and 02 and notebook 06's language model) take
seconds per step on a CPU.
"""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"

FAST = [
    ("01_ff_mnist", dict(dataset="mnist-5k", archs=["fcn"], seeds=[0])),
    ("02_ff_cifar10", dict(dataset="cifar10-standin", archs=["fcn"], seeds=[0])),
    ("03_ff_async_updates", dict(dataset="mnist-5k", seeds=[0])),
    ("04_ff_complete_unlock", dict(dataset="mnist-5k")),
    ("05_rnn_copy", dict(seeds=[0], workers=1)),
    ("07_two_timescales", dict(dataset="mnist-5k", seeds=[0])),
    ("08_parallel_decoupled", dict(dataset="mnist-5k", seeds=[0])),
    ("09_ff_dni_diagnosis", dict(dataset="mnist-5k", seeds=[0])),
    ("10_ff_budget", dict(mnist_dataset="mnist-5k", cases=["mnist-fcn-3", "mnist-fcn-6"], seeds=[0])),
]
SLOW = [
    ("01_ff_mnist", dict(dataset="mnist-5k", archs=["cnn"], seeds=[0])),
    ("02_ff_cifar10", dict(dataset="cifar10-standin", archs=["cnn"], seeds=[0])),
    ("10_ff_budget", dict(cifar10_dataset="cifar10-standin", cases=["cifar10-cnn-3"], seeds=[0])),
    ("06_ptb_char", dict(dataset="markov", seeds=[0])),
]


def _dry_run(run_notebook, tmp_path, name, params):
    result = run_notebook(NOTEBOOKS / f"{name}.ipynb", tmp_path, profile="paper", max_steps=1, **params)
    data = json.loads(result.read_text())
    assert data["profile"] == "paper" and data["params"]["max_steps"] == 1
    out = (tmp_path / "out.ipynb").read_text()
    assert "dry run" in out and "uncapped" in out, "the notebook must say it is a dry run and print the full estimate"
    return data


@pytest.mark.slow
@pytest.mark.parametrize("name, params", FAST, ids=[n for n, _ in FAST])
def test_paper_profile_dry_run(run_notebook_in_a_kernel, tmp_path, name, params):
    _dry_run(run_notebook_in_a_kernel, tmp_path, name, params)


@pytest.mark.slow
@pytest.mark.parametrize("name, params", SLOW, ids=[f"{n}-{p.get('archs', ['all'])[0]}" for n, p in SLOW])
def test_paper_profile_dry_run_slow(run_notebook_in_a_kernel, tmp_path, name, params):
    _dry_run(run_notebook_in_a_kernel, tmp_path, name, params)
