"""Checks of the studies' options: argparse types and the relations between options.

Every message names the flag as the user types it (``--minibatch``), what is
allowed and the value given. A type error is argparse's ("argument --n: must
be ..."), a relation is a ValueError raised by a study's ``check(args)``, which
:func:`lossvar.studies.execute` prints as ``lossvar: error: ...``; both exit
with status 2 before any work and before any folder is made.
"""

from __future__ import annotations

import argparse
import math
import os

#: The largest count (replicates, steps, epochs, sizes) a study accepts: a
#: Monte Carlo standard error at 10^9 replicates is 3e-5 of a standard
#: deviation, beyond anything these studies are built to show.
MAX_COUNT = 10**9

#: The most float64 numbers a run may hold at once (16 GiB); a run that would
#: need more is refused before it starts rather than failing hours in.
MAX_ELEMENTS = 2**31

#: matplotlib draws at most 2^16 pixels a side, and a study's figures are under
#: 10 inches tall and wide.
MAX_DPI = 2**16 // 10


def _text(low, high) -> str:
    return f"an integer in [{low}, {'10^9' if high == MAX_COUNT else high}]"


def count(low: int, *also, high: int = MAX_COUNT):
    """argparse type: an integer in [``low``, ``high``], or one of the values in ``also``
    (integers, or words such as 'auto', returned as they are)."""
    def parse(text):
        if text in also:
            return text
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or (not low <= value <= high and value not in also):
            extra = "".join(f"{a!r} or " if isinstance(a, str) else f"{a} or " for a in also)
            raise argparse.ArgumentTypeError(f"must be {extra}{_text(low, high)}; got {text!r}")
        return value
    parse.__name__ = f"integer in [{low}, {high}]"
    return parse


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False):
    """argparse type: a finite real number in the interval from ``low`` to ``high``
    (each end closed unless ``low_open`` / ``high_open``; None: unbounded)."""
    interval = (f"{'(' if low_open or low is None else '['}{'-inf' if low is None else f'{low:g}'}, "
                f"{'inf' if high is None else f'{high:g}'}{')' if high_open or high is None else ']'}")

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            raise argparse.ArgumentTypeError(f"must be a finite number in {interval}; got {text!r}")
        return value
    parse.__name__ = f"number in {interval}"
    return parse


def listing(item, *, at_least: int = 1):
    """argparse type: comma-separated values, each read by the argparse type ``item``
    (one of the above), distinct, at least ``at_least`` of them."""
    def parse(text):
        parts = [p.strip() for p in text.split(",")]
        try:
            values = [item(p) for p in parts if p]
        except argparse.ArgumentTypeError as exc:
            where = f" in {text!r}" if len(parts) > 1 else ""
            raise argparse.ArgumentTypeError(f"each entry {exc}{where}") from None
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise argparse.ArgumentTypeError(f"entries must be distinct; got {twice[0]!r} twice in "
                                             f"{text!r}")
        if len(values) < at_least:
            raise argparse.ArgumentTypeError(f"must list at least {at_least} comma-separated "
                                             f"values; got {text!r}")
        return values
    parse.__name__ = f"list of {item.__name__}"
    return parse


def common(args) -> None:
    """The options every study shares, beyond their argparse types: ``--workers`` at
    most 4 per core (more only queue) and ``--dpi`` at most :data:`MAX_DPI`."""
    cores = os.cpu_count() or 1
    if args.workers > 4 * cores:
        raise ValueError(f"--workers must be -1 (all cores) or an integer in [1, {4 * cores}] "
                         f"(4 per core; this machine has {cores}); got {args.workers}")
    if args.dpi > MAX_DPI:
        raise ValueError(f"--dpi must be an integer in [1, {MAX_DPI}] (matplotlib draws at most "
                         f"2^16 pixels a side); got {args.dpi}")


def held(elements: float, what: str) -> None:
    """Refuse a run that would hold more than :data:`MAX_ELEMENTS` numbers at once;
    ``what`` names the flags and values that make it so."""
    if elements > MAX_ELEMENTS:
        raise ValueError(f"{what} would hold about {elements:.3g} numbers in memory at once "
                         f"({8 * elements / 2**30:.3g} GiB), more than the {MAX_ELEMENTS // 2**27} "
                         "GiB a run may take; give smaller values")


def ladder(sizes, n: int, flag: str, where: str, *, least: int = 3) -> list:
    """The batch sizes of ``sizes`` that fit a data set of ``n`` examples (``where``
    names it, e.g. "the synthetic set (--n 1000)"): those up to ``n``, 'full' as ``n``.

    Refused, naming ``flag``, when fewer than ``least`` distinct sizes below ``n``
    remain (a fit of the exponent of B needs 3 sizes whose variance is not exactly
    0), or when N is listed beside 'full' (the same batch twice).
    """
    fit = [b for b in sizes if b == "full" or b <= n]
    if "full" in fit and n in fit:
        raise ValueError(f"{flag} lists {n} and 'full', the same batch for {where} (N = {n}); "
                         "give one of them")
    below = [b for b in fit if b != "full" and b < n]
    if len(below) < least:
        raise ValueError(f"{flag} must hold at least {least} sizes below N = {n} of {where} (sizes "
                         f"above N are skipped there); got {','.join(map(str, sizes))}")
    return fit


def phase(args, label: str, total: float = 1):
    """The study's progress bar over one phase (:func:`lossvar.engine.phase`), shown
    when ``--progress`` asks for it (by default, when stderr is a terminal)."""
    from .. import engine

    return engine.phase(label, total, enabled=progress_shown(args))


def progress_shown(args) -> bool:
    """Whether a run shows progress bars: ``--progress``/``--no-progress``, by
    default when stderr is a terminal."""
    import sys

    progress = getattr(args, "progress", None)
    return sys.stderr.isatty() if progress is None else bool(progress)
