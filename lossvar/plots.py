"""Figures. Each function takes a tidy table and an optional Axes, returns the Axes.

Functions never show or save: the caller decides where a figure goes
(seaborn's habit). Statistics are computed elsewhere; these only draw.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_SAMPLING_LABELS = {
    "without_replacement": "fixed data, without replacement",
    "with_replacement": "fixed data, with replacement",
    "fresh": "fresh data each batch",
}


def variance_plot(table: pd.DataFrame, ax=None, *, title: str | None = None):
    """Log-log plot of the variance of the batch-mean loss against the batch size.

    Draws, for each sampling regime in ``table`` (a ``VarianceResult.table``,
    or several concatenated): the Monte Carlo variances with their interval
    bars, the exact curve of docs/theory.md, section 1 (with the finite-population
    factor where it applies), and a dotted ``s^2 / B`` reference through the
    single-sample variance. Rows with exact variance 0 (the full batch of a
    fixed data set) cannot sit on a log axis: they are listed in a note.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.6))
    palette = sns.color_palette("colorblind")
    zero_rows = []
    for i, (sampling, t) in enumerate(table.groupby("sampling", sort=False)):
        color = palette[i % len(palette)]
        label = _SAMPLING_LABELS.get(sampling, sampling)
        t = t.sort_values("batch_size")
        zero_rows += [f"B={b}" for b in t.batch_size[t.exact_variance == 0]]
        pos = t[t.variance > 0]
        yerr = np.vstack([pos.variance - pos.ci_low, pos.ci_high - pos.variance])
        ax.errorbar(pos.batch_size, pos.variance, yerr=yerr, fmt="o", color=color, capsize=3,
                    markersize=5, label=f"Monte Carlo, {label}")
        _exact_curve(ax, t, color, label)
    _reference(ax, table)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size B")
    ax.set_ylabel("Var(mean loss of the batch)")
    level = table["interval"].iloc[0] if "interval" in table else "interval"
    ax.set_title(title or "Variance of the loss estimator against batch size", fontsize=10)
    note = f"bars: {level} intervals"
    if zero_rows:
        note += f"; full batch ({', '.join(sorted(set(zero_rows)))}) has variance exactly 0"
    ax.text(0.01, 0.01, note, transform=ax.transAxes, fontsize=7, va="bottom", color="0.3")
    ax.legend(fontsize=8, frameon=False)
    return ax


def _exact_curve(ax, t, color, label):
    ok = t[(t.exact_variance > 0) & np.isfinite(t.exact_variance)]
    if ok.empty:
        return
    first = ok.iloc[0]
    s2 = first.exact_variance * first.batch_size / first.fpc
    lo = t.batch_size.min()
    hi = ok.batch_size.max()
    b = np.geomspace(lo, hi, 200)
    n = first.n
    if t.sampling.iloc[0] == "without_replacement":
        exact = s2 / b * (n - b) / (n - 1)
    else:
        exact = s2 / b
    ax.plot(b, exact, "-", color=color, lw=1.2, alpha=0.8, label=f"exact, {label}")


def _reference(ax, table):
    ok = table[(table.exact_variance > 0) & np.isfinite(table.exact_variance)]
    if ok.empty:
        ok = table[table.variance > 0]
        if ok.empty:
            return
        row = ok.sort_values("batch_size").iloc[0]
        s2 = row.variance * row.batch_size
    else:
        row = ok.sort_values("batch_size").iloc[0]
        s2 = row.exact_variance * row.batch_size / row.fpc
    b = np.geomspace(table.batch_size.min(), table.batch_size.max(), 50)
    ax.plot(b, s2 / b, ":", color="0.4", lw=1, label="1/B reference: s²/B")


# -- curves, spreads, trajectories, interval estimates ---------------------------------

Z95 = 1.959963984540054


def _axes(ax, figsize=(6.4, 4.6)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _palette(levels):
    import seaborn as sns

    colors = sns.color_palette("colorblind", max(len(levels), 1))
    return {level: colors[i % len(colors)] for i, level in enumerate(levels)}


def _levels(table, hue):
    return list(dict.fromkeys(table[hue])) if hue is not None else [None]


def _bounds(t, y, lo, hi, se):
    if lo is not None and hi is not None:
        return t[lo].to_numpy(float), t[hi].to_numpy(float)
    if se is not None:
        m, s = t[y].to_numpy(float), t[se].to_numpy(float)
        return m - Z95 * s, m + Z95 * s
    return None, None


def _finish(ax, *, logx, logy, xlabel, ylabel, title, legend_title=None):
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=7, frameon=False, title=legend_title, title_fontsize=7)
    return ax


