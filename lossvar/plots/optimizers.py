"""Figures of the optimizers: trajectories over the loss contours, convergence with
bands, and the steady-state volatility of the updates (the ``trend_optimizers`` study).

Each function draws the study's tables and returns the figure.
"""

from __future__ import annotations

import numpy as np

from .draw import band, mc_points
from .style import EXACT, figure, markers, palette, styled, subplots
from .text import caption, interval_words, minus, percent, table_panel, verdict_word

__all__ = ["network_optimizers_figure", "optimizer_convergence_figure", "trajectories_figure",
           "update_variance_figure"]


@styled
def trajectories_figure(paths, *, curvature, start, steps, noise_std):
    """One small panel per optimizer: the path of one run (table ``paths``: ``optimizer``,
    ``step``, ``w0``, ``w1``) over the contours of ``f(w) = sum_i curvature_i w_i^2 / 2``,
    from ``start``, after ``steps`` steps with gradient noise ``noise_std``."""
    import matplotlib.pyplot as plt

    h = np.asarray(curvature, float)
    names = list(dict.fromkeys(paths.optimizer))
    colors, marks = palette(names), markers(names)

    # small multiples on equal axes, start and end marked
    pad = 0.3
    x_lo, x_hi = min(paths.w0.min(), 0) - pad, max(paths.w0.max(), 0) + pad
    y_lo, y_hi = min(paths.w1.min(), 0) - pad, max(paths.w1.max(), 0) + pad
    W0, W1 = np.meshgrid(np.linspace(x_lo, x_hi, 300), np.linspace(y_lo, y_hi, 200))
    loss = 0.5 * (h[0] * W0**2 + h[1] * W1**2)
    f0 = 0.5 * (h[0] * start[0]**2 + h[1] * start[1]**2)
    contour_levels = f0 * np.geomspace(1e-3, 1, 7)
    fig, axes = subplots(2, 3, width="full", height=3.6, sharex=True, sharey=True)
    for ax, name in zip(axes.flat, names, strict=False):
        t = paths[paths.optimizer == name].sort_values("step")
        ax.contour(W0, W1, loss, levels=contour_levels, colors="0.82", linewidths=0.5,
                   zorder=1)
        ax.plot(t.w0, t.w1, "-", color=colors[name], lw=0.6, zorder=2)
        ax.plot(t.w0.iloc[0], t.w1.iloc[0], "o", mfc="white", mec="0.1", ms=4, mew=0.8,
                zorder=4)
        ax.plot(t.w0.iloc[-1], t.w1.iloc[-1], marks[name], color=colors[name], mec="0.1",
                ms=5, mew=0.6, zorder=5)
        ax.plot(0, 0, "*", color=EXACT["color"], ms=6, zorder=4)
        ax.set_aspect("equal")
        ax.set_title(name, color=colors[name], fontsize=8)
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(y_lo, y_hi)
    for ax in axes[-1]:
        ax.set_xlabel(r"$w_0$ (flat, $h = 1$)")
    for ax in axes[:, 0]:
        ax.set_ylabel(rf"$w_1$ (steep, $h = {h[1]:g}$)")
    key = axes.flat[-1]
    key.set_axis_off()
    handles = [plt.Line2D([], [], marker="o", ls="none", mfc="white", mec="0.1", ms=4),
               plt.Line2D([], [], marker="o", ls="none", color="0.5", mec="0.1", ms=5),
               plt.Line2D([], [], marker="*", ls="none", color=EXACT["color"], ms=6),
               plt.Line2D([], [], color="0.82", lw=0.5)]
    key.legend(handles, [f"start $w = ({start[0]:g}, {start[1]:g})$",
                         f"after {steps} steps (marker of the optimizer)",
                         r"minimum $w^*$", r"level sets of $f$, each $10^{-1/2}\times$ the last"],
               loc="center left", borderaxespad=0, handlelength=1.4)
    fig.suptitle(rf"One run per optimizer, every step, the same gradient noise: "
                 rf"$f(w) = (w_0^2 + {h[1]:g}\,w_1^2)/2$, noise sd ${noise_std:g}$",
                 fontsize=8)
    caption(fig, (
        f"Each panel: the parameters of one run over its {steps} steps (all optimizers "
        "driven by the same noise sequence), on equal axes so the contours keep their shape. "
        "SGD's step 1.75/25 makes it bounce across the steep direction; the averaging of "
        "momentum and Nesterov makes wide loops; RMSProp and Adam scale each coordinate by its "
        "root mean squared gradient and move straight at first. Near the minimum every path "
        "ends in a cloud of the noise's size: the steady state measured in the update-variance "
        "figure."))
    return fig



