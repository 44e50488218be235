"""Running a grid of feed-forward runs, on one core or several.

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
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

import torch
import torch.multiprocessing
from tqdm import tqdm

from .data import Dataset
from .ff import FFConfig, FFRun, train_ff

_WORKER_DATA: dict[str, Dataset] = {}  # the data set, in a worker process only (set by _init_worker)


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


def _init_worker(data: Dataset) -> None:
    torch.set_num_threads(1)
    _WORKER_DATA["data"] = data


def _train_in_worker(cfg: FFConfig) -> FFRun:
    return train_ff(cfg, _WORKER_DATA["data"], progress=False)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel the queued runs and end the running ones now (not after they finish)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


def train_many(
    cfgs: Sequence[FFConfig], data: Dataset, workers: int = 1, progress: bool = True, desc: str = "runs",
) -> list[FFRun]:
    """Train every config on ``data``; returns the runs in the order of ``cfgs``.

    workers: processes to spread the runs over (1 = in this process, 0 = one per core). The
    results are the same for every value (one intra-op thread per run either way).
    """
    n = resolve_workers(workers, len(cfgs))
    if n == 1:
        with one_thread():
            return [train_ff(cfg, data, progress=progress, desc=f"{desc} {i + 1}/{len(cfgs)}") for i, cfg in enumerate(cfgs)]
    ctx = torch.multiprocessing.get_context("spawn")
    runs: list[FFRun | None] = [None] * len(cfgs)
    with ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker, initargs=(data,)) as pool:
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
    return runs  # type: ignore[return-value]
