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

import dataclasses
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ._validate import as_float, as_int
from .theory.robbins_monro import TAIL_K, RobbinsMonroResult, family_verdict, tail_verdict
from .typing import ScheduleLike

__all__ = [
    "Constant",
    "Cosine",
    "Exponential",
    "InverseTime",
    "Polynomial",
    "RobbinsMonroResult",
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

    family: ClassVar[str] = "constant"

    eta: float

    def __call__(self, k):
        return _result(k, np.full(np.shape(k), self.eta))


@dataclass(frozen=True)
class InverseTime:
    """eta_k = eta0 / (1 + k / k0)."""

    family: ClassVar[str] = "inverse_time"

    eta0: float
    k0: float

    def __call__(self, k):
        return _result(k, self.eta0 / (1.0 + np.asarray(k, dtype=np.float64) / self.k0))


@dataclass(frozen=True)
class Polynomial:
    """eta_k = c / (k + k0)^p."""

    family: ClassVar[str] = "polynomial"

    c: float
    p: float
    k0: float = 0.0

    def __call__(self, k):
        return _result(k, self.c / (np.asarray(k, dtype=np.float64) + self.k0) ** self.p)


@dataclass(frozen=True)
class Exponential:
    """eta_k = eta0 * gamma^(k - 1)."""

    family: ClassVar[str] = "exponential"

    eta0: float
    gamma: float

    def __call__(self, k):
        return _result(k, self.eta0 * self.gamma ** (np.asarray(k, dtype=np.float64) - 1.0))


@dataclass(frozen=True)
class Step:
    """eta_k = eta0 * factor^floor((k - 1) / every)."""

    family: ClassVar[str] = "step"

    eta0: float
    factor: float
    every: int

    def __call__(self, k):
        drops = np.floor((np.asarray(k, dtype=np.float64) - 1.0) / self.every)
        return _result(k, self.eta0 * self.factor**drops)


@dataclass(frozen=True)
class Cosine:
    """eta_k = eta0 * (1 + cos(pi * min(k - 1, T) / T)) / 2 with T = total_steps."""

    family: ClassVar[str] = "cosine"

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


def robbins_monro(schedule: ScheduleLike) -> RobbinsMonroResult:
    """Decide the Robbins-Monro conditions sum eta_k = inf and sum eta_k^2 < inf.

    For the families of this module the verdict is exact
    (:func:`lossvar.theory.family_verdict`: integral test and geometric
    series): ``polynomial(c, p, k0)`` is satisfied iff 1/2 < p <= 1,
    ``inverse_time`` is, ``constant`` is not (sum eta_k^2 = inf), and
    ``exponential`` (gamma < 1), ``step`` (factor < 1) and ``cosine`` are not
    (both sums finite).

    Any other callable gets a numeric verdict from its tail
    (:func:`lossvar.theory.tail_verdict`), eta_k for 81 log-spaced k in
    [10^3, 10^7] (:data:`lossvar.theory.robbins_monro.TAIL_K`), evaluated on
    an array of k if the callable accepts one and agrees with its scalar
    values, else one k at a time: local log-log exponents with their
    standard errors, decided only outside a band around 1, or where k eta_k^m
    visibly settles; inconclusive (None) otherwise, never a guess.

    Parameters
    ----------
    schedule : float or callable
        A schedule of this module, a user callable k -> eta_k, or a constant.

    Returns
    -------
    RobbinsMonroResult

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
    s = as_schedule(schedule, name="schedule")
    if isinstance(s, UserSchedule):
        return tail_verdict(_tail_values(s))
    return family_verdict(s.family, **dataclasses.asdict(s))


def _tail_values(s: UserSchedule) -> np.ndarray:
    """eta_k on TAIL_K, vectorized when the callable agrees with its scalar values."""
    k = TAIL_K.astype(np.float64)
    probes = [0, len(k) // 2, len(k) - 1]
    try:
        with np.errstate(all="ignore"):
            values = s(k)
        scalar = np.array([_call(s, int(TAIL_K[i])) for i in probes])
        if np.allclose(values[probes], scalar, rtol=1e-12, atol=0):
            return values
    except Exception:  # noqa: BLE001 - any failure on an array means: ask one k at a time
        pass
    return np.array([_call(s, int(kk)) for kk in TAIL_K])


def _call(s: UserSchedule, k: int) -> float:
    try:
        out = s.fn(k)
    except Exception as exc:  # noqa: BLE001 - a user callable may raise anything
        raise ValueError(f"`{s.name}` raised {exc!r} at step k={k}") from exc
    return s.check(k, out)
