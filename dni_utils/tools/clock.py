"""Wall-clock lines: what a notebook prints about seconds, marked so that executed copies can drop
the seconds (``executed``). Importable without Jupyter (the trainers print such lines too)."""

from __future__ import annotations

import time

#: The start of a printed line that reports a wall-clock time.
WALL_CLOCK = "wall-clock:"


def wall_clock(what: str, since: float) -> None:
    """Print how long ``what`` took since ``time.perf_counter()`` read ``since``, on a line that
    executed copies keep without its number: ``wall-clock: 24 runs in 576 s``."""
    print(f"{WALL_CLOCK} {what} in {time.perf_counter() - since:.0f} s")
