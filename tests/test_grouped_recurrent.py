"""Grouped Copy / Repeat Copy runs: R seeds as one model give each seed's ungrouped run.

In float64, as ``test_grouped.py``: the grouped LSTM sums its gates in another order than
``nn.LSTM``, so the two agree to rounding, not bit for bit. The runs' curricula move apart within a
few batches (a threshold every run meets at once, a window of one batch), so their episode lengths
differ and the padding, the loss masks and the masked optimiser steps are exercised.
"""


import pytest
import torch

from conftest import assert_nested_close
from dni_utils.data.tasks import SequenceTask
from dni_utils.trainers.grouped_recurrent import GroupedCopyTrainer, check_group, group_key, groups, train_copy_group
from dni_utils.trainers.recurrent import RNNConfig, build, run_episode, train_copy

SEEDS = (0, 1, 2)
# window 1 and a threshold that the runs cross at different batches: lengths 1, 2, 3 ... per run
SMALL = dict(task="copy", truncation=2, hidden=8, width=3, batch_size=4, batches=10, lr=1e-2, synth_lr=1e-2,
             synth_steps=2, threshold=1.0, window=1, log_every=5)

VARIANTS = {
    "bptt": (dict(method="bptt"), None),
    "dni": (dict(method="dni"), None),
    "dni, one hidden synthesizer layer": (dict(method="dni", synth_hidden_layers=1, synth_hidden=8), None),
    "dni_aux": (dict(method="dni_aux"), None),
    "dni_aux, repeat copy, T=3": (dict(method="dni_aux", task="repeat_copy", truncation=3), None),
    "dni, exact gradient": (dict(method="dni"), "gradient"),
    "dni, exact target": (dict(method="dni"), "target"),
}


@pytest.fixture
def float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def _configs(**fields):
    return [RNNConfig(seed=s, **{**SMALL, **fields}) for s in SEEDS]


_close = assert_nested_close


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_grouped_run_equals_the_ungrouped_run_of_the_same_seed(float64, variant):
    """Every history row (length, solved, loss, bits error, synthesizer and auxiliary losses), the
    lengths solved and the score of each seed, while the seeds' curricula move apart."""
    fields, exact = VARIANTS[variant]
    cfgs = _configs(**fields)
    grouped = train_copy_group(cfgs, progress=False, exact=exact)
    alone = [train_copy(c, progress=False, exact=exact) for c in cfgs]
    lengths = {tuple(h["length"] for h in run.history) for run in alone}
    if cfgs[0].task == "copy":  # (Repeat Copy's episodes differ in length anyway: each run draws its own R)
        assert len(lengths) > 1, f"{variant}: the runs' curricula did not differ: {lengths}"
    for cfg, a, g in zip(cfgs, alone, grouped):
        _close(a.to_dict(), g.to_dict(), f"{variant}, seed {cfg.seed}")


@pytest.mark.parametrize("method", ["bptt", "dni_aux"])
def test_grouped_weights_equal_each_run_after_episodes_of_different_lengths(float64, method):
    """Episodes of 1, 3 and 4 vectors (3, 7 and 9 steps): after each, every run's core and
    synthesizer weights equal those of its ungrouped run; a run whose episode ended did not move."""
    cfgs = [RNNConfig(seed=s, method=method, **{k: v for k, v in SMALL.items() if k != "method"}) for s in SEEDS]
    group = GroupedCopyTrainer(cfgs)
    singles = [build(c) for c in cfgs]
    group.train()
    gens = [torch.Generator().manual_seed(10 + s) for s in SEEDS]
    task = SequenceTask("copy", SMALL["width"])
    aux = 0.1 if method == "dni_aux" else 0.0
    for _ in range(3):
        episodes = [task.sample(n, SMALL["batch_size"], g) for n, g in zip((1, 3, 4), gens)]
        group.episode(episodes)
        for (_, core, interface, opt), episode in zip(singles, episodes):
            core.train()
            interface.train()
            run_episode(core, episode, SMALL["truncation"], interface, opt, aux_weight=aux)
    for r, (_, core, interface, _) in enumerate(singles):
        mine = build(cfgs[r])
        group.core.copy_to(r, mine[1])
        group.interface.synthesizer.copy_to(r, mine[2].synthesizer)
        for (name, a), b in zip(mine[1].state_dict().items(), core.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-10, msg=f"{method}, run {r}: core.{name}")
        for (name, a), b in zip(mine[2].synthesizer.state_dict().items(), interface.synthesizer.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-10, msg=f"{method}, run {r}: synthesizer.{name}")


