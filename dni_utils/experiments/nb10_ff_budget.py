"""Notebook 10 (``notebooks/10_ff_budget.ipynb``): does DNI without label context close its gap to
Bprop as the training budget grows?

At ``cpu`` DNI without context trails Bprop where the paper has them level (notebooks 01, 02 and
09), and the paper trained 500k steps where the ``cpu`` runs train 2,000. Each *case* (a data set,
an architecture and a depth) is trained at several budgets, each run with its own learning-rate
schedule (the milestones are fractions of its steps), by Bprop, DNI and cDNI (and No Bprop where
the question is whether DNI trains the hidden layers at all) at every seed. The gap of a method to
Bprop is taken per seed (the same batches), and its trend is the least-squares slope of the gap
against log2 of the budget: points of test error gained per doubling of the budget.

The claims are stated here, before the runs: for every case, DNI's gap shrinks with budget
(``dni_gap_shrinks``: the slope is negative by more than ``slope_sigmas`` standard errors); the
other checks are controls (Bprop itself improves with budget, so the budgets are not all past the
point where nothing changes) and diagnostics (cDNI's gap; DNI against No Bprop at the largest
budget). None of the gap claims is asserted at ``cpu``: what they say is the measured answer, held
or not; the controls are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from dni_utils.data.images import Dataset
from dni_utils.experiments import verdicts
from dni_utils.experiments.nb02_ff_cifar10 import FF_CIFAR10_PROFILES
from dni_utils.experiments.profiles import asserts, check_seeds, select_profile
from dni_utils.experiments.stats import clearly_above, mean_sd, seed_summary
from dni_utils.mechanism.models import ARCHS
from dni_utils.tools.runner import RunOptions, train_many
from dni_utils.trainers.feedforward import METHOD_LABELS, METHODS, FFConfig, FFRun

#: The data sets a case names (``data``), and the notebook parameter that picks each one's copy.
DATA_ROLES = ("mnist", "cifar10")
CASE_KEYS = ("name", "label", "data", "arch", "depth", "budgets", "methods", "config")

_FCN_CPU = dict(
    # notebook 01's cpu FCN (Adam 1e-4 for the layers, 1e-3 for the synthesizers: notebook 09
    # found the synthesizers must learn about 10x faster than the layers they serve), with the
    # paper's DNI synthesizer, 2 x 1024 (notebook 09: 5.66% against Bprop's 5.25% at 3 layers and
    # 2,000 steps; with 1 x 1024, 6.19%)
    width=256, batch_size=256, lr=1e-4, synth_lr=1e-3, synth_hidden_layers=2, synth_hidden=1024,
)
#: Keys of notebook 02's per-architecture settings that are not FFConfig fields of the CNN itself.
_GRID_ONLY = ("depths", "steps", "log_every", "dni_margin", "assert_claims")
_CNN_CPU = {
    # notebook 02's cpu CNN, taken from its profile so the two stay one set-up: 16 filters, Adam
    # 1e-4 for the layers and 1e-3 for the synthesizers, linear conv synthesizers, an MLP
    # synthesizer (1 x 1024) at the last interface
    **{k: v for k, v in FF_CIFAR10_PROFILES["cpu"]["cnn"].items() if k not in _GRID_ONLY},
    **{k: FF_CIFAR10_PROFILES["cpu"][k] for k in ("synth_hidden_layers", "synth_hidden")},
}

#: Settings per profile. ``cases``: what to train (``budgets`` in training steps, increasing;
#: ``config``: FFConfig fields); ``slope_sigmas``: how many standard errors below 0 a slope must
#: be for a gap to count as shrinking; ``assert_claims``: True, False or the claim names (without
#: the case) asserted for every case; ``workers``: processes (0 = one per core; the numbers do not
#: depend on it).
BUDGET_PROFILES: dict[str, dict] = {
    "smoke": dict(
        mnist="mnist-5k", cifar10="cifar10-standin", seeds=[0, 1], slope_sigmas=2.0, workers=1, assert_claims=False,
        cases=[
            dict(name="mnist-fcn-3", label="MNIST FCN, 3 layers", data="mnist", arch="fcn", depth=3,
                 budgets=[8, 16, 32], methods=["bprop", "dni", "cdni"],
                 config=dict(width=32, batch_size=32, lr=1e-3, synth_lr=1e-3, synth_hidden_layers=2, synth_hidden=64)),
            dict(name="cifar10-cnn-3", label="CIFAR-10 CNN, 3 layers", data="cifar10", arch="cnn", depth=3,
                 budgets=[8, 16, 32], methods=["bprop", "nobprop", "dni", "cdni"],
                 config=dict(width=8, batch_size=32, lr=1e-3, synth_lr=0.0, conv_synth_hidden_layers=0,
                             conv_synth_channels=8, conv_top_synth="mlp", synth_hidden_layers=1, synth_hidden=64)),
        ],
    ),
    "cpu": dict(
        # 16x between the smallest and the largest budget in every case, 250 to 4,000 steps. The
        # 6-layer FCN skips 2,000 steps: its DNI and cDNI steps (six 2 x 1024 synthesizers, about
        # 130 ms on one core) make it the dearest case, and 2,000 steps is notebook 01's own
        # budget. The first grid (the 3-layer FCN up to 8,000 steps, the CNN at Adam 1e-3, the
        # 6-layer FCN at 2,000 too) took 75 minutes on 2 cores: MNIST 57, CIFAR-10 18; this one
        # was sized from it for about 55 and took 53. The synthesizers at 1e-3, 10x the layers: a
        # pilot at 3e-3 (the ratio of 30 that notebook 09 found a little better for the 1 x 256
        # synthesizer) ended at 6.68% against 5.62% for the 2 x 1024 one (3 layers, 2,000 steps,
        # seed 0).
        mnist="mnist", cifar10="cifar10", seeds=[0, 1], slope_sigmas=2.0, workers=0,
        assert_claims=["bprop_improves_with_budget"],
        cases=[
            dict(name="mnist-fcn-3", label="MNIST FCN, 3 layers", data="mnist", arch="fcn", depth=3,
                 budgets=[250, 500, 1000, 2000, 4000], methods=["bprop", "dni", "cdni"], config=_FCN_CPU),
            dict(name="mnist-fcn-6", label="MNIST FCN, 6 layers", data="mnist", arch="fcn", depth=6,
                 budgets=[250, 500, 1000, 4000], methods=["bprop", "dni", "cdni"], config=_FCN_CPU),
            dict(name="cifar10-cnn-3", label="CIFAR-10 CNN, 3 layers", data="cifar10", arch="cnn", depth=3,
                 budgets=[250, 500, 1000, 2000, 4000], methods=["bprop", "nobprop", "dni", "cdni"], config=_CNN_CPU),
        ],
    ),
    "paper": dict(
        # the paper's settings (Adam 3e-5 for everything, 2 x 1024 synthesizers, the paper's CNN
        # with conv synthesizers), up to its 500k steps
        mnist="mnist", cifar10="cifar10", seeds=[0, 1], slope_sigmas=2.0, workers=0, assert_claims=True,
        cases=[
            dict(name=f"mnist-fcn-{depth}", label=f"MNIST FCN, {depth} layers", data="mnist", arch="fcn", depth=depth,
                 budgets=[31_250, 62_500, 125_000, 250_000, 500_000], methods=["bprop", "dni", "cdni"],
                 config=dict(width=256, batch_size=256, lr=3e-5, synth_lr=0.0, synth_hidden_layers=2, synth_hidden=1024))
            for depth in (3, 6)
        ] + [
            dict(name="cifar10-cnn-3", label="CIFAR-10 CNN, 3 layers", data="cifar10", arch="cnn", depth=3,
                 budgets=[31_250, 62_500, 125_000, 250_000, 500_000], methods=["bprop", "nobprop", "dni", "cdni"],
                 config=dict(width=128, batch_size=256, lr=3e-5, synth_lr=0.0, conv_synth_hidden_layers=2,
                             conv_synth_channels=128, conv_top_synth="conv")),
        ],
    ),
}


def select_budget_profile(profile: str, cases: Sequence[str] = (), seeds: Sequence[int] = (),
                          mnist: str = "", cifar10: str = "", workers: int = -1) -> dict:
    """The settings of ``profile``, checked, with the notebook's overrides: ``cases`` (names; empty:
    all), ``seeds``, the data sets (empty: the profile's) and ``workers`` (-1: the profile's)."""
    settings = select_profile(profile, BUDGET_PROFILES, mnist=mnist, cifar10=cifar10)
    names = [c["name"] for c in settings["cases"]]
    if cases:
        unknown = [c for c in cases if c not in names]
        if unknown:
            raise ValueError(f"cases={list(cases)!r} is invalid: expected a non-empty subset of {names}")
        settings["cases"] = [c for c in settings["cases"] if c["name"] in cases]
    settings["seeds"] = check_seeds(list(seeds) or settings["seeds"])
    if workers != -1:
        settings["workers"] = workers
    for case in settings["cases"]:
        check_case(case)
    return settings


def check_case(case: dict) -> dict:
    """A case of a profile table, or a clear error naming what is wrong."""
    missing = [k for k in CASE_KEYS if k not in case]
    if missing:
        raise ValueError(f"case {case.get('name')!r} lacks {missing}: a case has {CASE_KEYS}")
    budgets = case["budgets"]
    if not (isinstance(budgets, (list, tuple)) and len(budgets) >= 2
            and all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in budgets)
            and all(a < b for a, b in zip(budgets, budgets[1:]))):
        raise ValueError(f"budgets={budgets!r} is invalid (case {case['name']!r}): expected 2 or more "
                         "increasing positive numbers of training steps")
    methods = case["methods"]
    if not set(methods) <= set(METHODS) or "bprop" not in methods or len(methods) < 2:
        raise ValueError(f"methods={methods!r} is invalid (case {case['name']!r}): expected 'bprop' and one or more "
                         f"others of {METHODS}")
    if case["data"] not in DATA_ROLES:
        raise ValueError(f"data={case['data']!r} is unknown (case {case['name']!r}): expected one of {DATA_ROLES}")
    if case["arch"] not in ARCHS:
        raise ValueError(f"arch={case['arch']!r} is unknown (case {case['name']!r}): expected one of {ARCHS}")
    return case


Key = tuple  # (case name, budget, method, seed)


def configs(settings: dict, data_role: str | None = None) -> dict[Key, FFConfig]:
    """Every run of the profile (of the cases on ``data_role``, or all), longest first so that the
    processes finish together; one log point, at the end of the run."""
    keys = [
        (case["name"], budget, method, seed)
        for case in settings["cases"] if data_role in (None, case["data"])
        for budget in case["budgets"] for method in case["methods"] for seed in settings["seeds"]
    ]
    by_name = {c["name"]: c for c in settings["cases"]}
    out = {}
    for name, budget, method, seed in sorted(keys, key=lambda k: -k[1]):
        case = by_name[name]
        out[(name, budget, method, seed)] = FFConfig(
            method=method, arch=case["arch"], depth=case["depth"], seed=seed, steps=budget, log_every=budget,
            **case["config"],
        ).validate()
    return out


def run_budgets(settings: dict, datasets: dict[str, Dataset], progress: bool = True,
                options: RunOptions | None = None) -> dict[Key, FFRun]:
    """Train every (case, budget, method, seed), one ``train_many`` per data set; the runs in the
    order they trained (``errors_frame`` puts them in the order of the cases)."""
    runs: dict[Key, FFRun] = {}
    for role, data in datasets.items():
        cfgs = configs(settings, role)
        if cfgs:
            trained = train_many(list(cfgs.values()), data, workers=settings["workers"], progress=progress,
                                 desc=f"{role} runs", options=options)
            runs.update(zip(cfgs, trained))
    return runs


def errors_frame(runs: dict[Key, FFRun], settings: dict) -> pd.DataFrame:
    """One row per run: case label, budget, method, seed, final test error (%) and its gap to Bprop
    at the same case, budget and seed (percentage points; 0 for Bprop)."""
    labels = {c["name"]: c["label"] for c in settings["cases"]}
    err = {k: 100 * r.test_error for k, r in runs.items()}
    order = {c["name"]: i for i, c in enumerate(settings["cases"])}
    keys = sorted((k for k in err if (k[0], k[1], "bprop", k[3]) in err),
                  key=lambda k: (order[k[0]], METHODS.index(k[2]), k[1], k[3]))
    return pd.DataFrame([
        {"case": labels[c], "name": c, "budget": b, "method": METHOD_LABELS[m], "seed": s, "test error (%)": err[(c, b, m, s)],
         "gap to Bprop (points)": err[(c, b, m, s)] - err[(c, b, "bprop", s)]}
        for c, b, m, s in keys
    ])


#: log2 of the largest budget an extrapolation names (about 10^12 steps); beyond it: "never".
FAR = 40


def fit_trend(budgets: Sequence[float], gaps: Sequence[float]) -> dict:
    """Least-squares line of ``gaps`` against log2 of ``budgets`` (one point per run): ``slope``
    (points per doubling), its standard error ``slope_se`` (from the residuals; None with fewer
    than 3 points or a single budget), ``intercept`` (at a budget of 1 step) and ``closes_at``, the
    budget where the line reaches 0 if the slope is negative and that is within 2^FAR steps (None
    otherwise)."""
    x = [math.log2(b) for b in budgets]
    n = len(x)
    if len(set(x)) < 2:
        raise ValueError("fit_trend needs points at two or more budgets")
    mx, my = sum(x) / n, sum(gaps) / n
    sxx = sum((v - mx) ** 2 for v in x)
    slope = sum((a - mx) * (g - my) for a, g in zip(x, gaps)) / sxx
    intercept = my - slope * mx
    se = None
    if n > 2:
        residual = sum((g - intercept - slope * a) ** 2 for a, g in zip(x, gaps))
        se = math.sqrt(residual / (n - 2) / sxx)
    doublings = -intercept / slope if slope < 0 else math.inf
    closes = 2 ** doublings if doublings <= FAR else None
    return {"slope": slope, "slope_se": se, "intercept": intercept, "closes_at": closes, "n": n}


def trends(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (case, method other than Bprop): the gap's trend (``fit_trend``) and its mean ± sd over
    seeds at the smallest and the largest budget."""
    rows = []
    for (case, method), sub in frame[frame["method"] != METHOD_LABELS["bprop"]].groupby(["case", "method"], sort=False):
        fit = fit_trend(list(sub["budget"]), list(sub["gap to Bprop (points)"]))
        lo, hi = sub["budget"].min(), sub["budget"].max()
        first = mean_sd(list(sub.loc[sub["budget"] == lo, "gap to Bprop (points)"]))
        last = mean_sd(list(sub.loc[sub["budget"] == hi, "gap to Bprop (points)"]))
        rows.append({
            "case": case, "name": sub["name"].iloc[0], "method": method, "budgets": f"{lo:,}-{hi:,}",
            "gap at smallest": first[0], "gap at smallest sd": first[1], "gap at largest": last[0],
            "gap at largest sd": last[1], "per doubling": fit["slope"], "per doubling se": fit["slope_se"],
            "closes at (steps)": fit["closes_at"],
        })
    return pd.DataFrame(rows)


