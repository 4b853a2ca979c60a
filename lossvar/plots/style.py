"""The figure style: print sizes, the colour-blind-safe palette, markers, and the
rcParams of every lossvar figure (:func:`style`)."""

from __future__ import annotations

#: Width in inches of one journal column and of a full page.
COLUMN_WIDTH = 3.5
FULL_WIDTH = 7.2
#: Resolution of every PNG (the vector SVG is written alongside).
DPI = 300

#: Okabe & Ito (2008), "Color universal design": distinguishable with every common
#: colour-vision deficiency. Black is kept for exact theory, so series use the others;
#: yellow comes last (weak on white).
OKABE_ITO = {"blue": "#0072B2", "vermillion": "#D55E00", "green": "#009E73",
             "purple": "#CC79A7", "orange": "#E69F00", "sky": "#56B4E9", "yellow": "#F0E442"}
_CYCLE = list(OKABE_ITO.values())
_MARKERS = ["o", "s", "^", "D", "v", "P", "X"]
#: Colours beyond the seven of Okabe-Ito, for figures with more entities (Tol's "muted"
#: scheme, also colour-blind safe); with more than seven names the weak yellow moves last.
EXTRA_COLORS = ["#882255", "#44AA99", "#999933", "#332288", "#AA4499"]
_EXTRA_MARKERS = ["<", ">", "p", "h", "d"]

#: Entities with a fixed colour and marker in every figure of the package.
KNOWN = {
    "without_replacement": ("#0072B2", "o"),
    "with_replacement": ("#D55E00", "s"),
    "fresh": ("#009E73", "^"),
}

#: Exact theory: a thin dark line above the Monte Carlo markers.
EXACT = {"color": "#1a1a1a", "lw": 0.9, "ls": "-", "zorder": 4}
#: A reference law: a wide light-grey line beneath everything.
REFERENCE = {"color": "0.80", "lw": 3.2, "ls": "-", "zorder": 1, "solid_capstyle": "butt"}
#: Monte Carlo markers and their interval bars.
MONTE_CARLO = {"ms": 4.0, "capsize": 1.8, "elinewidth": 0.9, "capthick": 0.9, "mew": 0.8,
               "zorder": 3}

#: rcParams of the style (see :func:`style`).
RC = {
    "figure.figsize": (COLUMN_WIDTH, 2.6),
    "figure.dpi": 100,
    "savefig.dpi": DPI,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.03,
    "svg.hashsalt": "lossvar",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "legend.frameon": False,
    "legend.handlelength": 1.8,
    "legend.borderaxespad": 0.3,
    "mathtext.fontset": "dejavusans",
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlepad": 4.0,
    "axes.labelpad": 2.5,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.width": 0.4,
    "ytick.minor.width": 0.4,
    "xtick.major.size": 3.0,
    "ytick.major.size": 3.0,
    "xtick.minor.size": 1.6,
    "ytick.minor.size": 1.6,
    "lines.linewidth": 1.2,
    "lines.markersize": 4.0,
    "errorbar.capsize": 1.8,
    "grid.linewidth": 0.4,
    "grid.color": "0.9",
}


# -- the style -----------------------------------------------------------------------


def _rc():
    from cycler import cycler

    return {**RC, "axes.prop_cycle": cycler(color=_CYCLE)}


def style():
    """Context manager applying the lossvar figure style; rcParams are restored on exit.

    Create the figure inside it (tick and font sizes are read when the Axes
    are made)::

        with plots.style():
            fig, ax = plots.subplots()
            ...
    """
    import matplotlib as mpl

    return mpl.rc_context(_rc())


def use_style() -> None:
    """Apply the lossvar figure style globally (for a notebook or a script)."""
    import matplotlib as mpl

    mpl.rcParams.update(_rc())


def subplots(nrows: int = 1, ncols: int = 1, *, width="column", height: float | None = None,
             **kwargs):
    """``plt.subplots`` at print size: ``width`` "column" (3.5 in), "full" (7.2 in) or inches.

    ``height`` defaults to 0.75 of the width per row for one column, 0.42 for
    the full width. Constrained layout unless ``layout`` is given.
    """
    import matplotlib.pyplot as plt

    w = {"column": COLUMN_WIDTH, "full": FULL_WIDTH}.get(width, width)
    w = float(w)
    if height is None:
        height = nrows * w * (0.75 if w <= COLUMN_WIDTH else 0.42)
    kwargs.setdefault("layout", "constrained")
    return plt.subplots(nrows, ncols, figsize=(w, height), **kwargs)


def palette(names) -> dict:
    """One colour per entity: ``{name: colour}``, colour-blind safe (Okabe-Ito).

    Sampling schemes have fixed colours in every figure; other names take the
    remaining colours in the order given (up to twelve distinct colours: beyond
    Okabe-Ito's seven, Tol's muted ones). Call it once per figure with every
    name that appears in any panel, and pass the dict to each plot function
    (``palette=``), so an entity keeps its colour across panels.
    """
    names = list(dict.fromkeys(names))
    cycle = _CYCLE if len(names) <= len(_CYCLE) else _CYCLE[:-1] + EXTRA_COLORS + _CYCLE[-1:]
    return _assign(names, 0, cycle)


def markers(names) -> dict:
    """One marker per entity, assigned like :func:`palette` (a second cue besides colour)."""
    names = list(dict.fromkeys(names))
    cycle = _MARKERS if len(names) <= len(_MARKERS) else _MARKERS + _EXTRA_MARKERS
    return _assign(names, 1, cycle)


def _assign(names, slot, cycle) -> dict:
    """Known entities keep their style (slot 0 colour, 1 marker); the others take the
    free entries of ``cycle`` in order."""
    taken = {KNOWN[n][slot] for n in names if n in KNOWN}
    free = [c for c in cycle if c not in taken] or cycle
    out, i = {}, 0
    for n in names:
        if n in KNOWN:
            out[n] = KNOWN[n][slot]
        else:
            out[n] = free[i % len(free)]
            i += 1
    return out



def figure(width="full", height: float = 3.0):
    """A new figure at print size (``width`` as in :func:`subplots`), constrained layout, for
    figures laid out with a gridspec (``fig.add_gridspec``). Create it inside :func:`style`."""
    import matplotlib.pyplot as plt

    w = float({"column": COLUMN_WIDTH, "full": FULL_WIDTH}.get(width, width))
    return plt.figure(figsize=(w, height), layout="constrained")


def styled(draw):
    """Decorate a figure function so that it draws inside :func:`style` (its figures get the
    package's sizes and fonts wherever it is called)."""
    import functools

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with style():
            return draw(*args, **kwargs)

    return wrapper
