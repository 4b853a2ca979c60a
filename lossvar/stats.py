"""Intervals for a Monte Carlo variance, and the 1/B scaling fit.

Three intervals for the variance ``sigma^2`` of replicate values, given their
sample variance ``S2`` over ``R`` replicates:

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
    scipy.stats.bootstrap percentile interval of the sample variance over the
    raw replicate values (kept in memory). Makes no moment assumption beyond
    consistency; costs ``n_resamples * R`` work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as _st

from .moments import Moments

INTERVALS = ("fourth_moment", "chi2", "bootstrap")


def variance_interval(moments: Moments, confidence: float, method: str = "fourth_moment",
                      values=None, rng=None) -> tuple[float, float]:
    """Two-sided ``confidence`` interval for the variance of the replicate values."""
    s2 = moments.variance
    r = moments.count
    if s2 == 0.0:
        return 0.0, 0.0
    alpha = 1.0 - confidence
    if method == "fourth_moment":
        z = _st.norm.ppf(1.0 - alpha / 2.0)
        half = z * moments.variance_se() / s2
        return s2 * float(np.exp(-half)), s2 * float(np.exp(half))
    if method == "chi2":
        dof = r - 1
        return (dof * s2 / _st.chi2.ppf(1.0 - alpha / 2.0, dof),
                dof * s2 / _st.chi2.ppf(alpha / 2.0, dof))
    if values is None:
        raise ValueError("the bootstrap interval needs the raw replicate values")
    res = _st.bootstrap((np.asarray(values),), _sample_variance, confidence_level=confidence,
                        n_resamples=999, method="percentile", vectorized=True,
                        batch=max(1, 2**22 // max(len(values), 1)), rng=rng)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _sample_variance(x, axis=-1):
    return np.var(x, axis=axis, ddof=1)


@dataclass(frozen=True)
class ScalingFit:
    """Weighted least-squares fit of ``log Var(B) = a + exponent * log B``.

    Attributes
    ----------
    exponent, se : float
        The fitted slope and its standard error.
    ci_low, ci_high : float
        The ``confidence`` interval of the slope.
    pvalue : float
        Two-sided p-value of the test ``exponent = -1`` (the 1/B law).
    intercept : float
        The fitted ``a``; ``exp(a)`` estimates the single-sample variance.
    chi2, chi2_pvalue : float
        Lack-of-fit statistic ``sum w r^2`` on ``k - 2`` degrees of freedom
        and its p-value: small values say the points are not on one line.
    batch_sizes : tuple of int
        The rows used.
    excluded : dict
        Batch size -> why it was left out (exact variance 0, or a measured
        variance of 0).
    """

    exponent: float
    ci_low: float
    ci_high: float
    pvalue: float
    se: float
    intercept: float
    chi2: float
    chi2_pvalue: float
    confidence: float
    batch_sizes: tuple
    excluded: dict = field(default_factory=dict)

    def __str__(self) -> str:
        text = (f"Var(B) ~ B^{self.exponent:.4f} ({100 * self.confidence:g}% CI "
                f"[{self.ci_low:.4f}, {self.ci_high:.4f}]); test of exponent = -1: "
                f"p = {self.pvalue:.3g}; fit over B = {list(self.batch_sizes)}")
        for b, why in self.excluded.items():
            text += f"\nleft out B = {b}: {why}"
        return text


def scaling_fit(result, *, confidence: float = 0.95) -> ScalingFit:
    """Fit the exponent of ``Var(B) ~ B^exponent`` and test ``exponent = -1``.

    Each row's variance is first divided by its finite-population factor
    ``(N - B)/(N - 1)`` (column ``fpc``; 1 with replacement or fresh data), so
    that under the theory of docs/theory.md, section 1 the corrected variances are
    exactly ``s^2 / B``. Rows whose exact variance is 0 (the full batch of a
    fixed data set) carry no information about the slope and are left out,
    and so are rows with a measured variance of 0; ``excluded`` says which.

    The fit regresses ``y = log(S2 / fpc) + SE(S2)^2 / (2 S2^2)`` (the
    second term removes the delta-method bias of ``log S2``, which matters for
    heavy-tailed single-sample rows) on ``log B`` by weighted least squares
    with weights ``1 / SE(log S2)^2 = (S2 / SE(S2))^2``. The rows use
    independent streams, so the weights are inverse variances and the slope's
    standard error is ``1 / sqrt(sum w (x - xbar_w)^2)`` (known-variance
    regression); the p-value is the normal test of ``exponent = -1``.

    Parameters
    ----------
    result : VarianceResult or pandas.DataFrame
        A result of :func:`lossvar.loss_variance` / :func:`lossvar.variance_study`,
        or a table with columns ``batch_size``, ``variance``, ``variance_se``
        and optionally ``fpc`` and ``exact_variance``.
    confidence : float
        Level of the interval for the exponent.
    """
    table = result.table if hasattr(result, "table") else pd.DataFrame(result)
    missing = {"batch_size", "variance", "variance_se"} - set(table.columns)
    if missing:
        raise ValueError(f"`result` must have columns batch_size, variance, variance_se; "
                         f"missing {sorted(missing)}")
    fpc = table["fpc"] if "fpc" in table else pd.Series(1.0, index=table.index)
    exact = table["exact_variance"] if "exact_variance" in table else pd.Series(np.nan,
                                                                                index=table.index)
    excluded = {}
    keep = []
    for i, row in table.iterrows():
        b = int(row["batch_size"])
        if exact[i] == 0 or fpc[i] == 0:
            excluded[b] = "exact variance is 0 (no batch noise), so it carries no slope information"
        elif not row["variance"] > 0 or not row["variance_se"] > 0:
            excluded[b] = "measured variance or its standard error is 0"
        else:
            keep.append(i)
    if len(keep) < 3:
        raise ValueError(f"`result` must have at least 3 batch sizes with positive variance to "
                         f"fit a slope; got {len(keep)} (excluded: {excluded})")
    rows = table.loc[keep]
    x = np.log(rows["batch_size"].to_numpy(dtype=float))
    s2 = rows["variance"].to_numpy(dtype=float)
    rel2 = (rows["variance_se"].to_numpy(dtype=float) / s2) ** 2
    # log S2 is biased low by about Var(S2) / (2 sigma^4) (delta method);
    # heavy-tailed single-sample rows would otherwise tilt the slope.
    y = np.log(s2 / fpc[keep].to_numpy(dtype=float)) + 0.5 * rel2
    w = 1.0 / rel2
    xbar = np.sum(w * x) / np.sum(w)
    ybar = np.sum(w * y) / np.sum(w)
    sxx = np.sum(w * (x - xbar) ** 2)
    slope = float(np.sum(w * (x - xbar) * (y - ybar)) / sxx)
    intercept = float(ybar - slope * xbar)
    se = float(1.0 / np.sqrt(sxx))
    z = _st.norm.ppf(0.5 + confidence / 2.0)
    resid = y - intercept - slope * x
    chi2 = float(np.sum(w * resid**2))
    dof = len(keep) - 2
    return ScalingFit(
        exponent=slope, ci_low=slope - z * se, ci_high=slope + z * se,
        pvalue=float(2.0 * _st.norm.sf(abs(slope + 1.0) / se)), se=se, intercept=intercept,
        chi2=chi2, chi2_pvalue=float(_st.chi2.sf(chi2, dof)), confidence=confidence,
        batch_sizes=tuple(int(b) for b in rows["batch_size"]), excluded=excluded,
    )


def plan_replicates(pilot, target_rel_se: float) -> pd.DataFrame:
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
    from ._validate import as_float

    t = as_float(target_rel_se, "target_rel_se", low=0.0, high=1.0, low_open=True, high_open=True)
    table = pilot.table if hasattr(pilot, "table") else pd.DataFrame(pilot)
    kappa = table["kurtosis"].to_numpy(dtype=float)
    t2 = t * t
    b = t2 + kappa - 1.0
    with np.errstate(invalid="ignore"):
        r = (b + np.sqrt(b * b - 4.0 * t2 * (kappa - 3.0))) / (2.0 * t2)
    planned = np.where(np.isfinite(r), np.ceil(np.maximum(r, 2.0)), 0).astype(int)
    return pd.DataFrame({"batch_size": table["batch_size"].to_numpy(), "kurtosis": kappa,
                         "replicates": planned})