@styled
def optimizer_convergence_figure(curves, *, curvature, replicates, confidence, data=None,
                                 batch_size=None, real_replicates=None):
    """The excess risk on the quadratic against the step and (``data``: its name) the
    excess training loss on a real set against epochs, mean across runs with bands (table
    ``curves``: ``problem``, ``optimizer``, ``step``, ``epoch``, ``excess_loss``,
    ``ci_low``, ``ci_high``)."""
    h = np.asarray(curvature, float)
    names = list(dict.fromkeys(curves.optimizer))
    colors, marks = palette(names), markers(names)
    level = percent(confidence)

    # bands drawn with their edges, level stated
    real = data is not None
    fig, axes = subplots(1, 2 if real else 1, width="full" if real else "column",
                         height=2.7, squeeze=False)
    panels = [(axes[0, 0], curves[(curves.problem == "quadratic") & (curves.step > 0)], "step",
               True, r"step $t$", r"excess risk $f(w_t) - f(w^*)$",
               f"Noisy quadratic, condition number {h[1]:g}: {replicates} runs")]
    if real:
        panels.append((axes[0, 1], curves[curves.problem == data], "epoch", False,
                       "epoch", r"excess training loss $L(w) - L(\hat w)$",
                       f"{data}, mini-batch {batch_size}, reshuffled: "
                       f"{real_replicates} runs"))
    for ax, t, x, logx, xlabel, ylabel, title in panels:
        for name in names:
            c = t[t.optimizer == name].sort_values(x)
            band(ax, c[x], c.excess_loss, c.ci_low, c.ci_high, color=colors[name], label=name,
                 positive=True)
            if not logx:
                ax.plot(c[x].iloc[-1], c.excess_loss.iloc[-1], marks[name],
                        color=colors[name], ms=3.5, zorder=4)
        ax.set_yscale("log")
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside upper center",
               ncol=len(names), title=f"mean across runs (lines) with {level} confidence "
               "bands (shaded, edges drawn; normal approximation)")
    caption(fig, (
        "Left: the expected excess risk on the noisy quadratic (population loss, exact for "
        "the mean over the noise). Right" + (
            f": the training loss $L$ on {data} (mean softmax cross-entropy over all "
            "examples plus the ridge $(\\lambda/2)\\|w\\|^2$, $\\lambda = 0.01$) minus its "
            "minimum $L(\\hat w)$, at each quarter epoch." if real else ": none.")
        + " Where a band is narrower than its line it is hidden by it."))
    return fig



@styled
def update_variance_figure(updates, verdicts, *, steps, replicates, confidence):
    """The steady-state mean squared update per optimizer and coordinate, with the exact
    values where there are some (SGD's) and, beside them, Monte Carlo / exact with the
    verdict (tables ``update_variance`` and ``agreement``)."""
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(updates.optimizer))
    colors = palette(names)
    level = percent(confidence)

    # SGD's exact values drawn over its markers
    coords = list(dict.fromkeys(updates.coordinate))
    coord_marks = dict(zip(coords, ["o", "^"], strict=False))
    sgd = updates[np.isfinite(updates.exact)]
    fig = figure("full", 2.7)
    grid = fig.add_gridspec(1, 2, width_ratios=[3.2, 1])
    ax, rax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    width = 0.22
    for j, coord in enumerate(coords):
        for i, name in enumerate(names):
            r = updates[(updates.optimizer == name) & (updates.coordinate == coord)]
            if r.empty:
                continue
            xpos = i + (j - (len(coords) - 1) / 2) * width
            mc_points(ax, [xpos], r.mean_sq_update, r.ci_low, r.ci_high,
                      color=colors[name], marker=coord_marks[coord])
            if np.isfinite(r.exact.iloc[0]):
                ax.plot([xpos - 0.09, xpos + 0.09], [r.exact.iloc[0]] * 2, **EXACT)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    for tick, name in zip(ax.get_xticklabels(), names, strict=True):
        tick.set_color(colors[name])
    ax.set_ylabel(r"$\mathbb{E}\,(w_t - w_{t-1})^2$, steady state")
    ax.set_title(f"Volatility of the updates, last {steps - steps // 2} of "
                 f"{steps} steps, {replicates} runs")
    for i, coord in enumerate(sgd.coordinate):
        r = sgd[sgd.coordinate == coord]
        e = r.exact.to_numpy(float)
        mc_points(rax, [i], r.mean_sq_update / e, r.ci_low / e, r.ci_high / e,
                  color=colors[names[0]], marker=coord_marks[coord])
    rax.axhline(1.0, **EXACT)
    lo, hi = rax.get_ylim()
    half = max(1 - lo, hi - 1)
    rax.set_ylim(1 - half * 1.1, 1 + half * 1.6)
    rax.set_xlim(-0.6, len(sgd) - 0.4)
    rax.set_xticks(range(len(sgd)))
    rax.set_xticklabels([c.split(" (")[0] for c in sgd.coordinate])
    rax.set_ylabel("Monte Carlo / exact")
    rax.set_title(f"{names[0]}: against exact theory")
    if verdicts is not None and len(verdicts):
        v = verdicts.iloc[0]
        word = verdict_word(v)
        rax.text(0.5, 0.97, "no verdict:\nno row tested" if word == "no verdict" else
                 f"{word} (p = {v.pvalue:#.2g})\n{v.misses} of {v.intervals} intervals miss",
                 transform=rax.transAxes,
                 ha="center", va="top", fontsize=6.5, color="0.1")
    handles = {coord: plt.Line2D([], [], ls="none", marker=coord_marks[coord], color="0.4")
               for coord in coords}
    handles[f"exact ({names[0]})"] = plt.Line2D([], [], **EXACT)
    fig.legend(handles.values(), handles.keys(), loc="outside upper center", ncol=len(handles),
               title=f"coordinate (marker); Monte Carlo means with {level} confidence "
               "intervals (bars)")
    caption(fig, (
        "Mean squared update per coordinate in the steady state, averaged over the steps and then "
        f"across runs; bars: {interval_words(confidence)} (normal approximation, "
        "Monte Carlo standard error), on the log scale mostly shorter than the markers. Dark "
        "dashes: SGD's exact value $\\eta^2 (h^2 v^* + \\sigma^2)$, $v^*$ the constant-step "
        "variance floor. Right: SGD's Monte Carlo divided by the exact value; verdict: a Student t "
        "test per coordinate combined by Holm's test, at level "
        f"{1 - confidence:.2g} for the study."))
    return fig



