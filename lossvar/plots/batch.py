"""Figures of the batch size: the variance of the batch-mean loss against B, and the
critical batch size (one-step gains, steps against examples, the gradient noise).

Each function draws a study's tables (``variance_scaling``, ``critical_batch``) and
returns the figure; the statistics come from the tables.
"""

from __future__ import annotations

import numpy as np

from ..stats import two_sided_z
from .draw import mc_points, ratio_plot, variance_plot
from .style import EXACT, FULL_WIDTH, MONTE_CARLO, figure, markers, palette, style, styled, subplots
from .text import (
    caption,
    figure_legend,
    interval_words,
    legend_order,
    log_ticks,
    number,
    percent,
    sampling_label,
    table_panel,
    verdict_word,
)

__all__ = ["gradient_noise_figure", "one_step_figure", "steps_examples_figure", "variance_scaling_figure"]


def variance_scaling_figure(variance, fits, verdicts, *, confidence, titles):
    """Per source a log-log panel of Var(B) and a panel of Monte Carlo / exact, and below
    them the fitted exponents and the verdicts (the ``variance_scaling`` study's tables
    ``variance``, ``scaling_fit`` and ``agreement``); ``titles``: ``{source: panel title}``.
    Returns the figure."""
    import matplotlib.pyplot as plt

    sources = list(dict.fromkeys(variance.source))
    schemes = list(dict.fromkeys(variance.sampling))
    colors, marks = palette(schemes), markers(schemes)
    level = f"{100 * confidence:.4g}%"
    rows, row_colors, row_marks, seen = [], [], [], set()
    ver_by = {(v.source, v.sampling): v for v in verdicts.itertuples()}
    for f in fits.itertuples():
        v = ver_by.get((f.source, f.sampling))
        verdict, missed = "", ""
        if v is not None:
            holm = getattr(v, "holm_pvalue", float("nan"))
            verdict = verdict_word(v)
            if verdict != "no verdict":
                verdict += f" (p = {v.pvalue:#.2g}, Holm {holm:#.2g})"
            missed = f"{v.misses} of {v.intervals} ({v.expected_misses:.2g})"
        rows.append(["" if f.source in seen else f.source, sampling_label(f.sampling, short=True),
                     f"{f.exponent:.4f}  [{f.ci_low:.4f}, {f.ci_high:.4f}]".replace("-", "\u2212"),
                     f"{f.pvalue:#.2g}, Holm {f.holm_pvalue:#.2g}", verdict, missed])
        row_colors.append(colors.get(f.sampling, "0.1"))
        row_marks.append(marks.get(f.sampling, "o"))
        seen.add(f.source)
    with style():
        table_height = (len(rows) + 2.6) * 1.3 * 7 / 72
        fig = plt.figure(figsize=(FULL_WIDTH, 3.9 + table_height), layout="constrained")
        grid = fig.add_gridspec(3, len(sources), height_ratios=[2.5, 1.3, table_height])
        ratio_axes = []
        for j, src in enumerate(sources):
            t = variance[variance.source == src]
            ax = fig.add_subplot(grid[0, j])
            rax = fig.add_subplot(grid[1, j], sharex=ax)
            variance_plot(t, ax=ax, palette=colors, confidence=confidence, legend=False, note=False,
                          title=titles[src], dodge=0.06)
            ax.set_ylabel(r"$\mathrm{Var}(\bar\ell_B)$")
            ax.tick_params(labelbottom=False)
            ax.set_xlabel("")
            ratio_plot(t, ax=rax, palette=colors, confidence=confidence, legend=False,
                       dodge=0.06)
            rax.set_ylabel("Monte Carlo / exact")
            ratio_axes.append(rax)
        half = max(max(abs(a.get_ylim()[0] - 1), abs(a.get_ylim()[1] - 1)) for a in ratio_axes)
        for a in ratio_axes:
            a.set_ylim(1 - half, 1 + half)
        found = {}
        for a in fig.axes:
            for h, lab in zip(*a.get_legend_handles_labels(), strict=True):
                found.setdefault(lab, h)
        order = [sampling_label(s) for s in schemes]
        handles = {lab: found[lab] for lab in order + [lab for lab in found if lab not in order]}
        ncol = max(len(schemes), len(handles) - len(schemes))
        handles = legend_order(handles, ncol)
        fig.legend(handles.values(), handles.keys(), loc="outside upper center", ncol=ncol,
                   title=f"Monte Carlo estimates (markers) with {level} confidence intervals (bars)",
                   columnspacing=1.6)
        tab = fig.add_subplot(grid[2, :])
        header = ["source", "sampling", f"exponent $a$ of $\\mathrm{{Var}} \\propto B^a$\n({level} CI)",
                  "p-value of $a = -1$\n(raw, Holm)", "Monte Carlo against\nexact theory, every $B$",
                  "intervals missing\nexact (expected)"]
        table_panel(tab, header,
                    rows, colors=row_colors, marks=row_marks, color_col=1, x0=-0.45, pad=0.12)
    bars = interval_words(confidence, variance["interval"].iloc[0] if "interval" in variance
                          else None)
    reliable = variance.interval_reliable.astype(bool).all() if "interval_reliable" in variance else True
    zero = variance[(variance.exact_variance == 0)]
    caption(fig, (
        "Markers: Monte Carlo estimates of the variance of the batch-mean loss, offset slightly "
        f"in B so the sampling schemes do not hide one another; bars: {bars}"
        + ("; open markers: intervals that may under-cover (too few replicates for the tails)"
           if not reliable else "")
        + "; on the log scale most bars are shorter than the markers, the middle row shows them. "
        "Dark line: exact theory (docs/theory.md, section 1), drawn over the markers; wide "
        "grey line: $s^2/B$, the 1/B law. Without replacement the exact variance falls below 1/B by "
        "the factor $(N - B)/(N - 1)$"
        + ("; the full batch B = N of a fixed data set has variance exactly 0 and is not drawn"
           if len(zero) else "")
        + ". Middle: Monte Carlo divided by exact, with its interval; the theory holds where the "
        "bars cross 1. Table: exponent $a$ fitted by weighted least squares after dividing by the "
        f"finite-population factor, its {level} interval and the p-value of $a = -1$, raw and "
        f"after Holm's correction across the study's {len(rows)} fits; verdict of "
        "the calibrated test of every batch size against its exact sampling distribution, at level "
        f"{1 - confidence:.2g} after Holm's correction across the study's {len(rows)} tables."))
    return fig


