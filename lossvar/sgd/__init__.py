"""Ensembles of SGD runs: R independent replicates advanced together.

:func:`run_sgd` runs ``replicates`` independent copies of an optimizer on one
problem and one data source, stacked along a leading replicate axis, and
records at chosen steps the full-data loss, the squared distance to the
minimizer and the step size (and, on request, the same for the Polyak-Ruppert
average). The result, :class:`SGDResult`, holds a tidy per-replicate table
and a per-step table of means with standard errors (``by_step``), which the exact recursions of
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

Arithmetic. A block's parameters are one C-contiguous (R_b, p) array. Each
step is ``problem.mean_grad(w, X_b, y_b, out=g)`` into one array per block,
then the optimizer's in-place form (:func:`lossvar.optim.in_place`: the bits
of its ``update`` and :func:`~lossvar.optim.apply_updates`). A record's loss is
``problem.mean_loss`` on parts of the stack (on threads when large; each
row's value is its own). Only the protocol :class:`lossvar.typing.Problem` is
used, so a problem class from elsewhere gets the same calls as a built-in.

On the problem's device. A problem with the optional method
``device_arrays(w, X, y)`` (:class:`lossvar.torch.TorchProblem`) computes in
arrays of its own (torch tensors on the module's device): each block then
converts its (R_b, p) start and the data once, and keeps there the
parameters, the optimizer's state (the same in-place form, on those arrays),
the batches (gathered there from the indices above: only the integers of
each step travel) and the records' arithmetic; each step calls
``mean_grad(w, X_b, y_b, out=g)`` with those arrays and ``g`` of w's kind,
each record ``mean_loss(w, X, y, out=l)``, and reads back one number (the
divergence check) and, at records, the recorded numbers. The block is the
stack the problem evaluates at once (with torch, one ``vmap`` over its R_b
rows), fixed by ``replicates`` and :data:`BLOCK_SIZE` alone: on a CPU the
bits do not depend on the chunking, workers or executor either. On a GPU
they depend on the device.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .. import _threads
from .._result import TableResultBase
from .._validate import as_choice
from ..engine import Condition, Execution, as_execution, simulate
from ..optim import GradientTransformation
from ..schedules import as_schedule
from ..stats import mean_se
from ..streams import as_seed_sequence, describe
from ..theory import QuadraticMoments, mean_square_pvalues
from ..typing import ArrayLike, DataSource, Problem, RNGLike
from ._block import Block
from ._device import DeviceBlock, array_kind, check_optimizer, start_arrays
from ._inputs import BLOCK_SIZE, Spec, check_inputs

__all__ = ["BLOCK_SIZE", "DivergenceWarning", "SGDResult", "run_sgd"]

class DivergenceWarning(RuntimeWarning):
    """Some replicates went to inf or NaN and were left out of ``by_step``."""


@dataclass(frozen=True, repr=False)
class SGDResult(TableResultBase):
    """The records of an ensemble of SGD runs (:func:`run_sgd`).

    A result (docs/guide/results.md): ``to_frame()`` is a copy of ``table``;
    it holds standard errors, no interval (``confidence`` is None). Given the
    exact moments of SGD on a quadratic (:func:`lossvar.theory.quadratic_moments`),
    :func:`lossvar.agreement` compares its mean distances with them
    (:meth:`comparison`).

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
    by_step : pandas.DataFrame
        One row per recorded step: ``step``, ``lr``, ``n`` (replicates used:
        the diverged ones are excluded at every step, so every row averages
        the same replicates), and ``<metric>_mean``, ``<metric>_se`` (the
        standard error of the mean across replicates, ddof = 1) for each metric.
    diverged : pandas.DataFrame
        ``replicate`` and ``step`` (the first step at which its parameters or
        its recorded loss or distance were seen to be non-finite); empty if
        none diverged.
    w_star : ndarray, shape (p,)
        The minimizer the distances are measured to (NaN for a problem
        without ``minimize``, whose ``dist2`` is then NaN).
    loss_star : float
        The loss at ``w_star`` (NaN where the loss is not recorded or
        ``w_star`` is unknown).
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
    by_step: pd.DataFrame
    diverged: pd.DataFrame
    w_star: np.ndarray
    loss_star: float
    final_params: np.ndarray
    seed: np.random.SeedSequence
    info: dict = field(default_factory=dict)
    params: np.ndarray = field(default_factory=lambda: np.empty((0, 0, 0)))
    params_replicates: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    confidence: ClassVar[None] = None

    @property
    def steps(self) -> np.ndarray:
        """The recorded steps."""
        return self.by_step["step"].to_numpy()

    @property
    def metrics(self) -> tuple:
        """The recorded metric columns of ``table``."""
        return tuple(c for c in self.table.columns if c not in ("replicate", "step", "lr"))

    def values(self, metric: str, *, used_only: bool = True) -> np.ndarray:
        """The ``(replicates, records)`` array of a metric (the diverged rows left out)."""
        metric = as_choice(metric, "metric", self.metrics)
        n_rec = len(self.by_step)
        v = self.table[metric].to_numpy().reshape(-1, n_rec)
        if used_only and len(self.diverged):
            keep = np.ones(v.shape[0], dtype=bool)
            keep[self.diverged["replicate"].to_numpy()] = False
            v = v[keep]
        return v

    def comparison(self, exact: Any = None) -> pd.DataFrame:
        r"""The mean of :math:`\|w - w^*\|^2` at every recorded step against the exact
        moments of SGD on the quadratic.

        Parameters
        ----------
        exact : lossvar.theory.QuadraticMoments
            :func:`lossvar.theory.quadratic_moments` of the run: the same
            schedule, curvatures, noise variance and start, with at least as
            many steps. It is the law of plain SGD on
            ``GaussianNoisePopulation(NoisyQuadratic(...))`` from one start
            (docs/theory.md, section 6); for another run it is no reference.

        Returns
        -------
        pandas.DataFrame
            One row per recorded step k >= 1 (the start is fixed), labelled
            ``"dist2 @ k"`` (and ``"avg_dist2 @ k"`` with ``average=True``):
            ``estimate``, ``se``, ``exact`` (``mse``, ``avg_mse``) and, in one
            dimension, where :math:`w - w^*` is exactly normal, the exact
            p-value of the mean square
            (:func:`lossvar.theory.mean_square_pvalues`); in more dimensions
            ``dof = n - 1``, a Student t reference. The steps of one ensemble
            share its runs: the rows are not independent.
        """
        if not isinstance(exact, QuadraticMoments):
            raise TypeError(f"`exact` must be the lossvar.theory.QuadraticMoments of the run "
                            f"(theory.quadratic_moments); got {type(exact).__name__}")
        dim = int(np.shape(self.final_params)[-1])
        if exact.mean.shape[1] != dim:
            raise ValueError(f"`exact` must describe the run's {dim} parameter(s) (the same "
                             f"curvatures as the problem); got the moments of "
                             f"{exact.mean.shape[1]} parameter(s)")
        s = self.by_step[self.by_step["step"] >= 1]
        steps = s["step"].to_numpy()
        if steps.size and steps.max() >= exact.step.size:
            raise ValueError(f"`exact` must cover the recorded steps (up to {int(steps.max())}); it "
                             f"has steps 0 to {exact.step.size - 1}")
        one_d = exact.mean.shape[1] == 1
        n = s["n"].to_numpy()
        parts = []
        for metric, mse, mean, var in (("dist2", exact.mse, exact.mean, exact.var),
                                       ("avg_dist2", exact.avg_mse, exact.avg_mean, exact.avg_var)):
            if f"{metric}_mean" not in s:
                continue
            m, se = s[f"{metric}_mean"].to_numpy(float), s[f"{metric}_se"].to_numpy(float)
            part = {"label": [f"{metric} @ {k}" for k in steps], "estimate": m, "se": se,
                    "exact": mse[steps]}
            if one_d:
                part["pvalue"] = mean_square_pvalues(m, n, mean[steps, 0], var[steps, 0])
            else:
                part["dof"] = n - 1.0
            parts.append(pd.DataFrame(part))
        frame = pd.concat(parts, ignore_index=True)
        frame.attrs.update(independent=False, confidence=None, row_label="",
                           untested_reason="zero variance")
        return frame

    def summary(self) -> str:
        """The call (optimizer, sampling, batch size, steps, replicates, divergences) and ``by_step``."""
        i = self.info
        head = (f"SGDResult({i.get('optimizer')}, sampling={i.get('sampling')!r}, "
                f"batch_size={i.get('batch_size')}, steps={i.get('steps')}, "
                f"replicates={i.get('replicates')}, diverged={len(self.diverged)})")
        return f"{head}\n{self.by_step.to_string(index=False)}"

    def __repr__(self) -> str:
        return self.summary()


