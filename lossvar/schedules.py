"""Step-size schedules and the Robbins-Monro conditions.

A schedule is a plain callable of the step ``k = 1, 2, ...``: ``k`` is the
1-based index of the update being made, so ``eta_1`` is the step size of the
first update (the convention of docs/theory.md, section 5, where eta_k = c / k^p).
Every schedule here is a small frozen dataclass, so that :func:`robbins_monro`
can recognise its family and decide the conditions exactly, and every one
accepts a numpy array of ``k`` as well as an int (for the numeric path of
:func:`robbins_monro` and for plots).

Any other callable ``k -> eta_k`` is accepted wherever a schedule is:
:func:`as_schedule` wraps it so that a negative or non-finite value is
refused at the step where it happens.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._validate import as_float, as_int
from .stats import line_fit
from .typing import ScheduleLike

__all__ = [
    "Constant",
    "Cosine",
    "Exponential",
    "InverseTime",
    "Polynomial",
    "RobbinsMonroReport",
    "Step",
    "UserSchedule",
    "as_schedule",
    "constant",
    "cosine",
    "exponential",
    "inverse_time",
    "polynomial",
    "robbins_monro",
    "step",
]


def _result(k, value):
    """A float for a scalar ``k``, an array for an array of ``k``."""
    return float(value) if np.ndim(k) == 0 else value


# -- the families --------------------------------------------------------------------


@dataclass(frozen=True)
class Constant:
    """eta_k = eta."""

    eta: float

    def __call__(self, k):
        return _result(k, np.full(np.shape(k), self.eta))


@dataclass(frozen=True)
class InverseTime:
    """eta_k = eta0 / (1 + k / k0)."""

    eta0: float
    k0: float

    def __call__(self, k):
        return _result(k, self.eta0 / (1.0 + np.asarray(k, dtype=np.float64) / self.k0))


@dataclass(frozen=True)
class Polynomial:
    """eta_k = c / (k + k0)^p."""

    c: float
    p: float
    k0: float = 0.0

    def __call__(self, k):
        return _result(k, self.c / (np.asarray(k, dtype=np.float64) + self.k0) ** self.p)


@dataclass(frozen=True)
class Exponential:
    """eta_k = eta0 * gamma^(k - 1)."""

    eta0: float
    gamma: float

    def __call__(self, k):
        return _result(k, self.eta0 * self.gamma ** (np.asarray(k, dtype=np.float64) - 1.0))


@dataclass(frozen=True)
class Step:
    """eta_k = eta0 * factor^floor((k - 1) / every)."""

    eta0: float
    factor: float
    every: int

    def __call__(self, k):
        drops = np.floor((np.asarray(k, dtype=np.float64) - 1.0) / self.every)
        return _result(k, self.eta0 * self.factor**drops)


@dataclass(frozen=True)
class Cosine:
    """eta_k = eta0 * (1 + cos(pi * min(k - 1, T) / T)) / 2 with T = total_steps."""

    eta0: float
    total_steps: int

    def __call__(self, k):
        done = np.minimum(np.asarray(k, dtype=np.float64) - 1.0, self.total_steps)
        return _result(k, self.eta0 * 0.5 * (1.0 + np.cos(np.pi * done / self.total_steps)))


@dataclass(frozen=True)
class UserSchedule:
    """A user callable ``k -> eta_k`` whose values are checked when they are made.

    A negative or non-finite value raises ValueError naming the schedule and
    the step ``k``; zero is allowed (a schedule may anneal to 0).
    """

    fn: Callable
    name: str = "lr"

    def __call__(self, k):
        return self.check(k, self.fn(k))

    def check(self, k, out):
        """Return ``out``, the value(s) at ``k``, as float(s) after the checks."""
        try:
            values = np.asarray(out, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"`{self.name}` schedule must return real numbers; got {out!r} at step k={k}"
            ) from exc
        if values.shape != np.shape(k):
            raise TypeError(
                f"`{self.name}` schedule must return one value per step; got an array of "
                f"shape {values.shape} for k of shape {np.shape(k)}"
            )
        bad = ~(values >= 0) | ~np.isfinite(values)
        if bad.any():
            first = tuple(np.argwhere(bad)[0])
            at_k = float(np.asarray(k)[first])
            raise ValueError(
                f"`{self.name}` schedule returned {float(values[first])!r} at step "
                f"k={int(at_k) if at_k.is_integer() else at_k}; "
                "step sizes must be finite and >= 0"
            )
        return _result(k, values)


_FAMILIES = (Constant, InverseTime, Polynomial, Exponential, Step, Cosine)


# -- factories -----------------------------------------------------------------------


def _positive(value, name):
    return as_float(value, name, low=0, low_open=True)


def constant(eta) -> Constant:
    """Constant step size, eta_k = eta.

    Parameters
    ----------
    eta : float
        The step size, > 0.

    Examples
    --------
    >>> constant(0.1)(7)
    0.1
    """
    return Constant(_positive(eta, "eta"))


def inverse_time(eta0, k0) -> InverseTime:
    """Inverse-time decay, eta_k = eta0 / (1 + k / k0).

    Asymptotically eta0 k0 / k, so the Robbins-Monro conditions hold. Note
    that eta_1 = eta0 / (1 + 1/k0), not eta0 (Keras' ``InverseTimeDecay``
    counts steps from 0; use ``k0`` large or shift ``eta0`` to match it).

    Parameters
    ----------
    eta0 : float
        Scale, > 0.
    k0 : float
        Time scale of the decay, > 0.
    """
    return InverseTime(_positive(eta0, "eta0"), _positive(k0, "k0"))


def polynomial(c, p, k0=0) -> Polynomial:
    """Polynomial decay, eta_k = c / (k + k0)^p (docs/theory.md, section 5).

    Satisfies the Robbins-Monro conditions exactly when 1/2 < p <= 1.

    Parameters
    ----------
    c : float
        Scale, > 0.
    p : float
        Exponent, > 0.
    k0 : float, optional
        Offset, >= 0; ``k0 = 0`` gives c / k^p.

    Examples
    --------
    >>> polynomial(1.0, 1.0)(4)
    0.25
    """
    return Polynomial(_positive(c, "c"), _positive(p, "p"), as_float(k0, "k0", low=0))


def exponential(eta0, gamma) -> Exponential:
    """Exponential decay, eta_k = eta0 * gamma^(k - 1), so eta_1 = eta0.

    This is PyTorch's ``ExponentialLR`` and optax's ``exponential_decay`` with
    ``transition_steps=1``, both of which count steps from 0.

    Parameters
    ----------
    eta0 : float
        First step size, > 0.
    gamma : float
        Decay per step, in (0, 1]; ``gamma = 1`` is a constant step.
    """
    return Exponential(_positive(eta0, "eta0"), as_float(gamma, "gamma", low=0, high=1,
                                                         low_open=True))


def step(eta0, factor, every) -> Step:
    """Step decay, eta_k = eta0 * factor^floor((k - 1) / every).

    The first ``every`` updates use eta0, then the step size is multiplied by
    ``factor`` every ``every`` updates (PyTorch's ``StepLR``).

    Parameters
    ----------
    eta0 : float
        First step size, > 0.
    factor : float
        Multiplier at each drop, in (0, 1]; ``factor = 1`` is a constant step.
    every : int
        Updates between drops, >= 1.
    """
    return Step(
        _positive(eta0, "eta0"),
        as_float(factor, "factor", low=0, high=1, low_open=True),
        as_int(every, "every", low=1),
    )


def cosine(eta0, total_steps) -> Cosine:
    """Cosine annealing, eta_k = eta0 (1 + cos(pi min(k - 1, T) / T)) / 2, T = total_steps.

    eta_1 = eta0 and eta_k = 0 for k > T (optax's ``cosine_decay_schedule``
    with ``alpha=0`` and PyTorch's ``CosineAnnealingLR`` with ``eta_min=0``,
    both of which count steps from 0).

    Parameters
    ----------
    eta0 : float
        First step size, > 0.
    total_steps : int
        T, the number of steps over which the step size anneals to 0, >= 1.
    """
    return Cosine(_positive(eta0, "eta0"), as_int(total_steps, "total_steps", low=1))


def as_schedule(lr, name: str = "lr"):
    """Normalize a step-size argument: a float or a schedule.

    A number becomes :func:`constant` after a check (finite and > 0; a
    constant step of 0 would never move). A schedule of this module is
    returned as is; any other callable is wrapped in :class:`UserSchedule`,
    which checks each value when it is made.

    Examples
    --------
    >>> as_schedule(0.1)
    Constant(eta=0.1)
    >>> as_schedule(lambda k: 1 / k)(4)
    0.25
    """
    if isinstance(lr, (*_FAMILIES, UserSchedule)):
        return lr
    if callable(lr):
        return UserSchedule(lr, name)
    if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, numbers.Real):
        raise TypeError(
            f"`{name}` must be a positive finite number or a callable k -> eta_k; got {lr!r}"
        )
    return Constant(as_float(lr, name, low=0, low_open=True))


# -- Robbins-Monro -------------------------------------------------------------------

_NOTE = (
    "The Robbins-Monro conditions (sum eta_k = inf, sum eta_k^2 < inf) are sufficient, "
    "not necessary: on a strongly convex problem with finite-variance noise any "
    "eta_k -> 0 with sum eta_k = inf converges in mean square, including c/k^p with "
    "p <= 1/2 (more slowly); only sum eta_k < inf stalls, and a constant step plateaus "
    "(docs/theory.md, section 5)."
)


@dataclass(frozen=True)
class RobbinsMonroReport:
    """Verdict on the Robbins-Monro conditions for one schedule.

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

    def __str__(self) -> str:
        def word(v):
            return "inconclusive" if v is None else ("yes" if v else "no")

        return (
            f"Robbins-Monro conditions satisfied: {word(self.satisfied)} "
            f"(sum eta_k = inf: {word(self.sum_diverges)}; "
            f"sum eta_k^2 < inf: {word(self.sum_squares_converges)}).\n"
            f"Basis: {self.basis}\n{self.note}"
        )


def _report(sum_diverges, sum_squares_converges, basis) -> RobbinsMonroReport:
    if sum_diverges is False or sum_squares_converges is False:
        satisfied = False
    elif sum_diverges and sum_squares_converges:
        satisfied = True
    else:
        satisfied = None
    return RobbinsMonroReport(sum_diverges, sum_squares_converges, satisfied, basis)


def robbins_monro(schedule: ScheduleLike) -> RobbinsMonroReport:
    """Decide the Robbins-Monro conditions sum eta_k = inf and sum eta_k^2 < inf.

    For the families of this module the verdict is exact (integral test and
    geometric series):

    - ``polynomial(c, p, k0)``: sum eta_k = inf iff p <= 1, sum eta_k^2 < inf
      iff p > 1/2, so satisfied iff 1/2 < p <= 1;
    - ``inverse_time``: ~ eta0 k0 / k, satisfied;
    - ``constant``, ``step`` with factor 1, ``exponential`` with gamma 1: not
      (sum eta_k^2 = inf);
    - ``exponential`` (gamma < 1), ``step`` (factor < 1), ``cosine``: both sums
      are finite, not satisfied.

    Any other callable gets a numeric verdict from its tail, eta_k for 81
    log-spaced k in [10^3, 10^7] (evaluated on an array of k if the callable
    accepts one and agrees with its scalar values, else one k at a time).
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

    The numeric verdict resolves exponents only to about 1e-9 from the
    threshold: k^-(1 + 1e-10) is judged like 1/k.

    Parameters
    ----------
    schedule : float or callable
        A schedule of this module, a user callable k -> eta_k, or a constant.

    Returns
    -------
    RobbinsMonroReport

    Raises
    ------
    ValueError
        If the callable raises, or returns a negative or non-finite value, at
        a sampled k (the message names k).

    Examples
    --------
    >>> robbins_monro(polynomial(1.0, 0.75)).satisfied
    True
    >>> robbins_monro(lambda k: 1 / k**2).satisfied
    False

    References
    ----------
    Robbins & Monro (1951), Ann. Math. Stat. 22:400. docs/theory.md, section 5.
    """
    schedule = as_schedule(schedule, name="schedule")
    if isinstance(schedule, UserSchedule):
        return _numeric_verdict(schedule)
    return _exact_verdict(schedule)


def _exact_verdict(s) -> RobbinsMonroReport:
    geometric = "exact: eta_k decays geometrically, so both sums are finite"
    constant_step = "exact: a constant step, so sum eta_k = sum eta_k^2 = inf"
    if isinstance(s, Constant):
        return _report(True, False, constant_step)
    if isinstance(s, Polynomial):
        return _report(
            s.p <= 1, s.p > 0.5,
            f"exact: eta_k = c/(k + k0)^p with p = {s.p!r}; by the integral test "
            "sum eta_k = inf iff p <= 1 and sum eta_k^2 < inf iff p > 1/2",
        )
    if isinstance(s, InverseTime):
        return _report(True, True, "exact: eta0/(1 + k/k0) ~ eta0 k0 / k (p = 1)")
    if isinstance(s, Exponential):
        if s.gamma == 1:
            return _report(True, False, constant_step)
        return _report(False, True, geometric)
    if isinstance(s, Step):
        if s.factor == 1:
            return _report(True, False, constant_step)
        return _report(False, True, geometric)
    if isinstance(s, Cosine):
        return _report(False, True, f"exact: eta_k = 0 for k > total_steps = {s.total_steps}, "
                       "so both sums are finite")
    raise TypeError(f"no exact rule for {s!r}")  # unreachable: as_schedule wraps the rest


_TAIL_K = np.unique(np.round(np.logspace(3, 7, 81)).astype(np.int64))
_WINDOWS = [slice(10 * i, 10 * i + 11) for i in range(8)]  # half-decades, shared ends
_DELTA = 0.02
_FLAT = 1e-9


def _tail_values(s: UserSchedule) -> np.ndarray:
    """eta_k on _TAIL_K, vectorized when the callable agrees with its scalar values."""
    k = _TAIL_K.astype(np.float64)
    probes = [0, len(k) // 2, len(k) - 1]
    try:
        with np.errstate(all="ignore"):
            values = s(k)
        scalar = np.array([_call(s, int(_TAIL_K[i])) for i in probes])
        if np.allclose(values[probes], scalar, rtol=1e-12, atol=0):
            return values
    except Exception:  # noqa: BLE001 - any failure on an array means: ask one k at a time
        pass
    return np.array([_call(s, int(kk)) for kk in _TAIL_K])


def _call(s: UserSchedule, k: int) -> float:
    try:
        out = s.fn(k)
    except Exception as exc:  # noqa: BLE001 - a user callable may raise anything
        raise ValueError(f"`{s.name}` raised {exc!r} at step k={k}") from exc
    return s.check(k, out)


def _local_exponents(x, y):
    """Least-squares slopes -p of y on x per half-decade, with standard errors."""
    fits = [line_fit(x[w], y[w]) for w in _WINDOWS]
    return (np.array([-f.slope for f in fits]), np.array([f.se_residual for f in fits]),
            np.array([x[w].mean() for w in _WINDOWS]))


def _tends_to_constant(z) -> bool:
    """Whether the window means z of ln(k eta_k^m) settle (flat or geometric changes)."""
    d = np.abs(np.diff(z))[-4:]
    if (d[-3:] <= _FLAT).all():
        return True
    return bool((d[1:] <= 0.5 * d[:-1]).all())


def _numeric_verdict(s: UserSchedule) -> RobbinsMonroReport:
    eta = _tail_values(s)
    zero = eta == 0
    if zero.any():
        first = int(np.argmax(zero))
        if zero[first:].all():
            return _report(False, True, (
                f"numeric: eta_k = 0 at every sampled k >= {_TAIL_K[first]} (up to 10^7); "
                "taken as eventually zero, so both sums are finite"))
        return _report(None, None, "numeric: eta_k is zero at some sampled k in "
                       "[10^3, 10^7] and positive at larger ones; inconclusive")
    x, y = np.log(_TAIL_K.astype(np.float64)), np.log(eta)
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
