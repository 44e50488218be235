"""The feed-forward table (notebooks 01 and 02): run a grid of (arch, depth, method), turn it into
curves, a table, the paper-vs-reproduced rows and the paper's qualitative claims."""

from __future__ import annotations

import pandas as pd

from .data import Dataset
from .ff import METHOD_LABELS, METHODS, FFConfig, FFRun, train_ff
from .models import ARCHS
from .profiles import select_profile

ARCH_LABELS = {"fcn": "FCN", "cnn": "CNN"}

#: FFConfig fields a profile table may set.
_CONFIG_KEYS = (
    "width", "steps", "batch_size", "lr", "synth_lr", "synth_kind", "synth_hidden_layers", "synth_hidden",
    "csynth_kind", "csynth_hidden_layers", "grad_scale", "log_every", "strided_pools", "conv_synth_hidden_layers",
    "conv_synth_channels",
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


def run_grid(
    settings: dict, data: Dataset, archs: list[str], depths: list[int], methods: list[str], seed: int,
    progress: bool = True,
) -> dict[tuple[str, int, str], FFRun]:
    """Train every (arch, depth, method) with the same seed; returns the runs keyed by the triple.

    ``settings[arch]["depths"]``, where the profile sets it, replaces ``depths`` for that arch.
    """
    check_methods(methods)
    grid = {arch: depths_for(settings, arch, depths) for arch in archs}
    for arch_depths in grid.values():
        if not arch_depths or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in arch_depths
        ):
            raise ValueError(f"depths={arch_depths!r} is invalid: expected positive integers")
    runs = {}
    for arch in archs:
        for depth in grid[arch]:
            for method in methods:
                cfg = config_for(settings, arch, depth, method, seed)
                desc = f"{ARCH_LABELS.get(arch, arch)} {depth} layers {METHOD_LABELS[method]}"
                runs[(arch, depth, method)] = train_ff(cfg, data, progress=progress, desc=desc)
    return runs


def curves_frame(runs: dict[tuple[str, int, str], FFRun]) -> pd.DataFrame:
    """Long table: one row per (arch, depth, method, logged step)."""
    rows = [
        {
            "arch": ARCH_LABELS.get(arch, arch), "layers": depth, "method": METHOD_LABELS[method],
            "step": h["step"], "test error (%)": 100 * h["test_error"], "train loss": h["train_loss"],
        }
        for (arch, depth, method), run in runs.items()
        for h in run.history
    ]
    return pd.DataFrame(rows)


def final_errors(runs: dict[tuple[str, int, str], FFRun]) -> pd.DataFrame:
    """Final test error (%) with rows (arch, method) and one column per depth, as in the paper."""
    rows = [
        {"arch": ARCH_LABELS.get(a, a), "method": METHOD_LABELS[m], "layers": d, "error": 100 * r.test_error}
        for (a, d, m), r in runs.items()
    ]
    table = pd.DataFrame(rows).pivot_table(index=["arch", "method"], columns="layers", values="error")
    order = [METHOD_LABELS[m] for m in METHODS]
    return table.reindex(sorted(table.index, key=lambda am: (am[0], order.index(am[1]))))


