"""Hand-computable tests of the gradient plumbing of the interfaces."""

import io

import pytest
import torch
from torch import nn

from dni_utils import BackwardInterface, ForwardInterface, make_synthesizer, synthesizer_loss


class Oracle(nn.Module):
    """A parameter-free synthesizer that returns a gradient given to it in advance."""

    def __init__(self) -> None:
        super().__init__()
        self.value: torch.Tensor | None = None

    def forward(self, trigger, context=None):
        return self.value.clone()


def _two_block_net(seed: int = 0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh()), nn.Sequential(nn.Linear(4, 3), nn.Tanh()), nn.Linear(3, 2)


def test_exact_synthesizer_makes_a_dni_step_equal_to_a_backprop_step():
    x, y = torch.randn(6, 5), torch.tensor([0, 1, 1, 0, 1, 0])
    # Backprop reference.
    f1, f2, head = _two_block_net()
    params = [*f1.parameters(), *f2.parameters(), *head.parameters()]
    h1 = f1(x)
    h1.retain_grad()
    h2 = f2(h1)
    h2.retain_grad()
    nn.functional.cross_entropy(head(h2), y, reduction="sum").backward()
    true_d1, true_d2 = h1.grad.clone(), h2.grad.clone()
    torch.optim.SGD(params, lr=0.1).step()
    expected = [p.detach().clone() for p in params]

    # DNI with oracle synthesizers that return the exact gradients.
    g1, g2, ghead = _two_block_net()
    o1, o2 = Oracle(), Oracle()
    o1.value, o2.value = true_d1, true_d2
    i1, i2 = BackwardInterface(o1), BackwardInterface(o2)
    opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (g1, g2, ghead)]
    m1 = i1.send(g1(x))
    opts[0].step()
    m2 = i2.send(g2(m1))
    opts[1].step()
    nn.functional.cross_entropy(ghead(m2), y, reduction="sum").backward()
    opts[2].step()
    got = [*g1.parameters(), *g2.parameters(), *ghead.parameters()]
    for e, g in zip(expected, got):
        torch.testing.assert_close(g.detach(), e, rtol=0, atol=1e-6)
    # The oracles were exact, so their regression targets match their predictions: zero loss.
    assert i1.update().item() == pytest.approx(0.0, abs=1e-10)
    assert i2.update().item() == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize(
    "kind, shape, hidden",
    [("linear", (7,), 0), ("mlp", (7,), 2), ("mlp", (2, 3, 3), 1), ("conv", (3, 6, 6), 2), ("conv", (3, 6, 6), 0)],
)
@pytest.mark.parametrize("context", [0, 4])
def test_fresh_synthesizer_predicts_exactly_zero(kind, shape, hidden, context):
    synth = make_synthesizer(kind, shape, hidden_layers=hidden, hidden_features=8, context_features=context)
    ctx = torch.eye(4)[torch.tensor([0, 1, 2, 3, 0])] if context else None
    pred = synth(torch.randn(5, *shape), ctx)
    assert pred.shape == (5, *shape)
    assert torch.equal(pred, torch.zeros_like(pred))


def test_fresh_interface_injects_exactly_zero():
    f = nn.Linear(3, 4)
    iface = BackwardInterface(make_synthesizer("mlp", (4,), hidden_layers=2, hidden_features=8))
    iface.send(f(torch.randn(5, 3)))
    assert torch.equal(f.weight.grad, torch.zeros_like(f.weight))
    assert torch.equal(f.bias.grad, torch.zeros_like(f.bias))


def test_upstream_has_its_gradient_before_downstream_runs():
    torch.manual_seed(0)
    f = nn.Linear(3, 2, bias=False)
    synth = make_synthesizer("linear", (2,))
    with torch.no_grad():
        synth.out.bias.copy_(torch.tensor([1.0, -2.0]))  # δ̂ = [1, -2] for every example
    downstream_calls = []
    downstream = nn.Linear(2, 1)
    downstream.register_forward_hook(lambda *a: downstream_calls.append(1))
    x = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]])
    iface = BackwardInterface(synth, scale=0.5)
    message = iface.send(f(x))
    assert downstream_calls == []
    # h = x Wᵀ, so dL/dW = (s·δ̂)ᵀ x = 0.5 · [1, -2]ᵀ · (sum of the rows of x).
    expected = 0.5 * torch.tensor([[1.0], [-2.0]]) * x.sum(0, keepdim=True)
    torch.testing.assert_close(f.weight.grad, expected)
    downstream(message)
    assert downstream_calls == [1]


