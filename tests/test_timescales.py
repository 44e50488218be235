"""Two networks at two timescales (notebook 07): the tasks' labels, the tick schedule, the gradient
path from B to A through the interface, and the configuration checks, computed by hand."""

import pytest
import torch
import torch.nn.functional as F
from synth_stubs import Lookup
from torch import nn

from dni_utils.mechanism.interfaces import BackwardInterface
from dni_utils.mechanism.synthesizers import MLPSynthesizer
from dni_utils.trainers.timescales import (
    SYNTHETIC, TIMESCALE_METHODS, TimescaleConfig, TimescaleData, TimescaleSystem, build_system, evaluate, own_labels, synthesizer_context, train_timescales,
    train_window, window_labels,
)


def test_labels_of_a_hand_made_stream():
    digits = torch.tensor([[5, 0], [4, 9], [9, 9]])  # (T=3 ticks, 2 streams)
    assert own_labels(digits).tolist() == [[1, 0], [0, 1], [1, 1]]  # odd?
    assert window_labels(digits).tolist() == [2, 2]  # stream 0: 5, 9 are >= 5; stream 1: 9, 9
    assert window_labels(torch.tensor([[0], [4], [1], [3]])).tolist() == [0]
    assert window_labels(torch.tensor([[5], [6], [7], [8]])).tolist() == [4]


class StatelessA(nn.Module):
    """A without memory: own logits and message are linear in the digit's pixels; the state is unused."""

    def __init__(self, pixels: int, message: int = 3) -> None:
        super().__init__()
        self.own = nn.Linear(pixels, 2)
        self.msg = nn.Linear(pixels, message)

    def initial_state(self, batch):
        return torch.zeros(batch, 1)

    def forward(self, x, s):
        x = x.flatten(1)
        return self.own(x), self.msg(x), s


class RecordingB(nn.Module):
    """B that records what it read at each of its ticks; its logits are linear in the messages."""

    def __init__(self, period: int, message: int = 3) -> None:
        super().__init__()
        self.read = []
        self.lin = nn.Linear(period * message, period + 1)

    def initial_state(self, batch):
        return torch.zeros(batch, 1)

    def forward(self, messages, s):
        self.read.append(messages.detach().clone())
        return self.lin(messages), s + 1  # s counts B's ticks


class TickA(StatelessA):
    """A whose message is its input itself (the tick number, as a pixel), and which counts its ticks
    (its "hidden state", of one unit)."""

    hidden = 1

    def forward(self, x, s):
        return self.own(x.flatten(1)), x.flatten(1).clone(), s + 1


def _context_features(method, a):
    return {"cdni": 10, "cdni_own": 2, "dni_state": getattr(a, "hidden", 0)}.get(method, 0)


def _system(a, b, method, synth=None, period=2, scale=1.0):
    synth = synth or MLPSynthesizer(3, context_features=_context_features(method, a))
    mode = "dni" if method in SYNTHETIC else "off"
    interface = BackwardInterface(synth, lr=1e-3, scale=scale, mode=mode)
    return TimescaleSystem(a, b, interface, torch.optim.SGD(a.parameters(), lr=0.1),
                           torch.optim.SGD(b.parameters(), lr=0.1), method)


@pytest.mark.parametrize("method", TIMESCALE_METHODS)
def test_b_ticks_every_t_ticks_and_reads_exactly_the_messages_since_its_last_tick(method):
    period, batch = 3, 2
    a, b = TickA(1, message=1), RecordingB(period, message=1)
    system = _system(a, b, method, MLPSynthesizer(1, context_features=_context_features(method, a)), period)
    ticks = torch.arange(4 * period, dtype=torch.float32)  # the stream: tick k shows the "digit image" k
    for w in range(4):
        x = ticks[w * period : (w + 1) * period].view(period, 1, 1).expand(period, batch, 1)
        digits = torch.zeros(period, batch, dtype=torch.long)
        train_window(system, x, digits)
    assert len(b.read) == 4  # one B tick per window of T ticks
    for w, read in enumerate(b.read):
        assert read.tolist() == [[float(k) for k in range(w * period, (w + 1) * period)]] * batch
    assert system.state_a.tolist() == [[4 * period]] * batch  # A ticked every tick
    assert system.state_b.tolist() == [[4]] * batch


