"""Hand-computable tests of recurrent DNI (truncated BPTT with synthetic gradients at the
boundaries), the Copy / Repeat Copy generators and the curriculum."""

import pytest
import torch
from torch import nn

from dni_utils import BackwardInterface
from dni_utils.data.tasks import Curriculum, Episode, SequenceTask, bit_errors
from dni_utils.trainers.recurrent import LSTMCore, RNNConfig, StateSynthesizer, build, run_episode, train_copy
from synth_stubs import Constant, Lookup


class ScalarCore(nn.Module):
    """s' = w·s + x, output s' (a linear RNN with one unit): every gradient is hand-computable."""

    def __init__(self, w: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))

    def initial_state(self, batch_size):
        return torch.zeros(batch_size, 1)

    def forward(self, x, s):
        s = self.w * s + x
        return s, s


def squared_error(logits, episode, start):
    return (logits - episode.y[start : start + logits.shape[0]]).pow(2).sum()


def _episode(length=7, batch=3, seed=0) -> Episode:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2, (length, batch, 3), generator=gen).float()
    y = torch.randint(0, 2, (length, batch, 2), generator=gen).float()
    return Episode(x, y, torch.ones(length, batch))


def _core(seed=0) -> LSTMCore:
    torch.manual_seed(seed)
    return LSTMCore(3, 4, 2)


def _grads(core):
    return [p.grad.detach().clone() for p in core.parameters()]


def test_bootstrapped_target_by_hand():
    # x = (1, 2, 3), y = 0, w = 0.5, T = 1: s1 = 1, s2 = 2.5, s3 = 4.25; the synthesizer says g = 4
    # everywhere and the injected gradient is scaled by 0.1. Targets:
    #   at s1: ∂(s2 − y1)²/∂s1 + w·0.1·g = 2·2.5·0.5 + 0.5·0.4 = 2.7
    #   at s2: ∂(s3 − y2)²/∂s2 (last chunk: no future)     = 2·4.25·0.5 = 4.25
    core = ScalarCore(0.5)
    ep = Episode(torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1), torch.zeros(3, 1, 1), torch.ones(3, 1))
    iface = BackwardInterface(Constant(4.0), scale=0.1)
    stats = run_episode(core, ep, 1, iface, None, step_each_chunk=False, keep=True, loss_fn=squared_error)
    assert [t.item() for t in stats.targets] == pytest.approx([2.7, 4.25])
    # dL/dw over the three chunks: chunk 0: 2·s1·s0 = 0; chunk 1: 2·s2·s1 + 0.1·g·s1 = 5.4;
    # chunk 2: 2·s3·s2 = 21.25 (s0 = 0)
    assert core.w.grad.item() == pytest.approx(5.4 + 21.25)
    assert iface.pending == 0