def test_configs_group_by_everything_but_the_seed_and_mixed_groups_are_refused():
    a, b, c = _configs(method="dni")
    other = RNNConfig(seed=0, **{**SMALL, "truncation": 3})
    assert group_key(a) == group_key(b) != group_key(other)
    assert groups([a, other, b, c]) == [[0, 2, 3], [1]]
    with pytest.raises(ValueError, match="differ only in"):
        check_group([a, other])
    with pytest.raises(ValueError, match="method='bptt' is invalid with exact='gradient'"):
        check_group(_configs(method="bptt"), exact="gradient")
    with pytest.raises(ValueError, match="exact='oracle' is unknown"):
        check_group([a], exact="oracle")


def test_train_many_groups_copy_runs_and_auto_leaves_the_cpu_ungrouped(capsys):
    from dni_utils.tools.runner import RunOptions, train_many
    from dni_utils.trainers.recurrent import train_copy_exact_target

    cfgs = _configs(method="dni")[:2] + _configs(method="bptt")[:1]
    small = [RNNConfig(**{**c.__dict__, "batches": 4, "log_every": 2}) for c in cfgs]
    assert not RunOptions(device="cpu", group_runs="auto").grouped(train_copy)
    assert RunOptions(device="cpu", group_runs="on").grouped(train_copy_exact_target)
    assert RunOptions(device="cpu", group_runs="auto").grouped(train_copy, device=torch.device("cuda"))
    off = train_many(small, None, progress=False, train=train_copy, options=RunOptions(device="cpu", estimate=False))
    on = train_many(small, None, progress=False, train=train_copy,
                    options=RunOptions(device="cpu", group_runs="on", estimate=False))
    assert "in 2 groups of runs that differ only in their seed" in capsys.readouterr().out
    for a, b in zip(off, on):
        assert b.config == a.config
        _close(a.to_dict(), b.to_dict(), f"{a.config.method}, seed {a.config.seed}", rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_cuda_a_grouped_run_equals_the_ungrouped_run_of_the_same_seed(float64):
    from dni_utils.tools.device import use_device

    device = use_device("cuda")
    for variant in ("dni_aux", "dni, exact target"):
        fields, exact = VARIANTS[variant]
        cfgs = _configs(**fields)
        grouped = train_copy_group(cfgs, progress=False, device=device, exact=exact)
        for cfg, run in zip(cfgs, grouped):
            alone = train_copy(cfg, progress=False, device=device, exact=exact)
            _close(alone.to_dict(), run.to_dict(), f"cuda {variant}, seed {cfg.seed}")


@pytest.mark.parametrize("method", ["bptt", "dni", "dni_aux"])
def test_a_grouped_language_model_run_equals_the_ungrouped_run_of_the_same_seed(float64, method):
    """Two epochs of a short text (the state carried across segments and reset at each epoch, the
    synthetic gradient waiting at each segment's open end), three validation points."""
    from dni_utils.data.text import markov_text
    from dni_utils.trainers.grouped_recurrent import train_lm_group
    from dni_utils.trainers.language_model import LMConfig, train_lm

    corpus = markov_text(n_symbols=4, n_train=4_000, n_eval=200, seed=1)
    cfgs = [LMConfig(method=method, truncation=3, hidden=8, batch_size=40, train_chars=9_000, eval_every=3_000,
                     eval_streams=2, segment=20, lr=1e-2, synth_hidden=8, grad_scale=0.1, squash_cell=True, seed=s)
            for s in (0, 1)]
    grouped = train_lm_group(cfgs, corpus, progress=False)
    for cfg, run in zip(cfgs, grouped):
        alone = train_lm(cfg, corpus, progress=False)
        assert len(alone.history) == 3
        _close(alone.to_dict(), run.to_dict(), f"{method}, seed {cfg.seed}")