def test_evaluation_follows_the_same_schedule():
    period = 2
    a, b = TickA(1, message=1), RecordingB(period, message=1)
    system = _system(a, b, "dni", MLPSynthesizer(1), period)
    x = torch.arange(6, dtype=torch.float32).view(6, 1, 1)
    evaluate(system, x, torch.zeros(6, 1, dtype=torch.long), period)
    assert [r.tolist() for r in b.read] == [[[0.0, 1.0]], [[2.0, 3.0]], [[4.0, 5.0]]]
    assert a.training and b.training  # back in training mode afterwards


def _window(period=3, batch=4, pixels=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(period, batch, pixels, generator=g), torch.randint(10, (period, batch), generator=g)


def _grads(module):
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in module.parameters()]


def _exact_synthesizer(x, digits):
    """A stateless A, a B and a synthesizer that returns, for each message of the window, the
    gradient B's loss gives it (computed here by one backward pass through B)."""
    torch.manual_seed(0)
    a, b = StatelessA(x.shape[2]), RecordingB(x.shape[0])
    msgs = [a(x[t], None)[1].detach().requires_grad_() for t in range(x.shape[0])]
    logits, _ = b(torch.cat(msgs, 1), b.initial_state(x.shape[1]))
    F.cross_entropy(logits, window_labels(digits), reduction="sum").backward()
    b.zero_grad()
    return a, b, Lookup([(m.detach(), m.grad.clone()) for m in msgs])


def test_with_an_exact_synthesizer_a_receives_the_bptt_gradient():
    """Accumulated over a window (no optimiser step), A's gradient from its own losses and the
    injected δ̂_t equals BPTT's when δ̂_t is the gradient B's loss gives each message."""
    period = 3
    x, digits = _window(period)
    a, b, exact = _exact_synthesizer(x, digits)

    bptt = _system(a, b, "bptt")
    train_window(bptt, x, digits, step=False)
    a_bptt, b_bptt = _grads(a), _grads(b)
    a.zero_grad(), b.zero_grad()

    dni = _system(a, b, "dni", synth=exact)
    stats = train_window(dni, x, digits, step=False)
    for got, want in zip(_grads(a), a_bptt):
        torch.testing.assert_close(got, want)
    for got, want in zip(_grads(b), b_bptt):
        torch.testing.assert_close(got, want)
    assert stats.synth_loss < 1e-12  # each prediction equalled its target
    assert stats.a_steps == [0, 1, 2] and bptt.interface.pending == 0


def test_with_the_interface_off_a_learns_from_its_own_task_only():
    period = 3
    x, digits = _window(period)
    torch.manual_seed(0)
    a, b = StatelessA(5), RecordingB(period)
    own = sum(F.cross_entropy(a(x[t], None)[0], own_labels(digits[t]), reduction="sum") for t in range(period))
    own.backward()
    want = _grads(a)
    a.zero_grad()
    train_window(_system(a, b, "none"), x, digits, step=False)
    for got, w in zip(_grads(a), want):
        torch.testing.assert_close(got, w)


def test_dni_injects_the_prediction_and_regresses_it_onto_what_b_sent_back():
    """With a constant synthesizer δ̂ = 0.5 and scale 2, A's message layer receives 2 · 0.5 per
    message element on top of its own task's gradient; the targets are the messages' true gradients."""
    period = 2
    x, digits = _window(period)
    torch.manual_seed(0)
    a, b = StatelessA(5), RecordingB(period)

    class Half(nn.Module):
        def forward(self, trigger, context=None):
            return torch.full_like(trigger, 0.5)

    stats = train_window(_system(a, b, "dni", synth=Half(), scale=2.0), x, digits, step=False)
    # ∂/∂bias of the message layer = Σ_t Σ_batch scale · δ̂ = 2 ticks · 4 streams · 2 · 0.5
    torch.testing.assert_close(a.msg.bias.grad, torch.full((3,), 8.0))
    assert len(stats.targets) == period and stats.targets[0].shape == (4, 3)
    want = sum((0.5 - g).pow(2).sum() / 4 for g in stats.targets) / period
    assert stats.synth_loss == pytest.approx(want.item())


def test_cdni_gives_the_synthesizer_the_digit_as_context():
    seen = []

    class Spy(nn.Module):
        def forward(self, trigger, context=None):
            seen.append(context)
            return torch.zeros_like(trigger)

    x, digits = _window(2)
    train_window(_system(StatelessA(5), RecordingB(2), "cdni", synth=Spy()), x, digits)
    assert [c.argmax(1).tolist() for c in seen[:2]] == digits.tolist()


