"""One figure style and one figure sink."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib

# Headless-safe without an explicit choice; a kernel sets MPLBACKEND (its inline backend, so that
# figures appear in the executed notebooks), and so can the caller (make test: Agg).
if not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogFormatter, NullLocator  # noqa: E402

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


#: The largest PNG a figure may be; a busier one is written at a lower resolution.
MAX_PNG_BYTES = 300_000


def savefig(fig: plt.Figure, name: str, figures_dir: str | Path, profile: str) -> list[Path]:
    """Write ``<figures_dir>/<name>.<profile>.pdf`` and ``.png``; each file appears whole or not at all.
    A PNG over ``MAX_PNG_BYTES`` at the style's resolution is written again at lower ones (down to
    72 dpi) until it fits."""
    out = Path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("pdf", "png"):
        path = out / f"{name}.{profile}.{ext}"
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            dpi = plt.rcParams["savefig.dpi"]
            fig.savefig(tmp, format=ext, metadata=_METADATA[ext])
            while ext == "png" and tmp.stat().st_size > MAX_PNG_BYTES and dpi > 72:
                dpi = max(72, round(dpi * 0.8))
                fig.savefig(tmp, format=ext, metadata=_METADATA[ext], dpi=dpi)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        paths.append(path)
    return paths


# One colour per method family, from the Okabe-Ito colour-blind-safe set (vermillion left out: it
# sits too close to DNI's orange) plus a grey and a brown; a family's members share the
# colour and differ in dashes and markers. https://jfly.uni-koeln.de/color/
FAMILY_COLOURS = {
    "backprop": "#0072B2",  # blue: exact gradients, one process
    "backprop, more workers": "#56B4E9",  # sky blue
    "pipeline": "#8C510A",  # brown: exact gradients, pipelined over processes
    "no signal": "#999999",  # grey: the lower layers get no gradient
    "DNI": "#E69F00",  # orange
    "cDNI": "#009E73",  # bluish green
    "DNI + Aux": "#CC79A7",  # reddish purple
    "complete unlock": "#882255",  # wine
    "bound": "#000000",  # black: exact-gradient and true-target bounds, oracles
}


@dataclass(frozen=True)
class MethodStyle:
    """How one method is drawn: its family's colour, a dash pattern (seaborn's ``dashes``; ``""``
    is solid) and a filled marker."""

    family: str
    dashes: tuple | str = ""
    marker: str = "o"

    @property
    def colour(self) -> str:
        return FAMILY_COLOURS[self.family]


_DASHED, _DOTTED, _DASH_DOT = (4, 1.5), (1.5, 1), (3, 1.25, 1.5, 1.25)

#: Every method label the notebooks draw (the trainers' ``*_LABELS`` and the notebooks' own), by family.
METHOD_STYLES = {
    "Bprop": MethodStyle("backprop", "", "o"),
    "BPTT": MethodStyle("backprop", "", "o"),
    "Bprop, 1 worker": MethodStyle("backprop", "", "o"),
    "Bprop, all cores": MethodStyle("backprop, more workers", _DASHED, "h"),
    "GPipe": MethodStyle("pipeline", "", "o"),
    "1F1B": MethodStyle("pipeline", _DASHED, "X"),
    "No Bprop": MethodStyle("no signal", _DOTTED, "v"),
    "No B signal": MethodStyle("no signal", _DOTTED, "v"),
    "DNI": MethodStyle("DNI", "", "s"),
    "DNI, synthesizer reads A's state": MethodStyle("DNI", _DASH_DOT, "P"),
    "cDNI": MethodStyle("cDNI", "", "D"),
    "cDNI, A's own label": MethodStyle("cDNI", _DASHED, "d"),
    "DNI + Aux": MethodStyle("DNI + Aux", _DASHED, "^"),
    "complete unlock": MethodStyle("complete unlock", "", "*"),
    "complete unlock, synthetic path": MethodStyle("complete unlock", _DASHED, "p"),
    "DNI, exact gradient": MethodStyle("bound", _DASHED, "X"),
    "DNI, exact target": MethodStyle("bound", _DOTTED, "P"),
    "true gradient (oracle)": MethodStyle("bound", _DASHED, "X"),
}


def _styles(labels) -> dict[str, MethodStyle]:
    unknown = [lab for lab in labels if lab not in METHOD_STYLES]
    if unknown:
        raise ValueError(f"labels={unknown!r} have no method style: expected some of {list(METHOD_STYLES)}")
    return {lab: METHOD_STYLES[lab] for lab in dict.fromkeys(labels)}


def method_palette(labels) -> dict[str, str]:
    """``{label: colour}`` for seaborn's ``palette=``: DNI is the same colour in every figure."""
    return {lab: s.colour for lab, s in _styles(labels).items()}


