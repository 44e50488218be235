"""Why DNI without label context trails Bprop on the MNIST FCN, and what closes the gap (notebook 09).

One baseline, DNI as notebook 01 ran it before this diagnosis (a synthesizer of one hidden layer
of 256 units, layers at Adam 1e-4 and synthesizers at 1e-3, ``grad_scale`` 1), and one change at
a time from it, grouped by *axis*:

- ``synthesizer``: depth and width of the DNI synthesizer (0, 1 or 2 hidden layers, as the paper
  searched; up to the paper's 2 x 1024), and more optimiser steps per target for the small one;
- ``learning rates``: the layers' and the synthesizers' Adam rates, hence their ratio;
- ``grad_scale``: the factor on the injected synthetic gradient;
- ``target``: what each synthesizer regresses onto, its bootstrapped target (the method) or the
  true back-propagated gradient (an oracle, ``synth_target="true"``, never a DNI result). The
  oracle separates "a synthesizer cannot model the gradient" from "bootstrapped targets lose it".

Every variant runs at every seed of the profile, at the depths its entry names, beside Bprop and
cDNI at the same sizes. Each run logs, per interface, the cosine of the synthetic gradient with
the true one, with its own target, and of its target with the true gradient
(``FFTrainer.gradient_diagnostics``).
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from dni_utils.data.images import Dataset
from dni_utils.experiments import verdicts
from dni_utils.experiments.profiles import check_seeds
from dni_utils.tools.runner import RunOptions, train_many
from dni_utils.trainers.feedforward import FFConfig, FFRun

#: The DNI baseline of the diagnosis: notebook 01's cpu settings for DNI before it.
BASELINE = dict(
    method="dni", synth_kind="mlp", synth_hidden_layers=1, synth_hidden=256, lr=1e-4, synth_lr=1e-3,
    grad_scale=1.0, synth_target="bootstrap",
)

#: The variants: (axis, label, the FFConfig fields changed from BASELINE, depths to run it at or
#: None for the profile's ``depths``). The baseline itself is the entry of every axis labelled
#: "baseline"; ``reference`` methods (Bprop, cDNI) run at every depth with their own settings.
ABLATIONS: list[tuple[str, str, dict, list[int] | None]] = [
    ("synthesizer", "linear", dict(synth_kind="linear"), None),
    ("synthesizer", "1x256 (baseline)", {}, None),
    ("synthesizer", "2x256", dict(synth_hidden_layers=2), None),
    ("synthesizer", "1x1024", dict(synth_hidden=1024), None),
    ("synthesizer", "2x1024 (paper)", dict(synth_hidden_layers=2, synth_hidden=1024), None),
    ("synthesizer", "1x256, 4 steps per batch", dict(synth_steps=4), None),
    ("learning rates", "1e-3 / 1e-3", dict(lr=1e-3), None),
    ("learning rates", "1e-4 / 1e-3 (baseline)", {}, None),
    ("learning rates", "3e-5 / 1e-3", dict(lr=3e-5), None),
    ("learning rates", "1e-4 / 1e-4", dict(synth_lr=1e-4), None),
    ("learning rates", "1e-4 / 3e-3", dict(synth_lr=3e-3), None),
    ("grad_scale", "0.1", dict(grad_scale=0.1), None),
    ("grad_scale", "1 (baseline)", {}, None),
    ("grad_scale", "3", dict(grad_scale=3.0), None),
    ("target", "bootstrap (baseline)", {}, None),
    ("target", "true gradient (oracle)", dict(synth_target="true"), None),
]


#: Settings per profile for notebook 09 (FFConfig fields, shared by every run, and the grid).
#: ``depths``: the depths of the grid; ``deep_axes``: the axes also run at the deepest depth (the
#: others at the shallowest only, to fit the budget); ``reference``: the methods run beside DNI;
#: ``near_points``: how close to Bprop (percentage points) counts as "about as well";
#: ``workers``: processes to spread the runs over (0 = one per core; results do not depend on it).
DIAG_PROFILES: dict[str, dict] = {
    "smoke": dict(
        dataset="mnist-5k", depths=[2, 3], deep_axes=["target"], seeds=[0], steps=30, batch_size=64, width=32,
        synth_hidden_scale=1 / 8, log_every=15, reference=["bprop", "cdni"], near_points=4.0, low_cosine=0.1,
        workers=1, assert_claims=False,
    ),
    "cpu": dict(
        dataset="mnist", depths=[3, 6], deep_axes=["target"], seeds=[0, 1], steps=2000,
        batch_size=256, width=256, synth_hidden_scale=1, log_every=250, reference=["bprop", "cdni"],
        near_points=1.0, low_cosine=0.1, workers=0, assert_claims=True,
    ),
    "paper": dict(
        dataset="mnist", depths=[3, 6], deep_axes=["synthesizer", "learning rates", "grad_scale", "target"],
        seeds=[0, 1, 2], steps=500_000, batch_size=256, width=256, synth_hidden_scale=1, log_every=5000,
        reference=["bprop", "cdni"], near_points=0.5, low_cosine=0.1, workers=0, assert_claims=True,
    ),
}

_SHARED = ("steps", "batch_size", "width", "log_every")


def check_depths(depths: list) -> list[int]:
    if not depths or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in depths):
        raise ValueError(f"depths={depths!r} is invalid: expected a non-empty list of positive integers")
    return sorted(set(depths))


def variant_config(settings: dict, overrides: dict, depth: int, seed: int) -> FFConfig:
    """The FFConfig of one DNI variant: BASELINE, then ``overrides``, at the profile's sizes."""
    values = {**BASELINE, **overrides}
    scale = settings["synth_hidden_scale"]
    values["synth_hidden"] = max(1, round(values["synth_hidden"] * scale))
    shared = {k: settings[k] for k in _SHARED}
    return FFConfig(arch="fcn", depth=depth, seed=seed, **shared, **values).validate()


