"""Running a grid of runs (feed-forward, language-model, ...), on one core or several.

A small network's training step is too short to keep more than one core busy (intra-op
threading barely helps a 256-wide layer), so a grid of runs is spread over worker processes
instead, one run per process at a time. Every run trains with ONE intra-op thread whether it runs
in a worker or in this process, so its numbers do not depend on ``workers``: the same seed and
profile give the same bytes on one core or sixteen.

Workers are started with ``spawn`` (no fork of a process that already holds threads); each one
receives the data set once. A run that raises (a diverging loss, say) stops the grid: the runs
not yet started are cancelled and the error is raised here, with its message.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from typing import Any

import torch
import torch.multiprocessing
from tqdm import tqdm

from .ff import train_ff

#: The data set and the training function, in a worker process only (set by _init_worker).
_WORKER: dict[str, Any] = {}
Train = Callable[..., Any]  # train(cfg, data, progress=..., desc=...) -> a run, a module-level function


def resolve_workers(workers: int, n_runs: int) -> int:
    """``workers`` processes for ``n_runs`` runs: 0 means one per core; never more than the runs."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise ValueError(f"workers={workers!r} is invalid: expected an integer >= 0 (0 = one per core)")
    n = workers or os.cpu_count() or 1
    return max(1, min(n, n_runs))


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the body with one intra-op thread, then restore the previous setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _init_worker(data: Any, train: Train) -> None:
    torch.set_num_threads(1)
    _WORKER.update(data=data, train=train)


def _train_in_worker(cfg: Any) -> Any:
    return _WORKER["train"](cfg, _WORKER["data"], progress=False)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel the queued runs and end the running ones now (not after they finish)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


def train_many(
    cfgs: Sequence[Any], data: Any, workers: int = 1, progress: bool = True, desc: str = "runs",
    train: Train = train_ff,
) -> list[Any]:
    """Train every config on ``data`` with ``train`` (default: the feed-forward ``train_ff``);
    returns the runs in the order of ``cfgs``.

    workers: processes to spread the runs over (1 = in this process, 0 = one per core). The
    results are the same for every value (one intra-op thread per run either way).
    """
    n = resolve_workers(workers, len(cfgs))
    if n == 1:
        with one_thread():
            return [train(cfg, data, progress=progress, desc=f"{desc} {i + 1}/{len(cfgs)}") for i, cfg in enumerate(cfgs)]
    ctx = torch.multiprocessing.get_context("spawn")
    runs: list[Any] = [None] * len(cfgs)
    with ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker, initargs=(data, train)) as pool:
        futures = {pool.submit(_train_in_worker, cfg): i for i, cfg in enumerate(cfgs)}
        pending = set(futures)
        with tqdm(total=len(cfgs), desc=f"{desc} ({n} processes)", disable=not progress, leave=False) as bar:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    if future.exception() is not None:
                        _stop(pool)
                        raise future.exception()
                    runs[futures[future]] = future.result()
                    bar.update(1)
    return runs
