"""The variance of the single-sample, mini-batch and full-batch loss estimators.

:func:`loss_variance` measures, by Monte Carlo, the variance of the mean of a
random batch of per-sample losses of a fixed data set; :func:`variance_study`
does the same from a model, parameters and a data source, fixed (the batch is
the only randomness: optimization noise) or a population (fresh examples each
replicate: the lecture's ``Var(Loss_full) = Var(div) / N``). Both report the
exact variance of docs/theory.md, section 1 beside every estimate.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import sampling as _sampling
from . import stats, streams, theory
from ._result import TableResultBase
from ._validate import as_choice, as_finite_array, as_float, as_int
from .engine import Condition, Execution, Output, as_execution, block_size, simulate
from .moments import Moments, MomentsPass
from .scratch import scratch
from .stats import INTERVALS, variance_interval
from .streams import as_seed_sequence
from .typing import ArrayLike, BatchSizes, DataSource, Problem, Replicates, RNGLike

COLUMNS = ("batch_size", "estimator", "sampling", "n", "replicates", "mean", "mean_se",
           "variance", "variance_se", "ci_low", "ci_high", "interval", "exact_mean",
           "exact_variance", "fpc", "kurtosis", "exact_variance_se", "z", "pvalue", "exact_kurtosis",
           "interval_reliable", "replicates_rule")

#: ``replicates="auto"``: the relative standard error each variance is planned for
#: when ``target_rel_se`` is not given, and, for a population (no exact kurtosis,
#: so the sequential rule), the cap on replicates.
AUTO_TARGET_REL_SE = 0.02
AUTO_CAP = 1_000_000


@dataclass(frozen=True, repr=False)
class VarianceResult(TableResultBase):
    """The outcome of :func:`loss_variance` or :func:`variance_study`.

    A result (:class:`lossvar.typing.Result`, docs/guide/results.md):
    ``to_frame()`` is a copy of ``table``; it has exact theory, so
    :func:`lossvar.agreement` gives it a verdict (its :meth:`comparison`).

    Attributes
    ----------
    table : pandas.DataFrame
        One row per batch size, ascending, with columns

        - ``batch_size``; ``estimator``: ``"single"`` (B = 1), ``"minibatch"``
          or ``"full"`` (B = N);
        - ``sampling``: ``"without_replacement"``, ``"with_replacement"`` or
          ``"fresh"`` (new examples from a population every replicate);
        - ``n``: the data set size N (NaN for a population);
        - ``replicates``: R, the number of batches drawn;
        - ``mean``, ``mean_se``: the average batch loss and its standard error;
        - ``variance``: the sample variance (ddof = 1) of the R batch means;
          ``variance_se``: its fourth-moment standard error; ``ci_low``,
          ``ci_high``: the interval named in ``interval``;
        - ``exact_mean``, ``exact_variance``: the closed forms (NaN where none
          exists); ``fpc``: the finite-population factor ``(N - B)/(N - 1)``
          already included in ``exact_variance`` (1 with replacement or
          fresh data);
        - ``kurtosis``: of the batch means, for judging the interval;
        - ``exact_variance_se``: the exact standard deviation of ``variance``
          under the theory, from the exact fourth moment of the batch mean
          (docs/theory.md, section 3); ``z = (variance - exact_variance) /
          exact_variance_se``; ``pvalue``: two-sided, from the scaled
          chi-square law of the sample variance (:func:`lossvar.stats.variance_test`;
          NaN when too few replicates for the tails); ``exact_kurtosis`` of the
          batch mean (NaN where unknown); all NaN where no exact fourth moment
          is known (a population other than GaussianLinearPopulation) or the
          exact variance is 0 (the full fixed batch);
        - ``interval_reliable``: whether the interval can be trusted at its
          level (:func:`lossvar.stats.interval_reliable`);
        - ``replicates_rule``: ``"fixed"`` (the ``replicates`` given),
          ``"planned"`` (from the exact kurtosis, ``replicates="auto"``) or
          ``"sequential"`` (blocks added until ``target_rel_se`` is met).
    confidence : float
        The level of the intervals (also ``table.attrs["confidence"]``).
    seed : numpy.random.SeedSequence
        The root of all streams of the call: passing it back as ``rng``
        reproduces the table bit for bit.
    means : dict of int to ndarray, or None
        The raw per-replicate batch means, when ``keep_means=True``.
    """

    table: pd.DataFrame
    confidence: float
    seed: np.random.SeedSequence
    means: dict | None = field(default=None, repr=False)

    def comparison(self, exact: Any = None) -> pd.DataFrame:
        """Each batch size's variance against its exact value
        (:func:`lossvar.stats.variance_comparison`: the p-values of the scaled
        chi-square law of a sample variance; the batch sizes are independent)."""
        if exact is not None:
            raise ValueError(f"`exact` must be None for a VarianceResult: its exact values are in "
                             f"its table; got {exact!r}")
        return stats.variance_comparison(self.table)

    def summary(self) -> str:
        """The level and the table."""
        return f"VarianceResult(confidence={self.confidence})\n{self.table.to_string(index=False)}"

    def __repr__(self) -> str:
        return self.summary()


class BatchMeans:
    """Picklable simulator: means of random batches of fixed per-sample losses.

    The indices, the gathered losses and the means are written to the worker's
    scratch buffers (:func:`lossvar.scratch.scratch`), reused block after block,
    without a new array of a few MiB per block. The returned means are a view
    of scratch (``returns_scratch``): the engine copies them when it keeps them.

    The mean of each batch is ``losses[idx].mean(axis=1)`` up to rounding: the
    same sum, divided by ``B``. Below :data:`COLUMN_SUM_BELOW` it is summed
    column by column over all the batches at once, left to right (``B - 1``
    additions and one division per batch, each correctly rounded: the order
    numpy's reduction takes on such short rows, whose per-row calls cost
    more than the sums); a batch of one is its loss. From there on numpy's
    reduction runs along each row.
    """

    returns_scratch = True

    def __init__(self, losses, batch_size, sampling):
        self.losses, self.batch_size, self.sampling = losses, batch_size, sampling

    def __call__(self, rng, size):
        b = self.batch_size
        idx = _sampling.draw(rng, self.losses.size, b, size, self.sampling, scratch=scratch)
        # mode="clip" (the indices are in range): "raise" would buffer ``out`` anew.
        if b == 1:  # the gathered losses are the means
            return np.take(self.losses, idx.reshape(size), out=scratch("means", size), mode="clip")
        gathered = np.take(self.losses, idx, out=scratch("gather", idx.shape), mode="clip")
        means = scratch("means", size)
        if b >= COLUMN_SUM_BELOW:
            return np.mean(gathered, axis=1, out=means)
        np.add(gathered[:, 0], gathered[:, 1], out=means)
        for j in range(2, b):
            np.add(means, gathered[:, j], out=means)
        return np.divide(means, b, out=means)


#: :class:`BatchMeans` sums batches smaller than this column by column.
COLUMN_SUM_BELOW = 8


class _FreshMeans:
    """Picklable simulator: means of losses on ``B`` fresh examples per replicate."""

    def __init__(self, problem, population, w, batch_size):
        self.problem, self.population, self.w, self.batch_size = problem, population, w, batch_size

    def __call__(self, rng, size):
        data = self.population.sample(size * self.batch_size, rng)
        losses = self.problem.loss(self.w, data.X, data.y)
        return losses.reshape(size, self.batch_size).mean(axis=1)


def loss_variance(losses: ArrayLike, batch_sizes: BatchSizes, *, replicates: Replicates = 10_000,
                  sampling: str = "without_replacement", confidence: float = 0.95,
                  interval: str = "fourth_moment", rng: RNGLike = None, keep_means: bool = False,
                  target_rel_se: float | None = None,
                  execution: Execution | None = None) -> VarianceResult:
    """Monte Carlo variance of the batch-mean loss for each batch size.

    For each batch size ``B`` draw ``replicates`` independent batches of the
    ``N`` per-sample losses under ``sampling``, average the losses in each,
    and estimate the variance of those averages. ``B = 1`` is the
    single-sample (SGD) estimator, ``1 < B < N`` the mini-batch, ``B = N`` the
    full batch. Beside each estimate stands the exact variance
    (docs/theory.md, section 1; Cochran 1977, Theorem 2.2)

    .. math::

        \\operatorname{Var}(\\bar\\ell_B) = \\frac{s^2}{B} \\cdot
        \\begin{cases} 1 & \\text{with replacement} \\\\
        \\frac{N - B}{N - 1} & \\text{without replacement} \\end{cases},
        \\qquad s^2 = \\frac1N \\sum_i (\\ell_i - \\bar\\ell)^2 .

    The full batch without replacement is the whole data set: its mean is
    computed once and its variance is exactly 0 (no draws are made).

    Parameters
    ----------
    losses : array_like, 1-D
        Per-sample losses of a fixed data set, from any model or framework.
    batch_sizes : sequence of int or "full"
        Distinct batch sizes; ``"full"`` means ``N``. Without replacement each
        must be in ``[1, N]``.
    replicates : int >= 2, or "auto"
        Batches drawn per batch size. ``"auto"`` plans, for each batch size,
        the smallest R whose variance has relative standard error at most
        ``target_rel_se`` (default 0.02) from the exact kurtosis of the batch
        mean, in one pass (no sequential stopping, so no early stop before a
        heavy tail is sampled): about ``(kappa_B - 1) / t^2``.
    sampling : {"without_replacement", "with_replacement"}
    confidence : float in (0, 1)
        Level of the two-sided interval for each variance.
    interval : {"fourth_moment", "chi2", "bootstrap"}
        How the interval is made (see :mod:`lossvar.stats`): the default is
        valid for non-normal losses; ``"chi2"`` is exact only for normal batch
        means; ``"bootstrap"`` keeps the raw means in memory.
    rng : int, SeedSequence, Generator or None
        Root of the randomness (SPEC 7). Batch size ``B`` draws from streams
        keyed ``(B, block)``, so a table row depends on the seed and ``B``
        only, not on the other batch sizes or on how the call runs.
    keep_means : bool
        Return the raw per-replicate batch means in ``result.means``.
    target_rel_se : float in (0, 1), optional
        With ``replicates="auto"``, the relative standard error planned for.
        With an integer ``replicates``: add blocks to each batch size, in index
        order, until ``variance_se / variance <= target_rel_se`` (judged from
        1000 replicates on), with ``replicates`` as the cap. The columns
        ``target_rel_se`` and ``target_met`` report the outcome.
    execution : Execution, optional
        How to run; see :class:`lossvar.Execution`.

    Returns
    -------
    VarianceResult

    Examples
    --------
    >>> import numpy as np, lossvar
    >>> losses = np.random.default_rng(0).exponential(size=1000)
    >>> res = lossvar.loss_variance(losses, [1, 10, "full"], replicates=2000, rng=1)
    >>> res.table[["batch_size", "estimator", "exact_variance"]].round(5)
       batch_size  estimator  exact_variance
    0           1     single         1.00340
    1          10  minibatch         0.09944
    2        1000       full         0.00000
    """
    spec = as_execution(execution)
    # What depends on the values alone is validated and computed once per call:
    # the mean now (it checks finiteness), then one fused pass for s2, mu2 and mu4
    # (MomentsPass, the kernel of theory.population_moments), which a serial call
    # shares with a helper thread while its own thread draws the batches (the
    # draws need only N).
    pending = MomentsPass(losses)
    values, n = pending.x, pending.n
    sampling = as_choice(sampling, "sampling", _sampling.SCHEMES)
    sizes = _sampling.as_batch_sizes(batch_sizes, n, sampling)
    count, rule, target_rel_se = _replicates_rule(replicates, target_rel_se, planned=True)
    confidence, interval = _common(confidence, interval)
    root = as_seed_sequence(rng)
    if spec.in_process:
        pending.start_helper()  # one thread beside this one; never beside worker processes
    try:
        rows = None
        if count is None:  # planned from the exact kurtosis: the moments first
            rows = _exact_rows(pending.result(), sizes, sampling, rule)
            planned = [_planned(row["exact_kurtosis"], target_rel_se) for row in rows]
        else:
            planned = [count] * len(sizes)
        conditions: list[Condition | None] = []
        for b, r in zip(sizes, planned, strict=True):
            if b == n and sampling == "without_replacement":  # the whole data set: no draws
                conditions.append(None)
            else:
                conditions.append(Condition((b,), r, block_size(b), BatchMeans(values, b, sampling),
                                            label=f"batch_size={b}"))
        planned = [None if c is None else c.replicates for c in conditions]
        engine_target = None if rule == "planned" else target_rel_se
        keep = keep_means or interval == "bootstrap"
        fingerprint = None
        if spec.checkpoint is not None:  # hashing N values costs more than small-B work: only then
            fingerprint = dict(source="values", data=hashlib.sha256(values.tobytes()).hexdigest(),
                               n=n, batch_sizes=sizes, sampling=sampling, replicates=planned,
                               target_rel_se=target_rel_se, keep=keep, seed=streams.describe(root))
        outputs = _run(conditions, root, keep, dict(execution=spec, fingerprint=fingerprint,
                                                    target_rel_se=engine_target))
        pop = pending.result()
    finally:
        pending.close()
    if rows is None:
        rows = _exact_rows(pop, sizes, sampling, rule)
    exact_r = max([r for r in planned if r is not None], default=2)
    for row, out in zip(rows, outputs, strict=True):
        if out is None:  # the whole data set: the mean is known, the variance exactly 0
            out = _exact_output(pop.mean, exact_r, keep, engine_target)
        row.update(_summary(out, confidence, interval, root, engine_target))
    return _result(rows, outputs, sizes, confidence, root, keep_means, pop.mean, exact_r)


def _exact_rows(pop, sizes, sampling, rule) -> list[dict]:
    """The exact part of each batch size's row, from the moments of the losses."""
    n, s2, mu2, mu4 = pop.n, pop.variance, pop.mu2, pop.mu4
    return [_exact_row(theory.batch_mean_variance(s2, b, n=n, sampling=sampling),
                       theory.fourth_moment_from_moments(mu2, mu4, b, n=n, sampling=sampling),
                       batch_size=b, estimator=_estimator(b, n), sampling=sampling, n=n,
                       exact_mean=pop.mean, fpc=theory.finite_population_factor(n, b, sampling),
                       replicates_rule=rule) for b in sizes]


