"""One figure style and one figure sink."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

# Headless-safe without an explicit choice; a kernel sets MPLBACKEND (its inline backend, so that
# figures appear in the executed notebooks), and so can the caller (make test: Agg).
if not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

# Fixed metadata so that regenerated files do not churn in git.
_METADATA = {
    "pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None},
    "png": {"Software": None},
}


def set_style() -> None:
    """seaborn ``paper`` context, colour-blind palette, despined axes. Call it once, explicitly."""
    sns.set_theme(context="paper", style="ticks", palette="colorblind")
    plt.rcParams.update(
        {
            "axes.spines.top": False,
            "axes.spines.right": False,
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "savefig.bbox": "tight",
            "pdf.fonttype": 42,
        }
    )


def savefig(fig: plt.Figure, name: str, figures_dir: str | Path, profile: str) -> list[Path]:
    """Write ``<figures_dir>/<name>.<profile>.pdf`` and ``.png``; each file appears whole or not at all."""
    out = Path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("pdf", "png"):
        path = out / f"{name}.{profile}.{ext}"
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            fig.savefig(tmp, format=ext, metadata=_METADATA[ext])
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        paths.append(path)
    return paths


def plain_log_axis(ax: plt.Axes) -> None:
    """Log scale with plain numbers (2, 5, 10, 20) instead of powers of ten."""
    from matplotlib.ticker import FormatStrFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.tick_params(axis="y", which="minor", labelsize="x-small")
