"""Checkpoint and resume, and the per-step scalars that wait on the device until a log point.

A run that is interrupted (a killed kernel, a lost machine) resumes where its last checkpoint
left it, and ends with exactly the numbers of an uninterrupted run: the checkpoint holds the
networks, synthesizers and interfaces (with the predictions still waiting for their targets),
optimisers, schedulers, samplers, random generators, the history and the scalars accumulated since
the last log point.

Files live in a folder (``checkpoints/``, git-ignored) under a key made of the training
function, the run's whole configuration, the data and the package's source code: a changed
setting or a changed line of ``dni_utils`` starts a fresh run rather than resuming a stale one.
``<key>.pt`` is an unfinished run's latest state; ``<key>.done.pt`` a finished run, which a
re-run loads instead of training it again. Both are written atomically (a temporary file, then
``os.replace``): an interruption while saving leaves the previous checkpoint whole.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Callable

import torch

#: What ``train_many`` prints when a grid's finished runs come from checkpoints rather than training
#: (``"(N finished runs loaded from <dir>)"``); an executed copy that shows it is not a record of a run
#: (``executed`` rejects it).
LOADED_FROM = "finished runs loaded from"


#: The package whose source a checkpoint's results depend on: every module of ``dni_utils``, its
#: subpackages included (the trainers, the mechanism, the data), not only this folder's.
PACKAGE = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=4)
def source_hash(root: Path = PACKAGE) -> str:
    """A hash of every source file under ``root`` (default: the whole ``dni_utils`` package), by
    path relative to it: what a checkpoint's results depend on, so that a change to any trainer or
    mechanism makes the checkpoints of older code unreachable."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def run_key(train: Any, cfg: Any, data: Any = None, device: torch.device | None = None) -> str:
    """A file name for one run: the config's class, then a hash of everything the run depends on."""
    what = {
        "train": f"{getattr(train, '__module__', '')}.{getattr(train, '__qualname__', repr(train))}",
        "config": asdict(cfg) if is_dataclass(cfg) else repr(cfg),
        "data": data,
        "device": device.type if device is not None else None,
        "code": source_hash(),
    }
    text = json.dumps(what, sort_keys=True, default=repr)
    return f"{type(cfg).__name__.lower()}-{hashlib.sha256(text.encode()).hexdigest()[:20]}"


def write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` to a hidden file beside ``path``, then rename it over ``path``: an interruption
    leaves the previous file whole (or none), never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_save(obj: Any, path: Path) -> None:
    write_atomically(path, lambda tmp: torch.save(obj, tmp))


class Checkpoint:
    """Saves and restores one run's state under ``<directory>/<key>.pt``.

    every_steps: save after every that many steps (0: not by count);
    every_seconds: save when that long has passed since the last save (0: not by time). Either
    way the saved state is complete, so where the saves fall never changes the results.
    """

    def __init__(self, directory: str | Path, key: str, every_steps: int = 0, every_seconds: float = 120.0) -> None:
        if not isinstance(every_steps, int) or isinstance(every_steps, bool) or every_steps < 0:
            raise ValueError(f"checkpoint every_steps={every_steps!r} is invalid: expected an integer >= 0")
        if not every_seconds >= 0:
            raise ValueError(f"checkpoint every_seconds={every_seconds!r} is invalid: expected a number >= 0")
        self.directory = Path(directory)
        self.key = key
        self.every_steps = every_steps
        self.every_seconds = float(every_seconds)
        self._last = time.monotonic()
        self.saves = 0

    @property
    def path(self) -> Path:
        return self.directory / f"{self.key}.pt"

    @property
    def done_path(self) -> Path:
        return self.directory / f"{self.key}.done.pt"

    def due(self, step: int) -> bool:
        """Whether to save after ``step`` (1-based)."""
        if self.every_steps and step % self.every_steps == 0:
            return True
        return bool(self.every_seconds) and time.monotonic() - self._last >= self.every_seconds

    def save(self, state: dict[str, Any]) -> None:
        _atomic_save(state, self.path)
        self._last = time.monotonic()
        self.saves += 1

    def load(self) -> dict[str, Any] | None:
        """The saved state of the unfinished run, or None."""
        if not self.path.exists():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=False)

    def finish(self, run: Any) -> None:
        """Keep the finished run and drop its intermediate state."""
        _atomic_save(run, self.done_path)
        self.path.unlink(missing_ok=True)

    def finished(self) -> Any | None:
        """The finished run saved under this key, or None."""
        if not self.done_path.exists():
            return None
        return torch.load(self.done_path, map_location="cpu", weights_only=False)


def rng_state(*generators: torch.Generator) -> dict[str, Any]:
    """The global CPU (and CUDA) generator states and those of ``generators``."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state(), "generators": [g.get_state() for g in generators]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], *generators: torch.Generator) -> None:
    torch.set_rng_state(state["cpu"])
    for g, s in zip(generators, state["generators"], strict=True):
        g.set_state(s)
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` (tensors in nested dicts, lists, tuples) with every tensor moved to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


