r"""The gradient noise scale during training: :class:`lossvar.GradientNoiseMonitor`.

An online form of the two-batch estimate (McCandlish et al. 2018, appendix
A.1): each training step gives the squared norms of the mean gradient at two
batch sizes, and the monitor keeps running (optionally exponentially
weighted) estimates of :math:`\|G\|^2`, :math:`\operatorname{tr}\Sigma` and
:math:`B_\mathrm{simple}` with standard errors and intervals, in O(1) work
and memory per step, for a training loop in any framework.

References
----------
S. McCandlish, J. Kaplan, D. Amodei et al. (2018), "An Empirical Model of
Large-Batch Training", arXiv:1812.06162, appendix A.1.
D. H. D. West (1979), "Updating mean and variance estimates: an improved
method", Commun. ACM 22:532-535.
L. Kish (1965), *Survey Sampling*, Wiley, section 11.7.
E. C. Fieller (1954), "Some problems in interval estimation", J. R. Stat.
Soc. B 16:175-185.
"""

from __future__ import annotations

import math

from .._validate import as_float
from .two_batch import TwoBatchDesign, TwoBatchResult

__all__ = ["GradientNoiseMonitor"]


class _Running:
    """Weighted running mean and co-moments of (S, T) pairs, old weights decayed by ``decay``.

    West's (1979) weighted update: with total weight W, each new pair of
    weight 1 moves the mean by ``delta / W`` and adds ``delta (x - mean_new)``
    to the co-moments, never subtracting large uncentered sums. Decaying all
    old weights by beta multiplies W by beta, the sum of squared weights by
    beta^2 and the co-moments by beta; the mean is unchanged.
    """

    __slots__ = ("count", "w", "w2", "s", "t", "ss", "tt", "st")

    def __init__(self):
        self.count, self.w, self.w2 = 0, 0.0, 0.0
        self.s = self.t = self.ss = self.tt = self.st = 0.0

    def add(self, s: float, t: float, decay: float) -> None:
        if decay != 1.0:
            self.w *= decay
            self.w2 *= decay * decay
            self.ss *= decay
            self.tt *= decay
            self.st *= decay
        self.count += 1
        self.w += 1.0
        self.w2 += 1.0
        ds, dt = s - self.s, t - self.t
        self.s += ds / self.w
        self.t += dt / self.w
        self.ss += ds * (s - self.s)
        self.tt += dt * (t - self.t)
        self.st += ds * (t - self.t)

    def moments(self):
        """Mean (S, T), the unbiased covariance of one pair and Kish's effective sample size."""
        # Reliability weights: E[sum w (x - mean)^2] = (W - W2 / W) sigma^2 for i.i.d. x.
        dof = self.w - self.w2 / self.w
        k = 1.0 / dof if dof > 0 else math.nan
        cov = [[self.ss * k, self.st * k], [self.st * k, self.tt * k]]
        return (self.s, self.t), cov, self.w * self.w / self.w2


def _norm2(value, name: str) -> float:
    """A squared norm: a finite float >= 0 (numpy floats included), else as_float's checks and error."""
    if isinstance(value, float) and 0.0 <= value < math.inf:  # the common case, without as_float's cost
        return float(value)
    return as_float(value, name, low=0.0)


