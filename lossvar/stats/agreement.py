"""Agreement with exact theory: row tests, calibrated verdicts, Holm's adjustment.

A table of Monte Carlo variances is tested row by row against the exact
sampling law of a sample variance (:func:`variance_test`); every result with
exact theory (its ``comparison`` rows: :class:`lossvar.typing.ComparableResult`)
gets one verdict (:func:`agreement`), and so do rows of Monte Carlo means beside
exact values (:func:`estimate_agreement`); a study's verdicts are judged together
after Holm's adjustment (:func:`study_verdicts`). Calibration and power are
measured in the tests and documented in docs/guide/intervals.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import special as _sc
from scipy import stats as _st

from .._result import ResultBase
from .._validate import as_float
from ..typing import ComparableResult, Result
from .intervals import mean_interval, two_sided_score, two_sided_z

__all__ = ["MIN_DOF", "RELIABLE_ESTIMATED_RATIO", "RELIABLE_EXACT_RATIO", "RELIABLE_MIN_REPLICATES",
           "VARIANCE_TABLE_COLUMNS", "AgreementResult", "UnreliableIntervalWarning", "agreement",
           "estimate_agreement", "holm", "interval_reliable", "study_verdicts", "variance_comparison",
           "variance_test", "verdict_text"]

#: Below this many equivalent degrees of freedom ``nu = 2 sigma^4 / Var(S2)`` the
#: scaled chi-square reference for a sample variance is not trusted (it turns
#: conservative, and worse for very heavy tails): no p-value is given.
MIN_DOF = 20.0

#: ``interval_reliable`` rules, measured by simulation (docs/guide/intervals.md): the
#: fourth-moment interval reaches about its nominal 95% coverage (>= 0.93) from
#: R >= 2000 replicates when the kurtosis kappa of the replicate values is small
#: against R: exact kappa / R < 0.04, or, estimated, (kappa_hat - 1) / R < 0.03.
RELIABLE_MIN_REPLICATES = 2000
RELIABLE_EXACT_RATIO = 0.04
RELIABLE_ESTIMATED_RATIO = 0.03


class UnreliableIntervalWarning(UserWarning):
    """Some intervals may under-cover: too few replicates for the tails of the losses."""


def variance_test(variance, exact_variance, exact_variance_se):
    """Row-level test of a Monte Carlo variance against its exact value.

    With ``sigma^2 = exact_variance`` and ``SD(S2) = exact_variance_se`` (the
    exact standard deviation of the sample variance, from the exact fourth
    moment of the batch mean: docs/theory.md, section 3), returns

    - ``z = (S2 - sigma^2) / SD(S2)``;
    - ``nu = 2 sigma^4 / SD(S2)^2``, the degrees of freedom of the scaled
      chi-square law ``S2 ~ sigma^2 chi2_nu / nu`` that matches the exact
      variance of ``S2`` (Satterthwaite 1946);
    - the two-sided p-value ``2 min(F, 1 - F)`` with ``F`` that law's CDF at
      ``S2``. The normal law of ``z`` puts too much in one tail when the batch
      means are heavy-tailed (``nu`` in the hundreds); the scaled chi-square
      keeps both tails near their nominal rate (measured: docs/guide/intervals.md).
      Where ``nu < MIN_DOF`` the p-value is NaN: no reference is trusted there.

    NaN wherever the exact values are unknown or the exact variance is 0.
    """
    s2 = np.asarray(variance, dtype=float)
    sigma2 = np.asarray(exact_variance, dtype=float)
    sd = np.asarray(exact_variance_se, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = np.isfinite(s2) & np.isfinite(sigma2) & np.isfinite(sd) & (sd > 0) & (sigma2 > 0)
        z = np.where(ok, (s2 - sigma2) / np.where(ok, sd, 1.0), np.nan)
        nu = np.where(ok, 2.0 * (sigma2 / np.where(ok, sd, 1.0)) ** 2, np.nan)
        # scipy.stats.chi2.cdf(x, nu), without its checks: chdtr(nu, x) for nu > 0, 0 below x = 0
        x = np.maximum(np.where(ok, s2 * nu / np.where(ok, sigma2, 1.0), 0.0), 0.0)
        cdf = _sc.chdtr(np.where(ok, nu, 1.0), x)
    p = np.where(ok & (nu >= MIN_DOF), np.minimum(1.0, 2.0 * np.minimum(cdf, 1.0 - cdf)), np.nan)
    return z, nu, p


def interval_reliable(replicates, kurtosis, exact_kurtosis=None) -> np.ndarray:
    """Whether the fourth-moment interval can be trusted at its nominal level.

    True when ``R >= RELIABLE_MIN_REPLICATES`` and the kurtosis is small against
    ``R``: with the exact kurtosis of the batch mean (fixed data),
    ``kappa / R < RELIABLE_EXACT_RATIO``; otherwise from the estimated one,
    ``(kappa_hat - 1) / R < RELIABLE_ESTIMATED_RATIO``. An estimated kurtosis
    underestimates a tail that was not sampled, so the exact rule is used
    wherever it exists. A variance that is exactly 0 (no draws) is reliable.
    """
    r = np.asarray(replicates, dtype=float)
    k_hat = np.asarray(kurtosis, dtype=float)
    k_exact = np.full_like(k_hat, np.nan) if exact_kurtosis is None else np.asarray(exact_kurtosis,
                                                                                    dtype=float)
    with np.errstate(invalid="ignore"):
        by_exact = k_exact / r < RELIABLE_EXACT_RATIO
        by_estimate = (k_hat - 1.0) / r < RELIABLE_ESTIMATED_RATIO
    rule = np.where(np.isfinite(k_exact), by_exact, by_estimate)
    exact_zero = ~np.isfinite(k_hat) & ~np.isfinite(k_exact)
    return np.where(exact_zero, True, (r >= RELIABLE_MIN_REPLICATES) & rule)


@dataclass(frozen=True)
class AgreementResult(ResultBase):
    """Do Monte Carlo estimates agree with the exact theory? (:func:`agreement`,
    :func:`estimate_agreement`)

    Attributes
    ----------
    agrees : bool
        ``pvalue >= 1 - confidence`` (False when no row was tested).
    pvalue : float
        Global test that every tested row agrees. Rows from independent random
        streams: ``sum z_i^2`` over the rows, with ``z_i`` the normal score of
        each row's two-sided p-value, against chi-square with ``tested``
        degrees of freedom. Rows that share replicates: Holm's global test, the
        smallest Holm-adjusted p-value.
    statistic : float
    tested : int
        Rows with a p-value (for a variance table: an exact variance > 0 and
        ``nu >= MIN_DOF``).
    misses, expected_misses : int, float
        Rows whose interval excludes the exact value, and how many are
        expected by chance: ``intervals * (1 - level of the intervals)``.
    intervals : int
        Rows whose interval can be compared (an exact value to compare with).
    drivers : tuple
        Labels of the rows whose Holm-adjusted p-value is below
        ``1 - confidence`` (batch sizes for a variance table): the rows that
        drive a disagreement.
    holm : pandas.DataFrame
        Per tested row: ``label``, ``z``, ``pvalue``, ``holm_pvalue``.
    untested : tuple
        Labels of rows with an exact value but no trusted p-value (for a
        variance table: ``nu < MIN_DOF``).
    confidence : float
        The verdict's level.
    unreliable : tuple
        Labels of rows whose interval may under-cover (``interval_reliable``
        False): the verdict's caveat.
    row_label : str
        How the text names a row's label (``"B"``: "rows B = 1, 16"); "" for none.
    untested_reason : str
        Why rows are untested, for the text.
    """

    agrees: bool
    pvalue: float
    statistic: float
    tested: int
    misses: int
    expected_misses: float
    intervals: int
    drivers: tuple
    holm: pd.DataFrame = field(repr=False)
    untested: tuple = ()
    confidence: float = 0.95
    unreliable: tuple = ()
    row_label: str = "B"
    untested_reason: str = "too few replicates for the tails"

    def _row(self) -> dict:
        return dict(agrees=self.agrees, pvalue=self.pvalue, statistic=self.statistic,
                    tested=self.tested, misses=self.misses, expected_misses=self.expected_misses,
                    intervals=self.intervals, drivers=_join(self.drivers),
                    untested=_join(self.untested), unreliable=_join(self.unreliable),
                    confidence=self.confidence)

    def summary(self) -> str:
        """The verdict in one line: the p-value, the misses, the driving rows and the caveat."""
        if self.tested == 0:
            return "no verdict: no row can be tested against an exact value" + self._caveat()
        head = (f"agrees with theory (p = {self.pvalue:.3g}" if self.agrees else
                f"disagrees with theory (p = {self.pvalue:.3g}")
        text = (f"{head}; {self.misses} of {self.intervals} intervals miss, "
                f"{self.expected_misses:.2g} expected)")
        if self.drivers:
            text += f"; rows {self._rows(self.drivers)} drive it (Holm)"
        if self.untested:
            text += f"; not tested ({self.untested_reason}): {self._rows(self.untested)}"
        return text + self._caveat()

    def _rows(self, labels) -> str:
        head = f"{self.row_label} = " if self.row_label else ""
        return head + ", ".join(map(str, labels))

    def _caveat(self) -> str:
        if not self.unreliable:
            return ""
        return (f"; caveat: the intervals at {self._rows(self.unreliable)} may under-cover (too few "
                "replicates for the tails; use more replicates, or replicates='auto')")


#: Columns a variance table needs for :func:`variance_comparison`.
VARIANCE_TABLE_COLUMNS = ("batch_size", "pvalue", "z", "exact_variance", "ci_low", "ci_high")


def variance_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a variance table to compare with exact theory (the ``comparison`` of a
    :class:`lossvar.VarianceResult`; see :class:`lossvar.typing.ComparableResult`).

    One row per batch size with an exact variance that is not exactly 0 (the
    full batch of a fixed data set has no noise to compare): ``label`` (the
    batch size), ``estimate`` and ``se`` (``variance``, ``variance_se``),
    ``exact`` (``exact_variance``), ``ci_low``, ``ci_high``, ``z`` and ``pvalue``
    (the scaled chi-square law of the sample variance, :func:`variance_test`),
    ``reliable`` (``interval_reliable``) and ``sampling``. The batch sizes draw
    from independent streams (``attrs["independent"]``); the intervals' level
    is the table's ``attrs["confidence"]`` where it has one.

    Parameters
    ----------
    table : pandas.DataFrame
        With the columns ``batch_size``, ``pvalue``, ``z``, ``exact_variance``,
        ``ci_low``, ``ci_high`` (and, used where present, ``variance``,
        ``variance_se``, ``interval_reliable``, ``sampling``).
    """
    missing = set(VARIANCE_TABLE_COLUMNS) - set(table.columns)
    if missing:
        raise ValueError(f"`result` must have the columns of a lossvar variance table; missing "
                         f"{sorted(missing)}")
    exact = table["exact_variance"].to_numpy(dtype=float)
    keep = ~(exact == 0)
    nan = np.full(len(table), np.nan)

    def column(name, default, dtype=float):
        return table[name].to_numpy(dtype=dtype) if name in table else default

    frame = pd.DataFrame({
        "label": table["batch_size"].to_numpy(), "estimate": column("variance", nan),
        "se": column("variance_se", nan), "exact": exact, "ci_low": column("ci_low", nan),
        "ci_high": column("ci_high", nan), "z": column("z", nan), "pvalue": column("pvalue", nan),
        "reliable": column("interval_reliable", np.ones(len(table), dtype=bool), bool),
        "sampling": column("sampling", np.full(len(table), ""), object),
    })[keep].reset_index(drop=True)
    frame.attrs.update(independent=True, row_label="B", confidence=table.attrs.get("confidence"),
                       untested_reason="too few replicates for the tails")
    return frame


