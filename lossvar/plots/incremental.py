"""Figures of incremental against full-batch descent: excess loss at equal computation,
and the advantage of SGD across redundancy and diversity (the ``sgd_vs_batch`` study).

Each function draws the study's tables and returns the figure.
"""

from __future__ import annotations

import numpy as np

from .draw import band, mc_points
from .style import COLUMN_WIDTH, MONTE_CARLO, REFERENCE, markers, palette, styled, subplots
from .text import caption, percent

__all__ = ["advantage_sweep_figure", "equal_computation_figure"]


@styled
def equal_computation_figure(curves, *, titles, epochs, replicates, confidence):
    """Excess loss against epochs at equal computation, one panel per problem (table
    ``curves`` of the ``sgd_vs_batch`` study: ``problem``, ``method``, ``full_batch``,
    ``epoch``, ``excess_loss``, ``ci_low``, ``ci_high``; ``titles``: ``{problem: panel
    title}``): Monte Carlo methods as mean curves with bands, the deterministic
    full-batch method as a staircase (it updates once per epoch), and GD's excess loss
    divided by each method's after the last epoch, with its interval."""
    problems = list(dict.fromkeys(curves.problem))
    methods = list(dict.fromkeys(curves.method))
    full_batch = set(curves.method[curves.full_batch])  # GD: deterministic, once per epoch
    colors, marks = palette(methods), markers(methods)
    level = percent(confidence)
    bands = (f"{level} confidence bands across {replicates} replicates (normal approximation, "
             "Monte Carlo standard error)")
    fig, axes = subplots(1, len(problems), width="column" if len(problems) == 1 else "full",
                         height=3.3, squeeze=False)
    for ax, problem in zip(axes[0], problems, strict=True):
        _equal_computation_panel(ax, curves[curves.problem == problem], methods, full_batch,
                                 colors, marks, epochs)
        ax.set_title(titles[problem], fontsize=7.5)
    axes[0, 0].set_ylabel(r"excess loss $f(w) - f(\hat w_N)$")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside upper center",
               handlelength=1.6, ncol=1 if len(problems) == 1 else len(methods))
    net = (" Right: the same on a network (a non-convex loss), $\\hat w_N$ a local minimum; no "
           "exact theory there, the curves are empirical." if len(problems) > 1 else "")
    caption(fig, (
        "Left: least squares on exact copies of a base set. SGD "
        "and mini-batch: mean excess loss over the data set's minimizer $\\hat w_N$ (lines, "
        f"recorded four times per epoch) with {bands} (shaded, edges drawn). "
        "GD: exact, one full-gradient step per epoch, so its loss is constant between the "
        "markers. Top right of a panel: GD's excess loss divided by the method's after the last "
        f"epoch, with its {level} interval." + net),
        width=COLUMN_WIDTH if len(problems) == 1 else None)
    return fig


def _equal_computation_panel(ax, curves, methods, full_batch, colors, marks, epochs):
    for m in methods:
        t = curves[curves.method == m].sort_values("epoch")
        if m in full_batch:
            # GD updates once per epoch: its parameters (and loss) stay put in between
            ax.step(t.epoch, t.excess_loss, where="post", color=colors[m], lw=1.1, zorder=3)
            ax.plot(t.epoch, t.excess_loss, ls="none", marker=marks[m], color=colors[m],
                    ms=MONTE_CARLO["ms"], zorder=3)
            ax.plot([], [], marker=marks[m], color=colors[m], lw=1.1, ms=MONTE_CARLO["ms"],
                    label=f"{m}: one update per epoch, deterministic")
            continue
        band(ax, t.epoch, t.excess_loss, t.ci_low, t.ci_high, color=colors[m], label=m,
             alpha=0.35, edges=0.35, zorder=3, positive=True)
    ax.set_yscale("log")
    ax.set_xlabel(r"epochs (examples processed / $N$)")
    ax.set_xticks(range(int(curves.epoch.max()) + 1))
    last = curves[curves.epoch == curves.epoch.max()].set_index("method")
    gd = last.loc[[m for m in methods if m in full_batch][0]]
    lines = [f"after {epochs} epochs, GD / method:"]
    for m in methods:
        if m in full_batch:
            continue
        r = last.loc[m]
        lo = gd.excess_loss / r.ci_high
        hi = gd.excess_loss / r.ci_low if r.ci_low > 0 else np.inf
        lines.append(f"{m.split(' (')[0]}: {gd.excess_loss / r.excess_loss:.3g} [{lo:.3g}, {hi:.3g}]")
    ax.text(0.98, 0.97, "\n".join(lines), transform=ax.transAxes, ha="right", va="top",
            fontsize=6.5, color="0.1", linespacing=1.3)


