"""The feed-forward table (notebooks 01 and 02): run a grid of (arch, depth, method, seed), turn it
into curves, a table of means and spreads over seeds, the paper-vs-reproduced rows and the paper's
qualitative claims (judged on the means, differences beyond the spread)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pandas as pd

from dni_utils.data.images import Dataset
from dni_utils.experiments import verdicts
from dni_utils.experiments.profiles import asserts, check_seeds, select_profile
from dni_utils.experiments.stats import clearly_above, mean_sd, seed_summary
from dni_utils.mechanism.models import ARCHS
from dni_utils.tools.runner import RunOptions, train_many
from dni_utils.trainers.feedforward import METHOD_LABELS, METHODS, FFConfig, FFRun

ARCH_LABELS = {"fcn": "FCN", "cnn": "CNN"}

#: FFConfig fields a profile table may set.
_CONFIG_KEYS = (
    "width", "steps", "batch_size", "lr", "synth_lr", "synth_kind", "synth_hidden_layers", "synth_hidden",
    "csynth_kind", "csynth_hidden_layers", "grad_scale", "log_every", "strided_pools", "conv_synth_hidden_layers",
    "conv_synth_channels", "conv_top_synth",
)


def check_methods(methods: list[str]) -> list[str]:
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods={methods!r} is invalid: expected a non-empty subset of {METHODS}")
    return list(methods)


def config_for(settings: dict, arch: str, depth: int, method: str, seed: int) -> FFConfig:
    """The FFConfig of one cell of the grid; ``settings[arch]`` may override per-architecture sizes."""
    values = {k: settings[k] for k in _CONFIG_KEYS if k in settings}
    values.update({k: v for k, v in settings.get(arch, {}).items() if k in _CONFIG_KEYS})
    return FFConfig(method=method, arch=arch, depth=depth, seed=seed, **values).validate()


def select_ff_profile(profile: str, table: dict[str, dict], **overrides) -> dict:
    """``select_profile`` for a feed-forward table: the settings of ``profile`` with the non-empty
    ``overrides`` applied; an override also replaces the per-architecture value of that key
    (``settings[arch]``), so a notebook parameter applies to every architecture."""
    settings = select_profile(profile, table, **overrides)
    unknown = [a for a in settings.get("archs", []) if a not in ARCHS]
    if unknown:
        raise ValueError(f"archs={settings['archs']!r} is invalid: expected a subset of {ARCHS}")
    given = [k for k, v in overrides.items() if v is not None and (isinstance(v, bool) or v not in (0, "", [], ()))]
    for arch in ARCHS:
        for key in given:
            settings.get(arch, {}).pop(key, None)
    return settings


def depths_for(settings: dict, arch: str, depths: list[int]) -> list[int]:
    """The depths to run for ``arch``: ``settings[arch]["depths"]`` if the profile sets it, else ``depths``."""
    return list(settings.get(arch, {}).get("depths", depths))


Key = tuple  # (arch, depth, method, seed)


def run_grid(
    settings: dict, data: Dataset, archs: list[str], depths: list[int], methods: list[str], seeds: list[int],
    progress: bool = True, workers: int = 1, options: RunOptions | None = None,
) -> dict[Key, FFRun]:
    """Train every (arch, depth, method, seed); returns the runs keyed by that quadruple.

    ``settings[arch]["depths"]``, where the profile sets it, replaces ``depths`` for that arch. The
    runs are spread over ``workers`` processes (``runner.train_many``; the numbers do not depend on it);
    ``options`` say on which device, with what step cap and checkpoints (``runner.RunOptions``).
    """
    check_methods(methods)
    seeds = check_seeds(seeds)
    grid = {arch: depths_for(settings, arch, depths) for arch in archs}
    for arch_depths in grid.values():
        if not arch_depths or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in arch_depths
        ):
            raise ValueError(f"depths={arch_depths!r} is invalid: expected positive integers")
    keys = [(arch, depth, method, seed) for arch in archs for depth in grid[arch] for method in methods for seed in seeds]
    cfgs = [config_for(settings, *key) for key in keys]
    return dict(zip(keys, train_many(cfgs, data, workers=workers, progress=progress, desc="grid", options=options)))


def cell_errors(runs: dict[Key, FFRun]) -> dict[tuple, list[float]]:
    """Final test errors (%) per cell (the key without its seed), in seed order."""
    cells: dict[tuple, list[float]] = {}
    for key, run in runs.items():
        cells.setdefault(key[:-1], []).append(100 * run.test_error)
    return cells


def curves_frame(runs: dict[Key, FFRun]) -> pd.DataFrame:
    """Long table: one row per (arch, depth, method, seed, logged step)."""
    rows = [
        {
            "arch": ARCH_LABELS.get(arch, arch), "layers": depth, "method": METHOD_LABELS[method], "seed": seed,
            "step": h["step"], "test error (%)": 100 * h["test_error"], "train loss": h["train_loss"],
        }
        for (arch, depth, method, seed), run in runs.items()
        for h in run.history
    ]
    return pd.DataFrame(rows)


def final_errors(runs: dict[Key, FFRun], stat: str = "mean") -> pd.DataFrame:
    """Final test error (%) over seeds (``stat``: "mean" or "std", 0 for one seed) with rows
    (arch, method) and one column per depth, as in the paper."""
    rows = [
        {"arch": ARCH_LABELS.get(a, a), "method": METHOD_LABELS[m], "layers": d, "error": mean_sd(errs)[stat == "std"]}
        for (a, d, m), errs in cell_errors(runs).items()
    ]
    table = pd.DataFrame(rows).pivot_table(index=["arch", "method"], columns="layers", values="error")
    order = [METHOD_LABELS[m] for m in METHODS]
    return table.reindex(sorted(table.index, key=lambda am: (am[0], order.index(am[1]))))


def claims(
    runs: dict[Key, FFRun], near_points: float, nobprop_margin: float, cdni_slack: float, dni_margin: float | None = None,
) -> dict[str, bool]:
    """The paper's qualitative claims, judged on the mean final test errors over seeds (in
    percentage points); a claimed difference must also exceed the spread (``clearly_above``):

    - ``dni_near_bprop`` / ``cdni_near_bprop``: mean error within ``near_points`` of Bprop's, every cell;
    - ``cdni_at_least_dni``: cDNI's mean error at most DNI's + ``cdni_slack``, every cell;
    - ``nobprop_far_worse``: No Bprop's error at least ``nobprop_margin`` above Bprop's, beyond the
      spread, every cell;
    - ``nobprop_worse_with_depth``: No Bprop's error at the largest depth above that at the smallest,
      beyond the spread, for every architecture run at more than one depth;
    - ``dni_beats_nobprop`` (only where ``dni_margin`` is given): DNI's error at least ``dni_margin``
      below No Bprop's, beyond the spread, every cell: DNI's synthetic gradients train the hidden
      layers to something better than the random features No Bprop keeps.

    A claim whose methods were not run is left out.
    """
    errs = cell_errors(runs)
    err = {k: mean_sd(v)[0] for k, v in errs.items()}
    cells = sorted({(a, d) for a, d, _ in errs})
    have = {m for _, _, m in errs}
    out: dict[str, bool] = {}
    if {"dni", "bprop"} <= have:
        out["dni_near_bprop"] = all(err[(a, d, "dni")] - err[(a, d, "bprop")] <= near_points for a, d in cells)
    if {"cdni", "bprop"} <= have:
        out["cdni_near_bprop"] = all(err[(a, d, "cdni")] - err[(a, d, "bprop")] <= near_points for a, d in cells)
    if {"cdni", "dni"} <= have:
        out["cdni_at_least_dni"] = all(err[(a, d, "cdni")] <= err[(a, d, "dni")] + cdni_slack for a, d in cells)
    if {"nobprop", "bprop"} <= have:
        out["nobprop_far_worse"] = all(
            clearly_above(errs[(a, d, "nobprop")], errs[(a, d, "bprop")], nobprop_margin) for a, d in cells
        )
        depths = {a: sorted(d for b, d in cells if b == a) for a, _ in cells}
        deep = [a for a, ds in depths.items() if len(ds) > 1]
        if deep:
            out["nobprop_worse_with_depth"] = all(
                clearly_above(errs[(a, depths[a][-1], "nobprop")], errs[(a, depths[a][0], "nobprop")]) for a in deep
            )
    if dni_margin is not None and {"dni", "nobprop"} <= have:
        out["dni_beats_nobprop"] = all(
            clearly_above(errs[(a, d, "nobprop")], errs[(a, d, "dni")], dni_margin) for a, d in cells
        )
    return out


def claims_by_arch(runs: dict[Key, FFRun], settings: dict) -> dict[str, bool]:
    """``claims`` judged separately for each architecture, keyed ``"<arch> <claim>"`` (e.g.
    ``"cnn dni_near_bprop"``), with the thresholds of ``settings`` (``settings[arch]`` may override)."""
    out: dict[str, bool] = {}
    for arch in dict.fromkeys(k[0] for k in runs):
        s = {**settings, **settings.get(arch, {})}
        sub = {k: r for k, r in runs.items() if k[0] == arch}
        got = claims(sub, s["near_points"], s["nobprop_margin"], s["cdni_slack"], s.get("dni_margin"))
        out.update({f"{arch} {name}": held for name, held in got.items()})
    return out


def failed_asserted_claims(checks: dict[str, bool], settings: dict) -> list[str]:
    """The claims of ``claims_by_arch`` that did not hold, for the archs whose claims the profile
    asserts (``assert_claims``: True, False or a list of claim names; ``settings[arch]`` may
    override it)."""
    def asserted(name: str) -> bool:
        arch, claim = name.split(" ", 1)
        return asserts(settings.get(arch, {}).get("assert_claims", settings["assert_claims"]), claim)

    return [name for name, held in checks.items() if not held and asserted(name)]


def paper_rows(runs: dict[Key, FFRun], paper: dict[tuple[str, str], str]) -> list[dict]:
    """Rows for the README: the reproduced mean final error over seeds (with its standard
    deviation ``spread`` and number of seeds ``n``) beside the paper's value (``paper[(arch, method)]``)."""
    return [
        {"setting": f"{ARCH_LABELS.get(a, a)}, {d} layers", "method": METHOD_LABELS[m], "metric": "test error (%)",
         "paper": paper.get((a, m)), **seed_summary(errs)}
        for (a, d, m), errs in cell_errors(runs).items()
    ]


