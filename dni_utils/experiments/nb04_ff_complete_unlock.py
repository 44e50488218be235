"""Notebook 04 (``notebooks/04_ff_complete_unlock.ipynb``): complete unlock, every layer trained
on synthetic inputs and synthetic gradients (paper section 3.3), beside notebook 01's methods.
Its profile table, the run configurations, the claims and the one function its grid trains with."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from dni_utils.data.images import Dataset
from dni_utils.experiments import ffgrid, verdicts
from dni_utils.tools.checkpoint import Checkpoint
from dni_utils.trainers.feedforward import FFConfig, FFRun, train_ff
from dni_utils.trainers.unlock import UnlockConfig, UnlockRun, train_unlock


#: Settings per profile for notebook 04. ``compare``: the methods of notebook 01 trained beside the
#: complete unlock, with the same sizes. The claims (test error in %): the composed network's final
#: error at most ``max_error``; it at most ``compose_slack`` above the error of the output layer on
#: its synthetic input (the layers, trained apart, work together); every synthetic input's relative
#: error at most ``max_input_error``. ``compare_settings[method]``: FFConfig fields of one compared
#: method that differ from the profile's (none: the profile's sizes for every method).
UNLOCK_PROFILES: dict[str, dict] = {
    "smoke": dict(
        dataset="mnist-5k", depth=3, compare=["bprop", "dni", "cdni"], steps=60, batch_size=64, width=64, lr=1e-3,
        grad_synth_hidden=64, input_synth_hidden_layers=1, input_synth_hidden=64, synth_hidden_layers=1,
        synth_hidden=64, log_every=20, max_error=100.0, compose_slack=100.0, max_input_error=10.0,
        assert_claims=False, compare_settings={},
    ),
    "cpu": dict(
        dataset="mnist", depth=4, compare=["bprop", "dni", "cdni"], steps=3000, batch_size=128, width=256, lr=1e-3,
        grad_synth_hidden=1024, input_synth_hidden_layers=1, input_synth_hidden=512, synth_hidden_layers=1,
        synth_hidden=256, log_every=300, max_error=15.0, compose_slack=2.0, max_input_error=0.5,
        assert_claims=True,
        # DNI without context compared at notebook 01's cpu settings for it: layers at Adam 1e-4,
        # synthesizers at 1e-3, one hidden layer of 1024 units (at one rate of 1e-3 for both and
        # 1 x 256, its synthesizers could not keep up with the layers: 17.9% error here)
        compare_settings={"dni": dict(lr=1e-4, synth_lr=1e-3, synth_hidden=1024)},
    ),
    "paper": dict(
        dataset="mnist", depth=4, compare=["bprop", "dni", "cdni"], steps=500_000, batch_size=256, width=256,
        lr=3e-5, grad_synth_hidden=1024, input_synth_hidden_layers=2, input_synth_hidden=1024,
        synth_hidden_layers=2, synth_hidden=1024, log_every=5000, max_error=3.0, compose_slack=0.5,
        max_input_error=0.2, assert_claims=True, compare_settings={},
    ),
}


def compare_config(settings: dict, method: str, seed: int) -> FFConfig:
    """The FFConfig of a method compared beside the complete unlock: the profile's sizes, with that
    method's own settings where the profile gives them (``compare_settings[method]``)."""
    own = settings.get("compare_settings", {}).get(method, {})
    merged = {**settings, "fcn": {**settings.get("fcn", {}), **own}}
    return ffgrid.config_for(merged, "fcn", settings["depth"], method, seed)


_UNLOCK_KEYS = ("depth", "width", "steps", "batch_size", "lr", "grad_synth_hidden", "input_synth_hidden_layers",
                "input_synth_hidden", "log_every")


def unlock_config(settings: dict, seed: int) -> UnlockConfig:
    """The UnlockConfig of a profile's settings."""
    return UnlockConfig(seed=seed, **{k: settings[k] for k in _UNLOCK_KEYS}).validate()