def claims(runs: dict[Key, FFRun], settings: dict) -> dict[str, bool]:
    """The checks, per case (named ``"<case> <check>"``):

    - ``dni_gap_shrinks`` (the claim) / ``cdni_gap_shrinks``: the slope of the method's gap to Bprop
      against log2 of the budget is below 0 by more than ``slope_sigmas`` standard errors;
    - ``bprop_improves_with_budget`` (a control): Bprop's error at the largest budget below that at
      the smallest, beyond the spread over seeds;
    - ``dni_beats_nobprop_at_largest_budget`` (where No Bprop ran): DNI's error at the largest budget
      below No Bprop's, beyond the spread.
    """
    frame = errors_frame(runs, settings)
    trend = {(r["case"], r["method"]): r for r in trends(frame).to_dict("records")}
    out: dict[str, bool] = {}
    for case in settings["cases"]:
        label, name = case["label"], case["name"]
        for method in ("dni", "cdni"):
            row = trend.get((label, METHOD_LABELS[method]))
            if row is not None:
                se = row["per doubling se"] or 0.0
                out[f"{name} {method}_gap_shrinks"] = bool(row["per doubling"] < 0
                                                            and -row["per doubling"] > settings["slope_sigmas"] * se)
        sub = frame[frame["name"] == name]

        def errs(method: str, budget: int) -> list[float]:
            return list(sub.loc[(sub["method"] == METHOD_LABELS[method]) & (sub["budget"] == budget), "test error (%)"])

        lo, hi = min(case["budgets"]), max(case["budgets"])
        if errs("bprop", lo) and errs("bprop", hi):
            out[f"{name} bprop_improves_with_budget"] = clearly_above(errs("bprop", lo), errs("bprop", hi))
        if errs("nobprop", hi) and errs("dni", hi):
            out[f"{name} dni_beats_nobprop_at_largest_budget"] = clearly_above(errs("nobprop", hi), errs("dni", hi))
    return out


