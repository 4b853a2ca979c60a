r"""Gradient noise: noise scales, two-batch estimates and adaptive-batch tests.

Notation (docs/theory.md, section 10): the per-example gradients
:math:`g_i(w)`, :math:`i = 1..N`, their mean :math:`G`, their covariance

.. math::

    \Sigma = \frac{1}{N - \mathrm{ddof}} \sum_{i=1}^N (g_i - G)(g_i - G)^\top

with the *population* normalization ``ddof = 0`` (divide by N) unless stated
otherwise, and :math:`H` the Hessian of the mean loss. A batch mean
:math:`G_B` of B examples then has
:math:`E\|G_B\|^2 = \|G\|^2 + c_B \operatorname{tr}\Sigma` with
:math:`c_B = 1/B` for independent draws and :math:`(N - B)/(B (N - 1))`
without replacement.

- :class:`GradientNoise`, :func:`gradient_noise`: the exact noise statistics
  of a data set (simple noise scale, noise scale with curvature, GSNR).
- :func:`two_batch_estimate`, :func:`two_batch_estimate_from_callable`: the
  unbiased estimates of :math:`\|G\|^2` and :math:`\operatorname{tr}\Sigma`
  from batch means at two batch sizes (McCandlish et al. 2018, appendix A.1),
  whose per-pair formulas live in :class:`TwoBatchDesign` (shared with
  :class:`lossvar.monitor.GradientNoiseMonitor`); negative estimates are
  flagged with a :class:`NegativeEstimateWarning`.
- :func:`norm_test`, :func:`inner_product_test`, :func:`orthogonality_test`:
  the adaptive-batch tests of one batch (Byrd et al. 2012; Bollapragada et
  al. 2018), each as the largest :math:`\theta` that passes.

References
----------
S. McCandlish, J. Kaplan, D. Amodei et al. (2018), "An Empirical Model of
Large-Batch Training", arXiv:1812.06162.
R. H. Byrd, G. M. Chin, J. Nocedal, Y. Wu (2012), "Sample size selection in
optimization methods for machine learning", Math. Program. 134:127-155.
R. Bollapragada, R. Byrd, J. Nocedal (2018), "Adaptive Sampling Strategies for
Stochastic Optimization", SIAM J. Optim. 28:3312-3343, arXiv:1710.11258.
J. Liu et al. (2020), "Understanding Why Neural Networks Generalize Well
Through GSNR of Parameters", ICLR 2020.
T. F. Chan, G. H. Golub, R. J. LeVeque (1979), "Updating formulae and a
pairwise algorithm for computing sample variances", Stanford CS-TR-79-773.
N. J. Higham (2002), *Accuracy and Stability of Numerical Algorithms*, 2nd
ed., SIAM.
E. C. Fieller (1954), "Some problems in interval estimation", J. R. Stat.
Soc. B 16:175-185.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as _st

from . import sampling as _sampling
from . import theory as _theory
from ._validate import as_choice, as_finite_array, as_float, as_int
from .data import Dataset
from .engine import Condition, Execution, as_execution, block_size, run
from .moments import Moments
from .stats import two_sided_z
from .streams import as_seed_sequence, describe, stream
from .typing import ArrayLike, BatchSizes, Executor, PathLikeStr, Problem, RNGLike

__all__ = [
    "GRADIENT_VARIANCE_COLUMNS",
    "GradientNoise",
    "GradientVarianceResult",
    "NegativeEstimateWarning",
    "TwoBatchDesign",
    "TwoBatchEstimate",
    "gradient_noise",
    "gradient_variance",
    "inner_product_test",
    "norm_test",
    "orthogonality_test",
    "two_batch_estimate",
    "two_batch_estimate_from_callable",
]

#: Default block of :func:`gradient_noise`: about this many gradient entries
#: (8 MB of float64) per block, so that large N never holds N x p at once.
_BLOCK_ELEMENTS = 2**20


def _ratio(num, den):
    """num / den, with x/0 = +-inf for x != 0 and 0/0 = NaN (IEEE, without warnings)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(num, den)


def _frozen(arr) -> np.ndarray:
    arr = np.array(arr, dtype=np.float64, copy=True)
    arr.flags.writeable = False
    return arr


# -- exact noise statistics of a data set ---------------------------------------------


