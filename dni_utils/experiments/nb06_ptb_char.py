"""The Penn Treebank table (notebook 06): run a grid of (method, T, seed) language models, turn it
into learning curves, the table of test BPC, the data-efficiency ratio and the paper's claims."""

from __future__ import annotations

import pandas as pd

from dni_utils.data.text import TextCorpus
from dni_utils.experiments import verdicts
from dni_utils.experiments.stats import clearly_above, mean_sd, seed_summary
from dni_utils.tools.runner import RunOptions, train_many
from dni_utils.trainers.language_model import LMConfig, LMRun, train_lm
from dni_utils.trainers.recurrent import RNN_METHOD_LABELS, check_methods, check_truncations


#: Settings per profile for notebook 06. ``truncations`` run with every method in ``methods``;
#: ``reference_truncations`` run with BPTT only (the long-truncation baselines), for
#: ``reference_train_chars`` (0: ``train_chars``), long enough for them to reach their best. ``pair`` is the
#: (DNI T, BPTT T) of the data-efficiency claim: the characters DNI at the first T needs to reach
#: the best validation BPC of BPTT at the second, against the characters BPTT needed.
#: ``assert_claims``: True, False or the names of the claims the profile asserts.
#: The synthesizer reads [h, tanh(c)] (``squash_cell``) at the paper's reported scale of 0.1: reading
#: the raw cell state, DNI at T >= 4 ran away on the stream at cpu (the cell state's norm grew without
#: bound, to 76,000 after 12,000 steps at T = 8, and the BPC stayed at the unigram level, 4.3);
#: a scale of 0.03 avoided it but discounts the future gradient 33x per chunk.
PTB_PROFILES: dict[str, dict] = {
    "smoke": dict(
        dataset="markov", truncations=[2, 4], reference_truncations=[8], methods=["bptt", "dni", "dni_aux"],
        seeds=[0], workers=1, pair=[4, 8], hidden=16, batch_size=8, train_chars=2_000, reference_train_chars=3_000,
        eval_every=1_000,
        eval_streams=2, segment=40, lr=3e-3, synth_lr=1e-3, synth_hidden_layers=0, synth_hidden=16,
        grad_scale=0.1, squash_cell=True, aux_weight=0.1, assert_claims=False,
    ),
    "cpu": dict(
        dataset="ptb-mini", truncations=[2, 4, 8], reference_truncations=[40], methods=["bptt", "dni", "dni_aux"],
        seeds=[0, 1], workers=0, pair=[8, 40], hidden=256, batch_size=32, train_chars=2_000_000,
        reference_train_chars=6_000_000, eval_every=200_000,
        eval_streams=8, segment=200, lr=2e-3, synth_lr=1e-3, synth_hidden_layers=0, synth_hidden=256,
        grad_scale=0.1, squash_cell=True, aux_weight=0.1,
        assert_claims=["dni_beats_bptt_at_T2", "dni_aux_beats_bptt_at_T2", "dni_aux_beats_bptt_at_T4",
                       "dni_aux_beats_bptt_at_T8"],
    ),
    "paper": dict(
        dataset="ptb", truncations=[2, 3, 4, 5, 8, 20, 40], reference_truncations=[], methods=["bptt", "dni", "dni_aux"],
        seeds=[0, 1, 2], workers=0, pair=[8, 40], hidden=1024, batch_size=128, train_chars=100_000_000,
        reference_train_chars=0,
        eval_every=2_000_000, eval_streams=16, segment=200, lr=1e-3, synth_lr=1e-4, synth_hidden_layers=0,
        synth_hidden=1024, grad_scale=0.1, squash_cell=True, aux_weight=0.1, assert_claims=True,
    ),
}

#: LMConfig fields a profile table may set.
_CONFIG_KEYS = (
    "hidden", "batch_size", "train_chars", "eval_every", "eval_streams", "segment", "lr", "synth_lr",
    "synth_hidden_layers", "synth_hidden", "grad_scale", "squash_cell", "aux_weight",
)

Key = tuple[str, int, int]  # (method, T, seed)


