"""Grouped two-timescale runs: R seeds of notebook 07's system as one give each seed's ungrouped run.

In float64, as ``test_grouped_recurrent.py``: the grouped LSTM cells sum their gates in another
order than ``nn.LSTMCell``, so the two agree to rounding, not bit for bit. Learning rates of 1e-2
move the synthesizer away from its zero start within the first window, so its losses, its
cosines and the gradient it injects into A differ from run to run and from zero.
"""

from dataclasses import replace

import pytest
import torch

from conftest import assert_nested_close
from dni_utils.trainers.grouped_timescales import GroupedTimescaleSystem, check_group, train_timescales_group
from dni_utils.trainers.timescales import (
    SYNTHETIC, TIMESCALE_METHODS, DigitStream, TimescaleConfig, TimescaleData, build_system, train_timescales,
    train_window,
)

SEEDS = (0, 1, 2)
SMALL = dict(batch_size=4, encoder=8, hidden_a=4, message=2, hidden_b=4, lr=1e-2, synth_lr=1e-2, eval_streams=8,
             eval_windows=2, timeline_windows=2)


@pytest.fixture
def float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def _digits() -> TimescaleData:
    g = torch.Generator().manual_seed(0)
    return TimescaleData(torch.rand(60, 1, 4, 4, generator=g), torch.randint(10, (60,), generator=g),
                         torch.rand(30, 1, 4, 4, generator=g), torch.randint(10, (30,), generator=g))


def _configs(method: str, period: int, seeds=SEEDS, **fields) -> list[TimescaleConfig]:
    kw = {**SMALL, "ticks": 6 * period, "eval_every": 3 * period, **fields}
    return [TimescaleConfig(method=method, period=period, seed=s, **kw) for s in seeds]


VARIANTS = {f"{m}, T={t}": (m, t, {}) for m in TIMESCALE_METHODS for t in (2, 3)}
VARIANTS["cdni, T=2, one hidden synthesizer layer, scale 0.5"] = ("cdni", 2, dict(synth_hidden_layers=1,
                                                                                   synth_hidden=4, grad_scale=0.5))
VARIANTS["dni_state, T=3, two seeds"] = ("dni_state", 3, dict(seeds=(4, 7)))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_grouped_run_equals_the_ungrouped_run_of_the_same_seed(float64, variant):
    """Every history entry (ticks, update counts, A's and B's test accuracy, A's and B's training
    losses, the synthesizer's loss and cosine), the timeline and the final accuracies of each seed."""
    method, period, fields = VARIANTS[variant]
    cfgs = _configs(method, period, **fields)
    data = _digits()
    grouped = train_timescales_group(cfgs, data, progress=False)
    alone = [train_timescales(c, data, progress=False) for c in cfgs]
    assert len(alone[0].history) == 2
    losses = {run.history[-1]["b_loss"] for run in alone}
    assert len(losses) == len(cfgs), f"{variant}: the seeds' runs did not differ: {losses}"
    if method in SYNTHETIC:
        assert all(run.history[-1]["synth_loss"] > 0 for run in alone)
    for cfg, a, g in zip(cfgs, alone, grouped):
        assert g.config == cfg
        assert_nested_close(a.to_dict(), g.to_dict(), f"{variant}, seed {cfg.seed}")