def run_sgd(problem: Problem, source: DataSource, optimizer: GradientTransformation, *,
            steps: int, batch_size: int | str | None = None, replicates: int,
            sampling: str | None = None, w0: ArrayLike | None = None, rng: RNGLike = None,
            record: ArrayLike | None = None, average: bool = False,
            record_params: ArrayLike | str | None = None,
            execution: Execution | None = None) -> SGDResult:
    """Run ``replicates`` independent SGD runs together and record their trajectories.

    Replicate r starts at ``w0`` (or ``w0[r]``) and makes ``steps`` updates

    .. math::

        g_t = \\frac1B \\sum_{i \\in \\mathcal B_t} \\nabla \\ell_i(w_{t-1}), \\qquad
        (u_t, s_t) = \\text{optimizer.update}(g_t, s_{t-1}, w_{t-1}), \\qquad
        w_t = w_{t-1} + u_t,

    with its own batches :math:`\\mathcal B_t`: the lecture's SGD and
    mini-batch algorithms (a new random permutation each epoch, cut into
    batches), batches drawn with replacement, the full batch (gradient
    descent), or fresh examples from a population. All replicates of a block
    advance in one vectorized call (w has shape ``(R_b, p)``), bit-identical
    to running them one at a time on the same batches: ``problem.mean_grad``
    writes into one array per block and the optimizer runs in its in-place
    form (:func:`lossvar.optim.in_place`), with the bits of its ``update``.

    Parameters
    ----------
    problem : Problem
        Any object meeting :class:`lossvar.typing.Problem` (the built-ins, an
        :class:`~lossvar.MLP`, :class:`lossvar.torch.TorchProblem`, a class of
        your own): only its protocol is used; one with ``device_arrays``
        (a :class:`~lossvar.torch.TorchProblem`) trains on its device (see
        the module's docstring). Its ``optimizer`` then runs on its arrays
        (lossvar.optim's do), and ``w0`` and the source's data may be its
        arrays (on its device, in its dtype).
    source : Dataset or population
        A :class:`~lossvar.Dataset` (fixed data of N examples) or a population
        (anything with ``sample(n, rng)``, ``w_star`` and ``n_features``). For
        ``GaussianNoisePopulation(NoisyQuadratic(...))`` with batch size B, the gradient is
        :math:`H(w - w^*)` plus the mean of B fresh N(0, sigma^2 I) vectors:
        docs/theory.md's additive-noise model with sigma^2 / B.
    optimizer : lossvar.optim.GradientTransformation
        E.g. ``lossvar.optim.sgd(lossvar.schedules.polynomial(1.0, 0.75))``, or a chain.
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
        every recorded step, in ``SGDResult.params``. None (default) keeps
        none. Memory is k x records x p numbers.
    execution : Execution, optional
        How to run; see :class:`lossvar.Execution`.

    Returns
    -------
    SGDResult

    Notes
    -----
    - ``loss``: for a Dataset, ``problem.mean_loss`` over all N examples (the
      ridge penalty included), on parts of the replicates at once (on this
      process's cores when the blocks run here; the bits do not depend on the
      parts). For a population, the expected risk ``source.loss_moments(w)[0]``
      when ``problem`` is the population's own problem, else NaN.
    - ``w*``: for a Dataset, ``problem.minimize(X, y)`` (kept for the next
      calls on the same problem and data, by ``Dataset.fingerprint``; NaN, and
      ``dist2`` NaN, for a problem without ``minimize``); for a population,
      ``source.w_star``.
    - Divergence: after every update the parameters are checked; a replicate
      whose parameters are non-finite, or whose recorded loss or distance
      overflows, is marked at that step, its parameters are set to NaN (NaN
      is absorbing in every optimizer), it is listed in ``diverged``, excluded
      from ``by_step``, and a :class:`DivergenceWarning` names it.
    - On a problem's device (``device_arrays``), an optimizer is first
      probed with one step on a copy of the first start: one that cannot run
      on the problem's arrays (a transformation written with numpy, a
      schedule whose value those arrays cannot take) is refused before any
      work, naming ``optimizer``; so are ``w0`` and a source's data held
      elsewhere or in another dtype. ``info["arrays"]`` says where the
      ensemble ran (e.g. ``"torch.Tensor of dtype torch.float64 on cpu"``).

    Examples
    --------
    >>> import lossvar
    >>> from lossvar import optim, schedules
    >>> q = lossvar.NoisyQuadratic(1.0, noise_std=1.0)
    >>> tr = run_sgd(q, lossvar.GaussianNoisePopulation(q), optim.sgd(schedules.polynomial(1.0, 1.0)),
    ...              steps=100, batch_size=1, replicates=512, w0=[3.0], rng=0)
    >>> list(tr.by_step.columns)
    ['step', 'lr', 'n', 'loss_mean', 'loss_se', 'dist2_mean', 'dist2_se']
    """
    how = as_execution(execution)
    spec = check_inputs(problem, source, optimizer, steps, batch_size, replicates, sampling,
                         w0, record, average, record_params)
    if spec.device:
        probe = start_arrays(spec)
        check_optimizer(spec.optimizer, probe)
        spec.info["arrays"] = array_kind(probe)
    root = as_seed_sequence(rng)
    # The records' losses may use this process's cores when the blocks run here,
    # one after another; elsewhere the engine's workers already use them.
    threads = _threads.cores() if how.in_process else 1
    kind = DeviceBlock if spec.device else Block
    conditions = []
    for j, start in enumerate(range(0, spec.replicates, BLOCK_SIZE)):
        size = min(BLOCK_SIZE, spec.replicates - start)
        start_rows = spec.w0[start:start + size] if spec.w0.ndim == 2 else spec.w0
        conditions.append(Condition(key=(0, j), replicates=size, block_size=BLOCK_SIZE,
                                    simulate=kind(spec, start, start_rows, threads),
                                    label=f"block {j}", reduce="stack"))
    fingerprint = None
    if how.checkpoint is not None:
        data = (source.fingerprint() if hasattr(source, "fingerprint") else repr(source))
        fingerprint = dict(
            call="run_sgd", problem=repr(problem), data=data, optimizer=spec.info["optimizer"],
            hyperparams=repr(sorted(spec.info["hyperparams"].items())), steps=spec.steps,
            batch_size=spec.batch_size, replicates=spec.replicates, sampling=spec.sampling,
            w0=hashlib.sha256(spec.w0.tobytes()).hexdigest(), record=spec.record.tolist(),
            average=spec.average, record_params=spec.param_rows.tolist(),
            seed=describe(root))
    outputs = simulate(conditions, root, execution=how, fingerprint=fingerprint)
    blocks = [o.values for o in outputs if isinstance(o.values, dict)]  # named records
    merged = {k: np.concatenate([v[k] for v in blocks]) for k in blocks[0]}
    return _trajectories(spec, merged, root)


