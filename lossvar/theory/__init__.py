"""Exact results that the Monte Carlo engines are tested against (docs/theory.md).

One module per topic, every public name re-exported here:

- :mod:`~lossvar.theory.batch` (sections 1 and 3): the variance of a batch mean,
  its fourth moment and kurtosis, the exact standard deviation of a Monte
  Carlo variance, and :func:`population_moments`, the moments of a fixed set
  of losses that all of these need;
- :mod:`~lossvar.theory.quadratic` (section 6): SGD on the noisy quadratic,
  its moment recursions with the Polyak-Ruppert average, the constant-step
  floor, the asymptotic laws of c/k^p steps, the stall factor, and exact
  p-values of Monte Carlo mean squares;
- :mod:`~lossvar.theory.updates` (section 6): the stationary size of an SGD update;
- :mod:`~lossvar.theory.robbins_monro` (section 5): the Robbins-Monro
  conditions, exactly for a schedule family or numerically from a tail;
- :mod:`~lossvar.theory.erm` (section 8): the spread of the least-squares
  minimizer;
- :mod:`~lossvar.theory.one_step` (section 10): one SGD step on a quadratic
  model and the optimal learning rate.

The theory imports nothing of the engine, the sampling, the problems or the
statistics: only the moments kernel and the input checks below them.
"""

from .batch import (
    SCHEMES,
    PopulationMoments,
    batch_mean_fourth_moment,
    batch_mean_kurtosis,
    batch_mean_variance,
    finite_population_factor,
    fourth_moment_from_moments,
    population_moments,
    population_variance,
    variance_se,
)
from .erm import erm_spread
from .one_step import OneStep, one_step_expected_loss, optimal_learning_rate
from .quadratic import (
    NCX2_LIMIT,
    Asymptote,
    QuadraticMoments,
    constant_step_floor,
    inverse_k_exact,
    mean_square_pvalues,
    polyak_ruppert_limit,
    quadratic_moments,
    sgd_asymptote,
    stall_factor,
    stationary_covariance,
)
from .robbins_monro import RobbinsMonroResult, family_verdict, tail_verdict
from .updates import sgd_update_floor

__all__ = [
    "NCX2_LIMIT", "SCHEMES", "Asymptote", "OneStep", "PopulationMoments", "QuadraticMoments",
    "RobbinsMonroResult", "batch_mean_fourth_moment", "batch_mean_kurtosis", "batch_mean_variance",
    "constant_step_floor", "erm_spread", "family_verdict", "finite_population_factor",
    "fourth_moment_from_moments", "inverse_k_exact", "mean_square_pvalues", "one_step_expected_loss",
    "optimal_learning_rate", "polyak_ruppert_limit", "population_moments", "population_variance",
    "quadratic_moments", "sgd_asymptote", "sgd_update_floor", "stall_factor", "stationary_covariance",
    "tail_verdict", "variance_se",
]
