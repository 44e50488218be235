"""Notebook 08's runs: every (method, seed) of the multi-process comparison, one at a time, turned
into the error table (deterministic: in the result file), the throughput table (wall-clock: in the
notebook only), the claims and README rows."""

from __future__ import annotations

import pandas as pd
from tqdm import tqdm

from .parallel import (
    WAITS, PARALLEL_LABELS, PARALLEL_METHODS, PIPELINES, ParallelConfig, ParallelRun, best_speedup, stage_split,
    train_parallel,
)
from .stats import mean_sd, seed_summary

Key = tuple[str, int]  # (method, seed)

#: ParallelConfig fields a profile table may set.
_CONFIG_KEYS = (
    "stages", "depth", "width", "batch_size", "steps", "lr", "synth_lr", "in_flight", "staleness", "snapshots",
    "timeline_start", "timeline_steps",
)


def check_parallel_methods(methods: list) -> list[str]:
    unknown = [m for m in methods if m not in PARALLEL_METHODS]
    if unknown or not methods:
        raise ValueError(f"methods={methods!r} is invalid: expected a non-empty list of {PARALLEL_METHODS}")
    return list(dict.fromkeys(methods))


def configs(settings: dict, seeds: list[int]) -> dict[Key, ParallelConfig]:
    """Every run's configuration, validated before the first one starts."""
    values = {k: settings[k] for k in _CONFIG_KEYS}
    return {(m, s): ParallelConfig(method=m, seed=s, **values).validate()
            for s in seeds for m in check_parallel_methods(settings["methods"])}


def run_all(settings: dict, data, seeds: list[int], progress: bool = True) -> dict[Key, ParallelRun]:
    """Every (method, seed), one after another, so that each run has the machine to itself."""
    cfgs = configs(settings, seeds)
    runs = {}
    for key, cfg in tqdm(cfgs.items(), desc="runs", disable=not progress):
        runs[key] = train_parallel(cfg, settings["dataset"], data)
    return runs


def plan(settings: dict) -> pd.DataFrame:
    """What the cost model says before anything runs, per method: the blocks per stage and the
    best throughput relative to one worker."""
    rows = []
    for (m, _), cfg in configs(settings, settings["seeds"][:1]).items():
        rows.append({"method": PARALLEL_LABELS[m], "workers": cfg.workers, "blocks per stage": stage_split(cfg),
                     "best speed-up on paper": best_speedup(cfg)})
    return pd.DataFrame(rows).set_index("method")


def curves_frame(runs: dict[Key, ParallelRun]) -> pd.DataFrame:
    """Long table: test error at every snapshot of every run, against examples and against seconds."""
    return pd.DataFrame([
        {"method": PARALLEL_LABELS[m], "seed": s, "examples": e, "seconds": sec, "test error (%)": 100 * err}
        for (m, s), run in runs.items() for e, sec, err in zip(run.examples, run.seconds, run.test_error)
    ])


def _by_method(runs: dict[Key, ParallelRun]) -> dict[str, list[ParallelRun]]:
    """The runs of each method (over seeds), in the order the methods ran."""
    out: dict[str, list[ParallelRun]] = {}
    for (m, _), run in runs.items():
        out.setdefault(m, []).append(run)
    return out


def error_table(runs: dict[Key, ParallelRun]) -> pd.DataFrame:
    """Per method: final test error (%) mean and sd over seeds, examples seen, optimiser steps per stage."""
    rows = []
    for m, mine in _by_method(runs).items():
        mean, sd = mean_sd([100 * r.final_error for r in mine])
        rows.append({"method": PARALLEL_LABELS[m], "test error (%)": mean, "sd": sd, "seeds": len(mine),
                     "examples": mine[0].examples[-1], "optimiser steps per stage": mine[0].updates})
    return pd.DataFrame(rows).set_index("method")


def throughput_table(runs: dict[Key, ParallelRun]) -> pd.DataFrame:
    """Per method (wall-clock, never saved): examples per second (mean, sd over seeds), the ratio to
    one-worker backprop and to the best pipeline schedule, the cost model's best ratio, and the share
    of its time the busiest-waiting stage spent waiting."""
    mean = {}
    rows = []
    for m, mine in _by_method(runs).items():
        mu, sd = mean_sd([r.throughput for r in mine])
        mean[m] = mu
        waits = [max(sum(t[w] for w in WAITS) / r.elapsed for t in r.totals) for r in mine]
        rows.append({"method": m, "examples/s": mu, "sd": sd, "best on paper": best_speedup(mine[0].config),
                     "waiting (busiest stage)": sum(waits) / len(waits)})
    table = pd.DataFrame(rows)
    bprop = mean.get("bprop")
    pipes = [mean[m] for m in PIPELINES if m in mean]
    table["vs Bprop, 1 worker"] = table["examples/s"] / bprop if bprop else None
    table["vs best pipeline"] = table["examples/s"] / max(pipes) if pipes else None
    table["method"] = table["method"].map(PARALLEL_LABELS)
    return table.set_index("method")


def error_claims(runs: dict[Key, ParallelRun], settings: dict) -> dict[str, bool]:
    """The claims that do not depend on timing: after the same examples, DNI's and cDNI's mean test
    error is within ``error_points`` percentage points of one-worker backprop's."""
    out = {}
    errors = {m: [100 * r.final_error for r in mine] for m, mine in _by_method(runs).items()}
    bprop = errors.get("bprop", [])
    for m in ("dni", "cdni"):
        mine = errors.get(m, [])
        if bprop and mine:
            out[f"{m}_error_within_{settings['error_points']:g}_point_of_bprop"] = (
                mean_sd(mine)[0] <= mean_sd(bprop)[0] + settings["error_points"]
            )
    return out


def speed_claims(runs: dict[Key, ParallelRun], settings: dict) -> dict[str, bool]:
    """The claims on throughput (wall-clock: asserted in the notebook, never saved): the better of
    DNI and cDNI runs at least ``speedup_target`` times one-worker backprop, and faster than the
    best pipeline schedule on the same workers."""
    table = throughput_table(runs)
    best = table.loc[[PARALLEL_LABELS[m] for m in ("dni", "cdni") if PARALLEL_LABELS[m] in table.index], "examples/s"]
    if best.empty:
        return {}
    out = {}
    if PARALLEL_LABELS["bprop"] in table.index:
        out[f"decoupled_at_least_{settings['speedup_target']:g}x_bprop"] = (
            best.max() >= settings["speedup_target"] * table.loc[PARALLEL_LABELS["bprop"], "examples/s"]
        )
    pipes = [PARALLEL_LABELS[m] for m in PIPELINES if PARALLEL_LABELS[m] in table.index]
    if pipes:
        out["decoupled_faster_than_best_pipeline"] = best.max() > table.loc[pipes, "examples/s"].max()
    return out


def paper_rows(runs: dict[Key, ParallelRun], settings: dict, dataset: str) -> list[dict]:
    """README rows: each method's final test error after the same examples (mean ± sd over seeds).
    The paper has no such experiment; the throughput is in the notebook, not here."""
    rows = []
    for m, mine in _by_method(runs).items():
        rows.append({
            "setting": f"{dataset}, FCN {settings['depth']}x{settings['width']}, K={mine[0].config.workers} "
                       f"process{'es' if mine[0].config.workers > 1 else ''}, {mine[0].examples[-1]:,} examples",
            "method": PARALLEL_LABELS[m], "metric": "test error (%)", "paper": None,
            **seed_summary([100 * r.final_error for r in mine]),
        })
    return rows
