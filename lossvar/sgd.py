"""Ensembles of SGD runs: R independent replicates advanced together.

:func:`run_sgd` runs ``replicates`` independent copies of an optimizer on one
problem and one data source, stacked along a leading replicate axis, and
records at chosen steps the full-data loss, the squared distance to the
minimizer and the step size (and, on request, the same for the Polyak-Ruppert
average). The result, :class:`Trajectories`, holds a tidy per-replicate table
and a per-step summary with standard errors, which the exact recursions of
:mod:`lossvar.theory` (docs/theory.md, section 6) are compared against.

Randomness. Replicates are processed in blocks of :data:`BLOCK_SIZE`, the
unit of randomness: block j (replicates ``j*BLOCK_SIZE`` onwards) is one
:class:`~lossvar.engine.Condition` with key ``(0, j)`` and draws from
``stream(root, 0, j, 0)``, in this order, one step after another:

- ``"with_replacement"``: the values of ``rng.integers(0, N, (R_b, B))`` per
  step (:func:`lossvar.sampling.with_replacement`), the (R_b, B) indices of
  step t after those of step t - 1. They are drawn for several steps at once,
  ``rng.integers(0, N, (k, R_b, B))``, which gives the same numbers: each
  value is drawn from the bit generator's stream in turn (32 bits a value
  while N <= 2**32, whatever the integer dtype, the unused half of a 64-bit
  output kept in the generator's state between calls);
- ``"reshuffle"``: at the start of each epoch, one ``rng.permuted`` of
  ``range(N)`` per replicate (:func:`lossvar.sampling.epoch_batches`), cut in order into
  ``N // B`` batches; the last ``N % B`` examples of each permutation are
  not used in that epoch, so every update averages exactly B examples and an
  epoch is ``N // B`` updates;
- ``"fresh"`` (a population): ``population.sample(T * R_b * B, rng)`` once
  every T steps, with T = min(64, max(1, 2**16 // (R_b * B * d))) (fewer at
  the end), read as an array of shape ``(T, R_b, B, d)``: step t of the group,
  replicate r;
- ``"full"``: no randomness.

So a result depends only on the seed and the arguments: not on the engine's
chunking, workers or executor.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.special

from . import _threads
from . import sampling as _sampling
from ._validate import as_choice, as_finite_array, as_int
from .engine import Condition, Execution, as_execution, run
from .optim import Optimizer
from .problems import LinearRegression, LogisticRegression
from .schedules import as_schedule
from .stats import mean_se
from .streams import as_seed_sequence, describe
from .typing import ArrayLike, DataSource, Executor, PathLikeStr, Problem, RNGLike

__all__ = ["BLOCK_SIZE", "DivergenceWarning", "Trajectories", "run_sgd"]

#: Replicates per block: the unit of randomness (part of the definition of the
#: random numbers; changing it changes the bits).
BLOCK_SIZE = 256

DATASET_SAMPLINGS = ("reshuffle", "with_replacement", "full")
POPULATION_SAMPLINGS = ("fresh",)

#: A population is asked for the examples of up to _FRESH_MAX_STEPS steps at
#: once, at most about _FRESH_ELEMENTS numbers (part of the definition of the
#: random numbers).
_FRESH_ELEMENTS = 2**16
_FRESH_MAX_STEPS = 64

#: Records per decade of steps in the default log-spaced grid.
_PER_DECADE = 10

#: With replacement, the indices of several steps are drawn in one call, about
#: this many at once (2 MiB of intp); the numbers do not depend on it.
_DRAW_ELEMENTS = 2**18


class DivergenceWarning(RuntimeWarning):
    """Some replicates went to inf or NaN and were left out of the summary."""


@dataclass(frozen=True, repr=False)
class Trajectories:
    """The records of an ensemble of SGD runs (:func:`run_sgd`).

    Attributes
    ----------
    table : pandas.DataFrame
        Tidy, one row per replicate and recorded step: ``replicate``,
        ``step`` (the number of updates made; 0 is the start), ``loss`` (the
        full-data mean loss, or for a population the expected risk; see
        :func:`run_sgd`), ``dist2`` (``||w - w*||^2``), ``lr`` (the step size
        eta_step of the update that produced this iterate; NaN at step 0) and,
        with ``average=True``, ``avg_loss`` and ``avg_dist2`` for the
        Polyak-Ruppert average of the iterates after 0, 1, ..., step updates.
        Rows of a diverged replicate are NaN from the step it diverged.
    summary : pandas.DataFrame
        One row per recorded step: ``step``, ``lr``, ``n`` (replicates used:
        the diverged ones are excluded at every step, so every row averages
        the same replicates), and ``<metric>_mean``, ``<metric>_se`` (the
        standard error of the mean across replicates, ddof = 1) for each metric.
    diverged : pandas.DataFrame
        ``replicate`` and ``step`` (the first step at which its parameters or
        its recorded loss or distance were seen to be non-finite); empty if
        none diverged.
    w_star : ndarray, shape (p,)
        The minimizer the distances are measured to.
    loss_star : float
        The loss at ``w_star`` (NaN where the loss is not recorded).
    final_params : ndarray, shape (R, p)
        Parameters after the last step (NaN rows for diverged replicates).
    params : ndarray, shape (k, n_records, p)
        The parameters of the replicates chosen by ``run_sgd(record_params=...)``
        at every recorded step (``params[i, j]`` is replicate
        ``params_replicates[i]`` after ``steps[j]`` updates; NaN from the step a
        replicate diverged); k = 0 when none were chosen.
    params_replicates : ndarray of int, shape (k,)
        Which replicates ``params`` holds, in increasing order.
    seed : numpy.random.SeedSequence
        The root of all streams: passing it back as ``rng`` reproduces the
        result bit for bit.
    info : dict
        The problem, optimizer, source, sampling, batch size, steps and
        replicates of the call.
    """

    table: pd.DataFrame
    summary: pd.DataFrame
    diverged: pd.DataFrame
    w_star: np.ndarray
    loss_star: float
    final_params: np.ndarray
    seed: np.random.SeedSequence
    info: dict = field(default_factory=dict)
    params: np.ndarray = field(default_factory=lambda: np.empty((0, 0, 0)))
    params_replicates: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    @property
    def steps(self) -> np.ndarray:
        """The recorded steps."""
        return self.summary["step"].to_numpy()

    @property
    def metrics(self) -> tuple:
        """The recorded metric columns of ``table``."""
        return tuple(c for c in self.table.columns if c not in ("replicate", "step", "lr"))

    def values(self, metric: str, *, used_only: bool = True) -> np.ndarray:
        """The ``(replicates, records)`` array of a metric (the diverged rows left out)."""
        metric = as_choice(metric, "metric", self.metrics)
        n_rec = len(self.summary)
        v = self.table[metric].to_numpy().reshape(-1, n_rec)
        if used_only and len(self.diverged):
            keep = np.ones(v.shape[0], dtype=bool)
            keep[self.diverged["replicate"].to_numpy()] = False
            v = v[keep]
        return v

    def __repr__(self) -> str:
        i = self.info
        head = (f"Trajectories({i.get('optimizer')}, sampling={i.get('sampling')!r}, "
                f"batch_size={i.get('batch_size')}, steps={i.get('steps')}, "
                f"replicates={i.get('replicates')}, diverged={len(self.diverged)})")
        return f"{head}\n{self.summary.to_string(index=False)}"


def run_sgd(problem: Problem, source: DataSource, optimizer: Optimizer, *, steps: int,
            batch_size: int | str | None = None, replicates: int, sampling: str | None = None,
            w0: ArrayLike | None = None, rng: RNGLike = None, record: ArrayLike | None = None,
            average: bool = False, record_params: ArrayLike | str | None = None,
            chunk_size: int | None = None, progress: bool = False,
            workers: int = 1, executor: Executor = None,
            checkpoint: PathLikeStr | None = None,
            execution: Execution | None = None) -> Trajectories:
    """Run ``replicates`` independent SGD runs together and record their trajectories.

    Replicate r starts at ``w0`` (or ``w0[r]``) and makes ``steps`` updates

    .. math::

        g_t = \\frac1B \\sum_{i \\in \\mathcal B_t} \\nabla \\ell_i(w_{t-1}), \\qquad
        (w_t, s_t) = \\text{optimizer.step}(w_{t-1}, g_t, s_{t-1}),

    with its own batches :math:`\\mathcal B_t`: the lecture's SGD and
    mini-batch algorithms (a new random permutation each epoch, cut into
    batches), batches drawn with replacement, the full batch (gradient
    descent), or fresh examples from a population. All replicates of a block
    advance in one vectorized call (w has shape ``(R_b, p)``), bit-identical
    to running them one at a time on the same batches.

    Parameters
    ----------
    problem : LinearRegression, LogisticRegression, SoftmaxRegression or NoisyQuadratic
    source : Dataset or population
        A :class:`~lossvar.Dataset` (fixed data of N examples) or a population
        (anything with ``sample(n, rng)``, ``w_star`` and ``n_features``). For
        ``GaussianNoisePopulation(NoisyQuadratic(...))`` with batch size B, the gradient is
        :math:`H(w - w^*)` plus the mean of B fresh N(0, sigma^2 I) vectors:
        docs/theory.md's additive-noise model with sigma^2 / B.
    optimizer : lossvar.optim.Optimizer
        E.g. ``lossvar.optim.sgd(lossvar.schedules.polynomial(1.0, 0.75))``.
    steps : int
        Updates per replicate, >= 1.
    batch_size : int
        B >= 1; at most N with ``"reshuffle"``; with ``"full"`` it may be
        omitted (it is N).
    replicates : int
        R >= 1 independent runs.
    sampling : str, optional
        For a Dataset: ``"reshuffle"`` (default), ``"with_replacement"`` or
        ``"full"``. For a population: ``"fresh"`` (the default, and the only choice).
    w0 : array_like, shape (p,) or (R, p), optional
        Starting point(s); zeros by default.
    rng : int, SeedSequence, Generator or None
        Root of the randomness (SPEC 7).
    record : sequence of int, optional
        Steps (numbers of updates made, in [0, steps]) at which to record.
        Default: 0, ``steps`` and about 10 log-spaced steps per decade.
    average : bool
        Also record the Polyak-Ruppert average :math:`\\bar w` of the iterates
        after 0, 1, ..., step updates (the start included: docs/theory.md's
        :math:`\\bar w_{n}` with n = step + 1).
    record_params : "all" or sequence of int, optional
        Also keep the parameters of these replicates (indices in [0, R)) at
        every recorded step, in ``Trajectories.params``: e.g. the paths of a
        few runs over the loss contours, or ``"all"`` with every step recorded
        for statistics of the updates. None (default) keeps none. Memory is
        k x records x p numbers.
    chunk_size : int, optional
        Replicates per unit of work of the engine; never changes the result.
    progress : bool
        Show a progress bar over chunks.
    workers, executor, checkpoint
        Where blocks run and where finished ones are kept, as in
        :func:`lossvar.loss_variance`: the table is bit-identical for every
        choice, and a checkpointed call that is killed resumes where it stopped.
        Blocks go to an ``executor`` by pickling; our own process pool
        (``workers > 1``) hands the work to its processes once, by fork.
        With ``workers=1`` and no executor, the blocks run here one after
        another and use this process's other cores where that pays and
        changes no bits: the full-data loss of a record is computed on
        threads (``mean_loss(threads=...)`` of the linear models), and with
        replacement the next indices are drawn in a thread while the
        current ones are used.
    execution : lossvar.Execution, optional
        How to run, as one object, instead of ``chunk_size``, ``progress``,
        ``workers``, ``executor`` and ``checkpoint``; not both.

    Returns
    -------
    Trajectories

    Notes
    -----
    - ``loss``: for a Dataset, ``problem.mean_loss`` over all N examples (the
      ridge penalty included). For a population, the expected risk
      ``source.loss_moments(w)[0]`` when ``problem`` is the population's own
      problem (exact for the quadratic and the Gaussian linear model; Gauss-Hermite
      quadrature, about a millisecond per replicate and record, for the
      logistic population), else NaN.
    - ``w*``: for a Dataset, ``problem.minimize(X, y)`` (exact for linear
      least squares and the quadratic, Newton to gradient norm 1e-12 for the
      logistic and softmax losses), computed once and kept for the next calls
      on the same problem and data (by ``Dataset.fingerprint``); for a population,
      ``source.w_star``.
    - Divergence: after every update the parameters are checked; a replicate
      whose parameters are non-finite, or whose recorded loss or distance
      overflows, is marked at that step, its parameters are set to NaN (NaN
      is absorbing in every optimizer, so it is not updated meaningfully from
      then on), it is listed in ``diverged``, excluded from ``summary``, and a
      :class:`DivergenceWarning` names it. An inf is never averaged.

    Examples
    --------
    >>> import lossvar
    >>> from lossvar import optim, schedules
    >>> q = lossvar.NoisyQuadratic(1.0, noise_std=1.0)
    >>> tr = run_sgd(q, lossvar.GaussianNoisePopulation(q), optim.sgd(schedules.polynomial(1.0, 1.0)),
    ...              steps=100, batch_size=1, replicates=512, w0=[3.0], rng=0)
    >>> list(tr.summary.columns)
    ['step', 'lr', 'n', 'loss_mean', 'loss_se', 'dist2_mean', 'dist2_se']
    """
    how = as_execution(execution, workers=workers, executor=executor, chunk_size=chunk_size,
                       progress=progress, checkpoint=checkpoint)
    spec = _check_inputs(problem, source, optimizer, steps, batch_size, replicates, sampling,
                         w0, record, average, record_params)
    root = as_seed_sequence(rng)
    # The records' losses may use this process's cores when the blocks run here,
    # one after another; elsewhere the engine's workers already use them.
    threads = _threads.cores() if how.in_process else 1
    conditions = []
    for j, start in enumerate(range(0, spec.replicates, BLOCK_SIZE)):
        size = min(BLOCK_SIZE, spec.replicates - start)
        start_rows = spec.w0[start:start + size] if spec.w0.ndim == 2 else spec.w0
        conditions.append(Condition(key=(0, j), replicates=size, block_size=BLOCK_SIZE,
                                    simulate=_Block(spec, start, start_rows, threads),
                                    label=f"block {j}",
                                    reduce="stack"))
    fingerprint = None
    if how.checkpoint is not None:
        data = (source.fingerprint() if hasattr(source, "fingerprint") else repr(source))
        fingerprint = dict(
            call="run_sgd", problem=repr(problem), data=data, optimizer=optimizer.name,
            hyperparams=repr(sorted(optimizer.hyperparams.items())), steps=spec.steps,
            batch_size=spec.batch_size, replicates=spec.replicates, sampling=spec.sampling,
            w0=hashlib.sha256(spec.w0.tobytes()).hexdigest(), record=spec.record.tolist(),
            average=spec.average, record_params=spec.param_rows.tolist(),
            seed=describe(root))
    outputs = run(conditions, root, execution=how, fingerprint=fingerprint)
    blocks = [o.values for o in outputs if isinstance(o.values, dict)]  # named records
    merged = {k: np.concatenate([v[k] for v in blocks]) for k in blocks[0]}
    return _trajectories(spec, merged, root)


@dataclass(frozen=True)
class _Spec:
    """The validated, normalized arguments of one call (shared by all blocks)."""

    problem: object
    X: np.ndarray | None
    y: np.ndarray | None
    population: object
    optimizer: object
    steps: int
    batch_size: int
    replicates: int
    sampling: str
    w0: np.ndarray
    w_star: np.ndarray
    record: np.ndarray
    average: bool
    param_rows: np.ndarray
    fields: tuple
    loss_known: bool
    info: dict


class _Block:
    """Picklable simulator (given a picklable optimizer): one block of replicates,
    the first of which is replicate ``start`` of the call.

    Returns the block's named records (the engine joins blocks name by name):
    ``records`` (size, n_rec, n_fields), ``final`` parameters (size, p),
    ``first_bad`` step (size,; -1 if none) and ``params`` (k_b, n_rec, p) of the
    block's replicates chosen by ``record_params``.

    ``threads``: how many threads the full-data loss of a record may use
    (``mean_loss(threads=...)`` of the linear models; the bits do not depend on it).
    """

    def __init__(self, spec: _Spec, start: int, w0, threads: int = 1):
        self.spec, self.start, self.w0, self.threads = spec, start, w0, threads

    def __call__(self, rng, size):
        s = self.spec
        p = s.w_star.size
        w = np.array(np.broadcast_to(self.w0, (size, p)), dtype=np.float64)
        state = s.optimizer.init(w)
        total = w.copy() if s.average else None
        out = np.full((size, s.record.size, len(s.fields)), np.nan)
        first_bad = np.full(size, -1, dtype=np.int64)
        rows = s.param_rows
        keep = rows[(rows >= self.start) & (rows < self.start + size)] - self.start
        params = np.full((keep.size, s.record.size, p), np.nan)
        next_batch = self._batches(rng, size)
        # The in-place forms (same operations, same bits) where they exist:
        # the optimizer's (``step.in_place``) and the gradient of a linear model.
        make = getattr(s.optimizer.step, "in_place", None)
        advance = make(w) if make is not None else None
        own_step = getattr(s.optimizer.step, "__module__", None) == "lossvar.optim"
        grad = (_GradInto.of(s.problem, w, s.batch_size, own_step)
                if s.sampling != "full" else None)
        # The non-finite check: one dot with zeros is 0 (of either sign) when every
        # entry of w is finite and NaN as soon as one is inf or NaN (inf * 0 is NaN);
        # the rows are scanned only then.
        zeros = np.zeros(w.size)
        slot = 0
        with np.errstate(over="ignore", invalid="ignore"):
            if s.record[0] == 0:
                self._record(out, 0, w, total, 0, first_bad)
                params[:, 0] = w[keep]
                slot = 1
            for t in range(1, s.steps + 1):
                Xb, yb = next_batch(t)
                if grad is None:
                    g = s.problem.mean_grad(w, Xb, yb)
                else:  # a buffer, overwritten next step: a foreign optimizer may keep it
                    g = grad(w, Xb, yb) if own_step else grad(w, Xb, yb).copy()
                if advance is None:
                    w, state = s.optimizer.step(w, g, state)
                else:
                    advance(w, g)
                if np.dot(w.reshape(-1), zeros) != 0.0:
                    bad = ~np.isfinite(w).all(axis=1)
                    if bad.any():
                        self._mark(w, bad, t, first_bad)
                if total is not None:
                    total += w
                if slot < s.record.size and s.record[slot] == t:
                    self._record(out, slot, w, total, t, first_bad)
                    params[:, slot] = w[keep]
                    slot += 1
        return {"records": out, "final": w, "first_bad": first_bad, "params": params}

    @staticmethod
    def _mark(w, bad, t, first_bad):
        new = bad & (first_bad < 0)
        first_bad[new] = t
        w[bad] = np.nan

    def _record(self, out, slot, w, total, t, first_bad):
        s = self.spec
        metrics = [*self._metrics(w)]
        if total is not None:
            metrics += self._metrics(total / (t + 1))
        values = np.stack(metrics, axis=1)
        bad = ~np.isfinite(values[:, 1])
        if s.loss_known:
            bad |= ~np.isfinite(values[:, 0])
        if bad.any():
            self._mark(w, bad, t, first_bad)
            values[bad] = np.nan
        out[:, slot] = values

    def _metrics(self, w):
        s = self.spec
        dist2 = np.sum((w - s.w_star) ** 2, axis=1)
        if s.X is not None and self.threads > 1 and type(s.problem) in _LINEAR_MODELS:
            loss = s.problem.mean_loss(w, s.X, s.y, threads=self.threads)
        elif s.X is not None:
            loss = s.problem.mean_loss(w, s.X, s.y)
        else:
            loss = np.full(w.shape[0], np.nan)
            ok = np.isfinite(w).all(axis=1)
            if s.loss_known and ok.any():
                loss[ok] = s.population.loss_moments(w[ok])[0]
        return [loss, dist2]

    def _batches(self, rng, size):
        """A function t -> (X_batch, y_batch) for update t = 1, 2, ..."""
        s = self.spec
        B = s.batch_size
        if s.sampling == "full":
            return lambda t: (s.X, s.y)
        if s.sampling == "fresh":
            d = s.population.n_features

            # One draw serves several steps: a population draw has a fixed cost
            # much larger than a small batch's.
            chunk = int(np.clip(_FRESH_ELEMENTS // (size * B * d), 1, _FRESH_MAX_STEPS))
            cache = {}

            def fresh(t):
                i = (t - 1) % chunk
                if i == 0:
                    n_steps = min(chunk, s.steps - t + 1)
                    data = s.population.sample(n_steps * size * B, rng)
                    cache["X"] = data.X.reshape(n_steps, size, B, d)
                    cache["y"] = np.asarray(data.y, np.float64).reshape(n_steps, size, B)
                return cache["X"][i], cache["y"][i]
            return fresh
        n = s.X.shape[0]
        # The batches are gathered into two arrays made once per block (the
        # steps of a block use them one after another); mode="clip" because
        # "raise" would buffer ``out`` anew (the indices are in range).
        Xb = np.empty((size, B, s.X.shape[1]))
        yb = np.empty((size, B))

        def gather(idx):
            np.take(s.X, idx, axis=0, out=Xb, mode="clip")
            np.take(s.y, idx, out=yb, mode="clip")
            return Xb, yb
        if s.sampling == "with_replacement":
            # The indices of several steps in one draw, of shape (k, size, B): the
            # same numbers as one draw per step (see the module docstring). As intp,
            # which np.take would otherwise make of them at every call (the values of
            # an integer draw do not depend on its dtype).
            per_draw = max(1, min(s.steps, _DRAW_ELEMENTS // (size * B)))
            ahead = self.threads > 1
            drawn = {}

            def draw(t):
                k = min(per_draw, s.steps - t + 1)
                return rng.integers(0, n, (k, size, B), dtype=np.intp)

            def with_replacement(t):
                i = (t - 1) % per_draw
                if i == 0:
                    pending = drawn.pop("next", None)
                    drawn["idx"] = draw(t) if pending is None else pending.result()
                    if ahead and t + per_draw <= s.steps:
                        # The next chunk is drawn in a thread while this one is
                        # used: the same calls in the same order, one at a time.
                        drawn["next"] = _threads.Later(draw, t + per_draw)
                return gather(drawn["idx"][i])
            return with_replacement
        per_epoch = n // B
        epoch = {}

        def reshuffled(t):
            i = (t - 1) % per_epoch
            if i == 0:
                epoch["batches"] = _sampling.epoch_batches(rng, n, B, size)
            return gather(epoch["batches"][:, i])
        return reshuffled


_LINEAR_MODELS = (LinearRegression, LogisticRegression)


class _GradInto:
    """``problem.mean_grad`` of LinearRegression and LogisticRegression, into buffers.

    The operations of ``_GeneralizedLinear.mean_grad`` in the same order
    (scores by matmul, phi', matmul, / B, + l2 w), each written to an array
    made once per block, so the same bits without new arrays every step.
    Other problems keep their own ``mean_grad``.

    ``skip_l2`` (set by :meth:`of` when l2 == 0 and the optimizer is one of
    :mod:`lossvar.optim`): the gradient is returned without ``+ 0 * w``. That
    term changes g only where g == -0.0 and w_j >= +0 (then g becomes +0.0;
    where w_j == -0.0 it adds -0.0, which changes nothing; at the start of a
    step w is finite, or NaN in a whole row, whose gradient is NaN anyway).
    No optimizer of lossvar.optim moves differently on g = -0.0 and +0.0
    there. Adam(W), RMSProp and Adagrad pass the gradient to w only through
    squares (+0.0 either way) and ratios whose zero numerator gives +0.0
    whatever its sign (Adam's mu may then hold a zero of the other sign,
    nothing else). sgd, momentum and nesterov move w only by w_j - x, x a
    multiple of g or of a trace that may hold a zero of the other sign, which
    differs only when w_j == -0.0; but w_j >= +0 at the step concerned, and
    w_j - x is -0.0 only when w_j is -0.0 already, so w_j is never -0.0
    afterwards. A foreign optimizer gets the gradient mean_grad returns, term
    included.
    """

    skip_l2 = False

    def __init__(self, problem, w, batch_size):
        self.problem, self.l2 = problem, float(problem.l2)
        self.logistic = type(problem) is LogisticRegression
        size, p = w.shape
        self.z = np.empty((size, batch_size))
        self.r = np.empty((size, batch_size))
        self.g = np.empty((size, p))
        self.tmp = np.empty((size, p))

    @classmethod
    def of(cls, problem, w, batch_size, own_step=False):
        if type(problem) not in _LINEAR_MODELS or w.ndim != 2:
            return None
        grad = cls(problem, w, batch_size)
        # + 0 * w changes g only where g is -0.0 and w >= +0 (to +0.0), and no
        # optimizer of lossvar.optim moves differently on -0.0 there (see
        # _GradInto.skip_l2); a foreign one sees the gradient mean_grad returns.
        grad.skip_l2 = own_step and grad.l2 == 0.0
        return grad

    def __call__(self, w, X, y):
        z, r, g = self.z, self.r, self.g
        if X.shape[:2] != z.shape or y.shape != z.shape:  # not the block's batch buffers
            return self.problem.mean_grad(w, X, y)
        np.matmul(X, w[..., None], out=z[..., None])
        if self.logistic:
            scipy.special.expit(z, out=r)
            np.subtract(r, y, out=r)
        else:
            np.subtract(z, y, out=r)
        np.matmul(r[..., None, :], X, out=g[..., None, :])
        np.divide(g, X.shape[-2], out=g)
        if self.skip_l2:
            return g
        np.multiply(w, self.l2, out=self.tmp)
        return np.add(g, self.tmp, out=g)


def _check_inputs(problem, source, optimizer, steps, batch_size, replicates, sampling, w0,
                  record, average, record_params=None) -> _Spec:
    if not (hasattr(problem, "mean_grad") and hasattr(problem, "n_params")):
        raise TypeError(f"`problem` must be a lossvar problem (with mean_grad and n_params); "
                        f"got {problem!r}")
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "step")):
        raise TypeError(f"`optimizer` must be a lossvar.optim.Optimizer; got {optimizer!r}")
    steps = as_int(steps, "steps", low=1)
    replicates = as_int(replicates, "replicates", low=1)
    is_population = hasattr(source, "sample")
    if not is_population and not hasattr(source, "X"):
        raise TypeError(f"`source` must be a Dataset or a population (with sample(n, rng)); "
                        f"got {source!r}")
    if is_population:
        sampling = as_choice("fresh" if sampling is None else sampling, "sampling",
                             POPULATION_SAMPLINGS)
        X = y = None
        d = as_int(source.n_features, "source.n_features", low=1)
        n = None
    else:
        sampling = as_choice("reshuffle" if sampling is None else sampling, "sampling",
                             DATASET_SAMPLINGS)
        X = np.ascontiguousarray(source.X, dtype=np.float64)
        # Labels as float64 once, not once per step inside the problem.
        y = np.asarray(source.y, dtype=np.float64)
        n, d = X.shape
    batch_size = _batch_size(batch_size, sampling, n)
    p = problem.n_params(d)
    problem.check_params(np.zeros(p), np.empty((0, d)))
    w0 = _start(w0, p, replicates)
    record = _record_steps(record, steps)
    average = bool(average)
    param_rows = _param_rows(record_params, replicates)
    if is_population:
        w_star = np.array(source.w_star, dtype=np.float64)
        loss_known = source.problem == problem
    else:
        w_star = _minimizer(problem, source, X, y)
        loss_known = True
    if w_star.shape != (p,):
        raise ValueError(f"the minimizer has shape {w_star.shape}, but `problem` has p={p} "
                         "parameters for this source")
    fields = ("loss", "dist2") + (("avg_loss", "avg_dist2") if average else ())
    info = dict(problem=repr(problem), source=repr(source),
                optimizer=getattr(optimizer, "name", repr(optimizer)),
                hyperparams=dict(getattr(optimizer, "hyperparams", {})), sampling=sampling,
                batch_size=batch_size, steps=steps, replicates=replicates,
                n=n, average=average, block_size=BLOCK_SIZE)
    return _Spec(problem, X, y, source if is_population else None, optimizer, steps,
                 batch_size, replicates, sampling, w0, w_star, record, average, param_rows,
                 fields, loss_known, info)


def _param_rows(record_params, replicates) -> np.ndarray:
    """The replicates whose parameters are kept: sorted unique indices in [0, R)."""
    if record_params is None:
        return np.empty(0, np.int64)
    if isinstance(record_params, str):
        as_choice(record_params, "record_params", ("all",))
        return np.arange(replicates, dtype=np.int64)
    values = np.asarray(record_params)
    if values.ndim != 1 or not (values.size == 0 or np.issubdtype(values.dtype, np.integer)):
        raise ValueError(f"`record_params` must be 'all', None or a sequence of replicate "
                         f"indices in [0, replicates={replicates}); got {record_params!r}")
    bad = (values < 0) | (values >= replicates)
    if bad.any():
        raise ValueError(f"`record_params` must hold replicate indices in [0, "
                         f"replicates={replicates}); got {int(values[bad][0])}")
    return np.unique(values.astype(np.int64))


#: Minimizers of recent (problem, data set) pairs: Newton on the full data costs
#: more than a short ensemble, and studies run many ensembles on one data set.
_MINIMIZERS: OrderedDict = OrderedDict()
_MINIMIZERS_KEPT = 8


def _minimizer(problem, dataset, X, y) -> np.ndarray:
    """``problem.minimize(X, y)``, cached by the problem and the data's fingerprint."""
    try:
        key = (problem, dataset.fingerprint())
        hash(key)
    except (AttributeError, TypeError):
        return np.asarray(problem.minimize(X, y), dtype=np.float64)
    if key not in _MINIMIZERS:
        _MINIMIZERS[key] = np.asarray(problem.minimize(X, y), dtype=np.float64)
        if len(_MINIMIZERS) > _MINIMIZERS_KEPT:
            _MINIMIZERS.popitem(last=False)
    _MINIMIZERS.move_to_end(key)
    return _MINIMIZERS[key].copy()


def _batch_size(batch_size, sampling, n):
    if sampling == "full":
        if batch_size is None:
            return n
        if isinstance(batch_size, str) and batch_size == "full":
            return n
        b = as_int(batch_size, "batch_size", low=n, high=n)
        return b
    if batch_size is None:
        raise TypeError(f"`batch_size` must be given (an integer >= 1) with sampling={sampling!r}")
    if sampling == "reshuffle":
        b = as_int(batch_size, "batch_size", low=1)
        if b > n:
            raise ValueError(f"`batch_size` must be an integer in [1, N={n}] with "
                             f"sampling='reshuffle' (each batch is cut from one permutation of "
                             f"the N examples); got {b}")
        return b
    return as_int(batch_size, "batch_size", low=1)


def _start(w0, p, replicates):
    if w0 is None:
        return np.zeros(p)
    w0 = as_finite_array(w0, "w0")
    if w0.shape not in ((p,), (replicates, p)):
        raise ValueError(f"`w0` must have shape (p,)=({p},) or (R, p)=({replicates}, {p}); "
                         f"got an array of shape {w0.shape}")
    return w0


def _record_steps(record, steps):
    if record is None:
        num = int(np.ceil(_PER_DECADE * np.log10(steps))) + 1 if steps > 1 else 1
        grid = np.round(np.logspace(0, np.log10(steps), num)).astype(np.int64)
        return np.unique(np.concatenate([[0], grid, [steps]]))
    values = np.asarray(record)
    if values.ndim != 1 or values.size == 0 or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"`record` must be a non-empty sequence of integer step counts in "
                         f"[0, steps={steps}]; got {record!r}")
    bad = (values < 0) | (values > steps)
    if bad.any():
        raise ValueError(f"`record` must hold step counts in [0, steps={steps}]; "
                         f"got {int(values[bad][0])}")
    return np.unique(values.astype(np.int64))


