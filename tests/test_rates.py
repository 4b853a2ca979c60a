"""Fitted convergence rates recover the exponents of docs/theory.md, section 6.

Each fit's interval is a +- Z se (se from the replicate bootstrap) with
Z = 4.4, a two-sided false-failure rate of about 1e-5 per check if the
fitted exponent were unbiased. It is not exactly: over a finite tail the local
exponent of the exact E(w_k - w*)^2 differs from its limit (for the
parameters below by at most 0.03, computed from lossvar.theory in
test_exact_local_exponents_are_close and the Polyak-Ruppert test), far less than Z se, so the rate stays
near 1e-5 per check; this file makes about 10 such checks.
"""

import numpy as np
import pytest

import lossvar
from lossvar import GaussianNoisePopulation, optim, schedules, theory
from lossvar.rates import convergence_rate
from lossvar.sgd import run_sgd

Z = 4.4
CONF = 1 - 1e-5  # two-sided normal level with z = 4.4
MU, SIGMA, M1 = 1.0, 1.0, 3.0
STEPS, R = 2000, 2048
TAIL = (200, STEPS)

CASES = {  # schedule, theoretical exponent
    "1/(mu k)": (schedules.polynomial(1.0, 1.0), 1.0),
    "c/k, 2c mu > 1": (schedules.polynomial(2.0, 1.0), 1.0),
    "c/k, 2c mu < 1": (schedules.polynomial(0.25, 1.0), 0.5),
    "c/k^0.75": (schedules.polynomial(2.0, 0.75), 0.75),
    "c/k^0.3": (schedules.polynomial(0.5, 0.3), 0.3),
}


def _run(schedule, seed, **kw):
    q = lossvar.NoisyQuadratic(MU, noise_std=SIGMA)
    return run_sgd(q, GaussianNoisePopulation(q), optim.sgd(schedule), steps=STEPS, batch_size=1,
                   replicates=R, w0=[M1], rng=seed, **kw)


def _local_exponent(schedule):
    q = theory.quadratic_moments(schedule, MU, SIGMA**2, m1=M1, steps=STEPS)
    k = np.arange(TAIL[0], TAIL[1] + 1)
    return -np.polyfit(np.log(k), np.log(q.mse[k]), 1)[0]


@pytest.mark.parametrize("name", list(CASES))
def test_exact_local_exponents_are_close(name):
    schedule, a = CASES[name]
    assert abs(_local_exponent(schedule) - a) <= 0.02


@pytest.mark.parametrize("name", list(CASES))
def test_fitted_rate_contains_the_theoretical_exponent(name):
    schedule, a = CASES[name]
    tr = _run(schedule, seed=len(name))
    fit = convergence_rate(tr, tail=TAIL, confidence=CONF)
    assert fit.exponent_ci.low <= a <= fit.exponent_ci.high, fit
    assert not fit.plateau
    assert fit.steps[0] >= TAIL[0] and fit.steps[-1] == STEPS and fit.replicates == R
    assert fit.exponent_ci.high - fit.exponent_ci.low < 0.5  # informative, not vacuous
    if name == "c/k^0.3":
        # p <= 1/2 converges in mean square, more slowly: decreasing, not diverging
        assert fit.exponent_ci.low > 0
        s = tr.by_step
        # over the tail's decade E falls by about 10^-0.3 = 0.5 (0.52 exactly, from the recursion)
        assert s.dist2_mean.iloc[-1] < 0.6 * s.dist2_mean[s.step >= TAIL[0]].iloc[0]


def test_constant_step_is_a_plateau_at_the_floor():
    eta = 0.1
    tr = _run(schedules.constant(eta), seed=3)
    fit = convergence_rate(tr, tail=TAIL, confidence=CONF)
    assert fit.plateau, fit
    floor = theory.constant_step_floor(eta, MU, SIGMA**2)
    # the transient a^(2k) = 0.9^400 ~ 5e-19 is gone by k = 200
    assert abs(fit.level - floor) <= Z * fit.level_se
    assert fit.level_ci.low < floor < fit.level_ci.high
    assert "plateau" in str(fit)


def test_polyak_ruppert_average_rate_and_reproducibility():
    # Started at w*: E(avg - w*)^2 ~ sigma^2 / (mu^2 n) (Polyak & Juditsky 1992), local
    # exponent 0.976 over the tail; from w0 = 3 the bias (3 / (eta mu n))^2 still
    # dominates at n = 2000 and the local exponent is 1.53.
    q = lossvar.NoisyQuadratic(MU, noise_std=SIGMA)
    tr = run_sgd(q, GaussianNoisePopulation(q), optim.sgd(0.1), steps=STEPS, batch_size=1, replicates=R,
                 w0=[0.0], rng=4, average=True)
    exact = theory.quadratic_moments(0.1, MU, SIGMA**2, m1=0.0, steps=STEPS)
    k = np.arange(TAIL[0], TAIL[1] + 1)
    assert abs(-np.polyfit(np.log(k), np.log(exact.avg_mse[k]), 1)[0] - 1) <= 0.03
    fit = convergence_rate(tr, "avg_dist2", tail=TAIL, confidence=CONF)
    assert fit.exponent_ci.low <= 1.0 <= fit.exponent_ci.high, fit
    again = convergence_rate(tr, "avg_dist2", tail=TAIL, confidence=CONF)
    assert again == fit  # the bootstrap stream is derived from the trajectories' seed
    other = convergence_rate(tr, "avg_dist2", tail=TAIL, confidence=CONF, rng=1)
    assert other.exponent == fit.exponent and other.se != fit.se
    half = convergence_rate(tr, "avg_dist2")  # default: the later half of the records
    assert half.steps[-1] == STEPS and len(half.steps) >= 3


def test_bad_input():
    q = lossvar.NoisyQuadratic(MU)
    tr = run_sgd(q, GaussianNoisePopulation(q), optim.sgd(0.1), steps=50, batch_size=1, replicates=8,
                 w0=[1.0], rng=0)
    with pytest.raises(ValueError, match="was not recorded.*average=True"):
        convergence_rate(tr, "avg_dist2")
    with pytest.raises(ValueError, match="The value for `metric` must be one of"):
        convergence_rate(tr, "bogus")
    with pytest.raises(ValueError, match="`tail` must select at least 3 recorded steps"):
        convergence_rate(tr, tail=(40, 50))
    with pytest.raises(ValueError, match=r"`tail` must be a finite real number in \(0, 1\]"):
        convergence_rate(tr, tail=1.5)
