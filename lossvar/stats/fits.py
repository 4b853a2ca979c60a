"""Fits: a weighted straight line, a power law with the test of its exponent, and the
1/B scaling fit of a variance table.

Every straight-line fit of lossvar is :func:`line_fit` (the convergence rates, the
Robbins-Monro tail exponents, the critical batch size's hyperbola); a power law
``value = C size^a`` is the line of ``log value`` on ``log size``
(:func:`power_law_fit`), and :func:`scaling_fit` is that fit on a variance table,
after the finite-population factor (docs/theory.md, sections 1 and 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import stats as _st

from .._result import ConfidenceInterval, ResultBase
from .._validate import as_float
from ..typing import Result
from .intervals import two_sided_z

__all__ = ["LineFitResult", "PowerLawFitResult", "ScalingFitResult", "line_fit", "power_law_fit",
           "scaling_fit"]


@dataclass(frozen=True)
class LineFitResult(ResultBase):
    """A weighted least-squares line ``y = intercept + slope x`` (vectorized over rows of y).

    It has no interval (``confidence`` is None): which standard error of the
    slope applies depends on the weights (:attr:`se_known`, :attr:`se_residual`).

    Attributes
    ----------
    slope, intercept : float or ndarray
    sxx : float
        ``sum w (x - xbar_w)^2``.
    chi2 : float or ndarray
        ``sum w (y - fit)^2``, the weighted residual sum of squares.
    dof : int
        ``n - 2``.
    """

    slope: Any  # a float for a 1-D y, an array with one value per row otherwise
    intercept: Any
    sxx: float
    chi2: Any
    dof: int
    confidence: ClassVar[None] = None

    def to_frame(self) -> pd.DataFrame:
        """One row per fitted line: ``slope``, ``intercept``, ``se_known``,
        ``se_residual``, ``chi2``, ``dof``, ``sxx``."""
        slope = np.atleast_1d(np.asarray(self.slope, dtype=np.float64))
        return pd.DataFrame({
            "slope": slope,
            "intercept": np.broadcast_to(np.asarray(self.intercept, dtype=np.float64), slope.shape),
            "se_known": self.se_known,
            "se_residual": np.broadcast_to(np.asarray(self.se_residual, dtype=np.float64), slope.shape),
            "chi2": np.broadcast_to(np.asarray(self.chi2, dtype=np.float64), slope.shape),
            "dof": self.dof, "sxx": self.sxx})

    def summary(self) -> str:
        """The line(s), the slope's two standard errors and the weighted residual sum of squares."""
        lines = [f"y = intercept + slope x (weighted least squares, {self.dof + 2} points)"]
        for r in self.to_frame().itertuples():
            lines.append(f"  slope {r.slope:.6g} (se {r.se_known:.3g} with known weights, "
                         f"{r.se_residual:.3g} from the scatter), intercept {r.intercept:.6g}, "
                         f"chi2 {r.chi2:.4g} on {r.dof} dof")
        return "\n".join(lines)

    @property
    def se_known(self) -> float:
        """Standard error of the slope when the weights are inverse variances: ``1/sqrt(sxx)``."""
        return float(1.0 / np.sqrt(self.sxx))

    @property
    def se_residual(self):
        """Standard error of the slope estimated from the scatter: ``sqrt(chi2/dof/sxx)``."""
        return np.sqrt(self.chi2 / self.dof / self.sxx)


