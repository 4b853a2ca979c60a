"""Input validation shared by every public entry point.

Each public function calls these once, at the top, so that the algorithm that
follows reads clean (the scipy.stats habit). Every error names the parameter,
what is allowed and the value given (the convention of scipy.stats and seaborn).
"""

from __future__ import annotations

import numbers
import operator

import numpy as np

from .streams import as_seed_sequence, stream  # noqa: F401  (until every caller imports them from streams)


def as_int(value, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as a Python int, or raise naming ``name`` and the range.

    Booleans and floats are refused rather than coerced (``2.5`` is not a
    batch size, and neither is ``True``).
    """
    allowed = _range_text(low, high)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer {allowed}; got {value!r}")
    value = operator.index(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"`{name}` must be an integer {allowed}; got {value!r}")
    return value


def as_float(
    value,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a finite Python float inside the given interval."""
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    interval = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a finite real number in {interval}; got {value!r}")
    x = float(value)
    bad = not np.isfinite(x)
    if low is not None:
        bad |= x <= low if low_open else x < low
    if high is not None:
        bad |= x >= high if high_open else x > high
    if bad:
        raise ValueError(f"`{name}` must be a finite real number in {interval}; got {value!r}")
    return x


def as_choice(value, name: str, choices) -> str:
    """Return ``value`` if it is one of ``choices``, else raise listing them."""
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"The value for `{name}` must be one of {listed}, but {value!r} was passed.")
    return value


def as_finite_array(values, name: str, *, ndim: int | None = None) -> np.ndarray:
    """Return a float64 array with no NaN or inf, or raise saying how many and where."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`{name}` must be an array of real numbers; got {type(values).__name__}") from exc
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"`{name}` must be a {ndim}-D array; got an array of shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        where = first[0] if len(first) == 1 else first
        raise ValueError(
            f"`{name}` must be finite; got {int(bad.sum())} NaN or inf value(s), "
            f"the first at index {where}"
        )
    return arr


def _range_text(low, high) -> str:
    if low is not None and high is not None:
        return f"in [{low}, {high}]"
    if low is not None:
        return f">= {low}"
    if high is not None:
        return f"<= {high}"
    return ""