@dataclass(frozen=True, eq=False)
class GradientNoise:
    r"""Noise statistics of the per-example gradients of a data set at one ``w``.

    :math:`\Sigma` divides by :math:`N - \mathrm{ddof}`: by N (the population
    normalization, the covariance of one uniformly drawn example) for the
    default ``ddof = 0``.

    Attributes
    ----------
    grad : ndarray, shape (p,)
        The mean gradient :math:`G`.
    grad_norm2 : float
        :math:`\|G\|^2`.
    trace_cov : float
        :math:`\operatorname{tr}\Sigma`.
    b_simple : float
        Simple noise scale :math:`B_\mathrm{simple} = \operatorname{tr}\Sigma / \|G\|^2`
        (McCandlish et al. 2018, eq. 2.8): ``inf`` if :math:`G = 0 \ne \Sigma`,
        NaN if both vanish.
    b_noise : float
        Noise scale :math:`B_\mathrm{noise} = \operatorname{tr}(H\Sigma) / G^\top H G`
        (McCandlish et al. 2018, eq. 2.7); NaN without a Hessian, x/0 as for
        ``b_simple``.
    grad_hess_grad, trace_hess_cov : float
        :math:`G^\top H G` and :math:`\operatorname{tr}(H\Sigma)` (NaN without a
        Hessian), the curvature terms of the optimal step
        :math:`\epsilon_\mathrm{opt} = \|G\|^2 / (G^\top H G + c_B \operatorname{tr}(H\Sigma))`.
    gsnr : ndarray, shape (p,)
        Gradient signal-to-noise ratio per parameter,
        :math:`G_j^2 / \Sigma_{jj}` (Liu et al. 2020): ``inf`` where
        :math:`\Sigma_{jj} = 0 \ne G_j`, NaN where both are 0 (no epsilon is
        added, unlike Cockpit's MeanGSNR).
    n : int
        Number of examples N.
    ddof : int
        Delta degrees of freedom of :math:`\Sigma`.
    grad_rounding_bound : float
        :math:`N \varepsilon \max_i \|g_i\|` with :math:`\varepsilon` the
        float64 machine epsilon: a bound on the rounding error of the
        computed :math:`\|G\|`. Summing N terms in floating point errs by at
        most :math:`\gamma_{N-1} \sum_i |g_{ij}|` per coordinate,
        :math:`\gamma_k = k u / (1 - k u)`, :math:`u = \varepsilon / 2`
        (Higham 2002, section 4.2), so the mean errs by at most about
        :math:`N u \max_i \|g_i\|`; the other :math:`N u \max_i \|g_i\|`
        covers the division, the merge of blocks, and per-example gradients
        that carry errors of their own (at a minimizer of the logistic loss,
        :math:`\sigma(z_i) - y_i` is computed to about u, not to u relative to
        itself). A model whose per-example gradients lose more can leave
        :math:`\|G\|` above the bound at its minimizer.
    flags : tuple of str
        ``("grad_zero_to_rounding",)`` when :math:`\|G\|` is at most
        ``grad_rounding_bound``: G cannot be told from 0, and ``b_simple``,
        ``b_noise`` and ``gsnr`` are those of G = 0 (``inf`` beside nonzero
        noise, NaN where the noise is 0 too) instead of ratios of rounding
        errors (e.g. ``1.99e+25`` at the fitted optimum of breast_cancer);
        ``grad`` and ``grad_norm2`` keep the computed values. Empty otherwise.

    References
    ----------
    N. J. Higham (2002), *Accuracy and Stability of Numerical Algorithms*,
    2nd ed., SIAM, section 4.2.
    """

    grad: np.ndarray
    grad_norm2: float
    trace_cov: float
    b_simple: float
    b_noise: float
    grad_hess_grad: float
    trace_hess_cov: float
    gsnr: np.ndarray
    n: int
    ddof: int
    grad_rounding_bound: float
    flags: tuple[str, ...]

    @classmethod
    def from_grads(cls, grads, *, hessian=None, ddof: int = 0) -> GradientNoise:
        r"""Noise statistics from the per-example gradients, stacked in rows.

        Parameters
        ----------
        grads : array_like, shape (N, p)
            Finite per-example gradients :math:`g_i`.
        hessian : array_like, shape (p, p) or (p,), optional
            Hessian :math:`H` of the mean loss, or its diagonal; without it
            ``b_noise`` and the curvature terms are NaN.
        ddof : int, default 0
            :math:`\Sigma` divides by ``N - ddof``: 0 for the population
            covariance (the default), 1 for the unbiased sample covariance.

        Returns
        -------
        GradientNoise

        Examples
        --------
        >>> from lossvar.gradient_noise import GradientNoise
        >>> noise = GradientNoise.from_grads([[1.0, 1.0], [2.0, 0.0], [3.0, 2.0]])
        >>> noise.grad_norm2, round(noise.trace_cov, 12), noise.gsnr.tolist()
        (5.0, 1.333333333333, [6.0, 1.5])
        """
        grads = as_finite_array(grads, "grads", ndim=2)
        n, p = grads.shape
        if n < 1 or p < 1:
            raise ValueError(f"`grads` must have shape (N, p) with N >= 1 and p >= 1; got {grads.shape}")
        ddof = as_int(ddof, "ddof", low=0, high=n - 1)
        hessian = _as_hessian(hessian, p)
        mean = grads.mean(axis=0)
        # Centered first (two-pass): the scatter of g_i - G, never E[g g^T] - G G^T.
        dev = grads - mean
        return cls._from_moments(mean, _scatter(dev, full=_is_full(hessian)), n, ddof, hessian,
                                 _max_norm(grads))

    @classmethod
    def _from_moments(cls, mean, scatter, n, ddof, hessian, max_norm) -> GradientNoise:
        """Build from G, the centered scatter (p, p) or its diagonal (p,), N, ddof, H and max ||g_i||."""
        denom = n - ddof
        var = (np.diag(scatter) if scatter.ndim == 2 else scatter) / denom
        g2 = float(mean @ mean)
        trace = float(var.sum())
        if hessian is None:
            ghg = thc = float("nan")
        elif hessian.ndim == 1:
            ghg, thc = float(hessian @ (mean * mean)), float(hessian @ var)
        else:
            # tr(H Sigma) = sum_jk H_jk Sigma_kj = sum(H * Sigma^T), Sigma symmetric.
            ghg, thc = float(mean @ hessian @ mean), float(np.sum(hessian * scatter) / denom)
        bound = n * _EPS * max_norm
        zero = math.sqrt(g2) <= bound
        # Zero to rounding: the ratios are those of G = 0, not of its rounding error.
        signal, curvature, signal_j = (0.0, 0.0, np.zeros_like(mean)) if zero else (g2, ghg, mean * mean)
        return cls(
            grad=_frozen(mean), grad_norm2=g2, trace_cov=trace, b_simple=float(_ratio(trace, signal)),
            b_noise=float(_ratio(thc, curvature)), grad_hess_grad=ghg, trace_hess_cov=thc,
            gsnr=_frozen(_ratio(signal_j, var)), n=int(n), ddof=int(ddof),
            grad_rounding_bound=float(bound), flags=("grad_zero_to_rounding",) if zero else (),
        )

    def __str__(self) -> str:
        finite = self.gsnr[np.isfinite(self.gsnr)]
        gsnr = (f"median {np.median(finite):.4g}, range [{finite.min():.4g}, {finite.max():.4g}]"
                if finite.size else "no finite value")
        lines = [
            f"GradientNoise(n={self.n}, p={self.grad.size}, ddof={self.ddof}; Sigma divides by N - ddof)",
            f"  ||G||^2          {self.grad_norm2:.6g}",
            f"  tr Sigma         {self.trace_cov:.6g}",
            f"  B_simple         {self.b_simple:.6g}",
            f"  G^T H G          {self.grad_hess_grad:.6g}",
            f"  tr(H Sigma)      {self.trace_hess_cov:.6g}",
            f"  B_noise          {self.b_noise:.6g}",
            f"  GSNR             {gsnr}",
        ]
        if "grad_zero_to_rounding" in self.flags:
            lines.append(
                f"  G is zero to rounding: ||G|| = {math.sqrt(self.grad_norm2):.3g} <= "
                f"{self.grad_rounding_bound:.3g} = N eps max_i ||g_i||, a bound on the rounding error "
                f"of the mean gradient; B_simple, B_noise and the GSNR are those of G = 0")
        return "\n".join(lines)


