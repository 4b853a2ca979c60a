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
    bars, the exact curve of THEORY.md section 1 (with the finite-population
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
