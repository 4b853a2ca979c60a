"""Mergeable streaming central moments (count, mean, M2, M3, M4).

A block of replicate values is summarized by :meth:`Moments.of`, and two
summaries are combined by :meth:`Moments.merge` with the pairwise update
formulas of Pebay (2008), so memory does not grow with the number of
replicates. Merging in a fixed block order makes the result a function of the
blocks alone, not of how they were grouped into chunks or which worker made
them.

References
----------
P. Pebay (2008), "Formulas for robust, one-pass parallel computation of
covariances and arbitrary-order statistical moments", Sandia report
SAND2008-6212, eqs. 3.1 and 2.1-2.3. T. Chan, G. Golub and R. LeVeque (1979),
"Updating formulae and a pairwise algorithm for computing sample variances".
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

import numpy as np


@dataclass(frozen=True)
class Moments:
    """Count, mean and sums of powered deviations ``M_p = sum (x - mean)^p``."""

    count: int
    mean: float
    m2: float
    m3: float
    m4: float

    @classmethod
    def empty(cls) -> Moments:
        return cls(0, 0.0, 0.0, 0.0, 0.0)

    @classmethod
    def of(cls, x) -> Moments:
        """Two-pass moments of the values ``x`` (a 1-D array)."""
        x = np.asarray(x, dtype=np.float64)
        n = x.size
        if n == 0:
            return cls.empty()
        return cls(n, *block_moments(x))

    def merge(self, other: Moments) -> Moments:
        """Moments of the union of the two samples (Pebay 2008, eq. 3.1)."""
        na, nb = self.count, other.count
        if nb == 0:
            return self
        if na == 0:
            return other
        n = na + nb
        delta = other.mean - self.mean
        dn = delta / n
        mean = self.mean + nb * dn
        m2 = self.m2 + other.m2 + delta * dn * na * nb
        m3 = (self.m3 + other.m3 + delta * dn * dn * na * nb * (na - nb)
              + 3.0 * dn * (na * other.m2 - nb * self.m2))
        m4 = (self.m4 + other.m4
              + delta * dn * dn * dn * na * nb * (na * na - na * nb + nb * nb)
              + 6.0 * dn * dn * (na * na * other.m2 + nb * nb * self.m2)
              + 4.0 * dn * (na * other.m3 - nb * self.m3))
        return Moments(n, mean, m2, m3, m4)

    @staticmethod
    def merge_all(parts) -> Moments:
        """Merge summaries left to right, in the order given."""
        return reduce(Moments.merge, parts, Moments.empty())

    @property
    def variance(self) -> float:
        """Sample variance ``S2 = M2 / (n - 1)`` (ddof = 1)."""
        return self.m2 / (self.count - 1) if self.count > 1 else float("nan")

    @property
    def skewness(self) -> float:
        """Moment skewness ``m3 / m2^(3/2)`` with ``m_p = M_p / n``."""
        n = self.count
        return float(np.sqrt(n) * self.m3 / self.m2**1.5) if self.m2 > 0 else float("nan")

    @property
    def kurtosis(self) -> float:
        """Moment (non-excess) kurtosis ``m4 / m2^2`` with ``m_p = M_p / n``."""
        return float(self.count * self.m4 / self.m2**2) if self.m2 > 0 else float("nan")

    def mean_se(self) -> float:
        """Standard error of the mean, ``sqrt(S2 / n)`` (NaN for n < 2)."""
        return float(np.sqrt(self.variance / self.count)) if self.count > 1 else float("nan")

    def variance_se(self) -> float:
        """Plug-in standard error of the sample variance ``S2``.

        ``Var(S2) = (mu4 - sigma^4 (R - 3)/(R - 1)) / R`` with ``mu4`` estimated
        by ``m4 = M4 / R`` and ``sigma^2`` by ``S2`` (Morris, White & Crowther
        2019, Table 6; docs/theory.md, section 2). Valid without normality; under
        normality it reduces to ``S2 sqrt(2/(R - 1))``.
        """
        r = self.count
        if r < 2:
            return float("nan")
        s2 = self.variance
        var_s2 = (self.m4 / r - s2 * s2 * (r - 3) / (r - 1)) / r
        return float(np.sqrt(max(var_s2, 0.0)))


def block_moments(x: np.ndarray, work: np.ndarray | None = None) -> tuple[float, float, float, float]:
    """``(mean, M2, M3, M4)`` of a non-empty 1-D float64 array, two-pass.

    The arithmetic of :meth:`Moments.of` (which calls it), bit for bit. With
    ``work``, a float64 array of shape ``(3, x.size)`` or larger in its second
    axis, the deviations and their powers are written there instead of into
    new arrays: the same operations in the same order, so the same bits.
    """
    mean = float(x.mean())
    if work is None:
        d = x - mean
        d2 = d * d
        return mean, float(d2.sum()), float((d2 * d).sum()), float((d2 * d2).sum())
    n = x.size
    d, d2, t = work[0, :n], work[1, :n], work[2, :n]
    np.subtract(x, mean, out=d)
    np.multiply(d, d, out=d2)
    m2 = float(d2.sum())
    np.multiply(d2, d, out=t)
    m3 = float(t.sum())
    np.multiply(d2, d2, out=t)
    return mean, m2, m3, float(t.sum())
