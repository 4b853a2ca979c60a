"""Standard errors and intervals: the z quantile, a Monte Carlo mean, a variance, a
ratio of means, and the bootstrap.

Each has one home here: the normal quantile (:func:`two_sided_z`,
:func:`two_sided_score`), the standard error of a mean (:func:`mean_se`) and
the bootstrap (:func:`bootstrap`, over ``scipy.stats.bootstrap``).

Three intervals for the variance ``sigma^2`` of replicate values, given their
sample variance ``S2`` over ``R`` replicates (:func:`variance_interval`):

``"fourth_moment"`` (default)
    ``exp(log S2 +- z SE(S2)/S2)``: the plug-in fourth-moment standard error
    ``Var(S2) = (m4 - S2^2 (R-3)/(R-1)) / R`` (Morris, White & Crowther 2019,
    Table 6), used on the log scale so the interval stays positive. Valid for
    non-normal replicate values whenever their fourth moment is finite; it
    needs ``R`` large enough that ``m4`` is well estimated, which for
    heavy-tailed losses (large kurtosis) means thousands of replicates. Batch
    means of ``B > 1`` losses are closer to normal than single losses, so the
    single-sample row is the hardest case.
``"chi2"``
    ``[(R-1) S2 / chi2_{1-a/2}, (R-1) S2 / chi2_{a/2}]``: exact when the
    replicate values are normal, and too narrow otherwise (it ignores excess
    kurtosis). Use it only for normal data, e.g. large-``B`` batch means.
``"bootstrap"``
    percentile bootstrap interval (:func:`bootstrap`) of the sample variance
    over the raw replicate values (kept in memory). Makes no moment assumption
    beyond consistency; costs ``n_resamples * R`` work.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import special as _sc
from scipy import stats as _st

from .._result import ConfidenceInterval
from .._validate import as_float, as_int
from ..moments import Moments
from ..typing import Result

__all__ = ["INTERVALS", "bootstrap", "fieller_interval", "mean_interval", "mean_se", "plan_replicates",
           "replicates_for_rel_se", "two_sided_score", "two_sided_z", "variance_interval"]

INTERVALS = ("fourth_moment", "chi2", "bootstrap")

#: Resampled values a bootstrap holds at once, by default (32 MB of float64).
BOOTSTRAP_ELEMENTS = 2**22


def _normal_quantile(q):
    """The standard normal quantile function, the one call of it in lossvar
    (scipy.special.ndtri, the function behind scipy.stats.norm.ppf, without its checks)."""
    return _sc.ndtri(q)


def two_sided_z(confidence: float) -> float:
    """The standard normal ``(1 + confidence) / 2`` quantile: the z of a two-sided
    ``confidence`` interval (1.96 at 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"`confidence` must be strictly between 0 and 1; got {confidence!r}")
    return float(_normal_quantile(0.5 + confidence / 2.0))


def two_sided_score(pvalue):
    """The normal score ``Phi^-1(1 - p/2)`` of two-sided p-values: the ``|z|`` whose
    two-sided normal p-value is ``p`` (``inf`` at ``p = 0``, 0 at ``p = 1``).

    Computed as ``-Phi^-1(p/2)``, accurate for p-values down to the smallest
    float (``1 - p/2`` would round to 1 below about 1e-16).
    """
    return -_normal_quantile(np.asarray(pvalue, dtype=np.float64) / 2.0)