class GradientNoiseMonitor:
    r"""Running estimates of the gradient noise scale from per-step gradient norms.

    Each step of a training loop calls ``update(small_norm2, big_norm2)``
    with the squared norms :math:`Y_s = \|G_{B_s}\|^2` and
    :math:`Y_b = \|G_{B_b}\|^2` of the mean gradient over ``b_small`` and
    ``b_big`` examples: for example one micro-batch's gradient and the
    accumulated mean of the step under gradient accumulation, or one rank's
    gradient and the all-reduced mean under data parallelism.
    ``small_norm2`` may also be the average of the squared norms of the K
    micro-batches (or ranks) of the step: it has the same expectation and
    less variance. The two batches may be nested, as they are there: each
    estimate is linear in the two expectations.

    Each pair gives unbiased estimates :math:`S` of :math:`\|G\|^2` and
    :math:`T` of :math:`\operatorname{tr}\Sigma`
    (:meth:`lossvar.TwoBatchDesign.pairs`, the formulas of
    :func:`lossvar.two_batch_estimate`, with the finite-population
    correction :math:`k_B = (N - B)/(N - 1)` when ``n`` is given and
    ``sampling="without_replacement"``). :meth:`estimate` returns their
    running average over all pairs, or with ``ema=beta`` the exponentially
    weighted average with weight :math:`\beta^{t-r}` on the pair of step r
    at step t, as a :class:`lossvar.TwoBatchResult`:

    - ``grad_norm2`` :math:`= \bar S`, ``trace_cov`` :math:`= \bar T`:
      unbiased, weighted or not, while :math:`G` and :math:`\Sigma` stay put;
    - their standard errors :math:`\sqrt{s^2 / n_\mathrm{eff}}` with
      :math:`s^2` the unbiased weighted variance of the pairs
      (:math:`\sum w (x - \bar x)^2 / (W - \sum w^2 / W)`) and Kish's
      effective sample size :math:`n_\mathrm{eff} = (\sum w)^2 / \sum w^2`
      (R unweighted; :math:`(1 + \beta)/(1 - \beta)` after many steps), exact
      for the variance of a weighted mean of independent pairs; normal
      intervals ``estimate +- z se``;
    - ``b_simple`` :math:`= \bar T / \bar S`, a ratio estimator: consistent,
      not unbiased. To second order (delta method) its bias is
      :math:`(B_\mathrm{simple} V_S - C_{TS}) / \bar S^2 = O(1/n_\mathrm{eff})`,
      with :math:`V_S`, :math:`C_{TS}` the variance and covariance of the
      averages; ``b_simple_se`` is the first-order delta-method standard
      error. The interval ``b_simple_ci`` is Fieller's: the values
      :math:`\rho \ge 0` for which :math:`\bar T - \rho \bar S` (variance
      :math:`(v_T - 2\rho c_{TS} + \rho^2 v_S)/n_\mathrm{eff}`) is within z
      standard errors of 0. At the true :math:`\rho` that difference has mean
      exactly 0, so the interval does not inherit the ratio's bias, and when
      :math:`\|G\|^2` is not significantly above 0 it becomes a ray, a lower
      bound on :math:`B_\mathrm{simple}`, instead of a symmetric interval
      around a meaningless ratio. Chosen over the delta-method interval
      ``b_simple +- z b_simple_se``, which is centred on the biased ratio
      and too narrow on the side of large values when :math:`n_\mathrm{eff}`
      is small.

    What is exact and what is assumed: the per-pair estimates are exactly
    unbiased whenever the batches are drawn as ``sampling`` says. The
    standard errors and intervals further assume the pairs independent and
    identically distributed, which holds only while the parameters move
    little. During training :math:`G` and :math:`\Sigma` drift (B_simple
    grows as :math:`\|G\|` shrinks): the unweighted average then estimates
    their average over the whole run, and the weighted one a weighted
    average over about the last :math:`1/(1 - \beta)` steps, a lag traded
    against :math:`n_\mathrm{eff}`. Drift within the window inflates the
    spread of the pairs, so the standard errors include it rather than
    ignore it. Consecutive batches of one epoch drawn without replacement
    are not independent (they are disjoint), but each is a uniform sample,
    so the estimates stay unbiased.

    Parameters
    ----------
    b_small, b_big : int
        Batch sizes, ``1 <= b_small < b_big``.
    n : int, optional
        Data set size N; needed with ``sampling="without_replacement"``.
    sampling : {"with_replacement", "without_replacement"}, default "with_replacement"
        How the batches are drawn. The default differs from the package's
        ("without_replacement") on purpose: a training stream often has no
        known N, and for N much larger than ``b_big`` the correction
        :math:`(N - B)/(N - 1)` is close to 1. Give ``n`` and
        ``sampling="without_replacement"`` for a data set of N examples
        shuffled each epoch: without it ``grad_norm2`` is biased by
        :math:`-\operatorname{tr}\Sigma/(N - 1)`, which matters near a
        minimum.
    ema : float in (0, 1), optional
        Decay :math:`\beta` of the exponentially weighted estimate (0.99
        averages over about the last 100 steps). Without it only the
        running average over all pairs is kept.
    confidence : float in (0, 1), default 0.95
        Level of the intervals.

    Examples
    --------
    >>> import numpy as np
    >>> from lossvar import GradientNoiseMonitor
    >>> rng = np.random.default_rng(0)
    >>> G, sigma2, p = np.full(4, 0.5), 1.0, 4  # ||G||^2 = 1, tr Sigma = 4, B_simple = 4
    >>> monitor = GradientNoiseMonitor(8, 64, ema=0.99)
    >>> for step in range(2000):
    ...     small = G + rng.normal(scale=np.sqrt(sigma2 / 8), size=p)
    ...     big = G + rng.normal(scale=np.sqrt(sigma2 / 64), size=p)
    ...     monitor.update(small @ small, big @ big)
    >>> est = monitor.estimate()
    >>> round(est.n_eff, 1)  # (1 + 0.99) / (1 - 0.99)
    199.0
    >>> bool(est.b_simple_ci[0] < 4 < est.b_simple_ci[1])
    True
    """

    def __init__(self, b_small: int, b_big: int, *, n: int | None = None, sampling: str = "with_replacement",
                 ema: float | None = None, confidence: float = 0.95):
        self.design = TwoBatchDesign(b_small, b_big, n, sampling)
        self.ema = None if ema is None else as_float(ema, "ema", low=0.0, high=1.0, low_open=True,
                                                     high_open=True)
        self.confidence = as_float(confidence, "confidence", low=0.0, high=1.0, low_open=True,
                                   high_open=True)
        self._decay = 1.0 if self.ema is None else self.ema
        self.reset()

    def reset(self) -> None:
        """Forget every pair (for example after a change of learning rate or of data)."""
        self._all = _Running()
        self._ema = None if self.ema is None else _Running()

    def update(self, small_norm2: float, big_norm2: float) -> None:
        r"""Add one step's pair of squared norms.

        Parameters
        ----------
        small_norm2 : float
            :math:`\|G_{B_s}\|^2`, the squared norm of the mean gradient of
            ``b_small`` examples (or the average of several such norms).
        big_norm2 : float
            :math:`\|G_{B_b}\|^2`, of ``b_big`` examples.
        """
        s, t = self.design.pairs(_norm2(small_norm2, "small_norm2"), _norm2(big_norm2, "big_norm2"))
        self._all.add(s, t, 1.0)
        if self._ema is not None:
            self._ema.add(s, t, self._decay)

    @property
    def n_pairs(self) -> int:
        """The number of pairs added since the start (or the last :meth:`reset`)."""
        return self._all.count

    def estimate(self, *, weighted: bool | None = None) -> TwoBatchResult:
        """The current estimate, with standard errors, intervals and flags.

        Parameters
        ----------
        weighted : bool, optional
            The exponentially weighted estimate (the default with ``ema``)
            or the plain average over all pairs (the default without).

        Returns
        -------
        TwoBatchResult
            With ``n_eff`` the effective number of pairs and no per-pair
            arrays (the monitor keeps none).

        Warns
        -----
        lossvar.NegativeEstimateWarning
            When an estimate is negative (``flags`` says which).
        """
        if weighted is None:
            weighted = self._ema is not None
        if weighted and self._ema is None:
            raise ValueError("`weighted` must be False or None without `ema`; got True (pass ema=beta to "
                             "GradientNoiseMonitor for the exponentially weighted estimate)")
        run = self._ema if weighted else self._all
        if run is None or run.count == 0:
            raise ValueError("GradientNoiseMonitor.estimate needs at least one update(small_norm2, "
                             "big_norm2); got 0 pairs")
        mean, cov, n_eff = run.moments()
        return TwoBatchResult.from_moments(self.design, mean, cov, n_pairs=run.count, n_eff=n_eff,
                                             confidence=self.confidence, stacklevel=2)

    def __repr__(self) -> str:
        d = self.design
        n = "" if d.n is None else f", n={d.n}"
        ema = "" if self.ema is None else f", ema={self.ema}"
        return (f"GradientNoiseMonitor({d.b_small}, {d.b_big}{n}, sampling={d.sampling!r}{ema}, "
                f"confidence={self.confidence}; {self.n_pairs} pair(s))")
