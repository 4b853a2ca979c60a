"""Moments: mergeable streaming central moments, and the exact moments of a fixed set of losses.

:class:`Moments` (count, mean, M2, M3, M4) summarizes a block of replicate
values (:meth:`Moments.of`), and two summaries are combined by
:meth:`Moments.merge` with the pairwise update formulas of Pebay (2008), so
memory does not grow with the number of replicates. Merging in a fixed block
order makes the result a function of the blocks alone, not of how they were
grouped into chunks or which worker made them.

:class:`MomentsPass` is the summation kernel behind
:func:`lossvar.theory.population_moments`: the mean, variance and central
moments of N losses in two passes on numpy's pairwise summation tree, the
second pass shareable with a helper thread (:class:`PopulationMoments`).

This module imports only the package's low-level plumbing (validation,
threads, scratch buffers): the engine and the theory both build on it.

References
----------
P. Pebay (2008), "Formulas for robust, one-pass parallel computation of
covariances and arbitrary-order statistical moments", Sandia report
SAND2008-6212, eqs. 3.1 and 2.1-2.3. T. Chan, G. Golub and R. LeVeque (1979),
"Updating formulae and a pairwise algorithm for computing sample variances".
"""

from __future__ import annotations

import _thread
import math
from dataclasses import dataclass
from functools import reduce

import numpy as np

from . import _threads
from ._validate import as_finite_array
from .scratch import scratch
from .typing import ArrayLike

__all__ = ["Moments", "MomentsPass", "PopulationMoments", "block_moments"]


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


# -- the exact moments of a fixed set of losses ------------------------------------------


@dataclass(frozen=True)
class PopulationMoments:
    r"""The exact moments of a fixed set of ``N`` losses (divisor N).

    Made by :class:`MomentsPass`, and returned by
    :func:`lossvar.theory.population_moments`.

    Attributes
    ----------
    n : int
        N.
    mean : float
        ``losses.mean()``, bit for bit.
    variance : float
        :math:`s^2`, the mean squared deviation from ``mean``:
        ``np.var(losses)``, bit for bit.
    mu2, mu4 : float
        The central moments :math:`\mu_2, \mu_4`,
        taken about the exact mean to working precision (the rounding error of
        ``mean`` removed); 0 for equal losses. ``mu2`` equals ``variance`` up
        to that rounding.
    """

    n: int
    mean: float
    variance: float
    mu2: float
    mu4: float


class MomentsPass:
    """The summation kernel of :func:`lossvar.theory.population_moments`, in steps.

    Validated at once, the second pass shareable with a helper thread:
    ``MomentsPass(losses).result()`` is ``population_moments(losses)``, for an
    engine that has other work to do while the pass runs (:func:`lossvar.loss_variance`
    draws its batches meanwhile).

    Making it validates ``losses`` (errors name ``losses``) and takes their
    mean, in the calling thread. The second pass is cut into the leaves of
    numpy's pairwise summation tree; :meth:`start_helper` lets one helper
    thread sum leaves while the caller does other work, and :meth:`result`
    sums the leaves still untaken in the calling thread, waits for the
    helper's and adds them all up on the tree. Which thread sums which leaf
    never changes a bit: each leaf is one reduction of a fixed slice, and
    the tree that adds them up is fixed by N. :meth:`close` stops the helper
    (it takes no further leaf) and waits for it; :meth:`result` closes too.

    Attributes
    ----------
    x : ndarray
        The validated float64 losses (``losses`` itself where it is one).
    n : int
    mean : float
        ``x.mean()``, bit for bit.
    """

    def __init__(self, losses: ArrayLike):
        try:
            x = np.asarray(losses, dtype=np.float64)
        except (TypeError, ValueError):
            x = None
        if x is None or x.ndim != 1:
            x = as_finite_array(losses, "losses", ndim=1)  # raises, naming the problem
        if x.size == 0:
            raise ValueError("`losses` must be a non-empty 1-D array of per-sample losses; got size 0")
        # The finiteness check rides on the mean (a NaN or inf makes it non-finite);
        # only then does the full check run, for its message.
        with np.errstate(over="ignore"):
            mean = float(x.mean())
        self.x, self.n, self.mean = x, x.size, mean
        self._result: PopulationMoments | None = None
        self._helper: _threads.Later | None = None  # while a helper thread runs
        self._error: BaseException | None = None
        if not math.isfinite(mean):
            as_finite_array(x, "losses")
            nan = float("nan")  # finite losses whose sum overflows
            self._result = PopulationMoments(x.size, mean, nan, nan, nan)
            return
        self._leaves = _leaves(self.n)
        self._sums: list = [None] * len(self._leaves)
        self._claim = _thread.allocate_lock()  # guards _taken and _stop
        self._taken = 0
        self._stop = False

    def start_helper(self) -> None:
        """Let one helper thread sum leaves of the second pass from now on.

        The helper sums into a buffer of the calling thread's scratch (kept for
        the next call; :meth:`result` and :meth:`close` wait for the helper, so
        no two threads ever use it at once) under the caller's numpy error
        state; an error it meets is raised by :meth:`result`
        (:class:`lossvar._threads.Later`). A pass of one leaf is not shared.
        """
        if self._result is not None or self._helper is not None or len(self._leaves) < 2:
            return
        work = scratch("population_moments_helper", (3, min(self.n, _LEAF)))
        self._helper = _threads.Later(self._work, work)

    def _work(self, work):
        """Sum leaves, claimed one at a time, until none is left or the pass is closed."""
        leaves, sums, x, mean = self._leaves, self._sums, self.x, self.mean
        while True:
            with self._claim:
                i = self._taken
                if self._stop or i == len(leaves):
                    return
                self._taken = i + 1
            sums[i] = _powers(x, mean, *leaves[i], work)

    def close(self) -> None:
        """Stop the helper thread, if any, after the leaf it is summing, and wait for it."""
        running = self._helper
        if running is None:
            return
        with self._claim:
            self._stop = True
        self._helper = None
        running.wait()  # the helper must be done with the buffer before this thread goes on
        self._error = running.error

    def result(self) -> PopulationMoments:
        """The :class:`PopulationMoments`; leaves the helper has not taken are summed here."""
        if self._result is not None:
            return self._result
        work = scratch("population_moments", (3, min(self.n, _LEAF)))
        try:
            self._work(work)
        finally:
            self.close()
        if self._error is not None:
            raise self._error
        for i, s in enumerate(self._sums):  # leaves untaken when the pass was closed
            if s is None:
                self._sums[i] = _powers(self.x, self.mean, *self._leaves[i], work)
        sums = iter(self._sums)
        self._result = _finish(self.x, self.mean, *_pairwise(0, self.n, lambda a, b: next(sums)))
        return self._result


