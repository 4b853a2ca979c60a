"""One SGD step: Monte Carlo gains ``L(w) - L(w - eps g_B)`` per batch size and step size,
and the best step fitted to them (McCandlish et al. 2018, section 2.1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import engine, streams
from .._result import ConfidenceInterval, ResultBase
from .._validate import as_choice, as_float, as_int
from ..engine import Condition, Execution
from ..sampling import with_replacement, without_replacement
from ..stats import fieller_interval, mean_se

__all__ = ["GATHER_ELEMENTS", "ONE_STEP_BLOCK", "BestStepResult", "best_step_fit", "one_step_gains"]

#: Replicates per block of :func:`one_step_gains` (part of the random numbers' definition).
ONE_STEP_BLOCK = 256
#: Gradient entries gathered at once by the one-step simulator (32 MB of float64).
GATHER_ELEMENTS = 2**22


class _OneStepGains:
    """Picklable simulator: ``L(w) - L(w - eps g_B)`` for every eps of a grid, per random batch."""

    def __init__(self, problem, X, y, w, grads, loss, batch_size, eps, how):
        self.problem, self.X, self.y = problem, X, y
        self.w, self.grads, self.loss = w, grads, loss
        self.batch_size, self.eps, self.how = batch_size, eps, how

    def __call__(self, rng, size):
        idx = self.how(rng, self.grads.shape[0], self.batch_size, size)
        # (size, p): the batches' means, gathering at most GATHER_ELEMENTS gradient entries at once
        step = max(1, GATHER_ELEMENTS // (self.batch_size * self.grads.shape[1]))
        g = np.concatenate([self.grads[idx[s:s + step]].mean(axis=1) for s in range(0, size, step)])
        out = np.empty((size, self.eps.size))
        for k, eps in enumerate(self.eps):  # a loop over the grid, not over replicates
            out[:, k] = self.loss - self.problem.mean_loss(self.w - eps * g, self.X, self.y)
        return out


def one_step_gains(problem, data, w, batch_sizes, learning_rates, *, replicates: int,
                   sampling: str = "without_replacement", rng=None,
                   execution: Execution | None = None) -> dict[int, np.ndarray]:
    r"""Monte Carlo gains of one SGD step: ``L(w) - L(w - eps g_B)`` per random batch.

    For each batch size B, ``replicates`` batches are drawn; each batch's mean
    gradient :math:`g_B` takes one step of every size ``eps`` of
    ``learning_rates`` from ``w``, and the full-data loss L is evaluated there.
    The same batches serve every step size (common random numbers), so the
    curves of one B are smooth in eps. Under a quadratic loss the expected gain
    is exactly :math:`\epsilon \|G\|^2 - \frac{\epsilon^2}{2}(G^\top H G +
    c_B \operatorname{tr}(H\Sigma))` (:func:`lossvar.theory.one_step_expected_loss`).

    Parameters
    ----------
    problem : Problem
        Needs ``grad`` (per-example gradients at ``w``) and ``mean_loss``.
    data : Dataset
        The N examples (arrays ``X`` and ``y``).
    w : array_like, shape (p,)
    batch_sizes : sequence of int
    learning_rates : array_like, shape (k,)
    replicates : int
        Batches per batch size.
    sampling : {"without_replacement", "with_replacement"}
        How a batch is drawn: B distinct examples (the package's default, what a
        shuffling data loader does) or B independent draws (:math:`c_B = 1/B`, as
        in the paper).
    rng : int, SeedSequence, Generator or None
        The root of the batches' streams: each B has its own (key ``(B,)``), so
        the gains of one B do not depend on the others.
    execution : Execution, optional
        How to run; see :class:`lossvar.Execution`.

    Returns
    -------
    dict
        ``{B: gains}`` with ``gains`` of shape ``(replicates, k)``.
    """
    how = {"with_replacement": with_replacement, "without_replacement": without_replacement}[
        as_choice(sampling, "sampling", ("without_replacement", "with_replacement"))]
    X, y = np.asarray(data.X, dtype=np.float64), np.asarray(data.y, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    eps = np.asarray(learning_rates, dtype=np.float64)
    replicates = as_int(replicates, "replicates", low=1)
    sizes = [as_int(b, "batch_sizes", low=1, high=X.shape[0]) for b in batch_sizes]
    grads = problem.grad(w, X, y)
    loss = float(problem.mean_loss(w, X, y))
    conditions = [Condition((b,), replicates, ONE_STEP_BLOCK,
                            _OneStepGains(problem, X, y, w, grads, loss, b, eps, how),
                            label=f"one step, B={b}", reduce="stack") for b in sizes]
    outputs = engine.simulate(conditions, streams.as_seed_sequence(rng), execution=execution)
    return {b: np.asarray(out.values) for b, out in zip(sizes, outputs, strict=True)}


@dataclass(frozen=True)
class BestStepResult(ResultBase):
    """The best single step fitted to Monte Carlo gains (:func:`best_step_fit`).

    A result (docs/guide/results.md): ``to_frame()`` is one row of its fields.

    Attributes
    ----------
    learning_rate : float
        ``mean a / (2 mean c)``, the maximum of the fitted ``a eps - c eps^2``
        (the raw ratio even where it is not ``estimable``).
    se : float
        Its delta-method standard error.
    learning_rate_ci : ConfidenceInterval
        Fieller's ``confidence`` interval for the ratio; NaN ends where it is unbounded.
    estimable : bool
        The fitted parabola has a maximum at a positive step (mean a > 0, mean
        c > 0) and Fieller's interval is a bounded interval of positive steps.
    confidence : float
    """

    learning_rate: float
    se: float
    learning_rate_ci: ConfidenceInterval
    estimable: bool
    confidence: float

    def summary(self) -> str:
        """The best step with its standard error and Fieller interval, or why it is no estimate."""
        lo, hi = self.learning_rate_ci
        text = (f"best step {self.learning_rate:.4g} +- {self.se:.2g} ({100 * self.confidence:g}% "
                f"Fieller interval [{lo:.4g}, {hi:.4g}])")
        if not self.estimable:
            text += ("; not estimable: the fitted parabola has no maximum at a positive step, or "
                     "the interval is unbounded or reaches 0")
        return text


def best_step_fit(gains, learning_rates, *, confidence: float = 0.95) -> BestStepResult:
    """The best step from Monte Carlo one-step gains: each replicate's curve projected on
    ``a eps - c eps^2``, the maximum ``a / 2c`` of the mean curve, with its interval.

    The projection is linear, so its mean is the projection of the mean curve;
    the replicates' ``(a_r, c_r)`` are i.i.d., so ``eps_opt = mean a / (2 mean c)``
    has the delta-method standard error of a ratio and Fieller's interval
    (:func:`lossvar.stats.fieller_interval`). Exact for a quadratic loss (each
    curve is then exactly ``a eps - c eps^2``, McCandlish et al. 2018, eq. 2.3);
    over the grid's range otherwise.

    Where the fitted parabola has no maximum at a positive step, or the
    interval is unbounded or reaches 0 (a curve that does not bend down over
    the grid, or one too noisy to locate its maximum), ``estimable`` is False:
    the ratio is then no estimate of a best step.

    Parameters
    ----------
    gains : array_like, shape (R, k)
        Per replicate (e.g. a batch), the gain at each step size (:func:`one_step_gains`).
    learning_rates : array_like, shape (k,)
        The step sizes, at least 2.
    confidence : float
    """
    eps = np.asarray(learning_rates, dtype=np.float64)
    gains = np.asarray(gains, dtype=np.float64)
    if eps.ndim != 1 or eps.size < 2 or gains.ndim != 2 or gains.shape[1] != eps.size:
        raise ValueError(f"`gains` must have shape (R, k) with k = len(learning_rates) >= 2; got "
                         f"{gains.shape} and {eps.shape}")
    if gains.shape[0] < 2:
        raise ValueError(f"`gains` must hold at least 2 replicates for a standard error; got "
                         f"{gains.shape[0]}")
    confidence = as_float(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
    design = np.column_stack([eps, -eps**2])
    coef = np.linalg.lstsq(design, gains.T, rcond=None)[0]  # (2, R)
    a, c = coef
    ratio = a.mean() / (2 * c.mean())
    lin = (a - 2 * ratio * c) / (2 * c.mean())
    se = float(mean_se(lin)[1])
    cov = np.cov(np.vstack([a, 2 * c])) / a.size  # of the means A = mean a, D = 2 mean c
    A, D = a.mean(), 2 * c.mean()
    ci = fieller_interval(A, D, cov[0, 0], cov[1, 1], cov[0, 1], confidence)
    estimable = bool(A > 0 and D > 0 and np.isfinite(ci.low) and ci.low > 0)
    return BestStepResult(learning_rate=float(ratio), se=se, learning_rate_ci=ci, estimable=estimable,
                          confidence=confidence)


