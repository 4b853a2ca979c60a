"""The critical batch size: one-step gains, steps to a target, and the fit of steps
against examples (McCandlish, Kaplan, Amodei et al. 2018, arXiv:1812.06162).

The pieces of the paper's measurement, each usable on its own:

- :func:`one_step_gains`: Monte Carlo of the gain ``L(w) - L(w - eps g_B)`` of one
  SGD step, per batch size and step size (the paper's section 2.1; the exact
  expected gain of a quadratic is :func:`lossvar.theory.one_step_expected_loss`);
- :func:`best_step_fit`: the best step fitted to such gains, with Fieller's
  interval, and whether it can be estimated at all;
- :func:`steps_to_target`: per SGD run, the (interpolated) step at which its loss
  first reaches a target;
- :func:`tune_learning_rate`: the best constant learning rate on a geometric grid,
  walked until a worse or failing rate lies on each side of the best;
- :func:`critical_batch_fit`: the hyperbola ``S/S_min - 1 = (E/E_min - 1)^-1`` of
  steps ``S`` against examples ``E = B S`` (eq. 2.11), i.e. ``S(B) = S_min +
  E_min/B``, fitted to measured steps, with ``B_crit = E_min/S_min`` and
  bootstrap intervals over the runs;
- :func:`gradient_descent_path`: full-batch gradient descent to given fractions of
  the initial excess loss (where to measure the noise scales along training).

docs/theory.md, section 10, has the formulas; the ``critical_batch`` study
composes these functions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as _st

from . import engine, streams
from ._validate import as_choice, as_float, as_int
from .engine import Condition, Execution
from .sampling import with_replacement, without_replacement
from .stats import bootstrap, fieller_interval, line_fit, mean_se

__all__ = ["BestStep", "CriticalBatchFit", "LearningRateSearch", "PathPoint", "StepsAtBestRate",
           "best_step_fit", "critical_batch_fit", "gradient_descent_path", "one_step_gains",
           "steps_at_best_rate", "steps_to_target", "tune_learning_rate"]

#: Replicates per block of :func:`one_step_gains` (part of the random numbers' definition).
ONE_STEP_BLOCK = 256
#: Gradient entries gathered at once by the one-step simulator (32 MB of float64).
GATHER_ELEMENTS = 2**22
#: Most learning rates :func:`tune_learning_rate` tries above, and below, its start.
MAX_RATES = 40


# -- one step ---------------------------------------------------------------------------


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
    outputs = engine.run(conditions, streams.as_seed_sequence(rng), execution=execution)
    return {b: np.asarray(out.values) for b, out in zip(sizes, outputs, strict=True)}


@dataclass(frozen=True)
class BestStep:
    """The best single step fitted to Monte Carlo gains (:func:`best_step_fit`).

    Attributes
    ----------
    learning_rate : float
        ``mean a / (2 mean c)``, the maximum of the fitted ``a eps - c eps^2``
        (the raw ratio even where it is not ``estimable``).
    se : float
        Its delta-method standard error.
    ci_low, ci_high : float
        Fieller's ``confidence`` interval for the ratio; NaN where it is unbounded.
    estimable : bool
        The fitted parabola has a maximum at a positive step (mean a > 0, mean
        c > 0) and Fieller's interval is a bounded interval of positive steps.
    confidence : float
    """

    learning_rate: float
    se: float
    ci_low: float
    ci_high: float
    estimable: bool
    confidence: float


def best_step_fit(gains, learning_rates, *, confidence: float = 0.95) -> BestStep:
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
    lo, hi = fieller_interval(A, D, cov[0, 0], cov[1, 1], cov[0, 1], confidence)
    estimable = bool(A > 0 and D > 0 and np.isfinite(lo) and lo > 0)
    return BestStep(learning_rate=float(ratio), se=se, ci_low=float(lo), ci_high=float(hi),
                    estimable=estimable, confidence=confidence)


# -- steps to a target, and the learning rate per batch size ---------------------------------


def steps_to_target(trajectories, target: float, *, loss_star: float) -> np.ndarray:
    """Per run, the step at which the recorded loss first reaches ``target``; NaN if never.

    Between the last record above the target and the first at or below it,
    ``log(L - loss_star)`` is interpolated linearly in the step (the excess
    loss falls about geometrically between records); a run at or below the
    target from its first record reaches it at step 0.

    Parameters
    ----------
    trajectories : Trajectories
        From :func:`lossvar.run_sgd`, with the ``loss`` recorded (every run,
        diverged ones too: they never reach the target).
    target : float
        The loss to reach, above ``loss_star``.
    loss_star : float
        The minimum of the loss (the reference of the interpolation).

    Returns
    -------
    ndarray, shape (replicates,)
    """
    if not target > loss_star:
        raise ValueError(f"`target` must exceed `loss_star` = {loss_star!r}; got {target!r}")
    loss = trajectories.values("loss", used_only=False)
    steps = trajectories.steps.astype(float)
    with np.errstate(invalid="ignore"):
        below = loss <= target
    out = np.full(loss.shape[0], np.nan)
    tiny = 1e-300
    for r in np.flatnonzero(below.any(axis=1)):
        k = int(below[r].argmax())
        if k == 0:
            out[r] = 0.0
            continue
        e0 = np.log(max(loss[r, k - 1] - loss_star, tiny))
        e1 = np.log(max(loss[r, k] - loss_star, tiny))
        et = np.log(target - loss_star)
        frac = 1.0 if e0 == e1 else (e0 - et) / (e0 - e1)
        out[r] = steps[k - 1] + (steps[k] - steps[k - 1]) * frac
    return out


@dataclass(frozen=True)
class LearningRateSearch:
    """The result of :func:`tune_learning_rate`.

    Attributes
    ----------
    index : int or None
        ``k`` of the best rate ``base * factor^-k``; None when every rate tried failed.
    learning_rate, mean_steps : float or None
        The best rate and its mean steps to the target.
    steps : ndarray or None
        The best rate's steps per run.
    tried : dict
        ``{k: (rate, mean steps or inf, steps per run)}`` for every rate tried.
    rows : list of dict
        One row per rate tried, in order: ``k``, ``lr``, ``replicates``,
        ``reached``, ``diverged``, ``step_cap``, ``steps_mean`` (NaN if any run failed).
    cap : int
        The step cap the search ended with (3 times the best rate's slowest run,
        plus 10): a start for the next, larger batch.
    """

    index: int | None
    learning_rate: float | None
    mean_steps: float | None
    steps: np.ndarray | None
    tried: dict = field(repr=False)
    rows: list = field(repr=False)
    cap: int = 0

    @property
    def interior(self) -> bool:
        """A worse (or failed) rate was tried on each side of the best."""
        if self.index is None:
            return False
        above, below = self.tried.get(self.index - 1), self.tried.get(self.index + 1)
        return bool(above is not None and below is not None and above[1] > self.mean_steps
                    and below[1] > self.mean_steps)


def tune_learning_rate(measure: Callable, *, base: float, factor: float, start: int, cap: int,
                       rng, max_rates: int = MAX_RATES) -> LearningRateSearch:
    """The constant learning rate of the grid ``base * factor^-k`` that reaches a target
    in the fewest steps, walked from ``k = start`` until it is bracketed.

    The first rate is allowed ``cap`` steps. The grid is walked upward
    (``k - 1, k - 2, ...``, larger rates) until a rate fails (a run diverges or
    misses the target within the step cap) or is worse than the best twice in
    a row, then downward from ``start + 1`` until a finite rate is worse than
    the best twice in a row. A failed rate counts as worse than every finite
    one, so the best rate is interior (a worse or failed rate on each side:
    :attr:`LearningRateSearch.interior`) unless a walk ran out of its
    ``max_rates``. Each improvement sets the cap to 3 times the best rate's
    slowest run, plus 10.

    Parameters
    ----------
    measure : callable
        ``measure(lr, cap, seed) -> (steps, diverged)``: the steps to the
        target of each run at rate ``lr`` (NaN where a run did not reach it
        within ``cap`` steps, e.g. :func:`steps_to_target`), and how many
        diverged; ``seed`` is the rate's own SeedSequence.
    base, factor : float
        The grid: ``base * factor^-k``, ``factor > 1``.
    start : int
        The first ``k`` tried.
    cap : int
        Steps allowed to the first rate.
    rng : int, SeedSequence, Generator or None
        The root of the rates' seeds: each ``k`` has its own, so a rate's runs
        do not depend on the order of the walk.
    max_rates : int
        Most rates tried in each direction.
    """
    base = as_float(base, "base", low=0.0, low_open=True)
    factor = as_float(factor, "factor", low=1.0, low_open=True)
    start, cap = as_int(start, "start"), as_int(cap, "cap", low=1)
    max_rates = as_int(max_rates, "max_rates", low=1)
    rows: list = []
    tried: dict = {}
    up, down = streams.children(rng, 2)
    seeds = {**{-k - 1: s for k, s in enumerate(streams.children(up, max_rates))},
             **dict(enumerate(streams.children(down, max_rates)))}

    def best():
        finite = {k: v for k, v in tried.items() if np.isfinite(v[1])}
        return min(finite.items(), key=lambda kv: kv[1][1]) if finite else (None, (None, np.inf, None))

    def evaluate(k):
        nonlocal cap
        lr = base * factor ** -k
        s, diverged = measure(lr, cap, seeds[k])
        s = np.asarray(s, dtype=np.float64)
        ok = bool(np.isfinite(s).all())
        mean = float(s.mean()) if ok else np.inf
        rows.append(dict(k=k, lr=lr, replicates=s.size, reached=int(np.isfinite(s).sum()),
                         diverged=diverged, step_cap=cap, steps_mean=mean if ok else np.nan))
        improved = ok and mean < best()[1][1]
        tried[k] = (lr, mean, s)
        if improved:
            cap = int(np.ceil(3 * np.max(s))) + 10
        return ok, improved

    for direction in (-1, 1):
        k, worse = start, 0
        if direction == 1:  # the rates between the best and the start are already worse than the best
            k_best = best()[0]
            k, worse = start + 1, (0 if k_best is None else min(2, start - k_best))
        while worse < 2 and -max_rates <= k < max_rates:
            ok, improved = evaluate(k)
            if direction == -1 and not ok:
                break
            if improved:
                worse = 0
            elif best()[0] is not None:
                worse += 1
            k += direction
    k_best, (lr, mean, s) = best()
    return LearningRateSearch(index=k_best, learning_rate=lr, mean_steps=None if k_best is None else mean,
                              steps=s, tried=tried, rows=rows, cap=cap)


@dataclass(frozen=True)
class StepsAtBestRate:
    """Steps to a target at a batch size's best learning rate (:func:`steps_at_best_rate`).

    Attributes
    ----------
    batch_size : int
    search : LearningRateSearch
        The tuning (the last one, if the first found no rate).
    tuning : list of dict
        The rows of every rate tried, in order (:attr:`LearningRateSearch.rows`).
    steps : ndarray or None
        Steps of each fresh run at the best rate (NaN: did not reach the target);
        None when no rate reached it in tuning.
    diverged : int
        Fresh runs that diverged.
    factor : float
        The grid's ratio of neighbouring rates.
    """

    batch_size: int
    search: LearningRateSearch
    tuning: list = field(repr=False)
    steps: np.ndarray | None
    diverged: int
    factor: float

    @property
    def reached(self) -> np.ndarray:
        """The steps of the fresh runs that reached the target."""
        return np.empty(0) if self.steps is None else self.steps[np.isfinite(self.steps)]

    def to_dict(self) -> dict:
        """One row for a table: the rate, how it was found, and the mean steps and examples
        ``B S`` with their standard errors (those only when 2 or more runs reached the target)."""
        k = self.search.index
        if self.steps is None or k is None:
            return dict(lr=np.nan, replicates=0, reached=0)
        head = dict(lr=self.search.learning_rate)
        n = self.reached.size
        if n < 2:
            return dict(**head, replicates=self.steps.size, reached=n, diverged=self.diverged)
        b = self.batch_size
        m, se = mean_se(self.reached)
        return dict(**head, lr_k=k, lr_over_base=self.factor ** -k,
                    lr_at_grid_top=k - 1 not in self.search.tried, lr_interior=self.search.interior,
                    rates_tried=len(self.search.tried), replicates=self.steps.size, reached=n,
                    diverged=self.diverged, steps=m, steps_se=se, examples=b * m, examples_se=b * se)


def steps_at_best_rate(run: Callable, batch_size: int, *, base: float, factor: float, start: int,
                       cap: int, first_cap: int, rng, replicates: int,
                       tune_replicates: int) -> StepsAtBestRate:
    """Steps to a target at one batch size, at its best constant learning rate: the protocol
    of McCandlish et al. (2018), section 2.2, for one point of the hyperbola.

    The rate is tuned on the grid ``base * factor^-k`` (:func:`tune_learning_rate`,
    ``tune_replicates`` runs a rate, the first allowed ``cap`` steps; if no rate
    reaches the target and ``cap < first_cap``, tuned again from ``first_cap``), then
    measured on ``replicates`` fresh runs allowed 4 times the tuning's slowest run at
    that rate, plus 20 steps. The fresh runs' steps estimate S(B) without the
    selection bias of the best of the tuning means.

    Parameters
    ----------
    run : callable
        ``run(lr, replicates, max_steps, seed) -> (steps, diverged)``: SGD runs at rate
        ``lr`` and ``batch_size``, their steps to the target (NaN where not reached
        within ``max_steps``, e.g. :func:`steps_to_target`) and how many diverged.
    batch_size : int
    base, factor, start, cap : as in :func:`tune_learning_rate`
    first_cap : int
        Steps allowed to a second tuning, when the first (from ``cap``) found no rate.
    rng : int, SeedSequence, Generator or None
        The root: tuning and fresh runs get independent children.
    replicates, tune_replicates : int
    """
    tune_seed, run_seed = streams.children(rng, 2)

    def measure(lr, steps, seed):
        return run(lr, tune_replicates, steps, seed)

    search = tune_learning_rate(measure, base=base, factor=factor, start=start, cap=cap, rng=tune_seed)
    tuning = list(search.rows)
    if search.index is None and cap < first_cap:  # the cap was too tight for this batch size
        search = tune_learning_rate(measure, base=base, factor=factor, start=start, cap=first_cap,
                                    rng=tune_seed)
        tuning += search.rows
    batch_size = as_int(batch_size, "batch_size", low=1)
    if search.index is None or search.steps is None:
        return StepsAtBestRate(batch_size, search, tuning, None, 0, factor)
    steps, diverged = run(search.learning_rate, replicates, int(np.ceil(4 * np.max(search.steps))) + 20,
                          run_seed)
    return StepsAtBestRate(batch_size, search, tuning, np.asarray(steps, dtype=np.float64), int(diverged),
                           factor)


# -- the hyperbola of steps against examples ---------------------------------------------


@dataclass(frozen=True)
class CriticalBatchFit:
    """The fit of ``S(B) = S_min + E_min / B`` (:func:`critical_batch_fit`).

    Attributes
    ----------
    s_min, e_min : float
        The fewest steps (infinite batch) and the fewest examples (batch 1).
    b_crit : float
        ``E_min / S_min``, the critical batch size.
    s_min_ci, e_min_ci, b_crit_ci : tuple of float
        Percentile bootstrap intervals at ``confidence`` (NaN ends where a
        resample's fit is undefined).
    chi2, dof, chi2_pvalue : float, int, float
        Lack of fit ``sum w r^2`` on ``k - 2`` degrees of freedom and its p-value.
    batch_sizes : tuple of int
    confidence : float
    n_resamples : int
    """

    s_min: float
    e_min: float
    b_crit: float
    s_min_ci: tuple
    e_min_ci: tuple
    b_crit_ci: tuple
    chi2: float
    dof: int
    chi2_pvalue: float
    batch_sizes: tuple
    confidence: float
    n_resamples: int

    def to_dict(self) -> dict:
        """One row for a table: the estimates, the lack of fit, how the intervals were made,
        and their ends (``s_min_ci_low``, ...)."""
        out = dict(s_min=self.s_min, e_min=self.e_min, b_crit=self.b_crit, chi2=self.chi2,
                   dof=self.dof, chi2_pvalue=self.chi2_pvalue, bootstrap=self.n_resamples,
                   interval="bootstrap percentile over runs")
        for name in ("s_min", "e_min", "b_crit"):
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = getattr(self, f"{name}_ci")
        return out

    def __str__(self) -> str:
        c = f"{100 * self.confidence:g}%"
        return (f"S(B) = S_min + E_min/B: S_min = {self.s_min:.4g} {_ends(self.s_min_ci)}, "
                f"E_min = {self.e_min:.4g} {_ends(self.e_min_ci)}, B_crit = E_min/S_min = "
                f"{self.b_crit:.4g} {_ends(self.b_crit_ci)} ({c} bootstrap intervals over runs); "
                f"lack of fit chi2 = {self.chi2:.3g} on {self.dof} dof, p = {self.chi2_pvalue:.3g}")


def _ends(ci) -> str:
    return f"[{ci[0]:.4g}, {ci[1]:.4g}]"


def critical_batch_fit(steps: Mapping, *, confidence: float = 0.95, n_resamples: int = 2000,
                       rng=None) -> CriticalBatchFit:
    r"""Fit the critical batch size to measured steps: ``S/S_min - 1 = (E/E_min - 1)^-1``.

    McCandlish et al. (2018), eq. 2.11: the steps S and examples E = B S needed
    to reach a target trade off along a hyperbola, equivalently
    :math:`S(B) = S_{\min} + E_{\min}/B`, a line in 1/B with intercept
    :math:`S_{\min}` and slope :math:`E_{\min}`;
    :math:`B_{\rm crit} = E_{\min}/S_{\min}`. The line is fitted by weighted
    least squares (:func:`lossvar.stats.line_fit`) to each batch size's mean
    steps, weighted by the inverse square of its standard error.

    The intervals are percentile bootstrap intervals (:func:`lossvar.stats.bootstrap`)
    over the runs, resampled within each batch size (the sizes' runs are
    independent); the weights stay those of the measured means, so each
    resample's fit is a linear map of its means. The runs' learning rates are
    taken as given: if they were tuned on other runs, the tuning's uncertainty
    is not in the intervals.

    Parameters
    ----------
    steps : mapping
        ``{B: steps of each run}``: at least 3 batch sizes, each with at least 2
        finite, positive step counts (e.g. :func:`steps_to_target` of runs at the
        best learning rate of each B).
    confidence : float
    n_resamples : int
        Bootstrap resamples, at least ``2 / (1 - confidence)`` (one in each tail).
    rng : int, SeedSequence, Generator or None

    Returns
    -------
    CriticalBatchFit
    """
    confidence = as_float(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
    fewest = math.ceil(2 / (1 - confidence) - 1e-9)
    n_resamples = as_int(n_resamples, "n_resamples", low=fewest)
    order = sorted(steps)
    runs = [np.asarray(steps[b], dtype=np.float64) for b in order]
    if len(order) < 3:
        raise ValueError(f"`steps` must hold at least 3 batch sizes for the hyperbola's 2 parameters "
                         f"and a degree of freedom; got {len(order)} ({', '.join(map(str, order))})")
    for b, v in zip(order, runs, strict=True):
        if v.ndim != 1 or v.size < 2 or not (np.all(np.isfinite(v)) and np.all(v >= 0)):
            raise ValueError(f"`steps` must give each batch size at least 2 finite step counts >= 0; "
                             f"got {v.tolist()} at B = {b}")
    sizes = np.array(order, dtype=float)
    means, se = (np.array(v) for v in zip(*(mean_se(v) for v in runs), strict=True))
    w = 1.0 / np.maximum(se, 1e-12) ** 2
    fit = line_fit(1.0 / sizes, means, w)  # intercept S_min, slope E_min
    s_min, e_min, chi2 = float(fit.intercept), float(fit.slope), float(fit.chi2)

    def parameters(*resampled, axis=-1):
        line = line_fit(1.0 / sizes, np.stack([r.mean(axis=axis) for r in resampled], axis=-1), w)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.stack([line.intercept, line.slope, line.slope / line.intercept])

    gen = streams.stream(streams.as_seed_sequence(rng))
    boot = bootstrap(runs, parameters, confidence=confidence, n_resamples=n_resamples, rng=gen,
                     batch=n_resamples)
    lo, hi = (np.asarray(e, dtype=float) for e in boot.confidence_interval)
    dof = sizes.size - 2
    return CriticalBatchFit(
        s_min=s_min, e_min=e_min, b_crit=e_min / s_min, s_min_ci=(float(lo[0]), float(hi[0])),
        e_min_ci=(float(lo[1]), float(hi[1])), b_crit_ci=(float(lo[2]), float(hi[2])), chi2=chi2,
        dof=dof, chi2_pvalue=float(_st.chi2.sf(chi2, dof)), batch_sizes=tuple(int(b) for b in order),
        confidence=confidence, n_resamples=n_resamples)


# -- gradient descent to levels of the excess loss -------------------------------------------


@dataclass(frozen=True)
class PathPoint:
    """Where full-batch descent first reaches a level (:func:`gradient_descent_path`).

    Attributes
    ----------
    fraction : float
        The level: a fraction of the initial excess loss.
    step : int
        Descent steps taken.
    excess_fraction : float
        The excess loss there, as a fraction of the initial one (at most ``fraction``).
    params : ndarray
    """

    fraction: float
    step: int
    excess_fraction: float
    params: np.ndarray = field(repr=False)


def gradient_descent_path(problem, data, w0, *, learning_rate: float, fractions, loss_star: float,
                          max_steps: int = 200_000) -> list[PathPoint]:
    """Full-batch gradient descent from ``w0``, stopped at each level of the excess loss.

    ``w_{t+1} = w_t - lr * grad L(w_t)``; at the first step where
    ``(L(w_t) - loss_star) / (L(w0) - loss_star)`` is at most a level of
    ``fractions``, the point is kept. The path along which a noise scale is
    measured as training proceeds (McCandlish et al. 2018, section 3: it grows as
    the loss falls).

    Parameters
    ----------
    problem : Problem
        Needs ``mean_loss`` and ``mean_grad``.
    data : Dataset
    w0 : array_like, shape (p,)
    learning_rate : float
        E.g. ``1 / lambda_max`` of the Hessian, stable for a convex loss.
    fractions : sequence of float
        Levels in (0, 1]; 1 is the start itself.
    loss_star : float
        The minimum of the loss.
    max_steps : int
        Steps allowed; levels not reached by then are missing from the result.

    Returns
    -------
    list of PathPoint
        In decreasing order of level.
    """
    X, y = np.asarray(data.X, dtype=np.float64), np.asarray(data.y, dtype=np.float64)
    w = np.array(w0, dtype=np.float64)
    lr = as_float(learning_rate, "learning_rate", low=0.0, low_open=True)
    levels = sorted({as_float(f, "fractions", low=0.0, high=1.0, low_open=True) for f in fractions},
                    reverse=True)
    loss0 = float(problem.mean_loss(w, X, y))
    if not loss0 > loss_star:
        raise ValueError(f"`loss_star` must be below the loss at `w0` = {loss0!r}; got {loss_star!r}")
    excess0 = loss0 - loss_star
    out = []
    for step in range(as_int(max_steps, "max_steps", low=0) + 1):
        frac = (problem.mean_loss(w, X, y) - loss_star) / excess0
        while levels and frac <= levels[0]:
            out.append(PathPoint(levels.pop(0), step, float(frac), w.copy()))
        if not levels or step == max_steps:
            break
        w = w - lr * problem.mean_grad(w, X, y)
    if levels:
        warnings.warn(f"gradient descent did not reach the levels {levels} of the excess loss within "
                      f"{max_steps} steps", RuntimeWarning, stacklevel=2)
    return out