def asserted(result: dict) -> list[str]:
    """The checks of a result that its profile asserts (``assert_claims`` names checks without the case)."""
    flag = result["params"]["assert_claims"]
    return [name for name in result["claims"] if asserts(flag, name.split(" ", 1)[1])]


def failed_asserted_claims(checks: dict[str, bool], settings: dict) -> list[str]:
    return [n for n in asserted({"params": settings, "claims": checks}) if not checks[n]]


def paper_rows(runs: dict[Key, FFRun], settings: dict) -> list[dict]:
    """README rows: every cell's mean final test error over seeds, and per case and method the gap's
    change per doubling of the budget (``reproduced``; ``spread``: its standard error)."""
    frame = errors_frame(runs, settings)
    rows = [
        {"setting": f"{case}, {budget:,} steps", "method": method, "metric": "test error (%)", "paper": None,
         **seed_summary(list(sub["test error (%)"]))}
        for (case, budget, method), sub in frame.groupby(["case", "budget", "method"], sort=False)
    ]
    rows += [
        {"setting": f"{r['case']}, {r['budgets']} steps", "method": r["method"],
         "metric": "gap to Bprop, change per doubling of the budget (points)", "paper": None,
         "reproduced": r["per doubling"], "spread": r["per doubling se"], "n": len(settings["seeds"])}
        for r in trends(frame).to_dict("records")
    ]
    return rows


