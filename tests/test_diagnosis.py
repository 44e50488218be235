"""The diagnostics of notebook 09: oracle targets, the three cosines, repeated synthesizer steps,
and the runner that spreads a grid over processes."""

import pandas as pd
import pytest
import torch
from torch import nn

from dni_utils import BackwardInterface, make_synthesizer
from dni_utils.experiments.nb09_ff_dni_diagnosis import ABLATIONS, DIAG_PROFILES, claims, plan
from dni_utils.tools.runner import resolve_workers, train_many
from dni_utils.trainers.feedforward import DivergenceError, FFConfig, FFTrainer, task_loss, train_ff


def _cfg(**kw):
    return FFConfig(**{**dict(method="dni", depth=3, width=16, steps=20, batch_size=32, lr=1e-2,
                              synth_hidden=16, synth_hidden_layers=1, log_every=10), **kw})


def _true_grads(trainer, x, y):
    hs, h = [], x
    for block in trainer.net.blocks:
        h = block(h)
        hs.append(h)
    return torch.autograd.grad(task_loss(trainer.net.head(h), y), hs)


def test_oracle_targets_are_the_true_back_propagated_gradients(tiny_data, monkeypatch):
    t = FFTrainer(_cfg(synth_target="true"), tiny_data.shape, tiny_data.n_classes)
    t.train()
    x, y = tiny_data.x_train[:32], tiny_data.y_train[:32]
    t.step(x, y)  # past the zero start
    expected = [g.clone() for g in _true_grads(t, x, y)]
    seen = {}
    for i, iface in enumerate(t.interfaces):
        original = iface.update

        def spy(target=None, i=i, original=original):
            seen[i] = target.clone()
            return original(target)

        monkeypatch.setattr(iface, "update", spy)
    t.step(x, y)
    for i, g in enumerate(expected):
        torch.testing.assert_close(seen[i], g, rtol=1e-5, atol=1e-6)


def test_the_oracle_pass_leaves_batchnorm_statistics_alone(tiny_data):
    x, y = tiny_data.x_train[:32], tiny_data.y_train[:32]
    stats = []
    for target in ("bootstrap", "true"):
        t = FFTrainer(_cfg(synth_target=target), tiny_data.shape, tiny_data.n_classes)
        t.train()
        t.step(x, y)  # zero start: the blocks do not move in either, only the statistics do
        stats.append([m.running_mean.clone() for m in t.net.modules() if isinstance(m, nn.BatchNorm1d)])
    for a, b in zip(*stats):
        assert torch.equal(a, b)


def test_bootstrap_targets_differ_from_the_oracle(tiny_data):
    a = train_ff(_cfg(), tiny_data, progress=False)
    b = train_ff(_cfg(synth_target="true"), tiny_data, progress=False)
    assert a.history[-1]["synth_loss"] != b.history[-1]["synth_loss"]


def test_unknown_synth_target_is_a_clear_error():
    with pytest.raises(ValueError, match=r"synth_target='magic' is unknown: expected one of \('bootstrap', 'true'\)"):
        _cfg(synth_target="magic").validate()


def test_three_cosines_per_interface(tiny_data):
    t = FFTrainer(_cfg(), tiny_data.shape, tiny_data.n_classes)
    t.train()
    for k in range(4):
        t.step(tiny_data.x_train[32 * k : 32 * (k + 1)], tiny_data.y_train[32 * k : 32 * (k + 1)])
    d = t.gradient_diagnostics(tiny_data.x_train[:64], tiny_data.y_train[:64])
    assert set(d) == {"grad_cosine", "fit_cosine", "target_cosine"}
    assert all(len(v) == 3 for v in d.values())
    # the last interface regresses onto the true gradient: its target IS the true gradient
    assert d["target_cosine"][-1] == pytest.approx(1.0)
    assert d["fit_cosine"][-1] == pytest.approx(d["grad_cosine"][-1])
    assert d["grad_cosine"] == t.gradient_cosines(tiny_data.x_train[:64], tiny_data.y_train[:64])


def test_bootstrapped_target_is_the_next_synthetic_gradient_through_the_block(tiny_data):
    t = FFTrainer(_cfg(depth=2), tiny_data.shape, tiny_data.n_classes)
    t.train()
    for k in range(3):
        t.step(tiny_data.x_train[32 * k : 32 * (k + 1)], tiny_data.y_train[32 * k : 32 * (k + 1)])
    x = tiny_data.x_train[:32]
    h0 = t.net.blocks[0](x).detach().requires_grad_()
    h1 = t.net.blocks[1](h0)
    with torch.no_grad():
        pred0, pred1 = t.interfaces[0].synthesizer(h0), t.interfaces[1].synthesizer(h1)
    target0 = torch.autograd.grad(h1, h0, pred1)[0]
    expected = nn.functional.cosine_similarity(pred0.flatten(), target0.flatten(), dim=0).item()
    got = t.gradient_diagnostics(x, tiny_data.y_train[:32])["fit_cosine"][0]
    assert got == pytest.approx(expected, abs=1e-5)


def test_more_synthesizer_steps_fit_a_fixed_target_better():
    torch.manual_seed(0)
    h, target = torch.randn(16, 4), torch.randn(16, 4)
    losses = {}
    for steps in (1, 5):
        iface = BackwardInterface(make_synthesizer("linear", (4,)), lr=1e-2, steps=steps)
        iface.inject(h)
        iface.update(target)
        with torch.no_grad():
            losses[steps] = ((iface.synthesizer(h) - target) ** 2).sum().item()
        assert iface.n_updates == 1
    assert losses[5] < losses[1]