def cosine_frame(runs: dict[Key, FFRun]) -> pd.DataFrame:
    """Long table of the synthetic-vs-true gradient cosine: one row per (run, logged step, layer)."""
    rows = [
        {
            "arch": ARCH_LABELS.get(arch, arch), "layers": depth, "method": METHOD_LABELS[method], "seed": seed,
            "step": h["step"], "interface after layer": i + 1, "cosine": c,
        }
        for (arch, depth, method, seed), run in runs.items()
        for h in run.history
        for i, c in enumerate(h["grad_cosine"])
    ]
    return pd.DataFrame(rows)


# The checks of ``claims`` / ``claims_by_arch`` in words (``verdicts.Check``), for notebooks 01 and 02.

def _arch_settings(result: dict, arch: str) -> dict:
    """The result's params with the per-architecture overrides of ``arch`` applied."""
    params = result["params"]
    return {**params, **params.get(arch, {})}


def _cells(result: dict, arch: str, method: str) -> dict[int, dict]:
    """``{depth: row}`` of the result's rows of ``method`` (a key of METHOD_LABELS) for ``arch``."""
    pattern = re.compile(rf"{re.escape(ARCH_LABELS.get(arch, arch))}, (\d+) layers")
    return {int(m.group(1)): r for s, r in verdicts.row_cells(result, METHOD_LABELS[method]).items()
            if (m := pattern.fullmatch(s))}


