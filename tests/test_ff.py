"""The feed-forward trainer: the four methods, their updates, errors and diagnostics."""

import math
import re

import pytest
import torch

from dni_utils.experiments.ffgrid import check_methods, claims, final_errors, paper_rows, run_grid
from dni_utils.experiments.nb01_ff_mnist import FF_MNIST_PROFILES
from dni_utils.experiments.profiles import PROFILES, check_seeds, select_profile
from dni_utils.experiments.stats import clearly_above, mean_sd
from dni_utils.trainers.feedforward import METHODS, DivergenceError, FFConfig, FFTrainer, train_ff


def _cfg(method="dni", **kw):
    return FFConfig(**{**dict(method=method, depth=2, width=16, steps=30, batch_size=32, lr=1e-2,
                              synth_hidden=16, log_every=10), **kw})


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("method", METHODS)
def test_each_method_trains_and_logs(method, tiny_data):
    run = train_ff(_cfg(method), tiny_data, progress=False)
    assert [h["step"] for h in run.history] == [10, 20, 30]
    assert all(math.isfinite(h["train_loss"]) for h in run.history)
    assert run.test_error == run.history[-1]["test_error"]
    assert run.updates == ([0, 0] if method == "nobprop" else [30, 30])
    if method in ("dni", "cdni"):
        assert len(run.history[-1]["grad_cosine"]) == 2
        assert all(s is not None for s in run.history[-1]["synth_loss"])


def test_bprop_learns_the_tiny_problem(tiny_data):
    assert train_ff(_cfg("bprop", steps=60), tiny_data, progress=False).test_error < 0.1


def test_nobprop_trains_only_the_output_layer(tiny_data):
    t = FFTrainer(_cfg("nobprop"), tiny_data.shape, tiny_data.n_classes)
    t.train()
    blocks, head = _snapshot(t.net.blocks), _snapshot(t.net.head)
    t.step(tiny_data.x_train[:32], tiny_data.y_train[:32])
    assert all(torch.equal(a, b) for a, b in zip(blocks, _snapshot(t.net.blocks)))
    assert not all(torch.equal(a, b) for a, b in zip(head, _snapshot(t.net.head)))


@pytest.mark.parametrize("method", ["dni", "cdni"])
def test_decoupled_step_updates_every_block_and_synthesizer(method, tiny_data):
    t = FFTrainer(_cfg(method), tiny_data.shape, tiny_data.n_classes)
    t.train()
    before = _snapshot(t.net)
    # Zero start: the synthetic gradients (and so the block updates) begin at zero, and a non-zero
    # signal needs one step per interface to bootstrap down from the loss; after three steps of a
    # 2-block net every weight matrix has moved.
    for k in range(3):
        t.step(tiny_data.x_train[32 * k : 32 * (k + 1)], tiny_data.y_train[32 * k : 32 * (k + 1)])
    after = _snapshot(t.net)
    assert all(not torch.equal(a, b) for a, b in zip(before, after) if a.dim() == 2)
    assert [i.n_updates for i in t.interfaces] == [3, 3]
    assert all(i.pending == 0 for i in t.interfaces)


def test_gradient_diagnostics_change_nothing(tiny_data):
    t = FFTrainer(_cfg("dni"), tiny_data.shape, tiny_data.n_classes)
    t.train()
    t.step(tiny_data.x_train[:32], tiny_data.y_train[:32])
    state = {k: v.clone() for k, v in {**t.net.state_dict(), **t.interfaces.state_dict()}.items()}
    cos = t.gradient_cosines(tiny_data.x_train[:64], tiny_data.y_train[:64])
    assert len(cos) == 2 and all(-1 <= c <= 1 for c in cos)
    for k, v in {**t.net.state_dict(), **t.interfaces.state_dict()}.items():
        assert torch.equal(v, state[k]), k


def test_same_seed_same_numbers(tiny_data):
    a = train_ff(_cfg("cdni"), tiny_data, progress=False).to_dict()
    b = train_ff(_cfg("cdni"), tiny_data, progress=False).to_dict()
    assert a == b


def test_a_nan_loss_is_a_clear_error(tiny_data):
    tiny_data.x_train[:] = float("nan")
    with pytest.raises(DivergenceError, match=r"method='dni', depth=2: the training loss became nan at step 1"):
        train_ff(_cfg("dni"), tiny_data, progress=False)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(method="hebbian"), "method='hebbian' is unknown"),
        (dict(arch="transformer"), "arch='transformer' is unknown"),
        (dict(depth=0), "depth=0 is invalid"),
        (dict(width=-3), "width=-3 is invalid"),
        (dict(steps=0), "steps=0 is invalid"),
        (dict(batch_size=0), "batch_size=0 is invalid"),
        (dict(lr=-1.0), "lr=-1.0 is invalid"),
        (dict(lr_milestones=(0.5, 1.5)), "lr_milestones=.* is invalid"),
    ],
)
def test_bad_config_is_a_clear_error(kw, match):
    with pytest.raises(ValueError, match=match):
        _cfg(**{"method": "dni", **kw}).validate()


def test_batch_larger_than_the_data_is_a_clear_error(tiny_data):
    with pytest.raises(ValueError, match="batch_size=1000 is larger than the training set"):
        train_ff(_cfg("bprop", batch_size=1000), tiny_data, progress=False)