def agreement(result: Result | pd.DataFrame, *, exact: Any = None,
              confidence: float | None = None) -> AgreementResult:
    """One calibrated verdict: do the Monte Carlo estimates of a result agree with the exact
    theory?

    Reads ``result.comparison(exact)`` (:class:`lossvar.typing.ComparableResult`):
    one row per compared quantity with its estimate, standard error, exact value,
    interval and, where the result has an exact reference law, its two-sided
    p-value (else ``2 P(|T| > |z|)`` for ``z = (estimate - exact) / se``, ``T``
    Student t with the row's ``dof`` or normal). Rows from independent random
    streams are combined by ``sum z_i^2`` of the normal scores
    ``Phi^-1(1 - p_i / 2)`` against chi-square with one degree of freedom per
    row; rows that share replicates by Holm's global test, the smallest
    Holm-adjusted p-value (valid under any dependence). Holm's step-down
    adjustment of the row p-values names the rows that drive a disagreement.
    Calibration (the probability of ``p < 0.05`` under the theory) and power are
    measured in the tests and documented in docs/guide/intervals.md.

    The results with exact theory (docs/guide/results.md):

    - :class:`lossvar.VarianceResult` (or its table as a DataFrame): each batch
      size's variance against the exact one, with the p-value of the scaled
      chi-square law of a sample variance (:func:`variance_test`);
    - :class:`lossvar.noise.GradientVarianceResult`: each batch size's mean of
      ``||g_B - G||^2`` against ``tr Sigma / B`` (times the finite-population
      factor), a Student t test of a mean;
    - :class:`lossvar.TwoBatchResult` (also the monitor's estimate), given
      ``exact=`` the :class:`lossvar.GradientNoiseResult` of the same data and
      parameters: ``||G||^2`` and ``tr Sigma``;
    - :class:`lossvar.SGDResult`, given ``exact=`` the
      :func:`lossvar.theory.quadratic_moments` of its run: the mean of
      ``||w - w*||^2`` (and of the average's) at every recorded step, with the
      exact noncentral chi-square p-value in one dimension;
    - :class:`lossvar.ScalingFitResult` and
      :class:`lossvar.stats.PowerLawFitResult`: the exponent against -1 (the
      null exponent).

    Parameters
    ----------
    result : ComparableResult or pandas.DataFrame
        A result with exact theory, or a variance table with the columns
        ``batch_size``, ``pvalue``, ``z``, ``exact_variance``, ``ci_low``,
        ``ci_high`` (and ``sampling``, ``interval_reliable``).
    exact : optional
        The exact values, for a result that does not hold them (see above).
    confidence : float, optional
        The verdict's level: it disagrees when ``p < 1 - confidence``. Defaults
        to the result's own confidence (0.95 for a bare table or a result
        without intervals).

    Returns
    -------
    AgreementResult

    Raises
    ------
    TypeError
        When ``result`` has no exact theory to compare with.
    """
    if isinstance(result, pd.DataFrame):
        frame = variance_comparison(result)
        own = None
    elif isinstance(result, ComparableResult):
        frame = result.comparison(exact)
        own = result.confidence
    else:
        raise TypeError(f"`result` ({type(result).__name__}) has no exact theory to compare with; "
                        "agreement takes a result with a comparison(exact) method "
                        "(docs/guide/results.md lists them) or a variance table")
    if confidence is None:
        confidence = 0.95 if own is None else own
    confidence = as_float(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
    level = frame.attrs.get("confidence")
    return _verdict(frame, confidence, confidence if level is None else float(level))


def _verdict(frame: pd.DataFrame, confidence: float, level: float) -> AgreementResult:
    """The verdict on comparison rows, their intervals at ``level`` (made where absent)."""
    alpha = 1.0 - confidence
    labels = np.array([_plain(x) for x in frame["label"]], dtype=object)
    exact = frame["exact"].to_numpy(dtype=float)
    est = frame["estimate"].to_numpy(dtype=float)
    se = frame["se"].to_numpy(dtype=float)
    has_exact = np.isfinite(exact)
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = has_exact & np.isfinite(est) & np.isfinite(se) & (se > 0)
        z = (frame["z"].to_numpy(dtype=float) if "z" in frame
             else np.where(ok, (est - exact) / np.where(ok, se, 1.0), np.nan))
    if "pvalue" in frame:
        p = frame["pvalue"].to_numpy(dtype=float)
    elif "dof" in frame:
        p = np.where(ok, 2.0 * _st.t.sf(np.abs(z), frame["dof"].to_numpy(dtype=float)), np.nan)
    else:
        p = np.where(ok, 2.0 * _st.norm.sf(np.abs(z)), np.nan)
    p = np.minimum(p, 1.0)
    tested = has_exact & np.isfinite(p)
    if "ci_low" in frame:
        lo, hi = frame["ci_low"].to_numpy(dtype=float), frame["ci_high"].to_numpy(dtype=float)
    else:
        lo, hi = mean_interval(est, se, level)
    misses = int(np.sum(has_exact & ((exact < lo) | (exact > hi))))
    m = int(tested.sum())
    adjusted = holm(p[tested])
    if not m:
        stat, pvalue = 0.0, float("nan")
    elif frame.attrs.get("independent", True):
        stat = float(np.sum(two_sided_score(np.clip(p[tested], 1e-300, 1.0)) ** 2))
        pvalue = float(_st.chi2.sf(stat, m))
    else:
        stat = float(np.min(p[tested]))
        pvalue = float(np.min(adjusted))
    rows = pd.DataFrame({"label": labels[tested], "z": z[tested], "pvalue": p[tested],
                         "holm_pvalue": adjusted})
    reliable = (frame["reliable"].to_numpy(dtype=bool) if "reliable" in frame
                else np.ones(len(frame), dtype=bool))
    return AgreementResult(
        agrees=bool(m > 0 and pvalue >= alpha), pvalue=pvalue, statistic=stat, tested=m,
        misses=misses, expected_misses=float(has_exact.sum() * (1.0 - level)),
        intervals=int(has_exact.sum()), drivers=tuple(rows.label[rows.holm_pvalue < alpha]),
        holm=rows, untested=tuple(labels[has_exact & ~tested]), confidence=confidence,
        unreliable=tuple(labels[has_exact & ~reliable]),
        row_label=frame.attrs.get("row_label", ""),
        untested_reason=frame.attrs.get("untested_reason", "no exact reference law"))


def _plain(x):
    """A label as a Python value (numpy's integers as int), for tuples and texts."""
    return x.item() if isinstance(x, np.generic) else x


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order.

    Rejecting where the adjusted value is below ``alpha`` controls the
    family-wise error rate at ``alpha`` (S. Holm 1979, "A simple sequentially
    rejective multiple test procedure", Scand. J. Statist. 6:65).
    """
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


# -- verdicts for Monte Carlo means beside exact values, and across a study's tables ------


def estimate_agreement(estimate, se, exact, *, labels=None, pvalues=None, dof=None,
                       independent: bool = True, confidence: float = 0.95,
                       interval_confidence: float | None = None) -> AgreementResult:
    """One calibrated verdict for rows of Monte Carlo estimates beside exact values.

    Per row ``z = (estimate - exact) / se`` and a two-sided p-value: the given
    ``pvalues`` (an exact reference law, computed by the caller), else
    ``2 P(|T| > |z|)`` with ``T`` normal, or Student t with ``dof`` degrees of
    freedom (a mean of ``R`` i.i.d. replicates with its Monte Carlo SE:
    ``dof = R - 1``). Rows with no exact value, or ``se`` of 0 (deterministic),
    have no p-value and are listed as ``untested`` where the exact value exists.

    The rows are combined into one p-value in one of two ways:

    - ``independent=True`` (rows from independent random streams): ``sum z_i^2``
      of the normal scores ``Phi^-1(1 - p_i / 2)`` against chi-square with one
      degree of freedom per row, as :func:`agreement` does;
    - ``independent=False`` (rows that share replicates, e.g. the same runs at
      several steps): Holm's global test, ``min(1, m min p_i)`` (the smallest
      Holm-adjusted p-value), valid under any dependence between the rows.

    Parameters
    ----------
    estimate, se, exact : array_like
        Monte Carlo estimates, their standard errors, the exact values (NaN where
        unknown).
    labels : sequence, optional
        Row names, used for ``drivers`` and ``untested`` (default 0, 1, ...).
    pvalues : array_like, optional
        Row p-values from an exact reference; NaN leaves a row untested.
    dof : array_like or float, optional
        Degrees of freedom of a Student t reference (ignored with ``pvalues``).
    independent : bool
        How to combine the rows (see above).
    confidence : float
        The verdict's level: it disagrees when ``p < 1 - confidence``; rows whose
        Holm-adjusted p-value is below ``1 - confidence`` are the ``drivers``.
    interval_confidence : float, optional
        Level of the rows' intervals ``estimate +- z se`` whose misses are counted
        (default ``confidence``).

    Returns
    -------
    AgreementResult
        ``holm`` has columns ``label``, ``z``, ``pvalue``, ``holm_pvalue``.
    """
    confidence = as_float(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
    level = confidence if interval_confidence is None else as_float(
        interval_confidence, "interval_confidence", low=0.0, high=1.0, low_open=True, high_open=True)
    est = np.asarray(estimate, dtype=float).ravel()
    sd = np.broadcast_to(np.asarray(se, dtype=float).ravel(), est.shape)
    ex = np.broadcast_to(np.asarray(exact, dtype=float).ravel(), est.shape)
    labels = np.arange(est.size) if labels is None else np.asarray(list(labels), dtype=object)
    if labels.shape != est.shape:
        raise ValueError(f"`labels` must have one entry per row ({est.size}); got {labels.size}")
    has_exact = np.isfinite(ex)
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = has_exact & np.isfinite(est) & np.isfinite(sd) & (sd > 0)
        z = np.where(ok, (est - ex) / np.where(ok, sd, 1.0), np.nan)
    if pvalues is not None:
        p = np.broadcast_to(np.asarray(pvalues, dtype=float).ravel(), est.shape)
        p = np.where(has_exact, p, np.nan)
    elif dof is not None:
        p = np.where(ok, 2.0 * _st.t.sf(np.abs(z), np.broadcast_to(dof, est.shape)), np.nan)
    else:
        p = np.where(ok, 2.0 * _st.norm.sf(np.abs(z)), np.nan)
    p = np.minimum(p, 1.0)
    tested = np.isfinite(p)
    m = int(tested.sum())
    alpha = 1.0 - confidence
    adjusted = holm(p[tested])
    if not m:
        stat, pvalue = float("nan"), float("nan")
    elif independent:
        stat = float(np.sum(two_sided_score(np.clip(p[tested], 1e-300, 1.0)) ** 2))
        pvalue = float(_st.chi2.sf(stat, m))
    else:
        stat = float(np.min(p[tested]))
        pvalue = float(np.min(adjusted))
    half = two_sided_z(level) * sd
    misses = int(np.sum(ok & ((ex < est - half) | (ex > est + half))))
    rows = pd.DataFrame({"label": labels[tested], "z": z[tested], "pvalue": p[tested],
                         "holm_pvalue": adjusted})
    return AgreementResult(agrees=bool(m > 0 and pvalue >= alpha), pvalue=pvalue, statistic=stat,
                           tested=m, misses=misses, expected_misses=float(ok.sum() * (1.0 - level)),
                           intervals=int(ok.sum()), drivers=tuple(rows.label[rows.holm_pvalue < alpha]),
                           holm=rows, untested=tuple(labels[has_exact & ~tested]),
                           confidence=confidence)


def study_verdicts(rows, confidence: float, *, row_label: str = "B",
                   untested_reason: str = "too few replicates for the tails") -> pd.DataFrame:
    """One verdict per table of a study, judged after Holm across the study's tables.

    A study shows several verdicts, so each is judged on its Holm-adjusted
    p-value across them: the family-wise error of the study is at most
    ``1 - confidence`` whatever the dependence between its tables.

    Parameters
    ----------
    rows : iterable of (dict, AgreementResult)
        Per table, the columns that name it (e.g. ``source``, ``sampling``) and
        its verdict (:func:`agreement` or :func:`estimate_agreement`).
    confidence : float
        The study's level.
    row_label : str
        How the text names a table's rows (``"B"``: "driven by B = 1 16").
    untested_reason : str
        Why rows with an exact value were not tested, for the text.

    Returns
    -------
    pandas.DataFrame
        The naming columns, then ``pvalue``, ``tested``, ``misses``,
        ``intervals``, ``expected_misses``, ``drivers``, ``untested``,
        ``holm_pvalue``, ``agrees`` and ``verdict`` (the text of
        :func:`verdict_text`).
    """
    out = []
    for keys, a in rows:
        out.append(dict(**keys, pvalue=a.pvalue, tested=a.tested, misses=a.misses,
                        intervals=a.intervals, expected_misses=a.expected_misses,
                        drivers=_join(a.drivers), untested=_join(a.untested)))
    table = pd.DataFrame(out)
    table["holm_pvalue"] = holm(table.pvalue.fillna(1.0).to_numpy())
    # Nothing tested is no verdict, never "agrees (p = nan)".
    table["agrees"] = (table.tested > 0) & (table.holm_pvalue >= 1 - confidence)
    table["verdict"] = [verdict_text(r, row_label=row_label, untested_reason=untested_reason)
                        for r in table.itertuples()]
    return table


def verdict_text(row, *, row_label: str = "B",
                 untested_reason: str = "too few replicates for the tails") -> str:
    """The one-line verdict of a row of :func:`study_verdicts`."""
    if row.tested == 0:
        text = f"no verdict: no row could be tested against an exact value ({untested_reason})"
        return text + (f"; {row_label} = {row.untested} untested" if row.untested else "")
    head = "agrees with theory" if row.agrees else "DISAGREES with theory"
    text = (f"{head} (p = {row.pvalue:.3g}, {row.holm_pvalue:.3g} after Holm over the study's "
            f"tables; {row.misses} of {row.intervals} intervals miss, {row.expected_misses:.2g} "
            "expected)")
    if not row.agrees and row.drivers:
        text += f"; driven by {row_label} = {row.drivers}"
    if row.untested:
        text += f"; {row_label} = {row.untested} not tested ({untested_reason})"
    return text


def _join(labels) -> str:
    labels = [str(x) for x in labels]
    sep = " " if all(" " not in x for x in labels) else "; "
    if len(labels) > 12:
        labels = [*labels[:12], f"... ({len(labels) - 12} more)"]
    return sep.join(labels)