def loss_curves(table: pd.DataFrame, *, x: str, y: str, hue: str | None = None,
                lo: str | None = None, hi: str | None = None, se: str | None = None,
                exact: pd.DataFrame | None = None, exact_y: str = "exact", ax=None,
                logx: bool = False, logy: bool = True, xlabel: str | None = None,
                ylabel: str | None = None, title: str | None = None, band_label: str = "95% band"):
    """Monte Carlo curves with interval bands, one per ``hue`` level, and exact curves.

    Parameters
    ----------
    table : DataFrame
        Tidy: one row per (hue level, x) with the estimate in column ``y``.
    x, y, hue : str
        Column names; ``hue`` separates the curves.
    lo, hi : str, optional
        Columns holding the interval drawn as a band; or
    se : str, optional
        a standard-error column, drawn as ``y +- 1.96 se``. A curve with no
        interval (a deterministic method) is drawn as a line alone.
    exact : DataFrame, optional
        Exact theory, with columns ``x``, ``hue`` and ``exact_y``: drawn as
        dashed lines in the same colour, labelled "exact".
    logx, logy : bool
    xlabel, ylabel, title : str, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    levels = _levels(table, hue)
    colors = _palette(levels)
    for level in levels:
        t = table if hue is None else table[table[hue] == level]
        t = t.sort_values(x)
        xs = t[x].to_numpy(float)
        label = None if hue is None else str(level)
        ax.plot(xs, t[y].to_numpy(float), color=colors[level], lw=1.4, label=label)
        low, high = _bounds(t, y, lo, hi, se)
        if low is not None and np.any(high > low):
            if logy:
                low = np.where(low > 0, low, np.nan)
            ax.fill_between(xs, low, high, color=colors[level], alpha=0.25, lw=0)
        if exact is not None:
            e = exact if hue is None else exact[exact[hue] == level]
            if not e.empty:
                e = e.sort_values(x)
                ax.plot(e[x], e[exact_y], "--", color=colors[level], lw=1.0, alpha=0.9)
    if exact is not None:
        ax.plot([], [], "--", color="0.3", lw=1.0, label="exact theory (dashed)")
    if lo is not None or se is not None:
        ax.fill_between([], [], [], color="0.6", alpha=0.3, label=band_label)
    return _finish(ax, logx=logx, logy=logy, xlabel=xlabel or x, ylabel=ylabel or y,
                   title=title, legend_title=hue)


def convergence_plot(table: pd.DataFrame, *, x: str = "step", y: str = "mean", hue: str = "schedule",
                     lo: str | None = "ci_low", hi: str | None = "ci_high",
                     exact: pd.DataFrame | None = None, exact_y: str = "exact", ax=None,
                     reference: float | None = None, ylabel: str = "E (w_k - w*)^2",
                     title: str | None = None):
    """Log-log convergence curves of a Monte Carlo mean with bands and exact theory overlaid.

    The same drawing as :func:`loss_curves` on log-log axes; ``reference``
    adds a dotted ``reference / k`` line (e.g. ``sigma^2 / mu^2`` for the
    Polyak-Ruppert average).

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = loss_curves(table, x=x, y=y, hue=hue, lo=lo, hi=hi, exact=exact, exact_y=exact_y, ax=ax,
                     logx=True, logy=True, xlabel="step k", ylabel=ylabel, title=title)
    if reference is not None:
        k = np.geomspace(max(table[x].min(), 1), table[x].max(), 50)
        ax.plot(k, reference / k, ":", color="0.2", lw=1.2, label=f"{reference:g} / k")
        ax.legend(fontsize=7, frameon=False, title=hue, title_fontsize=7)
    return ax