class Meter:
    """Scalars a training loop produces every step, kept as tensors on their device until a log
    point reads them all at once (one host synchronisation per log point instead of one per step).

    ``add(value, step)`` takes a 0-d tensor (or a float). ``flush()`` returns the values as Python
    floats, each exactly what ``value.item()`` would have given, with the steps they came from.
    """

    def __init__(self) -> None:
        self.values: list[torch.Tensor | float] = []
        self.steps: list[int] = []

    def __len__(self) -> int:
        return len(self.values)

    def add(self, value: torch.Tensor | float, step: int = 0) -> None:
        self.values.append(value.detach() if isinstance(value, torch.Tensor) else value)
        self.steps.append(step)

    def flush(self) -> tuple[list[float], list[int]]:
        tensors = [v for v in self.values if isinstance(v, torch.Tensor)]
        read = iter(torch.stack(tensors).tolist()) if tensors else iter(())
        values = [next(read) if isinstance(v, torch.Tensor) else float(v) for v in self.values]
        steps = self.steps
        self.values, self.steps = [], []
        return values, steps

    def state_dict(self) -> dict[str, Any]:
        return {"values": list(self.values), "steps": list(self.steps)}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | None = None) -> None:
        self.values = [to_device(v, device) if device is not None else v for v in state["values"]]
        self.steps = list(state["steps"])


def first_non_finite(values: list[float], steps: list[int]) -> tuple[int, float] | None:
    """The step and value of the first NaN or infinity in ``values``, or None."""
    for value, step in zip(values, steps):
        if value != value or value in (float("inf"), float("-inf")):
            return step, value
    return None


def batch_loop_state(step: int, trainer: Any, sampler: Any, history: list, losses: Meter, meters: list[Meter]) -> dict:
    """The checkpoint of a loop over batches (the feed-forward and complete-unlock trainers): the
    trainer's ``state_dict()``, the sampler, the random generators, the history and the meters."""
    return {
        "step": step, "trainer": trainer.state_dict(), "sampler": sampler.state_dict(), "rng": rng_state(),
        "history": history, "losses": losses.state_dict(), "synth_losses": [m.state_dict() for m in meters],
    }


def resume_batch_loop(
    checkpoint: Checkpoint | None, device: torch.device, trainer: Any, sampler: Any, losses: Meter, meters: list[Meter]
) -> tuple[int, list]:
    """Restore what ``batch_loop_state`` saved, if ``checkpoint`` holds it; returns the last step done
    (0 for a fresh run) and the history so far."""
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is None:
        return 0, []
    trainer.load_state_dict(saved["trainer"])
    sampler.load_state_dict(saved["sampler"])
    set_rng_state(saved["rng"])
    losses.load_state_dict(saved["losses"], device)
    for meter, state in zip(meters, saved["synth_losses"], strict=True):
        meter.load_state_dict(state, device)
    return saved["step"], saved["history"]