def cells(settings: dict) -> list[tuple[str, int]]:
    """The (method, T) cells of the grid: every method at every T of ``truncations``, and BPTT at
    the ``reference_truncations`` (validated)."""
    methods = check_methods(settings["methods"])
    out = [(m, t) for t in check_truncations(settings["truncations"]) for m in methods]
    refs = settings.get("reference_truncations") or []
    if refs:
        check_truncations(refs)
    out += [("bptt", t) for t in refs if ("bptt", t) not in out]
    dni_t, bptt_t = settings["pair"]
    for method, t in (("dni", dni_t), ("bptt", bptt_t)):
        if (method, t) not in out:
            raise ValueError(f"pair={settings['pair']!r} is invalid: the grid has no {method} run at T={t}")
    return out


def configs(settings: dict, seeds: list[int]) -> dict[Key, LMConfig]:
    """Every run's configuration, validated before the first one starts."""
    values = {k: settings[k] for k in _CONFIG_KEYS if k in settings}
    refs = set(settings.get("reference_truncations") or []) - set(settings["truncations"])
    longer = settings.get("reference_train_chars") or settings["train_chars"]
    return {(m, t, s): LMConfig(method=m, truncation=t, seed=s,
                                **{**values, "train_chars": longer if t in refs else settings["train_chars"]}).validate()
            for m, t in cells(settings) for s in seeds}


def run_grid(settings: dict, corpus: TextCorpus, seeds: list[int], progress: bool = True,
             workers: int = 1, options: RunOptions | None = None) -> dict[Key, LMRun]:
    """Train every (method, T, seed) of ``settings`` on ``corpus``, spread over ``workers`` processes
    (one thread per run, so the numbers do not depend on ``workers``); options: device, step cap,
    checkpoints (``runner.RunOptions``)."""
    cfgs = configs(settings, seeds)
    runs = train_many(list(cfgs.values()), corpus, workers=workers, progress=progress, desc="grid", train=train_lm,
                      options=options)
    return dict(zip(cfgs, runs))


def label(method: str, t: int) -> str:
    return f"{RNN_METHOD_LABELS[method]} T={t}"


def curves_frame(runs: dict[Key, LMRun]) -> pd.DataFrame:
    """Long table: validation BPC at every validation point of every run, against training
    characters and against training seconds (one thread, evaluation excluded)."""
    rows = [
        {"run": label(m, t), "method": RNN_METHOD_LABELS[m], "T": t, "seed": s, "characters": h["chars"],
         "seconds": sec, "validation BPC": h["valid_bpc"], "training BPC": h["train_bpc"]}
        for (m, t, s), run in runs.items() for h, sec in zip(run.history, run.seconds)
    ]
    return pd.DataFrame(rows)


def _values(runs: dict[Key, LMRun], method: str, t: int, field: str = "test_bpc") -> list[float]:
    return [getattr(r, field) for (m, tt, _), r in runs.items() if (m, tt) == (method, t)]


def test_table(runs: dict[Key, LMRun], stat: str = "mean") -> pd.DataFrame:
    """Rows: method; columns: T; the test BPC of the best-validation checkpoint (mean or sd over seeds)."""
    df = pd.DataFrame([{"method": RNN_METHOD_LABELS[m], "T": t, "test BPC": r.test_bpc} for (m, t, _), r in runs.items()])
    agg = "mean" if stat == "mean" else (lambda v: mean_sd(list(v))[1])
    table = df.pivot_table(index="method", columns="T", values="test BPC", aggfunc=agg)
    order = [RNN_METHOD_LABELS[m] for m in RNN_METHOD_LABELS if RNN_METHOD_LABELS[m] in table.index]
    return table.loc[order]


def chars_to_reach(run: LMRun, target: float) -> int | None:
    """Training characters at the first validation point whose BPC is at most ``target`` (None if none)."""
    return next((h["chars"] for h in run.history if h["valid_bpc"] <= target), None)


