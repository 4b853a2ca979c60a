"""Array helpers shared by the modules of :mod:`lossvar.noise`."""

from __future__ import annotations

import numpy as np

#: float64 machine epsilon, 2u (twice the unit roundoff).
EPS = float(np.finfo(np.float64).eps)


def ratio(num, den):
    """num / den, with x/0 = +-inf for x != 0 and 0/0 = NaN (IEEE, without warnings)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(num, den)


def frozen(arr) -> np.ndarray:
    """A read-only float64 copy, for the array fields of frozen results."""
    arr = np.array(arr, dtype=np.float64, copy=True)
    arr.flags.writeable = False
    return arr