#: At most this many batch sizes per one-step panel (every other size of a longer ladder).
MAX_CURVES = 5
#: Lower edge of the one-step panels, in units of the noiseless best gain (curves leave below).
GAIN_FLOOR = -0.6


def _shown_sizes(sizes):
    sizes = sorted(set(int(b) for b in sizes))
    return sizes[::-(-len(sizes) // MAX_CURVES)]


def _model_gain(x, batch_size, b_noise):
    """The one-step model's gain in units of its noiseless best, at eps = x eps_max (eq. 2.3)."""
    return 2 * x - x**2 * (1 + b_noise / batch_size)


def _theory_style(kind):
    """Exact theory per the package (thin, dark, solid); the second-order model dashed."""
    return dict(EXACT) if kind == "exact" else {**EXACT, "ls": (0, (4, 2))}


@styled
def one_step_figure(one, opt, *, confidence):
    """The one-step gains against the step size per batch size, with the model's curves,
    and the best step against B (the ``critical_batch`` study's tables ``one_step`` and
    ``one_step_opt``, one row of panels per problem). Returns the figure."""
    labels = list(dict.fromkeys(one.problem))
    z = two_sided_z(confidence)
    shown = {lab: _shown_sizes(one.batch_size[one.problem == lab]) for lab in labels}
    names = [f"B = {b}" for b in sorted({b for v in shown.values() for b in v})]
    colors, marks = palette(names), markers(names)
    best_color = "0.45"  # not one of the batch sizes' colours: every B of the ladder
    fig, axes = subplots(len(labels), 2, width="full", height=0.35 + 2.05 * len(labels),
                         squeeze=False, gridspec_kw={"width_ratios": [1.3, 1.0]})
    kinds = set()
    grid = np.sort(one.lr_over_eps_max.unique())
    for (left, right), label in zip(axes, labels, strict=True):
        g = one[one.problem == label]
        o = opt[opt.problem == label].sort_values("batch_size")
        kind = g.theory_kind.iloc[0]
        kinds.add(kind)
        b_noise, e_max = float(o.b_noise.iloc[0]), float(o.eps_max.iloc[0])
        first = o.iloc[0]
        gain_max = float(first.improvement_opt * (1 + b_noise / first.batch_size))  # B -> infinity
        # left: the gain of one step against its size, in units of the noiseless best gain
        xx = np.geomspace(g.lr_over_eps_max.min(), g.lr_over_eps_max.max(), 300)
        k = len(shown[label])
        for i, b in enumerate(shown[label]):
            c = g[g.batch_size == b].sort_values("lr")
            name = f"B = {b}"
            dodge = 10 ** ((i - (k - 1) / 2) * 0.012)
            y = c.improvement.to_numpy(float) / gain_max
            half = z * c.improvement_se.to_numpy(float) / gain_max
            mc_points(left, c.lr_over_eps_max.to_numpy(float) * dodge, y, y - half, y + half,
                      color=colors[name], marker=marks[name], label=name, ms=3.2)
            left.plot(xx, _model_gain(xx, b, b_noise), **_theory_style(kind))
        top = max(1.12, float((g.improvement / gain_max).max()) * 1.08)
        left.set_ylim(GAIN_FLOOR, top)
        left.axhline(0.0, color="0.6", lw=0.5, zorder=0)
        left.set_xscale("log")
        log_ticks(left.xaxis)
        left.set_xlabel(r"step size $\varepsilon\,/\,\varepsilon_{\max}$")
        left.set_ylabel(r"gain $\mathrm{E}\,[L(w_0) - L(w_0 - \varepsilon g_B)]\,/\,\Delta L_{\max}$")
        left.set_title(f"{label}: one step from $w_0 = 0$", loc="left")
        left.text(0.01, 0.02, r"$\varepsilon_{\max}$" + f" = {e_max:.3g}, "
                  r"$\Delta L_{\max}$" + f" = {gain_max:.3g}", transform=left.transAxes,
                  fontsize=6.5, color="0.25", ha="left", va="bottom")
        # right: the best step against B
        bb = np.geomspace(o.batch_size.min() / 1.5, o.batch_size.max() * 1.5, 200)
        right.plot(bb, 1 / (1 + b_noise / bb), **_theory_style(kind))
        right.axhline(1.0, color="0.55", lw=0.6, ls=":", zorder=1)
        right.text(0.01, 1.0, r" $\varepsilon_{\max}$", va="top", ha="left", fontsize=6.5,
                   color="0.35", transform=right.get_yaxis_transform())
        est = o.eps_opt_estimable.astype(bool).to_numpy()
        e = o[est]
        mc_points(right, e.batch_size, e.eps_opt_mc / e_max, e.eps_opt_mc_ci_low / e_max,
                  e.eps_opt_mc_ci_high / e_max, color=best_color, marker="o",
                  label="best step, fitted to Monte Carlo")
        hi = float((e.eps_opt_mc_ci_high / e_max).max()) if len(e) else 1.0
        right.set_ylim(0.0, max(1.12, 1.06 * hi))
        bad = o[~est]
        if len(bad):
            right.plot(bad.batch_size, np.zeros(len(bad)), ls="none", marker="v", ms=5, mfc="white",
                       mec=best_color, mew=1.0, clip_on=False, zorder=5,
                       label="not estimable (at the axis)")
        right.axvline(b_noise, color="0.55", lw=0.6, ls=(0, (1, 1.5)), zorder=1)
        right.text(b_noise, 0.04, r" $B_{\rm noise}$" + f" = {b_noise:.3g}", transform=
                   right.get_xaxis_transform(), fontsize=6.5, color="0.25", ha="left", va="bottom")
        right.set_xscale("log")
        log_ticks(right.xaxis)
        right.set_xlabel(r"batch size $B$")
        right.set_ylabel(r"best step $\varepsilon_{\rm opt}\,/\,\varepsilon_{\max}$")
        local = "\nsecond-order model: local at $w_0$, not exact at large steps"
        right.set_title("best single step against $B$" + ("" if kind == "exact" else local), loc="left")
    lines = fig.add_axes([0, 0, 0, 0], visible=False)  # the legend's order: B, theory, best step
    for name in names:
        mc_points(lines, [], [], [], [], color=colors[name], marker=marks[name], label=name,
                  ms=3.2)
    for kind, text in (("exact", "exact theory"),
                       ("second-order", "second-order model")):
        if kind in kinds:
            lines.plot([], [], **_theory_style(kind), label=text)
    figure_legend(fig, [lines, *np.ravel(axes)], ncol=max(len(names), 4), first=names,
                  title=f"Monte Carlo means (markers) with {interval_words(confidence)} (bars)")
    words = interval_words(confidence)
    caption(fig, (
        "McCandlish et al. (2018), eq. 2.3: one SGD step of size $\\varepsilon$ from $w_0 = 0$ with a "
        "batch of $B$ examples drawn with replacement. Left: mean gain of the step (markers, "
        f"bars: {words}, normal approximation, mean $\\pm z$ standard errors) against the "
        "step, both scaled: $\\varepsilon_{\\max} = |G|^2/G^\\top H G$ and "
        "$\\Delta L_{\\max} = |G|^4/(2\\,G^\\top H G)$, the best step and gain of a noiseless "
        "gradient. The model's curve is $2x - x^2(1 + B_{\\rm noise}/B)$ with "
        "$x = \\varepsilon/\\varepsilon_{\\max}$: solid where it is exact (a quadratic loss), "
        "dashed where it is the second-order expansion at $w_0$. Batch sizes " + "; ".join(
            f"{', '.join(map(str, shown[lab]))} ({lab.split(' (')[0]})" for lab in labels)
        + f" are shown. The vertical axis stops at {GAIN_FLOOR:g}: the curves of large steps and "
        "small batches keep falling below it. Right: the best step "
        "$\\varepsilon_{\\rm opt} = \\varepsilon_{\\max}/(1 + B_{\\rm noise}/B)$ (line) and the "
        "maximum of $a\\varepsilon - c\\varepsilon^2$ fitted to the Monte Carlo gains over the grid "
        f"(markers, bars: Fieller's {words.replace(' intervals', ' interval')} for the ratio "
        "$a/2c$, every batch size of the ladder). Where the fitted parabola has no maximum at a "
        "positive step or its interval is unbounded or reaches 0, the fit is not estimable and "
        "no number is drawn (open triangle at the axis; column eps_opt_estimable). For a "
        "non-quadratic loss the fitted maximum summarizes the curve over the grid "
        f"({grid[0]:g} to {grid[-1]:g} $\\varepsilon_{{\\max}}$), where the "
        "second-order model, an expansion at $w_0$, need not hold.")
    )
    return fig


@styled
def steps_examples_figure(measured, crit, *, confidence):
    """Steps against examples per batch size with the fitted hyperbola of McCandlish et al.
    (2018), one panel per problem (the ``critical_batch`` study's tables ``steps``, here
    ``measured``, and ``critical_batch``). Returns the figure."""
    labels = list(crit.problem)
    z = two_sided_z(confidence)
    color = palette(["Monte Carlo"])["Monte Carlo"]
    # four panels or more in two rows: a row of four leaves each title no room
    rows = 1 if len(labels) <= 3 else 2
    cols = -(-len(labels) // rows)
    fig, axes = subplots(rows, cols, width="full", height=2.75 * rows, squeeze=False)
    for ax in axes.flat[len(labels):]:
        ax.set_axis_off()
    for ax, label in zip(axes.flat, labels, strict=False):
        s = measured[(measured.problem == label) & (measured.reached > 0)].sort_values("batch_size")
        c = crit[crit.problem == label].iloc[0]
        b = s.batch_size.to_numpy(float)
        steps, half = s.steps.to_numpy(float), z * s.steps_se.to_numpy(float)
        # E = B S: the interval of one B runs along the line E = B S (45 degrees on log axes)
        for bi, lo, hi in zip(b, steps - half, steps + half, strict=True):
            ax.plot([bi * lo, bi * hi], [lo, hi], color=color, lw=MONTE_CARLO["elinewidth"],
                    solid_capstyle="butt", zorder=3)
        ax.plot(b * steps, steps, ls="none", marker="o", ms=MONTE_CARLO["ms"], color=color,
                mew=MONTE_CARLO["mew"], zorder=3, label="Monte Carlo, tuned rate per $B$")
        for bi, si in zip(b, steps, strict=True):
            ax.annotate(f"{bi:g}", (bi * si, si), xytext=(4, 2), textcoords="offset points",
                        fontsize=6, color="0.3")
        bb = np.geomspace(0.5 * b.min(), 4 * b.max(), 300)
        ss = c.s_min + c.e_min / bb
        ax.plot(bb * ss, ss, color=EXACT["color"], lw=0.9, ls=(0, (4, 2)), zorder=4,
                label=r"fitted $(S/S_{\min} - 1)(E/E_{\min} - 1) = 1$")
        ax.axhline(c.s_min, color="0.6", lw=0.6, ls=":", zorder=1)
        ax.axvline(c.e_min, color="0.6", lw=0.6, ls=":", zorder=1)
        ax.plot([2 * c.e_min], [2 * c.s_min], ls="none", marker="D", ms=4.5, mfc="white",
                mec=EXACT["color"], mew=1.0, zorder=5,
                label=r"$B = B_{\rm crit}$ on the fit ($2E_{\min}$, $2S_{\min}$)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.autoscale_view()
        log_ticks(ax.xaxis, subs=None)
        log_ticks(ax.yaxis, subs=None)
        ax.set_xlabel(r"examples $E = B\,S$")
        ax.set_ylabel(r"steps $S$ to the target loss")
        ax.set_title(f"{label}, target {c.target:g}", loc="left")
        ax.text(0.97, 0.97,
                r"$B_{\rm crit}$" + f" = {number(c.b_crit)}\n"
                f"{percent(confidence)} CI [{number(c.b_crit_ci_low)}, {number(c.b_crit_ci_high)}]"
                "\n" r"$B_{\rm noise}$" + f" {number(c.b_noise_start)} at $w_0$,\n"
                f"{number(c.b_noise_target)} at target",
                transform=ax.transAxes, ha="right", va="top", fontsize=6.5, linespacing=1.3, zorder=6)
    figure_legend(fig, axes, ncol=3, title="Monte Carlo means (markers) with "
                  f"{interval_words(confidence)} (bars; numbers: batch size $B$)")
    caption(fig, (
        "McCandlish et al. (2018), section 2.2: steps $S$ and examples $E = BS$ to reach the target "
        "excess loss (a fraction of that at the start $w_0$, after each panel's name; $w_0 = 0$, the "
        "network's a Glorot draw) with SGD (batches "
        "drawn with replacement), for each batch size $B$ of the ladder at "
        "its best constant learning rate (tuned on a grid, then measured on fresh runs). Bars: "
        f"{interval_words(confidence)} of the mean steps (normal approximation, mean $\\pm z$ "
        "standard errors; most are shorter than the markers); $E$ moves with $S$, so each bar lies "
        "along the line $E = BS$. Dashed: "
        "the hyperbola $S(B) = S_{\\min} + E_{\\min}/B$ fitted by weighted least squares, with its "
        "asymptotes $S_{\\min}$ and $E_{\\min}$ (dotted); the open diamond is its point at "
        "$B = B_{\\rm crit} = E_{\\min}/S_{\\min}$. $B_{\\rm crit}$'s interval: percentile "
        "bootstrap over runs (the "
        "tuned learning rates held fixed). $B_{\\rm noise}$ from the exact gradient covariance, "
        "at $w_0$ and where full-batch descent reaches the target."))
    return fig


@styled
def gradient_noise_figure(gv, fits, *, confidence):
    """E|g_B - G|^2 against B beside the exact tr(Sigma)/B per problem and sampling scheme,
    Monte Carlo / exact below, and the fitted exponents (the ``critical_batch`` study's
    tables ``gradient_variance`` and ``gradient_scaling``). Returns the figure."""
    # E|g_B - G|^2 is the total variance tr Cov(g_B): drawn by the plots of a variance table.
    gv = gv.rename(columns={"mean": "variance", "mean_se": "variance_se", "exact": "exact_variance"})
    labels = list(dict.fromkeys(gv.problem))
    pal = palette(list(dict.fromkeys(gv.sampling)))
    marks = markers(list(pal))
    fig = figure("full", 4.6)
    grid = fig.add_gridspec(3, len(labels), height_ratios=[2.2, 1.0, 0.62])
    axes = []
    for j, label in enumerate(labels):
        g = gv[gv.problem == label].drop(columns="problem")
        top = fig.add_subplot(grid[0, j])
        bottom = fig.add_subplot(grid[1, j], sharex=top)
        variance_plot(g, ax=top, confidence=confidence, palette=pal, legend=False, note=False,
                      title=label)
        top.set_ylabel(r"$\mathrm{E}\,|g_B - G|^2$")
        top.set_xlabel("")
        top.tick_params(labelbottom=False)
        _relabel(top, r"$\mathrm{tr}\,\Sigma/B$ (the $1/B$ law)")
        ratio_plot(g[g.exact_variance > 0], ax=bottom, confidence=confidence, palette=pal,
                   legend=False)
        bottom.set_ylabel("Monte Carlo / exact")
        log_ticks(bottom.xaxis, subs=(1.0,))
        axes += [top, bottom]
    figure_legend(fig, axes, ncol=4, first=[sampling_label(x) for x in pal],
                  title="Monte Carlo estimates (markers) with "
                  f"{interval_words(confidence)} (bars)")
    table = fig.add_subplot(grid[2, :])
    rows, colors, mk = [], [], []
    for i, f in enumerate(fits.itertuples()):
        same = i and fits.problem.iloc[i - 1] == f.problem
        rows.append(["" if same else f.problem, sampling_label(f.sampling).replace("fixed data, ", ""),
                     f"{f.exponent:.4f}  [{f.ci_low:.4f}, {f.ci_high:.4f}]",
                     f"{f.pvalue:#.2g}, Holm {f.holm_pvalue:#.2g}"])
        colors.append(pal[f.sampling])
        mk.append(marks[f.sampling])
    table_panel(table, ["problem", "sampling", f"exponent $a$ of $\\mathrm{{E}}|g_B - G|^2 "
                        f"\\propto B^a$\n({percent(confidence)} CI)",
                        "p-value of $a = -1$\n(raw, Holm)"],
                rows, colors=colors, marks=mk, color_col=1)
    ns = ", ".join(f"{int(n)}" for n in dict.fromkeys(gv[gv.exact_variance == 0].n))
    caption(fig, (
        "The gradient noise at the start $w_0$ (0; the network's a Glorot draw): Monte Carlo mean of "
        "$|g_B - G|^2$ over random batches "
        "(markers, offset slightly in $B$ per sampling scheme; bars: "
        f"{interval_words(confidence)}, normal approximation) against the exact "
        "$\\mathrm{tr}\\,\\Sigma/B$, times $(N - B)/(N - 1)$ without replacement (dark line, drawn "
        "over the markers; $\\Sigma$ the covariance of the per-example gradients); wide grey "
        "line: $\\mathrm{tr}\\,\\Sigma/B$. Middle: Monte Carlo divided by exact, with its "
        "interval; the theory holds where the bars cross 1. The full batch $B = N$ "
        f"({ns}) without replacement has exactly zero noise and is not drawn. Table: exponent "
        "$a$ fitted by weighted least squares after dividing by the finite-population factor, "
        f"its interval and the p-value of $a = -1$, raw and after Holm's correction across the "
        f"{len(fits)} fits."))
    return fig


def _relabel(ax, reference_label):
    """Rename the reference line of ``variance_plot`` (s^2/B there is tr Sigma / B here)."""
    for line in ax.get_lines():
        if line.get_label().startswith("$s^2/B$"):
            line.set_label(reference_label)