def efficiency(runs: dict[Key, LMRun], pair: list[int]) -> list[dict]:
    """Per seed: BPTT at ``pair[1]`` reaches its best validation BPC after ``bptt_chars``
    characters; DNI at ``pair[0]`` first reaches that BPC after ``dni_chars`` (None: never within
    its budget); ``ratio`` = bptt_chars / dni_chars, how many times fewer characters DNI needed.
    The control: BPTT at DNI's T, ``control_chars`` and ``control_ratio`` the same way, so that
    the share of the ratio that comes from the shorter T alone (more updates per character) shows."""
    dni_t, bptt_t = pair
    out = []
    for (m, t, s), bptt in sorted(runs.items()):
        if (m, t) != ("bptt", bptt_t) or ("dni", dni_t, s) not in runs:
            continue
        row = {"seed": s, "target_bpc": bptt.best_valid_bpc, "bptt_chars": bptt.best_chars}
        for name, key in (("dni", ("dni", dni_t, s)), ("control", ("bptt", dni_t, s))):
            reached = chars_to_reach(runs[key], bptt.best_valid_bpc) if key in runs else None
            row[f"{name}_chars"] = reached
            row["ratio" if name == "dni" else "control_ratio"] = bptt.best_chars / reached if reached else None
        out.append(row)
    return out


def seconds_to_reach(run: LMRun, target: float) -> float | None:
    """Training seconds at the first validation point whose BPC is at most ``target`` (None if none)."""
    return next((sec for h, sec in zip(run.history, run.seconds) if h["valid_bpc"] <= target), None)


def claims(runs: dict[Key, LMRun], settings: dict) -> dict[str, bool]:
    """The paper's claims, judged on the test BPC (mean over seeds; the difference must exceed the
    spread over seeds): DNI (and DNI + Aux) beats BPTT at each T of ``truncations``
    (``dni_beats_bptt_at_T2``, ...); and DNI at ``pair[0]`` reaches BPTT at ``pair[1]``'s best
    validation BPC in fewer characters, at every seed, and by more than BPTT at ``pair[0]`` does
    (the control: a gain the shorter T gives BPTT too is not DNI's). The control alone is also
    reported (``dni_T<pair[0]>_reaches_it_sooner_than_bptt_T<pair[0]>``)."""
    out = {}
    for method in ("dni", "dni_aux"):
        for t in settings["truncations"]:
            if _values(runs, method, t) and _values(runs, "bptt", t):
                out[f"{method}_beats_bptt_at_T{t}"] = clearly_above(_values(runs, "bptt", t), _values(runs, method, t))
    eff = efficiency(runs, settings["pair"])
    if eff:
        dni_t, bptt_t = settings["pair"]
        beats_control = all(
            e["ratio"] is not None and (e["control_ratio"] is None or e["ratio"] > e["control_ratio"]) for e in eff)
        out[f"dni_T{dni_t}_reaches_bptt_T{bptt_t}_in_fewer_characters"] = beats_control and all(
            e["ratio"] > 1 for e in eff)
        out[f"dni_T{dni_t}_reaches_it_sooner_than_bptt_T{dni_t}"] = beats_control
    return out



def _bpc(result: dict, groups: dict) -> str | None:
    t = groups["t"]
    mine = verdicts.key_row(result, verdicts.KeyRow("", rf", T={t}$", RNN_METHOD_LABELS[groups["method"]]))
    bptt = verdicts.key_row(result, verdicts.KeyRow("", rf", T={t}$", "BPTT"))
    if mine is None or bptt is None:
        return None
    return (f"{mine['reproduced']:.3f} ± {mine.get('spread') or 0:.3f} against BPTT's "
            f"{bptt['reproduced']:.3f} ± {bptt.get('spread') or 0:.3f}")


def _ratios(result: dict, key: str) -> str:
    values = [e[key] for e in result.get("efficiency", [])]
    return ", ".join("never" if v is None else f"{v:.2f}" for v in values)