@styled
def network_optimizers_figure(curves, updates, comparisons, *, label, batch_size, replicates,
                              tail, confidence):
    """The optimizers on a network: the training loss against epochs with bands (table
    ``network_curves``), the mean squared update per parameter at the end of training
    (``network_updates``) and each optimizer against SGD with its verdict
    (``network_comparisons``). Nothing here has exact theory."""
    names = list(dict.fromkeys(curves.optimizer))
    colors, marks = palette(names), markers(names)
    level = percent(confidence)
    table_height = (len(comparisons) + 2.6) * 1.3 * 7 / 72
    fig = figure("full", 2.6 + table_height)
    grid = fig.add_gridspec(2, 2, height_ratios=[2.4, table_height], width_ratios=[1.5, 1])
    ax, uax, tab = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, :])
    for name in names:
        c = curves[curves.optimizer == name].sort_values("epoch")
        band(ax, c.epoch, c.loss, c.loss_ci_low, c.loss_ci_high, color=colors[name], label=name,
             positive=True)
        ax.plot(c.epoch.iloc[-1], c.loss.iloc[-1], marks[name], color=colors[name], ms=3.5, zorder=4)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(r"training loss $L(w)$")
    ax.set_title(f"Training loss: {replicates} runs, mini-batch {batch_size}, reshuffled")
    for i, name in enumerate(names):
        r = updates[updates.optimizer == name]
        mc_points(uax, [i], r.mean_sq_update, r.ci_low, r.ci_high, color=colors[name],
                  marker=marks[name])
    uax.set_yscale("log")
    uax.set_xticks(range(len(names)))
    uax.set_xticklabels(names, rotation=30, ha="right", rotation_mode="anchor")
    for tick, name in zip(uax.get_xticklabels(), names, strict=True):
        tick.set_color(colors[name])
    uax.set_ylabel(r"$\|w_t - w_{t-1}\|^2 / p$")
    uax.set_title(f"Mean squared update, last {tail}")
    rows, row_colors, row_marks = [], [], []
    for r in comparisons.itertuples():
        rows.append([r.metric, r.method, f"{r.value:.4g} ({r.baseline_value:.4g})",
                     minus(f"{r.difference:.3g}  [{r.ci_low:.3g}, {r.ci_high:.3g}]"),
                     f"{r.holm_pvalue:#.2g}", r.verdict])
        row_colors.append(colors.get(r.method, "0.1"))
        row_marks.append(marks.get(r.method, "o"))
    base = comparisons.baseline.iloc[0] if len(comparisons) else "SGD"
    table_panel(tab, ["comparison", "optimizer", f"mean ({base}'s)",
                      f"paired difference\n({level} CI)", "p-value\n(Holm)", "verdict"],
                rows, colors=row_colors, marks=row_marks, color_col=1, x0=0.0, pad=0.14)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside upper center", ncol=len(names),
               title=f"{label}: mean across runs (lines) with {level} confidence bands (shaded; "
               "Student t across the runs); empirical, no exact theory on a network")
    caption(fig, (
        f"Left: the training loss $L$ over all {label.split('(')[-1].rstrip(')')} examples (mean "
        "cross-entropy plus the ridge) at each half epoch. Right: the mean over the last "
        f"{tail} updates of $\\|w_t - w_{{t-1}}\\|^2$ per parameter, then across runs, with "
        f"{interval_words(confidence)}. Table: each optimizer against {base}, run by run (every "
        "run starts from the same point and sees the same batches): the paired difference with "
        "its Student t interval, and the verdict after Holm's correction across the "
        f"{len(comparisons)} comparisons, at level {1 - confidence:.2g}."))
    return fig