def test_unknown_profile_and_methods_are_clear_errors():
    with pytest.raises(ValueError, match=re.escape(f"profile='laptop' is unknown: expected one of {PROFILES}")):
        select_profile("laptop", FF_MNIST_PROFILES)
    with pytest.raises(ValueError, match="'stepz' is not a setting"):
        select_profile("smoke", FF_MNIST_PROFILES, stepz=3)
    with pytest.raises(ValueError, match="methods=.* is invalid"):
        check_methods(["bprop", "magic"])


def test_profile_overrides_apply_and_empty_values_keep_the_default():
    s = select_profile("smoke", FF_MNIST_PROFILES, steps=7, depths=[], dataset="")
    assert s["steps"] == 7
    assert s["depths"] == FF_MNIST_PROFILES["smoke"]["depths"]
    assert s["dataset"] == FF_MNIST_PROFILES["smoke"]["dataset"]


def test_every_profile_has_the_same_settings():
    keys = {p: set(v) for p, v in FF_MNIST_PROFILES.items()}
    assert set(keys) == set(PROFILES)
    assert len({frozenset(k) for k in keys.values()}) == 1


def test_claims_are_judged_on_the_final_errors(tiny_data):
    runs = run_grid(dict(FF_MNIST_PROFILES["smoke"], steps=5, log_every=5, width=8, synth_hidden=8, batch_size=32),
                    tiny_data, ["fcn"], [1, 2], list(METHODS), seeds=[0], progress=False)
    errs = {"bprop": 0.05, "nobprop": 0.20, "dni": 0.07, "cdni": 0.06}
    for (arch, depth, method, _), run in runs.items():
        run.test_error = errs[method] + 0.01 * depth * (method == "nobprop")
    got = claims(runs, near_points=3.0, nobprop_margin=5.0, cdni_slack=0.5)
    assert got == {"dni_near_bprop": True, "cdni_near_bprop": True, "cdni_at_least_dni": True,
                   "nobprop_far_worse": True, "nobprop_worse_with_depth": True}
    assert claims(runs, 3.0, 5.0, 0.5, dni_margin=10.0)["dni_beats_nobprop"] is True  # 14 and 15 points
    assert claims(runs, 3.0, 5.0, 0.5, dni_margin=14.5)["dni_beats_nobprop"] is False  # 14 at depth 1
    runs[("fcn", 2, "dni", 0)].test_error = 0.20
    assert claims(runs, 3.0, 5.0, 0.5)["dni_near_bprop"] is False
    assert claims(runs, 3.0, 5.0, 0.5)["cdni_at_least_dni"] is True
    assert claims(runs, 3.0, 5.0, 0.5, dni_margin=3.0)["dni_beats_nobprop"] is False  # 2 points at depth 2


def test_seeds_give_one_run_each_and_claims_use_means_and_spread(tiny_data):
    settings = dict(FF_MNIST_PROFILES["smoke"], steps=3, log_every=3, width=8, synth_hidden=8, batch_size=32)
    runs = run_grid(settings, tiny_data, ["fcn"], [1, 2], ["bprop", "nobprop"], seeds=[0, 1, 2], progress=False)
    assert sorted(runs) == sorted(("fcn", d, m, s) for d in (1, 2) for m in ("bprop", "nobprop") for s in (0, 1, 2))
    assert runs[("fcn", 1, "bprop", 0)].history != runs[("fcn", 1, "bprop", 1)].history  # seeds differ
    # Bprop 5, 6, 7 % at both depths; No Bprop 20, 21, 22 % at depth 1 and 21, 22, 23 % at depth 2.
    for (_, depth, method, seed), run in runs.items():
        run.test_error = (5 + seed) / 100 if method == "bprop" else (20 + seed + (depth - 1)) / 100
    rows = paper_rows(runs, {})
    bprop = [r for r in rows if r["method"] == "Bprop" and r["setting"] == "FCN, 1 layers"][0]
    assert bprop["reproduced"] == pytest.approx(6.0) and bprop["spread"] == pytest.approx(1.0) and bprop["n"] == 3
    assert final_errors(runs).loc[("FCN", "Bprop"), 1] == pytest.approx(6.0)
    assert final_errors(runs, "std").loc[("FCN", "Bprop"), 1] == pytest.approx(1.0)
    got = claims(runs, near_points=3.0, nobprop_margin=5.0, cdni_slack=0.5)
    assert got["nobprop_far_worse"] is True
    # one point deeper is within the spread of one point over seeds: not "worse with depth"
    assert got["nobprop_worse_with_depth"] is False
    for (_, depth, method, seed), run in runs.items():
        if method == "nobprop" and depth == 2:
            run.test_error += 0.03
    assert claims(runs, 3.0, 5.0, 0.5)["nobprop_worse_with_depth"] is True


def test_seed_lists_are_checked():
    assert check_seeds([2, 0, 2]) == [2, 0]
    for bad in ([], [-1], [0.5], "0", [True]):
        with pytest.raises(ValueError, match="seeds=.* is invalid"):
            check_seeds(bad)
    assert mean_sd([1.0]) == (1.0, 0.0)
    assert clearly_above([10.0, 12.0], [5.0, 5.0], margin=4.0) and not clearly_above([10.0, 12.0], [5.0], margin=7.0)
    assert not clearly_above([2.0, 10.0], [1.0, 1.0])  # difference 5 within a standard deviation of 5.7
