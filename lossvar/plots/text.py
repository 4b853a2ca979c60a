"""The words of figures and summaries: interval levels, captions, table panels, legends,
ticks, numbers and verdicts, the same in every figure of the package."""

from __future__ import annotations

import textwrap

import numpy as np

from .style import MONTE_CARLO

_SAMPLING_LABELS = {
    "without_replacement": "fixed data, without replacement",
    "with_replacement": "fixed data, with replacement",
    "fresh": "fresh data each batch",
}
_SHORT_SAMPLING_LABELS = {
    "without_replacement": "without replacement",
    "with_replacement": "with replacement",
    "fresh": "fresh data",
}
_INTERVAL_WORDS = {
    "fourth_moment": "normal approximation with the sample kurtosis",
    "chi2": "chi-square, assuming normal losses",
    "bootstrap": "percentile bootstrap",
}



def interval_words(confidence: float | None, method: str | None = None) -> str:
    """The interval in words: ``"95% confidence intervals (percentile bootstrap)"``."""
    head = "confidence intervals" if confidence is None else f"{percent(confidence)} confidence intervals"
    how = None if method is None else _INTERVAL_WORDS.get(method, method.replace("_", " "))
    return f"{head} ({how})" if how else head


def percent(confidence: float) -> str:
    """A level as a percentage: ``"95%"``, ``"99.9%"``."""
    return f"{100 * float(confidence):.4g}%"


def caption(fig, text: str, *, width: float | None = None, fontsize: float = 7.0):
    """Write a caption under a figure, wrapped to the figure's width. Returns the Text.

    Lines are filled by measured width, so mathtext (``$...$``, never split)
    counts as wide as it is drawn; paragraphs are separated by newlines.
    """
    w = fig.get_figwidth() if width is None else width
    gap = 0.06 / fig.get_figheight()
    wrapped = "\n".join(_fill(fig, p, w, fontsize) for p in text.split("\n"))
    return fig.text(0.0, -gap, wrapped, ha="left", va="top", fontsize=fontsize, color="0.1",
                    transform=fig.transFigure)


def _words(paragraph: str) -> list[str]:
    """Split at spaces outside ``$...$``: a math expression stays in one word."""
    words, cur, math = [], "", False
    for ch in paragraph:
        if ch == "$":
            math = not math
        if ch == " " and not math:
            words.append(cur)
            cur = ""
        else:
            cur += ch
    words.append(cur)
    return [x for x in words if x]


def _fill(fig, paragraph: str, width: float, fontsize: float) -> str:
    try:
        renderer = fig.canvas.get_renderer()
    except AttributeError:  # a backend without a renderer: count characters
        return textwrap.fill(paragraph, max(40, int(width * 72 / (0.52 * fontsize))))
    probe = fig.text(0, 0, "", fontsize=fontsize)

    def size(t):
        probe.set_text(t)
        return probe.get_window_extent(renderer).width / fig.dpi

    lines, cur = [], ""
    for word in _words(paragraph):
        trial = f"{cur} {word}" if cur else word
        if cur and size(trial) > width:
            lines.append(cur)
            cur = word
        else:
            cur = trial
    lines.append(cur)
    probe.remove()
    return "\n".join(lines)


def table_panel(ax, header, rows, *, colors=None, marks=None, color_col: int = 0,
                fontsize: float = 7.0, pad: float = 0.16, x0: float = 0.0):
    """Draw a small text table on ``ax`` (its axis turned off); returns ``ax``.

    ``header`` and each of ``rows`` are sequences of strings, one per column
    (a header may have two lines). Columns are as wide as their widest cell
    plus ``pad`` inches, starting ``x0`` inches right of the Axes' left edge
    (negative: left of it). ``colors`` and ``marks`` (one per row, from
    :func:`palette` and :func:`markers`) colour the cells of column
    ``color_col`` and put the entity's marker left of them, so the table
    reads like a legend. Give the Axes a height of about
    ``lines * 1.3 * fontsize / 72`` inches.
    """
    from matplotlib.transforms import ScaledTranslation

    fig = ax.figure
    ax.set_axis_off()
    renderer = fig.canvas.get_renderer()
    mark_w = 0.14 if marks is not None else 0.0

    def width(text, bold):
        t = fig.text(0, 0, text, fontsize=fontsize, fontweight="bold" if bold else "normal")
        w = t.get_window_extent(renderer).width / fig.dpi
        t.remove()
        return w

    k = len(header)
    widths = [max([width(header[j], False)] + [width(r[j], colors is not None and j == color_col)
                                               for r in rows]) for j in range(k)]
    xs, x = [], x0
    for j in range(k):
        if j == color_col:
            x += mark_w
        xs.append(x)
        x += widths[j] + pad
    line = 1.3 * fontsize / 72
    head_lines = max(h.count("\n") + 1 for h in header)

    def at(xi, yi):
        return ax.transAxes + ScaledTranslation(xi, -yi, fig.dpi_scale_trans)

    for j, h in enumerate(header):
        ax.text(0, 1, h, transform=at(xs[j], 0), ha="left", va="top", fontsize=fontsize,
                color="0.3", linespacing=1.15)
    for i, row in enumerate(rows):
        y = (head_lines + i) * line + 0.3 * line
        for j, cell in enumerate(row):
            mine = colors is not None and j == color_col
            ax.text(0, 1, cell, transform=at(xs[j], y), ha="left", va="top", fontsize=fontsize,
                    color=colors[i] if mine else "0.05", fontweight="bold" if mine else "normal")
        if marks is not None and colors is not None:
            ax.plot([0], [1], transform=at(xs[color_col] - mark_w / 2, y + 0.42 * line),
                    marker=marks[i], ls="none", ms=MONTE_CARLO["ms"], color=colors[i],
                    clip_on=False)
    return ax