def _step_sizes(optimizer, record):
    lr = getattr(optimizer, "hyperparams", {}).get("lr")
    if lr is None:
        return np.full(record.size, np.nan)
    schedule = as_schedule(lr, "lr")
    return np.array([np.nan if t == 0 else schedule(int(t)) for t in record])


def _trajectories(spec: Spec, merged: dict, root) -> SGDResult:
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
            f"and are excluded from by_step: replicate (first step seen) {shown}{more}; "
            "see SGDResult.diverged", DivergenceWarning, stacklevel=3)
    used = np.ones(R, dtype=bool)
    used[bad] = False
    by_step = {"step": spec.record, "lr": lr, "n": np.full(n_rec, int(used.sum()))}
    kept = records[used]
    for i, name in enumerate(spec.fields):
        v = kept[:, :, i]
        by_step[f"{name}_mean"], by_step[f"{name}_se"] = mean_se(v, axis=0)
    known = spec.loss_known and spec.dist_known
    loss_star = float(_loss_at(spec, spec.w_star)) if known else float("nan")
    return SGDResult(table=table, by_step=pd.DataFrame(by_step), diverged=diverged,
                        w_star=spec.w_star, loss_star=loss_star, final_params=final, seed=root,
                        info=spec.info, params=merged["params"], params_replicates=spec.param_rows)


def _loss_at(spec, w):
    if spec.X is not None:
        return spec.problem.mean_loss(w, spec.X, spec.y)
    return spec.population.loss_moments(w)[0]