@styled
def advantage_sweep_figure(sweep, *, method, copies, noise, epochs, replicates, confidence):
    """The advantage of ``method`` (e.g. "SGD (B = 1)") over full-batch descent, GD's excess
    loss divided by the method's, across the redundancy and the diversity sweeps, one row
    per problem (table ``sweep`` of the ``sgd_vs_batch`` study: ``problem``, ``sweep``,
    ``copies``, ``diversity``, ``var_div``, ``advantage``, ``ci_low``, ``ci_high``;
    ``noise``: ``{problem: what the diversity s perturbs}``)."""
    import matplotlib.pyplot as plt

    color, marker = palette([method])[method], markers([method])[method]
    level = percent(confidence)
    problems = list(dict.fromkeys(sweep.problem))
    fig, axes = subplots(len(problems), 2, width="full", height=0.4 + 2.2 * len(problems),
                         sharey="row", squeeze=False)
    for row, problem in zip(axes, problems, strict=True):
        t = sweep[sweep.problem == problem]
        _sweep_row(row, t, color, marker, copies, noise[problem])
        row[0].set_ylabel(f"{problem}\nGD excess / SGD excess", fontsize=7)
    axes[0, 0].set_title(f"After {epochs} epochs the advantage grows with redundancy")
    axes[0, 1].set_title("...and shrinks, without vanishing, with diversity")
    h = [plt.Line2D([], [], ls="none", marker=marker, color=color),
         plt.Line2D([], [], **{k: v for k, v in REFERENCE.items() if k != "zorder"})]
    fig.legend(h, [f"{method} against GD, {replicates} replicates; bars: "
                   f"{level} confidence intervals", "ratio 1: equal excess loss, no advantage"],
               loc="outside upper center", ncol=2)
    net = (" Bottom: the same on a network, each copy's pixels perturbed by independent noise of "
           "standard deviation $s$ (empirical: no exact theory)." if len(problems) > 1 else "")
    caption(fig, (
        f"Advantage: GD's excess loss divided by SGD's (B = 1, mean over {replicates} "
        f"replicates) after {epochs} epochs, at equal examples processed. Bars: "
        f"{level} confidence intervals from SGD's Monte Carlo standard error (normal "
        "approximation; GD is deterministic), mostly shorter than the markers on the log scale; "
        "the first and last values are printed with their intervals. Grey line at 1: equal "
        "excess loss, no advantage. "
        "Left: $r$ exact copies of the base set, so GD's progress per epoch is the same for "
        "every $r$ while SGD makes $r$ times more updates. Right: each copy's targets get "
        "independent noise of standard deviation $s$, so the copies disagree and Var(div), the "
        "variance of the per-example loss at the minimizer (second tick line), grows." + net))
    return fig


def _sweep_row(axes, sweep, color, marker, copies, noise):
    red = sweep[sweep.sweep == "redundancy"]
    div = sweep[sweep.sweep == "diversity"]
    for ax, t, corner, xlabel, ticks in (
            (axes[0], red, (0.03, 0.96, "left", "top"), "copies $r$ of the base set (redundancy)",
             [f"{r}" for r in red.copies]),
            (axes[1], div, (0.97, 0.04, "right", "bottom"),
             f"{noise} $s$ added to each copy ({copies} copies)"
             "\nbelow: Var(div) at $\\hat w_N$",
             [f"{s:g}\n{v:.2g}" for s, v in zip(div.diversity, div.var_div, strict=True)])):
        pos = np.arange(len(t))
        ax.axhline(1.0, **{**REFERENCE, "lw": 2.0})
        mc_points(ax, pos, t.advantage, t.ci_low, t.ci_high, color=color, marker=marker)
        ax.set_xticks(pos)
        ax.set_xticklabels(ticks)
        ax.set_xlabel(xlabel)
        ax.set_yscale("log")
        ax.set_xlim(-0.5, len(t) - 0.5)
        first, final = t.iloc[0], t.iloc[-1]
        ax.text(corner[0], corner[1], f"advantage {first.advantage:.3g} [{first.ci_low:.3g}, "
                f"{first.ci_high:.3g}]\n\u2192 {final.advantage:.3g} [{final.ci_low:.3g}, "
                f"{final.ci_high:.3g}]", transform=ax.transAxes, ha=corner[2], va=corner[3],
                fontsize=7, color="0.1", linespacing=1.3)
    lo = min(axes[0].get_ylim()[0], 0.6)
    axes[0].set_ylim(lo, axes[0].get_ylim()[1])