def line_fit(x, y, weights=None) -> LineFitResult:
    """Weighted least-squares line of ``y`` on ``x``; the one straight-line fit of lossvar.

    ``y`` may have leading dimensions (one fit per row, the same ``x`` and
    weights); ``weights`` default to 1. Used by the 1/B scaling fit, the
    convergence-rate fits and the Robbins-Monro tail exponents
    (docs/theory.md, sections 4, 5 and 7).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    total = np.sum(w)
    xbar = np.sum(w * x) / total
    dx = x - xbar
    sxx = float(np.sum(w * dx * dx))
    ybar = (y * w).sum(axis=-1) / total
    slope = ((y - ybar[..., None]) * (w * dx)).sum(axis=-1) / sxx
    intercept = ybar - slope * xbar
    resid = y - intercept[..., None] - slope[..., None] * x
    chi2 = (w * resid * resid).sum(axis=-1)
    return LineFitResult(slope, intercept, sxx, chi2, x.size - 2)


def _exponent_comparison(fit, exact: Any, label: str) -> pd.DataFrame:
    """The one comparison row of a fitted exponent against the exponent it tests."""
    if exact is not None:
        raise ValueError(f"`exact` must be None for a {type(fit).__name__}: the exponent it tests "
                         f"({fit.null_exponent:g}) is its exact value; got {exact!r}")
    frame = pd.DataFrame({"label": [label], "estimate": [fit.exponent], "se": [fit.se],
                          "exact": [fit.null_exponent], "ci_low": [fit.exponent_ci.low],
                          "ci_high": [fit.exponent_ci.high], "pvalue": [fit.pvalue]})
    frame.attrs.update(independent=True, confidence=fit.confidence, row_label="",
                       untested_reason="no standard error")
    return frame


@dataclass(frozen=True)
class PowerLawFitResult(ResultBase):
    """A power law ``value = C size^exponent`` fitted to estimates with standard errors,
    and the test of ``exponent = null_exponent``.

    Attributes
    ----------
    exponent, se : float
        The fitted exponent and its standard error (the estimates' standard
        errors taken as known: ``1 / sqrt(sum w (x - xbar_w)^2)``).
    exponent_ci : ConfidenceInterval
        The normal ``confidence`` interval of the exponent.
    null_exponent, pvalue : float
        The exponent tested, and the two-sided normal p-value of the test.
    intercept : float
        ``log C``.
    chi2, dof, chi2_pvalue : float, int, float
        Lack of fit ``sum w r^2`` on ``dof = k - 2`` degrees of freedom and its
        p-value: small values say the points are not on one power law.
    confidence : float
    sizes : tuple
        The sizes fitted.
    """

    exponent: float
    se: float
    exponent_ci: ConfidenceInterval
    null_exponent: float
    pvalue: float
    intercept: float
    chi2: float
    dof: int
    chi2_pvalue: float
    confidence: float
    sizes: tuple

    def comparison(self, exact: Any = None) -> pd.DataFrame:
        """The exponent against ``null_exponent``, with the fit's normal p-value (one row)."""
        return _exponent_comparison(self, exact, "exponent")

    def summary(self) -> str:
        """The exponent with its interval, the test of the null exponent and the lack of fit."""
        return (f"value ~ size^{self.exponent:.4f} ({100 * self.confidence:g}% CI "
                f"[{self.exponent_ci.low:.4f}, {self.exponent_ci.high:.4f}]); test of exponent = "
                f"{self.null_exponent:g}: p = {self.pvalue:.3g}; lack of fit chi2 = "
                f"{self.chi2:.3g} on {self.dof} dof, p = {self.chi2_pvalue:.3g}")