@pytest.mark.parametrize("steps", [0, -1, 1.5, True])
def test_bad_synthesizer_steps_are_clear_errors(steps):
    with pytest.raises(ValueError, match="steps="):
        BackwardInterface(nn.Linear(2, 2), steps=steps)


def test_runs_in_two_processes_equal_runs_in_this_one(tiny_data):
    cfgs = [_cfg(seed=s, steps=10, log_every=5) for s in (0, 1, 2)]
    here = train_many(cfgs, tiny_data, workers=1, progress=False)
    there = train_many(cfgs, tiny_data, workers=2, progress=False)
    assert [r.to_dict() for r in here] == [r.to_dict() for r in there]


def test_a_diverging_run_in_a_worker_raises_its_error_here(tiny_data):
    cfgs = [_cfg(steps=10), _cfg(steps=10, lr=1e30, synth_lr=1e30)]
    with pytest.raises(DivergenceError, match="the training loss became"):
        train_many(cfgs, tiny_data, workers=2, progress=False)


@pytest.mark.parametrize("workers", [-1, 1.5, "2"])
def test_bad_workers_are_clear_errors(workers):
    with pytest.raises(ValueError, match=r"workers=.* is invalid: expected an integer >= 0"):
        resolve_workers(workers, 3)


def test_plan_runs_the_shared_baseline_once_per_depth_and_seed():
    settings = DIAG_PROFILES["smoke"]
    items = plan(settings, [2, 3], [0, 1])
    keys = [(it["kind"], tuple(sorted(it["overrides"].items())), it["depth"], it["seed"]) for it in items]
    assert len(keys) == len(set(keys))
    baseline = [k for k in keys if k[0] == "dni" and k[1] == ()]
    assert sorted((k[2], k[3]) for k in baseline) == [(2, 0), (2, 1), (3, 0), (3, 1)]
    deep_axes = set(settings["deep_axes"])
    for axis, label, overrides, _ in ABLATIONS:
        depths = {k[2] for k in keys if k[0] == "dni" and k[1] == tuple(sorted(overrides.items()))}
        assert depths == ({2, 3} if axis in deep_axes or not overrides else {2}), label


def _frames(errs: dict, cos: dict, bprop: dict):
    errors = pd.DataFrame([dict(axis="a", variant=v, layers=d, seed=s, error=e)
                           for (v, d), es in errs.items() for s, e in enumerate(es)])
    cosines = pd.DataFrame([dict(axis="a", variant=v, layers=d, seed=0, cosine=w, interface=d - k, **{"from top": k},
                                 value=c)
                            for (v, d, w), cs in cos.items() for k, c in enumerate(cs)])
    reference = pd.DataFrame([dict(method="bprop", layers=d, seed=0, error=e) for d, e in bprop.items()])
    return errors, cosines, reference


def test_claims_on_hand_made_numbers():
    settings = dict(near_points=1.0, low_cosine=0.1)
    errs = {("1x256 (baseline)", 3): [7.0, 7.4], ("1x256 (baseline)", 6): [13.0, 13.4],
            ("2x1024 (paper)", 3): [5.6, 5.8], ("2x1024 (paper)", 6): [10.0, 10.4],
            ("true gradient (oracle)", 3): [5.7, 5.9], ("true gradient (oracle)", 6): [5.6, 5.6]}
    cos = {("1x256 (baseline)", 6, "grad"): [0.44, 0.13, 0.04, 0.02, 0.0, -0.01],
           ("1x256 (baseline)", 6, "fit"): [0.44, 0.5, 0.5, 0.5, 0.5, 0.5],
           ("1x256 (baseline)", 6, "target"): [1.0, 0.45, 0.14, 0.05, 0.02, -0.02]}
    checks, evidence = claims(*_frames(errs, cos, {3: 5.2, 6: 6.0}), settings)
    assert checks == dict(oracle_near_bprop=True, bootstrap_loses_gradient=True, loss_compounds=True,
                          capacity_helps=True, paper_synth_near_bprop_shallow=True, gap_at_depth=True)
    assert evidence["oracle_gap"][6] == pytest.approx(-0.4)
    # a target that keeps more of the gradient than the fits above it allow breaks loss_compounds;
    # an oracle 1.5 points off Bprop breaks oracle_near_bprop; overlapping spreads break capacity_helps
    cos[("1x256 (baseline)", 6, "target")] = [1.0, 0.45, 0.6, 0.05, 0.02, -0.02]
    errs[("true gradient (oracle)", 6)] = [7.5, 7.5]
    errs[("2x1024 (paper)", 6)] = [12.0, 14.4]
    checks, _ = claims(*_frames(errs, cos, {3: 5.2, 6: 6.0}), settings)
    assert not checks["loss_compounds"] and not checks["oracle_near_bprop"] and not checks["capacity_helps"]


NB09 = __import__("pathlib").Path(__file__).resolve().parents[1] / "notebooks" / "09_ff_dni_diagnosis.ipynb"


def test_notebook_09_same_seed_same_bytes(run_notebook, tmp_path):
    a = run_notebook(NB09, tmp_path / "a", steps=10, depths=[2])
    b = run_notebook(NB09, tmp_path / "b", steps=10, depths=[2])
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(profile="laptop"), "profile='laptop' is unknown"),
        (dict(depths=[0]), "depths=[0] is invalid"),
        (dict(seeds=[-1]), "seeds=[-1] is invalid"),
        (dict(dataset="imagenet"), "dataset='imagenet' is unknown"),
        (dict(workers=-2), "workers=-2 is invalid"),
    ],
)
def test_notebook_09_bad_parameters_fail_clearly_and_leave_nothing_behind(fails_cleanly, tmp_path, params, message):
    fails_cleanly(NB09, tmp_path, message, **params)
