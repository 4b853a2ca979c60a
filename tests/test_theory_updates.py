"""lossvar.theory.updates: the stationary size of a constant-step SGD update (docs/theory.md, section 6).

Checked against two independent computations, to rounding (rtol 1e-12): the
stationary variance from scipy's discrete Lyapunov solver, and the long-run
limit of the exact recursions; and against simulated SGD with a z test of
z = 4.5 on its Monte Carlo standard error (false-failure rate P(|Z| > 4.5) ~
6.8e-6 per comparison).
"""

import numpy as np
import pytest

from lossvar import stats, theory

Z = 4.5  # two-sided false-failure rate ~ 6.8e-6 per Monte Carlo comparison


@pytest.mark.parametrize("eta, h, s2", [(0.1, 1.0, 1.0), (1.75 / 10, 10.0, 0.25), (1.9, 1.0, 2.0),
                                        (1e-3, 3.0, 1e-4)])
def test_floor_is_the_stationary_law_of_the_update(eta, h, s2):
    got = theory.sgd_update_floor(eta, h, s2)
    # w_{k+1} - w_k = -eta (h (w_k - w*) + xi_k): Var(w - w*) from the Lyapunov equation
    v = theory.stationary_covariance(eta, [[h]], [[s2]])[0, 0]
    assert got == pytest.approx(eta**2 * (h**2 * v + s2), rel=1e-12)
    # the same update as a difference of two stationary iterates: 2 v (1 - corr) = 2 eta h v
    assert got == pytest.approx(2 * eta * h * v, rel=1e-12)
    assert got == pytest.approx(2 * eta**2 * s2 / (2 - eta * h), rel=1e-12)


def test_floor_is_the_long_run_limit_of_the_exact_recursions():
    eta, h, s2 = 0.3, 2.0, 0.5
    q = theory.quadratic_moments(eta, h, s2, m1=4.0, v1=1.0, steps=2000)
    # E(w_{k+1} - w_k)^2 = eta^2 (h^2 E(w_k - w*)^2 + sigma^2); the start has decayed by (0.4)^2000
    assert eta**2 * (h**2 * q.mse[-1] + s2) == pytest.approx(theory.sgd_update_floor(eta, h, s2),
                                                            rel=1e-12)


def test_floor_against_simulated_sgd():
    eta, h, s2, runs = 0.5, 1.5, 0.8, 200_000
    rng = np.random.default_rng(20240611)
    v = theory.constant_step_floor(eta, h, s2)
    w = np.sqrt(v) * rng.standard_normal(runs)  # started at the stationary law (w* = 0)
    for _ in range(5):
        w = w - eta * (h * w + np.sqrt(s2) * rng.standard_normal(runs))
    step = -eta * (h * w + np.sqrt(s2) * rng.standard_normal(runs))
    mean, se = stats.mean_se(step**2)
    assert abs(mean - theory.sgd_update_floor(eta, h, s2)) <= Z * se


@pytest.mark.parametrize("args, error, match", [
    ((1.0, 2.0, 1.0), ValueError, r"`eta` must be in \(0, 2/curvature\) = \(0, 1\) .*; got 1.0"),
    ((0.0, 1.0, 1.0), ValueError, r"`eta` must be a finite real number in \(0"),
    ((0.1, -1.0, 1.0), ValueError, r"`curvature` must be a finite real number in \(0"),
    ((0.1, [1.0, 2.0], 1.0), TypeError, r"`curvature` must be a finite real number"),
    ((0.1, 1.0, -1.0), ValueError, r"`noise_var` must be a finite real number in \[0"),
])
def test_bad_input_names_the_parameter(args, error, match):
    with pytest.raises(error, match=match):
        theory.sgd_update_floor(*args)
