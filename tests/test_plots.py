"""Every plot function draws on the Axes it is given, returns it, and never shows.

And the package's figure style: rcParams restored, one colour per entity,
exact theory above the Monte Carlo markers, the interval level stated, and
intervals read from the table's columns (no statistics in lossvar.plots).
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

import lossvar  # noqa: E402
from lossvar import plots  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _curves():
    k = np.arange(1, 51)
    rows = [pd.DataFrame({"method": m, "step": k, "mean": s / k, "se": 0.1 * s / k,
                          "exact": s / k})
            for m, s in (("a", 1.0), ("b", 2.0))]
    t = pd.concat(rows, ignore_index=True)
    t["ci_low"], t["ci_high"] = t["mean"] - 1.96 * t.se, t["mean"] + 1.96 * t.se
    return t


def _variance_table():
    """A hand-made variance table: the intervals are deliberately not any formula's."""
    rows = []
    for sampling in ("without_replacement", "with_replacement"):
        for b in (1, 4, 16, 100):
            fpc = (100 - b) / 99 if sampling == "without_replacement" else 1.0
            exact = 2.0 / b * fpc
            var = 0.0 if exact == 0 else exact * 1.01
            rows.append(dict(batch_size=b, sampling=sampling, n=100, variance=var,
                             ci_low=var * 0.5, ci_high=var * 3.0, exact_variance=exact, fpc=fpc,
                             interval="fourth_moment", interval_reliable=True))
    return pd.DataFrame(rows)


def test_variance_plot_still_works():
    with pytest.warns(lossvar.stats.UnreliableIntervalWarning, match="may under-cover"):
        res = lossvar.loss_variance(np.random.default_rng(0).exponential(size=200), [1, 4, "full"],
                                    replicates=500, rng=1)
    _, ax = plt.subplots()
    assert plots.variance_plot(res.table, ax=ax) is ax
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    # the old positional/keyword call of `lossvar variance` still works, on its own figure
    ax2 = plots.variance_plot(res.table, title="T")
    assert ax2.get_title() == "T" and ax2.figure is not ax.figure


def test_style_restores_rcparams():
    before = {k: matplotlib.rcParams[k] for k in plots.RC}
    cycle = matplotlib.rcParams["axes.prop_cycle"]
    with plots.style():
        assert matplotlib.rcParams["savefig.dpi"] == plots.DPI == 300
        assert matplotlib.rcParams["font.size"] == plots.RC["font.size"]
        fig, ax = plots.subplots(width="full")
        assert fig.get_figwidth() == pytest.approx(plots.FULL_WIDTH)
    assert {k: matplotlib.rcParams[k] for k in plots.RC} == before
    assert matplotlib.rcParams["axes.prop_cycle"] == cycle
    # a plot function making its own figure leaves the caller's rcParams alone too
    plots.variance_plot(_variance_table())
    assert {k: matplotlib.rcParams[k] for k in plots.RC} == before


def test_print_sizes():
    assert plots.COLUMN_WIDTH == pytest.approx(3.5) and plots.FULL_WIDTH == pytest.approx(7.2)
    # a full-width figure at the style's resolution is wide enough for a page
    assert plots.FULL_WIDTH * plots.DPI >= 1800
    assert plots.RC["font.size"] >= 7 and plots.RC["xtick.labelsize"] >= 6.5


def test_palette_is_stable_and_colour_blind_safe():
    p = plots.palette(["fresh", "with_replacement", "without_replacement", "sgd", "adam"])
    # sampling schemes keep their colour whatever the other names or their order
    assert plots.palette(["without_replacement"]) == {"without_replacement": p["without_replacement"]}
    assert plots.palette(["with_replacement", "fresh"])["fresh"] == p["fresh"]
    assert len(set(p.values())) == len(p)  # one colour per entity
    assert set(p.values()) <= set(plots.OKABE_ITO.values())
    assert plots.palette(["x", "y"]) == plots.palette(["x", "y"])
    m = plots.markers(["fresh", "sgd", "adam"])
    assert len(set(m.values())) == 3


def test_palette_same_colour_in_every_panel():
    t = _variance_table()
    colors = plots.palette(t.sampling)
    fig, (a, b) = plt.subplots(1, 2)
    plots.variance_plot(t, ax=a, palette=colors)
    plots.ratio_plot(t[t.sampling == "with_replacement"], ax=b, palette=colors)

    def marker_colors(ax):
        return {to_hex(line.get_markeredgecolor()) for line in ax.lines if line.get_marker() not in
                ("None", "", None) and line.get_linestyle() == "None" and len(line.get_xdata())}

    assert to_hex(colors["with_replacement"]) in marker_colors(a)
    assert marker_colors(b) == {to_hex(colors["with_replacement"])}


