r"""Monte Carlo of the gradient noise: :math:`E\|g_B - G\|^2` against the batch size.

:func:`lossvar.gradient_variance` draws random batches of a fixed data set, records
the squared distance of each batch-mean gradient from the full gradient, and
reports its mean with a standard error beside the exact value
(docs/theory.md, section 10), on the engine of :func:`lossvar.loss_variance`.

References
----------
S. McCandlish, J. Kaplan, D. Amodei et al. (2018), "An Empirical Model of
Large-Batch Training", arXiv:1812.06162, section 2.2.
W. G. Cochran (1977), *Sampling Techniques*, 3rd ed., Wiley, Theorem 2.2.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .. import sampling as _sampling
from .. import theory as _theory
from .._result import TableResultBase
from .._validate import as_choice, as_finite_array, as_float, as_int
from ..data import Dataset
from ..engine import Condition, Execution, block_size
from ..engine import simulate as _simulate
from ..moments import Moments
from ..stats import two_sided_z
from ..streams import as_seed_sequence, describe
from ..typing import ArrayLike, BatchSizes, Problem, RNGLike
from ._arrays import frozen

__all__ = ["GRADIENT_VARIANCE_COLUMNS", "GradientVarianceResult", "gradient_variance"]

#: Columns of :attr:`GradientVarianceResult.table`, in order.
GRADIENT_VARIANCE_COLUMNS = (
    "batch_size", "estimator", "sampling", "n", "replicates", "mean", "mean_se", "ci_low", "ci_high",
    "interval", "exact", "fpc", "kurtosis",
)


@dataclass(frozen=True, repr=False)
class GradientVarianceResult(TableResultBase):
    r"""The outcome of :func:`lossvar.gradient_variance`.

    A result (:class:`lossvar.typing.Result`, docs/guide/results.md):
    ``to_frame()`` is a copy of ``table``; it has exact theory, so
    :func:`lossvar.agreement` gives it a verdict (its :meth:`comparison`).

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
        - ``kurtosis``: of the R values :math:`\|g_B - G\|^2` (how far the
          normal interval can be trusted at this R).

        :math:`E\|g_B - G\|^2 = \operatorname{tr}\operatorname{Cov}(g_B)` is
        the total variance of the batch gradient: ``mean / fpc`` against
        ``batch_size`` follows :math:`\operatorname{tr}\Sigma / B`.
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

    def comparison(self, exact: Any = None) -> pd.DataFrame:
        r"""Each batch size's mean of :math:`\|g_B - G\|^2` against its exact value.

        Rows ``label`` (the batch size), ``estimate``, ``se``, ``exact``,
        ``ci_low``, ``ci_high`` and ``dof`` (R - 1: the Student t reference of a
        mean of R independent values), from independent streams; the full batch
        without replacement (exactly 0, nothing drawn) has no row.
        """
        if exact is not None:
            raise ValueError(f"`exact` must be None for a GradientVarianceResult: its exact values "
                             f"are in its table; got {exact!r}")
        t = self.table[~(self.table["exact"] == 0)]
        frame = pd.DataFrame({"label": t["batch_size"].to_numpy(), "estimate": t["mean"].to_numpy(float),
                              "se": t["mean_se"].to_numpy(float), "exact": t["exact"].to_numpy(float),
                              "ci_low": t["ci_low"].to_numpy(float),
                              "ci_high": t["ci_high"].to_numpy(float),
                              "dof": t["replicates"].to_numpy(float) - 1.0})
        frame.attrs.update(independent=True, confidence=self.confidence, row_label="B",
                           untested_reason="no standard error")
        return frame

    def summary(self) -> str:
        """The level, tr Sigma and the table."""
        return (f"GradientVarianceResult(confidence={self.confidence}, trace_cov={self.trace_cov:.6g})\n"
                f"{self.table.to_string(index=False)}")

    def __repr__(self) -> str:
        return self.summary()


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
                      confidence: float = 0.95, execution: Execution | None = None) -> GradientVarianceResult:
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

    Runs on the engine of :func:`lossvar.loss_variance`: batch size B draws
    block j from ``stream(root, B, j)``, each block is summarized by its
    moments and the blocks are merged in index order, so the table is
    bit-identical however it runs, and a checkpointed call resumes where it
    stopped.

    The N x p per-example gradients come from one call of ``problem.grad``
    and are held in memory (8 N p bytes: under a megabyte for the problems of
    lossvar's studies, e.g. 569 x 30 for breast_cancer); each block draws its
    (R_block, B) indices at once and averages the gathered rows, with no
    Python loop over replicates.

    Parameters
    ----------
    problem : Problem
        Anything with ``check_params(w, X)`` and ``grad(w, X, y)`` of shape
        (N, p) (the Problem protocol, :class:`lossvar.typing.Problem`).
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
    execution : Execution, optional
        How to run; see :class:`lossvar.Execution`.

    Returns
    -------
    GradientVarianceResult

    References
    ----------
    S. McCandlish, J. Kaplan, D. Amodei et al. (2018), "An Empirical Model of
    Large-Batch Training", arXiv:1812.06162, section 2.2; W. G. Cochran (1977),
    *Sampling Techniques*, Theorem 2.2; docs/theory.md, section 10.

    Examples
    --------
    >>> import numpy as np, lossvar
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3))
    >>> data = lossvar.Dataset(X, X @ [1.0, -1.0, 0.5] + rng.normal(size=200))
    >>> res = lossvar.gradient_variance(lossvar.LinearRegression(), data, np.zeros(3), [1, 10, "full"],
    ...                                 replicates=2000, rng=1)
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
    if execution is not None and not isinstance(execution, Execution):
        raise TypeError(f"`execution` must be a lossvar.Execution or None; got {execution!r}")
    root = as_seed_sequence(rng)
    grads = as_finite_array(problem.grad(w, X, y), "problem.grad(w, X, y)", ndim=2)
    mean = grads.mean(axis=0)
    dev = np.ascontiguousarray(grads - mean)
    trace = float(np.einsum("ij,ij->", dev, dev) / n)
    conditions, rows = [], []
    for b in sizes:
        fpc = _theory.finite_population_factor(n, b, sampling)
        rows.append(dict(batch_size=b, estimator=_estimator(b, n), sampling=sampling, n=n,
                         exact=trace / b * fpc, fpc=fpc))
        exact_zero = fpc == 0.0 and sampling == "without_replacement"
        conditions.append(None if exact_zero else Condition(
            (b,), replicates, block_size(b * dev.shape[1]),
            _BatchGradientNoise(dev, b, sampling), label=f"batch_size={b}"))
    fingerprint = None
    if execution is not None and execution.checkpoint is not None:
        # hashing N x p gradients costs more than small-B work: only for a checkpoint
        fingerprint = dict(source="gradients", data=hashlib.sha256(dev.tobytes()).hexdigest(),
                           n=n, p=dev.shape[1], batch_sizes=sizes, sampling=sampling,
                           replicates=replicates, seed=describe(root))
    live = [c for c in conditions if c is not None]
    outputs = iter(_simulate(live, root, execution=execution, fingerprint=fingerprint))
    z = two_sided_z(confidence)
    for row, cond in zip(rows, conditions, strict=True):
        m = Moments(replicates, 0.0, 0.0, 0.0, 0.0) if cond is None else _moments(next(outputs))
        row.update(_row_summary(m, z))
    table = pd.DataFrame(rows, columns=list(GRADIENT_VARIANCE_COLUMNS))
    return GradientVarianceResult(table=table, confidence=confidence, seed=root, grad=frozen(mean),
                                  trace_cov=trace)


def _estimator(b, n) -> str:
    if b == 1:
        return "single"
    return "full" if b == n else "minibatch"


def _row_summary(m: Moments, z: float) -> dict:
    """Mean, its standard error and normal interval, and the kurtosis of the values."""
    se = m.mean_se()
    return dict(replicates=m.count, mean=m.mean, mean_se=se, ci_low=m.mean - z * se,
                ci_high=m.mean + z * se, interval="normal", kurtosis=m.kurtosis)


def _moments(output) -> Moments:
    """The merged moments of one condition's engine output (always kept for this use)."""
    if output.moments is None:
        raise RuntimeError("the engine returned no moments for a gradient-variance condition")
    return output.moments
