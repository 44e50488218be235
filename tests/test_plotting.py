import itertools

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import seaborn as sns

from dni_utils.experiments.nb05_rnn_copy import LABELS as COPY_LABELS
from dni_utils.tools.plotting import (
    FAMILY_COLOURS,
    facet_titles,
    legend_outside,
    method_kws,
    method_palette,
    log_ticks_at,
    plain_log_axis,
    savefig,
    set_style,
    takeaway,
)
from dni_utils.trainers.feedforward import METHOD_LABELS
from dni_utils.trainers.parallel import PARALLEL_LABELS
from dni_utils.trainers.recurrent import RNN_METHOD_LABELS
from dni_utils.trainers.timescales import TIMESCALE_LABELS

LABEL_DICTS = {"feedforward": METHOD_LABELS, "recurrent": RNN_METHOD_LABELS, "copy": COPY_LABELS,
               "timescales": TIMESCALE_LABELS, "parallel": PARALLEL_LABELS}
NOTEBOOK_LABELS = ("complete unlock", "complete unlock, synthetic path", "true gradient (oracle)")  # 04 and 09


@pytest.fixture(autouse=True)
def _own_style():
    with plt.rc_context():
        set_style()
        yield
    plt.close("all")


def _lab(colour: str) -> np.ndarray:
    """CIE L*a*b* (D65) of an sRGB colour."""
    rgb = np.array(mcolors.to_rgb(colour))
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ lin
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


@pytest.mark.parametrize("name", LABEL_DICTS)
def test_every_method_label_has_a_colour(name):
    labels = list(LABEL_DICTS[name].values())
    assert set(method_palette(labels)) == set(labels)


def test_notebook_labels_have_a_colour():
    assert set(method_palette(NOTEBOOK_LABELS)) == set(NOTEBOOK_LABELS)


def test_dni_is_one_colour_everywhere():
    colours = {method_palette(d.values())["DNI"] for d in LABEL_DICTS.values()}
    assert colours == {FAMILY_COLOURS["DNI"]}


def test_no_two_family_colours_look_alike():
    # ΔE*ab below 20 reads as the same colour in a thin line.
    for (a, ca), (b, cb) in itertools.combinations(FAMILY_COLOURS.items(), 2):
        assert np.linalg.norm(_lab(ca) - _lab(cb)) > 20, (a, b)


@pytest.mark.parametrize("labels", [*(list(d.values()) for d in LABEL_DICTS.values()),
                                    [*METHOD_LABELS.values(), *NOTEBOOK_LABELS[:2]]], ids=[*LABEL_DICTS, "unlock"])
def test_methods_drawn_together_differ_in_colour_or_dashes(labels):
    kws = method_kws(labels)
    looks = [(kws["palette"][lab], kws["dashes"][lab]) for lab in labels]
    assert len(set(looks)) == len(looks), looks


def test_unknown_label_is_named():
    with pytest.raises(ValueError, match="Backprop"):
        method_palette(["DNI", "Backprop"])


def test_a_figure_from_the_helpers_is_small(tmp_path):
    labels = list(METHOD_LABELS.values())
    rng = np.random.default_rng(0)
    curves = pd.DataFrame([{"setting": f"FCN, {d} hidden layers", "method": m, "seed": s, "step": t,
                            "test error (%)": 50 * np.exp(-t / 500) + rng.uniform(1, 3)}
                           for d in (3, 4, 5, 6) for m in labels for s in range(3) for t in range(0, 2001, 100)])
    grid = sns.relplot(data=curves, x="step", y="test error (%)", hue="method", style="method", col="setting",
                       col_wrap=3, kind="line", errorbar="sd", height=2.2, **method_kws(labels))
    facet_titles(grid)
    for ax in grid.axes.flat:
        plain_log_axis(ax)
    legend_outside(grid)
    takeaway(grid.figure, "DNI ends between Bprop and No Bprop")
    png = savefig(grid.figure, "plot", tmp_path, "smoke")[1]
    assert png.stat().st_size < 300_000
    assert grid.axes.flat[0].get_title() == "FCN, 3 hidden layers"
    renderer = grid.figure.canvas.get_renderer()
    title = grid.figure._suptitle.get_window_extent(renderer)
    assert all(title.y0 >= ax.get_tightbbox(renderer).y1 - 1e-6 for ax in grid.axes.flat), \
        "the takeaway title must sit above every facet title"


def test_plain_log_ticks_on_x():
    fig, ax = plt.subplots()
    ax.plot([0.05, 1.0], [1, 2])
    plain_log_axis(ax, "x")
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert "0.1" in labels and not any("10^" in t or "times" in t for t in labels)


def test_log_ticks_sit_at_the_given_values():
    fig, ax = plt.subplots()
    ax.plot([250, 500, 1000, 2000, 4000], [5, 4, 3, 2, 1])
    log_ticks_at(ax, [250, 500, 1000, 2000, 4000])
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels == ["250", "500", "1,000", "2,000", "4,000"]
    assert not [t for t in ax.get_xticklabels(minor=True) if t.get_text()]
    with pytest.raises(ValueError, match="values="):
        log_ticks_at(ax, [0, 10])


def test_a_busy_figure_is_written_at_a_lower_resolution(tmp_path):
    rng = np.random.default_rng(0)
    fig, axes = plt.subplots(4, 3, figsize=(11, 11))
    for ax in axes.flat:
        for _ in range(2):
            y = rng.normal(size=400).cumsum()
            ax.fill_between(range(400), y - rng.uniform(0, 3, 400), y + rng.uniform(0, 3, 400), alpha=0.3)
            ax.plot(y)
    fig.savefig(tmp_path / "at_style_dpi.png")
    assert (tmp_path / "at_style_dpi.png").stat().st_size > 300_000  # else the test tests nothing
    png = savefig(fig, "busy", tmp_path, "smoke")[1]
    assert png.stat().st_size <= 300_000