def legend_order(handles: dict, ncol: int) -> dict:
    """Reorder ``{label: handle}`` so a legend of ``ncol`` columns reads row by row."""
    items = list(handles.items())
    rows = -(-len(items) // ncol)
    out = [items[r * ncol + c] for c in range(ncol) for r in range(rows) if r * ncol + c < len(items)]
    return dict(out)



def sampling_label(sampling, *, short: bool = False) -> str:
    """The words for a sampling scheme, e.g. "fixed data, without replacement" (``short``:
    "without replacement")."""
    return (_SHORT_SAMPLING_LABELS if short else _SAMPLING_LABELS).get(sampling, str(sampling))


def figure_legend(fig, axes, ncol: int, title: str | None = None, first=(), **kwargs):
    """One legend above the figure for every labelled artist of ``axes``, read row by row;
    the labels ``first`` (in their order) lead, then the others as drawn. Returns it."""
    handles: dict = {}
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    lead = [lab for lab in first if lab in handles]
    handles = {lab: handles[lab] for lab in [*lead, *[x for x in handles if x not in lead]]}
    handles = legend_order(handles, ncol)
    options = dict(loc="outside upper center", ncol=ncol, title=title, columnspacing=1.4,
                   handletextpad=0.5)
    return fig.legend(list(handles.values()), list(handles), **{**options, **kwargs})


def log_ticks(axis, subs=(1.0, 2.0, 5.0)):
    """Major ticks at ``subs`` x 10^k written as plain numbers, unlabelled minor ticks.

    ``subs=None``: as many as the axis' range leaves room for (1, 2, 5 within about a decade,
    1 and 3 within two and a half, else decades).
    """
    from matplotlib import ticker

    if subs is None:
        lo, hi = sorted(axis.get_view_interval())
        decades = np.log10(hi / lo)
        subs = (1.0, 2.0, 5.0) if decades < 1.4 else (1.0, 3.0) if decades < 2.6 else (1.0,)
    axis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def number(v) -> str:
    """A noise scale or batch size for a figure: 3 significant digits, no exponent below 10^5."""
    return f"{v:.0f}" if 1000 <= abs(v) < 1e5 else f"{v:.3g}"


def minus(text: str) -> str:
    """``text`` with each hyphen-minus a true minus sign (U+2212), for numbers in figures."""
    return text.replace("-", "\u2212")


def interval_text(low, high, replicates=None, fmt: str = ".4g") -> str:
    """``[low, high]`` with ``fmt``, more digits where ``fmt`` would print both ends
    alike; or why there is no interval: fewer than 2 replicates, no spread across
    them, or (``replicates`` unknown) no standard error."""
    if np.isnan(low) or np.isnan(high) or low == high:
        why = ("no standard error" if replicates is None else f"only {int(replicates)} replicate"
               if replicates < 2 else "no spread across replicates")
        return f"no interval ({why})"
    digits, kind = int(fmt[1:-1]), fmt[-1]
    for extra in range(8):
        a, b = f"{low:.{digits + extra}{kind}}", f"{high:.{digits + extra}{kind}}"
        if a != b:
            break
    return f"[{a}, {b}]"


def verdict_word(row) -> str:
    """'agrees', 'DISAGREES' or 'no verdict' (no row tested) for a row of a study's
    agreement table (:func:`lossvar.stats.study_verdicts`)."""
    if getattr(row, "tested", 1) == 0:
        return "no verdict"
    return "agrees" if str(row.agrees).lower() in ("true", "1") else "DISAGREES"


def verdict_phrase(row, detail: str, why: str = "no row tested") -> str:
    """A verdict for a figure: ``agrees (DETAIL)`` or ``DISAGREES (DETAIL)``, or, with no
    row tested (its p-values are NaN), ``no verdict (WHY)``."""
    word = verdict_word(row)
    return f"no verdict ({why})" if word == "no verdict" else f"{word} ({detail})"