def _gaps(result: dict, arch: str, high: str, low: str) -> dict[int, float]:
    """Per depth: mean error of ``high`` minus that of ``low`` (percentage points)."""
    a, b = _cells(result, arch, high), _cells(result, arch, low)
    return {d: a[d]["reproduced"] - b[d]["reproduced"] for d in sorted(a) if d in b}


def _extreme_gap(high: str, low: str, largest: bool = True) -> Callable[[dict, dict], str | None]:
    def measured(result: dict, groups: dict) -> str | None:
        gaps = _gaps(result, groups["arch"], high, low)
        if not gaps:
            return None
        depth = (max if largest else min)(gaps, key=gaps.get)
        word = "largest" if largest else "smallest"
        return f"{word} {METHOD_LABELS[high]} − {METHOD_LABELS[low]}: {gaps[depth]:+.2f} points ({depth} layers)"
    return measured


def _depth_trend(result: dict, groups: dict) -> str | None:
    cells = _cells(result, groups["arch"], "nobprop")
    if len(cells) < 2:
        return None
    lo, hi = min(cells), max(cells)
    return f"{cells[lo]['reproduced']:.2f} at {lo} layers, {cells[hi]['reproduced']:.2f} at {hi}"


#: The thresholds of ``claims``, in percentage points of test error.
_THRESHOLDS = ("near_points", "nobprop_margin", "cdni_slack", "dni_margin")


