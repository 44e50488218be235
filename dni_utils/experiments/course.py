"""The course notebook's network and its checks (``notebooks/course/``).

A student writes a synthesizer, ``send`` (inject δ̂ into upstream's graph), ``update`` (regress
onto the gradient that came back), ``dni_step`` (two interfaces, bootstrapping) and the cDNI
context. After each step a ``check_*`` function runs the student's code and the reference in
``dni_utils`` (``MLPSynthesizer``, ``BackwardInterface``, ``synthesizer_loss``) on the same small
case and raises an ``AssertionError`` that says what differs and what to look at.

The student's functions have these signatures::

    Synthesizer(features, context_features=0, hidden=256)(h, context=None) -> δ̂        # (B, D)
    send(h, synthesizer, context=None, scale=1.0) -> (message, prediction)
    update(prediction, message, optimizer) -> float                                    # L_M
    dni_step(net, x, y, context=None) -> float                                         # loss / B
    label_context(y, n_classes=10) -> c                                                # (B, C)
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from dni_utils.mechanism.interfaces import BackwardInterface, synthesizer_loss
from dni_utils.mechanism.synthesizers import make_synthesizer
from dni_utils.trainers.feedforward import task_loss


class DecoupledMLP(nn.Module):
    """``depth`` blocks (Linear, ReLU; the first flattens the image), a Linear output layer, one
    synthesizer per block and an Adam optimiser for every block, the output layer and every
    synthesizer, so that each can step on its own.

    make_synthesizer: builds the synthesizer of a block from its width (``width -> nn.Module``).
    """

    def __init__(
        self,
        make_synthesizer: Callable[[int], nn.Module],
        in_features: int = 784,
        width: int = 256,
        depth: int = 2,
        n_classes: int = 10,
        lr: float = 1e-4,  # Adam, blocks and output layer
        synth_lr: float = 1e-3,  # Adam, synthesizers (faster than the layers they serve: notebook 09)
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("width", width), ("depth", depth), ("n_classes", n_classes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} is invalid: expected a positive integer")
        blocks = [nn.Sequential(nn.Flatten(), nn.Linear(in_features, width), nn.ReLU())]
        blocks += [nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(depth - 1)]
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(width, n_classes)
        self.synthesizers = nn.ModuleList(make_synthesizer(width) for _ in range(depth))
        self.block_opts = [torch.optim.Adam(b.parameters(), lr=lr) for b in self.blocks]
        self.head_opt = torch.optim.Adam(self.head.parameters(), lr=lr)
        self.synth_opts = [torch.optim.Adam(s.parameters(), lr=synth_lr) for s in self.synthesizers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The plain network (no interface): what is evaluated."""
        for block in self.blocks:
            x = block(x)
        return self.head(x)  # (B, n_classes)


def reference_dni_step(
    net: DecoupledMLP, x: torch.Tensor, y: torch.Tensor, context: torch.Tensor | None = None
) -> float:
    """One DNI step of ``net`` with ``dni_utils.BackwardInterface`` (the reference for ``dni_step``)."""
    ifaces = [BackwardInterface(s, optimizer=lambda _params, o=o: o) for s, o in zip(net.synthesizers, net.synth_opts)]
    message = x
    for i, (block, iface, opt) in enumerate(zip(net.blocks, ifaces, net.block_opts)):
        opt.zero_grad(set_to_none=True)
        message = iface.send(block(message), context)  # block i holds the gradient of <h_i, δ̂_i>
        opt.step()
        if i > 0:  # δ̂_i back-propagated through block i reached message i-1: M_{i-1}'s target
            ifaces[i - 1].update()
    loss = task_loss(net.head(message), y)
    net.head_opt.zero_grad(set_to_none=True)
    loss.backward()  # the true gradient at the last message
    net.head_opt.step()
    ifaces[-1].update()
    return loss.item() / x.shape[0]