def reference_config(settings: dict, method: str, depth: int, seed: int) -> FFConfig:
    """Bprop or cDNI at the baseline's learning rates (cDNI: a linear synthesizer with the label)."""
    shared = {k: settings[k] for k in _SHARED}
    return FFConfig(
        method=method, arch="fcn", depth=depth, seed=seed, lr=BASELINE["lr"], synth_lr=BASELINE["synth_lr"],
        csynth_kind="linear", **shared,
    ).validate()


def plan(settings: dict, depths: list[int], seeds: list[int]) -> list[dict]:
    """Every run of the diagnosis: one dict per (variant or reference, depth, seed) with its
    ``config``. A variant that several axes share (the baseline) is run once and listed under
    each of them by ``frames``."""
    depths = check_depths(depths)
    seeds = check_seeds(seeds)
    deep = set(settings["deep_axes"])
    runs: dict[tuple, dict] = {}
    for axis, label, overrides, only in ABLATIONS:
        at = only or ([*depths] if axis in deep else depths[:1])
        for depth in at:
            for seed in seeds:
                key = ("dni", tuple(sorted(overrides.items())), depth, seed)
                runs.setdefault(key, dict(kind="dni", overrides=overrides, depth=depth, seed=seed,
                                          config=variant_config(settings, overrides, depth, seed)))
    for method in settings["reference"]:
        for depth in depths:
            for seed in seeds:
                runs[(method, (), depth, seed)] = dict(kind=method, overrides={}, depth=depth, seed=seed,
                                                       config=reference_config(settings, method, depth, seed))
    return list(runs.values())


def run_plan(
    items: list[dict], data: Dataset, workers: int, progress: bool = True, options: RunOptions | None = None
) -> list[dict]:
    """Train every planned run (spread over ``workers`` processes; ``options``: ``runner.RunOptions``);
    adds its ``run`` to each item."""
    runs = train_many([it["config"] for it in items], data, workers=workers, progress=progress, desc="diagnosis",
                      options=options)
    return [{**it, "run": run} for it, run in zip(items, runs)]


def _matches(item: dict, overrides: dict) -> bool:
    return item["kind"] == "dni" and item["overrides"] == overrides