#: float64 machine epsilon, 2u (twice the unit roundoff).
_EPS = float(np.finfo(np.float64).eps)


def _max_norm(grads) -> float:
    """max_i ||g_i|| of the rows (0 for no rows)."""
    return math.sqrt(float(np.einsum("ij,ij->i", grads, grads).max(initial=0.0)))


def _as_hessian(hessian, p):
    if hessian is None:
        return None
    hessian = as_finite_array(hessian, "hessian")
    if hessian.shape not in ((p, p), (p,)):
        raise ValueError(
            f"`hessian` must have shape (p, p) or (p,) (its diagonal) with p={p}; "
            f"got an array of shape {hessian.shape}"
        )
    return hessian


def _is_full(hessian) -> bool:
    """The full p x p scatter is needed only for tr(H Sigma) with a full H."""
    return hessian is not None and hessian.ndim == 2


def _scatter(dev, *, full):
    """sum_i d_i d_i^T of centered rows d_i, or only its diagonal."""
    return dev.T @ dev if full else np.einsum("ij,ij->j", dev, dev)


class _Moments:
    """Running mean and centered scatter of gradient blocks (Chan, Golub & LeVeque 1979).

    Each block is centered on its own mean (two-pass inside the block), and
    blocks are merged by the pairwise update
    ``S = S_a + S_b + n_a n_b / n * delta delta^T``, ``delta = m_b - m_a``,
    which never subtracts large uncentered sums.
    """

    def __init__(self):
        self.n, self.mean, self.scatter = 0, None, None

    def add(self, block, *, full):
        nb = block.shape[0]
        mb = block.mean(axis=0)
        sb = _scatter(block - mb, full=full)
        if self.n == 0:
            self.n, self.mean, self.scatter = nb, mb, sb
            return
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        cross = np.outer(delta, delta) if full else delta * delta
        self.scatter = self.scatter + sb + cross * (self.n * nb / n)
        self.n = n


def _problem_hessian(problem, w, X, y):
    """Hessian of the mean loss over (X, y) from ``problem.hessian``, or None without one."""
    hess = getattr(problem, "hessian", None)
    return None if hess is None else np.asarray(hess(w, X, y), dtype=np.float64)


