"""Asynchronous layer updates (notebook 03, paper section 3.2): a sweep over ``p_update``.

At every step each layer of a feed-forward network (a hidden block with the synthesizer on its
output, or the output layer) is available with probability ``p_update``, independently. With DNI
or cDNI an available layer updates from its synthetic gradient whatever the others do. With Bprop
a layer's gradient needs the backward pass through every layer above it, so (``bprop_async =
"chain"``) it updates only when it and every layer above it are available: block i of an N-block
network then updates with probability ``p_update ** (N - i + 1)`` (blocks counted from 0).
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from dni_utils.data.images import Dataset
from dni_utils.experiments import verdicts
from dni_utils.experiments.ffgrid import cell_errors, check_methods, config_for
from dni_utils.experiments.profiles import check_seeds
from dni_utils.experiments.stats import clearly_above, mean_sd, seed_summary
from dni_utils.tools.runner import RunOptions, train_many
from dni_utils.trainers.feedforward import METHOD_LABELS, FFRun

#: Settings per profile for notebook 03. ``p_updates``: the grid of the sweep (every method is run
#: at every value); ``curve_ps``: the values whose learning curves are drawn. The claims (test
#: error in %) are judged at ``claim_p`` (the paper: DNI still trains at 0.2) and ``cdni_p`` (the
#: paper: cDNI trains at 0.05): DNI's and cDNI's errors there at most ``max_error``, Bprop's at
#: least ``breakdown_margin`` above the better of them at ``claim_p``. ``asserted_claims``: the claims
#: a profile is large enough to show (all are computed and reported). At ``cpu`` the layers learn
#: at Adam 1e-4 and the synthesizers at 1e-3 with one hidden layer of 1024 units (notebook 09: DNI
#: without context needs synthesizers that keep up with the layers and fit their bootstrapped
#: targets; with 1e-3 for both and 256 hidden units DNI ended at 20% error even synchronously).
ASYNC_PROFILES: dict[str, dict] = {
    "smoke": dict(
        dataset="mnist-5k", depth=4, methods=["bprop", "dni", "cdni"], p_updates=[1.0, 0.2], curve_ps=[1.0, 0.2],
        steps=40, batch_size=64, width=32, lr=1e-3, synth_lr=0.0, synth_hidden_layers=1, synth_hidden=32,
        log_every=20, bprop_async="chain", claim_p=0.2, cdni_p=0.2, max_error=90.0, breakdown_margin=0.0,
        assert_claims=False, asserted_claims=[], seeds=[0], workers=1,
    ),
    "cpu": dict(
        dataset="mnist", depth=4, methods=["bprop", "dni", "cdni"], p_updates=[1.0, 0.2, 0.05],
        curve_ps=[1.0, 0.2, 0.05], steps=3000, batch_size=128, width=256, lr=1e-4, synth_lr=1e-3,
        synth_hidden_layers=1, synth_hidden=1024, log_every=300, bprop_async="chain", claim_p=0.2, cdni_p=0.05,
        max_error=20.0, breakdown_margin=2.0, assert_claims=True, seeds=[0, 1, 2], workers=0,
        asserted_claims=["dni_trains_at_p", "cdni_trains_at_low_p", "bprop_breaks_down"],
    ),
    "paper": dict(
        dataset="mnist", depth=4, methods=["bprop", "dni", "cdni"], p_updates=[1.0, 0.5, 0.2, 0.1, 0.05],
        curve_ps=[1.0, 0.2, 0.05], steps=500_000, batch_size=256, width=256, lr=3e-5, synth_lr=0.0,
        synth_hidden_layers=2, synth_hidden=1024, log_every=5000, bprop_async="chain", claim_p=0.2, cdni_p=0.05, max_error=3.0,
        breakdown_margin=3.0, assert_claims=True, seeds=[0, 1, 2], workers=0,
        asserted_claims=["dni_trains_at_p", "cdni_trains_at_low_p", "bprop_breaks_down"],
    ),
}


def check_p_updates(p_updates: list[float]) -> list[float]:
    if not p_updates or not all(isinstance(p, (int, float)) and 0 < p <= 1 for p in p_updates):
        raise ValueError(f"p_updates={p_updates!r} is invalid: expected a non-empty list of probabilities in (0, 1]")
    return sorted({float(p) for p in p_updates}, reverse=True)


def run_sweep(
    settings: dict, data: Dataset, methods: list[str], p_updates: list[float], seeds: list[int],
    progress: bool = True, workers: int = 1, options: RunOptions | None = None,
) -> dict[tuple[str, float, int], FFRun]:
    """Train every (method, p_update, seed); returns the runs keyed by the triple (spread over
    ``workers`` processes; the numbers do not depend on it; ``options``: ``runner.RunOptions``)."""
    check_methods(methods)
    keys = [(m, p, seed) for p in check_p_updates(p_updates) for m in methods for seed in check_seeds(seeds)]
    cfgs = [
        dataclasses.replace(
            config_for(settings, "fcn", settings["depth"], m, seed), p_update=p, bprop_async=settings["bprop_async"]
        ).validate()
        for m, p, seed in keys
    ]
    return dict(zip(keys, train_many(cfgs, data, workers=workers, progress=progress, desc="sweep", options=options)))


def final_frame(runs: dict[tuple[str, float, int], FFRun]) -> pd.DataFrame:
    """One row per run: method, p_update, seed, final test error (%)."""
    return pd.DataFrame([
        {"method": METHOD_LABELS[m], "p_update": p, "seed": seed, "test error (%)": 100 * r.test_error}
        for (m, p, seed), r in runs.items()
    ])


def curves_frame(runs: dict[tuple[str, float, int], FFRun], ps: list[float] | None = None) -> pd.DataFrame:
    """Long table of the learning curves: one row per (method, p_update, seed, logged step)."""
    return pd.DataFrame(
        [
            {"method": METHOD_LABELS[m], "p_update": p, "seed": seed, "step": h["step"],
             "test error (%)": 100 * h["test_error"]}
            for (m, p, seed), r in runs.items()
            if ps is None or p in ps
            for h in r.history
        ]
    )


def updates_frame(runs: dict[tuple[str, float, int], FFRun]) -> pd.DataFrame:
    """Parameter updates each layer received: one row per (method, p_update, seed, layer).

    Layers are numbered from the input: ``1`` .. ``depth`` the hidden blocks, then ``out``.
    """
    rows = []
    for (m, p, seed), r in runs.items():
        names = [str(i + 1) for i in range(len(r.updates))] + ["out"]
        for name, n in zip(names, [*r.updates, r.head_updates]):
            rows.append({"method": METHOD_LABELS[m], "p_update": p, "seed": seed, "layer": name, "updates": n,
                         "fraction of steps": n / r.config.steps})
    return pd.DataFrame(rows)


def claims(
    runs: dict[tuple[str, float, int], FFRun], claim_p: float, cdni_p: float, max_error: float,
    breakdown_margin: float,
) -> dict[str, bool]:
    """The paper's claims on asynchronous updates, judged on the mean final test errors (%) over seeds:

    - ``dni_trains_at_p``: DNI's mean error at ``claim_p`` at most ``max_error``;
    - ``cdni_trains_at_low_p``: cDNI's mean error at ``cdni_p`` at most ``max_error``;
    - ``bprop_breaks_down``: Bprop's error at ``claim_p`` at least ``breakdown_margin`` above the
      best decoupled method's there, beyond the spread (``clearly_above``).

    A claim whose runs are missing is left out.
    """
    errs = cell_errors(runs)
    err = {k: mean_sd(v)[0] for k, v in errs.items()}
    out: dict[str, bool] = {}
    if ("dni", claim_p) in err:
        out["dni_trains_at_p"] = err[("dni", claim_p)] <= max_error
    if ("cdni", cdni_p) in err:
        out["cdni_trains_at_low_p"] = err[("cdni", cdni_p)] <= max_error
    decoupled = [(m, claim_p) for m in ("dni", "cdni") if (m, claim_p) in err]
    if ("bprop", claim_p) in err and decoupled:
        best = min(decoupled, key=err.get)
        out["bprop_breaks_down"] = clearly_above(errs[("bprop", claim_p)], errs[best], breakdown_margin)
    return out



def _error_at(result: dict, method: str, p: float) -> float | None:
    """The mean final test error (%) of ``method`` (a label) at ``p_update`` = ``p``, from the rows."""
    return verdicts.row_value(result, rf", p_update {p:g}$", method)


def _breakdown(result: dict, groups: dict) -> str | None:
    p = result["params"]["claim_p"]
    bprop, dni, cdni = (_error_at(result, m, p) for m in ("Bprop", "DNI", "cDNI"))
    best = min((e for e in (dni, cdni) if e is not None), default=None)
    if bprop is None or best is None:
        return None
    return f"Bprop {bprop:.2f}%, the better of DNI and cDNI {best:.2f}%"


#: The checks of ``claims`` in words (``dni_utils.experiments.verdicts``). ``max_error`` is the
#: profile's bar for "still trains", not the paper's number beside it.
CHECKS: dict[str, verdicts.Check] = {
    "dni_trains_at_p": verdicts.Check(
        "DNI's mean test error at p_update = {claim_p:g} at most {max_error:g}%",
        lambda result, groups: f"{verdicts.fmt(_error_at(result, 'DNI', result['params']['claim_p']))}%",
        "≈2% (DNI at p_update 0.2)"),
    "cdni_trains_at_low_p": verdicts.Check(
        "cDNI's mean test error at p_update = {cdni_p:g} at most {max_error:g}%",
        lambda result, groups: f"{verdicts.fmt(_error_at(result, 'cDNI', result['params']['cdni_p']))}%",
        "≈2%, more slowly (cDNI at p_update 0.05)"),
    "bprop_breaks_down": verdicts.Check(
        lambda result, groups: (
            f"Bprop's mean test error at p_update = {result['params']['claim_p']:g} at least "
            f"{verdicts.points(result['params']['breakdown_margin'])} above the better of DNI and cDNI there, "
            f"beyond the seed spread"),
        _breakdown, "Bprop breaks down"),
}

#: The README's line for notebook 03.
SUMMARY = verdicts.Summary(
    claim="With each layer updated at random (probability p_update), DNI still trains at 0.2 and cDNI at 0.05; "
          "Bprop breaks down.",
    main=("dni_trains_at_p", "cdni_trains_at_low_p", "bprop_breaks_down"),
    key=(verdicts.KeyRow("DNI at 0.2", r", p_update 0\.2$", "DNI"),
         verdicts.KeyRow("cDNI at 0.05", r", p_update 0\.05$", "cDNI"),
         verdicts.KeyRow("Bprop at 0.2", r", p_update 0\.2$", "Bprop")),
    where="FCN, 4 layers, test error (%)",
    asserted=lambda result: result["params"]["asserted_claims"] if result["params"]["assert_claims"] else [],
)


def paper_rows(runs: dict[tuple[str, float, int], FFRun], depth: int) -> list[dict]:
    """Rows for the README: the reproduced mean final error over seeds (``spread``: standard
    deviation, ``n``: seeds) beside what the paper reports."""
    paper = {("dni", 0.2): "≈2", ("cdni", 0.05): "≈2 (slower)", ("bprop", 0.2): "breaks down"}
    return [
        {"setting": f"FCN, {depth} layers, p_update {p:g}", "method": METHOD_LABELS[m], "metric": "test error (%)",
         "paper": paper.get((m, p)), **seed_summary(errs)}
        for (m, p), errs in sorted(cell_errors(runs).items(), key=lambda kv: (-kv[0][1], kv[0][0]))
    ]
