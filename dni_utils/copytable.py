"""The Copy / Repeat Copy table (notebook 05): run a grid of (task, T, method, seed), turn it into
curriculum curves, the table of scores, the paper-vs-reproduced rows and the paper's claim."""

from __future__ import annotations

import pandas as pd
from .rnn import RNN_METHOD_LABELS, RNNConfig, RNNRun, check_methods, check_truncations, train_copy
from .runner import RunOptions, train_many
from .stats import clearly_above, mean_sd, seed_summary
from .tasks import TASK_LABELS, check_task

#: The paper's table (longest sequence length solved), as far as it could be read: BPTT and DNI
#: for T = 2..5. The columns T = 8, 20, 40 and the DNI + Aux rows were not available to us.
PAPER_SCORES: dict[tuple[str, str, int], int] = {
    **{("copy", "bptt", t): v for t, v in zip((2, 3, 4, 5), (7, 8, 10, 8))},
    **{("copy", "dni", t): v for t, v in zip((2, 3, 4, 5), (16, 14, 18, 18))},
    **{("repeat_copy", "bptt", t): v for t, v in zip((2, 3, 4, 5), (7, 5, 19, 23))},
    **{("repeat_copy", "dni", t): v for t, v in zip((2, 3, 4, 5), (39, 33, 39, 59))},
}

#: RNNConfig fields a profile table may set.
_CONFIG_KEYS = (
    "hidden", "width", "max_repeats", "batch_size", "batches", "lr", "synth_lr", "synth_hidden_layers",
    "synth_hidden", "grad_scale", "aux_weight", "threshold", "window", "max_length", "log_every",
)

Key = tuple[str, int, str, int]  # (task, T, method, seed)

def run_grid(settings: dict, seeds: list[int], progress: bool = True, workers: int = 1,
             options: RunOptions | None = None) -> dict[Key, RNNRun]:
    """Train every (task, T, method, seed) of ``settings``; returns the runs keyed by the quadruple.

    workers: processes to spread the runs over (0: one per core; each run computes with one
    thread, so its numbers do not depend on ``workers``); options: device, step cap, checkpoints
    (``runner.RunOptions``)."""
    tasks = [check_task(t) for t in settings["tasks"]]
    truncations = check_truncations(settings["truncations"])
    methods = check_methods(settings["methods"])
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"seeds={seeds!r} is invalid: expected a non-empty list of integers")
    values = {k: settings[k] for k in _CONFIG_KEYS if k in settings}
    configs = {
        (task, t, m, s): RNNConfig(method=m, task=task, truncation=t, seed=s, **values).validate()
        for task in tasks for t in truncations for m in methods for s in seeds
    }  # all validated before the first run starts
    runs = train_many(list(configs.values()), None, workers=workers, progress=progress, desc="grid",
                      train=train_copy, options=options)
    return dict(zip(configs, runs))


def curves_frame(runs: dict[Key, RNNRun]) -> pd.DataFrame:
    """Long table: the longest length solved so far at every log point of every run."""
    rows = [
        {"task": TASK_LABELS[task], "T": t, "method": RNN_METHOD_LABELS[m], "seed": s, "batch": h["batch"],
         "longest length solved": h["solved"], "bits error per sequence": h["bit_errors"]}
        for (task, t, m, s), run in runs.items() for h in run.history
    ]
    return pd.DataFrame(rows)


def scores_frame(runs: dict[Key, RNNRun]) -> pd.DataFrame:
    """Table: rows (task, method), columns T; mean score over seeds."""
    df = pd.DataFrame(
        [{"task": TASK_LABELS[task], "method": RNN_METHOD_LABELS[m], "T": t, "score": run.score}
         for (task, t, m, _), run in runs.items()]
    )
    return df.pivot_table(index=["task", "method"], columns="T", values="score", aggfunc="mean")


def cell_scores(runs: dict[Key, RNNRun], task: str, t: int, method: str) -> list[int]:
    """The scores of one (task, T, method) cell, one per seed."""
    return [r.score for (k, tt, m, _), r in runs.items() if (k, tt, m) == (task, t, method)]


def paper_rows(runs: dict[Key, RNNRun]) -> list[dict]:
    """One README row per (task, T, method): the paper's score beside the mean over seeds, with
    its standard deviation and the number of seeds."""
    cells = sorted({(task, t, m) for task, t, m, _ in runs}, key=lambda c: (c[0], c[1], list(RNN_METHOD_LABELS).index(c[2])))
    return [
        {"setting": f"{TASK_LABELS[task]}, T={t}", "method": RNN_METHOD_LABELS[m],
         "metric": "longest length solved (mean over seeds)", "paper": PAPER_SCORES.get((task, m, t)),
         **seed_summary(cell_scores(runs, task, t, m))}
        for task, t, m in cells
    ]


def late_gain(run: RNNRun) -> int:
    """Lengths solved in the last quarter of the run's budget: the score minus the longest length
    solved at the last log point at or before three quarters of it (0: the curve had levelled off)."""
    cut = run.config.batches * 3 // 4
    before = [h["solved"] for h in run.history if h["batch"] <= cut]
    return run.score - (before[-1] if before else 0)


def claims(runs: dict[Key, RNNRun], margin: float) -> dict[str, bool]:
    """The paper's claim, judged on the scores, cell by cell.

    ``<method>_beats_bptt_at_every_T``: at every (task, T) that was run, the mean score of
    ``method`` over seeds exceeds BPTT's by at least ``margin`` and by more than the larger of the
    two standard deviations over seeds (``stats.clearly_above``); for ``dni`` and ``dni_aux``.
    ``curves_levelled``: no run solved more than one length in the last quarter of its budget."""
    out = {}
    cells = sorted({(task, t) for task, t, _, _ in runs})
    for method in ("dni", "dni_aux"):
        verdicts = [
            clearly_above(cell_scores(runs, task, t, method), cell_scores(runs, task, t, "bptt"), margin)
            for task, t in cells if cell_scores(runs, task, t, method) and cell_scores(runs, task, t, "bptt")
        ]
        if verdicts:
            out[f"{method}_beats_bptt_at_every_T"] = all(verdicts)
    out["curves_levelled"] = all(late_gain(run) <= 1 for run in runs.values())
    return out


def advantage(runs: dict[Key, RNNRun], method: str = "dni") -> pd.DataFrame:
    """Per (task, T): mean score of BPTT and of ``method`` over seeds, their standard deviations, the
    difference and the factor ``method`` / BPTT (the paper's is about 2), beside the paper's factor."""
    rows = []
    for task, t in sorted({(task, t) for task, t, _, _ in runs}):
        b, d = cell_scores(runs, task, t, "bptt"), cell_scores(runs, task, t, method)
        if not b or not d:
            continue
        (mb, sb), (md, sd) = mean_sd(b), mean_sd(d)
        pb, pd_ = PAPER_SCORES.get((task, "bptt", t)), PAPER_SCORES.get((task, method, t))
        rows.append({"task": TASK_LABELS[task], "T": t, "BPTT": mb, "BPTT sd": sb, RNN_METHOD_LABELS[method]: md,
                     f"{RNN_METHOD_LABELS[method]} sd": sd, "difference": md - mb,
                     "factor": md / mb if mb else float("nan"),
                     "paper factor": pd_ / pb if pb and pd_ else float("nan")})
    return pd.DataFrame(rows)