def method_kws(labels, markers: bool = False) -> dict:
    """Keyword arguments for a seaborn line plot with ``hue`` and ``style`` both on the method
    column: the colours, the order, dashes (so that lines which coincide stay visible) and, if
    ``markers``, one marker per method."""
    styles = _styles(labels)
    kws = {"hue_order": list(styles), "palette": method_palette(styles), "style_order": list(styles),
           "dashes": {lab: s.dashes for lab, s in styles.items()}}
    if markers:
        kws["markers"] = {lab: s.marker for lab, s in styles.items()}
    return kws


def method_handles(labels, markers: bool = False) -> list[Line2D]:
    """Legend handles in the method styles, for figures drawn without seaborn's legend."""
    return [Line2D([], [], color=s.colour, linestyle=(0, s.dashes) if s.dashes else "-",
                   marker=s.marker if markers else None, label=lab) for lab, s in _styles(labels).items()]


class _PlainLogFormatter(LogFormatter):
    """matplotlib's choice of which log ticks to label, written as plain numbers (0.2, not 2e-01)."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:g}"


def plain_log_axis(ax: plt.Axes, axis: str = "y") -> None:
    """Log scale on ``axis`` (x, y or both) with plain numbers (2, 5, 10, 20) instead of powers
    of ten; minor ticks are labelled only where the axis spans too few decades to have two
    labelled major ticks."""
    if axis not in ("x", "y", "both"):
        raise ValueError(f"axis={axis!r} is unknown: expected x, y or both")
    for name in ("x", "y") if axis == "both" else (axis,):
        getattr(ax, f"set_{name}scale")("log")
        which = getattr(ax, f"{name}axis")
        which.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        which.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1.2, 0.4)))
        ax.tick_params(axis=name, which="minor", labelsize="x-small")


def log_ticks_at(ax: plt.Axes, values, axis: str = "x", base: float = 2) -> None:
    """Log scale on ``axis`` with its ticks at ``values`` (the points where the data sit, e.g. the
    training budgets 250, 500, 1,000), written with thousands separators, and no minor ticks: a
    reader reads the budgets off the axis instead of the powers of ``base`` between them."""
    if axis not in ("x", "y"):
        raise ValueError(f"axis={axis!r} is unknown: expected x or y")
    values = sorted({float(v) for v in values})
    if not values or values[0] <= 0:
        raise ValueError(f"values={values!r} are invalid: expected positive numbers")
    getattr(ax, f"set_{axis}scale")("log", base=base)
    which = getattr(ax, f"{axis}axis")
    which.set_major_locator(FixedLocator(values))
    which.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 10 else f"{v:g}"))
    which.set_minor_locator(NullLocator())


def facet_titles(grid: sns.FacetGrid, row: str = "{row_name}", col: str = "{col_name}") -> None:
    """Facet titles in words, e.g. ``col="{col_name} hidden layers"``, instead of seaborn's
    ``col = value``; a grid with rows and columns joins the two with a comma."""
    parts = [t for t, names in ((row, grid.row_names), (col, grid.col_names)) if names]
    grid.set_titles(template=", ".join(parts))


def legend_outside(obj: plt.Axes | sns.FacetGrid, where: str = "right", **kws) -> None:
    """Move the legend of an axes or a seaborn grid off the data: to its right, or below it. (A
    grid's own legend is already to its right.)"""
    if where not in ("right", "below"):
        raise ValueError(f"where={where!r} is unknown: expected right or below")
    grid = isinstance(obj, sns.FacetGrid)
    if where == "right":
        place = {"loc": "center right", "bbox_to_anchor": (1, 0.5)} if grid else {"loc": "upper left",
                                                                                "bbox_to_anchor": (1.02, 1)}
    else:
        place = {"loc": "upper center", "bbox_to_anchor": (0.5, 0) if grid else (0.5, -0.2), "ncol": 3}
    sns.move_legend(obj, **{**place, "frameon": False, **kws})


def takeaway(fig: plt.Figure, text: str) -> None:
    """A one-line title that says what the figure shows; where it states a number, the caller
    computes it from the run's results."""
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    if isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine):  # it makes room for the title
        fig.suptitle(text, fontsize="medium")
        return
    # Otherwise (seaborn's grids use a tight layout) the title goes above everything the axes draw,
    # their titles included; the saved figure's tight bounding box takes it in.
    renderer = fig.canvas.get_renderer()
    top = max([ax.get_tightbbox(renderer).y1 for ax in fig.axes] or [fig.bbox.y1])
    fig.suptitle(text, fontsize="medium", y=top / fig.bbox.height + 0.01, va="bottom")
