"""Convergence rates of SGD ensembles: E[metric] ~ C k^-a, or a plateau.

:func:`convergence_rate` fits the exponent ``a`` of the across-replicate mean
of a recorded metric over the tail of a :class:`~lossvar.sgd.SGDResult`,
with an interval that respects the correlation of the records of one run
across steps (a bootstrap over replicates), and reports a plateau with its
level when the exponent is consistent with 0.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import streams
from ._result import ConfidenceInterval, ResultBase
from ._validate import as_choice, as_float, as_int
from .stats import bootstrap, line_fit, mean_interval, mean_se
from .typing import RNGLike

if TYPE_CHECKING:  # rates reads SGDResult; sgd is not imported at run time
    from .sgd import SGDResult

__all__ = ["METRICS", "RateFitResult", "convergence_rate"]

METRICS = ("dist2", "loss", "excess_loss", "avg_dist2", "avg_loss", "avg_excess_loss")

@dataclass(frozen=True)
class RateFitResult(ResultBase):
    """The fit of ``E[metric] ~ C k^-a`` over the tail of an ensemble.

    A result (docs/guide/results.md): ``to_frame()`` is one row of its scalar
    fields and interval ends. An exponent has no exact value here to compare
    with, so it has no verdict of :func:`lossvar.agreement`.

    Attributes
    ----------
    metric : str
    exponent : float
        a, the decay exponent (a > 0: decreasing).
    exponent_ci : ConfidenceInterval
        ``confidence`` interval of a: a +- z * se with the bootstrap se.
    se : float
        Standard deviation of a over the replicate bootstrap.
    intercept : float
        log C.
    plateau : bool
        True when the interval of a contains 0: the metric is consistent with a
        constant level over the tail.
    level, level_se : float
        Mean of the metric over the tail (each replicate's average over the
        tail steps, then the mean over replicates) and its standard error.
        Reported always; the level of a plateau.
    level_ci : ConfidenceInterval
        The normal ``confidence`` interval of ``level``.
    steps : tuple of int
        The tail steps fitted (k = the number of updates made).
    replicates : int
        Replicates used (diverged ones are left out by the trajectories).
    confidence : float
    n_resamples : int
    method : str
        How the fit and the interval were made.
    """

    metric: str
    exponent: float
    exponent_ci: ConfidenceInterval
    se: float
    intercept: float
    plateau: bool
    level: float
    level_se: float
    level_ci: ConfidenceInterval
    steps: tuple
    replicates: int
    confidence: float
    n_resamples: int
    method: str

    def summary(self) -> str:
        """The decay law with its interval, or the plateau with its level, and the steps fitted."""
        c = 100 * self.confidence
        rng = f"k in [{self.steps[0]}, {self.steps[-1]}] ({len(self.steps)} steps)"
        if self.plateau:
            return (f"E[{self.metric}]: plateau at {self.level:.6g} ({c:g}% CI "
                    f"[{self.level_ci.low:.6g}, {self.level_ci.high:.6g}]); exponent "
                    f"{self.exponent:.4f} [{self.exponent_ci.low:.4f}, {self.exponent_ci.high:.4f}] "
                    f"contains 0; {rng}")
        return (f"E[{self.metric}] ~ {math.exp(self.intercept):.4g} k^-{self.exponent:.4f} "
                f"({c:g}% CI [{self.exponent_ci.low:.4f}, {self.exponent_ci.high:.4f}]); {rng}")


def convergence_rate(trajectories: SGDResult, metric: str = "dist2", *, tail: float | int = 0.5,
                     confidence: float = 0.95, n_resamples: int = 999, rng: RNGLike = None) -> RateFitResult:
    """Fit the exponent a of ``E[metric] ~ C k^-a`` over the tail of the records.

    Let :math:`\\bar x_k` be the mean over replicates of the metric at step k
    (the number of updates made) and :math:`s_k` its standard error. The fit
    is weighted least squares of :math:`\\log \\bar x_k` on :math:`\\log k`
    with weights :math:`(\\bar x_k / s_k)^2` (the delta method:
    :math:`SE(\\log \\bar x) \\approx s/\\bar x`); ``a`` is minus the slope.

    The records of one run are correlated across k, so the standard error of
    an independent-point regression would be too small. The interval is
    instead made by resampling whole replicates (their entire trajectories)
    with replacement, ``n_resamples`` times, refitting with the same weights,
    and taking the standard deviation of the refitted exponents as its
    standard error: ``a +- z se`` with z the normal quantile of
    ``confidence`` (a normal interval, so that extreme confidence levels do
    not need more resamples).

    If the interval contains 0, the metric is reported as a plateau; its
    ``level`` is the mean over replicates of each replicate's average over
    the tail steps, with the standard error across replicates (which again
    respects the correlation across k). Under a constant step it estimates
    the stationary floor, provided the tail starts after the transient.

    Parameters
    ----------
    trajectories : SGDResult
        From :func:`lossvar.run_sgd`.
    metric : {"dist2", "loss", "excess_loss", "avg_dist2", "avg_loss", "avg_excess_loss"}
        ``excess_loss`` is ``loss - trajectories.loss_star``; the ``avg_``
        metrics need ``average=True``.
    tail : float in (0, 1] or (k_min, k_max)
        The fraction of the recorded steps k >= 1 to use, the last ones (0.5:
        the later half, on the log-spaced default grid the last half of the
        decades), or the inclusive range of steps. At least 3 steps.
    confidence : float in (0, 1)
    n_resamples : int, >= 2
    rng : int, SeedSequence, Generator or None
        For the bootstrap; by default a stream of ``trajectories.seed``
        reserved for it, so the fit is reproducible from the trajectories.

    Returns
    -------
    RateFitResult

    References
    ----------
    Efron & Tibshirani (1993), *An Introduction to the Bootstrap*, ch. 6;
    docs/theory.md, section 7 for the exponents to expect.
    """
    metric = as_choice(metric, "metric", METRICS)
    confidence = as_float(confidence, "confidence", low=0, high=1, low_open=True, high_open=True)
    n_resamples = as_int(n_resamples, "n_resamples", low=2)
    base = metric.replace("excess_", "")
    if base not in trajectories.metrics:
        raise ValueError(f"`metric` {metric!r} was not recorded (recorded: "
                         f"{', '.join(trajectories.metrics)}); the avg_ metrics need "
                         "run_sgd(..., average=True)")
    values = trajectories.values(base)
    if metric != base:
        values = values - trajectories.loss_star
    steps = trajectories.steps
    sel = _tail(steps, tail)
    k = steps[sel]
    V = values[:, sel]
    R = V.shape[0]
    if R < 2:
        raise ValueError(f"`trajectories` must have at least 2 replicates used; got {R}")
    mean, se = mean_se(V, axis=0)
    if not np.all(mean > 0):
        raise ValueError(f"the mean of {metric!r} must be positive at every tail step to fit a "
                         f"power law; got {mean.min():.6g} at step {int(k[np.argmin(mean)])}")
    weights = (mean / se) ** 2 if np.all(se > 0) else np.ones_like(mean)
    x = np.log(k.astype(np.float64))
    line = line_fit(x, np.log(mean), weights)
    slope, intercept = line.slope, line.intercept
    gen = (streams.stream(streams.as_seed_sequence(rng)) if rng is not None
           else streams.stream(trajectories.seed, streams.RATE_BOOTSTRAP))

    def slope_of_means(v, axis=-1):
        # v: (tail steps, [resamples,] replicates); a resampled mean can only be 0 if
        # every picked replicate is 0 there
        means = np.moveaxis(v.mean(axis=axis), 0, -1)
        return line_fit(x, np.log(np.maximum(means, np.finfo(float).tiny)), weights).slope

    boot = bootstrap((V.T,), slope_of_means, confidence=confidence, n_resamples=n_resamples,
                     rng=gen)
    exponent = -float(slope)
    boot_se = float(boot.standard_error)
    lo, hi = (float(v) for v in mean_interval(exponent, boot_se, confidence))
    level, level_se = (float(v) for v in mean_se(V.mean(axis=1)))
    level_low, level_high = (float(v) for v in mean_interval(level, level_se, confidence))
    method = (f"WLS of log mean on log k over {len(k)} tail steps, weights (mean/se)^2; "
              f"interval a +- z se with se from {n_resamples} bootstrap resamples of whole "
              "replicates (records of one run are correlated across k); plateau when the "
              "interval contains 0")
    return RateFitResult(
        metric=metric, exponent=exponent, exponent_ci=ConfidenceInterval(lo, hi), se=boot_se,
        intercept=float(intercept), plateau=bool(lo <= 0 <= hi), level=level,
        level_se=level_se, level_ci=ConfidenceInterval(level_low, level_high),
        steps=tuple(int(s) for s in k), replicates=R, confidence=confidence,
        n_resamples=n_resamples, method=method,
    )


def _tail(steps, tail):
    positive = np.flatnonzero(steps >= 1)
    if isinstance(tail, numbers.Real) and not isinstance(tail, (bool, np.bool_)):
        frac = as_float(tail, "tail", low=0, high=1, low_open=True)
        n = math.ceil(frac * positive.size)
        sel = positive[positive.size - n:]
    else:
        try:
            k_min, k_max = tail
        except (TypeError, ValueError):
            raise TypeError(f"`tail` must be a fraction in (0, 1] or a pair (k_min, k_max); "
                            f"got {tail!r}") from None
        sel = positive[(steps[positive] >= k_min) & (steps[positive] <= k_max)]
    if sel.size < 3:
        raise ValueError(f"`tail` must select at least 3 recorded steps k >= 1 to fit a slope; "
                         f"got {sel.size} (tail={tail!r}, recorded steps {steps.tolist()})")
    return sel
