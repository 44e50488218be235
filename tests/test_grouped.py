"""Grouped feed-forward runs: R seeds as one model give each seed's ungrouped run.

The comparisons run in float64. In float32 a grouped run differs from its ungrouped run the way
any reordering of the sums does, and here that is not small: the bias of a layer followed by
BatchNorm has a gradient that is zero but for rounding, and Adam divides it by its own running
size, turning rounding noise into steps of up to the learning rate (seen: 4e-3 on such biases
after two steps). In float64 the rounding is 1e-16 and Adam's eps (1e-8) swamps it, so the
equivalence is checked to 1e-9.
"""

import dataclasses
import json

import pytest
import torch

from conftest import assert_nested_close
from dni_utils.data.images import BatchSampler
from dni_utils.trainers.feedforward import FFConfig, FFTrainer, train_ff
from dni_utils.trainers.grouped import (
    GroupedAdam, GroupedFFTrainer, check_group, group_key, groups, stack_batches, train_ff_group,
)

SEEDS = (0, 1)
SMALL = dict(depth=2, width=16, steps=12, batch_size=16, lr=3e-3, synth_lr=1e-2, synth_hidden_layers=1,
             synth_hidden=16, log_every=6, diag_batch=32, lr_milestones=(0.5,))
CNN = dict(arch="cnn", width=4, conv_synth_hidden_layers=1, conv_synth_channels=4)

VARIANTS = {
    "bprop": dict(method="bprop"),
    "nobprop": dict(method="nobprop"),
    "dni": dict(method="dni"),
    "cdni": dict(method="cdni"),
    "dni, linear synthesizer, 2 steps per target": dict(method="dni", synth_kind="linear", synth_steps=2),
    "dni, p_update 0.6": dict(method="dni", p_update=0.6),
    "cdni, p_update 0.6": dict(method="cdni", p_update=0.6),
    "bprop, p_update 0.6, chain": dict(method="bprop", p_update=0.6),
    "bprop, p_update 0.6, independent": dict(method="bprop", p_update=0.6, bprop_async="independent"),
    "nobprop, p_update 0.6": dict(method="nobprop", p_update=0.6),
    "cnn bprop": dict(method="bprop", **CNN),
    "cnn dni": dict(method="dni", **CNN),
    "cnn cdni": dict(method="cdni", **CNN),
    "cnn cdni, mlp at the top": dict(method="cdni", conv_top_synth="mlp", **CNN),
}


