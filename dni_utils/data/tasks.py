"""Copy and Repeat Copy (the Neural Turing Machine tasks of Graves et al. 2014) with a curriculum.

**Copy.** ``N`` random binary vectors of ``width`` bits, then a delimiter; the network must then
output the ``N`` vectors in order. Input channels: ``width`` bits + 1 delimiter flag. Length
``2N + 1``; the targets sit on the last ``N`` steps.

**Repeat Copy.** ``N`` random vectors, then a delimiter step that also carries the repeat count
``R`` (uniform in ``1..max_repeats``, given as ``R / max_repeats`` on its own channel); the
network must output the sequence ``R`` times and then raise an end marker. Input channels:
``width`` bits + delimiter + repeat count; output channels: ``width`` bits + end marker. Length
``N + 1 + R·N + 1``; the targets sit on the last ``R·N + 1`` steps.

**Score.** Bits error per sequence: output bits (sigmoid > 0.5) that differ from the target,
counted over the target steps of one sequence. A length ``N`` is *solved* when the mean bits
error per sequence over the last ``window`` training batches at that length is at most
``threshold``; the curriculum then moves to ``N + 1``. The score of a run is the longest length
solved within its budget (a fixed number of training batches), 0 if none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

TASKS = ("copy", "repeat_copy")
TASK_LABELS = {"copy": "Copy", "repeat_copy": "Repeat Copy"}


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"task={task!r} is unknown: expected one of {TASKS}")
    return task


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}={value!r} is invalid: expected a positive integer")


@dataclass
class Episode:
    """A batch of sequences of one length, time-major."""

    x: torch.Tensor  # (L, B, in_features)
    y: torch.Tensor  # (L, B, out_features)
    mask: torch.Tensor  # (L, B): 1 on the steps where the target counts

    @property
    def length(self) -> int:
        return self.x.shape[0]


@dataclass
class SequenceTask:
    """Generator of Copy / Repeat Copy episodes."""

    task: str = "copy"  # copy | repeat_copy
    width: int = 8  # bits per vector
    max_repeats: int = 2  # Repeat Copy: R is uniform in 1..max_repeats

    def __post_init__(self) -> None:
        check_task(self.task)
        _check_positive("width", self.width)
        _check_positive("max_repeats", self.max_repeats)

    @property
    def in_features(self) -> int:
        return self.width + (1 if self.task == "copy" else 2)

    @property
    def out_features(self) -> int:
        return self.width + (0 if self.task == "copy" else 1)

    def sample(self, n: int, batch_size: int, generator: torch.Generator) -> Episode:
        """``batch_size`` sequences of ``n`` vectors each (for Repeat Copy one R per batch)."""
        _check_positive("n", n)
        _check_positive("batch_size", batch_size)
        w, b = self.width, batch_size
        bits = torch.randint(0, 2, (n, b, w), generator=generator).float()  # (N, B, W)
        if self.task == "copy":
            length = 2 * n + 1
            x = torch.zeros(length, b, self.in_features)
            y = torch.zeros(length, b, self.out_features)
            x[:n, :, :w] = bits
            x[n, :, w] = 1.0  # delimiter
            y[n + 1 :] = bits
            mask = torch.zeros(length, b)
            mask[n + 1 :] = 1.0
            return Episode(x, y, mask)
        r = int(torch.randint(1, self.max_repeats + 1, (1,), generator=generator))
        length = n + 1 + r * n + 1
        x = torch.zeros(length, b, self.in_features)
        y = torch.zeros(length, b, self.out_features)
        x[:n, :, :w] = bits
        x[n, :, w] = 1.0  # delimiter
        x[n, :, w + 1] = r / self.max_repeats  # repeat count
        y[n + 1 : n + 1 + r * n, :, :w] = bits.repeat(r, 1, 1)
        y[-1, :, w] = 1.0  # end marker
        mask = torch.zeros(length, b)
        mask[n + 1 :] = 1.0
        return Episode(x, y, mask)


def bit_errors(logits: torch.Tensor, episode: Episode) -> torch.Tensor:
    """Bits error per sequence, (B,): wrong output bits over the target steps."""
    wrong = ((logits > 0).float() != episode.y).float().sum(-1)  # (L, B)
    return (wrong * episode.mask).sum(0)


@dataclass
class Curriculum:
    """Grows the sequence length ``n`` by one each time the current length is solved.

    Solved: the mean bits error per sequence over the last ``window`` batches at length ``n`` is
    at most ``threshold``. ``solved`` is the longest length solved so far (0 if none).
    """

    threshold: float = 0.15  # mean bits error per sequence at which a length counts as solved
    window: int = 20  # training batches averaged
    start: int = 1  # first length
    max_length: int = 1000  # the curriculum stops growing here
    n: int = field(init=False)
    solved: int = field(init=False, default=0)
    _recent: list[float] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        if not self.threshold >= 0:
            raise ValueError(f"threshold={self.threshold!r} is invalid: expected a number >= 0")
        _check_positive("window", self.window)
        _check_positive("start", self.start)
        _check_positive("max_length", self.max_length)
        self.n = self.start

    def state_dict(self) -> dict:
        """Where the curriculum stands (for a checkpoint)."""
        return {"n": self.n, "solved": self.solved, "recent": list(self._recent)}

    def load_state_dict(self, state: dict) -> None:
        self.n, self.solved, self._recent = state["n"], state["solved"], list(state["recent"])

    def record(self, errors_per_sequence: float) -> bool:
        """Add one batch's mean bits error per sequence; returns True when ``n`` was just solved."""
        self._recent.append(float(errors_per_sequence))
        if len(self._recent) < self.window:
            return False
        mean = sum(self._recent[-self.window :]) / self.window
        if mean > self.threshold:
            return False
        self.solved = self.n
        self.n = min(self.n + 1, self.max_length)
        self._recent = []
        return True