def _step_sizes(optimizer, record):
    lr = getattr(optimizer, "hyperparams", {}).get("lr")
    if lr is None:
        return np.full(record.size, np.nan)
    schedule = as_schedule(lr, "lr")
    return np.array([np.nan if t == 0 else schedule(int(t)) for t in record])


def _trajectories(spec: _Spec, merged: dict, root) -> Trajectories:
    R, n_rec = spec.replicates, spec.record.size
    records, final, first_bad = merged["records"], merged["final"], merged["first_bad"]
    lr = _step_sizes(spec.optimizer, spec.record)
    columns = {"replicate": np.repeat(np.arange(R), n_rec), "step": np.tile(spec.record, R)}
    columns["loss"] = records[:, :, 0].ravel()
    columns["dist2"] = records[:, :, 1].ravel()
    columns["lr"] = np.tile(lr, R)
    for i, name in enumerate(spec.fields[2:], start=2):
        columns[name] = records[:, :, i].ravel()
    table = pd.DataFrame(columns)
    bad = np.flatnonzero(first_bad >= 0)
    diverged = pd.DataFrame({"replicate": bad, "step": first_bad[bad]})
    if bad.size:
        shown = ", ".join(f"{r} (step {s})" for r, s in zip(bad[:10], first_bad[bad][:10],
                                                              strict=True))
        more = f" and {bad.size - 10} more" if bad.size > 10 else ""
        warnings.warn(
            f"{bad.size} of {R} replicates diverged (non-finite parameters, loss or distance) "
            f"and are excluded from the summary: replicate (first step seen) {shown}{more}; "
            "see Trajectories.diverged", DivergenceWarning, stacklevel=3)
    used = np.ones(R, dtype=bool)
    used[bad] = False
    summary = {"step": spec.record, "lr": lr, "n": np.full(n_rec, int(used.sum()))}
    kept = records[used]
    for i, name in enumerate(spec.fields):
        v = kept[:, :, i]
        summary[f"{name}_mean"], summary[f"{name}_se"] = mean_se(v, axis=0)
    if spec.loss_known:
        loss_star = float(_loss_at(spec, spec.w_star))
    else:
        loss_star = float("nan")
    return Trajectories(table=table, summary=pd.DataFrame(summary), diverged=diverged,
                        w_star=spec.w_star, loss_star=loss_star, final_params=final, seed=root,
                        info=spec.info, params=merged["params"], params_replicates=spec.param_rows)


def _loss_at(spec, w):
    if spec.X is not None:
        return spec.problem.mean_loss(w, spec.X, spec.y)
    return spec.population.loss_moments(w)[0]
