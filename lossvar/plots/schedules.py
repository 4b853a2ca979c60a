"""The figure of the step-size schedules: E(w_k - w*)^2 against k beside the exact
recursion, the Polyak-Ruppert average, and the Robbins-Monro verdicts (the
``robbins_monro`` study).
"""

from __future__ import annotations

import math

import numpy as np

from .. import theory
from .draw import band, mc_points
from .style import EXACT, FULL_WIDTH, REFERENCE, figure, markers, palette, styled
from .text import caption, interval_text, minus, percent, table_panel, verdict_word

__all__ = ["network_schedules_figure", "schedules_figure"]


def _three(x):
    """Three decimals with a true minus sign and no negative zero."""
    s = f"{x:.3f}"
    return "0.000" if float(s) == 0 else s.replace("-", "\u2212")


@styled
def schedules_figure(curves, exact, rows, verdicts, *, short, averaged, mu, noise_std, w0, c_scale,
                     replicates, steps, confidence):
    """Panels of E(w_k - w*)^2 (decaying steps; the others) and of the Polyak-Ruppert
    average, Monte Carlo markers under the exact recursion, and a table of the
    Robbins-Monro verdicts, the fitted exponents and the agreement verdicts.

    The tables of the ``robbins_monro`` study: ``curves`` (Monte Carlo per schedule,
    metric and step), ``exact`` (the exact curves), ``rows`` (the schedules table:
    ``schedule``, ``p``, ``rm_satisfied``, the exponents), ``verdicts`` (the agreement
    table); ``short``: ``{schedule: its name in mathtext}``; ``averaged``: the schedules
    whose Polyak-Ruppert average is drawn; ``c_scale``: the c of c/k^p.
    """
    import matplotlib.pyplot as plt
    from matplotlib.transforms import ScaledTranslation

    sigma2 = noise_std**2
    table = curves[(curves.iterate == "iterate") & (curves.step > 0)]
    labels = list(dict.fromkeys(table.schedule))
    powers = rows.set_index("schedule").p
    decaying = [lab for lab in labels if 0.0 < powers[lab] <= 1.0]
    others = [lab for lab in labels if lab not in decaying]
    order = decaying + others
    colors, marks = palette(order), markers(order)
    avg = curves[(curves.iterate == "average") & (curves.step > 0)]
    pick = [lab for lab in labels if lab in averaged]
    level = percent(confidence)

    def panel(ax, data, group, exact_col, skip):
        for lab in group:
            t = data[data.schedule == lab].sort_values("step")
            e = exact[exact.schedule == lab]
            ax.plot(e.step, e[exact_col], **EXACT)
            t = t.iloc[skip::2]  # every other recorded step: 5 markers a decade
            mc_points(ax, t.step, t["mean"], t.ci_low, t.ci_high, color=colors[lab],
                      marker=marks[lab], ms=3.2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"step $k$")

    n_rows = len(labels)
    table_h = (n_rows + 2.4) * 1.3 * 7 / 72
    fig = plt.figure(figsize=(FULL_WIDTH, 2.3 + 2.3 + 0.5), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=[2.3, max(2.3, table_h)])
    a, b = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    c, tab = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
    for ax, group, skip in ((a, decaying, 0), (b, others, 1)):
        panel(ax, table, group, "exact", skip)
        ax.set_ylabel(r"$\mathbb{E}\,(w_k - w^*)^2$")
    a.set_title(r"Decaying steps, $\sum \eta_k = \infty$: $\mathbb{E}\,(w_k - w^*)^2 \to 0$")
    b.set_title(r"Constant step plateaus; $\sum \eta_k < \infty$ stalls")
    panel(c, avg, pick, "exact_avg", 0)
    k = np.geomspace(1, steps, 50)
    limit = theory.polyak_ruppert_limit(mu, sigma2)
    c.plot(k, limit / k, **REFERENCE)
    c.set_ylabel(r"$\mathbb{E}\,(\bar w_k - w^*)^2$")
    c.set_title(r"Polyak-Ruppert average $\bar w_k$ reaches $\sigma^2/(\mu^2 k)$" "\n"
                r"(not $c/k$ with $2c\mu < 1$)", fontsize=8)
    for ax in (a, b, c):
        ax.grid(True, which="major", axis="y")
    # the table: the schedules (coloured, with their markers: the legend) and the headline
    if rows is not None:
        by = rows.set_index("schedule")
        cells, cols, mks = [], [], []
        for lab in order:
            r = by.loc[lab]
            met = str(r.rm_satisfied).lower() in ("true", "1")
            interval = interval_text(r.fitted_ci_low, r.fitted_ci_high, replicates,
                                     ".3f").replace("-", "\u2212")
            fit = f"{_three(r.fitted_exponent)} {interval}"
            cells.append([short[lab], "yes" if met else "no", f"{r.theory_exponent:.3g}",
                          _three(r.exact_local_exponent), fit])
            cols.append(colors[lab])
            mks.append(marks[lab])
        header = ["schedule $\\eta_k$", "Robbins-\nMonro", "$a$,\ntheory", "$a$, exact,\nsame $k$",
                  f"$a$ fitted, last decade\n({level} CI)"]
        table_panel(tab, header, cells, colors=cols, marks=mks, color_col=0, pad=0.11,
                    fontsize=6.5)
        for text in tab.texts:  # colour and marker name the schedule; bold mathtext is uneven
            text.set_fontweight("normal")
    else:
        tab.set_axis_off()
    if verdicts is not None:
        words = {"E(w_k - w*)^2": "iterates", "E(w_bar_k - w*)^2": "averages"}
        lines = []
        for v in verdicts.itertuples():
            word = {"agrees": "agree", "DISAGREES": "DISAGREE"}.get(verdict_word(v))
            lines.append(f"{words.get(v.metric, v.metric)}: " + (
                "no verdict (no step tested)" if word is None else
                f"{word} (p = {v.pvalue:#.2g}, Holm {v.holm_pvalue:#.2g}; {v.misses} of "
                f"{v.intervals} intervals miss, {v.expected_misses:.3g} expected)"))
        below = (n_rows + 2 + 0.9) * 1.3 * 6.5 / 72  # under the table's header and rows
        tab.text(0, 1, "Monte Carlo against the exact recursion, every recorded step:\n"
                 + "\n".join(lines), fontsize=6.5, va="top", ha="left", color="0.05",
                 linespacing=1.3, transform=tab.transAxes + ScaledTranslation(
                     0, -below, fig.dpi_scale_trans))
    handles = {f"Monte Carlo, {replicates} runs; bars: {level} confidence intervals":
               plt.Line2D([], [], ls="none", marker="o", mfc="0.35", mec="0.35", ms=3.2),
               "exact recursion (docs/theory.md, section 6)": plt.Line2D([], [], **EXACT),
               r"$\sigma^2/(\mu^2 k)$, the Polyak-Ruppert limit":
               plt.Line2D([], [], **{k: v for k, v in REFERENCE.items() if k != "zorder"})}
    fig.legend(handles.values(), handles.keys(), loc="outside upper center", ncol=3,
               columnspacing=1.4, handlelength=2.2)
    caption(fig, (
        f"1-D quadratic $f(w) = \\mu (w - w^*)^2/2$, $\\mu = {mu:g}$, gradient noise $\\sigma = "
        f"{math.sqrt(sigma2):g}$, start $w_1 - w^* = {w0:g}$, $c = {c_scale:g}$. Markers: Monte "
        f"Carlo means over {replicates} runs at every other recorded step, one colour and "
        f"marker per schedule in every panel (table); bars: {level} confidence intervals (normal "
        "approximation, Monte Carlo standard error), on the log scale mostly shorter than the "
        "markers. Dark lines: the exact recursion, drawn over the markers. Table: whether the "
        "schedule meets the Robbins-Monro conditions $\\sum \\eta_k = \\infty$, $\\sum \\eta_k^2 "
        "< \\infty$ (sufficient, not necessary: $p \\leq 1/2$ fails them and still converges); "
        "the exponent $a$ of $\\mathbb{E}\\,(w_k - w^*)^2 \\propto k^{-a}$: asymptotic theory, the "
        "exact curve's local slope over the fitted steps, and the Monte Carlo fit over the last "
        f"decade with its {level} bootstrap interval. Verdicts: exact noncentral chi-square "
        "p-values per step, combined by Holm's test, at level "
        f"{1 - confidence:.2g} for the study."))
    return fig