def mean_se(values, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The mean of independent replicate values along ``axis`` and its standard error.

    ``SE = std(ddof=1) / sqrt(n)``: the Monte Carlo standard error of a mean
    of n independent replicates (NaN where n < 2). Returns numpy scalars for
    1-D input.
    """
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[axis]
    mean = v.mean(axis=axis) if n else np.full(np.delete(v.shape, axis), np.nan)
    if n < 2:
        return mean, np.full_like(mean, np.nan)
    return mean, v.std(axis=axis, ddof=1) / np.sqrt(n)


def mean_interval(mean, se, confidence: float = 0.95, *, dof=None) -> tuple[np.ndarray, np.ndarray]:
    """The ``confidence`` interval ``mean +- q se`` of a Monte Carlo mean.

    Without ``dof``, ``q`` is the standard normal ``(1 + confidence) / 2``
    quantile: valid for a mean of many independent replicates (central limit
    theorem). With ``dof`` (``n - 1`` for a mean of n replicates whose
    standard error is estimated from them), ``q`` is Student t's quantile with
    those degrees of freedom: exact for normal replicates, and the honest width
    for a few runs (NaN where ``dof < 1``). Returns ``(low, high)``, arrays or
    scalars like ``mean``.
    """
    q: float | np.ndarray
    if dof is None:
        q = two_sided_z(confidence)
    else:
        two_sided_z(confidence)  # checks the level
        d = np.asarray(dof, dtype=np.float64)
        q = np.where(d >= 1, _st.t.ppf(0.5 + confidence / 2.0, np.maximum(d, 1.0)), np.nan)
    half = q * np.asarray(se, dtype=np.float64)
    return mean - half, mean + half


def bootstrap(samples, statistic, *, confidence: float = 0.95, n_resamples: int = 999,
              rng=None, batch: int | None = None):
    """Percentile bootstrap of ``statistic`` over independent samples: the one bootstrap of
    lossvar, ``scipy.stats.bootstrap`` with the package's conventions.

    Each sample is resampled with replacement along its last axis, independently
    of the others (a stratified bootstrap when there are several: within each
    sample, never across), ``n_resamples`` times.

    Parameters
    ----------
    samples : sequence of array_like
        The observations of each sample along the last axis (leading axes, if
        any, are carried along: e.g. a (k, R) array resamples whole columns, R
        replicates of k values each).
    statistic : callable
        ``statistic(*samples, axis=-1)``, vectorized: given resamples with an
        extra axis before the last, it returns one value (or a vector of values,
        on a leading axis) per resample.
    confidence : float in (0, 1)
        Level of the percentile interval.
    n_resamples : int, >= 2
    rng : numpy.random.Generator, int or None
        The resamples' random numbers (SPEC 7).
    batch : int, optional
        Resamples drawn at once; by default as many as keep about
        :data:`BOOTSTRAP_ELEMENTS` resampled values in memory.

    Returns
    -------
    scipy.stats._resampling.BootstrapResult
        ``confidence_interval`` (low, high; NaN where the bootstrap distribution
        holds NaN), ``bootstrap_distribution`` and ``standard_error`` (its
        standard deviation, ``ddof = 1``).

    References
    ----------
    B. Efron & R. J. Tibshirani (1993), *An Introduction to the Bootstrap*,
    chapters 6 and 13 (the standard error and the percentile interval).
    """
    samples = tuple(np.asarray(s, dtype=np.float64) for s in samples)
    n_resamples = as_int(n_resamples, "n_resamples", low=2)
    if batch is None:
        size = sum(s.size for s in samples)
        batch = max(1, BOOTSTRAP_ELEMENTS // max(size, 1))
    with warnings.catch_warnings():
        # scipy says "The BCa confidence interval cannot be calculated" whenever an end is
        # NaN, whatever the method; the NaN end says it here.
        warnings.simplefilter("ignore", _st.DegenerateDataWarning)
        return _st.bootstrap(samples, statistic, confidence_level=confidence,
                             n_resamples=n_resamples, method="percentile", vectorized=True,
                             batch=batch, axis=-1, rng=rng)


def _sample_variance(x, axis=-1):
    return np.var(x, axis=axis, ddof=1)


def variance_interval(moments: Moments, confidence: float, method: str = "fourth_moment",
                      values=None, rng=None) -> tuple[float, float]:
    """Two-sided ``confidence`` interval for the variance of the replicate values."""
    s2 = moments.variance
    r = moments.count
    if s2 == 0.0:
        return 0.0, 0.0
    alpha = 1.0 - confidence
    if method == "fourth_moment":
        half = two_sided_z(confidence) * moments.variance_se() / s2
        return s2 * float(np.exp(-half)), s2 * float(np.exp(half))
    if method == "chi2":
        dof = r - 1
        return (dof * s2 / _st.chi2.ppf(1.0 - alpha / 2.0, dof),
                dof * s2 / _st.chi2.ppf(alpha / 2.0, dof))
    if values is None:
        raise ValueError("the bootstrap interval needs the raw replicate values")
    res = bootstrap((values,), _sample_variance, confidence=confidence, rng=rng)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def fieller_interval(numerator: float, denominator: float, var_numerator: float,
                     var_denominator: float, covariance: float,
                     confidence: float = 0.95, *, lower: float | None = None) -> ConfidenceInterval:
    r"""Fieller's ``confidence`` interval for a ratio of two normal estimates, ``t / s``.

    The set :math:`\{\rho : (t - \rho s)^2 \le z^2 (v_t - 2 \rho c + \rho^2 v_s)\}`
    of ratios that a z test of :math:`t - \rho s = 0` does not reject, with
    :math:`v_t, v_s, c` the variances and covariance of the estimates ``t``
    and ``s`` (e.g. means of paired replicates, and their covariance matrix
    divided by the number of replicates). Unlike the delta method it is exact
    for normal estimates, and it says when the ratio cannot be bounded.

    Parameters
    ----------
    numerator, denominator : float
        The estimates ``t`` and ``s``.
    var_numerator, var_denominator, covariance : float
        Their variances and covariance.
    confidence : float in (0, 1)
    lower : float, optional
        A bound the ratio cannot cross (0 for a ratio of nonnegative
        quantities, such as a noise scale): the set is intersected with
        ``[lower, inf)`` and reported by its hull, whose upper end is ``inf``
        when the ratio is unbounded above.

    Returns
    -------
    ConfidenceInterval
        Without ``lower``: the interval when it is one, that is when ``s`` is
        significantly nonzero (:math:`s^2 > z^2 v_s`); otherwise the set is
        unbounded (a pair of rays, or the whole line) and both ends are NaN.
        With ``lower``: the hull of the set within ``[lower, inf)``; NaN ends
        when that is empty. NaN ends when an input is not finite.

    References
    ----------
    E. C. Fieller (1954), "Some problems in interval estimation", J. R. Statist.
    Soc. B 16:175-185.
    """
    nan = ConfidenceInterval(math.nan, math.nan)
    t, s, v_t, v_s, c = (float(x) for x in (numerator, denominator, var_numerator, var_denominator,
                                             covariance))
    if not all(math.isfinite(x) for x in (t, s, v_t, v_s, c)):
        return nan
    z2 = two_sided_z(confidence) ** 2
    # a rho^2 + b rho + k <= 0
    a, b, k = s * s - z2 * v_s, -2.0 * (t * s - z2 * c), t * t - z2 * v_t
    if a == 0.0 or b * b - 4.0 * a * k < 0:
        # a == 0: a half-line or every ratio; disc < 0 with a > 0: empty (only by rounding,
        # t/s is always inside); with a < 0: every ratio
        if lower is None:
            return nan
        if a != 0.0:
            return nan if a > 0 else ConfidenceInterval(lower, math.inf)
        if b == 0.0:
            return ConfidenceInterval(lower, math.inf) if k <= 0 else nan
        q = -k / b  # b rho + k <= 0
        if b < 0:
            return ConfidenceInterval(max(q, lower), math.inf)
        return ConfidenceInterval(lower, q) if q >= lower else nan
    disc = b * b - 4.0 * a * k
    q = -0.5 * (b + math.copysign(math.sqrt(disc), b))  # the roots q/a and k/q without cancellation
    r1, r2 = sorted((q / a, k / q if q != 0 else 0.0))
    if lower is None:
        return ConfidenceInterval(r1, r2) if a > 0 else nan
    if a > 0:  # [r1, r2]
        return ConfidenceInterval(max(r1, lower), r2) if r2 >= lower else nan
    # a < 0: (-inf, r1] and [r2, inf); within [lower, inf) the hull is [r2, inf) or all of it
    return ConfidenceInterval(max(r2, lower), math.inf) if r1 < lower else ConfidenceInterval(lower, math.inf)


def plan_replicates(pilot: Result | pd.DataFrame, target_rel_se: float) -> pd.DataFrame:
    """Replicates needed for a target relative standard error of each variance.

    From ``Var(S2) = (mu4 - sigma^4 (R - 3)/(R - 1)) / R`` (docs/theory.md, sections
    2 and 3), the relative standard error is ``sqrt((kappa - (R - 3)/(R - 1)) / R)``
    with ``kappa = mu4 / sigma^4`` the kurtosis of the batch means. Solving
    ``(kappa - (R - 3)/(R - 1)) / R = t^2`` for ``R`` gives the quadratic
    ``t^2 R^2 - (t^2 + kappa - 1) R + (kappa - 3) = 0``, whose larger root is
    returned (rounded up). ``kappa`` is estimated from the pilot run, so the
    plan is as good as the pilot's kurtosis: plan from a pilot of a few
    thousand replicates and expect the achieved error within some percent.

    Parameters
    ----------
    pilot : VarianceResult or pandas.DataFrame
        A pilot run, with columns ``batch_size`` and ``kurtosis``.
    target_rel_se : float in (0, 1)

    Returns
    -------
    pandas.DataFrame
        ``batch_size``, ``kurtosis``, ``replicates`` (0 where the variance is
        exactly 0: no replicate is needed).
    """
    t = as_float(target_rel_se, "target_rel_se", low=0.0, high=1.0, low_open=True, high_open=True)
    table = pilot if isinstance(pilot, pd.DataFrame) else pilot.to_frame()
    kappa = table["kurtosis"].to_numpy(dtype=float)
    return pd.DataFrame({"batch_size": table["batch_size"].to_numpy(), "kurtosis": kappa,
                         "replicates": replicates_for_rel_se(kappa, t)})


def replicates_for_rel_se(kurtosis, target_rel_se: float) -> np.ndarray:
    """Smallest ``R`` whose sample variance has relative standard error ``target_rel_se``.

    The larger root of ``t^2 R^2 - (t^2 + kappa - 1) R + (kappa - 3) = 0``
    (see :func:`plan_replicates`), rounded up; 0 where ``kurtosis`` is NaN (a
    variance that is exactly 0 needs no replicate).
    """
    kappa = np.asarray(kurtosis, dtype=float)
    t2 = float(target_rel_se) ** 2
    b = t2 + kappa - 1.0
    with np.errstate(invalid="ignore"):
        r = (b + np.sqrt(b * b - 4.0 * t2 * (kappa - 3.0))) / (2.0 * t2)
    return np.where(np.isfinite(r), np.ceil(np.maximum(r, 2.0)), 0).astype(int)