def test_stacked_interfaces_regress_onto_the_bootstrapped_target():
    """Synthesizer 1's target is synthesizer 2's prediction back-propagated through block 2."""
    torch.manual_seed(0)
    f1, f2 = nn.Linear(3, 2, bias=False), nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        f2.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    s1, s2 = make_synthesizer("linear", (2,)), make_synthesizer("linear", (2,))
    with torch.no_grad():
        s1.out.bias.copy_(torch.tensor([0.5, 0.0]))  # δ̂₁ = [0.5, 0]
        s2.out.bias.copy_(torch.tensor([1.0, -1.0]))  # δ̂₂ = [1, -1]
    i1, i2 = BackwardInterface(s1, lr=1e-3), BackwardInterface(s2, lr=1e-3)
    x = torch.randn(4, 3)
    m1 = i1.send(f1(x))
    i2.send(f2(m1))
    # h₂ = h₁ W₂ᵀ, so the gradient reaching h₁ is δ̂₂ W₂ = [1, -1] [[1, 2], [3, 4]] = [-2, -2].
    torch.testing.assert_close(m1.grad, torch.tensor([[-2.0, -2.0]]).expand(4, 2))
    # L₁ = ‖δ̂₁ − target‖² / B = (2.5² + 2²) per example, averaged over the batch.
    assert i1.update().item() == pytest.approx(2.5**2 + 2.0**2)
    assert i1.n_updates == 1 and i1.pending == 0


def test_synthesizer_loss_is_normalised_by_the_batch_size():
    pred, target = torch.zeros(4, 3), torch.ones(4, 3)
    assert synthesizer_loss(pred, target).item() == pytest.approx(3.0)  # 12 squared errors / 4 examples
    # Doubling the batch with the same examples leaves the loss unchanged.
    assert synthesizer_loss(torch.cat([pred, pred]), torch.cat([target, target])).item() == pytest.approx(3.0)
    # A (B, T, H) prediction is normalised by B, not by B·T.
    assert synthesizer_loss(torch.zeros(2, 5, 3), torch.ones(2, 5, 3)).item() == pytest.approx(15.0)


def test_update_decreases_the_synthesizer_loss_towards_the_target():
    torch.manual_seed(0)
    iface = BackwardInterface(make_synthesizer("linear", (3,)), lr=0.05)
    h = torch.randn(16, 3, requires_grad=True)
    target = h.detach() @ torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 2.0]])
    losses = []
    for _ in range(200):
        iface.send(h)
        losses.append(iface.update(target).item())
    assert losses[-1] < 0.01 * losses[0]


@pytest.mark.parametrize("kind, shape", [("linear", (4,)), ("mlp", (4,)), ("conv", (2, 5, 5))])
def test_context_changes_the_prediction(kind, shape):
    torch.manual_seed(0)
    synth = make_synthesizer(kind, shape, hidden_layers=1, hidden_features=8, context_features=3)
    nn.init.normal_(synth.out.weight)  # leave the zero start behind
    synth.eval()
    trigger = torch.randn(2, *shape)
    a = synth(trigger, torch.eye(3)[[0, 0]])
    b = synth(trigger, torch.eye(3)[[1, 2]])
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="context is required"):
        synth(trigger)


def test_evaluation_mode_is_the_identity():
    synth = make_synthesizer("linear", (3,))
    nn.init.normal_(synth.out.weight)
    f = nn.Linear(2, 3)
    iface = BackwardInterface(synth).eval()
    h = f(torch.randn(4, 2))
    assert iface.send(h) is h
    assert f.weight.grad is None and iface.pending == 0


def test_warmup_trains_the_synthesizer_but_injects_nothing():
    synth = make_synthesizer("linear", (3,))
    nn.init.normal_(synth.out.weight)
    f = nn.Linear(2, 3)
    iface = BackwardInterface(synth, mode="warmup", lr=0.1)
    before = synth.out.weight.detach().clone()
    message = iface.send(f(torch.randn(4, 2)))
    assert f.weight.grad is None
    message.sum().backward()
    iface.update()
    assert not torch.equal(synth.out.weight, before)


def test_off_mode_only_cuts_the_graph():
    f = nn.Linear(2, 3)
    iface = BackwardInterface(make_synthesizer("linear", (3,)), mode="off")
    message = iface.send(f(torch.randn(4, 2)))
    assert not message.requires_grad and iface.pending == 0 and f.weight.grad is None


def test_update_without_downstream_gradient_is_a_clear_error():
    iface = BackwardInterface(make_synthesizer("linear", (3,)))
    with pytest.raises(RuntimeError, match="no pending prediction"):
        iface.update()
    iface.send(nn.Linear(2, 3)(torch.randn(4, 2)))
    with pytest.raises(RuntimeError, match="no gradient has reached the message"):
        iface.update()