@pytest.fixture
def data64(tiny_data):
    """``tiny_data`` in float64, with float64 the default dtype for the networks built meanwhile."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield dataclasses.replace(tiny_data, x_train=tiny_data.x_train.double(), x_test=tiny_data.x_test.double())
    finally:
        torch.set_default_dtype(before)


def _configs(**fields):
    return [FFConfig(seed=s, **{**SMALL, **fields}) for s in SEEDS]


_close = assert_nested_close


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_grouped_run_equals_the_ungrouped_run_of_the_same_seed(data64, variant):
    """Every logged number (train loss, test error, synthesizer losses, gradient cosines) and the
    update counts of each seed, after 12 steps with a learning-rate drop at step 6."""
    cfgs = _configs(**VARIANTS[variant])
    grouped = train_ff_group(cfgs, data64, progress=False)
    for cfg, run in zip(cfgs, grouped):
        alone = train_ff(cfg, data64, progress=False)
        _close(alone.to_dict(), run.to_dict(), f"{variant}, seed {cfg.seed}")


@pytest.mark.parametrize("variant", ["bprop", "dni, p_update 0.6", "cnn cdni"])
def test_a_grouped_trainer_holds_the_same_weights_and_statistics_as_each_run(data64, variant):
    """After 8 steps, to 1e-9, but for the biases in front of a BatchNorm and that BatchNorm's
    running mean (1e-6): such a bias has no effect on any output, and its zero gradient is rounding
    that Adam scales by lr / eps (seen: 1e-7 after 8 steps of the CNN, in float64)."""
    tiny_data = data64
    cfgs = _configs(**VARIANTS[variant])
    shape = tiny_data.shape
    group = GroupedFFTrainer(cfgs, shape, tiny_data.n_classes)
    singles = [FFTrainer(c, shape, tiny_data.n_classes) for c in cfgs]
    samplers = [BatchSampler(tiny_data.x_train, tiny_data.y_train, c.batch_size, c.seed) for c in cfgs]
    group.train()
    for t in singles:
        t.train()
    for _ in range(8):
        x, y = stack_batches(samplers)
        losses = group.step(x, y)
        for r, t in enumerate(singles):
            assert t.step(x[:, r], y[:, r]).item() == pytest.approx(losses[r].item(), rel=1e-9)
    group.copy_to_members()
    for member, single in zip(group.members, singles):
        pairs = [(f"net.{n}", a, b, _in_front_of_batchnorm(single.net)) for (n, a), (_, b)
                 in zip(member.net.state_dict().items(), single.net.state_dict().items())]
        for i, (m_iface, s_iface) in enumerate(zip(member.interfaces, single.interfaces)):
            pairs += [(f"interface {i}.{n}", a, b, _in_front_of_batchnorm(s_iface)) for (n, a), (_, b)
                      in zip(m_iface.state_dict().items(), s_iface.state_dict().items())]
        for name, a, b, loose in pairs:
            atol = 1e-6 if name.split(".", 1)[1] in loose else 1e-9
            torch.testing.assert_close(a, b, rtol=0, atol=atol, msg=f"{variant}: {name}")
    assert group.updates.tolist() == [t.updates for t in singles]
    assert group.head_updates.tolist() == [t.head_updates for t in singles]


def _in_front_of_batchnorm(module: torch.nn.Module) -> set[str]:
    """Names of the biases directly in front of a BatchNorm, and of that BatchNorm's running mean."""
    out = set()
    for prefix, seq in module.named_modules():
        if isinstance(seq, torch.nn.Sequential):
            for k in range(len(seq) - 1):
                if isinstance(seq[k + 1], (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                    dot = f"{prefix}." if prefix else ""
                    out |= {f"{dot}{k}.bias", f"{dot}{k + 1}.running_mean"}
    return out


def test_one_grouped_adam_equals_one_torch_adam_per_run():
    gen = torch.Generator().manual_seed(0)
    runs = [torch.randn(5, 3, generator=gen) for _ in range(4)]
    grads = [[torch.randn(5, 3, generator=gen) for _ in runs] for _ in range(6)]
    # every run steps (one step count: torch's functional Adam), then some runs sit steps out
    masks = [None, None, *(torch.rand(4, generator=gen) < 0.6 for _ in range(4))]
    singles = [torch.nn.Parameter(p.clone()) for p in runs]
    opts = [torch.optim.Adam([p], lr=1e-2) for p in singles]
    stacked = torch.nn.Parameter(torch.stack(runs))
    grouped = GroupedAdam([stacked], runs=4, lr=1e-2)
    for step_grads, mask in zip(grads, masks):
        stacked.grad = torch.stack(step_grads)
        grouped.step(mask)
        for p, o, g, on in zip(singles, opts, step_grads, torch.ones(4, dtype=torch.bool) if mask is None else mask):
            if on:  # a run that is not available does not step at all
                p.grad = g.clone()
                o.step()
    torch.testing.assert_close(stacked.detach(), torch.stack([p.detach() for p in singles]), rtol=1e-6, atol=1e-7)


def test_configs_that_cannot_be_grouped_train_alone_and_mixed_groups_are_refused():
    a, b = FFConfig(seed=0, **SMALL), FFConfig(seed=1, **SMALL)
    assert group_key(a) == group_key(b) is not None
    assert group_key(FFConfig(synth_target="true")) is None  # the oracle runs one by one
    assert group_key(FFConfig(p_update=0.5, synth_steps=2)) is None
    cfgs = [a, FFConfig(seed=0, **{**SMALL, "depth": 3}), b, FFConfig(synth_target="true"), FFConfig(seed=2, **SMALL)]
    assert groups(cfgs) == [[0, 2, 4], [1], [3]]
    with pytest.raises(ValueError, match="differ only in"):
        check_group([a, FFConfig(seed=1, **{**SMALL, "width": 8})])
    with pytest.raises(ValueError, match="cannot be grouped"):
        check_group([FFConfig(synth_target="true")])


def test_train_many_groups_runs_by_seed_and_returns_them_in_order(data64, capsys):
    from dni_utils.tools.runner import RunOptions, train_many

    cfgs = [*_configs(method="dni"), *_configs(method="bprop")[:2], FFConfig(seed=0, **{**SMALL, "synth_target": "true"})]
    off = train_many(cfgs, data64, progress=False, options=RunOptions(device="cpu", group_runs="off"))
    assert "groups" not in capsys.readouterr().out
    on = train_many(cfgs, data64, progress=False, options=RunOptions(device="cpu", group_runs="on"))
    out = capsys.readouterr().out
    assert "5 runs to train" in out and "in 3 groups of runs that differ only in their seed" in out
    assert "warm-up of each configuration (grouped)" in out
    for a, b, cfg in zip(off, on, cfgs):
        assert b.config == cfg
        _close(a.to_dict(), b.to_dict(), f"{cfg.method}, seed {cfg.seed}")


def test_group_runs_is_checked_and_auto_groups_on_cuda_only():
    from dni_utils.tools.runner import RunOptions
    from dni_utils.trainers.unlock import train_unlock

    with pytest.raises(ValueError, match=r"group_runs='sometimes' is unknown: expected one of \('auto', 'on', 'off'\)"):
        RunOptions(device="cpu", group_runs="sometimes")
    assert not RunOptions(device="cpu", group_runs="auto").grouped()
    assert RunOptions(device="cpu", group_runs="on").grouped()
    assert not RunOptions(device="cpu", group_runs="on").grouped(train_unlock)  # no grouped version
    assert RunOptions(device="cpu", group_runs="auto").grouped(device=torch.device("cuda"))


def test_grouped_runs_in_worker_processes_are_those_of_one_process(tiny_data):
    from dni_utils.tools.runner import RunOptions, train_many

    cfgs = _configs(method="cdni") + _configs(method="nobprop")
    options = RunOptions(device="cpu", group_runs="on", estimate=False)
    here = train_many(cfgs, tiny_data, workers=1, progress=False, options=options)
    there = train_many(cfgs, tiny_data, workers=2, progress=False, options=options)
    assert [r.to_dict() for r in here] == [r.to_dict() for r in there]


def test_the_group_bench_prints_its_table(capsys):
    from dni_utils.tools import groupbench

    groupbench.main(["--device", "cpu", "--runs", "1", "2", "--batch", "4", "--steps", "1", "--rounds", "1"])
    out = capsys.readouterr().out
    assert "one by one" in out and "grouped" in out and "FLOP floor" in out
    assert out.count("paper (2x1024 synthesizers)") == 2 and "cpu (1x1024 synthesizer)" in out


def test_notebook_01_trains_grouped_when_asked_and_records_it(run_notebook, tmp_path):
    from pathlib import Path

    nb = Path(__file__).resolve().parents[1] / "notebooks" / "01_ff_mnist.ipynb"
    result = json.loads(run_notebook(nb, tmp_path, archs=["fcn"], methods=["bprop", "cdni"], seeds=[0, 1],
                                     group_runs="on").read_text())
    assert result["params"]["group_runs"] == "on"
    assert sorted(result["runs"]) == ["fcn-3-bprop-s0", "fcn-3-bprop-s1", "fcn-3-cdni-s0", "fcn-3-cdni-s1"]
    out = (tmp_path / "printed.txt").read_text()
    assert "in 2 groups of runs that differ only in their seed" in out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_cuda_a_grouped_run_equals_the_ungrouped_run_of_the_same_seed(data64):
    from dni_utils.tools.device import use_device

    device = use_device("cuda")
    for variant in ("dni, p_update 0.6", "cnn cdni"):
        cfgs = _configs(**VARIANTS[variant])
        grouped = train_ff_group(cfgs, data64, progress=False, device=device)
        for cfg, run in zip(cfgs, grouped):
            _close(train_ff(cfg, data64, progress=False, device=device).to_dict(), run.to_dict(), f"cuda {variant}")
