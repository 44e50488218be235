"""Notebook 05's new pieces: the fused Adam fast path, the per-cell claim, the levelling test and
the diagnosis of the synthesizer against the true boundary gradients."""

import pytest
import torch

from dni_utils.data.tasks import SequenceTask
from dni_utils.experiments.nb05_rnn_copy import (
    advantage, claims, failed_asserted_claims, late_gain, paper_rows, train_copy_exact_gradient, train_copy_exact_target,
)
from dni_utils.experiments.nb05_rnn_copy_diagnosis import diagnose, least_squares_cosine, true_boundary_gradients
from dni_utils.mechanism.interfaces import BackwardInterface
from dni_utils.trainers.recurrent import (
    ExactFutureGradient, LSTMCore, RNNConfig, RNNRun, StateSynthesizer, adam, build, run_episode, train_copy,
)


def test_fused_adam_gives_the_same_training_as_the_loop_it_replaces():
    # Copy's fast path: the fused Adam kernel for the core and the synthesizer. Ten DNI episodes
    # with each must give the same weights, to float rounding.
    weights = {}
    for fused in (False, True):
        cfg = RNNConfig(method="dni_aux", task="repeat_copy", truncation=2, hidden=16, width=4, batch_size=8,
                        fused_adam=fused)
        task, core, interface, optimizer = build(cfg)
        gen = torch.Generator().manual_seed(1)
        for _ in range(10):
            run_episode(core, task.sample(3, 8, gen), 2, interface, optimizer, aux_weight=0.1)
        weights[fused] = [p.detach().clone() for p in [*core.parameters(), *interface.synthesizer.parameters()]]
    for a, b in zip(weights[False], weights[True]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_adam_factory_makes_a_fused_optimizer_only_when_asked():
    p = [torch.nn.Parameter(torch.zeros(3))]
    assert adam(0.1, fused=True)(p).defaults["fused"] is True
    assert not adam(0.1)(p).defaults["fused"]


def _run(score: int, solved_at_batches: list[int], batches: int = 100, method: str = "dni") -> RNNRun:
    cfg = RNNConfig(method=method, batches=batches, log_every=25)
    history, solved = [], 0
    for b in (25, 50, 75, 100):
        solved = sum(1 for s in solved_at_batches if s <= b)
        history.append({"batch": b, "solved": solved})
    assert solved == score
    return RNNRun(cfg, score=score, solved_at=[[b, i + 1] for i, b in enumerate(solved_at_batches)], history=history)


def test_late_gain_counts_the_lengths_solved_in_the_last_quarter():
    assert late_gain(_run(3, [10, 20, 30])) == 0
    assert late_gain(_run(3, [10, 80, 90])) == 2
    assert late_gain(_run(2, [10, 76])) == 1


def test_the_claim_needs_dni_above_bptt_beyond_the_spread_in_every_cell():
    flat = lambda n: _run(n, list(range(1, n + 1)))  # noqa: E731
    runs = {}
    for s, (b, d) in enumerate([(2, 5), (3, 6), (2, 6)]):
        runs[("copy", 2, "bptt", s)] = flat(b)
        runs[("copy", 2, "dni", s)] = flat(d)
    for s, (b, d) in enumerate([(2, 3), (3, 2), (2, 4)]):  # T=3: DNI ahead on average, within the spread
        runs[("copy", 3, "bptt", s)] = flat(b)
        runs[("copy", 3, "dni", s)] = flat(d)
    assert claims(runs, 0.0) == {"dni_beats_bptt_at_every_T": False, "dni_beats_bptt_at_every_T_on_copy": False,
                                 "curves_levelled": True}
    only_t2 = {k: r for k, r in runs.items() if k[1] == 2}
    assert claims(only_t2, 0.0)["dni_beats_bptt_at_every_T"]
    only_t2[("copy", 2, "exact_gradient", 0)] = flat(8)  # the upper bound, beyond DNI's scores at T = 2
    only_t2[("copy", 2, "exact_gradient", 1)] = flat(9)
    only_t2[("copy", 2, "exact_gradient", 2)] = _run(9, [1, 2, 3, 4, 5, 6, 7, 80, 90])  # late: not in curves_levelled
    assert claims(only_t2, 0.0)["exact_gradient_beats_dni_at_every_T"] and claims(only_t2, 0.0)["curves_levelled"]
    assert not claims(only_t2, 4.0)["dni_beats_bptt_at_every_T"]  # a margin larger than the gap
    assert failed_asserted_claims(claims(runs, 0.0), ["curves_levelled", "dni_beats_bptt_at_every_T"]) == [
        "dni_beats_bptt_at_every_T"]
    assert failed_asserted_claims(claims(runs, 0.0), True) == ["dni_beats_bptt_at_every_T",
                                                               "dni_beats_bptt_at_every_T_on_copy"]
    assert failed_asserted_claims(claims(runs, 0.0), False) == []
    only_t2 = {k: r for k, r in only_t2.items() if k[2] != "exact_gradient"}
    gap = advantage(only_t2).iloc[0]
    assert (gap["BPTT"], gap["DNI"], gap["difference"]) == pytest.approx((7 / 3, 17 / 3, 10 / 3))
    assert gap["factor"] == pytest.approx(17 / 7) and gap["paper factor"] == pytest.approx(16 / 7)
    row = [r for r in paper_rows(only_t2) if r["method"] == "DNI"][0]
    assert (row["reproduced"], row["n"], row["paper"]) == (pytest.approx(17 / 3), 3, 16)
    assert row["spread"] == pytest.approx(torch.tensor([5.0, 6.0, 6.0]).std().item())
    runs[("copy", 2, "dni", 0)] = _run(3, [10, 80, 90])  # two lengths in the last quarter
    assert not claims(runs, 0.0)["curves_levelled"]


def test_true_boundary_gradients_match_the_targets_of_the_last_boundary():
    # At the last boundary nothing is injected after it, so the bootstrapped target there is the
    # true gradient of the last chunk's loss: what full BPTT gives for the future of that state.
    torch.manual_seed(0)
    task = SequenceTask("copy", 3)
    core = LSTMCore(task.in_features, 8, task.out_features)
    interface = BackwardInterface(StateSynthesizer(core.state_size), lr=1e-2, scale=0.1)
    episode = task.sample(3, 5, torch.Generator().manual_seed(0))  # 7 steps: boundaries at 2, 4, 6
    pairs = true_boundary_gradients(core, episode, 2)
    assert [tuple(s.shape) for s, _ in pairs] == [(5, 16)] * 3
    stats = run_episode(core, episode, 2, interface, None, step_each_chunk=False, keep=True)
    torch.testing.assert_close(stats.targets[-1], pairs[-1][1])
    torch.testing.assert_close(stats.chunk_starts[-1], pairs[-1][0])
    assert all(p.grad is not None for p in core.parameters())  # left as run_episode made it


def test_least_squares_cosine_is_one_for_an_affine_gradient_and_small_for_noise():
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(400, 6, generator=gen)
    a, b = torch.randn(6, 6, generator=gen), torch.randn(6, generator=gen)
    assert least_squares_cosine(s, s @ a + b) == pytest.approx(1.0, abs=1e-4)
    assert abs(least_squares_cosine(s, torch.randn(400, 6, generator=gen))) < 0.2


def test_diagnose_measures_every_few_batches_and_refuses_what_it_cannot_measure():
    cfg = RNNConfig(method="dni", task="copy", truncation=2, hidden=8, width=2, batch_size=4, batches=6)
    df = diagnose(cfg, n=2, every=3, probe=64)
    assert list(df["batch"]) == [3, 6]
    assert df[["synthesizer cosine", "least-squares cosine"]].abs().le(1.0 + 1e-6).all().all()
    with pytest.raises(ValueError, match="method='bptt' is invalid"):
        diagnose(RNNConfig(method="bptt", batches=2), n=2, every=1)
    with pytest.raises(ValueError, match="no truncation boundary"):
        diagnose(RNNConfig(method="dni", truncation=8, batches=2), n=2, every=1)


def test_the_exact_boundary_gradient_is_what_full_bptt_gives_at_each_boundary():
    torch.manual_seed(0)
    task = SequenceTask("copy", 3)
    core = LSTMCore(task.in_features, 8, task.out_features)
    episode = task.sample(3, 5, torch.Generator().manual_seed(0))  # 7 steps: boundaries at 2, 4, 6
    pairs = true_boundary_gradients(core, episode, 2)
    exact = ExactFutureGradient(core, 2)
    exact.start(episode)
    for state, grad in pairs:
        torch.testing.assert_close(exact(state), grad)
        torch.testing.assert_close(exact(state.clone()), grad)  # the same state again: the same boundary
    assert all(p.grad is None for p in core.parameters())
    with pytest.raises(RuntimeError, match="start"):
        ExactFutureGradient(core, 2)(pairs[0][0])


def test_the_exact_bounds_change_the_run_and_only_dni_can_have_them():
    cfg = RNNConfig(method="dni", task="copy", truncation=2, hidden=8, width=2, batch_size=4, batches=6,
                    window=2, threshold=0.5, log_every=3)
    plain = train_copy(cfg, progress=False).history
    a, b = train_copy_exact_gradient(cfg, progress=False), train_copy(cfg, progress=False, exact="gradient")
    assert a.to_dict() == b.to_dict() and a.history != plain
    c, d = train_copy_exact_target(cfg, progress=False), train_copy(cfg, progress=False, exact="target")
    assert c.to_dict() == d.to_dict() and c.history not in (plain, a.history)
    with pytest.raises(ValueError, match="method='bptt' is invalid with exact='gradient'"):
        train_copy(RNNConfig(method="bptt", batches=2), progress=False, exact="gradient")
    with pytest.raises(ValueError, match="exact='oracle' is unknown"):
        train_copy(cfg, progress=False, exact="oracle")


def test_the_exact_target_replaces_the_bootstrapped_one():
    torch.manual_seed(0)
    task = SequenceTask("copy", 3)
    core = LSTMCore(task.in_features, 8, task.out_features)
    interface = BackwardInterface(StateSynthesizer(core.state_size), lr=1e-2, scale=0.1)
    episode = task.sample(3, 5, torch.Generator().manual_seed(0))
    exact = ExactFutureGradient(core, 2)
    exact.start(episode)
    stats = run_episode(core, episode, 2, interface, None, step_each_chunk=False, keep=True, true_target=exact)
    for (_, grad), target in zip(true_boundary_gradients(core, episode, 2), stats.targets):
        torch.testing.assert_close(target, grad)
