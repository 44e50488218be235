"""Running a grid of runs (feed-forward, language-model, ...), on one core or several.

A small network's training step is too short to keep more than one core busy (intra-op
threading barely helps a 256-wide layer), so a grid of runs is spread over worker processes
instead, one run per process at a time. Every run trains with ONE intra-op thread whether it runs
in a worker or in this process, so its numbers do not depend on ``workers``: the same seed and
profile give the same bytes on one core or sixteen.

Workers are started with ``spawn`` (no fork of a process that already holds threads); each one
receives the data set once. A run that raises (a diverging loss, say) stops the grid: the runs
not yet started are cancelled and the error is raised here, with its message.

``RunOptions`` say where and how the runs compute: the device (every run, in whichever process,
trains on it), a cap on every run's steps (``max_steps``: the paper-profile dry runs), and where
runs are checkpointed (``checkpoint_dir``: unfinished runs resume, finished ones are loaded
rather than trained again; see ``checkpoint``). Before the first run, ``train_many`` prints what it
is about to do (runs, steps) and an estimate of the time, from a short timed warm-up of each
configuration on the device.

Every config class a grid trains provides ``train_steps()`` (how many training steps the run
takes) and ``capped(n)`` (the same run cut to at most ``n`` steps, logging at its end).

Grouped runs (``RunOptions.group_runs``): feed-forward runs (``train_ff``), Copy / Repeat Copy
runs (``train_copy`` and its exact bounds), language-model runs (``train_lm``) and two-timescale
runs (``train_timescales``) that differ only in their seed can train as ONE model with the runs
stacked in every tensor (``trainers.grouped.train_ff_group``,
``trainers.grouped_recurrent.train_copy_group`` and ``train_lm_group``,
``trainers.grouped_timescales.train_timescales_group``; ``GROUPED`` maps each training function to
its grouped one), which removes the per-run host overhead that bounds a small network's step on a
GPU. ``auto`` groups on CUDA and not on the CPU, where the committed results were made one run at
a time (a grouped run equals its ungrouped run to float tolerance, not bit for bit) and where the
2-core measurement of ``make bench`` found no gain for feed-forward runs (Copy runs gain there
too, but are left ungrouped for the same reason). A grouped language-model run's wall-clock
seconds are those of its whole group. A group
is one task for a worker; a grouped run that is interrupted starts again (its finished runs are
checkpointed one by one and loaded as usual).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, is_dataclass
from functools import partial
from typing import Any

import torch
import torch.multiprocessing
from tqdm import tqdm

from dni_utils.tools.checkpoint import LOADED_FROM, Checkpoint, run_key
from dni_utils.tools.clock import WALL_CLOCK
from dni_utils.tools.device import resolve_device, timer, use_device
from dni_utils.trainers import grouped, grouped_recurrent, grouped_timescales
from dni_utils.trainers.feedforward import train_ff
from dni_utils.trainers.language_model import train_lm
from dni_utils.trainers.recurrent import train_copy, train_copy_exact_gradient, train_copy_exact_target
from dni_utils.trainers.timescales import train_timescales

#: Values of ``RunOptions.group_runs`` (and the notebooks' ``group_runs`` parameter).
GROUP_RUNS = ("auto", "on", "off")

#: The data set and the training function, in a worker process only (set by _init_worker).
_WORKER: dict[str, Any] = {}
Train = Callable[..., Any]  # train(cfg, data, progress=..., desc=...) -> a run, a module-level function

#: The training functions whose runs can be grouped: (the grouped training function, which takes a
#: list of configs and returns their runs; the function that splits configs into groups).
GROUPED: dict[Train, tuple[Callable[..., list[Any]], Callable[[list[Any]], list[list[int]]]]] = {
    train_ff: (grouped.train_ff_group, grouped.groups),
    train_copy: (grouped_recurrent.train_copy_group, grouped_recurrent.groups),
    train_copy_exact_gradient: (partial(grouped_recurrent.train_copy_group, exact="gradient"), grouped_recurrent.groups),
    train_copy_exact_target: (partial(grouped_recurrent.train_copy_group, exact="target"), grouped_recurrent.groups),
    train_lm: (grouped_recurrent.train_lm_group, grouped_recurrent.groups),
    train_timescales: (grouped_timescales.train_timescales_group, grouped_recurrent.groups),
}


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


@dataclass(frozen=True)
class RunOptions:
    """How a grid's runs compute (none of it changes a run's numbers on a given device type).

    device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` (``device.resolve_device``).
    max_steps: cap every run at this many training steps (0: no cap); a dry run, not a result.
    checkpoint_dir: where runs are checkpointed and resumed (None: nowhere).
    checkpoint_every: save an unfinished run every this many steps (0: by time only);
    checkpoint_seconds: and whenever this long has passed since its last save (0: by count only).
    estimate: print the runs, steps and estimated time before the first run.
    warmup_steps: steps of each configuration's timed warm-up (at most ``max_steps`` when that is set).
    group_runs: ``auto`` (on CUDA), ``on`` or ``off``: train the runs that differ only in their seed
    as one grouped model, for the training functions that can (``GROUPED``; see the module).
    """

    device: str = "auto"
    max_steps: int = 0
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    checkpoint_seconds: float = 120.0
    estimate: bool = True
    warmup_steps: int = 10
    group_runs: str = "off"

    def __post_init__(self) -> None:
        resolve_device(self.device)  # a clear error for an unknown device, or CUDA where there is none
        if self.group_runs not in GROUP_RUNS:
            raise ValueError(f"group_runs={self.group_runs!r} is unknown: expected one of {GROUP_RUNS}")
        for name in ("max_steps", "checkpoint_every", "warmup_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name}={value!r} is invalid: expected an integer >= 0 (0 = {_ZERO[name]})")
        if self.warmup_steps < 1:
            raise ValueError(f"warmup_steps={self.warmup_steps!r} is invalid: expected a positive integer")
        if not (isinstance(self.checkpoint_seconds, (int, float)) and self.checkpoint_seconds >= 0):
            raise ValueError(f"checkpoint_seconds={self.checkpoint_seconds!r} is invalid: expected a number >= 0")

    def grouped(self, train: Train = train_ff, device: torch.device | None = None) -> bool:
        """Whether ``train``'s runs are grouped on ``device`` (default: the options' device)."""
        device = resolve_device(self.device) if device is None else device
        return train in GROUPED and (self.group_runs == "on" or (self.group_runs == "auto" and device.type == "cuda"))

    def checkpoint(self, train: Train, cfg: Any, data: Any, device: torch.device) -> Checkpoint | None:
        if not self.checkpoint_dir:
            return None
        describe = getattr(data, "describe", None)
        key = run_key(train, cfg, describe() if callable(describe) else None, device)
        return Checkpoint(self.checkpoint_dir, key, self.checkpoint_every, self.checkpoint_seconds)


_ZERO = {"max_steps": "no cap", "checkpoint_every": "by time only", "warmup_steps": "-"}

#: Where a notebook keeps its checkpoints when its ``checkpoint_dir`` parameter is empty: at the
#: paper profile (runs of hours) under ``checkpoints/`` at the top of the project (git-ignored);
#: at smoke and cpu (runs of seconds to a minute or two) nowhere.
DEFAULT_CHECKPOINT_DIRS = {"smoke": None, "cpu": None, "paper": "../checkpoints"}


def run_options(profile: str, device: str = "auto", max_steps: int = 0, checkpoint_dir: str = "", **more: Any) -> RunOptions:
    """The ``RunOptions`` of a notebook from its parameters. ``checkpoint_dir``: empty means the
    profile's default (``DEFAULT_CHECKPOINT_DIRS``; none for a capped dry run), ``none`` means
    no checkpoints, anything else is the folder."""
    if checkpoint_dir == "none":
        folder = None
    elif checkpoint_dir:
        folder = checkpoint_dir
    else:
        folder = None if max_steps else DEFAULT_CHECKPOINT_DIRS[profile]
    return RunOptions(device=device, max_steps=max_steps, checkpoint_dir=folder, **more)


def capped(cfgs: Sequence[Any], max_steps: int) -> list[Any]:
    """The configs with every run cut to at most ``max_steps`` steps (0: as they are)."""
    if not max_steps:
        return list(cfgs)
    return [cfg.capped(max_steps) if cfg.train_steps() > max_steps else cfg for cfg in cfgs]


def _train_one(train: Train, cfg: Any, data: Any, options: RunOptions, progress: bool, desc: str | None) -> Any:
    """One run on the options' device, checkpointed if asked; a finished run is kept."""
    device = use_device(options.device)
    checkpoint = options.checkpoint(train, cfg, data, device)
    run = train(cfg, data, progress=progress, desc=desc, device=device, checkpoint=checkpoint)
    if checkpoint is not None:
        checkpoint.finish(run)
    return run


def _train_unit(train: Train, cfgs: list[Any], data: Any, options: RunOptions, progress: bool, desc: str | None) -> list[Any]:
    """One run, or a group of runs that train as one model (``GROUPED``)."""
    if len(cfgs) == 1:
        return [_train_one(train, cfgs[0], data, options, progress, desc)]
    device = use_device(options.device)
    runs = GROUPED[train][0](cfgs, data, progress=progress, desc=desc, device=device)
    for cfg, run in zip(cfgs, runs):
        checkpoint = options.checkpoint(train, cfg, data, device)
        if checkpoint is not None:
            checkpoint.finish(run)
    return runs


def _units(train: Train, cfgs: list[Any], todo: list[int], options: RunOptions, device: torch.device) -> list[list[int]]:
    """The indices of ``todo`` as units of work: one run each, or the groups of ``GROUPED``."""
    if not options.grouped(train, device):
        return [[i] for i in todo]
    return [[todo[j] for j in unit] for unit in GROUPED[train][1]([cfgs[i] for i in todo])]


def _init_worker(data: Any, train: Train, options: RunOptions) -> None:
    torch.set_num_threads(1)
    _WORKER.update(data=data, train=train, options=options)


def _train_in_worker(cfgs: list[Any]) -> list[Any]:
    return _train_unit(_WORKER["train"], cfgs, _WORKER["data"], _WORKER["options"], False, None)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel the queued runs and end the running ones now (not after they finish)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


def _shape(cfg: Any) -> str:
    """A config without its seed: runs that differ only in their seed cost the same."""
    fields = asdict(cfg) if is_dataclass(cfg) else {"repr": repr(cfg)}
    fields.pop("seed", None)
    return json.dumps(fields, sort_keys=True, default=repr)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def step_costs(
    cfgs: Sequence[Any], data: Any, train: Train, device: torch.device, warmup_steps: int = 10
) -> list[tuple[float, float]]:
    """Each run's (fixed seconds, seconds per step) on ``device``, from a timed warm-up: every
    distinct configuration (seeds aside) is trained for 1 and for ``warmup_steps`` + 1 steps; the
    difference gives the time per step, the rest the time to build the run and evaluate it once."""
    return unit_costs([[cfg] for cfg in cfgs], data, train, device, warmup_steps)


def unit_costs(
    units: Sequence[Sequence[Any]], data: Any, train: Train, device: torch.device, warmup_steps: int = 10
) -> list[tuple[float, float]]:
    """``step_costs`` of units of work: a run, or a group of runs trained as one model (its warm-up
    trains the whole group, so the estimate is the grouped one)."""
    costs: dict[tuple[str, int], tuple[float, float]] = {}
    with one_thread():
        for unit in units:
            key = (_shape(unit[0]), len(unit))
            if key not in costs:
                times = []
                for n in (1, warmup_steps + 1):
                    start = timer(device)
                    if len(unit) == 1:
                        train(unit[0].capped(n), data, progress=False, device=device, checkpoint=None)
                    else:
                        GROUPED[train][0]([cfg.capped(n) for cfg in unit], data, progress=False, device=device)
                    times.append(timer(device) - start)
                per_step = max(times[1] - times[0], 0.0) / warmup_steps
                costs[key] = (max(times[0] - per_step, 0.0), per_step)
    return [costs[(_shape(unit[0]), len(unit))] for unit in units]


def estimate_seconds(
    cfgs: Sequence[Any], data: Any, train: Train, device: torch.device, warmup_steps: int = 10
) -> list[float]:
    """Each run's estimated time on ``device`` (``step_costs``): the fixed part + steps x per step
    (evaluations at the log points in between are not counted)."""
    return [f + p * cfg.train_steps() for cfg, (f, p) in zip(cfgs, step_costs(cfgs, data, train, device, warmup_steps))]


def _print_estimate(
    full: Sequence[Any], cfgs: Sequence[Any], data: Any, train: Train, device: torch.device, n: int,
    options: RunOptions, units: Sequence[Sequence[int]],
) -> None:
    """The estimated time of the runs ``cfgs`` (and, when they are capped, of the uncapped ``full``),
    trained in ``units`` (indices into both: single runs or groups)."""
    warmup = min(options.warmup_steps, options.max_steps) if options.max_steps else options.warmup_steps
    # capped(n) of the uncapped config: the same warm-up
    costs = unit_costs([[full[i] for i in unit] for unit in units], data, train, device, warmup)
    grouped = any(len(unit) > 1 for unit in units)
    how = " (grouped)" if grouped else ""

    def say(what: str, runs: Sequence[Any]) -> None:
        seconds = sum(f + p * runs[unit[0]].train_steps() for unit, (f, p) in zip(units, costs)) / n
        readable = f" ({_duration(seconds)})" if seconds >= 120 else ""
        print(f"{WALL_CLOCK} estimated for {what}, from a {warmup}-step warm-up of each configuration{how} on "
              f"{device.type}, in {seconds:.0f} s{readable}")

    say(f"the {len(cfgs)} runs", cfgs)
    if options.max_steps:
        steps = sum(cfg.train_steps() for cfg in full)
        say(f"the same {len(full)} runs uncapped ({steps:,} training steps in all)", full)


def train_many(
    cfgs: Sequence[Any], data: Any, workers: int = 1, progress: bool = True, desc: str = "runs",
    train: Train = train_ff, options: RunOptions | None = None,
) -> list[Any]:
    """Train every config on ``data`` with ``train`` (default: the feed-forward ``train_ff``);
    returns the runs in the order of ``cfgs``.

    workers: processes to spread the runs over (1 = in this process, 0 = one per core). The
    results are the same for every value (one intra-op thread per run either way).
    options: device, step cap, checkpoints, estimate (``RunOptions``; default: ``auto``, no cap,
    no checkpoints, an estimate).
    """
    options = options or RunOptions()
    device = use_device(options.device)
    full, cfgs = list(cfgs), capped(cfgs, options.max_steps)
    runs: list[Any] = [None] * len(cfgs)
    for i, cfg in enumerate(cfgs):  # finished before: loaded, not trained again
        checkpoint = options.checkpoint(train, cfg, data, device)
        if checkpoint is not None:
            runs[i] = checkpoint.finished()
    todo = [i for i, run in enumerate(runs) if run is None]
    units = _units(train, cfgs, todo, options, device)
    n = resolve_workers(workers, len(units)) if todo else 1
    loaded = len(cfgs) - len(todo)
    steps = sum(cfgs[i].train_steps() for i in todo)
    grouping = f" in {len(units)} groups of runs that differ only in their seed" if len(units) < len(todo) else ""
    print(f"{desc}: {len(todo)} runs to train, {steps:,} training steps in all, on {device.type} with {n} process"
          f"{'es' if n > 1 else ''}{grouping}"
          + (f" ({loaded} {LOADED_FROM} {options.checkpoint_dir})" if loaded else "")
          + (f"; every run capped at {options.max_steps} step{'s' if options.max_steps > 1 else ''}"
             if options.max_steps else ""))
    if options.estimate and todo:
        # positions of the units' runs within the todo lists
        where = {i: k for k, i in enumerate(todo)}
        _print_estimate([full[i] for i in todo], [cfgs[i] for i in todo], data, train, device, n, options,
                        [[where[i] for i in unit] for unit in units])
    if not todo:
        return runs
    if n == 1:
        with one_thread():
            for k, unit in enumerate(units):
                label = f"{desc} {k + 1}/{len(units)}"
                for i, run in zip(unit, _train_unit(train, [cfgs[i] for i in unit], data, options, progress, label)):
                    runs[i] = run
        return runs
    ctx = torch.multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker, initargs=(data, train, options)) as pool:
        futures = {pool.submit(_train_in_worker, [cfgs[i] for i in unit]): unit for unit in units}
        pending = set(futures)
        with tqdm(total=len(todo), desc=f"{desc} ({n} processes)", disable=not progress, leave=False) as bar:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    if future.exception() is not None:
                        _stop(pool)
                        raise future.exception()
                    for i, run in zip(futures[future], future.result()):
                        runs[i] = run
                    bar.update(len(futures[future]))
    return runs