def test_variance_plot_exact_above_markers_and_level_stated():
    t = _variance_table()
    _, ax = plt.subplots()
    plots.variance_plot(t, ax=ax, confidence=0.9)
    exact = [ln for ln in ax.lines if ln.get_linestyle() == "-" and len(ln.get_xdata()) > 50
             and to_hex(ln.get_color()) == to_hex(plots.EXACT["color"])]
    marks = [ln for ln in ax.lines if ln.get_linestyle() == "None" and len(ln.get_xdata())]
    assert exact and marks
    assert min(ln.get_zorder() for ln in exact) > max(ln.get_zorder() for ln in marks)
    # the reference law lies beneath everything
    ref = [ln for ln in ax.lines if ln.get_linewidth() == plots.REFERENCE["lw"]]
    assert ref and ref[0].get_zorder() < min(ln.get_zorder() for ln in marks)
    legend = ax.get_legend()
    text = legend.get_title().get_text() + " ".join(x.get_text() for x in legend.get_texts())
    assert "90% confidence interval" in text and "exact theory" in text
    assert "fourth_moment" not in text  # words, not code identifiers


def test_variance_plot_draws_intervals_from_the_columns():
    t = _variance_table()
    _, ax = plt.subplots()
    plots.variance_plot(t, ax=ax, dodge=0)
    segments = np.concatenate([c.get_segments() for c in ax.collections if c.get_segments()])
    lows = sorted(round(s[:, 1].min(), 12) for s in segments)
    highs = sorted(round(s[:, 1].max(), 12) for s in segments)
    pos = t[t.variance > 0]
    assert lows == sorted(np.round(pos.ci_low, 12))
    assert highs == sorted(np.round(pos.ci_high, 12))
    # the exact curve goes through the table's exact values (via lossvar.theory)
    exact = [ln for ln in ax.lines if len(ln.get_xdata()) == 200]
    wo = exact[0]
    b = np.asarray(wo.get_xdata())
    assert np.interp(16, b, wo.get_ydata()) == pytest.approx(2.0 / 16 * 84 / 99, rel=1e-3)


def test_ratio_plot_reads_columns_and_centres_on_one():
    t = _variance_table()
    _, ax = plt.subplots()
    assert plots.ratio_plot(t, ax=ax, confidence=0.95, dodge=0) is ax
    segments = np.concatenate([c.get_segments() for c in ax.collections if c.get_segments()])
    pos = t[t.exact_variance > 0]
    assert sorted(np.round([s[:, 1].min() for s in segments], 12)) == sorted(
        np.round(pos.ci_low / pos.exact_variance, 12))
    lo, hi = ax.get_ylim()
    assert lo < 1 < hi and (1 - lo) == pytest.approx(hi - 1)
    assert "95% confidence interval" in ax.get_legend().get_title().get_text()


def test_interval_words():
    assert plots.interval_words(0.95, "chi2").startswith("95% confidence intervals (chi-square")
    assert "_" not in plots.interval_words(0.99, "fourth_moment")


def test_loss_curves_bands_and_exact():
    t = _curves()
    _, ax = plt.subplots()
    out = plots.loss_curves(t, x="step", y="mean", hue="method", lo="ci_low", hi="ci_high", exact=t,
                            ax=ax, logx=True, xlabel="step", ylabel="loss", title="T",
                            band_label="95% confidence band")
    assert out is ax
    assert len(ax.collections) >= 2  # one band per method
    assert ax.get_title() == "T" and ax.get_ylabel() == "loss" and ax.get_yscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "exact theory" in labels and "a" in labels and "95% confidence band" in labels
    exact = [ln for ln in ax.lines if to_hex(ln.get_color()) == to_hex(plots.EXACT["color"])]
    assert min(ln.get_zorder() for ln in exact) > max(
        c.get_zorder() for c in ax.collections)


def test_loss_curves_se_is_one_standard_error():
    t = _curves()
    _, ax = plt.subplots()
    plots.loss_curves(t[t.method == "a"], x="step", y="mean", se="se", ax=ax)
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    a = t[t.method == "a"]
    assert band.max() == pytest.approx((a["mean"] + a.se).max())
    assert "standard error" in " ".join(x.get_text() for x in ax.get_legend().get_texts())


def test_convergence_plot_reference_line():
    t = _curves()
    ax = plots.convergence_plot(t, hue="method", exact=t, reference=1.0)
    assert ax.get_xscale() == "log"
    assert "1 / k" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_spread_and_interval_plots():
    t = pd.DataFrame({"n": [10, 20, 10, 20], "noise_std": [0.5, 0.5, 1.0, 1.0],
                      "spread": [1.0, 0.5, 4.0, 2.0], "ci_low": [0.9, 0.4, 3.5, 1.8],
                      "ci_high": [1.1, 0.6, 4.5, 2.2], "exact": [1.0, 0.5, 4.0, 2.0]})
    _, ax = plt.subplots()
    assert plots.spread_plot(t, ax=ax) is ax
    ax2 = plots.interval_plot(t, x="n", y="spread", hue="noise_std", reference=1.0, logy=True)
    assert [tick.get_text() for tick in ax2.get_xticklabels()] == ["10", "20"]