def test_exact_synthesizer_equals_full_bptt():
    ep = _episode()
    # Full BPTT (one chunk as long as the episode); keep the true gradients at the T = 2 boundaries.
    core = _core()
    s, states = core.initial_state(3), []
    outs = []
    for t in range(ep.length):
        out, s = core(ep.x[t], s)
        s.retain_grad()
        states.append(s)
        outs.append(out)
    from dni_utils.trainers.recurrent import sequence_loss

    sequence_loss(torch.stack(outs), ep, 0).backward()
    true = [(states[t].detach(), states[t].grad.clone()) for t in (1, 3, 5)]  # s after steps 0-1, 2-3, 4-5
    expected = _grads(core)

    core = _core()
    iface = BackwardInterface(Lookup(true), scale=1.0)
    stats = run_episode(core, ep, 2, iface, None, step_each_chunk=False, keep=True)
    for got, want in zip(_grads(core), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    # An exact synthesizer's bootstrapped targets are the true gradients themselves.
    for target, (_, grad) in zip(stats.targets, true):
        torch.testing.assert_close(target, grad, rtol=0, atol=1e-5)
    assert stats.synth_loss == pytest.approx(0.0, abs=1e-9)


def test_zero_synthesizer_equals_plain_truncated_bptt():
    episodes = [_episode(9, 3, seed) for seed in range(3)]
    params = []
    for mode in ("off", "dni"):
        core = _core()
        opt = torch.optim.Adam(core.parameters(), lr=1e-2)
        iface = BackwardInterface(Constant(0.0), mode=mode)
        for ep in episodes:
            run_episode(core, ep, 2, iface, opt)
        params.append([p.detach().clone() for p in core.parameters()])
    for a, b in zip(*params):
        assert torch.equal(a, b)


def test_truncated_bptt_drops_the_gradient_across_boundaries():
    # Plain truncated BPTT = DNI with the interface off: the gradient stops at every boundary.
    ep = _episode()
    core = _core()
    run_episode(core, ep, 2, BackwardInterface(Constant(0.0), mode="off"), None, step_each_chunk=False)
    truncated = _grads(core)
    core = _core()
    run_episode(core, ep, ep.length, BackwardInterface(Constant(0.0), mode="off"), None, step_each_chunk=False)
    assert any(not torch.allclose(a, b) for a, b in zip(truncated, _grads(core)))


def test_fresh_synthesizer_predicts_zero():
    synth = StateSynthesizer(8, hidden_layers=1, hidden=5)
    assert torch.equal(synth(torch.randn(4, 8)), torch.zeros(4, 8))


class _Count:
    """Counts the bytes of the tensors autograd holds for backward (the memory held for it)."""

    def __init__(self):
        self.live = self.peak = 0

    def pack(self, t):
        held = _Held(t, self)
        self.live += held.nbytes
        self.peak = max(self.peak, self.live)
        return held


class _Held:
    def __init__(self, t, count):
        self.t, self.count, self.nbytes = t, count, t.numel() * t.element_size()

    def __del__(self):
        self.count.live -= self.nbytes


def _peak(length, truncation, method="dni"):
    count = _Count()
    torch.manual_seed(0)
    core = LSTMCore(3, 4, 2)
    iface = BackwardInterface(StateSynthesizer(8), mode="off" if method == "bptt" else "dni")
    opt = torch.optim.Adam(core.parameters(), lr=1e-3)
    with torch.autograd.graph.saved_tensors_hooks(count.pack, lambda held: held.t):
        run_episode(core, _episode(length, 2), truncation, iface, opt)
    return count.peak


def _per_step():
    count = _Count()
    core = LSTMCore(3, 4, 2)
    with torch.autograd.graph.saved_tensors_hooks(count.pack, lambda held: held.t):
        out = core(torch.randn(2, 3), torch.randn(2, 8, requires_grad=True))
    del out
    return count.peak


@pytest.mark.parametrize("method", ["bptt", "dni"])
def test_memory_held_is_one_chunk_whatever_the_length(method):
    assert _peak(12, 3, method) == _peak(48, 3, method)
    assert _peak(48, 6, method) > _peak(48, 3, method)
    # T cores, plus at most one core's worth for the loss and the synthesizer.
    assert _peak(48, 3, method) <= 4 * _per_step()


def test_copy_episode_by_hand():
    task = SequenceTask("copy", width=3)
    ep = task.sample(2, 5, torch.Generator().manual_seed(0))
    assert ep.x.shape == (5, 5, 4) and ep.y.shape == (5, 5, 3) and ep.mask.shape == (5, 5)
    assert torch.equal(ep.x[3:], torch.zeros(2, 5, 4))  # nothing is shown while answering
    assert torch.equal(ep.x[2, :, 3], torch.ones(5)) and ep.x[:2, :, 3].sum() == 0  # the delimiter
    assert torch.equal(ep.y[3:], ep.x[:2, :, :3])  # the answer is the sequence
    assert ep.mask[:, 0].tolist() == [0, 0, 0, 1, 1]


def test_repeat_copy_episode_by_hand():
    task = SequenceTask("repeat_copy", width=3, max_repeats=3)
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        ep = task.sample(2, 4, gen)
        r = round(ep.x[2, 0, 4].item() * 3)
        assert 1 <= r <= 3 and ep.length == 2 + 1 + r * 2 + 1
        assert torch.equal(ep.y[3 : 3 + 2 * r, :, :3], ep.x[:2, :, :3].repeat(r, 1, 1))
        assert ep.y[:, 0, 3].tolist() == [0] * (ep.length - 1) + [1]  # the end marker
        assert ep.mask[:, 0].sum() == 2 * r + 1


def test_bit_errors_count_wrong_bits_on_target_steps_only():
    ep = Episode(torch.zeros(3, 2, 1), torch.tensor([[[1.0, 1.0]], [[0.0, 1.0]], [[1.0, 0.0]]]).expand(3, 2, 2),
                 torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]))
    logits = torch.full((3, 2, 2), -1.0)  # predicts 0 everywhere
    logits[2, 1] = torch.tensor([1.0, -1.0])  # sequence 1 gets its last step right
    assert bit_errors(logits, ep).tolist() == [2.0, 1.0]


