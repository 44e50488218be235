"""The Copy / Repeat Copy table (notebook 05): run a grid of (task, T, method, seed), turn it into
curriculum curves, the table of scores, the paper-vs-reproduced rows and the paper's claim."""

from __future__ import annotations

import pandas as pd

from dni_utils.data.tasks import TASK_LABELS, check_task
from dni_utils.experiments import verdicts
from dni_utils.experiments.profiles import asserts
from dni_utils.experiments.stats import clearly_above, mean_sd, seed_summary
from dni_utils.tools.runner import RunOptions, train_many
from dni_utils.trainers.recurrent import RNN_METHOD_LABELS, RNNConfig, RNNRun, check_methods, check_truncations, train_copy
from dni_utils.trainers.recurrent import RNN_METHODS, train_copy_exact_gradient, train_copy_exact_target


#: Settings per profile for notebook 05. ``threshold`` and ``window`` define "solved" (mean bits
#: error per sequence over the last ``window`` batches at a length), ``batches`` is each run's
#: budget; ``margin`` is how many more lengths DNI must solve than BPTT in every (task, T) cell
#: (mean over seeds, and beyond the seed spread) for the claim to hold; ``assert_claims`` names the
#: claims (``claims``, and the diagnosis's) the profile is large enough to assert: at cpu
#: the curves' levelling, the diagnosis and the exact gradient's lead; not DNI's lead, which a fresh
#: run of the profile shows on Copy at T = 2, 4 and 5 but not beyond the seed spread at T = 3, and
#: not on Repeat Copy, where every method stays at lengths 1 to 2 within the budget (the README has
#: the numbers). The paper's choices beside
#: ours: 8-bit vectors (cpu: 4), 256 LSTM units (cpu: 64), threshold 0.15 bits per sequence (cpu:
#: 0.5, over half as many bits), a linear synthesizer, and budgets of the order of 10^5 batches.
#: ``synth_lr`` is 0.01 and ``synth_steps`` 2 at cpu: the synthesizer has to keep up with a core
#: that changes under it (notebook 05's diagnosis). Measured on Copy at 2,000 batches, DNI solved 3
#: at T = 2 and 2 at T = 5 with one step per target (seeds 0-2), 3 and 3 with two (seeds 0-1).
RNN_COPY_PROFILES: dict[str, dict] = {
    "smoke": dict(
        tasks=["copy", "repeat_copy"], truncations=[2, 3], methods=list(RNN_METHODS), seeds=[0], batches=12,
        hidden=16, width=4, max_repeats=2, batch_size=8, lr=3e-3, synth_lr=1e-3, synth_hidden_layers=0,
        synth_hidden=16, synth_steps=2, grad_scale=0.1, aux_weight=0.1, threshold=0.5, window=2, log_every=4,
        margin=0.0, assert_claims=False, diagnose_batches=8,
    ),
    "cpu": dict(
        tasks=["copy", "repeat_copy"], truncations=[2, 3, 4, 5], methods=list(RNN_METHODS), seeds=[0, 1, 2],
        batches=2000, hidden=64, width=4, max_repeats=2, batch_size=128, lr=3e-3, synth_lr=1e-2,
        synth_hidden_layers=0, synth_hidden=64, synth_steps=2, grad_scale=0.1, aux_weight=0.1, threshold=0.5,
        window=20, log_every=50, margin=0.0, diagnose_batches=1500,
        assert_claims=["curves_levelled", "synthesizer_below_linear_fit", "exact_gradient_beats_dni_at_every_T"],
    ),
    "paper": dict(
        tasks=["copy", "repeat_copy"], truncations=[2, 3, 4, 5, 8, 20, 40], methods=list(RNN_METHODS),
        seeds=[0, 1, 2], batches=100_000, hidden=256, width=8, max_repeats=2, batch_size=256, lr=3e-3,
        synth_lr=1e-3, synth_hidden_layers=0, synth_hidden=256, synth_steps=1, grad_scale=0.1, aux_weight=0.1,
        threshold=0.15, window=20, log_every=1000, margin=1.0, diagnose_batches=5000,
        assert_claims=["dni_beats_bptt_at_every_T", "exact_gradient_beats_dni_at_every_T"],
    ),
}

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
    "synth_hidden", "synth_steps", "grad_scale", "aux_weight", "threshold", "window", "max_length", "log_every",
)