def test_trajectories_plot():
    paths = pd.DataFrame({"optimizer": ["sgd"] * 3 + ["adam"] * 3, "step": [0, 1, 2] * 2,
                          "w0": [-1.0, -0.5, 0.0, -1.0, -0.6, -0.1],
                          "w1": [1.0, -0.5, 0.1, 1.0, 0.5, 0.0]})
    ax = plots.trajectories_plot(paths, lambda a, b: a**2 + 10 * b**2)
    assert len(ax.lines) == 3 and ax.get_xlabel().startswith("w0")


def test_table_panel_and_caption():
    fig, ax = plt.subplots()
    plots.table_panel(ax, ["a", "b\nc"], [["x", "1"], ["y", "2"]], colors=["#0072B2", "#D55E00"],
                      marks=["o", "s"], color_col=0)
    cap = plots.caption(fig, "word " * 200)
    assert "\n" in cap.get_text()
    assert not ax.axison


def test_palette_and_markers_stay_distinct_beyond_seven():
    names = [f"s{i}" for i in range(10)]
    p, m = plots.palette(names), plots.markers(names)
    assert len(set(p.values())) == 10 and len(set(m.values())) == 10
    assert plots.OKABE_ITO["yellow"] not in list(p.values())[:9]  # the weak yellow comes last
    # seven names or fewer: unchanged
    assert list(plots.palette(names[:7]).values()) == list(plots.OKABE_ITO.values())


def test_mc_points_draws_bars_from_the_given_bounds():
    _, ax = plt.subplots()
    out = plots.mc_points(ax, [1, 2], [1.0, 2.0], [0.5, 1.5], [1.2, 2.6], color="#0072B2",
                          marker="s", label="MC", reliable=[True, False], ms=3.0)
    assert out is ax
    segments = np.concatenate([c.get_segments() for c in ax.collections if c.get_segments()])
    assert sorted(np.round(segments[:, :, 1].min(axis=1), 12)) == [0.5, 1.5]
    assert sorted(np.round(segments[:, :, 1].max(axis=1), 12)) == [1.2, 2.6]
    faces = [to_hex(ln.get_markerfacecolor()) for ln in ax.lines if len(ln.get_xdata())]
    assert "#ffffff" in faces  # the unreliable interval has an open marker
    assert "MC" in ax.get_legend_handles_labels()[1]


def test_caption_keeps_mathtext_whole_and_fits_the_width():
    fig = plt.figure(figsize=(3.5, 2.0))
    text = "word " * 40 + r"$\mathbb{E}\,\|w_N - w^*\|^2 \propto (N - d - 1)^{-1}$ " + "end " * 20
    cap = plots.caption(fig, text)
    lines = cap.get_text().split("\n")
    assert len(lines) > 2
    assert all(line.count("$") % 2 == 0 for line in lines)  # no math split across lines
    renderer = fig.canvas.get_renderer()
    probe = fig.text(0, 0, "", fontsize=7.0)
    for line in lines:
        probe.set_text(line)
        assert probe.get_window_extent(renderer).width / fig.dpi <= 3.5 + 1e-6


def _legend_text(fig) -> str:
    """Every word of the figure's legends (the Axes' and the figure's own), title first."""
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    return " ".join(lg.get_title().get_text() + " " + " ".join(t.get_text() for t in lg.get_texts())
                    for lg in legends)


def _inside_canvas(fig) -> None:
    """The tight bounding box of everything drawn lies inside the figure, as a plain
    ``savefig`` (no ``bbox_inches="tight"``) writes it."""
    fig.canvas.draw()
    box = fig.get_tightbbox(fig.canvas.get_renderer())  # inches
    w, h = fig.get_size_inches()
    px = 1.0 / fig.dpi  # a pixel of slack: the box is measured in whole pixels
    assert box.x0 >= -px and box.y0 >= -px and box.x1 <= w + px and box.y1 <= h + px, (box, w, h)