def steps_words(steps: float | None) -> str:
    """A budget in words: "12,000 steps", "3.4M steps", or "–" for none."""
    if steps is None or not math.isfinite(steps):
        return "–"
    if steps >= 1e6:
        return f"{steps / 1e6:.1f}M steps"
    return f"{steps:,.0f} steps"


# The checks in words (``verdicts``).

def _trend_row(result: dict, case: str, method: str) -> dict | None:
    return next((t for t in result.get("trends", []) if t["name"] == case and t["method"] == METHOD_LABELS[method]), None)


def _trend(method: str):
    def measured(result: dict, groups: dict) -> str | None:
        t = _trend_row(result, groups["case"], method)
        if t is None:
            return None
        se = t["per doubling se"]
        closes = ("already closed" if t["gap at largest"] <= 0 else
                  f"the line reaches 0 at {steps_words(t['closes at (steps)'])}" if t["closes at (steps)"] else
                  "the line does not reach 0 within 10^12 steps")
        return (f"gap {t['gap at smallest']:+.2f} at {t['budgets'].split('-')[0]} steps, {t['gap at largest']:+.2f} at "
                f"{t['budgets'].split('-')[1]}; {t['per doubling']:+.2f}" + (f" ± {se:.2f}" if se is not None else "")
                + f" points per doubling; {closes}")
    return measured