def test_cdni_own_gives_the_synthesizer_a_label_without_b_target():
    """cdni_own's context is A's own label (the parity): two digits of the same parity, one large
    and one not, give the same context, so the context cannot tell B's target."""
    seen = []

    class Spy(nn.Module):
        def forward(self, trigger, context=None):
            seen.append(context)
            return torch.zeros_like(trigger)

    x, digits = _window(2)
    train_window(_system(StatelessA(5), RecordingB(2), "cdni_own", synth=Spy()), x, digits)
    assert [c.shape[1] for c in seen[:2]] == [2, 2]
    assert [c.argmax(1).tolist() for c in seen[:2]] == (digits % 2).tolist()
    one = synthesizer_context("cdni_own", torch.tensor([1, 7]), torch.tensor([1, 7]) % 2, lambda: torch.zeros(2, 1))
    assert torch.equal(one[0], one[1]), "1 (small) and 7 (large), both odd, must give the same context"


def test_update_schedule_of_a_run_and_determinism():
    g = torch.Generator().manual_seed(0)
    data = TimescaleData(torch.rand(40, 1, 4, 4, generator=g), torch.randint(10, (40,), generator=g),
                         torch.rand(20, 1, 4, 4, generator=g), torch.randint(10, (20,), generator=g))
    kw = dict(period=4, ticks=24, batch_size=4, encoder=8, hidden_a=4, message=2, hidden_b=4, eval_every=8,
              eval_streams=3, eval_windows=2, timeline_windows=2)
    dni = train_timescales(TimescaleConfig(method="dni", **kw), data, progress=False)
    bptt = train_timescales(TimescaleConfig(method="bptt", **kw), data, progress=False)
    assert dni.timeline == {"A": list(range(8)), "B": [3, 7], "synthesizer": [3, 7]}
    assert bptt.timeline == {"A": [3, 7], "B": [3, 7], "synthesizer": []}
    assert [h["tick"] for h in dni.history] == [8, 16, 24]
    assert [(h["a_updates"], h["b_updates"], h["synth_updates"]) for h in dni.history][-1] == (24, 6, 24)
    assert [(h["a_updates"], h["b_updates"], h["synth_updates"]) for h in bptt.history][-1] == (6, 6, 0)
    again = train_timescales(TimescaleConfig(method="dni", **kw), data, progress=False)
    assert again.to_dict() == dni.to_dict()


def test_the_real_networks_build_for_every_method():
    for method in TIMESCALE_METHODS:
        system = build_system(TimescaleConfig(method=method, period=2, ticks=4, eval_every=2, encoder=4, hidden_a=3,
                                              message=2, hidden_b=3), in_features=6)
        stats = train_window(system, torch.rand(2, 5, 6), torch.randint(10, (2, 5)))
        assert stats.a_steps == ([1] if method == "bptt" else [0, 1])
        assert system.interface.mode == ("dni" if method in SYNTHETIC else "off")


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(method="rtrl"), "methods=['rtrl'] is invalid"),
        (dict(period=0), "period=0 is invalid"),
        (dict(period=3, ticks=10), "ticks=10 is invalid: expected a multiple of the period T=3"),
        (dict(period=3, ticks=12, eval_every=4), "eval_every=4 is invalid"),
        (dict(lr=0.0), "lr=0.0 is invalid"),
        (dict(synth_hidden_layers=-1), "synth_hidden_layers=-1 is invalid"),
    ],
)
def test_bad_configs_name_the_field(kw, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        TimescaleConfig(**kw).validate()


def test_the_recorded_cosine_is_that_of_the_injected_prediction_and_its_target():
    period = 3
    x, digits = _window(period)
    a, b, exact = _exact_synthesizer(x, digits)
    assert train_window(_system(a, b, "dni", synth=exact), x, digits, step=False).synth_cos == pytest.approx(1.0)

    class Opposite(nn.Module):
        def forward(self, trigger, context=None):
            return -exact(trigger)

    a.zero_grad(), b.zero_grad()
    assert train_window(_system(a, b, "dni", synth=Opposite()), x, digits, step=False).synth_cos == pytest.approx(-1.0)


def test_dni_state_gives_the_synthesizer_a_s_hidden_state_after_the_tick():
    seen = []

    class Spy(nn.Module):
        def forward(self, trigger, context=None):
            seen.append(context.clone())
            return torch.zeros_like(trigger)

    a, b = TickA(1, message=1), RecordingB(2, message=1)
    x = torch.arange(2, dtype=torch.float32).view(2, 1, 1)
    train_window(_system(a, b, "dni_state", synth=Spy()), x, torch.zeros(2, 1, dtype=torch.long))
    assert [c.tolist() for c in seen[:2]] == [[[1.0]], [[2.0]]]  # TickA's state counts its ticks
