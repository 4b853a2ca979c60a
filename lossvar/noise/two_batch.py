r"""Two-batch estimates of the gradient noise (McCandlish et al. 2018, appendix A.1).

For a model whose per-example gradients are too costly, the squared norms of
batch-mean gradients at two batch sizes :math:`B_s < B_b` give unbiased
estimates of :math:`\|G\|^2` and :math:`\operatorname{tr}\Sigma`, with the
finite-population correction for batches drawn without replacement
(docs/theory.md, section 10). :class:`lossvar.TwoBatchDesign` holds the per-pair
formulas (shared with :class:`lossvar.GradientNoiseMonitor`),
:class:`lossvar.TwoBatchResult` the averaged estimate with standard errors and
Fieller's interval for :math:`B_\mathrm{simple}`; negative estimates are
flagged with a :class:`lossvar.NegativeEstimateWarning`.

References
----------
S. McCandlish, J. Kaplan, D. Amodei et al. (2018), "An Empirical Model of
Large-Batch Training", arXiv:1812.06162, appendix A.1.
E. C. Fieller (1954), "Some problems in interval estimation", J. R. Stat.
Soc. B 16:175-185.
L. Kish (1965), *Survey Sampling*, Wiley, section 11.7.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as _st

from .. import sampling as _sampling
from .._result import ConfidenceInterval, ResultBase
from .._validate import as_choice, as_finite_array, as_float, as_int
from ..stats import fieller_interval, two_sided_z
from ..streams import as_seed_sequence, stream
from ..typing import ArrayLike, RNGLike
from ._arrays import frozen, ratio
from .exact import GradientNoiseResult

__all__ = [
    "NegativeEstimateWarning",
    "TwoBatchDesign",
    "TwoBatchResult",
    "two_batch_estimate",
    "two_batch_estimate_from_callable",
]


class NegativeEstimateWarning(UserWarning):
    """A two-batch estimate of ||G||^2, tr Sigma or B_simple is negative; the true values never are."""


def _n_required() -> ValueError:
    return ValueError(
        "`n` (the data set size N) is required with sampling='without_replacement'; got None. "
        "'without_replacement' is the default (what a shuffling data loader does): pass n=N, or "
        "sampling='with_replacement' for independent draws or fresh data"
    )


@dataclass(frozen=True)
class TwoBatchDesign:
    r"""The batch sizes and sampling of a two-batch estimate, and its per-pair formulas.

    From :math:`E\|G_B\|^2 = \|G\|^2 + c_B \operatorname{tr}\Sigma` at two
    batch sizes :math:`B_s < B_b`, with :math:`k_B = B c_B`: 1 for
    independent draws (``"with_replacement"``, or fresh data) and
    :math:`(N - B)/(N - 1)` without replacement from N examples, each pair
    of squared norms :math:`Y_s = \|G_{B_s}\|^2`, :math:`Y_b = \|G_{B_b}\|^2`
    gives the unbiased estimates

    .. math::

        \widehat{\|G\|^2} = \frac{k_s B_b Y_b - k_b B_s Y_s}{k_s B_b - k_b B_s},
        \qquad
        \widehat{\operatorname{tr}\Sigma} = \frac{B_s B_b (Y_s - Y_b)}{k_s B_b - k_b B_s},

    McCandlish et al.'s (2018, appendix A.1) formulas when k = 1. This is the
    one implementation of them: :func:`two_batch_estimate` and
    :class:`lossvar.GradientNoiseMonitor` both call :meth:`pairs`.

    Parameters
    ----------
    b_small, b_big : int
        Batch sizes, ``1 <= b_small < b_big``.
    n : int or None
        Data set size N >= 2; required with ``sampling="without_replacement"``
        (then ``b_big <= n``), unused with replacement.
    sampling : {"without_replacement", "with_replacement"}
        How the batches were drawn.

    Raises
    ------
    ValueError
        Naming the argument, when the sizes are not ``1 <= b_small < b_big``
        (``b_big <= n`` without replacement) or ``n`` is missing.
    """

    b_small: int
    b_big: int
    n: int | None
    sampling: str

    def __post_init__(self):
        sampling = as_choice(self.sampling, "sampling", _sampling.SCHEMES)
        b_small = as_int(self.b_small, "b_small", low=1)
        b_big = as_int(self.b_big, "b_big", low=1)
        if b_small >= b_big:
            raise ValueError(f"`b_small` must be smaller than `b_big`; got b_small={b_small}, b_big={b_big}")
        n = self.n
        if n is None:
            if sampling == "without_replacement":
                raise _n_required()
        else:
            n = as_int(n, "n", low=2)
            if sampling == "without_replacement" and b_big > n:
                raise ValueError(
                    f"`b_big` must be <= n={n} with sampling='without_replacement'; got b_big={b_big}"
                )
        for name, value in (("b_small", b_small), ("b_big", b_big), ("n", n), ("sampling", sampling)):
            object.__setattr__(self, name, value)

    def pairs(self, small_norm2, big_norm2):
        r"""Per-pair unbiased estimates of :math:`\|G\|^2` and :math:`\operatorname{tr}\Sigma`.

        Parameters
        ----------
        small_norm2, big_norm2 : float or ndarray
            Squared norms of the mean gradients of batches of ``b_small``
            and ``b_big`` examples (one pair, or arrays of pairs; not
            validated here).

        Returns
        -------
        (grad_norm2, trace_cov) : tuple of float or ndarray
            Same shape as the inputs.
        """
        k_s = 1.0 if self.sampling == "with_replacement" else (self.n - self.b_small) / (self.n - 1)
        k_b = 1.0 if self.sampling == "with_replacement" else (self.n - self.b_big) / (self.n - 1)
        # Multiplied through by B_s B_b, so that k = 1 gives McCandlish's formulas verbatim.
        den = k_s * self.b_big - k_b * self.b_small
        g2 = (k_s * self.b_big * big_norm2 - k_b * self.b_small * small_norm2) / den
        tr = self.b_small * self.b_big * (small_norm2 - big_norm2) / den
        return g2, tr


@dataclass(frozen=True, eq=False)
class TwoBatchResult(ResultBase):
    r"""Unbiased estimates of :math:`\|G\|^2` and :math:`\operatorname{tr}\Sigma` from batch pairs.

    A result (docs/guide/results.md): ``to_frame()`` is one row of the
    estimates, standard errors and interval ends; given the exact values of
    the same data and parameters, :func:`lossvar.agreement` compares the
    estimates with them (:meth:`comparison`).

    :math:`\Sigma` is the population covariance (divides by N). The
    estimates are (weighted) averages of the per-pair estimates of
    :class:`TwoBatchDesign`; their standard errors and intervals assume the
    pairs independent and identically distributed (true for pairs drawn
    afresh at fixed parameters; in a training run only while the parameters
    move little).

    Attributes
    ----------
    grad_norm2, trace_cov : float
        Averaged unbiased estimates.
    b_simple : float
        ``trace_cov / grad_norm2``, the ratio of the averages: consistent, not
        unbiased. Its bias is :math:`(B_\mathrm{simple} V_S - C_{TS}) / \bar S^2`
        to second order (delta method), with :math:`V_S`, :math:`C_{TS}` the
        variance and covariance of the averages: :math:`O(1/n_\mathrm{eff})`
        (the average of per-pair ratios would be biased at O(1)).
    grad_norm2_se, trace_cov_se : float
        Standard errors of the averages: :math:`\sqrt{s^2 / n_\mathrm{eff}}`
        with :math:`s^2` the unbiased variance of the per-pair estimates.
        NaN with one pair.
    b_simple_se : float
        Delta-method standard error of ``b_simple``, from the linearization
        :math:`(T_r - B_\mathrm{simple} S_r) / \bar S` of the pairs.
    grad_norm2_ci, trace_cov_ci : ConfidenceInterval
        Normal ``confidence`` intervals ``estimate +- z se``.
    b_simple_ci : ConfidenceInterval
        Fieller's ``confidence`` interval for the ratio (Fieller 1954), the
        values :math:`\rho \ge 0` that the test of
        :math:`E[\bar T - \rho \bar S] = 0` does not reject. Unlike
        ``b_simple +- z b_simple_se`` it does not inherit the ratio's bias
        (:math:`\bar T - \rho \bar S` has mean exactly 0 at the true
        :math:`\rho`) and it is honest when :math:`\|G\|^2` is not
        significantly above 0: then it is a ray ``(low, inf)``, a lower bound
        on :math:`B_\mathrm{simple}`. (nan, nan) when no value is left
        (the estimates are negative: see ``flags``).
    confidence : float
    n_pairs : int
        R, the number of pairs.
    n_eff : float
        Effective number of pairs: R for a plain average, Kish's
        :math:`(\sum w)^2 / \sum w^2` for a weighted one.
    b_small, b_big : int
    n : int or None
        N (None with replacement when not given).
    sampling : str
    flags : tuple of str
        Any of ``"negative_grad_norm2"``, ``"negative_trace_cov"``,
        ``"negative_b_simple"``: estimates that the true values never take;
        a :class:`NegativeEstimateWarning` said the likely cause. Empty
        otherwise.
    grad_norm2_pairs, trace_cov_pairs : ndarray, shape (R,), or None
        The per-pair estimates (None from the online monitor, which keeps
        none).

    References
    ----------
    E. C. Fieller (1954), "Some problems in interval estimation", J. R. Stat.
    Soc. B 16:175-185; L. Kish (1965), *Survey Sampling*, section 11.7.
    """

    grad_norm2: float
    trace_cov: float
    b_simple: float
    grad_norm2_se: float
    trace_cov_se: float
    b_simple_se: float
    grad_norm2_ci: ConfidenceInterval
    trace_cov_ci: ConfidenceInterval
    b_simple_ci: ConfidenceInterval
    confidence: float
    n_pairs: int
    n_eff: float
    b_small: int
    b_big: int
    n: int | None
    sampling: str
    flags: tuple[str, ...] = ()
    grad_norm2_pairs: np.ndarray | None = field(default=None, repr=False)
    trace_cov_pairs: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_moments(cls, design: TwoBatchDesign, mean, cov, *, n_pairs: int, n_eff: float,
                     confidence: float, pairs=None, stacklevel: int = 2) -> TwoBatchResult:
        r"""The estimate from the mean and covariance of the per-pair estimates.

        Parameters
        ----------
        design : TwoBatchDesign
        mean : pair of float
            :math:`(\bar S, \bar T)`, the (weighted) averages of the per-pair
            estimates of :math:`\|G\|^2` and :math:`\operatorname{tr}\Sigma`.
        cov : array_like, shape (2, 2)
            Unbiased covariance of one pair's (S, T) (NaN when unknown); the
            averages have covariance ``cov / n_eff``.
        n_pairs : int
        n_eff : float
        confidence : float
        pairs : tuple of two ndarrays, optional
            The per-pair estimates, kept on the result.
        stacklevel : int
            Of the :class:`NegativeEstimateWarning`, counted from the caller
            of this method.

        Returns
        -------
        TwoBatchResult
        """
        confidence = as_float(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
        s, t = float(mean[0]), float(mean[1])
        cov = np.asarray(cov, dtype=np.float64)
        v_s, v_t, c = (float(cov[0, 0]) / n_eff, float(cov[1, 1]) / n_eff, float(cov[0, 1]) / n_eff)
        b = float(ratio(t, s))
        lin = v_t - 2.0 * b * c + b * b * v_s  # Var(T - b S) of the averages; >= 0 but for rounding
        b_se = math.sqrt(max(lin, 0.0)) / abs(s) if s != 0 and math.isfinite(lin) else math.nan
        z = two_sided_z(confidence)
        se_s, se_t = math.sqrt(v_s), math.sqrt(v_t)
        flags = tuple(name for name, value in (("negative_grad_norm2", s), ("negative_trace_cov", t),
                                               ("negative_b_simple", b)) if value < 0)
        est = cls(
            grad_norm2=s, trace_cov=t, b_simple=b, grad_norm2_se=se_s, trace_cov_se=se_t, b_simple_se=b_se,
            grad_norm2_ci=ConfidenceInterval(s - z * se_s, s + z * se_s),
            trace_cov_ci=ConfidenceInterval(t - z * se_t, t + z * se_t),
            b_simple_ci=fieller_interval(t, s, v_t, v_s, c, confidence, lower=0.0), confidence=confidence,
            n_pairs=int(n_pairs),
            n_eff=float(n_eff), b_small=design.b_small, b_big=design.b_big, n=design.n,
            sampling=design.sampling, flags=flags,
            grad_norm2_pairs=None if pairs is None else frozen(pairs[0]),
            trace_cov_pairs=None if pairs is None else frozen(pairs[1]),
        )
        if flags:
            warnings.warn(est.warning_text(), NegativeEstimateWarning, stacklevel=stacklevel + 1)
        return est

    def warning_text(self) -> str:
        """What the ``flags`` mean and their likely cause ("" when there are none)."""
        if not self.flags:
            return ""
        # The standard error comes from the pairs themselves: Student's t with n_eff - 1 degrees of
        # freedom says how far below 0 noise alone plausibly reaches.
        dof = self.n_eff - 1.0
        q = float(_st.t.ppf(0.5 + self.confidence / 2.0, dof)) if dof > 0 else math.inf
        parts, far = [], False
        for flag, name, value, se in (("negative_grad_norm2", "||G||^2", self.grad_norm2, self.grad_norm2_se),
                                      ("negative_trace_cov", "tr Sigma", self.trace_cov, self.trace_cov_se)):
            if flag in self.flags:
                if se > 0:
                    parts.append(f"{name} = {value:.3g} ({-value / se:.3g} standard errors below 0)")
                    far |= -value > q * se
                else:
                    parts.append(f"{name} = {value:.3g}")
        text = (f"negative two-batch estimate of {' and '.join(parts)}, so B_simple = {self.b_simple:.3g} "
                f"is meaningless: the true values are >= 0. ")
        if self.sampling == "with_replacement":
            hint = ("sampling='with_replacement' was used, but batches from a shuffling data loader are "
                    "drawn without replacement: then pass sampling='without_replacement' and n")
        else:
            hint = (f"sampling='without_replacement' with n={self.n} was used: if the batches were "
                    "independent draws (or fresh data), pass sampling='with_replacement'; else check "
                    "that n is the size of the data set they were drawn from")
        if far:
            return text + (f"It is more than {q:.3g} standard errors below 0 (n_pairs={self.n_pairs}), "
                           f"beyond what noise plausibly gives: the sampling likely does not match how "
                           f"the batches were drawn ({hint}).")
        within = ("There is no standard error with one pair" if self.n_pairs < 2 else
                  f"It is within {q:.3g} standard errors of 0")
        return text + (f"{within} (n_pairs={self.n_pairs}): likely too few pairs for the noise; use "
                       f"more, until the standard error is well below the estimate. If it stays "
                       f"negative, the sampling may not match how the batches were drawn ({hint}).")

    def _row(self) -> dict:
        row = super()._row()
        for name in ("grad_norm2_pairs", "trace_cov_pairs"):  # arrays, or None from the monitor
            row.pop(name, None)
        return dict(row, flags=" ".join(self.flags))

    def comparison(self, exact: Any = None) -> pd.DataFrame:
        r"""The unbiased estimates of :math:`\|G\|^2` and :math:`\operatorname{tr}\Sigma` against
        their exact values.

        Parameters
        ----------
        exact : GradientNoiseResult or mapping
            The exact statistics of the data and parameters the batches were
            drawn from (:func:`lossvar.gradient_noise` with ``ddof=0``), or a
            mapping with ``grad_norm2`` and ``trace_cov``.

        Returns
        -------
        pandas.DataFrame
            Rows ``grad_norm2`` and ``trace_cov``: ``estimate``, ``se``,
            ``exact``, the normal intervals and ``dof = n_eff - 1`` (a Student t
            reference for the mean of the pairs). Both come from the same
            pairs, so the rows are not independent (Holm's test combines them).
            ``b_simple`` is their ratio, biased at O(1/n_eff), and is not a row.
        """
        if exact is None:
            raise ValueError("`exact` must give the exact statistics to compare a TwoBatchResult "
                             "with: the GradientNoiseResult of the same data and parameters "
                             "(lossvar.gradient_noise), or a mapping with grad_norm2 and trace_cov; "
                             "got None")
        if isinstance(exact, GradientNoiseResult):
            if exact.ddof != 0:
                raise ValueError(f"`exact` must have the population covariance (ddof=0) that the "
                                 f"two-batch estimate estimates; got ddof={exact.ddof}")
            values = [exact.grad_norm2, exact.trace_cov]
        elif isinstance(exact, Mapping):
            values = [exact["grad_norm2"], exact["trace_cov"]]
        else:
            raise TypeError(f"`exact` must be a GradientNoiseResult or a mapping with grad_norm2 and "
                            f"trace_cov; got {type(exact).__name__}")
        frame = pd.DataFrame({
            "label": ["grad_norm2", "trace_cov"], "estimate": [self.grad_norm2, self.trace_cov],
            "se": [self.grad_norm2_se, self.trace_cov_se], "exact": np.asarray(values, dtype=float),
            "ci_low": [self.grad_norm2_ci.low, self.trace_cov_ci.low],
            "ci_high": [self.grad_norm2_ci.high, self.trace_cov_ci.high],
            "dof": [self.n_eff - 1.0] * 2})
        frame.attrs.update(independent=False, confidence=self.confidence, row_label="",
                           untested_reason="no standard error with one pair")
        return frame

    def summary(self) -> str:
        """The three estimates with standard errors and intervals, and what any flag means."""
        pct = f"{100 * self.confidence:g}%"
        weighted = self.n_eff != self.n_pairs
        pairs = f"{self.n_pairs} pair(s)" + (f", n_eff={self.n_eff:.4g}" if weighted else "")
        n = "" if self.n is None else f", n={self.n}"
        lines = [
            f"TwoBatchResult({pairs}, b_small={self.b_small}, b_big={self.b_big}, "
            f"sampling={self.sampling!r}{n}; estimate +- se [{pct} interval])",
            f"  ||G||^2     {self.grad_norm2:.6g} +- {self.grad_norm2_se:.3g} "
            f"[{self.grad_norm2_ci[0]:.4g}, {self.grad_norm2_ci[1]:.4g}]",
            f"  tr Sigma    {self.trace_cov:.6g} +- {self.trace_cov_se:.3g} "
            f"[{self.trace_cov_ci[0]:.4g}, {self.trace_cov_ci[1]:.4g}]",
            f"  B_simple    {self.b_simple:.6g} +- {self.b_simple_se:.3g} "
            f"[{self.b_simple_ci[0]:.4g}, {self.b_simple_ci[1]:.4g}] (Fieller)",
        ]
        if self.flags:
            lines.append("  " + self.warning_text())
        return "\n".join(lines)


def two_batch_estimate(small: ArrayLike, big: ArrayLike, b_small: int, b_big: int, *, n: int | None = None,
                       sampling: str = "without_replacement", confidence: float = 0.95) -> TwoBatchResult:
    r"""Unbiased :math:`\|G\|^2` and :math:`\operatorname{tr}\Sigma` from batch means at two sizes.

    From :math:`E\|G_B\|^2 = \|G\|^2 + c_B \operatorname{tr}\Sigma` at
    :math:`B_s` < :math:`B_b` (McCandlish et al. 2018, appendix A.1), with
    :math:`c_B = 1/B` for independent draws (``"with_replacement"``):

    .. math::

        \widehat{\|G\|^2} = \frac{B_b \|G_{B_b}\|^2 - B_s \|G_{B_s}\|^2}{B_b - B_s},
        \qquad
        \widehat{\operatorname{tr}\Sigma} = \frac{\|G_{B_s}\|^2 - \|G_{B_b}\|^2}{1/B_s - 1/B_b}.

    Without replacement from N examples, :math:`c_B = (N - B)/(B (N - 1))`
    replaces 1/B; solving the two equations gives, with
    :math:`k_B = B c_B = (N - B)/(N - 1)`,

    .. math::

        \widehat{\|G\|^2} = \frac{k_s B_b \|G_{B_b}\|^2 - k_b B_s \|G_{B_s}\|^2}{k_s B_b - k_b B_s},
        \qquad
        \widehat{\operatorname{tr}\Sigma} = \frac{B_s B_b (\|G_{B_s}\|^2 - \|G_{B_b}\|^2)}{k_s B_b - k_b B_s}

    (:meth:`TwoBatchDesign.pairs`). Using the plain formulas on batches drawn
    without replacement instead estimates
    :math:`\|G\|^2 - \operatorname{tr}\Sigma/(N - 1)` and
    :math:`\operatorname{tr}\Sigma \, N/(N - 1)` (since
    :math:`B c_B = N/(N-1) - B/(N-1)`), whatever the batch sizes: near a
    minimum that is a negative squared norm. A negative estimate of
    :math:`\|G\|^2`, :math:`\operatorname{tr}\Sigma` or
    :math:`B_\mathrm{simple}` is flagged (``flags``) with a
    :class:`NegativeEstimateWarning` naming the likely cause.
    The two batches of a pair may be independent or nested: each estimate is
    linear in the two expectations.

    Parameters
    ----------
    small, big : array_like, shape (p,) or (R, p)
        Mean gradients of batches of ``b_small`` and ``b_big`` examples, one
        pair per row.
    b_small, b_big : int
        Batch sizes, ``1 <= b_small < b_big``.
    n : int, optional
        Data set size N; required with ``sampling="without_replacement"``
        (the default), ignored otherwise.
    sampling : {"without_replacement", "with_replacement"}, default "without_replacement"
        How the batches were drawn: without replacement from N examples (what
        a shuffling data loader does, the package's default), or
        independently ("with_replacement", which also covers fresh i.i.d.
        examples from a population).
    confidence : float in (0, 1), default 0.95
        Level of the intervals.

    Returns
    -------
    TwoBatchResult
        :math:`\Sigma` is the population covariance (divides by N).

    Warns
    -----
    NegativeEstimateWarning
        When an estimate is negative.

    References
    ----------
    McCandlish et al. (2018), arXiv:1812.06162, appendix A.1; docs/theory.md,
    section 10.
    """
    design = TwoBatchDesign(b_small, b_big, n, sampling)
    small = as_finite_array(small, "small")
    big = as_finite_array(big, "big")
    if small.ndim not in (1, 2) or small.shape[-1] < 1 or (small.ndim == 2 and small.shape[0] < 1):
        raise ValueError(f"`small` must have shape (p,) or (R, p) with R, p >= 1; got {small.shape}")
    if big.shape != small.shape:
        raise ValueError(f"`big` must have the shape of `small`, {small.shape}; got {big.shape}")
    return _estimate(design, np.atleast_2d(small), np.atleast_2d(big), confidence)


def _estimate(design, small, big, confidence) -> TwoBatchResult:
    """The estimate from validated (R, p) batch means; warns at the public function's caller."""
    g2, tr = design.pairs(np.einsum("ij,ij->i", small, small), np.einsum("ij,ij->i", big, big))
    r = g2.size
    both = np.stack([g2, tr])
    cov = np.cov(both) if r >= 2 else np.full((2, 2), np.nan)
    return TwoBatchResult.from_moments(design, both.mean(axis=1), cov, n_pairs=r, n_eff=r,
                                         confidence=confidence, pairs=(g2, tr), stacklevel=3)


def two_batch_estimate_from_callable(batch_grad: Callable[[np.ndarray], ArrayLike], n: int, b_small: int,
                                     b_big: int, *, replicates: int = 100,
                                     sampling: str = "without_replacement", rng: RNGLike = None,
                                     confidence: float = 0.95) -> TwoBatchResult:
    r"""Two-batch estimate for any model, from a function of batch indices.

    Draws ``replicates`` independent pairs of index batches of ``b_small``
    and ``b_big`` examples from ``range(n)`` (vectorized draws of
    :mod:`lossvar.sampling`), calls ``batch_grad`` on each and returns
    :func:`two_batch_estimate` of the results with the matching ``c_B``. The
    function may wrap any framework (a PyTorch module, a JAX function), so
    lossvar never needs to know it.

    Parameters
    ----------
    batch_grad : callable
        ``batch_grad(indices) -> array_like, shape (p,)``: the mean gradient
        over the examples ``indices`` (a 1-D int array, sorted without
        replacement, possibly with repeats with replacement).
    n : int
        Data set size N >= 2.
    b_small, b_big : int
        Batch sizes, ``1 <= b_small < b_big`` (``b_big <= n`` without
        replacement).
    replicates : int, default 100
        Number of batch pairs R >= 1 (standard errors need R >= 2).
    sampling : {"without_replacement", "with_replacement"}, default "without_replacement"
        How each batch is drawn (the default is what a shuffling data loader
        does); the estimator always uses the matching :math:`c_B`.
    rng : int, SeedSequence, Generator or None
        Seed of the draws (SPEC 7).
    confidence : float in (0, 1), default 0.95
        Level of the intervals.

    Returns
    -------
    TwoBatchResult

    References
    ----------
    McCandlish et al. (2018), arXiv:1812.06162, appendix A.1.
    """
    if not callable(batch_grad):
        raise TypeError(f"`batch_grad` must be a callable batch_grad(indices) -> (p,); got {batch_grad!r}")
    n = as_int(n, "n", low=2)
    design = TwoBatchDesign(b_small, b_big, n, sampling)
    replicates = as_int(replicates, "replicates", low=1)
    confidence = as_float(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
    gen = stream(as_seed_sequence(rng))
    draw = getattr(_sampling, design.sampling)
    idx_small = draw(gen, n, design.b_small, replicates)
    idx_big = draw(gen, n, design.b_big, replicates)
    small = _call_all(batch_grad, idx_small)
    big = _call_all(batch_grad, idx_big)
    if big.shape != small.shape:
        raise ValueError(
            f"`batch_grad` must return arrays of one shape (p,); got {small.shape[1:]} and {big.shape[1:]}"
        )
    return _estimate(design, small, big, confidence)


def _call_all(batch_grad, indices) -> np.ndarray:
    rows = [np.asarray(batch_grad(np.array(idx)), dtype=np.float64) for idx in indices]
    shapes = {r.shape for r in rows}
    if len(shapes) != 1 or rows[0].ndim != 1:
        raise ValueError(f"`batch_grad` must return arrays of one shape (p,); got shapes {sorted(shapes)}")
    return as_finite_array(np.stack(rows), "batch_grad(indices)")
