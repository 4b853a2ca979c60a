"""Steps to a target loss, and the best constant learning rate per batch size
(McCandlish et al. 2018, section 2.2)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from .. import streams
from .._result import ResultBase
from .._validate import as_float, as_int
from ..stats import mean_se

__all__ = ["MAX_RATES", "LearningRateResult", "StepsResult", "steps_at_best_rate", "steps_to_target",
           "tune_learning_rate"]

#: Most learning rates :func:`tune_learning_rate` tries above, and below, its start.
MAX_RATES = 40

_RATE_COLUMNS = ("k", "lr", "replicates", "reached", "diverged", "step_cap", "steps_mean")


def steps_to_target(trajectories, target: float, *, loss_star: float) -> np.ndarray:
    """Per run, the step at which the recorded loss first reaches ``target``; NaN if never.

    Between the last record above the target and the first at or below it,
    ``log(L - loss_star)`` is interpolated linearly in the step (the excess
    loss falls about geometrically between records); a run at or below the
    target from its first record reaches it at step 0.

    Parameters
    ----------
    trajectories : SGDResult
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
class LearningRateResult(ResultBase):
    """The result of :func:`tune_learning_rate`.

    A result (docs/guide/results.md): ``to_frame()`` is the table of
    ``rows``, one per rate tried. It has no interval (``confidence`` is None).

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
    confidence: ClassVar[None] = None

    def to_frame(self) -> pd.DataFrame:
        """One row per rate tried, in order: ``k``, ``lr``, ``replicates``, ``reached``,
        ``diverged``, ``step_cap``, ``steps_mean``."""
        return pd.DataFrame(self.rows, columns=list(_RATE_COLUMNS))

    def summary(self) -> str:
        """The best rate, its mean steps and whether it is bracketed, or that none reached the target."""
        tried = f"{len(self.tried)} rate(s) tried"
        if self.index is None:
            return f"no rate reached the target ({tried}; step cap {self.cap})"
        where = ("a worse rate on each side" if self.interior else
                 "not bracketed: a walk ran out of rates")
        return (f"best learning rate {self.learning_rate:.4g} (k = {self.index}): "
                f"{self.mean_steps:.4g} steps to the target on average; {where} ({tried})")

    @property
    def interior(self) -> bool:
        """A worse (or failed) rate was tried on each side of the best."""
        if self.index is None:
            return False
        above, below = self.tried.get(self.index - 1), self.tried.get(self.index + 1)
        return bool(above is not None and below is not None and above[1] > self.mean_steps
                    and below[1] > self.mean_steps)


def tune_learning_rate(measure: Callable, *, base: float, factor: float, start: int, cap: int,
                       rng, max_rates: int = MAX_RATES) -> LearningRateResult:
    """The constant learning rate of the grid ``base * factor^-k`` that reaches a target
    in the fewest steps, walked from ``k = start`` until it is bracketed.

    The first rate is allowed ``cap`` steps. The grid is walked upward
    (``k - 1, k - 2, ...``, larger rates) until a rate fails (a run diverges or
    misses the target within the step cap) or is worse than the best twice in
    a row, then downward from ``start + 1`` until a finite rate is worse than
    the best twice in a row. A failed rate counts as worse than every finite
    one, so the best rate is interior (a worse or failed rate on each side:
    :attr:`LearningRateResult.interior`) unless a walk ran out of its
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
    return LearningRateResult(index=k_best, learning_rate=lr, mean_steps=None if k_best is None else mean,
                              steps=s, tried=tried, rows=rows, cap=cap)


@dataclass(frozen=True)
class StepsResult(ResultBase):
    """Steps to a target at a batch size's best learning rate (:func:`steps_at_best_rate`).

    A result (docs/guide/results.md): ``to_frame()`` is one row, the rate,
    how it was found, and the mean steps and examples with standard errors
    (see :meth:`to_frame`). It has standard errors, no interval
    (``confidence`` is None).

    Attributes
    ----------
    batch_size : int
    search : LearningRateResult
        The tuning (the last one, if the first found no rate).
    tuning : list of dict
        The rows of every rate tried, in order (:meth:`LearningRateResult.to_frame`).
    steps : ndarray or None
        Steps of each fresh run at the best rate (NaN: did not reach the target);
        None when no rate reached it in tuning.
    diverged : int
        Fresh runs that diverged.
    factor : float
        The grid's ratio of neighbouring rates.
    """

    batch_size: int
    search: LearningRateResult
    tuning: list = field(repr=False)
    steps: np.ndarray | None
    diverged: int
    factor: float
    confidence: ClassVar[None] = None

    @property
    def reached(self) -> np.ndarray:
        """The steps of the fresh runs that reached the target."""
        return np.empty(0) if self.steps is None else self.steps[np.isfinite(self.steps)]

    def to_frame(self) -> pd.DataFrame:
        """One row: ``lr``, ``lr_k``, ``lr_over_base``, ``lr_at_grid_top``, ``lr_interior``,
        ``rates_tried``, ``replicates``, ``reached``, ``diverged``, ``steps``, ``steps_se``,
        ``examples`` and ``examples_se`` (the mean examples ``B S``). Where no rate
        reached the target, only ``lr`` (NaN), ``replicates`` and ``reached``; where
        fewer than 2 fresh runs did, only ``lr``, ``replicates``, ``reached`` and
        ``diverged``."""
        return super().to_frame()

    def summary(self) -> str:
        """The batch size, its rate and the steps to the target with their standard error."""
        row = self._row()
        head = f"B = {self.batch_size}: "
        if "steps" not in row:
            if self.search.index is None:
                return head + "no learning rate reached the target"
            return head + (f"learning rate {row['lr']:.4g}; {row['reached']} of {row['replicates']} "
                           "fresh runs reached the target (too few for a standard error)")
        return head + (f"learning rate {row['lr']:.4g}; {row['reached']} of {row['replicates']} fresh "
                       f"runs reached the target in {row['steps']:.4g} +- {row['steps_se']:.2g} steps "
                       f"({row['examples']:.4g} +- {row['examples_se']:.2g} examples)")

    def _row(self) -> dict:
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
                       tune_replicates: int) -> StepsResult:
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
        return StepsResult(batch_size, search, tuning, None, 0, factor)
    steps, diverged = run(search.learning_rate, replicates, int(np.ceil(4 * np.max(search.steps))) + 20,
                          run_seed)
    return StepsResult(batch_size, search, tuning, np.asarray(steps, dtype=np.float64), int(diverged),
                           factor)