def claims(
    runs: dict[tuple[str, int, str], FFRun], near_points: float, nobprop_margin: float, cdni_slack: float,
) -> dict[str, bool]:
    """The paper's qualitative claims, judged on the final test errors (in percentage points):

    - ``dni_near_bprop`` / ``cdni_near_bprop``: error within ``near_points`` of Bprop's, every cell;
    - ``cdni_at_least_dni``: cDNI's error at most DNI's + ``cdni_slack``, every cell;
    - ``nobprop_far_worse``: No Bprop's error at least ``nobprop_margin`` above Bprop's, every cell;
    - ``nobprop_worse_with_depth``: No Bprop's error at the largest depth above that at the smallest,
      for every architecture run at more than one depth.

    A claim whose methods were not run is left out.
    """
    err = {k: 100 * r.test_error for k, r in runs.items()}
    cells = sorted({(a, d) for a, d, _ in runs})
    have = {m for _, _, m in runs}
    out: dict[str, bool] = {}
    if {"dni", "bprop"} <= have:
        out["dni_near_bprop"] = all(err[(a, d, "dni")] - err[(a, d, "bprop")] <= near_points for a, d in cells)
    if {"cdni", "bprop"} <= have:
        out["cdni_near_bprop"] = all(err[(a, d, "cdni")] - err[(a, d, "bprop")] <= near_points for a, d in cells)
    if {"cdni", "dni"} <= have:
        out["cdni_at_least_dni"] = all(err[(a, d, "cdni")] <= err[(a, d, "dni")] + cdni_slack for a, d in cells)
    if {"nobprop", "bprop"} <= have:
        out["nobprop_far_worse"] = all(
            err[(a, d, "nobprop")] - err[(a, d, "bprop")] >= nobprop_margin for a, d in cells
        )
        depths = {a: sorted(d for b, d in cells if b == a) for a, _ in cells}
        deep = [a for a, ds in depths.items() if len(ds) > 1]
        if deep:
            out["nobprop_worse_with_depth"] = all(
                err[(a, depths[a][-1], "nobprop")] > err[(a, depths[a][0], "nobprop")] for a in deep
            )
    return out


def claims_by_arch(runs: dict[tuple[str, int, str], FFRun], settings: dict) -> dict[str, bool]:
    """``claims`` judged separately for each architecture, keyed ``"<arch> <claim>"`` (e.g.
    ``"cnn dni_near_bprop"``), with the thresholds of ``settings`` (``settings[arch]`` may override)."""
    out: dict[str, bool] = {}
    for arch in dict.fromkeys(a for a, _, _ in runs):
        s = {**settings, **settings.get(arch, {})}
        sub = {k: r for k, r in runs.items() if k[0] == arch}
        got = claims(sub, s["near_points"], s["nobprop_margin"], s["cdni_slack"])
        out.update({f"{arch} {name}": held for name, held in got.items()})
    return out


def failed_asserted_claims(checks: dict[str, bool], settings: dict) -> list[str]:
    """The claims of ``claims_by_arch`` that did not hold, for the archs whose claims the profile
    asserts (``assert_claims``: True, False or a list of claim names; ``settings[arch]`` may
    override it)."""
    def asserted(name: str) -> bool:
        arch, claim = name.split(" ", 1)
        which = settings.get(arch, {}).get("assert_claims", settings["assert_claims"])
        return which if isinstance(which, bool) else claim in which

    return [name for name, held in checks.items() if not held and asserted(name)]


def paper_rows(runs: dict[tuple[str, int, str], FFRun], paper: dict[tuple[str, str], str]) -> list[dict]:
    """Rows for the README: the reproduced final error beside the paper's value (``paper[(arch, method)]``)."""
    return [
        {
            "setting": f"{ARCH_LABELS.get(a, a)}, {d} layers",
            "method": METHOD_LABELS[m],
            "metric": "test error (%)",
            "paper": paper.get((a, m)),
            "reproduced": 100 * r.test_error,
        }
        for (a, d, m), r in runs.items()
    ]


def cosine_frame(runs: dict[tuple[str, int, str], FFRun]) -> pd.DataFrame:
    """Long table of the synthetic-vs-true gradient cosine: one row per (run, logged step, layer)."""
    rows = [
        {
            "arch": ARCH_LABELS.get(arch, arch), "layers": depth, "method": METHOD_LABELS[method],
            "step": h["step"], "interface after layer": i + 1, "cosine": c,
        }
        for (arch, depth, method), run in runs.items()
        for h in run.history
        for i, c in enumerate(h["grad_cosine"])
    ]
    return pd.DataFrame(rows)