def test_inject_adds_the_scaled_synthetic_gradient_to_a_loss():
    synth = make_synthesizer("linear", (2,))
    with torch.no_grad():
        synth.out.bias.copy_(torch.tensor([3.0, -1.0]))
    iface = BackwardInterface(synth, scale=0.1)
    h = torch.zeros(5, 2, requires_grad=True)
    iface.inject(h).backward()
    torch.testing.assert_close(h.grad, torch.tensor([[0.3, -0.1]]).expand(5, 2))
    assert iface.update(torch.zeros(5, 2)).item() == pytest.approx(10.0)  # 3² + 1²


def test_forward_interface_starts_at_zero_and_regresses_onto_the_real_input():
    torch.manual_seed(0)
    iface = ForwardInterface(make_synthesizer("linear", (4,), out_shape=(4,)), lr=0.05)
    x = torch.randn(8, 4)
    assert torch.equal(iface.synthetic_input(x), torch.zeros(8, 4))
    real = 2 * x
    assert iface.update(real).item() == pytest.approx((real**2).sum().item() / 8)
    losses = []
    for _ in range(200):
        iface.synthetic_input(x)
        losses.append(iface.update(real).item())
    assert losses[-1] < 0.01 * losses[0]


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: BackwardInterface(nn.Identity(), mode="sometimes"), "mode='sometimes' is unknown"),
        (lambda: BackwardInterface(nn.Linear(2, 2), lr=0.0), "lr=0.0 is invalid"),
        (lambda: make_synthesizer("rnn", (3,)), "kind='rnn' is unknown"),
        (lambda: make_synthesizer("mlp", (0,)), r"shape\[0\]=0 is invalid"),
        (lambda: make_synthesizer("mlp", (3,), hidden_layers=-1), "hidden_layers=-1 is invalid"),
        (lambda: make_synthesizer("conv", (3,)), "expected \\(C, H, W\\)"),
        (lambda: make_synthesizer("conv", (3, 4, 4), kernel_size=4), "kernel_size=4 is invalid"),
    ],
)
def test_bad_interface_arguments_are_clear_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_several_pending_predictions_each_regress_the_current_synthesizer():
    """Downstream answers for several predictions at once (two networks at two timescales): after
    the first update has stepped the synthesizer, the second prediction is made again from its
    trigger (its old graph refers to weights changed in place), and its loss is the new one's."""
    torch.manual_seed(0)
    synth = make_synthesizer("mlp", (3,), hidden_layers=1, hidden_features=8)
    nn.init.normal_(synth.out.weight)
    iface = BackwardInterface(synth, lr=0.1)
    h1, h2 = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    iface.inject(h1)
    iface.inject(h2)
    t1, t2 = torch.randn(4, 3), torch.randn(4, 3)
    before = synthesizer_loss(synth(h2.detach()), t2).item()
    iface.update(t1)  # steps the synthesizer
    with torch.no_grad():
        fresh = synthesizer_loss(synth(h2.detach()), t2).item()
    assert fresh != before
    assert iface.update(t2).item() == pytest.approx(fresh)
    assert iface.pending == 0


def test_update_returns_the_loss_on_the_device_and_last_loss_reads_it():
    """No host synchronisation per update: the loss comes back as a 0-d tensor; ``last_loss`` is
    the number, read when asked (NaN before the first update)."""
    iface = BackwardInterface(make_synthesizer("linear", (2,)), lr=0.1)
    assert iface.last_loss != iface.last_loss
    iface.send(torch.zeros(3, 2, requires_grad=True))
    loss = iface.update(torch.ones(3, 2))
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0 and not loss.requires_grad
    assert iface.last_loss == pytest.approx(2.0) and loss.item() == pytest.approx(2.0)


def test_checkpoint_state_restores_pending_predictions_and_the_optimiser():
    """An interface saved with a prediction waiting (a recurrent segment's open end) and loaded
    into a fresh one continues exactly as the original: same loss, same synthesizer after the step."""
    torch.manual_seed(0)

    def build():
        synth = make_synthesizer("mlp", (3,), hidden_layers=1, hidden_features=8)
        return BackwardInterface(synth, lr=0.1)

    a, b = build(), build()
    nn.init.normal_(a.synthesizer.out.weight)
    h = torch.randn(4, 3, requires_grad=True)
    a.inject(h)
    a.update(torch.randn(4, 3))  # the optimiser has moments now
    a.inject(torch.randn(4, 3, requires_grad=True))  # waits for its target
    saved = io.BytesIO()
    torch.save(a.checkpoint_state(), saved)  # as a checkpoint file holds it
    saved.seek(0)
    b.load_checkpoint_state(torch.load(saved, weights_only=False))
    assert b.pending == 1 and b.n_updates == 1
    target = torch.randn(4, 3)
    assert b.update(target).item() == a.update(target).item()
    for pa, pb in zip(a.synthesizer.parameters(), b.synthesizer.parameters()):
        assert torch.equal(pa, pb)