def _require(condition: bool, message: str) -> None:
    """A check's verdict: an ``AssertionError`` that says what is wrong (kept under ``python -O`` too)."""
    if not condition:
        raise AssertionError(message)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def _randomise_last_layer(synth: nn.Module, seed: int) -> nn.Module:
    """Leave the zero start behind, so that a check sees non-zero synthetic gradients."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        synth.out.weight.copy_(torch.randn(synth.out.weight.shape, generator=gen))
        synth.out.bias.copy_(torch.randn(synth.out.bias.shape, generator=gen))
    return synth


def _fit(synth: nn.Module, h: torch.Tensor, target: torch.Tensor, context: torch.Tensor | None) -> float:
    """Regress ``synth`` onto ``target``; returns the final loss over the first."""
    opt = torch.optim.Adam(synth.parameters(), lr=1e-2)
    first = last = None
    for _ in range(300):
        loss = synthesizer_loss(synth(h, context), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
        last = loss.item()
    return last / first


def check_synthesizer(Synthesizer: Callable[..., nn.Module]) -> None:
    """A fresh synthesizer predicts exactly zero with the trigger's shape (as ``make_synthesizer``'s
    do), learns a gradient that depends on the trigger, and reads the context when it has one."""
    torch.manual_seed(0)
    h, context = torch.randn(32, 6), F.one_hot(torch.arange(32) % 3, 3).float()  # (B, D), (B, C)
    for ctx_features, ctx in ((0, None), (3, context)):
        synth = Synthesizer(6, context_features=ctx_features, hidden=16)
        reference = make_synthesizer("mlp", (6,), hidden_layers=1, hidden_features=16, context_features=ctx_features)
        pred, expected = synth(h, ctx), reference(h, ctx)
        shape = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
        want = tuple(expected.shape)
        _require(shape == want, f"the prediction must have the trigger's shape {want}, got {shape}")
        _require(
            torch.equal(pred, expected),
            "a fresh synthesizer must predict exactly zero (the zero start: zero the weight and bias of its last "
            f"layer), got values up to {pred.abs().max().item():.3g}",
        )
        _require(any(p.requires_grad for p in synth.parameters()), "the synthesizer has no trainable parameters")
    synth = Synthesizer(6, hidden=16)
    ratio = _fit(synth, h, h @ torch.randn(6, 6), None)
    _require(
        synth(h, None).std(0).mean().item() > 1e-3,
        "after training, the prediction is the same for every trigger: zero only the LAST layer (with a zeroed "
        "hidden layer every ReLU is 0 and only the output bias can learn)",
    )
    _require(ratio < 0.5, f"regressing onto a linear function of h brought the loss only to {ratio:.0%} of its start")
    synth = Synthesizer(6, context_features=3, hidden=16)
    _fit(synth, h, 3 * context @ torch.randn(3, 6), context)
    _require(
        not torch.allclose(synth(h[:1], context[:1]), synth(h[:1], context[1:2]), atol=1e-3),
        "the prediction ignores the context: concatenate it to the trigger before the first layer",
    )
    print("check_synthesizer: all checks passed")


def check_send(send: Callable) -> None:
    """``send`` gives upstream the gradient of <h, scale·δ̂> at once, returns h cut from upstream's
    graph as the message, and the prediction with its graph into the synthesizer only, as
    ``BackwardInterface.send`` does."""
    torch.manual_seed(0)
    x, context = torch.randn(5, 4), F.one_hot(torch.tensor([0, 1, 2, 0, 1]), 3).float()
    for ctx in (None, context):
        upstream = nn.Linear(4, 3)
        synth = _randomise_last_layer(make_synthesizer("linear", (3,), context_features=0 if ctx is None else 3), 1)
        ref_upstream, ref_synth = copy.deepcopy(upstream), copy.deepcopy(synth)
        ref_message = BackwardInterface(ref_synth, scale=0.5).send(ref_upstream(x), ctx)
        ref_pred, ref_grad = ref_synth(ref_message.detach(), ctx), ref_upstream.weight.grad

        h = upstream(x)
        out = send(h, synth, ctx, scale=0.5)
        _require(isinstance(out, tuple) and len(out) == 2, "send must return (message, prediction)")
        message, pred = out
        grad = upstream.weight.grad
        _require(grad is not None, "upstream has no gradient after send: back-propagate scale·δ̂ into h")
        _require(
            not _close(grad, 2 * ref_grad),
            "upstream's gradient is δ̂'s, not scale·δ̂'s: multiply the injected gradient by scale",
        )
        _require(
            _close(grad, ref_grad),
            "upstream's gradient differs from BackwardInterface.send's: it must be the gradient of <h, scale·δ̂>, "
            "with δ̂ = synthesizer(h, context)",
        )
        _require(_close(pred.detach(), ref_pred.detach()), "the prediction differs from synthesizer(h, context)")
        _require(torch.equal(message.detach(), h.detach()), "the message must hold the values of h")
        _require(
            message.grad_fn is None and message.requires_grad,
            "the message must be h cut from upstream's graph, able to collect downstream's gradient: "
            "h.detach().requires_grad_()",
        )
        _require(
            all(p.grad is None for p in synth.parameters()),
            "send back-propagated into the synthesizer: inject δ̂.detach(); the synthesizer learns only in update",
        )
        _require(pred.requires_grad, "the prediction must keep its graph into the synthesizer (update regresses it)")
        before = grad.clone()
        pred.sum().backward()
        _require(
            torch.equal(upstream.weight.grad, before),
            "the prediction's graph reaches upstream: the synthesizer must read h.detach()",
        )
    print("check_send: all checks passed")


def check_update(update: Callable) -> None:
    """``update`` takes the loss ‖δ̂ − δ‖² / B onto the gradient δ that reached the message and steps
    the synthesizer's optimiser once, as ``BackwardInterface.update`` does."""
    torch.manual_seed(0)
    upstream, downstream = nn.Linear(4, 3), nn.Linear(3, 2)
    synth = _randomise_last_layer(make_synthesizer("linear", (3,)), 2)
    ref_synth = copy.deepcopy(synth)
    iface = BackwardInterface(ref_synth, optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    x = torch.randn(6, 4)
    ref_message = iface.send(upstream(x).detach())
    downstream(ref_message).pow(2).sum().backward()
    expected = iface.update()

    message = upstream(x).detach().requires_grad_()
    pred = synth(message.detach())
    downstream(message).pow(2).sum().backward()
    loss = update(pred, message, torch.optim.SGD(synth.parameters(), lr=0.1))
    _require(isinstance(loss, float), f"update must return the loss as a float (loss.item()), got {loss!r}")
    _require(
        abs(loss - expected / 3) > 1e-5 * expected,
        "the loss is averaged over the features too: sum the squared errors over the features and divide by the "
        "batch size only (dni_utils.synthesizer_loss)",
    )
    _require(
        abs(loss - expected) <= 1e-5 * max(1.0, expected),
        f"the loss is {loss:.6g}, the reference ‖δ̂ − δ‖² / B is {expected:.6g}, with δ = message.grad",
    )
    _require(
        all(_close(p.detach(), q.detach()) for p, q in zip(synth.parameters(), ref_synth.parameters())),
        "after update the synthesizer's parameters differ from the reference: zero the optimiser's gradients, "
        "back-propagate the loss, step once",
    )
    print("check_update: all checks passed")


def _check_net(with_context: bool) -> DecoupledMLP:
    """The two-block network of ``check_dni_step``, its synthesizers past the zero start."""
    torch.manual_seed(0)
    net = DecoupledMLP(
        lambda width: make_synthesizer("linear", (width,), context_features=3 if with_context else 0),
        in_features=16, width=5, depth=2, n_classes=3, lr=1e-2, synth_lr=1e-2,
    )
    for i, synth in enumerate(net.synthesizers):
        _randomise_last_layer(synth, 10 + i)
    return net


def check_dni_step(dni_step: Callable) -> None:
    """Two steps of ``dni_step`` on a two-block network change every parameter as
    ``reference_dni_step`` does, and each block updates before the next block runs."""
    x, y = torch.rand(8, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    for ctx in (None, F.one_hot(y, 3).float()):
        net, ref = _check_net(ctx is not None), _check_net(ctx is not None)
        start = net.blocks[0][1].weight.detach().clone()
        unlocked = []  # at each forward of block 1: had block 0 updated already?
        first = net.blocks[0][1].weight
        net.blocks[1].register_forward_pre_hook(lambda *_: unlocked.append(not torch.equal(first, start)))
        for step in range(2):
            loss = dni_step(net, x, y, ctx)
            expected = reference_dni_step(ref, x, y, ctx)
            _require(
                isinstance(loss, float) and abs(loss - expected) < 1e-4 * max(1.0, expected),
                f"step {step}: dni_step returned {loss!r}, the reference task loss per example is {expected:.6g}",
            )
        _require(
            bool(unlocked) and unlocked[0],
            "block 0 had not updated when block 1 ran: each block steps as soon as its synthetic gradient arrives "
            "(update unlocking)",
        )
        parts = [
            ("block 0", net.blocks[0], ref.blocks[0], "it must step on scale·δ̂_0 alone, right after its send"),
            ("block 1", net.blocks[1], ref.blocks[1], "it must step on scale·δ̂_1 alone, right after its send"),
            ("synthesizer 0", net.synthesizers[0], ref.synthesizers[0], "its target is the gradient that reached "
             "message 0 when block 1 sent: δ̂_1 back-propagated through block 1 (bootstrapping), not the true one"),
            ("synthesizer 1", net.synthesizers[1], ref.synthesizers[1], "its target is the true gradient that "
             "reaches message 1 from the task loss"),
            ("output layer", net.head, ref.head, "it must step on the task loss (task_loss, summed over the batch)"),
        ]
        for name, mine, theirs, hint in parts:
            same = all(_close(p.detach(), q.detach()) for p, q in zip(mine.parameters(), theirs.parameters()))
            _require(same, f"after two steps {name} differs from the reference: {hint}")
    print("check_dni_step: all checks passed")


def check_label_context(label_context: Callable) -> None:
    """The cDNI context is the one-hot label as floats, shape (B, n_classes)."""
    y = torch.tensor([3, 0, 9, 3])
    c, expected = label_context(y, 10), F.one_hot(y, 10).float()
    shape = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
    _require(shape == tuple(expected.shape), f"the context must have shape {tuple(expected.shape)}, got {shape}")
    _require(c.dtype == expected.dtype, f"the context must be {expected.dtype} (it joins h), got {c.dtype}")
    _require(torch.equal(c, expected), "the context must be the one-hot label: 1 at the label's index, 0 elsewhere")
    print("check_label_context: all checks passed")