def spread_plot(table: pd.DataFrame, *, x: str = "n", y: str = "spread", hue: str | None = "noise_std",
                lo: str = "ci_low", hi: str = "ci_high", exact: str | None = "exact", ax=None,
                logx: bool = True, logy: bool = True, xlabel: str | None = None,
                ylabel: str = "E ||w_N - w*||^2", title: str | None = None):
    """Estimates with interval bars against ``x``, one colour per ``hue``, exact values as lines.

    Used for the spread of the empirical-risk minimizer against N (or
    against Var(div)), and for any point estimate whose interval matters.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    levels = _levels(table, hue)
    colors = _palette(levels)
    for level in levels:
        t = table if hue is None else table[table[hue] == level]
        t = t.sort_values(x)
        yerr = np.vstack([t[y] - t[lo], t[hi] - t[y]])
        label = "Monte Carlo" if hue is None else f"{hue} = {level:g}" if isinstance(
            level, float) else f"{hue} = {level}"
        ax.errorbar(t[x], t[y], yerr=yerr, fmt="o", ms=4, capsize=3, color=colors[level],
                    label=label)
        if exact is not None and exact in t:
            ax.plot(t[x], t[exact], "-", color=colors[level], lw=1, alpha=0.8)
    if exact is not None:
        ax.plot([], [], "-", color="0.3", lw=1, label="exact")
    return _finish(ax, logx=logx, logy=logy, xlabel=xlabel or x, ylabel=ylabel, title=title)


def interval_plot(table: pd.DataFrame, *, x: str, y: str, lo: str = "ci_low", hi: str = "ci_high",
                  hue: str | None = None, ax=None, logy: bool = False, reference: float | None = None,
                  xlabel: str | None = None, ylabel: str | None = None, title: str | None = None):
    """Point estimates with interval bars at categorical or numeric ``x`` positions.

    ``hue`` levels are dodged side by side; ``reference`` draws a horizontal
    line (e.g. 1 for a ratio). For the variance of the updates per optimizer
    and for the advantage of SGD across a sweep.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    cats = list(dict.fromkeys(table[x]))
    pos = {c: i for i, c in enumerate(cats)}
    levels = _levels(table, hue)
    colors = _palette(levels)
    width = 0.6 / max(len(levels), 1)
    for j, level in enumerate(levels):
        t = table if hue is None else table[table[hue] == level]
        xs = np.array([pos[c] for c in t[x]]) + (j - (len(levels) - 1) / 2) * width
        yerr = np.vstack([t[y] - t[lo], t[hi] - t[y]])
        ax.errorbar(xs, t[y], yerr=yerr, fmt="o", ms=5, capsize=3, color=colors[level],
                    label=None if hue is None else str(level))
    if reference is not None:
        ax.axhline(reference, color="0.4", ls=":", lw=1)
    ax.set_xticks(range(len(cats)))
    ax.set_xticklabels([str(c) for c in cats])
    return _finish(ax, logx=False, logy=logy, xlabel=xlabel or x, ylabel=ylabel or y,
                   title=title, legend_title=hue)


def trajectories_plot(paths: pd.DataFrame, contour, *, hue: str = "optimizer", x: str = "w0",
                      y: str = "w1", optimum=(0.0, 0.0), ax=None, levels: int = 12,
                      title: str | None = None):
    """2-D parameter paths over the contours of the loss.

    Parameters
    ----------
    paths : DataFrame
        One row per (``hue`` level, step) with the coordinates in ``x``, ``y``.
    contour : callable
        ``contour(W0, W1) -> values`` on a meshgrid: the (expected) loss whose
        level sets are drawn.
    optimum : pair of float
        Marked with a star.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax, figsize=(6.4, 5.0))
    pad_x = 0.1 * (paths[x].max() - paths[x].min() + 1e-12)
    pad_y = 0.1 * (paths[y].max() - paths[y].min() + 1e-12)
    gx = np.linspace(min(paths[x].min(), optimum[0]) - pad_x, max(paths[x].max(), optimum[0]) + pad_x, 200)
    gy = np.linspace(min(paths[y].min(), optimum[1]) - pad_y, max(paths[y].max(), optimum[1]) + pad_y, 200)
    W0, W1 = np.meshgrid(gx, gy)
    vals = contour(W0, W1)
    ax.contour(W0, W1, vals, levels=np.quantile(vals, np.linspace(0.002, 0.9, levels) ** 2),
               colors="0.75", linewidths=0.7)
    names = _levels(paths, hue)
    colors = _palette(names)
    for name in names:
        t = paths[paths[hue] == name]
        ax.plot(t[x], t[y], "-", color=colors[name], lw=0.9, alpha=0.9, label=str(name))
    ax.plot(*optimum, "*", color="k", ms=10, label="minimum w*")
    return _finish(ax, logx=False, logy=False, xlabel=f"{x} (flat direction)",
                   ylabel=f"{y} (steep direction)", title=title, legend_title=hue)