def frames(done: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two long tables: final test error per (axis, variant, depth, seed), and the per-interface
    cosines at the last log point (``grad``: with the true gradient; ``fit``: with its own target;
    ``target``: its target with the true gradient), with ``from top`` = 0 for the last interface."""
    errors, cosines = [], []
    for axis, label, overrides, _ in ABLATIONS:
        for item in (it for it in done if _matches(it, overrides)):
            run: FFRun = item["run"]
            errors.append(dict(axis=axis, variant=label, layers=item["depth"], seed=item["seed"],
                               error=100 * run.test_error))
            last = run.history[-1]
            depth = item["depth"]
            for which, key in (("grad", "grad_cosine"), ("fit", "fit_cosine"), ("target", "target_cosine")):
                for i, c in enumerate(last[key]):
                    cosines.append(dict(axis=axis, variant=label, layers=depth, seed=item["seed"], cosine=which,
                                        interface=i + 1, **{"from top": depth - 1 - i}, value=c))
    return pd.DataFrame(errors), pd.DataFrame(cosines)


def reference_frame(done: list[dict]) -> pd.DataFrame:
    """Final test error (%) of the reference methods per (method, depth, seed)."""
    return pd.DataFrame([
        dict(method=it["kind"], layers=it["depth"], seed=it["seed"], error=100 * it["run"].test_error)
        for it in done if it["kind"] != "dni"
    ])


def summary(errors: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and count of the final error (%) per (axis, variant, depth), with
    Bprop's mean at the same depth and the gap to it."""
    table = errors.groupby(["axis", "variant", "layers"], sort=False)["error"].agg(["mean", "std", "count"])
    bprop = reference[reference.method == "bprop"].groupby("layers")["error"].mean()
    table["Bprop"] = [bprop.get(d, float("nan")) for d in table.index.get_level_values("layers")]
    table["gap"] = table["mean"] - table["Bprop"]
    return table.fillna({"std": 0.0})


def _mean(errors: pd.DataFrame, variant: str, depth: int) -> tuple[float, float] | None:
    sub = errors[(errors.variant == variant) & (errors.layers == depth)]["error"]
    if sub.empty:
        return None
    return float(sub.mean()), float(sub.std()) if len(sub) > 1 else 0.0


def _cos(cosines: pd.DataFrame, variant: str, depth: int, which: str) -> list[float]:
    """Mean over seeds of one cosine per interface, ordered from the top (index 0) down."""
    sub = cosines[(cosines.variant == variant) & (cosines.layers == depth) & (cosines.cosine == which)]
    sub = sub.drop_duplicates(["seed", "interface"])
    return [float(v) for v in sub.groupby("from top")["value"].mean().sort_index()]


def claims(
    errors: pd.DataFrame, cosines: pd.DataFrame, reference: pd.DataFrame, settings: dict,
) -> tuple[dict[str, bool], dict]:
    """The diagnosis's findings as checks (see notebook 09), and the numbers they were judged on.

    Means over seeds throughout; "beyond the spread": a difference of means larger than the
    larger of the two standard deviations. A check whose runs are missing is left out.
    """
    near, low = settings["near_points"], settings["low_cosine"]
    depths = sorted(errors["layers"].unique())
    shallow, deep = int(depths[0]), int(depths[-1])
    bprop = reference[reference.method == "bprop"].groupby("layers")["error"].mean()
    checks: dict[str, bool] = {}
    evidence: dict = {"bprop": {int(d): float(v) for d, v in bprop.items()}}

    oracle = {d: _mean(errors, "true gradient (oracle)", d) for d in depths}
    oracle = {int(d): m for d, m in oracle.items() if m is not None and d in bprop}
    if oracle:
        evidence["oracle_gap"] = {d: m[0] - bprop[d] for d, m in oracle.items()}
        checks["oracle_near_bprop"] = all(gap <= near for gap in evidence["oracle_gap"].values())

    base = "1x256 (baseline)"
    grad, fit, target = (_cos(cosines, base, deep, w) for w in ("grad", "fit", "target"))
    if len(grad) > 1:
        evidence["baseline_cosines_from_top"] = {"grad": grad, "fit": fit, "target": target}
        checks["bootstrap_loses_gradient"] = abs(grad[-1]) < low and grad[0] >= 3 * low
        # target_i is what survives of the true gradient; the fits above it predict at most
        # prod_{j above i} fit_j of it (each synthesizer passes on the part it fits).
        predicted = [1.0]
        for f in fit[:-1]:
            predicted.append(predicted[-1] * f)
        evidence["target_vs_product_of_fits"] = [[t, p] for t, p in zip(target, predicted)]
        checks["loss_compounds"] = all(t <= p + low for t, p in zip(target[1:], predicted[1:]))

    paper, baseline = "2x1024 (paper)", base
    pairs = {int(d): (_mean(errors, paper, d), _mean(errors, baseline, d)) for d in depths}
    pairs = {d: (p, b) for d, (p, b) in pairs.items() if p is not None and b is not None}
    if pairs:
        evidence["paper_synth_vs_baseline"] = {d: [p[0], b[0]] for d, (p, b) in pairs.items()}
        checks["capacity_helps"] = all(b[0] - p[0] > max(p[1], b[1]) for p, b in pairs.values())
        if shallow in pairs and shallow in bprop:
            checks["paper_synth_near_bprop_shallow"] = pairs[shallow][0][0] - bprop[shallow] <= near
    b_deep = _mean(errors, baseline, deep)
    if b_deep is not None and deep in bprop and len(depths) > 1:
        evidence["baseline_gap_deepest"] = b_deep[0] - bprop[deep]
        checks["gap_at_depth"] = b_deep[0] - bprop[deep] > near
    return {name: bool(held) for name, held in checks.items()}, evidence



def _near(result: dict) -> str:
    return verdicts.points(result["params"]["near_points"])


def _evidence(result: dict) -> dict:
    return result.get("evidence", {})


def _oracle(result: dict, groups: dict) -> str | None:
    gaps = _evidence(result).get("oracle_gap")
    return ", ".join(f"{gap:+.2f} points at {d} layers" for d, gap in gaps.items()) if gaps else None


def _bottom_top(result: dict, groups: dict) -> str | None:
    grad = _evidence(result).get("baseline_cosines_from_top", {}).get("grad")
    return f"top {grad[0]:.2f}, bottom {grad[-1]:.2f}" if grad else None


def _compounds(result: dict, groups: dict) -> str | None:
    pairs = _evidence(result).get("target_vs_product_of_fits")
    if not pairs:
        return None
    worst = max(t - p for t, p in pairs[1:])
    return f"largest excess of a target's cosine over the product {worst:+.3f}"


def _capacity(result: dict, groups: dict) -> str | None:
    pairs = _evidence(result).get("paper_synth_vs_baseline")
    return ", ".join(f"{p:.2f}% against {b:.2f}% at {d} layers" for d, (p, b) in pairs.items()) if pairs else None


def _paper_synth_gap(result: dict, groups: dict) -> str | None:
    evidence = _evidence(result)
    pairs, bprop = evidence.get("paper_synth_vs_baseline", {}), evidence.get("bprop", {})
    shallow = min(pairs, key=int, default=None)
    if shallow is None or shallow not in bprop:
        return None
    return f"{pairs[shallow][0] - bprop[shallow]:+.2f} points at {shallow} layers"


def _deep_gap(result: dict, groups: dict) -> str | None:
    gap = _evidence(result).get("baseline_gap_deepest")
    return None if gap is None else f"{gap:+.2f} points"


#: The checks of ``claims`` in words (``dni_utils.experiments.verdicts``), measured from the
#: result's ``evidence``. The diagnosis is ours: the paper has no number for it.
CHECKS: dict[str, verdicts.Check] = {
    "oracle_near_bprop": verdicts.Check(
        lambda result, groups: (
            f"DNI regressed onto the true gradient (an oracle, not DNI) within {_near(result)} of Bprop's mean test "
            f"error at every depth"), _oracle),
    "bootstrap_loses_gradient": verdicts.Check(
        lambda result, groups: (
            f"in the deepest baseline network, the synthetic gradient's cosine with the true gradient at least "
            f"{3 * result['params']['low_cosine']:g} at the top interface and below {result['params']['low_cosine']:g} "
            f"in size at the bottom one"), _bottom_top),
    "loss_compounds": verdicts.Check(
        "below the top, each interface's bootstrapped target keeps no more of the true gradient (cosine) than the "
        "product of the fits of the synthesizers above it, plus {low_cosine:g}", _compounds),
    "capacity_helps": verdicts.Check(
        "the paper's 2x1024 synthesizer ends below the 1x256 baseline, beyond the seed spread, at every depth it ran",
        _capacity),
    "paper_synth_near_bprop_shallow": verdicts.Check(
        lambda result, groups: (
            f"with the paper's 2x1024 synthesizer, DNI within {_near(result)} of Bprop at the shallowest depth"),
        _paper_synth_gap),
    "gap_at_depth": verdicts.Check(
        lambda result, groups: (
            f"the 1x256 baseline more than {_near(result)} behind Bprop at the deepest depth (the gap to explain)"),
        _deep_gap),
}

#: The README's line for notebook 09.
SUMMARY = verdicts.Summary(
    claim="(A diagnosis of ours.) DNI without label context trails Bprop because bootstrapped targets lose the "
          "true gradient down the stack; with true targets it trains as well as Bprop.",
    main=tuple(CHECKS),
    key=(verdicts.KeyRow("DNI", r"^FCN, 6 layers · target: bootstrap", "DNI"),
         verdicts.KeyRow("DNI, true targets", r"^FCN, 6 layers · target: true gradient", "DNI (oracle targets)"),
         verdicts.KeyRow("Bprop", r"^FCN, 6 layers$", "Bprop")),
    where="FCN, 6 layers, test error (%)",
    paper="– (≈2% for Bprop at the paper's scale)",
)


def result_rows(table: pd.DataFrame, reference: pd.DataFrame) -> list[dict]:
    """README rows: mean test error (± std over seeds) of every variant, then Bprop and cDNI."""
    rows = []
    for (axis, variant, depth), r in table.iterrows():
        rows.append({
            "setting": f"FCN, {depth} layers · {axis}: {variant}",
            "method": "DNI (oracle targets)" if "oracle" in variant else "DNI",
            "metric": "test error (%)",
            "paper": None,
            "reproduced": float(r["mean"]),
            "spread": float(r["std"]),
            "n": int(r["count"]),
        })
    labels = {"bprop": "Bprop", "cdni": "cDNI"}
    for (method, depth), sub in reference.groupby(["method", "layers"], sort=True):
        rows.append({
            "setting": f"FCN, {depth} layers", "method": labels.get(method, method), "metric": "test error (%)",
            "paper": "≈2" if method != "nobprop" else None, "reproduced": float(sub["error"].mean()),
            "spread": float(sub["error"].std()) if len(sub) > 1 else 0.0, "n": int(len(sub)),
        })
    return rows
