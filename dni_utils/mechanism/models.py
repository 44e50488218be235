"""The networks of the feed-forward experiments: a stack of hidden blocks and an output layer.

Reading of "N layers" used throughout: N *hidden* blocks, each followed by an interface, plus a
linear output layer (so a "3-layer" network has 3 interfaces and 4 weight layers).

CNN (paper, CIFAR-10; the MNIST CNN uses the same blocks): every hidden block is
Conv(width filters, 5x5, size-preserving padding) -> BatchNorm -> ReLU -> 3x3 pooling (padding 1),
max-pooling in the first block and average-pooling in the others. The paper does not give the
pooling strides or the output layer; our choice: stride 2 in the first ``strided_pools`` blocks
(default 2: 32x32 -> 16x16 -> 8x8, or 28x28 -> 14x14 -> 7x7) and stride 1 (size-preserving)
after, so every depth from 3 to 6 keeps a spatial map; the output layer is a Linear layer on the
flattened last map.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ARCHS = ("fcn", "cnn")


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


def conv_block(in_channels: int, width: int, pool: str, stride: int, kernel_size: int = 5) -> nn.Module:
    """Conv(width, k x k, size-preserving) -> BatchNorm -> ReLU -> 3x3 ``pool`` (max | avg) of ``stride``."""
    pooling = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}[pool]
    extra = {} if pool == "max" else {"count_include_pad": False}  # border averages over real pixels only
    return nn.Sequential(
        nn.Conv2d(in_channels, width, kernel_size, padding=kernel_size // 2),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        pooling(3, stride=stride, padding=1, **extra),
    )


def make_cnn(in_shape: tuple[int, ...], depth: int, width: int, n_classes: int, strided_pools: int = 2) -> FFNet:
    """``depth`` conv blocks of ``width`` 5x5 filters (max-pool in the first, average-pool after;
    stride 2 in the first ``strided_pools`` blocks, 1 after), then a linear output layer on the
    flattened map."""
    _check_sizes(depth=depth, width=width, n_classes=n_classes)
    if not isinstance(strided_pools, int) or isinstance(strided_pools, bool) or strided_pools < 0:
        raise ValueError(f"strided_pools={strided_pools!r} is invalid: expected an integer >= 0")
    if len(in_shape) != 3:
        raise ValueError(f"in_shape={in_shape!r} is invalid for arch='cnn': expected (C, H, W)")
    c, h, w = in_shape
    blocks: list[nn.Module] = []
    shapes: list[tuple[int, ...]] = []
    for i in range(depth):
        stride = 2 if i < strided_pools else 1
        blocks.append(conv_block(c, width, "max" if i == 0 else "avg", stride))
        c, h, w = width, (h - 1) // stride + 1, (w - 1) // stride + 1  # 3x3 pooling, padding 1
        shapes.append((c, h, w))
    head = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, n_classes))
    return FFNet(blocks, head, shapes)


def make_net(
    arch: str, in_shape: tuple[int, ...], depth: int, width: int, n_classes: int, strided_pools: int = 2
) -> FFNet:
    """``arch`` fcn (``width`` units per block) or cnn (``width`` filters per block)."""
    if arch not in ARCHS:
        raise ValueError(f"arch={arch!r} is unknown: expected one of {ARCHS}")
    if arch == "cnn":
        return make_cnn(in_shape, depth, width, n_classes, strided_pools)
    return make_fcn(in_shape, depth, width, n_classes)


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r} is invalid: expected a positive integer")
