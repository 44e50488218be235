"""Decoupled neural interfaces: the edge between an upstream and a downstream module.

``BackwardInterface`` (synthetic gradient, paper section 3). Upstream module ``f_i`` has just
produced ``h_i``. The interface asks its synthesizer ``M`` for ``δ̂_i = M(h_i, c)`` and injects
``scale · δ̂_i`` into upstream's autograd graph, so upstream can update at once (update
unlocking). Downstream receives a *message*: ``h_i`` detached from upstream's graph. When
downstream later back-propagates (the true loss, or its own synthetic gradient: bootstrapping),
the gradient ``δ_i`` that arrives at the message becomes the synthesizer's regression target:

    L_M = ‖δ̂_i − δ_i‖² / B        (sum over features, mean over the batch)

``ForwardInterface`` (synthetic input, paper section 3.3) is the same idea run forwards: its
synthesizer predicts the message ``h_{i-1}`` that downstream would receive, from the network
input, so downstream need not wait for upstream's forward pass either.

Both interfaces hold their own optimiser, keep their pending predictions in explicit state (a
FIFO, one entry per prediction awaiting its target) and act as the identity in eval mode.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

import torch
from torch import nn

INTERFACE_MODES = ("dni", "warmup", "off")

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


def _adam(lr: float) -> OptimizerFactory:
    return lambda params: torch.optim.Adam(params, lr=lr)


def _check_mode(mode: str) -> str:
    if mode not in INTERFACE_MODES:
        raise ValueError(f"mode={mode!r} is unknown: expected one of {INTERFACE_MODES}")
    return mode


def synthesizer_loss(prediction: torch.Tensor, target: torch.Tensor, runs: int = 0) -> torch.Tensor:
    """‖prediction − target‖² summed over every non-batch dimension, divided by the batch size.

    The batch is dimension 0 of ``prediction``; a (T, B, H) tensor must be given as (B, ...).
    runs: for a group of runs trained as one model (``trainers.grouped``), whose dimension 1 holds
    the runs run-major (``(B, R, ...)`` or ``(B, R*C, H, W)``): the loss of each run, ``(R,)``.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"target shape {tuple(target.shape)} != prediction shape {tuple(prediction.shape)}")
    squares = (prediction - target.detach()).pow(2)
    if runs:
        return squares.reshape(prediction.shape[0], runs, -1).sum((0, 2)) / prediction.shape[0]
    return squares.sum() / prediction.shape[0]


