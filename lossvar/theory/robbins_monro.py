"""The Robbins-Monro conditions, decided exactly or from a schedule's tail (docs/theory.md, section 5).

:func:`family_verdict` decides ``sum eta_k = inf`` and ``sum eta_k^2 < inf``
exactly for the families of :mod:`lossvar.schedules` (integral test,
geometric series); :func:`tail_verdict` decides them numerically from the
values of any step-size sequence at the log-spaced steps :data:`TAIL_K`,
or says it cannot. :func:`lossvar.robbins_monro` picks one of the two for a
schedule; this module knows nothing of schedule objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .._result import ResultBase

__all__ = ["TAIL_K", "RobbinsMonroResult", "family_verdict", "tail_verdict"]

_NOTE = (
    "The Robbins-Monro conditions (sum eta_k = inf, sum eta_k^2 < inf) are sufficient, "
    "not necessary: on a strongly convex problem with finite-variance noise any "
    "eta_k -> 0 with sum eta_k = inf converges in mean square, including c/k^p with "
    "p <= 1/2 (more slowly); only sum eta_k < inf stalls, and a constant step plateaus "
    "(docs/theory.md, section 5)."
)


@dataclass(frozen=True)
class RobbinsMonroResult(ResultBase):
    """Verdict on the Robbins-Monro conditions for one schedule.

    A result (docs/guide/results.md): ``to_frame()`` is one row of its fields.
    The verdict is decided, not estimated: it has no interval (``confidence``
    is None).

    Attributes
    ----------
    sum_diverges : bool or None
        Whether sum_k eta_k = infinity; None when inconclusive.
    sum_squares_converges : bool or None
        Whether sum_k eta_k^2 < infinity; None when inconclusive.
    satisfied : bool or None
        Both of the above: False as soon as one fails, True when both hold,
        None otherwise.
    basis : str
        How it was decided: exactly from the schedule's family, or numerically
        from the tail of eta_k (with the estimates used).
    note : str
        That the conditions are sufficient, not necessary.
    """

    sum_diverges: bool | None
    sum_squares_converges: bool | None
    satisfied: bool | None
    basis: str
    note: str = _NOTE
    confidence: ClassVar[None] = None

    def summary(self) -> str:
        """The verdict on each condition, how it was decided, and the note."""
        def word(v):
            return "inconclusive" if v is None else ("yes" if v else "no")

        return (
            f"Robbins-Monro conditions satisfied: {word(self.satisfied)} "
            f"(sum eta_k = inf: {word(self.sum_diverges)}; "
            f"sum eta_k^2 < inf: {word(self.sum_squares_converges)}).\n"
            f"Basis: {self.basis}\n{self.note}"
        )


def _report(sum_diverges, sum_squares_converges, basis) -> RobbinsMonroResult:
    if sum_diverges is False or sum_squares_converges is False:
        satisfied = False
    elif sum_diverges and sum_squares_converges:
        satisfied = True
    else:
        satisfied = None
    return RobbinsMonroResult(sum_diverges, sum_squares_converges, satisfied, basis)


# -- exact: the families -----------------------------------------------------------------

#: The families :func:`family_verdict` decides, with the parameters each verdict reads.
FAMILIES = {"constant": (), "polynomial": ("p",), "inverse_time": (), "exponential": ("gamma",),
            "step": ("factor",), "cosine": ("total_steps",)}


def family_verdict(family: str, **params) -> RobbinsMonroResult:
    """The exact verdict for a schedule family (integral test and geometric series).

    - ``"polynomial"``, eta_k = c/(k + k0)^p: sum eta_k = inf iff p <= 1,
      sum eta_k^2 < inf iff p > 1/2, so satisfied iff 1/2 < p <= 1;
    - ``"inverse_time"``, eta0/(1 + k/k0) ~ eta0 k0 / k: satisfied;
    - ``"constant"``, and ``"step"`` with ``factor`` 1 or ``"exponential"``
      with ``gamma`` 1: not (sum eta_k^2 = inf);
    - ``"exponential"`` (gamma < 1), ``"step"`` (factor < 1): both sums
      finite, not satisfied; ``"cosine"``: eta_k = 0 for k > ``total_steps``,
      both sums finite.

    Parameters
    ----------
    family : str
        One of :data:`FAMILIES`.
    **params
        The family's parameters (those of :data:`FAMILIES` are read; others
        are ignored, so a schedule's fields may be passed whole).

    References
    ----------
    Robbins & Monro (1951), Ann. Math. Stat. 22:400; docs/theory.md, section 5.
    """
    if family not in FAMILIES:
        raise ValueError(f"`family` must be one of {', '.join(map(repr, FAMILIES))}; got {family!r}")
    missing = [name for name in FAMILIES[family] if name not in params]
    if missing:
        raise TypeError(f"the {family} family needs {', '.join(f'`{m}`' for m in missing)}")
    geometric = "exact: eta_k decays geometrically, so both sums are finite"
    constant_step = "exact: a constant step, so sum eta_k = sum eta_k^2 = inf"
    if family == "constant":
        return _report(True, False, constant_step)
    if family == "polynomial":
        p = params["p"]
        return _report(
            p <= 1, p > 0.5,
            f"exact: eta_k = c/(k + k0)^p with p = {p!r}; by the integral test "
            "sum eta_k = inf iff p <= 1 and sum eta_k^2 < inf iff p > 1/2",
        )
    if family == "inverse_time":
        return _report(True, True, "exact: eta0/(1 + k/k0) ~ eta0 k0 / k (p = 1)")
    if family in ("exponential", "step"):
        if params["gamma" if family == "exponential" else "factor"] == 1:
            return _report(True, False, constant_step)
        return _report(False, True, geometric)
    return _report(False, True, f"exact: eta_k = 0 for k > total_steps = {params['total_steps']}, "
                   "so both sums are finite")


# -- numeric: the tail of any sequence ---------------------------------------------------

#: The steps at which :func:`tail_verdict` reads eta_k: 81 log-spaced k in [10^3, 10^7].
TAIL_K = np.unique(np.round(np.logspace(3, 7, 81)).astype(np.int64))
_WINDOWS = [slice(10 * i, 10 * i + 11) for i in range(8)]  # half-decades, shared ends
_DELTA = 0.02
_FLAT = 1e-9


def _slope(x, y) -> tuple[float, float]:
    """The least-squares slope of y on x and its standard error from the scatter,
    ``sqrt(chi2 / (n - 2) / sxx)`` (the unweighted case of :func:`lossvar.stats.line_fit`,
    in its order of operations)."""
    n = x.size
    xbar = np.sum(x) / float(n)
    dx = x - xbar
    sxx = float(np.sum(dx * dx))
    ybar = y.sum() / float(n)
    slope = ((y - ybar) * dx).sum() / sxx
    intercept = ybar - slope * xbar
    resid = y - intercept - slope * x
    return slope, np.sqrt((resid * resid).sum() / (n - 2) / sxx)


def _local_exponents(x, y):
    """Least-squares slopes -p of y on x per half-decade, with standard errors."""
    fits = [_slope(x[w], y[w]) for w in _WINDOWS]
    return (np.array([-slope for slope, _ in fits]), np.array([se for _, se in fits]),
            np.array([x[w].mean() for w in _WINDOWS]))


def _tends_to_constant(z) -> bool:
    """Whether the window means z of ln(k eta_k^m) settle (flat or geometric changes)."""
    d = np.abs(np.diff(z))[-4:]
    if (d[-3:] <= _FLAT).all():
        return True
    return bool((d[1:] <= 0.5 * d[:-1]).all())


def tail_verdict(eta) -> RobbinsMonroResult:
    """The verdict from eta_k at the steps :data:`TAIL_K`, or inconclusive.

    For m = 1 (sum eta_k) and m = 2 (sum eta_k^2), with q = m p:

    1. If eta_k = 0 at every sampled k from some point on, both sums are
       finite (a schedule that underflows, such as 0.9**k). Zeros followed by
       positive values are inconclusive.
    2. The local exponent p (eta_k ~ k^-p) is the least-squares log-log slope
       over each of 8 half-decades; ``p_end`` is the last one and ``p_inf``
       the intercept of a fit p = p_inf + b / ln k over the 8, which removes a
       log factor (k^-p (ln k)^-b has local exponent exactly p + b / ln k).
    3. If both m p_end and m p_inf exceed 1 + delta, sum eta_k^m converges; if
       both are below 1 - delta, it diverges (comparison with k^-q). Here
       delta = 0.02 plus 5 m standard errors of the local slopes, so noisy or
       irregular tails widen the band.
    4. Otherwise (q near 1) the sum diverges if k eta_k^m tends to a positive
       constant c: the half-decade means of ln(k eta_k^m) stop changing (to
       1e-9) or their changes shrink geometrically (each at most half the
       previous one, three times running). Then sum eta_k^m ~ c (ln n +
       0.5772...), the harmonic expansion, without bound. A log factor
       (1/(k ln k) diverges, 1/(k (ln k)^2) converges) shows as changes that
       shrink only like 1/ln k: inconclusive, since no finite range of k can
       tell these apart.
    5. Anything else is inconclusive (None): the function never guesses.

    The verdict resolves exponents only to about 1e-9 from the threshold:
    k^-(1 + 1e-10) is judged like 1/k.

    Parameters
    ----------
    eta : array_like, shape (len(TAIL_K),)
        eta_k at the steps :data:`TAIL_K`, finite and >= 0.

    References
    ----------
    Robbins & Monro (1951), Ann. Math. Stat. 22:400; docs/theory.md, section 5.
    """
    eta = np.asarray(eta, dtype=np.float64)
    if eta.shape != TAIL_K.shape or not np.all(np.isfinite(eta)) or np.any(eta < 0):
        raise ValueError(f"`eta` must hold {TAIL_K.size} finite values >= 0, eta_k at the steps TAIL_K; "
                         f"got shape {eta.shape}")
    zero = eta == 0
    if zero.any():
        first = int(np.argmax(zero))
        if zero[first:].all():
            return _report(False, True, (
                f"numeric: eta_k = 0 at every sampled k >= {TAIL_K[first]} (up to 10^7); "
                "taken as eventually zero, so both sums are finite"))
        return _report(None, None, "numeric: eta_k is zero at some sampled k in "
                       "[10^3, 10^7] and positive at larger ones; inconclusive")
    x, y = np.log(TAIL_K.astype(np.float64)), np.log(eta)
    p, se, xm = _local_exponents(x, y)
    _, p_inf = np.polyfit(1.0 / xm, p, 1)
    p_end = p[-1]
    zmeans = {m: np.array([(x[w] + m * y[w]).mean() for w in _WINDOWS]) for m in (1, 2)}

    def converges(m):
        term = "eta_k" if m == 1 else "eta_k^2"
        low, high = m * min(p_end, p_inf), m * max(p_end, p_inf)
        margin = _DELTA + 5 * m * se.max()
        if low > 1 + margin:
            return True, f"m p > 1 + {margin:.3g}, converges"
        if high < 1 - margin:
            return False, f"m p < 1 - {margin:.3g}, diverges"
        if _tends_to_constant(zmeans[m]):
            c = math.exp(zmeans[m][-1])
            return False, f"k {term} -> c = {c:.4g}, diverges like c (ln n + 0.5772)"
        return None, f"m p within {margin:.3g} of 1 and k {term} not settled, inconclusive"

    conv1, why1 = converges(1)
    conv2, why2 = converges(2)
    basis = (
        f"numeric, from eta_k at 81 log-spaced k in [10^3, 10^7]: local exponent "
        f"p = {p_end:.6g} over the last half-decade, extrapolated p_inf = {p_inf:.6g}; "
        f"sum eta_k (m = 1): {why1}; sum eta_k^2 (m = 2): {why2}"
    )
    return _report(None if conv1 is None else not conv1, conv2, basis)
