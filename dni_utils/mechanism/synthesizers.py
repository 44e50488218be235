"""Synthesizers: small models of the gradient (or of the input) at an interface.

A synthesizer reads a *trigger* (the activation at the interface, shape ``(B, *shape)``) and
optionally a *context* (for cDNI the one-hot label, shape ``(B, C)``) and predicts a tensor of
the trigger's shape (``(B, *out_shape)``). Every synthesizer's final layer starts with zero
weights and zero bias, so a fresh synthesizer predicts exactly zero (paper, section 3).
"""

from __future__ import annotations

import math

import torch
from torch import nn

SYNTHESIZER_KINDS = ("linear", "mlp", "conv")


def _check_positive(name: str, value: int, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        allowed = "an integer >= 0" if allow_zero else "a positive integer"
        raise ValueError(f"{name}={value!r} is invalid: expected {allowed}")


def _zero_(layer: nn.Module) -> nn.Module:
    """Zero a layer's weight and bias in place (zero start: the first prediction is exactly 0)."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class MLPSynthesizer(nn.Module):
    """Fully connected synthesizer: ``hidden_layers`` x (Linear, BatchNorm, ReLU), then a
    zero-initialised Linear. ``hidden_layers=0`` is the linear synthesizer.

    The context, when given, is concatenated to the flattened trigger (cDNI).
    """

    def __init__(
        self,
        shape: tuple[int, ...] | int,
        hidden_layers: int = 0,
        hidden_features: int = 1024,
        context_features: int = 0,
        out_shape: tuple[int, ...] | int | None = None,
    ) -> None:
        super().__init__()
        self.shape = (shape,) if isinstance(shape, int) else tuple(shape)
        out = self.shape if out_shape is None else out_shape
        self.out_shape = (out,) if isinstance(out, int) else tuple(out)
        for i, d in enumerate(self.shape + self.out_shape):
            _check_positive(f"shape[{i}]", d)
        _check_positive("hidden_layers", hidden_layers, allow_zero=True)
        _check_positive("hidden_features", hidden_features)
        _check_positive("context_features", context_features, allow_zero=True)
        self.context_features = context_features
        layers: list[nn.Module] = []
        d = math.prod(self.shape) + context_features
        for _ in range(hidden_layers):
            layers += [nn.Linear(d, hidden_features), nn.BatchNorm1d(hidden_features), nn.ReLU()]
            d = hidden_features
        self.hidden = nn.Sequential(*layers)
        self.out = _zero_(nn.Linear(d, math.prod(self.out_shape)))

    def forward(self, trigger: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = trigger.flatten(1)  # (B, D)
        x = _with_context(x, context, self.context_features)  # (B, D + C)
        return self.out(self.hidden(x)).view(trigger.shape[0], *self.out_shape)


class ConvSynthesizer(nn.Module):
    """Convolutional synthesizer: ``hidden_layers`` x (Conv k x k, BatchNorm, ReLU), then a
    zero-initialised Conv k x k, all with size-preserving padding; output shape = trigger shape.

    The context (B, C), when given, is tiled over the spatial positions and concatenated to the
    trigger as C extra input channels of the first convolution.
    """

    def __init__(
        self,
        channels: int,
        hidden_layers: int = 2,
        hidden_channels: int = 128,
        kernel_size: int = 5,
        context_features: int = 0,
    ) -> None:
        super().__init__()
        _check_positive("channels", channels)
        _check_positive("hidden_layers", hidden_layers, allow_zero=True)
        _check_positive("hidden_channels", hidden_channels)
        _check_positive("context_features", context_features, allow_zero=True)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={kernel_size!r} is invalid: expected an odd positive integer")
        self.context_features = context_features
        pad = kernel_size // 2
        layers: list[nn.Module] = []
        c = channels + context_features
        for _ in range(hidden_layers):
            layers += [
                nn.Conv2d(c, hidden_channels, kernel_size, padding=pad),
                nn.BatchNorm2d(hidden_channels),
                nn.ReLU(),
            ]
            c = hidden_channels
        self.hidden = nn.Sequential(*layers)
        self.out = _zero_(nn.Conv2d(c, channels, kernel_size, padding=pad))

    def forward(self, trigger: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = trigger  # (B, C, H, W)
        if self.context_features:
            if context is None:
                raise ValueError("context is required: this synthesizer was built with context_features > 0")
            b, _, h, w = x.shape
            tiled = context.view(b, -1, 1, 1).expand(b, context.shape[1], h, w)  # (B, C_ctx, H, W)
            x = torch.cat([x, tiled.to(x.dtype)], dim=1)
        elif context is not None:
            raise ValueError("context was given but this synthesizer has context_features=0")
        return self.out(self.hidden(x))


def _with_context(x: torch.Tensor, context: torch.Tensor | None, features: int) -> torch.Tensor:
    if features == 0:
        if context is not None:
            raise ValueError("context was given but this synthesizer has context_features=0")
        return x
    if context is None:
        raise ValueError("context is required: this synthesizer was built with context_features > 0")
    if context.shape != (x.shape[0], features):
        raise ValueError(f"context has shape {tuple(context.shape)}, expected {(x.shape[0], features)}")
    return torch.cat([x, context.to(x.dtype)], dim=1)


def make_synthesizer(
    kind: str,
    shape: tuple[int, ...],
    hidden_layers: int = 0,
    hidden_features: int = 1024,
    context_features: int = 0,
    kernel_size: int = 5,
    out_shape: tuple[int, ...] | None = None,
) -> nn.Module:
    """Build a synthesizer for a trigger of per-example ``shape``.

    kind: ``linear`` (an MLP with no hidden layer), ``mlp`` or ``conv`` (shape must be (C, H, W)).
    out_shape: the per-example shape of the prediction (default: ``shape``, as for a gradient;
    a synthetic-input model predicts another module's activation from the network input).
    Conv synthesizers always predict the trigger's shape.
    """
    if kind not in SYNTHESIZER_KINDS:
        raise ValueError(f"synthesizer kind={kind!r} is unknown: expected one of {SYNTHESIZER_KINDS}")
    if kind == "linear":
        return MLPSynthesizer(shape, 0, hidden_features, context_features, out_shape)
    if kind == "mlp":
        return MLPSynthesizer(shape, hidden_layers, hidden_features, context_features, out_shape)
    if len(shape) != 3:
        raise ValueError(f"shape={shape!r} is invalid for a conv synthesizer: expected (C, H, W)")
    return ConvSynthesizer(shape[0], hidden_layers, hidden_features, kernel_size, context_features)