def variance_study(problem: Problem, source: DataSource, w: ArrayLike, batch_sizes: BatchSizes, *,
                   replicates: Replicates = 10_000, sampling: str | None = None,
                   confidence: float = 0.95, interval: str = "fourth_moment", rng: RNGLike = None,
                   full_size: int | None = None, keep_means: bool = False,
                   target_rel_se: float | None = None,
                   execution: Execution | None = None) -> VarianceResult:
    """The variance of the loss estimator for a model at parameters ``w``.

    Parameters
    ----------
    problem : LinearRegression, LogisticRegression, SoftmaxRegression or NoisyQuadratic
        The model whose per-sample losses ``problem.loss(w, X, y)`` are averaged.
    source : Dataset or population
        A :class:`~lossvar.Dataset` is a fixed finite set: the batch is the
        random part (the optimization noise of SGD), and the call is
        :func:`loss_variance` on its per-sample losses (``sampling`` defaults
        to ``"without_replacement"``). A population (anything with
        ``sample(n, rng)``, e.g. :class:`~lossvar.GaussianLinearPopulation`)
        draws ``B`` fresh examples for every replicate, so the batch mean has
        variance ``Var(div) / B`` exactly, including the "full" batch of
        ``full_size`` examples (the lecture's ``Var(div) / N``); ``sampling``
        must then be ``None`` or ``"fresh"``. ``exact_variance`` uses the
        population's ``loss_moments(w)`` when ``problem`` is its natural model,
        and is NaN otherwise.
    w : array_like, 1-D
        Parameters of the problem, of length ``problem.n_params(d)``.
    batch_sizes, replicates, confidence, interval, rng, keep_means, target_rel_se
        As in :func:`loss_variance`.
    full_size : int, optional
        For a population: the N that ``"full"`` stands for.
    execution : Execution, optional
        How to run; see :class:`lossvar.Execution`.

    Returns
    -------
    VarianceResult
    """
    spec = as_execution(execution)
    w = as_finite_array(w, "w", ndim=1)
    if not hasattr(source, "sample"):
        X, y = source.X, source.y
        problem.check_params(w, X)
        sampling = "without_replacement" if sampling is None else sampling
        return loss_variance(problem.loss(w, X, y), batch_sizes, replicates=replicates,
                             sampling=sampling, confidence=confidence, interval=interval,
                             rng=rng, keep_means=keep_means, target_rel_se=target_rel_se,
                             execution=spec)
    if sampling not in (None, "fresh"):
        raise ValueError("The value for `sampling` must be None or 'fresh' for a population "
                         f"source (every replicate draws new examples), but {sampling!r} was passed.")
    if full_size is not None:
        full_size = as_int(full_size, "full_size", low=1)
    if "full" in _sampling.as_list(batch_sizes) and full_size is None:
        raise ValueError("`full_size` must be given (the N of the full batch) when `batch_sizes` "
                         "contains 'full' and the source is a population; got None")
    sizes = _sampling.as_batch_sizes(batch_sizes, full_size, "fresh")
    count, rule, target_rel_se = _replicates_rule(replicates, target_rel_se, planned=False)
    count = AUTO_CAP if count is None else count  # never planned for a population
    confidence, interval = _common(confidence, interval)
    root = as_seed_sequence(rng)
    d = source.n_features
    problem.check_params(w, np.empty((0, d)))
    natural = source.problem == problem
    exact_mean, var_div = source.loss_moments(w) if natural else (float("nan"), float("nan"))
    kappa = source.loss_kurtosis(w) if natural else float("nan")
    rows: list[dict] = []
    conditions: list[Condition] = []
    for b in sizes:
        rows.append(_exact_row(var_div / b, theory.fourth_moment_from_moments(
                               var_div, kappa * var_div**2, b),
                               batch_size=b, estimator=_estimator(b, full_size), sampling="fresh",
                               n=float("nan") if full_size is None else full_size,
                               exact_mean=exact_mean, fpc=1.0, replicates_rule=rule))
        conditions.append(Condition((b,), count, block_size(b * max(d, 1)),
                                    _FreshMeans(problem, source, w, b), label=f"batch_size={b}"))
    keep = keep_means or interval == "bootstrap"
    fingerprint = dict(source="population", population=repr(source), problem=repr(problem),
                       w=w.tolist(), batch_sizes=sizes, full_size=full_size,
                       replicates=count, target_rel_se=target_rel_se, keep=keep,
                       seed=streams.describe(root))
    outputs = _run(conditions, root, keep, dict(execution=spec, fingerprint=fingerprint,
                                                target_rel_se=target_rel_se))
    for row, out in zip(rows, outputs, strict=True):
        row.update(_summary(out, confidence, interval, root, target_rel_se))
    return _result(rows, outputs, sizes, confidence, root, keep_means, None, count)