def claims(run: UnlockRun, max_error: float, compose_slack: float, max_input_error: float) -> dict[str, bool]:
    """The paper's claim on complete unlock, judged on the final numbers (errors in %):

    - ``unlock_learns``: the composed network's test error at most ``max_error``;
    - ``layers_compose``: that error at most ``compose_slack`` above the output layer's error on
      its synthetic input, the path every layer was trained on;
    - ``synthetic_inputs_match``: every synthetic input's relative error at most ``max_input_error``.
    """
    last = run.history[-1]
    composed, synthetic = 100 * last["test_error"], 100 * last["synthetic_test_error"]
    return {
        "unlock_learns": composed <= max_error,
        "layers_compose": composed <= synthetic + compose_slack,
        "synthetic_inputs_match": all(e <= max_input_error for e in last["input_rel_error"]),
    }



def _unlock_error(result: dict, method: str = "complete unlock") -> float | None:
    return verdicts.row_value(result, r"", method)


def _input_errors(result: dict, groups: dict) -> str | None:
    last = result.get("runs", {}).get("complete_unlock", {}).get("history", [{}])[-1]
    errors = last.get("input_rel_error")
    return f"largest {max(errors):.3f} (layers 1 to {len(errors)})" if errors else None


#: The checks of ``claims`` in words (``dni_utils.experiments.verdicts``).
CHECKS: dict[str, verdicts.Check] = {
    "unlock_learns": verdicts.Check(
        "the composed network's test error at most {max_error:g}%",
        lambda result, groups: f"{verdicts.fmt(_unlock_error(result))}%", "≈2%, more slowly"),
    "layers_compose": verdicts.Check(
        lambda result, groups: (
            f"the composed network's test error at most {verdicts.points(result['params']['compose_slack'])} above "
            f"the output layer's on its synthetic input (the path every layer trained on)"),
        lambda result, groups: f"composed {verdicts.fmt(_unlock_error(result))}%, synthetic path "
                               f"{verdicts.fmt(_unlock_error(result, 'complete unlock, synthetic path'))}%"),
    "synthetic_inputs_match": verdicts.Check(
        "every synthetic input's relative error (against the true input of its layer) at most {max_input_error:g}",
        _input_errors),
}

#: The README's line for notebook 04.
SUMMARY = verdicts.Summary(
    claim="With a synthetic input and a synthetic gradient for every layer (complete unlock), the layers "
          "train apart and still compose into a network that learns MNIST, more slowly.",
    main=("unlock_learns", "layers_compose", "synthetic_inputs_match"),
    key=(verdicts.KeyRow("complete unlock", r"", "complete unlock"), verdicts.KeyRow("Bprop", r"", "Bprop")),
    where="FCN, 4 layers, test error (%)",
)


#: The intra-op threads of this process when this module was imported (torch's default: one per
#: core). The complete unlock has always trained with them (``results/04_*.cpu.json`` was made so),
#: while ``runner.train_many`` gives its runs one thread each; see ``train_unlock_or_ff``.
UNLOCK_THREADS = torch.get_num_threads()


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_unlock_or_ff(
    cfg: UnlockConfig | FFConfig, data: Dataset, progress: bool = True, desc: str | None = None,
    device: torch.device | str | None = None, checkpoint: Checkpoint | None = None,
) -> UnlockRun | FFRun:
    """Notebook 04's runs in one ``runner.train_many`` grid (one cost estimate, one step cap, one
    checkpoint folder for all of them): an ``UnlockConfig`` trains with ``train_unlock``, an
    ``FFConfig`` (the methods compared beside it) with ``feedforward.train_ff``.

    The complete unlock trains with ``UNLOCK_THREADS`` intra-op threads rather than the one thread
    ``train_many`` sets: on the CPU the number of threads changes the order of the sums, hence the
    last bits of the numbers, and the committed results were made with the default (the comparison
    runs have always trained through ``train_many``, with one)."""
    if isinstance(cfg, UnlockConfig):
        with _threads(UNLOCK_THREADS):
            return train_unlock(cfg, data, progress=progress, desc=desc, device=device, checkpoint=checkpoint)
    if isinstance(cfg, FFConfig):
        return train_ff(cfg, data, progress=progress, desc=desc, device=device, checkpoint=checkpoint)
    raise TypeError(f"cfg={cfg!r} is invalid: expected an UnlockConfig or an FFConfig")
