"""The hyperbola of steps against examples, ``S/S_min - 1 = (E/E_min - 1)^-1``
(McCandlish et al. 2018, eq. 2.11), and full-batch descent to levels of the excess loss."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as _st

from .. import streams
from .._result import ConfidenceInterval, ResultBase
from .._validate import as_float, as_int
from ..stats import bootstrap, line_fit, mean_se

__all__ = ["CriticalBatchFitResult", "PathPoint", "critical_batch_fit", "gradient_descent_path"]


@dataclass(frozen=True)
class CriticalBatchFitResult(ResultBase):
    """The fit of ``S(B) = S_min + E_min / B`` (:func:`critical_batch_fit`).

    A result (docs/guide/results.md): ``to_frame()`` is one row: ``s_min``,
    ``e_min``, ``b_crit``, ``chi2``, ``dof``, ``chi2_pvalue``, ``bootstrap``
    (the resamples), ``interval`` (how the intervals were made), then the
    ends of each interval (``s_min_ci_low``, ``s_min_ci_high``, ...).

    Attributes
    ----------
    s_min, e_min : float
        The fewest steps (infinite batch) and the fewest examples (batch 1).
    b_crit : float
        ``E_min / S_min``, the critical batch size.
    s_min_ci, e_min_ci, b_crit_ci : ConfidenceInterval
        Percentile bootstrap intervals at ``confidence`` (NaN ends where a
        resample's fit is undefined).
    chi2, dof, chi2_pvalue : float, int, float
        Lack of fit ``sum w r^2`` on ``k - 2`` degrees of freedom and its p-value.
    batch_sizes : tuple of int
    confidence : float
    n_resamples : int
    """

    s_min: float
    e_min: float
    b_crit: float
    s_min_ci: ConfidenceInterval
    e_min_ci: ConfidenceInterval
    b_crit_ci: ConfidenceInterval
    chi2: float
    dof: int
    chi2_pvalue: float
    batch_sizes: tuple
    confidence: float
    n_resamples: int

    def _row(self) -> dict:
        out = dict(s_min=self.s_min, e_min=self.e_min, b_crit=self.b_crit, chi2=self.chi2,
                   dof=self.dof, chi2_pvalue=self.chi2_pvalue, bootstrap=self.n_resamples,
                   interval="bootstrap percentile over runs")
        for name in ("s_min", "e_min", "b_crit"):
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = getattr(self, f"{name}_ci")
        return out

    def summary(self) -> str:
        """The three estimates with their bootstrap intervals and the lack of fit."""
        c = f"{100 * self.confidence:g}%"
        return (f"S(B) = S_min + E_min/B: S_min = {self.s_min:.4g} {_ends(self.s_min_ci)}, "
                f"E_min = {self.e_min:.4g} {_ends(self.e_min_ci)}, B_crit = E_min/S_min = "
                f"{self.b_crit:.4g} {_ends(self.b_crit_ci)} ({c} bootstrap intervals over runs); "
                f"lack of fit chi2 = {self.chi2:.3g} on {self.dof} dof, p = {self.chi2_pvalue:.3g}")


def _ends(ci) -> str:
    return f"[{ci[0]:.4g}, {ci[1]:.4g}]"


def critical_batch_fit(steps: Mapping, *, confidence: float = 0.95, n_resamples: int = 2000,
                       rng=None) -> CriticalBatchFitResult:
    r"""Fit the critical batch size to measured steps: ``S/S_min - 1 = (E/E_min - 1)^-1``.

    McCandlish et al. (2018), eq. 2.11: the steps S and examples E = B S needed
    to reach a target trade off along a hyperbola, equivalently
    :math:`S(B) = S_{\min} + E_{\min}/B`, a line in 1/B with intercept
    :math:`S_{\min}` and slope :math:`E_{\min}`;
    :math:`B_{\rm crit} = E_{\min}/S_{\min}`. The line is fitted by weighted
    least squares (:func:`lossvar.stats.line_fit`) to each batch size's mean
    steps, weighted by the inverse square of its standard error.

    The intervals are percentile bootstrap intervals (:func:`lossvar.stats.bootstrap`)
    over the runs, resampled within each batch size (the sizes' runs are
    independent); the weights stay those of the measured means, so each
    resample's fit is a linear map of its means. The runs' learning rates are
    taken as given: if they were tuned on other runs, the tuning's uncertainty
    is not in the intervals.

    Parameters
    ----------
    steps : mapping
        ``{B: steps of each run}``: at least 3 batch sizes, each with at least 2
        finite, positive step counts (e.g. :func:`steps_to_target` of runs at the
        best learning rate of each B).
    confidence : float
    n_resamples : int
        Bootstrap resamples, at least ``2 / (1 - confidence)`` (one in each tail).
    rng : int, SeedSequence, Generator or None

    Returns
    -------
    CriticalBatchFitResult
    """
    confidence = as_float(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
    fewest = math.ceil(2 / (1 - confidence) - 1e-9)
    n_resamples = as_int(n_resamples, "n_resamples", low=fewest)
    order = sorted(steps)
    runs = [np.asarray(steps[b], dtype=np.float64) for b in order]
    if len(order) < 3:
        raise ValueError(f"`steps` must hold at least 3 batch sizes for the hyperbola's 2 parameters "
                         f"and a degree of freedom; got {len(order)} ({', '.join(map(str, order))})")
    for b, v in zip(order, runs, strict=True):
        if v.ndim != 1 or v.size < 2 or not (np.all(np.isfinite(v)) and np.all(v >= 0)):
            raise ValueError(f"`steps` must give each batch size at least 2 finite step counts >= 0; "
                             f"got {v.tolist()} at B = {b}")
    sizes = np.array(order, dtype=float)
    means, se = (np.array(v) for v in zip(*(mean_se(v) for v in runs), strict=True))
    w = 1.0 / np.maximum(se, 1e-12) ** 2
    fit = line_fit(1.0 / sizes, means, w)  # intercept S_min, slope E_min
    s_min, e_min, chi2 = float(fit.intercept), float(fit.slope), float(fit.chi2)

    def parameters(*resampled, axis=-1):
        line = line_fit(1.0 / sizes, np.stack([r.mean(axis=axis) for r in resampled], axis=-1), w)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.stack([line.intercept, line.slope, line.slope / line.intercept])

    gen = streams.stream(streams.as_seed_sequence(rng))
    boot = bootstrap(runs, parameters, confidence=confidence, n_resamples=n_resamples, rng=gen,
                     batch=n_resamples)
    lo, hi = (np.asarray(e, dtype=float) for e in boot.confidence_interval)
    dof = sizes.size - 2
    return CriticalBatchFitResult(
        s_min=s_min, e_min=e_min, b_crit=e_min / s_min,
        s_min_ci=ConfidenceInterval(float(lo[0]), float(hi[0])),
        e_min_ci=ConfidenceInterval(float(lo[1]), float(hi[1])),
        b_crit_ci=ConfidenceInterval(float(lo[2]), float(hi[2])), chi2=chi2,
        dof=dof, chi2_pvalue=float(_st.chi2.sf(chi2, dof)), batch_sizes=tuple(int(b) for b in order),
        confidence=confidence, n_resamples=n_resamples)


# -- gradient descent to levels of the excess loss -------------------------------------------


@dataclass(frozen=True)
class PathPoint:
    """Where full-batch descent first reaches a level (:func:`gradient_descent_path`).

    Attributes
    ----------
    fraction : float
        The level: a fraction of the initial excess loss.
    step : int
        Descent steps taken.
    excess_fraction : float
        The excess loss there, as a fraction of the initial one (at most ``fraction``).
    params : ndarray
    """

    fraction: float
    step: int
    excess_fraction: float
    params: np.ndarray = field(repr=False)


def gradient_descent_path(problem, data, w0, *, learning_rate: float, fractions, loss_star: float,
                          max_steps: int = 200_000) -> list[PathPoint]:
    """Full-batch gradient descent from ``w0``, stopped at each level of the excess loss.

    ``w_{t+1} = w_t - lr * grad L(w_t)``; at the first step where
    ``(L(w_t) - loss_star) / (L(w0) - loss_star)`` is at most a level of
    ``fractions``, the point is kept. The path along which a noise scale is
    measured as training proceeds (McCandlish et al. 2018, section 3: it grows as
    the loss falls).

    Parameters
    ----------
    problem : Problem
        Needs ``mean_loss`` and ``mean_grad``.
    data : Dataset
    w0 : array_like, shape (p,)
    learning_rate : float
        E.g. ``1 / lambda_max`` of the Hessian, stable for a convex loss.
    fractions : sequence of float
        Levels in (0, 1]; 1 is the start itself.
    loss_star : float
        The minimum of the loss.
    max_steps : int
        Steps allowed; levels not reached by then are missing from the result.

    Returns
    -------
    list of PathPoint
        In decreasing order of level.
    """
    X, y = np.asarray(data.X, dtype=np.float64), np.asarray(data.y, dtype=np.float64)
    w = np.array(w0, dtype=np.float64)
    lr = as_float(learning_rate, "learning_rate", low=0.0, low_open=True)
    levels = sorted({as_float(f, "fractions", low=0.0, high=1.0, low_open=True) for f in fractions},
                    reverse=True)
    loss0 = float(problem.mean_loss(w, X, y))
    if not loss0 > loss_star:
        raise ValueError(f"`loss_star` must be below the loss at `w0` = {loss0!r}; got {loss_star!r}")
    excess0 = loss0 - loss_star
    out = []
    for step in range(as_int(max_steps, "max_steps", low=0) + 1):
        frac = (problem.mean_loss(w, X, y) - loss_star) / excess0
        while levels and frac <= levels[0]:
            out.append(PathPoint(levels.pop(0), step, float(frac), w.copy()))
        if not levels or step == max_steps:
            break
        w = w - lr * problem.mean_grad(w, X, y)
    if levels:
        warnings.warn(f"gradient descent did not reach the levels {levels} of the excess loss within "
                      f"{max_steps} steps", RuntimeWarning, stacklevel=2)
    return out