def gradient_noise(problem: Problem, data: Dataset, w: ArrayLike, *, block_size: int | None = None,
                   ddof: int = 0) -> GradientNoise:
    r"""Exact gradient-noise statistics of a problem on a data set at ``w``, in blocks.

    Equal (to rounding) to ``GradientNoise.from_grads(problem.grad(w, X, y),
    hessian=H)`` but one pass over the data in blocks of ``block_size``
    examples, so the N x p per-example gradients never exist at once: each
    block's mean and centered scatter are merged by the pairwise update of
    Chan, Golub & LeVeque (1979). :math:`\Sigma` divides by ``N - ddof`` (by
    N, the population normalization, by default).

    :math:`\operatorname{tr}(H\Sigma)` is taken from the accumulated scatter
    matrix and the Hessian accumulated as the block-size weighted mean of the
    blocks' Hessians (exact: the mean loss is that weighted mean). This keeps
    one pass, so every per-example gradient is computed once, for O(p^2)
    memory, which the Hessian needs anyway; without a Hessian only the
    diagonal of the scatter (O(p)) is kept.

    Parameters
    ----------
    problem : lossvar problem
        LinearRegression, LogisticRegression, SoftmaxRegression or
        NoisyQuadratic (or any object with ``check_params(w, X)`` and
        ``grad(w, X, y)`` of shape (n, p); ``b_noise`` is NaN if it has no
        ``hessian(w, X, y)``).
    data : Dataset
        The N examples (anything with arrays ``X`` and ``y``).
    w : array_like, shape (p,)
        Parameters.
    block_size : int, optional
        Examples per block; by default about 2**20 / p (8 MB of gradients).
    ddof : int, default 0
        :math:`\Sigma` divides by ``N - ddof``.

    Returns
    -------
    GradientNoise
        At a minimizer :math:`\|G\|` may be zero to rounding (at most
        ``grad_rounding_bound``): then ``flags`` says so and the noise scales
        are those of G = 0 rather than ratios of rounding errors.

    References
    ----------
    McCandlish et al. (2018), arXiv:1812.06162, section 2.2; docs/theory.md,
    section 10.
    """
    X, y = np.asarray(data.X, dtype=np.float64), np.asarray(data.y)
    w = as_finite_array(w, "w", ndim=1)
    problem.check_params(w, X)
    n = X.shape[0]
    ddof = as_int(ddof, "ddof", low=0, high=n - 1)
    block = (max(1, _BLOCK_ELEMENTS // w.size) if block_size is None
             else as_int(block_size, "block_size", low=1))
    moments, hessian, max_norm = _Moments(), None, 0.0
    for start in range(0, n, block):
        Xb, yb = X[start:start + block], y[start:start + block]
        hb = _problem_hessian(problem, w, Xb, yb)
        gb = problem.grad(w, Xb, yb)
        moments.add(gb, full=hb is not None and hb.ndim == 2)
        max_norm = max(max_norm, _max_norm(gb))
        if hb is not None:
            hessian = hb * (Xb.shape[0] / n) + (0.0 if hessian is None else hessian)
    return GradientNoise._from_moments(moments.mean, moments.scatter, n, ddof, hessian, max_norm)


# -- Monte Carlo of the gradient noise: E||g_B - G||^2 against B -----------------------

#: Columns of :attr:`GradientVarianceResult.table`, in order.
GRADIENT_VARIANCE_COLUMNS = (
    "batch_size", "estimator", "sampling", "n", "replicates", "mean", "mean_se", "ci_low", "ci_high",
    "interval", "exact", "fpc", "variance", "variance_se", "exact_variance", "kurtosis",
)


@dataclass(frozen=True)
class GradientVarianceResult:
    r"""The outcome of :func:`gradient_variance`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per batch size, ascending, with columns

        - ``batch_size``; ``estimator``: ``"single"`` (B = 1), ``"minibatch"``
          or ``"full"`` (B = N); ``sampling``; ``n`` (N); ``replicates`` (R);
        - ``mean``: the Monte Carlo mean of :math:`\|g_B - G\|^2` over the R
          batches, ``mean_se`` its standard error (sample standard deviation
          over :math:`\sqrt R`), ``ci_low``, ``ci_high`` the normal interval
          ``mean +- z mean_se`` at ``confidence`` (``interval = "normal"``);
        - ``exact``: :math:`\operatorname{tr}\Sigma / B` times ``fpc``, the
          finite-population factor :math:`(N - B)/(N - 1)` without
          replacement (1 with replacement);
        - ``variance``, ``variance_se``, ``exact_variance``: copies of
          ``mean``, ``mean_se`` and ``exact`` under the names that
          :func:`lossvar.scaling_fit` reads. :math:`E\|g_B - G\|^2 =
          \operatorname{tr}\operatorname{Cov}(g_B)` is the total variance of
          the batch gradient, so the fit of ``log variance`` against
          ``log B`` tests the :math:`1/B` law of the gradient;
        - ``kurtosis``: of the R values :math:`\|g_B - G\|^2` (how far the
          normal interval can be trusted at this R).
    confidence : float
    seed : numpy.random.SeedSequence
        The root of all streams of the call: passing it back as ``rng``
        reproduces the table bit for bit.
    grad : ndarray, shape (p,)
        The full gradient :math:`G`.
    trace_cov : float
        :math:`\operatorname{tr}\Sigma`, :math:`\Sigma` the population
        covariance (divides by N) of the per-example gradients.
    """

    table: pd.DataFrame
    confidence: float
    seed: np.random.SeedSequence
    grad: np.ndarray = field(repr=False)
    trace_cov: float

    def __repr__(self) -> str:
        return (f"GradientVarianceResult(confidence={self.confidence}, trace_cov={self.trace_cov:.6g})\n"
                f"{self.table.to_string(index=False)}")


class _BatchGradientNoise:
    """Picklable simulator: ||g_B - G||^2 for random batches of fixed per-example gradients.

    Holds the centered gradients ``g_i - G`` (N x p): the batch mean of the
    centered rows is ``g_B - G`` without the cancellation of subtracting two
    nearly equal means when ``||G||`` is large beside the noise.
    """

    def __init__(self, dev, batch_size, sampling):
        self.dev, self.batch_size, self.sampling = dev, batch_size, sampling

    def __call__(self, rng, size):
        idx = _sampling.draw(rng, self.dev.shape[0], self.batch_size, size, self.sampling)
        diff = self.dev[idx].mean(axis=1)  # (size, p): all replicates of the block at once
        return np.einsum("ij,ij->i", diff, diff)


def gradient_variance(problem: Problem, data: Dataset, w: ArrayLike, batch_sizes: BatchSizes, *,
                      replicates: int, sampling: str = "without_replacement", rng: RNGLike = None,
                      confidence: float = 0.95, workers: int = 1, executor: Executor = None,
                      chunk_size: int | None = None, checkpoint: PathLikeStr | None = None,
                      progress: bool = False,
                      execution: Execution | None = None) -> GradientVarianceResult:
    r"""Monte Carlo of :math:`E\|g_B - G\|^2` against the batch size, beside its exact value.

    For each batch size B draw ``replicates`` random batches of B examples
    of the fixed data set (``sampling``), form the batch-mean gradient
    :math:`g_B = \frac1B \sum_{i \in \mathcal B} \nabla l_i(w)` and record
    :math:`\|g_B - G\|^2`, :math:`G` the mean over all N examples. Its
    expectation is the total variance of the batch gradient
    (docs/theory.md, section 10; McCandlish et al. 2018, section 2.2):

    .. math::

        E\|g_B - G\|^2 = \operatorname{tr}\operatorname{Cov}(g_B)
        = \frac{\operatorname{tr}\Sigma}{B} \cdot
        \begin{cases} 1 & \text{with replacement (independent draws)} \\
        \frac{N - B}{N - 1} & \text{without replacement} \end{cases},
        \qquad
        \Sigma = \frac1N \sum_i (g_i - G)(g_i - G)^\top .

    The full batch without replacement is the data set itself: its value is
    exactly 0 and no batch is drawn.

    Runs on :func:`lossvar.engine.run` exactly as :func:`lossvar.loss_variance`
    does: batch size B draws block j from ``stream(root, B, j)``, each block
    is summarized by its moments and the blocks are merged in index order, so
    the table is bit-identical for every ``workers``, ``executor`` and
    ``chunk_size``, and a checkpointed call resumes where it stopped.

    The N x p per-example gradients are computed once and held in memory
    (8 N p bytes: under a megabyte for the problems of lossvar's studies,
    e.g. 569 x 30 for breast_cancer); each block draws its (R_block, B)
    indices at once and averages the gathered rows, with no Python loop
    over replicates.

    Parameters
    ----------
    problem : lossvar problem
        LinearRegression, LogisticRegression, SoftmaxRegression or
        NoisyQuadratic (anything with ``check_params(w, X)`` and
        ``grad(w, X, y)`` of shape (N, p)).
    data : Dataset
        The N examples (anything with arrays ``X`` and ``y``).
    w : array_like, shape (p,)
        Parameters.
    batch_sizes : sequence of int or "full"
        Distinct batch sizes; ``"full"`` means N. Without replacement each
        must be in [1, N].
    replicates : int
        R >= 2 batches per batch size.
    sampling : {"without_replacement", "with_replacement"}, default "without_replacement"
        How each batch is drawn: without replacement (what a shuffling data
        loader does, the package's default, as in :func:`lossvar.loss_variance`)
        or independently with replacement.
    rng : int, SeedSequence, Generator or None
        Root of the randomness (SPEC 7).
    confidence : float in (0, 1), default 0.95
        Level of the normal interval of each mean.
    workers : int, optional
        1 (serial, the default), a number of local processes, or -1 for all
        cores. Not with ``executor``.
    executor : concurrent.futures.Executor, optional
        Run chunks there, e.g. a dask ``Client.get_executor()``.
    chunk_size : int, optional
        Replicates per unit of work; bounds memory, never changes the result.
    checkpoint : path, optional
        Folder for finished chunks; a rerun of the same call resumes from it.
    progress : bool
        Show a progress bar over chunks.
    execution : lossvar.Execution, optional
        How to run, as one object, instead of the five keywords above; not both.

    Returns
    -------
    GradientVarianceResult
        Its ``table`` also carries ``variance``/``variance_se``/``exact_variance``
        (the mean of :math:`\|g_B - G\|^2` and its standard error under the
        names :func:`lossvar.scaling_fit` reads), so ``scaling_fit(result)``
        fits the exponent of :math:`E\|g_B - G\|^2 \propto B^a` (a = -1).

    References
    ----------
    S. McCandlish, J. Kaplan, D. Amodei et al. (2018), "An Empirical Model of
    Large-Batch Training", arXiv:1812.06162, section 2.2; W. G. Cochran (1977),
    *Sampling Techniques*, Theorem 2.2; docs/theory.md, section 10.

    Examples
    --------
    >>> import numpy as np, lossvar
    >>> from lossvar.gradient_noise import gradient_variance
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3))
    >>> data = lossvar.Dataset(X, X @ [1.0, -1.0, 0.5] + rng.normal(size=200))
    >>> res = gradient_variance(lossvar.LinearRegression(), data, np.zeros(3), [1, 10, "full"],
    ...                         replicates=2000, sampling="without_replacement", rng=1)
    >>> res.table[["batch_size", "estimator", "fpc"]].round(4)
       batch_size  estimator     fpc
    0           1     single  1.0000
    1          10  minibatch  0.9548
    2         200       full  0.0000
    """
    X, y = np.asarray(data.X, dtype=np.float64), np.asarray(data.y)
    w = as_finite_array(w, "w", ndim=1)
    problem.check_params(w, X)
    n = X.shape[0]
    sampling = as_choice(sampling, "sampling", _sampling.SCHEMES)
    sizes = _sampling.as_batch_sizes(batch_sizes, n, sampling)
    replicates = as_int(replicates, "replicates", low=2)
    confidence = as_float(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
    how = as_execution(execution, workers=workers, executor=executor, chunk_size=chunk_size,
                       progress=progress, checkpoint=checkpoint)
    root = as_seed_sequence(rng)
    grads = as_finite_array(problem.grad(w, X, y), "problem.grad(w, X, y)", ndim=2)
    mean = grads.mean(axis=0)
    dev = np.ascontiguousarray(grads - mean)
    trace = float(np.einsum("ij,ij->", dev, dev) / n)
    conditions, rows = [], []
    for b in sizes:
        fpc = _theory.finite_population_factor(n, b, sampling)
        rows.append(dict(batch_size=b, estimator=_estimator(b, n), sampling=sampling, n=n,
                         exact=trace / b * fpc, fpc=fpc, exact_variance=trace / b * fpc))
        exact_zero = fpc == 0.0 and sampling == "without_replacement"
        conditions.append(None if exact_zero else Condition(
            (b,), replicates, block_size(b * dev.shape[1]),
            _BatchGradientNoise(dev, b, sampling), label=f"batch_size={b}"))
    fingerprint = None
    if how.checkpoint is not None:  # hashing N x p gradients costs more than small-B work
        fingerprint = dict(source="gradients", data=hashlib.sha256(dev.tobytes()).hexdigest(),
                           n=n, p=dev.shape[1], batch_sizes=sizes, sampling=sampling,
                           replicates=replicates, seed=describe(root))
    live = [c for c in conditions if c is not None]
    outputs = iter(run(live, root, execution=how, fingerprint=fingerprint))
    z = two_sided_z(confidence)
    for row, cond in zip(rows, conditions, strict=True):
        m = Moments(replicates, 0.0, 0.0, 0.0, 0.0) if cond is None else _moments(next(outputs))
        row.update(_row_summary(m, z))
    table = pd.DataFrame(rows, columns=list(GRADIENT_VARIANCE_COLUMNS))
    return GradientVarianceResult(table=table, confidence=confidence, seed=root, grad=_frozen(mean),
                                  trace_cov=trace)


def _estimator(b, n) -> str:
    if b == 1:
        return "single"
    return "full" if b == n else "minibatch"


def _row_summary(m: Moments, z: float) -> dict:
    """Mean, its standard error and normal interval, under both sets of column names."""
    se = math.sqrt(m.variance / m.count)
    return dict(replicates=m.count, mean=m.mean, mean_se=se, ci_low=m.mean - z * se,
                ci_high=m.mean + z * se, interval="normal", variance=m.mean, variance_se=se,
                kurtosis=m.kurtosis)


# -- two-batch estimates (McCandlish et al. 2018, appendix A.1) ------------------------


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
    :class:`lossvar.monitor.GradientNoiseMonitor` both call :meth:`pairs`.

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


def _fieller(t, s, v_t, v_s, c, z) -> tuple[float, float]:
    r"""Fieller's interval for t/s, intersected with [0, inf] and reported by its hull.

    The set :math:`\{\rho \ge 0 : (t - \rho s)^2 \le z^2 (v_t - 2 \rho c + \rho^2 v_s)\}`,
    with v_t, v_s, c the variances and covariance of the means t, s. It is a
    bounded interval when s is significantly nonzero (:math:`s^2 > z^2 v_s`),
    else a ray or all of [0, inf]. (nan, nan) when empty or undefined.
    """
    if not all(math.isfinite(x) for x in (t, s, v_t, v_s, c)):
        return math.nan, math.nan
    z2 = z * z
    a, b, k = s * s - z2 * v_s, -2.0 * (t * s - z2 * c), t * t - z2 * v_t
    if a == 0.0:  # linear: b rho + k <= 0
        if b == 0.0:
            return (0.0, math.inf) if k <= 0 else (math.nan, math.nan)
        q = -k / b
        return (max(q, 0.0), math.inf) if b < 0 else ((0.0, q) if q >= 0 else (math.nan, math.nan))
    disc = b * b - 4.0 * a * k
    if disc < 0:  # a > 0: empty (only by rounding, t/s is always inside); a < 0: every rho
        return (math.nan, math.nan) if a > 0 else (0.0, math.inf)
    q = -0.5 * (b + math.copysign(math.sqrt(disc), b))  # the roots q/a and k/q without cancellation
    roots = sorted((q / a, k / q if q != 0 else 0.0))
    r1, r2 = roots
    if a > 0:  # [r1, r2]
        return (max(r1, 0.0), r2) if r2 >= 0 else (math.nan, math.nan)
    # a < 0: (-inf, r1] and [r2, inf); within [0, inf] the hull is [r2, inf] or all of it
    return (max(r2, 0.0), math.inf) if r1 < 0 else (0.0, math.inf)


@dataclass(frozen=True, eq=False)
class TwoBatchEstimate:
    r"""Unbiased estimates of :math:`\|G\|^2` and :math:`\operatorname{tr}\Sigma` from batch pairs.

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
    grad_norm2_ci, trace_cov_ci : tuple of float
        Normal ``confidence`` intervals ``estimate +- z se``.
    b_simple_ci : tuple of float
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
    grad_norm2_ci: tuple[float, float]
    trace_cov_ci: tuple[float, float]
    b_simple_ci: tuple[float, float]
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
                     confidence: float, pairs=None, stacklevel: int = 2) -> TwoBatchEstimate:
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
        TwoBatchEstimate
        """
        confidence = as_float(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
        s, t = float(mean[0]), float(mean[1])
        cov = np.asarray(cov, dtype=np.float64)
        v_s, v_t, c = (float(cov[0, 0]) / n_eff, float(cov[1, 1]) / n_eff, float(cov[0, 1]) / n_eff)
        b = float(_ratio(t, s))
        lin = v_t - 2.0 * b * c + b * b * v_s  # Var(T - b S) of the averages; >= 0 but for rounding
        b_se = math.sqrt(max(lin, 0.0)) / abs(s) if s != 0 and math.isfinite(lin) else math.nan
        z = two_sided_z(confidence)
        se_s, se_t = math.sqrt(v_s), math.sqrt(v_t)
        flags = tuple(name for name, value in (("negative_grad_norm2", s), ("negative_trace_cov", t),
                                               ("negative_b_simple", b)) if value < 0)
        est = cls(
            grad_norm2=s, trace_cov=t, b_simple=b, grad_norm2_se=se_s, trace_cov_se=se_t, b_simple_se=b_se,
            grad_norm2_ci=(s - z * se_s, s + z * se_s), trace_cov_ci=(t - z * se_t, t + z * se_t),
            b_simple_ci=_fieller(t, s, v_t, v_s, c, z), confidence=confidence, n_pairs=int(n_pairs),
            n_eff=float(n_eff), b_small=design.b_small, b_big=design.b_big, n=design.n,
            sampling=design.sampling, flags=flags,
            grad_norm2_pairs=None if pairs is None else _frozen(pairs[0]),
            trace_cov_pairs=None if pairs is None else _frozen(pairs[1]),
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

    def __str__(self) -> str:
        pct = f"{100 * self.confidence:g}%"
        weighted = self.n_eff != self.n_pairs
        pairs = f"{self.n_pairs} pair(s)" + (f", n_eff={self.n_eff:.4g}" if weighted else "")
        n = "" if self.n is None else f", n={self.n}"
        lines = [
            f"TwoBatchEstimate({pairs}, b_small={self.b_small}, b_big={self.b_big}, "
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
                       sampling: str = "without_replacement", confidence: float = 0.95) -> TwoBatchEstimate:
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
    TwoBatchEstimate
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


def _estimate(design, small, big, confidence) -> TwoBatchEstimate:
    """The estimate from validated (R, p) batch means; warns at the public function's caller."""
    g2, tr = design.pairs(np.einsum("ij,ij->i", small, small), np.einsum("ij,ij->i", big, big))
    r = g2.size
    both = np.stack([g2, tr])
    cov = np.cov(both) if r >= 2 else np.full((2, 2), np.nan)
    return TwoBatchEstimate.from_moments(design, both.mean(axis=1), cov, n_pairs=r, n_eff=r,
                                         confidence=confidence, pairs=(g2, tr), stacklevel=3)


def two_batch_estimate_from_callable(batch_grad: Callable[[np.ndarray], ArrayLike], n: int, b_small: int,
                                     b_big: int, *, replicates: int = 100,
                                     sampling: str = "without_replacement", rng: RNGLike = None,
                                     confidence: float = 0.95) -> TwoBatchEstimate:
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
    TwoBatchEstimate

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


# -- adaptive-batch tests of one batch -------------------------------------------------


def _batch(grads):
    """Validated (B, p) gradients, their mean g and ||g||^2 > 0."""
    grads = as_finite_array(grads, "grads", ndim=2)
    if grads.shape[0] < 2 or grads.shape[1] < 1:
        raise ValueError(
            f"`grads` must have shape (B, p) with B >= 2 per-example gradients; got {grads.shape}"
        )
    g = grads.mean(axis=0)
    g2 = float(g @ g)
    if g2 == 0:
        raise ValueError("`grads` must have a nonzero mean gradient g; the tests divide by ||g||^2")
    return grads, g, g2


def norm_test(grads: ArrayLike) -> float:
    r"""Largest :math:`\theta` for which the norm test of a batch passes.

    .. math::

        \theta^2 = \frac{\sum_i \|g_i - g\|^2}{(B - 1)\, B\, \|g\|^2}

    (Byrd, Chin, Nocedal & Wu 2012, eq. 3.9, with the sample variance),
    where :math:`g_i` are the B per-example gradients and g their mean. It is
    the batch's own simple noise scale divided by B:
    :math:`\theta^2 = \hat B_\mathrm{simple} / B` with
    :math:`\hat B_\mathrm{simple}` = ``GradientNoise.from_grads(grads,
    ddof=1).b_simple``, so the test with parameter :math:`\theta` asks for
    :math:`B \ge B_\mathrm{simple}/\theta^2`. Also
    :math:`\theta_\mathrm{norm}^2 = \theta_\mathrm{ip}^2 + \theta_\mathrm{orth}^2`.

    Parameters
    ----------
    grads : array_like, shape (B, p)
        Per-example gradients of one batch, B >= 2, with nonzero mean.

    Returns
    -------
    float
    """
    arr, g, g2 = _batch(grads)
    b = arr.shape[0]
    dev = arr - g
    return float(np.sqrt(np.sum(dev * dev) / (b - 1) / b / g2))


def inner_product_test(grads: ArrayLike) -> float:
    r"""Largest :math:`\theta` for which the inner-product test of a batch passes.

    .. math::

        \theta^2 = \frac{\sum_i (g_i \cdot g - \|g\|^2)^2}{(B - 1)\, B\, \|g\|^4}

    (Bollapragada, Byrd & Nocedal 2018, eq. 2.6): the variance of the
    component of the gradients along g only, so it allows smaller batches than
    the norm test.

    Parameters
    ----------
    grads : array_like, shape (B, p)
        Per-example gradients of one batch, B >= 2, with nonzero mean.

    Returns
    -------
    float
    """
    arr, g, g2 = _batch(grads)
    b = arr.shape[0]
    dots = arr @ g - g2
    return float(np.sqrt(np.sum(dots * dots) / (b - 1) / b / (g2 * g2)))


def orthogonality_test(grads: ArrayLike) -> float:
    r"""Largest :math:`\nu` for which the orthogonality test of a batch passes.

    .. math::

        \nu^2 = \frac{\sum_i \|g_i - (g_i \cdot g / \|g\|^2)\, g\|^2}{(B - 1)\, B\, \|g\|^2}

    (Bollapragada, Byrd & Nocedal 2018, eq. 3.3): the variance of the component of the
    gradients orthogonal to g, which the inner-product test ignores.

    Parameters
    ----------
    grads : array_like, shape (B, p)
        Per-example gradients of one batch, B >= 2, with nonzero mean.

    Returns
    -------
    float
    """
    arr, g, g2 = _batch(grads)
    b = arr.shape[0]
    orth = arr - np.outer(arr @ g / g2, g)
    return float(np.sqrt(np.sum(orth * orth) / (b - 1) / b / g2))


def _moments(output) -> Moments:
    """The merged moments of one condition's engine output (always kept for this use)."""
    if output.moments is None:
        raise RuntimeError("the engine returned no moments for a gradient-variance condition")
    return output.moments
