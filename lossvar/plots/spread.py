"""The figure of the spread of the empirical-risk minimizer around the expected-risk
minimizer, against N and against Var(div) (the ``erm_spread`` study).
"""

from __future__ import annotations

import numpy as np

from .. import theory
from .draw import mc_points
from .style import EXACT, FULL_WIDTH, markers, palette, styled
from .text import caption, interval_words, percent, table_panel, verdict_phrase

__all__ = ["erm_spread_figure"]


@styled
def erm_spread_figure(spread, fits, verdicts, *, dim, replicates, confidence, verdict_replicates):
    """E||w_N - w*||^2 against N (one colour per sigma) with Monte Carlo / exact below it,
    the same against Var(div) (an exact line per N), and a table of the fitted exponents
    and the verdict: the ``erm_spread`` study's tables ``spread``, ``fit`` and ``agreement``
    (None: no table, no verdict), for least squares with ``dim`` features; the verdict
    needs ``verdict_replicates`` data sets a cell."""
    import matplotlib.pyplot as plt
    from matplotlib.transforms import ScaledTranslation

    d = dim
    sigmas = list(dict.fromkeys(spread.noise_std))
    names = [f"sigma={s:g}" for s in sigmas]
    colors = dict(zip(sigmas, palette(names).values(), strict=True))
    marks = dict(zip(sigmas, markers(names).values(), strict=True))
    level = percent(confidence)
    spread = spread.sort_values(["noise_std", "n"])
    sizes = sorted(spread.n.unique())
    ylabel = r"$\mathbb{E}\,\|w_N - w^*\|^2$"
    dodge = dict(zip(sigmas, 10 ** ((np.arange(len(sigmas)) - (len(sigmas) - 1) / 2) * 0.03),
                     strict=True))
    rows = [] if fits is None else list(fits.itertuples())
    table_h = (len(rows) + 2.4) * 1.3 * 7 / 72 + (0.45 if verdicts is not None else 0)
    fig = plt.figure(figsize=(FULL_WIDTH, 3.7 + table_h), layout="constrained")
    grid = fig.add_gridspec(3, 2, height_ratios=[2.5, 1.2, table_h])
    ax = fig.add_subplot(grid[0, 0])
    rax = fig.add_subplot(grid[1, 0], sharex=ax)
    vax = fig.add_subplot(grid[0:2, 1])
    n_dense = np.geomspace(min(sizes), max(sizes), 200)
    for s in sigmas:
        t = spread[spread.noise_std == s]
        ax.plot(n_dense, theory.erm_spread(s**2, d, n_dense), **EXACT)
        mc_points(ax, t.n * dodge[s], t.spread, t.ci_low, t.ci_high, color=colors[s],
                  marker=marks[s], label=rf"$\sigma = {s:g}$")
        mc_points(rax, t.n * dodge[s], t.spread / t.exact, t.ci_low / t.exact,
                  t.ci_high / t.exact, color=colors[s], marker=marks[s])
    rax.axhline(1.0, **EXACT)
    for a in (ax, rax):
        a.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.tick_params(labelbottom=False)
    ax.set_title(r"The spread falls like $1/N$: exact $\sigma^2 d\,/\,(N - d - 1)$")
    lo, hi = rax.get_ylim()
    half = max(1 - lo, hi - 1)
    rax.set_ylim(1 - half, 1 + half)
    rax.set_ylabel("Monte Carlo / exact")
    rax.set_xlabel(r"data set size $N$")
    # against Var(div): the markers of each sigma, an exact line per N, labelled at its end
    v = spread.var_div.to_numpy(float)
    v_dense = np.geomspace(v.min(), v.max(), 200)
    for n in sizes:
        # Var(div) = sigma^4 / 2 for the squared error of Gaussian noise: sigma^2 = sqrt(2 Var(div))
        per_unit = theory.erm_spread(1.0, d, n)  # linear in sigma^2
        vax.plot(v_dense, np.sqrt(2 * v_dense) * per_unit, **EXACT)
        vax.text(v.max() * 1.45, np.sqrt(2 * v.max()) * per_unit, f"$N = {n}$",
                 fontsize=6.5, va="center", ha="left", color="0.15")
    for s in sigmas:
        t = spread[spread.noise_std == s]
        mc_points(vax, t.var_div, t.spread, t.ci_low, t.ci_high, color=colors[s],
                  marker=marks[s])
    vax.set_xscale("log")
    vax.set_yscale("log")
    vax.set_xlim(v.min() / 1.6, v.max() * 4.5)
    vax.set_xlabel(r"$\mathrm{Var}(\mathrm{div})$, variance of the per-sample loss at $w^*$")
    vax.set_ylabel(ylabel)
    vax.set_title(r"Larger loss variance, larger spread: $\sigma^2 = \sqrt{2\,\mathrm{Var}"
                  r"(\mathrm{div})}$")
    handles = {}
    for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
        handles[lab] = h
    handles["exact theory"] = plt.Line2D([], [], **EXACT)
    fig.legend(handles.values(), handles.keys(), loc="outside upper center",
               ncol=len(handles), columnspacing=1.6,
               title=f"Monte Carlo means of {replicates} fresh data sets per cell "
               f"(markers) with {level} confidence intervals (bars)")
    tab = fig.add_subplot(grid[2, :])
    cells = [[rf"$\sigma = {f.noise_std:g}$", f"{f.var_div:.4g}",
              f"{f.exponent:.4f}  [{f.ci_low:.4f}, {f.ci_high:.4f}]".replace("-", "\u2212"),
              f"{f.pvalue:#.2g}, Holm {f.holm_pvalue:#.2g}"] for f in rows]
    header = ["noise", r"$\mathrm{Var}(\mathrm{div})$",
              f"exponent $a$ of $\\mathbb{{E}}\\,\\|w_N - w^*\\|^2 \\propto (N - d - 1)^a$\n"
              f"({level} CI)", "p-value of $a = -1$\n(raw, Holm)"]
    if rows:
        table_panel(tab, header, cells, colors=[colors[f.noise_std] for f in rows],
                    marks=[marks[f.noise_std] for f in rows], color_col=0, x0=0.1)
        for text in tab.texts:
            text.set_fontweight("normal")
    else:
        tab.set_axis_off()
    if verdicts is not None:
        v0 = verdicts.iloc[0]
        below = (len(rows) + 2 + 0.9) * 1.3 * 7 / 72
        verdict = verdict_phrase(v0, f"p = {v0.pvalue:#.2g}; {v0.misses} of "
                                 f"{v0.intervals} intervals miss the exact value, "
                                 f"{v0.expected_misses:.2g} expected",
                                 f"fewer than {verdict_replicates} data sets a cell")
        tab.text(0, 1, f"Monte Carlo against exact theory, every ($\\sigma$, $N$): {verdict}",
                 fontsize=7, va="top", ha="left", color="0.05",
                 transform=tab.transAxes + ScaledTranslation(0.1, -below, fig.dpi_scale_trans))
    caption(fig, (
        f"Least squares on a Gaussian linear model, $d = {d}$ features, noise $\\sigma$; per "
        f"($\\sigma$, $N$) {replicates} fresh data sets of $N$ examples. Markers: Monte Carlo "
        f"means of $\\|w_N - w^*\\|^2$ (left offset slightly in $N$ so the noise levels do not "
        f"hide one another); bars: {interval_words(confidence)} (normal approximation, "
        "Monte Carlo standard error), on the log scale shorter than the markers, the lower left "
        "panel shows them. Dark lines: exact theory $\\sigma^2 d/(N - d - 1)$ (an inverse-Wishart "
        "mean), drawn over the markers; right, one per $N$, against $\\mathrm{Var}(\\mathrm{div}) = "
        "\\sigma^4/2$. Table: exponent fitted by weighted least squares on log-log, its interval "
        f"and the p-value of $a = -1$, raw and after Holm's correction across the {len(rows)} "
        "noise levels; verdict: sum of squared z against chi-square, at level "
        f"{1 - confidence:.2g} for the study."))
    return fig