#: Row labels of every method a Copy grid can hold: the methods, then the upper bounds of DNI
#: (``recurrent.train_copy``'s ``exact``), keyed ``exact_gradient`` and ``exact_target``.
LABELS = {**RNN_METHOD_LABELS, "exact_gradient": "DNI, exact gradient", "exact_target": "DNI, exact target"}


_TRAIN = {None: train_copy, "gradient": train_copy_exact_gradient, "target": train_copy_exact_target}


def run_grid(settings: dict, seeds: list[int], progress: bool = True, workers: int = 1,
             options: RunOptions | None = None, exact: str | None = None) -> dict[Key, RNNRun]:
    """Train every (task, T, method, seed) of ``settings``; returns the runs keyed by the quadruple.

    workers: processes to spread the runs over (0: one per core; each run computes with one
    thread, so its numbers do not depend on ``workers``); options: device, step cap, checkpoints
    (``runner.RunOptions``). exact: instead of ``settings["methods"]``, train one of DNI's upper
    bounds (``recurrent.train_copy``: ``"gradient"`` or ``"target"``), keyed by method ``exact_<bound>``."""
    tasks = [check_task(t) for t in settings["tasks"]]
    truncations = check_truncations(settings["truncations"])
    if exact not in _TRAIN:
        raise ValueError(f"exact={exact!r} is unknown: expected None, 'gradient' or 'target'")
    methods = ["dni"] if exact else check_methods(settings["methods"])
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"seeds={seeds!r} is invalid: expected a non-empty list of integers")
    values = {k: settings[k] for k in _CONFIG_KEYS if k in settings}
    configs = {
        (task, t, f"exact_{exact}" if exact else m, s): RNNConfig(method=m, task=task, truncation=t, seed=s, **values).validate()
        for task in tasks for t in truncations for m in methods for s in seeds
    }  # all validated before the first run starts
    runs = train_many(list(configs.values()), None, workers=workers, progress=progress,
                      desc=f"exact {exact}" if exact else "grid", train=_TRAIN[exact], options=options)
    return dict(zip(configs, runs))


def curves_frame(runs: dict[Key, RNNRun]) -> pd.DataFrame:
    """Long table: the longest length solved so far at every log point of every run."""
    rows = [
        {"task": TASK_LABELS[task], "T": t, "method": LABELS[m], "seed": s, "batch": h["batch"],
         "longest length solved": h["solved"], "bits error per sequence": h["bit_errors"]}
        for (task, t, m, s), run in runs.items() for h in run.history
    ]
    return pd.DataFrame(rows)


def scores_frame(runs: dict[Key, RNNRun]) -> pd.DataFrame:
    """Table: rows (task, method), columns T; mean score over seeds."""
    df = pd.DataFrame(
        [{"task": TASK_LABELS[task], "method": LABELS[m], "T": t, "score": run.score}
         for (task, t, m, _), run in runs.items()]
    )
    return df.pivot_table(index=["task", "method"], columns="T", values="score", aggfunc="mean")


def cell_scores(runs: dict[Key, RNNRun], task: str, t: int, method: str) -> list[int]:
    """The scores of one (task, T, method) cell, one per seed."""
    return [r.score for (k, tt, m, _), r in runs.items() if (k, tt, m) == (task, t, method)]