@pytest.mark.parametrize("plot", [plots.variance_plot, plots.ratio_plot])
@pytest.mark.parametrize("title", [None, "a title\non two lines"])
def test_own_figure_fits_the_canvas_and_states_the_level(plot, title, tmp_path):
    # As the README does it: the plot function makes the figure, the caller saves it
    # outside lossvar.plots.style().
    t = _variance_table().assign(confidence=0.9)
    fig = plot(t, title=title).figure
    _inside_canvas(fig)
    assert "90% confidence intervals" in _legend_text(fig)
    fig.savefig(tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 0


@pytest.mark.parametrize("plot", [plots.variance_plot, plots.ratio_plot])
def test_the_level_from_the_argument_or_said_to_be_unknown(plot):
    t = _variance_table()
    assert "99% confidence intervals" in _legend_text(plot(t, confidence=0.99).figure)
    # the argument wins over the table's column
    assert "99% confidence" in _legend_text(plot(t.assign(confidence=0.9), confidence=0.99).figure)
    unknown = _legend_text(plot(t).figure)
    assert "level not recorded" in unknown and "%" not in unknown
    with pytest.raises(ValueError, match="several levels"):
        plot(pd.concat([t.assign(confidence=0.9), t.assign(confidence=0.95)]))


def test_plots_is_there_after_import_lossvar():
    import subprocess
    import sys

    code = "import sys, lossvar; lossvar.plots.variance_plot; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # and importing lossvar still does not import matplotlib (its cost is paid on first plot)
    assert out.stdout.strip() == "False"


def test_interval_text_prints_ends_that_differ_or_says_why_none():
    assert plots.interval_text(1.0, 2.0) == "[1, 2]"
    assert plots.interval_text(1.00001, 1.00002) == "[1.00001, 1.00002]"  # digits until they differ
    assert plots.interval_text(np.nan, 1.0, 1) == "no interval (only 1 replicate)"
    assert plots.interval_text(1.0, 1.0, 50) == "no interval (no spread across replicates)"
    assert plots.interval_text(1.0, 1.0) == "no interval (no standard error)"


def test_numbers_minus_signs_and_verdict_words():
    assert [plots.number(v) for v in (0.01234, 12.34, 4321.0, 123456.0)] == ["0.0123", "12.3", "4321",
                                                                           "1.23e+05"]
    assert plots.minus("-0.5 [-1, 0]") == "\u22120.5 [\u22121, 0]"
    assert plots.percent(0.95) == "95%" and plots.percent(0.999) == "99.9%"
    rows = pd.DataFrame({"tested": [0, 3, 3], "agrees": [False, True, "False"]})
    assert [plots.verdict_word(r) for r in rows.itertuples()] == ["no verdict", "agrees", "DISAGREES"]
    assert plots.verdict_phrase(rows.iloc[1], "p = 0.5") == "agrees (p = 0.5)"
    assert plots.verdict_phrase(rows.iloc[0], "p = 0.5", "why") == "no verdict (why)"
    assert plots.sampling_label("fresh", short=True) == "fresh data"


def test_band_draws_the_mean_and_the_edges_and_masks_a_log_axis():
    _, ax = plt.subplots()
    x = np.arange(4.0)
    out = plots.band(ax, x, [1, 2, 3, 4], [-1, 1, 2, 3], [2, 3, 4, 5], color="#0072B2", label="m",
                     positive=True)
    assert out is ax and len(ax.collections) == 1
    low, high, mean = ax.lines
    assert np.isnan(low.get_ydata()[0]) and list(high.get_ydata()) == [2, 3, 4, 5]
    assert mean.get_label() == "m" and list(mean.get_ydata()) == [1, 2, 3, 4]


def test_figure_legend_leads_with_the_given_labels_row_by_row():
    fig, (a, b) = plt.subplots(1, 2)
    for name in ("x", "y", "z"):
        a.plot([], [], label=name)
    b.plot([], [], label="w")
    b.plot([], [], label="x")  # drawn twice: one entry
    legend = plots.figure_legend(fig, [a, b], ncol=2, title="t", first=["w"])
    # w, x, y, z read row by row in two columns: the columns hold (w, y) and (x, z)
    assert [t.get_text() for t in legend.get_texts()] == ["w", "y", "x", "z"]
    assert legend.get_title().get_text() == "t"


def test_log_ticks_are_plain_numbers():
    fig, ax = plt.subplots()
    ax.set_xscale("log")
    ax.set_xlim(1, 300)
    plots.log_ticks(ax.xaxis, subs=None)  # 2.5 decades: 1 and 3 per decade
    fig.canvas.draw()
    shown = [t.get_text() for t in ax.get_xticklabels() if 1 <= t.get_position()[0] <= 300]
    assert shown == ["1", "3", "10", "30", "100", "300"]


def test_styled_draws_inside_the_style_and_restores_it():
    import matplotlib as mpl

    @plots.styled
    def size():
        return mpl.rcParams["font.size"]

    before = mpl.rcParams["font.size"]
    assert size() == plots.RC["font.size"] and mpl.rcParams["font.size"] == before