def test_curriculum_grows_the_length_when_the_window_is_below_threshold():
    cur = Curriculum(threshold=0.5, window=2)
    assert not cur.record(0.4)  # window not full
    assert not cur.record(0.8)  # mean 0.6 > 0.5
    assert cur.record(0.1) and cur.n == 2 and cur.solved == 1  # mean of (0.8, 0.1) = 0.45
    assert not cur.record(0.0)  # a new window starts at the new length
    assert cur.record(0.0) and cur.solved == 2 and cur.n == 3


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(method="rtrl"), "methods=['rtrl'] is invalid"),
        (dict(task="sort"), "task='sort' is unknown"),
        (dict(truncation=0), "truncation=0 is invalid"),
        (dict(grad_scale=-1.0), "grad_scale=-1.0 is invalid"),
    ],
)
def test_bad_settings_are_refused_by_name(kw, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build(RNNConfig(**kw))


def test_a_tiny_run_is_deterministic_and_learns_length_one():
    cfg = RNNConfig(method="dni_aux", task="copy", truncation=2, hidden=16, width=2, batch_size=16, batches=150,
                    window=5, threshold=0.5, log_every=50)
    a, b = train_copy(cfg, progress=False), train_copy(cfg, progress=False)
    assert a.to_dict() == b.to_dict()
    assert a.score >= 1 and a.solved_at[0][1] == 1


class _Looped(nn.Module):
    """The same LSTM weights run as a Python loop of ``nn.LSTMCell`` steps (the slow path)."""

    def __init__(self, core: LSTMCore) -> None:
        super().__init__()
        self.core, self.hidden = core, core.hidden
        self.cell = nn.LSTMCell(core.lstm.input_size, core.hidden)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(self.cell, name, getattr(core.lstm, f"{name}_l0"))  # shared parameters

    def initial_state(self, batch_size):
        return self.core.initial_state(batch_size)

    def forward(self, x, s):
        h, c = self.cell(x, (s[:, : self.hidden], s[:, self.hidden :]))
        return self.core.readout(h), torch.cat([h, c], dim=1)


@pytest.mark.parametrize("method", ["bptt", "dni"])
def test_fused_chunks_give_the_gradients_of_a_loop_of_cells(method):
    ep = _episode(9, 3)
    grads, targets = [], []
    for fused in (True, False):
        core = _core()
        torch.manual_seed(1)
        iface = BackwardInterface(StateSynthesizer(8, hidden_layers=1, hidden=6), mode="off" if method == "bptt" else "dni")
        nn.init.normal_(iface.synthesizer.out.weight)  # a non-zero synthesizer
        stats = run_episode(core if fused else _Looped(core), ep, 2, iface, None, step_each_chunk=False, keep=True)
        grads.append(_grads(core))
        targets.append(stats.targets)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert len(targets[0]) == (4 if method == "dni" else 0)
    for a, b in zip(*targets):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