class BackwardInterface(nn.Module):
    """Synthetic-gradient interface on the edge from an upstream to a downstream module.

    mode: ``dni`` injects the synthetic gradient and trains the synthesizer; ``warmup`` trains
    the synthesizer but injects nothing; ``off`` does neither (the edge just cuts the graph).
    scale: factor on the injected gradient (``scale · δ̂``); the synthesizer still predicts δ.
    runs: 0 for one run; R for R runs trained as one model (``trainers.grouped``): the loss is then
    per run, ``(R,)``, and its sum is what the synthesizer's optimiser minimises.
    """

    def __init__(
        self,
        synthesizer: nn.Module,
        lr: float = 1e-4,
        scale: float = 1.0,
        mode: str = "dni",
        optimizer: OptimizerFactory | None = None,
        steps: int = 1,
        runs: int = 0,
    ) -> None:
        super().__init__()
        self.runs = runs
        if not lr > 0:
            raise ValueError(f"lr={lr!r} is invalid: expected a positive number")
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"steps={steps!r} is invalid: expected a positive integer")
        self.synthesizer = synthesizer
        self.steps = steps  # optimiser steps per target (the later ones on a fresh prediction)
        self.scale = float(scale)
        self.mode = _check_mode(mode)
        params = [p for p in synthesizer.parameters() if p.requires_grad]
        self.optimizer = (optimizer or _adam(lr))(params) if params else None
        # (prediction, message or None, trigger, context, version) per prediction awaiting its target
        self._pending: deque[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None, int]] = deque()
        self._version = 0  # synthesizer steps so far: a prediction made before the latest is stale
        self.last_loss_tensor: torch.Tensor | None = None  # the most recent synthesizer loss L_M, on its device
        self.n_updates = 0  # synthesizer updates so far

    @property
    def pending(self) -> int:
        """Predictions still waiting for their target."""
        return len(self._pending)

    @property
    def last_loss(self) -> float:
        """The most recent synthesizer loss as a number (reading it waits for the device)."""
        return float("nan") if self.last_loss_tensor is None else self.last_loss_tensor.item()

    def checkpoint_state(self) -> dict:
        """What a checkpoint needs beyond the synthesizer's weights: its optimiser, its counters and
        the predictions still waiting for their targets (their triggers; ``load_checkpoint_state``
        predicts them again, which gives the same values when the synthesizer has not stepped
        since, and the re-prediction ``update`` would make anyway when it has)."""
        return {
            "synthesizer": self.synthesizer.state_dict(),
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "version": self._version,
            "n_updates": self.n_updates,
            "last_loss": self.last_loss_tensor,
            "pending": [(message, trigger, context, version) for _, message, trigger, context, version in self._pending],
        }

    def load_checkpoint_state(self, state: dict) -> None:
        self.synthesizer.load_state_dict(state["synthesizer"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self._version, self.n_updates, self.last_loss_tensor = state["version"], state["n_updates"], state["last_loss"]
        device = next(iter(self.synthesizer.state_dict().values()), torch.empty(0)).device
        self._pending.clear()
        for message, trigger, context, version in state["pending"]:
            trigger = trigger.to(device)
            context = None if context is None else context.to(device)
            message = None if message is None else message.to(device).detach().requires_grad_()
            self._pending.append((self.synthetic_gradient(trigger, context), message, trigger, context, version))

    def set_mode(self, mode: str) -> None:
        self.mode = _check_mode(mode)

    def synthetic_gradient(self, trigger: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """δ̂ = M(trigger, context), with a graph into the synthesizer only (trigger detached)."""
        return self.synthesizer(trigger.detach(), context)

    def inject(self, h: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """A scalar whose gradient with respect to ``h`` is ``scale · δ̂`` (zero in warm-up).

        Add it to upstream's loss before its backward pass (recurrent use: the truncation
        boundary). The prediction is queued for ``update(target)``.
        """
        if not self.training or self.mode == "off":
            return h.new_zeros(())
        pred = self.synthetic_gradient(h, context)  # δ̂: (B, *h.shape[1:])
        self._pending.append((pred, None, h.detach(), context, self._version))
        s = self.scale if self.mode == "dni" else 0.0
        return (h * (s * pred.detach())).sum()  # ∂/∂h = s·δ̂

    def send(self, h: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Feed-forward use: back-propagate ``scale · δ̂`` into upstream now, return the message.

        After this call upstream's parameters hold their (synthetic) gradients and upstream may
        step. The returned message is ``h`` cut from upstream's graph; whatever gradient
        downstream sends back to it is the target of the next ``update()``.
        In eval mode the interface is the identity and returns ``h`` itself.
        """
        if not self.training:
            return h
        if self.mode == "off":
            return h.detach()
        pred = self.synthetic_gradient(h, context)  # δ̂
        if self.mode == "dni" and h.requires_grad:
            h.backward(self.scale * pred.detach())  # upstream receives s·δ̂ (update unlocked)
        message = h.detach().requires_grad_()
        self._pending.append((pred, message, h.detach(), context, self._version))
        return message

    def update(self, target: torch.Tensor | None = None) -> torch.Tensor:
        """Regress the oldest pending prediction onto the gradient that arrived for it.

        target: the gradient δ with respect to the trigger; by default the gradient that
        downstream has accumulated in the message returned by ``send``.
        Returns the synthesizer loss ‖δ̂ − δ‖² / B, a 0-d tensor on the synthesizer's device (not
        a number: reading it would wait for the device at every step; see ``checkpoint.Meter``).

        When several predictions wait (a downstream that answers for several at once) and the
        synthesizer has stepped since this one was made, the prediction is made again from its
        trigger, so each step regresses the current synthesizer (the graph of the old prediction
        refers to weights that have since changed in place).
        """
        if not self._pending:
            raise RuntimeError("update() called with no pending prediction: call send() or inject() first")
        pred, message, trigger, context, version = self._pending.popleft()
        if version != self._version:
            pred = self.synthetic_gradient(trigger, context)
        if target is None:
            if message is None:
                raise ValueError("target is required for a prediction made by inject()")
            if message.grad is None:
                raise RuntimeError("no gradient has reached the message yet: run downstream's backward first")
            target = message.grad
        loss = synthesizer_loss(pred, target, self.runs)
        if self.optimizer is not None:
            for k in range(self.steps):
                if k:  # a further step on the same target, from the updated synthesizer
                    loss = synthesizer_loss(self.synthetic_gradient(trigger, context), target, self.runs)
                self.optimizer.zero_grad(set_to_none=True)
                loss.sum().backward()  # one run: the loss itself; a group: each run's own gradient
                self.optimizer.step()
                self._version += 1
        self.last_loss_tensor = loss.detach()
        self.n_updates += 1
        return self.last_loss_tensor

    def discard(self) -> None:
        """Drop every pending prediction (e.g. a layer skipped its update this step)."""
        self._pending.clear()


class ForwardInterface(nn.Module):
    """Synthetic-input interface: predicts the message downstream would receive.

    Downstream computes with ``synthetic_input(x)`` instead of waiting for upstream; once the real
    message ``h`` exists, ``update(h)`` regresses the synthesizer onto it:

        L_I = ‖ĥ − h‖² / B
    """

    def __init__(
        self,
        synthesizer: nn.Module,
        lr: float = 1e-4,
        mode: str = "dni",
        optimizer: OptimizerFactory | None = None,
    ) -> None:
        super().__init__()
        if not lr > 0:
            raise ValueError(f"lr={lr!r} is invalid: expected a positive number")
        self.synthesizer = synthesizer
        self.mode = _check_mode(mode)
        params = [p for p in synthesizer.parameters() if p.requires_grad]
        self.optimizer = (optimizer or _adam(lr))(params) if params else None
        self._pending: deque[torch.Tensor] = deque()
        self.last_loss_tensor: torch.Tensor | None = None
        self.n_updates = 0

    @property
    def last_loss(self) -> float:
        """The most recent synthesizer loss as a number (reading it waits for the device)."""
        return float("nan") if self.last_loss_tensor is None else self.last_loss_tensor.item()

    def checkpoint_state(self) -> dict:
        """The synthesizer, its optimiser and counters (checkpoints are taken with nothing pending)."""
        if self._pending:
            raise RuntimeError("a ForwardInterface with pending predictions cannot be checkpointed")
        return {
            "synthesizer": self.synthesizer.state_dict(),
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "n_updates": self.n_updates,
            "last_loss": self.last_loss_tensor,
        }

    def load_checkpoint_state(self, state: dict) -> None:
        self.synthesizer.load_state_dict(state["synthesizer"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self.n_updates, self.last_loss_tensor = state["n_updates"], state["last_loss"]
        self._pending.clear()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def set_mode(self, mode: str) -> None:
        self.mode = _check_mode(mode)

    def synthetic_input(self, source: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """ĥ = I(source, context), detached: a message downstream can use at once."""
        pred = self.synthesizer(source.detach(), context)
        if self.training and self.mode != "off":
            self._pending.append(pred)
        return pred.detach()

    def update(self, target: torch.Tensor) -> torch.Tensor:
        """Regress the oldest pending prediction onto the real message ``target``; returns the
        loss as a 0-d tensor on the synthesizer's device."""
        if not self._pending:
            raise RuntimeError("update() called with no pending prediction: call synthetic_input() first")
        pred = self._pending.popleft()
        loss = synthesizer_loss(pred, target)
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.last_loss_tensor = loss.detach()
        self.n_updates += 1
        return self.last_loss_tensor

    def discard(self) -> None:
        self._pending.clear()
