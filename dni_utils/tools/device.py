"""Where a run computes: ``auto`` (CUDA when there is one, else the CPU), ``cpu``, ``cuda``, ``cuda:N``.

Every trainer takes a ``device`` and keeps its data, networks, synthesizers, interfaces, optimiser
states and batch samplers on it. Two things stay on the host on purpose: the generators whose
draws decide Python control flow (which layers are available at a step, which length the
curriculum tries next), because reading a device draw back would synchronise every step; and
the evaluation counts, which are read once per log point.

Determinism. On the CPU the same seed gives the same numbers. On CUDA, ``use_device`` turns on
``torch.use_deterministic_algorithms`` and sets ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (cuBLAS needs
it for reproducible matrix products; it must be set before the first cuBLAS call, so set it in the
environment when a process has already used CUDA): then the same seed on the same device type gives the
same numbers, which is all PyTorch promises (a GPU's numbers differ from a CPU's, and may differ
between GPU models or CUDA versions). cuDNN's benchmark mode is turned off for the same reason.
One exception: PyTorch has no deterministic CUDA kernel for the backward pass of max-pooling (the
CNN's first block), so deterministic mode is set with ``warn_only=True``: such an op runs anyway and
PyTorch warns that it did, and CNN runs on a GPU may then differ in their last bits from run to run.
"""

from __future__ import annotations

import os
import time

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
CUBLAS_WORKSPACE = ":4096:8"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The device that ``device`` names; ``auto`` is CUDA when available, else the CPU.

    A request for CUDA on a machine without one, or for a GPU index it does not have, is an error
    that says what is available."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or not device:
        raise ValueError(f"device={device!r} is invalid: expected one of {DEVICE_CHOICES}")
    if device == "auto":
        return resolve_device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device={device!r} is unknown: expected one of {DEVICE_CHOICES}") from None
    if resolved.type == "cpu":
        return torch.device("cpu")
    if resolved.type != "cuda":
        raise ValueError(f"device={device!r} is not supported: expected one of {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for, but this machine has no CUDA device: use 'cpu' or 'auto'")
    count = torch.cuda.device_count()
    if resolved.index is not None and resolved.index >= count:
        raise ValueError(f"device={device!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", resolved.index if resolved.index is not None else torch.cuda.current_device())


def use_device(device: str | torch.device = "auto") -> torch.device:
    """``resolve_device``, and on CUDA the settings that make its results reproducible (see the module)."""
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.use_deterministic_algorithms(True, warn_only=True)  # see the module: max-pooling's backward
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.cuda.set_device(resolved)
    return resolved


def device_name(device: torch.device) -> str:
    """What the result files record: ``cpu``, or ``cuda (<GPU model>)``."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU): for timing."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timer(device: torch.device) -> float:
    """``time.perf_counter()`` after the device's queued work has finished."""
    synchronize(device)
    return time.perf_counter()