#: The checks of ``claims`` in words (``dni_utils.experiments.verdicts``). The ratio is how many
#: times fewer characters a run needs than BPTT at the long T to reach BPTT's best validation BPC
#: there; the control runs BPTT at DNI's short T, to tell DNI's gain from the shorter T's.
CHECKS: dict[str, verdicts.Check] = {
    r"(?P<method>dni|dni_aux)_beats_bptt_at_T(?P<t>\d+)": verdicts.Check(
        lambda result, groups: (f"{RNN_METHOD_LABELS[groups['method']]}'s mean test BPC at T={groups['t']} "
                                f"below BPTT's, beyond the seed spread (no margin)"),
        _bpc, "lower BPC than BPTT at the same T"),
    r"dni_T(?P<short>\d+)_reaches_bptt_T(?P<long>\d+)_in_fewer_characters": verdicts.Check(
        "at every seed, DNI at T={short} reaches BPTT T={long}'s best validation BPC in fewer characters than "
        "BPTT T={long} took (ratio above 1), and in fewer than BPTT at T={short} took (its ratio above the "
        "control's: a gain the shorter T gives BPTT too is not DNI's)",
        lambda result, groups: f"ratio per seed {_ratios(result, 'ratio')}", "about 2 (twice as fast)"),
    r"dni_T(?P<short>\d+)_reaches_it_sooner_than_bptt_T(?P=short)": verdicts.Check(
        "at every seed, DNI at T={short} reaches that BPC in fewer characters than BPTT at the same T={short} "
        "(the control: the gain must be DNI's, not the shorter truncation's)",
        lambda result, groups: (f"ratio per seed: DNI {_ratios(result, 'ratio')}; BPTT T={groups['short']} "
                                f"{_ratios(result, 'control_ratio')}")),
}

#: The README's line for notebook 06.
SUMMARY = verdicts.Summary(
    claim="DNI (and DNI + Aux) reaches a lower BPC than truncated BPTT at the same T; DNI at T=8 reaches "
          "BPTT T=40's quality about twice as fast.",
    main=(r"(dni|dni_aux)_beats_bptt_at_T\d+", r"dni_T\d+_reaches_bptt_T\d+_in_fewer_characters",
          r"dni_T(\d+)_reaches_it_sooner_than_bptt_T\1"),
    key=(verdicts.KeyRow("DNI T=8", r"T=8 vs BPTT T=40$", "DNI"),
         verdicts.KeyRow("BPTT T=8 (control)", r"T=8 vs BPTT T=40$", "BPTT (control)")),
    where="T=8 against BPTT T=40, how many times fewer characters to reach BPTT T=40's best validation BPC",
    # dni_beats_bptt_at_T2 was named before the cpu grid, from a one-seed pilot; DNI + Aux's after it
    named_after_grid={"cpu": (r"dni_aux_beats_bptt_at_T\d+",)},
)


def paper_rows(runs: dict[Key, LMRun], settings: dict, dataset: str) -> list[dict]:
    """README rows: test BPC per (method, T) (mean ± sd over seeds), then the data-efficiency ratio
    beside the paper's "about twice as fast"."""
    order = list(RNN_METHOD_LABELS)
    rows = [
        {"setting": f"{dataset}, T={t}", "method": RNN_METHOD_LABELS[m], "metric": "test BPC (best validation checkpoint)",
         "paper": None, "digits": 3, **seed_summary(_values(runs, m, t))}
        for m, t in sorted(cells(settings), key=lambda c: (c[1], order.index(c[0])))
    ]
    dni_t, bptt_t = settings["pair"]
    eff = efficiency(runs, settings["pair"])
    for method, key, paper in (("DNI", "ratio", "≈2"), ("BPTT (control)", "control_ratio", None)):
        ratios = [e[key] for e in eff]
        reached = [r for r in ratios if r is not None]
        rows.append({
            "setting": f"{dataset}, T={dni_t} vs BPTT T={bptt_t}", "method": method,
            "metric": f"characters BPTT T={bptt_t} needs for its best validation BPC / characters this method at "
                      f"T={dni_t} needs for the same (reached at {len(reached)} of {len(ratios)} seeds)",
            "paper": paper, **(seed_summary(reached) if reached else {"reproduced": None}),
        })
    return rows
