"""The Copy / Repeat Copy table (notebook 05): run a grid of (task, T, method, seed), turn it into
curriculum curves, the table of scores, the paper-vs-reproduced rows and the paper's claim."""

from __future__ import annotations

import pandas as pd
import torch

from .rnn import RNN_METHOD_LABELS, RNNConfig, RNNRun, check_methods, check_truncations, train_copy
from .runner import RunOptions, train_many
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

#: The intra-op threads Copy's runs compute with: the process's default when this module was first
#: imported (the machine's cores), as Copy's runs always did, and not the one thread that
#: ``runner.train_many`` sets for every run. The last bits of an LSTM's losses depend on the thread
#: count (measured: Repeat Copy at T = 3 of the smoke profile differs from batch 8 on with 1
#: thread instead of 2), and the committed results/05_rnn_copy.*.json were made with the default.
COPY_THREADS = torch.get_num_threads()


def train_copy_threads(cfg: RNNConfig, data: None = None, progress: bool = True, desc: str | None = None,
                       device: torch.device | str | None = None, checkpoint=None) -> RNNRun:
    """``rnn.train_copy`` with ``COPY_THREADS`` intra-op threads, then the caller's setting again
    (what ``run_grid`` gives ``train_many``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(COPY_THREADS)
    try:
        return train_copy(cfg, data, progress=progress, desc=desc, device=device, checkpoint=checkpoint)
    finally:
        torch.set_num_threads(before)


def run_grid(settings: dict, seeds: list[int], progress: bool = True, workers: int = 1,
             options: RunOptions | None = None) -> dict[Key, RNNRun]:
    """Train every (task, T, method, seed) of ``settings``; returns the runs keyed by the quadruple.

    workers: processes to spread the runs over; options: device, step cap, checkpoints
    (``runner.RunOptions``). Each run computes with ``COPY_THREADS`` threads (see there)."""
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
                      train=train_copy_threads, options=options)
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


def _mean_score(runs: dict[Key, RNNRun], task: str, t: int, method: str) -> float:
    scores = [r.score for (k, tt, m, _), r in runs.items() if (k, tt, m) == (task, t, method)]
    return sum(scores) / len(scores)


def paper_rows(runs: dict[Key, RNNRun]) -> list[dict]:
    """One README row per (task, T, method): the paper's score beside the mean over seeds."""
    cells = sorted({(task, t, m) for task, t, m, _ in runs}, key=lambda c: (c[0], c[1], list(RNN_METHOD_LABELS).index(c[2])))
    return [
        {"setting": f"{TASK_LABELS[task]}, T={t}", "method": RNN_METHOD_LABELS[m],
         "metric": "longest length solved (mean over seeds)", "paper": PAPER_SCORES.get((task, m, t)),
         "reproduced": _mean_score(runs, task, t, m)}
        for task, t, m in cells
    ]


def claims(runs: dict[Key, RNNRun], margin: float) -> dict[str, bool]:
    """The paper's claim, judged on the scores: averaged over tasks, truncations and seeds, DNI
    (and DNI + Aux) solves more than ``margin`` lengths more than BPTT at the same T."""
    out = {}
    for method in ("dni", "dni_aux"):
        diffs = [
            run.score - runs[(task, t, "bptt", s)].score
            for (task, t, m, s), run in runs.items() if m == method and (task, t, "bptt", s) in runs
        ]
        if diffs:
            out[f"{method}_beats_bptt_at_equal_T"] = sum(diffs) / len(diffs) > margin
    return out