@pytest.mark.parametrize("method", TIMESCALE_METHODS)
def test_grouped_weights_and_states_equal_each_run_after_some_windows(float64, method):
    """After four windows of T = 3, every run's A, B and synthesizer weights and its carried states
    equal those of its ungrouped system trained on the same windows."""
    cfgs = _configs(method, 3)
    data = _digits()
    group = GroupedTimescaleSystem(cfgs, 16)
    singles = [build_system(c, 16) for c in cfgs]
    group.train()
    streams = [DigitStream(data.x_train, data.y_train, c.batch_size, seed=10 + c.seed) for c in cfgs]
    for _ in range(4):
        idx = torch.stack([s.draw(3) for s in streams], 2)  # (T, B, R)
        group.window(data.x_train[idx], data.y_train[idx])
        for k, system in enumerate(singles):
            system.train()
            train_window(system, data.x_train[idx[:, :, k]], data.y_train[idx[:, :, k]])
    for r, (cfg, single) in enumerate(zip(cfgs, singles)):
        mine = build_system(cfg, 16)
        group.copy_to(r, mine)
        for part in ("a", "b"):
            for (name, x), y in zip(getattr(mine, part).state_dict().items(), getattr(single, part).state_dict().values()):
                torch.testing.assert_close(x, y, rtol=0, atol=1e-10, msg=f"{method}, run {r}: {part}.{name}")
        for (name, x), y in zip(mine.interface.synthesizer.state_dict().items(),
                                single.interface.synthesizer.state_dict().values()):
            torch.testing.assert_close(x, y, rtol=0, atol=1e-10, msg=f"{method}, run {r}: synthesizer.{name}")
        torch.testing.assert_close(group.state_a[:, r], single.state_a, rtol=0, atol=1e-10)
        torch.testing.assert_close(group.state_b[:, r], single.state_b, rtol=0, atol=1e-10)


def test_a_group_refuses_runs_that_differ_in_more_than_the_seed():
    a, b = _configs("dni", 2)[:2]
    with pytest.raises(ValueError, match=r"may differ only in \('seed',\): these differ in \['hidden_b', 'period'\]"):
        check_group([a, replace(b, period=3, hidden_b=5)])
    with pytest.raises(ValueError, match=r"these differ in \['method'\]"):
        train_timescales_group([a, replace(b, method="cdni")], _digits(), progress=False)
    with pytest.raises(ValueError, match=r"cfgs=\[\] is invalid"):
        check_group([])
    with pytest.raises(ValueError, match="lr=0 is invalid"):
        check_group([a, replace(b, lr=0)])
    check_group([a, b])  # the seed alone may differ


def test_a_diverging_run_is_named_by_its_seed(float64, monkeypatch):
    from dni_utils.trainers import grouped_timescales
    from dni_utils.trainers.recurrent import DivergenceError

    cfgs = _configs("dni", 2)
    window = grouped_timescales.GroupedTimescaleSystem.window

    calls = []

    def poisoned(self, x, digits):  # run 1's B loss (column T) is NaN from window 2 on
        values = window(self, x, digits)
        calls.append(len(calls) + 1)
        if len(calls) >= 2:
            values[1, 2] = float("nan")
        return values

    monkeypatch.setattr(grouped_timescales.GroupedTimescaleSystem, "window", poisoned)
    with pytest.raises(DivergenceError, match=r"seed=1: a training loss became non-finite in window 2"):
        train_timescales_group(cfgs, _digits(), progress=False)


def test_train_many_groups_timescale_runs_when_asked(capsys):
    from dni_utils.tools.runner import RunOptions, train_many

    cfgs = _configs("cdni", 2)[:2] + _configs("bptt", 2)[:1]
    data = _digits()
    assert not RunOptions(device="cpu", group_runs="auto").grouped(train_timescales)
    assert RunOptions(device="cpu", group_runs="on").grouped(train_timescales)
    off = train_many(cfgs, data, progress=False, train=train_timescales, options=RunOptions(device="cpu", estimate=False))
    on = train_many(cfgs, data, progress=False, train=train_timescales,
                    options=RunOptions(device="cpu", group_runs="on", estimate=False))
    assert "in 2 groups of runs that differ only in their seed" in capsys.readouterr().out
    for a, b in zip(off, on):
        assert b.config == a.config
        assert_nested_close(a.to_dict(), b.to_dict(), f"{a.config.method}, seed {a.config.seed}", rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_cuda_a_grouped_run_equals_the_ungrouped_run_of_the_same_seed(float64):
    from dni_utils.tools.device import use_device

    device = use_device("cuda")
    for method in ("bptt", "cdni", "dni_state"):
        cfgs = _configs(method, 3)
        grouped = train_timescales_group(cfgs, _digits(), progress=False, device=device)
        for cfg, run in zip(cfgs, grouped):
            alone = train_timescales(cfg, _digits(), progress=False, device=device)
            assert_nested_close(alone.to_dict(), run.to_dict(), f"cuda {method}, seed {cfg.seed}")
