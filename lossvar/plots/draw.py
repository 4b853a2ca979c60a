"""Plot functions that only draw: each takes a tidy table and an optional Axes and
returns the Axes (Monte Carlo markers with interval bars, exact curves, bands)."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd

from .style import COLUMN_WIDTH, EXACT, MONTE_CARLO, OKABE_ITO, REFERENCE, markers, style, subplots
from .style import palette as _palette_of  # the plot functions' argument `palette` hides the name
from .text import interval_words, sampling_label


@contextlib.contextmanager
def _own_figure(ax, width="column", height=None):
    """Yield ``ax``, or a new styled Axes (created and drawn on inside :func:`style`)."""
    if ax is not None:
        yield ax
        return
    with style():
        # constrained layout: labels, title and legend are fitted inside the canvas when the
        # figure is drawn or saved, wherever the caller saves it (not only with the style's
        # tight bounding box)
        _, new = subplots(width=width, height=height)
        yield new


def _levels(table, hue):
    return list(dict.fromkeys(table[hue])) if hue is not None else [None]


def _dodge(levels, dodge):
    """Multiplicative x offsets (log axes), ``dodge`` decades apart, centred on 1."""
    k = len(levels)
    return {lv: 10 ** ((i - (k - 1) / 2) * dodge) for i, lv in enumerate(levels)}



# -- the variance of the batch-mean loss ------------------------------------------------


def _legend(ax, first, *, own=False, inside="best", **kwargs):
    """A legend listing the labels ``first`` (the Monte Carlo series) before the others.

    On a figure the plot function made itself (``own``), a figure legend above the
    axes and their title, where no marker or bar can hide it (constrained layout makes
    room); on the caller's Axes, inside them at ``inside``.
    """
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: (labels[i] not in first, i))
    handles, labels = [handles[i] for i in order], [labels[i] for i in order]
    if own:
        return ax.figure.legend(handles, labels, alignment="left", loc="outside upper left", **kwargs)
    return ax.legend(handles, labels, alignment="left", loc=inside, **kwargs)


def _exact_line(t, sampling):
    """The exact curve of docs/theory.md, section 1 on a dense grid of B, from lossvar.theory.

    ``s^2`` is read off the table's exact variance at its smallest batch size
    (the exact variance divided by theory's factor for that B).
    """
    from .. import theory

    ok = t[np.isfinite(t.exact_variance) & (t.exact_variance > 0)]
    if ok.empty:
        return None
    row = ok.iloc[0]
    n = int(row.n) if sampling == "without_replacement" and "n" in t else None
    how = "without_replacement" if n is not None else "with_replacement"
    s2 = row.exact_variance / theory.batch_mean_variance(1.0, row.batch_size, n=n, sampling=how)
    b = np.geomspace(t.batch_size.min(), ok.batch_size.max(), 200)
    return b, theory.batch_mean_variance(s2, b, n=n, sampling=how), s2


def _level_of(table, confidence):
    """The intervals' level: ``confidence``, else the table's ``confidence`` column (one
    level), else ``attrs["confidence"]``; and the interval method of column ``interval``."""
    if confidence is None and "confidence" in table and len(table):
        found = table["confidence"].dropna().unique()
        if len(found) > 1:
            raise ValueError(f"`table` holds intervals at several levels {sorted(found)}: plot one "
                             "level at a time, or pass `confidence`")
        confidence = float(found[0]) if len(found) else None
    if confidence is None:
        confidence = table.attrs.get("confidence")
    method = str(table["interval"].iloc[0]) if "interval" in table and len(table) else None
    return confidence, method


def _bars(confidence) -> str:
    """What the bars are, for a legend title; says so when the level is unknown."""
    if confidence is None:
        return "confidence intervals\n(level not recorded in the table: pass confidence=)"
    return interval_words(confidence, None)


def _reliable(t):
    if "interval_reliable" not in t:
        return np.ones(len(t), bool)
    return t["interval_reliable"].astype(bool).to_numpy()


def mc_points(ax, x, y, lo, hi, *, color, marker="o", label=None, reliable=None, ms=None):
    """Monte Carlo estimates ``y`` at ``x`` as markers with interval bars ``lo`` to ``hi``.

    The package's drawing of Monte Carlo (:data:`MONTE_CARLO`): filled markers,
    open where ``reliable`` is False (an interval that may under-cover), one
    legend entry (marker with bar) if ``label`` is given. Returns ``ax``.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    reliable = np.ones(x.size, bool) if reliable is None else np.asarray(reliable, bool)
    _mc_points(ax, x, y, lo, hi, color, marker, label, reliable, ms=ms)
    return ax


def _mc_points(ax, x, y, lo, hi, color, marker, label, reliable, ms=None):
    """Monte Carlo markers with interval bars; open markers where the interval may under-cover."""
    ms = MONTE_CARLO["ms"] if ms is None else ms
    yerr = np.vstack([y - lo, hi - y])
    ax.errorbar(x, y, yerr=yerr, fmt="none", ecolor=color, elinewidth=MONTE_CARLO["elinewidth"],
                capsize=MONTE_CARLO["capsize"], capthick=MONTE_CARLO["capthick"],
                zorder=MONTE_CARLO["zorder"])
    for sel, face in ((reliable, color), (~reliable, "white")):
        if np.any(sel):
            ax.plot(x[sel], y[sel], ls="none", marker=marker, ms=ms, mfc=face,
                    mec=color, mew=MONTE_CARLO["mew"], zorder=MONTE_CARLO["zorder"])
    # one legend entry: marker with its bar
    ax.errorbar([], [], yerr=[], fmt=marker, color=color, ms=ms,
                capsize=MONTE_CARLO["capsize"], elinewidth=MONTE_CARLO["elinewidth"], label=label)


def variance_plot(table: pd.DataFrame, ax=None, *, title: str | None = None,
                  confidence: float | None = None, palette: dict | None = None,
                  dodge: float = 0.035, reference: bool = True, legend: bool = True,
                  note: bool = True):
    """Log-log plot of the variance of the batch-mean loss against the batch size.

    Draws, for each sampling scheme in ``table`` (a ``VarianceResult.table``,
    or several concatenated): the Monte Carlo variances as markers with the
    interval bars of columns ``ci_low``/``ci_high`` (offset slightly in B per
    scheme, ``dodge`` decades, so they do not hide each other; open markers
    where ``interval_reliable`` is False), the exact curve of docs/theory.md,
    section 1 (a thin dark line above the markers, computed by
    :func:`lossvar.theory.batch_mean_variance` from the table's exact
    variance), and a wide light-grey ``s^2 / B`` reference (the 1/B law).
    Rows with exact variance 0 (the full batch of a fixed data set) cannot sit
    on a log axis: a note says so.

    Parameters
    ----------
    table : DataFrame
    ax : Axes, optional
    title : str, optional
    confidence : float, optional
        The level of the intervals, stated in the legend (default: the table's
        ``confidence`` column or ``attrs["confidence"]``; where neither says,
        the legend says that the level is not recorded).
    palette : dict, optional
        ``{sampling: colour}``, e.g. :func:`palette` of every scheme in the figure.
    dodge : float
        Offset between schemes in decades of B (0: none).
    reference, legend, note : bool
        Draw the ``s^2/B`` reference, the legend, the note on zero-variance rows.

    Returns
    -------
    matplotlib.axes.Axes
    """
    own = ax is None
    with _own_figure(ax, height=3.3) as ax:
        levels = _levels(table, "sampling")
        colors = palette if palette is not None else _palette_of(levels)
        marks = markers(levels)
        offset = _dodge(levels, dodge)
        zero_rows = []
        s2_ref = None
        for sampling in levels:
            t = table[table.sampling == sampling].sort_values("batch_size")
            label = sampling_label(sampling)
            zero_rows += [int(b) for b in t.batch_size[t.exact_variance == 0]]
            pos = t[t.variance > 0]
            _mc_points(ax, pos.batch_size.to_numpy(float) * offset[sampling],
                       pos.variance.to_numpy(float), pos.ci_low.to_numpy(float),
                       pos.ci_high.to_numpy(float), colors[sampling], marks[sampling], label,
                       _reliable(pos))
            line = _exact_line(t, sampling)
            if line is not None:
                ax.plot(line[0], line[1], **EXACT)
                if s2_ref is None or sampling == "without_replacement":
                    s2_ref = line[2]
        if any(np.isfinite(table.exact_variance) & (table.exact_variance > 0)):
            ax.plot([], [], **EXACT, label="exact theory")
        if reference and s2_ref is not None:
            b = np.geomspace(table.batch_size.min(), table.batch_size.max(), 50)
            ax.plot(b, s2_ref / b, **REFERENCE, label=r"$s^2/B$ (the $1/B$ law)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"batch size $B$")
        ax.set_ylabel(r"$\mathrm{Var}(\bar\ell_B)$")
        if title:
            ax.set_title(title)
        conf, method = _level_of(table, confidence)
        if note and zero_rows:
            ax.text(0.98, 0.98, "full batch B = N (" + ", ".join(map(str, sorted(set(zero_rows))))
                    + ") of fixed data:\nvariance exactly 0, not drawn",
                    transform=ax.transAxes, fontsize=6.5, va="top", ha="right", color="0.2")
        if legend:
            _legend(ax, [sampling_label(s) for s in levels], handlelength=1.4,
                    title="Monte Carlo, bars: " + _bars(conf), own=own, inside="lower left")
    return ax


def ratio_plot(table: pd.DataFrame, ax=None, *, title: str | None = None,
               confidence: float | None = None, palette: dict | None = None,
               dodge: float = 0.035, legend: bool = True):
    """Monte Carlo variance divided by the exact one, with its interval, around 1 (log B).

    Plots ``variance / exact_variance`` with bars ``ci_low / exact_variance``
    to ``ci_high / exact_variance`` (the table's columns) against B; the exact
    theory is the line at 1 (drawn like every exact curve). The claim holds
    where the bars cross 1. Rows without a positive exact variance are left out.
    ``confidence`` and the other arguments are those of :func:`variance_plot`;
    on a figure of its own the legend stands above the axes.

    Returns
    -------
    matplotlib.axes.Axes
    """
    own = ax is None
    with _own_figure(ax, height=2.4) as ax:
        levels = _levels(table, "sampling")
        colors = palette if palette is not None else _palette_of(levels)
        marks = markers(levels)
        offset = _dodge(levels, dodge)
        for sampling in levels:
            t = table[table.sampling == sampling].sort_values("batch_size")
            t = t[np.isfinite(t.exact_variance) & (t.exact_variance > 0)]
            if t.empty:
                continue
            e = t.exact_variance.to_numpy(float)
            _mc_points(ax, t.batch_size.to_numpy(float) * offset[sampling],
                       t.variance.to_numpy(float) / e, t.ci_low.to_numpy(float) / e,
                       t.ci_high.to_numpy(float) / e, colors[sampling], marks[sampling],
                       sampling_label(sampling), _reliable(t))
        ax.axhline(1.0, **EXACT, label="exact theory")
        ax.set_xscale("log")
        lo, hi = ax.get_ylim()
        half = max(1.0 - lo, hi - 1.0)
        ax.set_ylim(1.0 - half, 1.0 + half)
        ax.set_xlabel(r"batch size $B$")
        ax.set_ylabel(r"$\widehat{\mathrm{Var}}\,/\,\mathrm{Var}_{\mathrm{exact}}$")
        if title:
            ax.set_title(title)
        if legend:
            conf, _ = _level_of(table, confidence)
            _legend(ax, [sampling_label(s) for s in levels],
                    title="Monte Carlo / exact, bars: " + _bars(conf), own=own)
    return ax


# -- curves, spreads, trajectories, interval estimates ---------------------------------


def _colors(levels, given):
    if given is not None:
        return given
    if levels == [None]:
        return {None: OKABE_ITO["blue"]}
    return _palette_of(levels)


def _bounds(t, lo, hi, se, y):
    """The interval drawn: columns ``lo``/``hi``; or ``y -+ se`` (one standard error)."""
    if lo is not None and hi is not None:
        return t[lo].to_numpy(float), t[hi].to_numpy(float)
    if se is not None:
        m, s = t[y].to_numpy(float), t[se].to_numpy(float)
        return m - s, m + s
    return None, None


def _finish(ax, *, logx, logy, xlabel, ylabel, title, legend_title=None, legend=True):
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    handles, _ = ax.get_legend_handles_labels()
    if handles and legend:
        ax.legend(title=legend_title)
    return ax


def loss_curves(table: pd.DataFrame, *, x: str, y: str, hue: str | None = None,
                lo: str | None = None, hi: str | None = None, se: str | None = None,
                exact: pd.DataFrame | None = None, exact_y: str = "exact", ax=None,
                logx: bool = False, logy: bool = True, xlabel: str | None = None,
                ylabel: str | None = None, title: str | None = None, band_label: str | None = None,
                palette: dict | None = None, legend: bool = True):
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
        a standard-error column, drawn as a band of one standard error either
        side (no level is implied; prefer ``lo``/``hi`` columns computed with
        :mod:`lossvar.stats`). A curve with no interval is drawn as a line alone.
    exact : DataFrame, optional
        Exact theory, with columns ``x``, ``hue`` and ``exact_y``: thin dark
        lines (:data:`EXACT`) above the Monte Carlo, labelled "exact theory".
    band_label : str, optional
        Legend text of the band: state its level, e.g. "95% confidence band".
    palette : dict, optional
        ``{hue level: colour}`` (:func:`palette`), to keep colours across panels.

    Returns
    -------
    matplotlib.axes.Axes
    """
    with _own_figure(ax) as ax:
        levels = _levels(table, hue)
        colors = _colors(levels, palette)
        for level in levels:
            t = table if hue is None else table[table[hue] == level]
            t = t.sort_values(x)
            xs = t[x].to_numpy(float)
            label = None if hue is None else str(level)
            ax.plot(xs, t[y].to_numpy(float), color=colors[level], lw=1.3, label=label, zorder=3)
            low, high = _bounds(t, lo, hi, se, y)
            if low is not None and np.any(high > low):
                if logy:
                    low = np.where(low > 0, low, np.nan)
                ax.fill_between(xs, low, high, color=colors[level], alpha=0.25, lw=0, zorder=2)
            if exact is not None:
                e = exact if hue is None else exact[exact[hue] == level]
                if not e.empty:
                    e = e.sort_values(x)
                    ax.plot(e[x], e[exact_y], **EXACT)
        if exact is not None:
            ax.plot([], [], **EXACT, label="exact theory")
        if lo is not None or se is not None:
            default = "interval band" if lo is not None else r"$\pm 1$ standard error"
            ax.fill_between([], [], [], color="0.6", alpha=0.3, label=band_label or default)
        return _finish(ax, logx=logx, logy=logy, xlabel=xlabel or x, ylabel=ylabel or y,
                       title=title, legend_title=hue, legend=legend)


def convergence_plot(table: pd.DataFrame, *, x: str = "step", y: str = "mean", hue: str = "schedule",
                     lo: str | None = "ci_low", hi: str | None = "ci_high",
                     exact: pd.DataFrame | None = None, exact_y: str = "exact", ax=None,
                     reference: float | None = None,
                     ylabel: str = r"$\mathrm{E}\,(w_k - w^*)^2$", title: str | None = None,
                     band_label: str | None = None, palette: dict | None = None):
    """Log-log convergence curves of a Monte Carlo mean with bands and exact theory overlaid.

    The same drawing as :func:`loss_curves` on log-log axes; ``reference``
    adds a ``reference / k`` line in the reference style (e.g. ``sigma^2 / mu^2``
    for the Polyak-Ruppert average).

    Returns
    -------
    matplotlib.axes.Axes
    """
    with _own_figure(ax) as ax:
        loss_curves(table, x=x, y=y, hue=hue, lo=lo, hi=hi, exact=exact, exact_y=exact_y, ax=ax,
                    logx=True, logy=True, xlabel=r"step $k$", ylabel=ylabel, title=title,
                    band_label=band_label, palette=palette, legend=False)
        if reference is not None:
            k = np.geomspace(max(table[x].min(), 1), table[x].max(), 50)
            ax.plot(k, reference / k, **REFERENCE, label=f"{reference:g} / k")
        ax.legend(title=hue)
    return ax


def spread_plot(table: pd.DataFrame, *, x: str = "n", y: str = "spread", hue: str | None = "noise_std",
                lo: str = "ci_low", hi: str = "ci_high", exact: str | None = "exact", ax=None,
                logx: bool = True, logy: bool = True, xlabel: str | None = None,
                ylabel: str = r"$\mathrm{E}\,\|w_N - w^*\|^2$", title: str | None = None,
                palette: dict | None = None, dodge: float = 0.0):
    """Estimates with interval bars against ``x``, one colour per ``hue``, exact values as lines.

    Used for the spread of the empirical-risk minimizer against N (or
    against Var(div)), and for any point estimate whose interval matters.
    Bars are the ``lo``/``hi`` columns; exact values (column ``exact``) are
    thin dark lines above the markers.

    Returns
    -------
    matplotlib.axes.Axes
    """
    with _own_figure(ax) as ax:
        levels = _levels(table, hue)
        colors = _colors(levels, palette)
        marks = {None: "o"} if levels == [None] else markers(levels)
        offset = _dodge(levels, dodge)
        for level in levels:
            t = table if hue is None else table[table[hue] == level]
            t = t.sort_values(x)
            label = "Monte Carlo" if hue is None else f"{hue} = {level:g}" if isinstance(
                level, float) else f"{hue} = {level}"
            _mc_points(ax, t[x].to_numpy(float) * offset[level], t[y].to_numpy(float),
                       t[lo].to_numpy(float), t[hi].to_numpy(float), colors[level], marks[level],
                       label, _reliable(t))
            if exact is not None and exact in t:
                ax.plot(t[x], t[exact], **EXACT)
        if exact is not None:
            ax.plot([], [], **EXACT, label="exact theory")
        return _finish(ax, logx=logx, logy=logy, xlabel=xlabel or x, ylabel=ylabel, title=title)


def interval_plot(table: pd.DataFrame, *, x: str, y: str, lo: str = "ci_low", hi: str = "ci_high",
                  hue: str | None = None, ax=None, logy: bool = False, reference: float | None = None,
                  xlabel: str | None = None, ylabel: str | None = None, title: str | None = None,
                  palette: dict | None = None):
    """Point estimates with interval bars at categorical or numeric ``x`` positions.

    ``hue`` levels are dodged side by side; ``reference`` draws a horizontal
    line (e.g. 1 for a ratio). For the variance of the updates per optimizer
    and for the advantage of SGD across a sweep.

    Returns
    -------
    matplotlib.axes.Axes
    """
    with _own_figure(ax) as ax:
        cats = list(dict.fromkeys(table[x]))
        pos = {c: i for i, c in enumerate(cats)}
        levels = _levels(table, hue)
        colors = _colors(levels, palette)
        marks = {None: "o"} if levels == [None] else markers(levels)
        width = 0.6 / max(len(levels), 1)
        for j, level in enumerate(levels):
            t = table if hue is None else table[table[hue] == level]
            xs = np.array([pos[c] for c in t[x]]) + (j - (len(levels) - 1) / 2) * width
            _mc_points(ax, xs, t[y].to_numpy(float), t[lo].to_numpy(float), t[hi].to_numpy(float),
                       colors[level], marks[level], None if hue is None else str(level),
                       _reliable(t))
        if reference is not None:
            ax.axhline(reference, **{**REFERENCE, "lw": 2.0})
        ax.set_xticks(range(len(cats)))
        ax.set_xticklabels([str(c) for c in cats])
        return _finish(ax, logx=False, logy=logy, xlabel=xlabel or x, ylabel=ylabel or y,
                       title=title, legend_title=hue)


def trajectories_plot(paths: pd.DataFrame, contour, *, hue: str = "optimizer", x: str = "w0",
                      y: str = "w1", optimum=(0.0, 0.0), ax=None, levels: int = 12,
                      title: str | None = None, palette: dict | None = None):
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
    palette : dict, optional
        ``{hue level: colour}`` (:func:`palette`).

    Returns
    -------
    matplotlib.axes.Axes
    """
    with _own_figure(ax, height=COLUMN_WIDTH * 0.8) as ax:
        pad_x = 0.1 * (paths[x].max() - paths[x].min() + 1e-12)
        pad_y = 0.1 * (paths[y].max() - paths[y].min() + 1e-12)
        gx = np.linspace(min(paths[x].min(), optimum[0]) - pad_x,
                         max(paths[x].max(), optimum[0]) + pad_x, 200)
        gy = np.linspace(min(paths[y].min(), optimum[1]) - pad_y,
                         max(paths[y].max(), optimum[1]) + pad_y, 200)
        W0, W1 = np.meshgrid(gx, gy)
        vals = contour(W0, W1)
        ax.contour(W0, W1, vals, levels=np.quantile(vals, np.linspace(0.002, 0.9, levels) ** 2),
                   colors="0.8", linewidths=0.6)
        names = _levels(paths, hue)
        colors = _colors(names, palette)
        for name in names:
            t = paths[paths[hue] == name]
            ax.plot(t[x], t[y], "-", color=colors[name], lw=0.9, alpha=0.9, label=str(name))
        ax.plot(*optimum, "*", color=EXACT["color"], ms=8, label=r"minimum $w^*$", zorder=5)
        return _finish(ax, logx=False, logy=False, xlabel=f"{x} (flat direction)",
                       ylabel=f"{y} (steep direction)", title=title, legend_title=hue)


def band(ax, x, y, lo, hi, *, color, label=None, alpha: float = 0.3, edges: float = 0.3,
         positive: bool = False, zorder: int = 2):
    """A Monte Carlo mean curve ``y`` with its interval band ``lo`` to ``hi``, the band's
    edges drawn (a band narrower than the line stays visible at its edges). ``positive``:
    leave out non-positive lower ends (a log axis). Returns ``ax``."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    if positive:
        lo = np.where(lo > 0, lo, np.nan)
    ax.fill_between(x, lo, hi, color=color, alpha=alpha, lw=0, zorder=2)
    for edge in (lo, hi):
        ax.plot(x, edge, color=color, lw=edges, zorder=zorder)
    ax.plot(x, y, color=color, lw=0.9, zorder=3, label=label)
    return ax
