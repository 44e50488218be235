"""The networks of the feed-forward experiments: a stack of hidden blocks and an output layer.

Reading of "N layers" used throughout: N *hidden* blocks, each followed by an interface, plus a
linear output layer (so a "3-layer" network has 3 interfaces and 4 weight layers).
"""

from __future__ import annotations

import math

import torch
from torch import nn

ARCHS = ("fcn",)


class FFNet(nn.Module):
    """``blocks[0] -> ... -> blocks[N-1] -> head``; an interface can sit after every block."""

    def __init__(self, blocks: list[nn.Module], head: nn.Module, shapes: list[tuple[int, ...]]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.shapes = shapes  # per-example output shape of each block (the interface triggers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def fc_block(in_features: int, width: int) -> nn.Module:
    """Linear(width) -> BatchNorm -> ReLU (the paper's MNIST FCN layer)."""
    return nn.Sequential(nn.Linear(in_features, width), nn.BatchNorm1d(width), nn.ReLU())


def make_fcn(in_shape: tuple[int, ...], depth: int, width: int, n_classes: int) -> FFNet:
    """Flatten, ``depth`` fc blocks of ``width`` units, a linear output layer."""
    _check_sizes(depth=depth, width=width, n_classes=n_classes)
    blocks: list[nn.Module] = []
    d = math.prod(in_shape)
    for i in range(depth):
        block = fc_block(d, width)
        if i == 0:
            block = nn.Sequential(nn.Flatten(), *block)
        blocks.append(block)
        d = width
    return FFNet(blocks, nn.Linear(width, n_classes), [(width,)] * depth)


def make_net(arch: str, in_shape: tuple[int, ...], depth: int, width: int, n_classes: int) -> FFNet:
    if arch not in ARCHS:
        raise ValueError(f"arch={arch!r} is unknown: expected one of {ARCHS}")
    return make_fcn(in_shape, depth, width, n_classes)


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r} is invalid: expected a positive integer")