def ff_checks(paper: dict[str, str]) -> dict[str, verdicts.Check]:
    """The feed-forward table's checks in words, one pattern per (architecture, claim);
    ``paper[arch]``: what the paper reports for that architecture's Bprop, DNI and cDNI."""
    out: dict[str, verdicts.Check] = {}
    for arch in ARCHS:
        name = ARCH_LABELS.get(arch, arch)

        def words(template: str, arch: str = arch, name: str = name) -> Callable[[dict, dict], str]:
            def text(result: dict, groups: dict) -> str:
                settings = _arch_settings(result, arch)
                return template.format(arch=name, **{k: verdicts.points(settings[k]) for k in _THRESHOLDS if k in settings})
            return text

        out.update({
            f"(?P<arch>{arch}) dni_near_bprop": verdicts.Check(
                words("DNI's mean test error at most {near_points} above Bprop's, at every depth ({arch})"),
                _extreme_gap("dni", "bprop"), paper.get(arch)),
            f"(?P<arch>{arch}) cdni_near_bprop": verdicts.Check(
                words("cDNI's mean test error at most {near_points} above Bprop's, at every depth ({arch})"),
                _extreme_gap("cdni", "bprop"), paper.get(arch)),
            f"(?P<arch>{arch}) cdni_at_least_dni": verdicts.Check(
                words("cDNI's mean test error at most {cdni_slack} above DNI's, at every depth ({arch})"),
                _extreme_gap("cdni", "dni"), "cDNI at least as good as DNI"),
            f"(?P<arch>{arch}) nobprop_far_worse": verdicts.Check(
                words("No Bprop's mean test error at least {nobprop_margin} above Bprop's and beyond the "
                      "seed spread, at every depth ({arch})"),
                _extreme_gap("nobprop", "bprop", largest=False), "far worse"),
            f"(?P<arch>{arch}) nobprop_worse_with_depth": verdicts.Check(
                words("No Bprop's mean test error at the deepest network above that at the shallowest, beyond the "
                      "seed spread ({arch})"),
                _depth_trend, "worse the deeper the network"),
            f"(?P<arch>{arch}) dni_beats_nobprop": verdicts.Check(
                words("DNI's mean test error at least {dni_margin} below No Bprop's and beyond the seed spread, "
                      "at every depth ({arch})"),
                _extreme_gap("nobprop", "dni", largest=False), "far better than No Bprop"),
        })
    return out


def ff_asserted(result: dict) -> list[str]:
    """The checks of a feed-forward table's result that its profile asserts (``assert_claims``, or
    ``params[arch]["assert_claims"]`` where an architecture overrides it)."""
    params = result["params"]
    out = []
    for name in result["claims"]:
        arch, claim = name.split(" ", 1)
        if asserts(params.get(arch, {}).get("assert_claims", params["assert_claims"]), claim):
            out.append(name)
    return out


#: The checks of ``claims`` that state the paper's claim: all of them, for every architecture.
FF_MAIN = (r"(fcn|cnn) (dni_near_bprop|cdni_near_bprop|cdni_at_least_dni|nobprop_far_worse|nobprop_worse_with_depth)",)