def paper_rows(runs: dict[Key, RNNRun]) -> list[dict]:
    """One README row per (task, T, method): the paper's score beside the mean over seeds, with
    its standard deviation and the number of seeds."""
    cells = sorted({(task, t, m) for task, t, m, _ in runs}, key=lambda c: (c[0], c[1], list(LABELS).index(c[2])))
    return [
        {"setting": f"{TASK_LABELS[task]}, T={t}", "method": LABELS[m],
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
    """The paper's claim and ours, judged on the scores, cell by cell.

    ``<method>_beats_bptt_at_every_T``: at every (task, T) that was run, the mean score of
    ``method`` over seeds exceeds BPTT's by at least ``margin`` and by more than the larger of the
    two standard deviations over seeds (``stats.clearly_above``); for ``dni`` and ``dni_aux``, and
    per task (``..._on_copy``, ``..._on_repeat_copy``).
    ``exact_gradient_beats_dni_at_every_T`` (when the grid holds that upper bound): DNI with the
    exact boundary gradient beats DNI the same way, in every cell; ``exact_gradient_beats_exact_target_at_every_T``
    likewise against DNI regressed onto the exact gradient (bootstrapping taken out).
    ``curves_levelled``: no run of the methods solved more than one length in the last quarter of
    its budget (the upper bounds' runs are not counted)."""
    out = {}
    cells = sorted({(task, t) for task, t, _, _ in runs})

    def beats(high: str, low: str, where: list[tuple[str, int]]) -> bool | None:
        pairs = [(cell_scores(runs, task, t, high), cell_scores(runs, task, t, low)) for task, t in where]
        verdicts = [clearly_above(h, lo, margin) for h, lo in pairs if h and lo]
        return all(verdicts) if verdicts else None

    for method in ("dni", "dni_aux"):
        for suffix, where in [("", cells)] + [(f"_on_{task}", [c for c in cells if c[0] == task])
                                              for task in sorted({task for task, _ in cells})]:
            verdict = beats(method, "bptt", where)
            if verdict is not None:
                out[f"{method}_beats_bptt_at_every_T{suffix}"] = verdict
    for high, low in (("exact_gradient", "dni"), ("exact_gradient", "exact_target")):
        verdict = beats(high, low, cells)
        if verdict is not None:
            out[f"{high}_beats_{low}_at_every_T"] = verdict
    out["curves_levelled"] = all(late_gain(run) <= 1 for (_, _, m, _), run in runs.items() if m in RNN_METHOD_LABELS)
    return out



def _cells_ahead(result: dict, high: str, low: str, task: str | None) -> str | None:
    """In how many (task, T) cells of the rows ``high``'s mean score is above ``low``'s by at least
    the profile's ``margin`` and by more than the larger standard deviation (``stats.clearly_above``)."""
    margin = result["params"]["margin"]
    prefix = TASK_LABELS[task] + ", " if task else ""
    a, b = verdicts.row_cells(result, LABELS[high]), verdicts.row_cells(result, LABELS[low])
    pairs = [(a[s], b[s]) for s in a if s in b and s.startswith(prefix)]
    if not pairs:
        return None
    ahead = sum(h["reproduced"] - lo["reproduced"] >= margin
                and h["reproduced"] - lo["reproduced"] > max(h.get("spread") or 0, lo.get("spread") or 0)
                for h, lo in pairs)
    return f"ahead, beyond the spread, in {ahead} of {len(pairs)} (task, T) cells"


def _paper_range(task: str, method: str) -> str:
    values = [v for (k, m, _), v in PAPER_SCORES.items() if (k, m) == (task, method)]
    return f"{min(values)}–{max(values)}"


def _paper_lead(task: str | None) -> str:
    tasks = [task] if task else ["copy", "repeat_copy"]
    return "; ".join(f"{TASK_LABELS[k]}: DNI {_paper_range(k, 'dni')} against BPTT {_paper_range(k, 'bptt')}"
                     for k in tasks)


def _beyond(result: dict) -> str:
    """How far ahead a method must be: beyond the seed spread, and by ``margin`` where it is not 0."""
    margin = result["params"]["margin"]
    return "by more than the larger seed spread" + (f" and by at least {margin:g}" if margin else "")


def _where(groups: dict) -> str:
    return f"on {TASK_LABELS[groups['task']]}" if groups.get("task") else "on both tasks"


def _late_gains(result: dict, groups: dict) -> str | None:
    gains = [g for key, g in result.get("late_gains", {}).items() if key.split("-")[2] in RNN_METHOD_LABELS]
    return f"at most {max(gains)} more in the last quarter" if gains else None


def _fit_gap(result: dict, groups: dict) -> str | None:
    diagnosis = pd.DataFrame(result.get("diagnosis", []))
    if diagnosis.empty:
        return None
    means = diagnosis.groupby("synth_lr")[["synthesizer cosine", "least-squares cosine"]].mean()
    return "; ".join(f"synth_lr {lr:g}: synthesizer {r['synthesizer cosine']:.2f}, "
                     f"linear fit {r['least-squares cosine']:.2f}" for lr, r in means.iterrows())


def _beats(result: dict, groups: dict) -> str:
    return (f"{LABELS[groups['method']]}'s mean longest length solved above BPTT's {_beyond(result)}, "
            f"at every T {_where(groups)}")


#: The checks of ``claims`` (and of the diagnosis, ``synthesizer_below_linear_fit``, which the
#: notebook computes from ``nb05_rnn_copy_diagnosis.diagnose``'s table) in words
#: (``dni_utils.experiments.verdicts``).
CHECKS: dict[str, verdicts.Check] = {
    r"(?P<method>dni)_beats_bptt_at_every_T(_on_(?P<task>copy|repeat_copy))?": verdicts.Check(
        _beats, lambda result, groups: _cells_ahead(result, "dni", "bptt", groups.get("task")),
        lambda result, groups: _paper_lead(groups.get("task"))),
    r"(?P<method>dni_aux)_beats_bptt_at_every_T(_on_(?P<task>copy|repeat_copy))?": verdicts.Check(
        _beats, lambda result, groups: _cells_ahead(result, "dni_aux", "bptt", groups.get("task")),
        "not available to us (the paper: the auxiliary task helps DNI)"),
    r"exact_gradient_beats_(?P<low>dni|exact_target)_at_every_T": verdicts.Check(
        lambda result, groups: (
            f"DNI with the exact boundary gradient (an upper bound) solves longer sequences than "
            f"{LABELS[groups['low']]}, {_beyond(result)}, in every (task, T) cell"),
        lambda result, groups: _cells_ahead(result, "exact_gradient", groups["low"], None)),
    "curves_levelled": verdicts.Check(
        "no run of BPTT, DNI or DNI + Aux solved more than one more length in the last quarter of its budget "
        "(the curriculum had levelled off)", _late_gains),
    "synthesizer_below_linear_fit": verdicts.Check(
        "at every synthesizer learning rate of the diagnosis, the best linear map from the state to the true "
        "boundary gradient has a higher cosine with it than the synthesizer's prediction (means over the probes)",
        _fit_gap),
}
#: The README's line for notebook 05.
SUMMARY = verdicts.Summary(
    claim="At every truncation T, DNI (and DNI + Aux) solves longer Copy and Repeat Copy sequences than "
          "truncated BPTT.",
    main=(r"(dni|dni_aux)_beats_bptt_at_every_T_on_(copy|repeat_copy)",),
    key=(verdicts.KeyRow("Copy: BPTT", r"^Copy, T=4$", "BPTT"), verdicts.KeyRow("DNI", r"^Copy, T=4$", "DNI"),
         verdicts.KeyRow("Repeat Copy: BPTT", r"^Repeat Copy, T=4$", "BPTT"),
         verdicts.KeyRow("DNI", r"^Repeat Copy, T=4$", "DNI")),
    where="T=4, longest length solved",
    named_after_grid={"cpu": (r".*",)},  # the cpu list leaves out Repeat Copy, where the grid showed no method ahead
)


def failed_asserted_claims(checks: dict[str, bool], assert_claims: bool | list[str]) -> list[str]:
    """The claims of ``checks`` that did not hold among those a profile asserts (``assert_claims``:
    True for all, False for none, or a list of claim names)."""
    return [name for name, held in checks.items() if not held and asserts(assert_claims, name)]


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
        rows.append({"task": TASK_LABELS[task], "T": t, "BPTT": mb, "BPTT sd": sb, LABELS[method]: md,
                     f"{LABELS[method]} sd": sd, "difference": md - mb,
                     "factor": md / mb if mb else float("nan"),
                     "paper factor": pd_ / pb if pb and pd_ else float("nan")})
    return pd.DataFrame(rows)