def _bprop_trend(result: dict, groups: dict) -> str | None:
    cells = {r["setting"]: r for r in result["rows"] if r["method"] == "Bprop" and r["metric"] == "test error (%)"}
    case = next((c for c in result["params"]["cases"] if c["name"] == groups["case"]), None)
    if case is None:
        return None
    lo, hi = (cells.get(f"{case['label']}, {b:,} steps") for b in (min(case["budgets"]), max(case["budgets"])))
    return None if lo is None or hi is None else f"{lo['reproduced']:.2f}% → {hi['reproduced']:.2f}%"


def _dni_vs_nobprop(result: dict, groups: dict) -> str | None:
    case = next((c for c in result["params"]["cases"] if c["name"] == groups["case"]), None)
    if case is None:
        return None
    setting = f"{case['label']}, {max(case['budgets']):,} steps"
    dni, nob = (verdicts.row_value(result, f"^{setting}$", m, "test error") for m in ("DNI", "No Bprop"))
    return None if dni is None or nob is None else f"DNI {dni:.2f}%, No Bprop {nob:.2f}%"


_CASE = r"(?P<case>[a-z0-9-]+)"
CHECKS = {
    rf"{_CASE} dni_gap_shrinks": verdicts.Check(
        "DNI's test-error gap to Bprop shrinks with the budget: its slope against log2 of the budget (one point per "
        "run, the gap taken at the same seed) is below 0 by more than {slope_sigmas:g} standard errors ({case})",
        _trend("dni"), "DNI ≈ Bprop after 500k steps"),
    rf"{_CASE} cdni_gap_shrinks": verdicts.Check(
        "cDNI's test-error gap to Bprop shrinks with the budget, by the same rule ({case})",
        _trend("cdni"), "cDNI ≈ Bprop after 500k steps"),
    rf"{_CASE} bprop_improves_with_budget": verdicts.Check(
        "control: Bprop's mean test error at the largest budget is below that at the smallest, beyond the seed "
        "spread ({case})", _bprop_trend),
    rf"{_CASE} dni_beats_nobprop_at_largest_budget": verdicts.Check(
        "DNI's mean test error at the largest budget is below No Bprop's, beyond the seed spread ({case})",
        _dni_vs_nobprop, "DNI far better than No Bprop"),
}

#: The README's line for notebook 10.
SUMMARY = verdicts.Summary(
    claim="(A question of ours, from the paper's long runs.) DNI without label context closes its gap to Bprop "
          "as the training budget grows.",
    main=(rf"{_CASE} dni_gap_shrinks",),
    key=(verdicts.KeyRow("MNIST FCN 3", r"^MNIST FCN, 3 layers, [\d,]+-[\d,]+ steps$", "DNI", "gap"),
         verdicts.KeyRow("MNIST FCN 6", r"^MNIST FCN, 6 layers, [\d,]+-[\d,]+ steps$", "DNI", "gap"),
         verdicts.KeyRow("CIFAR-10 CNN 3", r"^CIFAR-10 CNN, 3 layers, [\d,]+-[\d,]+ steps$", "DNI", "gap")),
    where="DNI − Bprop, change of the test-error gap per doubling of the budget (points)",
    paper="DNI ≈ Bprop after 500k steps",
    asserted=asserted,
)