#: Values per leaf of the pairwise sums of :class:`MomentsPass`: the
#: work buffer (3 rows of 512 KiB, reused leaf after leaf) stays in cache, and
#: 10^6 losses take 16 leaves, so the Python cost per leaf is small beside the
#: arithmetic (measured: 2**15 and 2**17 are no faster).
_LEAF = 1 << 16

#: :class:`MomentsPass` corrects the deviations' mean ``dm`` algebraically
#: while ``dm**2 <= _SHIFT * s2`` (the mean's rounding error far below the
#: spread), dropping the ``dm * mean(d**3)`` term of ``mu4`` while its bound is
#: below ``_DROPPED * mu4``; otherwise it centres again in a second pass.
_SHIFT = 2.0**-20
_DROPPED = 2.0**-50


def _pairwise(start, n, leaf):
    """numpy's pairwise summation tree over ``n`` values from ``start``.

    ``leaf(a, b)`` returns a list of sums over values ``a..b-1``, each by one
    ``add.reduce`` along a contiguous row (the same tree below ``_LEAF``);
    above it the tree is numpy's own (halves rounded down to a multiple of
    8), so every total has the bits of one ``sum`` over the whole array.
    Leaves are visited left to right.
    """
    if n <= _LEAF:
        return leaf(start, start + n)
    half = n // 2
    half -= half % 8
    left, right = _pairwise(start, half, leaf), _pairwise(start + half, n - half, leaf)
    return [a + b for a, b in zip(left, right, strict=True)]


def _leaves(n) -> list[tuple[int, int]]:
    """The leaves ``(a, b)`` of :func:`_pairwise` over ``n`` values, left to right."""
    out: list[tuple[int, int]] = []

    def leaf(a, b):
        out.append((a, b))
        return [0.0]

    _pairwise(0, n, leaf)
    return out


def _finish(x, mean, sum_d, sum_d2, sum_d4) -> PopulationMoments:
    """The moments from the leaf sums of ``d = x - mean``, ``d**2`` and ``d**4``."""
    n = x.size
    s2 = sum_d2 / n  # np.var: the same deviations, squares and tree
    dm, d4 = sum_d / n, sum_d4 / n
    if dm * dm <= _SHIFT * s2 and 4.0 * abs(dm) * math.sqrt(s2 * d4) <= _DROPPED * d4:
        return PopulationMoments(n, mean, s2, s2 - dm * dm, d4 + dm * dm * (6.0 * s2 - 3.0 * dm * dm))
    # The mean is large against the spread (or the losses are equal): centre again.
    if x.min() == x.max():  # a rounded mean of equal values need not equal them
        return PopulationMoments(n, mean, s2, 0.0, 0.0)
    work = scratch("population_moments", (3, min(n, _LEAF)))

    def centred(a, b):
        w = work[:, :b - a]
        y = np.subtract(x[a:b], mean, out=w[0])
        np.subtract(y, dm, out=y)
        np.multiply(y, y, out=w[1])
        np.multiply(w[1], w[1], out=w[2])
        return np.add.reduce(w[1:], axis=1).tolist()

    sum_y2, sum_y4 = _pairwise(0, n, centred)
    return PopulationMoments(n, mean, s2, sum_y2 / n, sum_y4 / n)


def _powers(x, mean, a, b, work) -> list:
    """The sums of ``d``, ``d**2`` and ``d**4`` over ``d = x[a:b] - mean``, one leaf of the tree."""
    w = work[:, :b - a]
    d = np.subtract(x[a:b], mean, out=w[0])
    np.multiply(d, d, out=w[1])
    np.multiply(w[1], w[1], out=w[2])
    return np.add.reduce(w, axis=1).tolist()
