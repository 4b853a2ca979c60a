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
  walked until a worse or failing rate lies on each side of the best, and
  :func:`steps_at_best_rate`: that tuning, then fresh runs at the rate found (one
  point of the hyperbola);
- :func:`critical_batch_fit`: the hyperbola ``S/S_min - 1 = (E/E_min - 1)^-1`` of
  steps ``S`` against examples ``E = B S`` (eq. 2.11), i.e. ``S(B) = S_min +
  E_min/B``, fitted to measured steps, with ``B_crit = E_min/S_min`` and
  bootstrap intervals over the runs;
- :func:`gradient_descent_path`: full-batch gradient descent to given fractions of
  the initial excess loss (where to measure the noise scales along training).

docs/theory.md, section 10, has the formulas; the ``critical_batch`` study
composes these functions.

The modules: :mod:`lossvar.critical.one_step`, :mod:`lossvar.critical.steps` (steps to a
target and the learning rate per batch size) and :mod:`lossvar.critical.fit` (the
hyperbola and the descent path); every name is also ``lossvar.critical.NAME``.
"""

from .fit import CriticalBatchFitResult, PathPoint, critical_batch_fit, gradient_descent_path
from .one_step import GATHER_ELEMENTS, ONE_STEP_BLOCK, BestStepResult, best_step_fit, one_step_gains
from .steps import (
    MAX_RATES,
    LearningRateResult,
    StepsResult,
    steps_at_best_rate,
    steps_to_target,
    tune_learning_rate,
)

__all__ = ["GATHER_ELEMENTS", "MAX_RATES", "ONE_STEP_BLOCK", "BestStepResult", "CriticalBatchFitResult",
           "LearningRateResult", "PathPoint", "StepsResult", "best_step_fit", "critical_batch_fit",
           "gradient_descent_path", "one_step_gains", "steps_at_best_rate", "steps_to_target",
           "tune_learning_rate"]