@styled
def network_schedules_figure(curves, comparisons, *, label, described, batch_size, replicates,
                             confidence):
    """Step-size schedules on a network: the training loss of the iterate and of its
    Polyak-Ruppert average against the step, mean across runs with bands (table
    ``network_curves`` of the ``robbins_monro`` study: ``schedule``, ``step``, ``loss``,
    ``avg_loss`` and their ``*_ci_low``, ``*_ci_high``, ``robbins_monro``), and the paired
    comparisons with their verdicts (``network_comparisons``); ``described``: a sentence
    defining the schedules. Nothing here has exact theory."""
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(curves.schedule))
    colors, marks = palette(names), markers(names)
    level = percent(confidence)
    table_height = (len(comparisons) + 2.6) * 1.25 * 6.5 / 72
    fig = figure("full", 2.5 + table_height)
    grid = fig.add_gridspec(2, 2, height_ratios=[2.3, table_height])
    axes = [fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])]
    axes[1].sharey(axes[0])
    for ax, col, title in ((axes[0], "loss", "last iterate $w_k$"),
                           (axes[1], "avg_loss", r"Polyak-Ruppert average $\bar w_k$")):
        for name in names:
            c = curves[(curves.schedule == name) & (curves.step > 0)].sort_values("step")
            band(ax, c.step, c[col], c[f"{col}_ci_low"], c[f"{col}_ci_high"], color=colors[name],
                 label=name, positive=True)
            ax.plot(c.step.iloc[-1], c[col].iloc[-1], marks[name], color=colors[name], ms=3.5,
                    zorder=4)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("step $k$")
        ax.set_title(f"Training loss of the {title}")
    axes[0].set_ylabel("training loss $L$")
    rm = dict(zip(curves.schedule, curves.robbins_monro, strict=False))
    rows, row_colors, row_marks = [], [], []
    for r in comparisons.itertuples():
        name = r.baseline if r.metric == "Polyak-Ruppert" else r.method
        what = "average vs last iterate" if r.metric == "Polyak-Ruppert" else f"vs {r.baseline}"
        rows.append([name, "yes" if rm.get(name) else "no", what,
                     f"{r.value:.4g} ({r.baseline_value:.4g})",
                     minus(f"{r.difference:.3g}  [{r.ci_low:.3g}, {r.ci_high:.3g}]"),
                     f"{r.holm_pvalue:#.2g}", r.verdict.split(" than ")[0]])
        row_colors.append(colors.get(name, "0.1"))
        row_marks.append(marks.get(name, "o"))
    tab = fig.add_subplot(grid[1, :])
    table_panel(tab, ["schedule", "Robbins-\nMonro", "at the last step", "mean (other's)",
                      f"paired difference\n({level} CI)", "p-value\n(Holm)", "verdict"],
                rows, colors=row_colors, marks=row_marks, color_col=0, fontsize=6.5, pad=0.12)
    handles = [plt.Line2D([], [], color=colors[n], marker=marks[n], ms=3.5) for n in names]
    fig.legend(handles, names, loc="outside upper center", ncol=len(names),
               title=f"{label}, batches of {batch_size}, {replicates} runs per schedule: mean (lines) "
               f"with {level} confidence bands\nempirical: no exact theory on a network")
    caption(fig, (
        f"{described} Training loss over all examples (mean cross-entropy plus the ridge) at about "
        "ten steps a "
        f"decade, mean across runs with {level} confidence bands (Student t across the runs). Every "
        "schedule "
        "starts at the same step and the runs of all schedules see the same batches, so the "
        "table compares them run by run: a paired Student t interval of the difference and a "
        "verdict after Holm's correction across the comparisons, at level "
        f"{1 - confidence:.2g}. Robbins-Monro: the exact verdict on the schedule "
        "(sum of steps infinite, sum of squares finite); on a non-convex loss it is not a "
        "guarantee, and the curves say what happens."))
    return fig