def _exact_row(exact_variance, exact_fourth, **row):
    """A table row's exact part; the fourth moment stays out of the table (its kurtosis is in)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = exact_fourth / exact_variance**2 if exact_variance > 0 else float("nan")
    return dict(row, exact_variance=exact_variance, exact_kurtosis=float(kappa),
                _exact_fourth=float(exact_fourth))


def _planned(exact_kurtosis, target_rel_se):
    return int(max(2, stats.replicates_for_rel_se(exact_kurtosis, target_rel_se)))


def _replicates_rule(replicates, target_rel_se, *, planned) -> tuple[int | None, str, float | None]:
    """``(replicates, rule, target)``: what ``replicates`` and ``target_rel_se`` ask for.

    ``"auto"`` plans from the exact kurtosis where it is known (fixed data,
    ``planned=True``), else adds blocks sequentially up to :data:`AUTO_CAP`.
    """
    if target_rel_se is not None:
        target_rel_se = as_float(target_rel_se, "target_rel_se", low=0.0, high=1.0, low_open=True,
                                 high_open=True)
    if isinstance(replicates, str):
        if replicates != "auto":
            raise ValueError(f"`replicates` must be an integer >= 2 or 'auto'; got {replicates!r}")
        target = AUTO_TARGET_REL_SE if target_rel_se is None else target_rel_se
        return (None, "planned", target) if planned else (AUTO_CAP, "sequential", target)
    replicates = as_int(replicates, "replicates", low=2)
    return replicates, ("fixed" if target_rel_se is None else "sequential"), target_rel_se


def _run(conditions, root, keep, options):
    live = [c for c in conditions if c is not None]
    outs = iter(simulate(live, root, keep_values=keep, **options))
    return [None if c is None else next(outs) for c in conditions]


def _exact_output(value, replicates, keep, target):
    values = np.full(replicates, value) if keep else None
    return Output(Moments(replicates, value, 0.0, 0.0, 0.0), values,
                  None if target is None else True)


def _summary(out, confidence, interval, root, target_rel_se):
    m = out.moments
    boot_rng = None
    if interval == "bootstrap":
        boot_rng = streams.stream(root, streams.INTERVAL_BOOTSTRAP)
    lo, hi = variance_interval(m, confidence, interval, values=out.values, rng=boot_rng)
    row = dict(replicates=m.count, mean=m.mean, mean_se=m.mean_se(),
               variance=m.variance, variance_se=m.variance_se(), ci_low=lo, ci_high=hi,
               interval=interval, kurtosis=m.kurtosis)
    if target_rel_se is not None:
        row.update(target_rel_se=target_rel_se, target_met=out.target_met)
    return row


def _result(rows, outputs, sizes, confidence, root, keep_means, full_mean, replicates):
    reliable = _exactness(rows)
    extra = [c for c in ("target_rel_se", "target_met") if c in rows[0]]
    # One numpy array per column, the DataFrame built once from them: the dtypes
    # pandas infers from the rows themselves, at a fraction of the cost.
    table = pd.DataFrame({c: _column([row[c] for row in rows]) for c in (*COLUMNS, *extra)})
    # The level travels with the table (lossvar.plots reads it), not in a column.
    table.attrs["confidence"] = confidence
    _warn_unreliable([b for b, ok in zip(sizes, reliable, strict=True) if not ok])
    means = None
    if keep_means:
        means = {}
        for b, out in zip(sizes, outputs, strict=True):
            means[b] = out.values if out is not None else np.full(replicates, full_mean)
    return VarianceResult(table=table, confidence=confidence, seed=root, means=means)


def _column(values):
    """A table column: a numpy array, or the values as they are where numpy would make objects."""
    arr = np.asarray(values)
    return values if arr.dtype == object else arr


def _exactness(rows) -> list[bool]:
    """Add each row's exact standard error, z, p-value and reliability flag; return the flags.

    One vectorized call of each statistic for all rows (elementwise, so each
    row gets the bits a call of its own would give).
    """
    fourth = np.array([row.pop("_exact_fourth") for row in rows], dtype=np.float64)
    exact = np.array([row["exact_variance"] for row in rows], dtype=np.float64)
    r = np.array([row["replicates"] for row in rows])
    se = np.full(len(rows), np.nan)
    known = np.isfinite(fourth) & (r >= 2)
    if known.any():
        se[known] = theory.variance_se(fourth[known], exact[known], r[known])
    z, _, p = stats.variance_test(np.array([row["variance"] for row in rows], dtype=np.float64),
                                  exact, se)
    reliable = stats.interval_reliable(r, np.array([row["kurtosis"] for row in rows], dtype=float),
                                       np.array([row["exact_kurtosis"] for row in rows], dtype=float))
    flags = [bool(v) for v in reliable]
    for i, row in enumerate(rows):
        row.update(exact_variance_se=float(se[i]), z=float(z[i]), pvalue=float(p[i]),
                   interval_reliable=flags[i])
    return flags


def _warn_unreliable(bad):
    if bad:
        warnings.warn(f"the intervals of batch sizes {bad} may under-cover: too few replicates for "
                      "the tails of the losses (column interval_reliable; use more replicates, or "
                      "replicates='auto')", stats.UnreliableIntervalWarning, stacklevel=4)


def _common(confidence, interval):
    confidence = as_float(confidence, "confidence", low=0.0, high=1.0, low_open=True,
                          high_open=True)
    interval = as_choice(interval, "interval", INTERVALS)
    return confidence, interval


def _estimator(b, n):
    if b == 1:
        return "single"
    return "full" if b == n else "minibatch"