def power_law_fit(sizes, values, se, *, confidence: float = 0.95,
                  null_exponent: float = -1.0) -> PowerLawFitResult:
    """Fit ``value = C size^exponent`` to positive estimates with standard errors, and test
    ``exponent = null_exponent`` (-1 by default: the 1/size law of a variance or of
    the spread of a mean).

    Weighted least squares of ``y = log value + (se/value)^2 / 2`` on
    ``log size`` with weights ``(value/se)^2``: by the delta method ``log value``
    has standard error ``se/value`` and is biased low by about half its
    variance, which the second term of ``y`` removes (it matters where the
    relative error is large, e.g. heavy-tailed single-sample rows). The
    estimates must be independent (their own random streams), so the weights
    are inverse variances and the exponent's standard error is that of a
    known-variance regression; the p-value is the normal test.

    Parameters
    ----------
    sizes, values, se : array_like
        At least 3 positive sizes (distinct), positive estimates and their
        positive standard errors.
    confidence : float
        Level of the exponent's interval.
    null_exponent : float
        The exponent tested.

    Returns
    -------
    PowerLawFitResult

    Examples
    --------
    >>> from lossvar import stats
    >>> fit = stats.power_law_fit([10, 100, 1000], [0.1, 0.01, 0.001], [1e-3, 1e-4, 1e-5])
    >>> round(fit.exponent, 6), round(fit.pvalue, 6)
    (-1.0, 1.0)
    """
    x = np.asarray(sizes, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    s = np.asarray(se, dtype=np.float64)
    if not (x.ndim == 1 and x.shape == v.shape == s.shape):
        raise ValueError(f"`sizes`, `values` and `se` must be 1-D of one length; got shapes "
                         f"{x.shape}, {v.shape} and {s.shape}")
    if x.size < 3 or np.unique(x).size < 3:
        raise ValueError(f"`sizes` must hold at least 3 distinct sizes to fit and test an exponent; "
                         f"got {x.tolist()}")
    for name, a in (("sizes", x), ("values", v), ("se", s)):
        if not (np.all(np.isfinite(a)) and np.all(a > 0)):
            raise ValueError(f"`{name}` must be finite and positive; got {a.tolist()}")
    confidence = as_float(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
    return _power_law(x, v, (s / v) ** 2, confidence, float(null_exponent))


def _power_law(sizes, values, rel2, confidence, null_exponent) -> PowerLawFitResult:
    """The fit of :func:`power_law_fit` from the squared relative standard errors."""
    x = np.log(sizes)
    y = np.log(values) + 0.5 * rel2
    fit = line_fit(x, y, 1.0 / rel2)
    slope, intercept, chi2 = float(fit.slope), float(fit.intercept), float(fit.chi2)
    se, dof = fit.se_known, fit.dof
    z = two_sided_z(confidence)
    return PowerLawFitResult(
        exponent=slope, se=se, exponent_ci=ConfidenceInterval(slope - z * se, slope + z * se),
        null_exponent=null_exponent,
        pvalue=float(2.0 * _st.norm.sf(abs(slope - null_exponent) / se)), intercept=intercept,
        chi2=chi2, dof=dof, chi2_pvalue=float(_st.chi2.sf(chi2, dof)), confidence=confidence,
        sizes=tuple(s.item() for s in np.asarray(sizes)),
    )


@dataclass(frozen=True)
class ScalingFitResult(ResultBase):
    """Weighted least-squares fit of ``log Var(B) = a + exponent * log B``.

    Attributes
    ----------
    exponent : float
        The fitted slope.
    exponent_ci : ConfidenceInterval
        The ``confidence`` interval of the slope.
    pvalue : float
        Two-sided p-value of the test ``exponent = -1`` (the 1/B law).
    se : float
        The slope's standard error.
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
    exponent_ci: ConfidenceInterval
    pvalue: float
    se: float
    intercept: float
    chi2: float
    chi2_pvalue: float
    confidence: float
    batch_sizes: tuple
    excluded: dict = field(default_factory=dict)

    #: The exponent of the 1/B law (docs/theory.md, section 1), the value tested.
    null_exponent: ClassVar[float] = -1.0

    def comparison(self, exact: Any = None) -> pd.DataFrame:
        """The exponent against -1, the law of docs/theory.md, section 1, with the fit's
        normal p-value (one row)."""
        return _exponent_comparison(self, exact, "exponent")

    def summary(self) -> str:
        """The exponent with its interval, the test of -1 and the rows left out."""
        text = (f"Var(B) ~ B^{self.exponent:.4f} ({100 * self.confidence:g}% CI "
                f"[{self.exponent_ci.low:.4f}, {self.exponent_ci.high:.4f}]); test of exponent = -1: "
                f"p = {self.pvalue:.3g}; fit over B = {list(self.batch_sizes)}")
        for b, why in self.excluded.items():
            text += f"\nleft out B = {b}: {why}"
        return text


def scaling_fit(result: Result | pd.DataFrame, *, confidence: float = 0.95) -> ScalingFitResult:
    """Fit the exponent of ``Var(B) ~ B^exponent`` and test ``exponent = -1``.

    Each row's variance is first divided by its finite-population factor
    ``(N - B)/(N - 1)`` (column ``fpc``; 1 with replacement or fresh data), so
    that under the theory of docs/theory.md, section 1 the corrected variances are
    exactly ``s^2 / B``. Rows whose exact variance is 0 (the full batch of a
    fixed data set) carry no information about the slope and are left out,
    and so are rows with a measured variance of 0; ``excluded`` says which.

    The corrected variances are then fitted by :func:`power_law_fit` (weighted
    least squares of the bias-corrected ``log S2`` on ``log B``, weights
    ``(S2 / SE(S2))^2``), except that where the table has the exact standard
    errors (``exact_variance_se``, fixed data and known populations), ``SE(S2)/S2``
    is the exact ``exact_variance_se / exact_variance`` instead of the plug-in,
    so the weights do not depend on the noisy plug-in fourth moment.

    Parameters
    ----------
    result : VarianceResult or pandas.DataFrame
        A result of :func:`lossvar.loss_variance` / :func:`lossvar.variance_study`,
        or a table with columns ``batch_size``, ``variance``, ``variance_se``
        and optionally ``fpc`` and ``exact_variance``.
    confidence : float
        Level of the interval for the exponent.
    """
    table = result if isinstance(result, pd.DataFrame) else result.to_frame()
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
    s2 = rows["variance"].to_numpy(dtype=float)
    rel2 = (rows["variance_se"].to_numpy(dtype=float) / s2) ** 2
    if "exact_variance_se" in rows:
        exact_rel2 = (rows["exact_variance_se"].to_numpy(dtype=float)
                      / rows["exact_variance"].to_numpy(dtype=float)) ** 2
        rel2 = np.where(np.isfinite(exact_rel2) & (exact_rel2 > 0), exact_rel2, rel2)
    fit = _power_law(rows["batch_size"].to_numpy(dtype=float), s2 / fpc[keep].to_numpy(dtype=float),
                     rel2, confidence, -1.0)
    return ScalingFitResult(
        exponent=fit.exponent, exponent_ci=fit.exponent_ci, pvalue=fit.pvalue, se=fit.se,
        intercept=fit.intercept, chi2=fit.chi2, chi2_pvalue=fit.chi2_pvalue, confidence=confidence,
        batch_sizes=tuple(int(b) for b in rows["batch_size"]), excluded=excluded,
    )
