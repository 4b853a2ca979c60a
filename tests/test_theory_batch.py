"""lossvar.theory.batch: the batch mean's moments and the moments of a fixed set of losses
(docs/theory.md, sections 1 and 3).

Closed forms are checked against exhaustive enumeration of every batch (every
ordered tuple with replacement, every subset without) to rounding (rtol 1e-12),
the moments of the losses against exact rational arithmetic. Monte Carlo
checks use a fixed seed and a tolerance of z = 4.5 of the Monte Carlo's own
standard error: a correct formula fails such a check with probability
P(|Z| > 4.5) ~ 6.8e-6 per comparison.
"""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from lossvar import stats, theory

WITH, WITHOUT = "with_replacement", "without_replacement"
Z = 4.5  # two-sided false-failure rate ~ 6.8e-6 per Monte Carlo comparison

POPULATIONS = {
    "random": np.random.default_rng(7).normal(1.0, 2.0, 7),
    "ties_and_negatives": np.array([-3.0, -3.0, 0.0, 1.0, 1.0, 1.0, 10.0]),
}


def _all_batches(n, b, sampling):
    """Every equally likely batch: ordered tuples with replacement, subsets without."""
    pick = itertools.product(range(n), repeat=b) if sampling == WITH else itertools.combinations(range(n), b)
    return np.array(list(pick), dtype=np.intp)


def _enumerated_moments(losses, b, sampling):
    """(variance, fourth central moment) of the batch mean over every batch."""
    means = losses[_all_batches(losses.size, b, sampling)].mean(axis=1)
    dev = means - means.mean()  # the mean over all batches is the population mean
    return np.mean(dev**2), np.mean(dev**4)


# -- fourth moment and kurtosis of the batch mean -----------------------------------------


@pytest.mark.parametrize("sampling", [WITH, WITHOUT])
@pytest.mark.parametrize("name", sorted(POPULATIONS))
def test_fourth_moment_matches_enumeration_of_every_batch(name, sampling):
    losses = POPULATIONS[name]
    for b in range(1, 8):
        var, m4 = _enumerated_moments(losses, b, sampling)
        got = theory.batch_mean_fourth_moment(losses, b, sampling)
        kurt = theory.batch_mean_kurtosis(losses, b, sampling)
        if sampling == WITHOUT and b == 7:
            assert got == 0.0 and np.isnan(kurt)  # the full batch has no noise, exactly
            assert m4 < 1e-28
            continue
        assert got == pytest.approx(m4, rel=1e-12), b
        assert kurt == pytest.approx(m4 / var**2, rel=1e-12), b


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_fourth_moment_small_populations_without_replacement(n):
    # N <= 3 has its own branch (the closed form is 0/0 there); N = 4, 5 are its edge
    losses = np.random.default_rng(n).standard_normal(n)
    for b in range(1, n + 1):
        _, m4 = _enumerated_moments(losses, b, WITHOUT)
        got = theory.batch_mean_fourth_moment(losses, b, WITHOUT)
        assert got == pytest.approx(m4, rel=1e-12, abs=0.0 if b < n else 1e-28), (n, b)
    assert theory.batch_mean_fourth_moment(losses, n, WITHOUT) == 0.0


@pytest.mark.parametrize("sampling", [WITH, WITHOUT])
def test_fourth_moment_of_one_draw_is_mu4(sampling):
    losses = POPULATIONS["random"]
    mu4 = np.mean((losses - losses.mean()) ** 4)
    assert theory.batch_mean_fourth_moment(losses, 1, sampling) == pytest.approx(mu4, rel=1e-13)


def test_with_replacement_formula_and_kurtosis_decay():
    losses = POPULATIONS["ties_and_negatives"]
    y = losses - losses.mean()
    mu2, mu4 = np.mean(y**2), np.mean(y**4)
    for b in (1, 2, 5, 40):  # B > N is allowed for independent draws
        expected = (mu4 + 3 * (b - 1) * mu2**2) / b**3
        assert theory.batch_mean_fourth_moment(losses, b, WITH) == pytest.approx(expected, rel=1e-13)
        # the excess kurtosis of a mean of B i.i.d. draws is the population's divided by B
        excess = theory.batch_mean_kurtosis(losses, b, WITH) - 3
        assert excess == pytest.approx((mu4 / mu2**2 - 3) / b, rel=1e-12)


def test_fourth_moment_is_computed_from_centred_values():
    # quarters are exact in float64, so adding 2**27 shifts the population exactly and
    # leaves every central moment unchanged; raw power sums would lose all digits here
    base = np.random.default_rng(3).integers(-20, 20, 7) / 4.0
    shifted = base + 2.0**27
    for sampling in (WITH, WITHOUT):
        for b in (1, 3, 6):
            assert theory.batch_mean_fourth_moment(shifted, b, sampling) == pytest.approx(
                theory.batch_mean_fourth_moment(base, b, sampling), rel=1e-12)
    assert theory.batch_mean_fourth_moment(shifted, 7, WITHOUT) == 0.0


def test_equal_losses_have_zero_moments_and_nan_kurtosis():
    losses = np.full(7, 0.1)  # the rounded mean of 0.1s is not exactly 0.1
    assert theory.batch_mean_fourth_moment(losses, 3, WITH) == 0.0
    assert np.isnan(theory.batch_mean_kurtosis(losses, 3, WITHOUT))


@pytest.mark.parametrize("losses, b, sampling, error, match", [
    ([], 1, WITH, ValueError, r"`losses` must hold at least 2 values .*; got N=0"),
    ([1.5], 1, WITHOUT, ValueError, r"`losses` must hold at least 2 values .*; got N=1"),
    ([[1.0, 2.0]], 1, WITH, ValueError, r"`losses` must be a 1-D array; got .* shape \(1, 2\)"),
    ([1.0, np.nan, 2.0], 1, WITH, ValueError, r"`losses` must be finite; got 1 NaN or inf"),
    (np.arange(7.0), 0, WITHOUT, ValueError, r"`batch_size` must be an integer in \[1, 7\]; got 0"),
    (np.arange(7.0), 8, WITHOUT, ValueError, r"`batch_size` must be an integer in \[1, 7\]; got 8"),
    (np.arange(7.0), 0, WITH, ValueError, r"`batch_size` must be an integer >= 1; got 0"),
    (np.arange(7.0), 2.5, WITH, TypeError, r"`batch_size` must be an integer >= 1; got 2.5"),
    (np.arange(7.0), 2, "bootstrap", ValueError,
     r"`sampling` must be one of 'without_replacement', 'with_replacement', but 'bootstrap'"),
])
def test_fourth_moment_rejects_bad_input(losses, b, sampling, error, match):
    with pytest.raises(error, match=match):
        theory.batch_mean_fourth_moment(losses, b, sampling)
    with pytest.raises(error, match=match):
        theory.batch_mean_kurtosis(losses, b, sampling)


# -- standard deviation of a sample variance ----------------------------------------------


def test_variance_se_is_the_normal_theory_value_when_mu4_is_3_sigma4():
    s2 = np.array([[0.5], [1.0], [7.25]])
    r = np.array([2, 3, 10, 1000])
    got = theory.variance_se(3 * s2**2, s2, r)
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, s2 * np.sqrt(2 / (r - 1)), rtol=1e-14)
    assert isinstance(theory.variance_se(3.0, 1.0, 5), float)


@pytest.mark.parametrize("r", [2, 3, 4])
def test_variance_se_matches_enumeration_of_iid_draws(r):
    # R i.i.d. uniform draws from a small discrete population: every R-tuple is equally likely
    values = np.array([-1.0, 0.0, 0.0, 2.0, 5.5])
    tuples = values[_all_batches(values.size, r, WITH)]
    s2 = tuples.var(axis=1, ddof=1)
    y = values - values.mean()
    got = theory.variance_se(np.mean(y**4), np.mean(y**2), r)
    assert np.mean(s2) == pytest.approx(np.mean(y**2), rel=1e-13)  # S^2 is unbiased
    assert got == pytest.approx(np.sqrt(np.mean((s2 - s2.mean()) ** 2)), rel=1e-12)


def test_variance_se_of_batch_means_matches_enumeration():
    # the intended use: R replicate batch means, with the exact moments of one batch mean
    losses = POPULATIONS["ties_and_negatives"]
    means = losses[_all_batches(7, 3, WITHOUT)].mean(axis=1)  # 35 equally likely batch means
    r = 3
    s2 = means[_all_batches(means.size, r, WITH)].var(axis=1, ddof=1)
    var_b = theory.batch_mean_variance(theory.population_variance(losses), 3, n=7, sampling=WITHOUT)
    got = theory.variance_se(theory.batch_mean_fourth_moment(losses, 3, WITHOUT), var_b, r)
    assert got == pytest.approx(np.sqrt(np.mean((s2 - s2.mean()) ** 2)), rel=1e-12)


def test_variance_se_against_monte_carlo_of_normal_samples():
    rng = np.random.default_rng(20240611)
    sigma2, r, reps = 2.5, 10, 200_000
    s2 = (np.sqrt(sigma2) * rng.standard_normal((reps, r))).var(axis=1, ddof=1)
    # the Monte Carlo variance of S^2 is a mean of squared deviations, with its standard error
    mc, mc_se = stats.mean_se((s2 - s2.mean()) ** 2)
    exact = theory.variance_se(3 * sigma2**2, sigma2, r) ** 2
    assert abs(mc - exact) <= Z * mc_se


@pytest.mark.parametrize("args, error, match", [
    ((3.0, 1.0, 1), ValueError, r"`replicates` must be an integer >= 2; got 1"),
    ((3.0, 1.0, 10.0), TypeError, r"`replicates` must be an integer >= 2; got 10.0"),
    ((3.0, 1.0, [5, 1]), ValueError, r"`replicates` must be an integer >= 2; got 1"),
    ((3.0, -1.0, 5), ValueError, r"`variance` must be >= 0; got -1.0"),
    ((-3.0, 1.0, 5), ValueError, r"`fourth_moment` must be >= 0; got -3.0"),
    ((0.1, 1.0, 100), ValueError, r"`fourth_moment` must be >= variance\*\*2 \(R - 3\)/\(R - 1\); "
                                  r"got fourth_moment=0.1, variance=1.0"),
    (([3.0, 3.0], [1.0, 1.0, 1.0], 5), ValueError,
     r"`fourth_moment`, `variance` and `replicates` must broadcast together; got shapes \(2,\), \(3,\)"),
])
def test_variance_se_rejects_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        theory.variance_se(*args)


def test_batch_mean_variance_matches_enumeration_of_every_batch():
    losses = POPULATIONS["random"]
    s2 = theory.population_variance(losses)
    for sampling in (WITH, WITHOUT):
        for b in range(1, 8):
            var, _ = _enumerated_moments(losses, b, sampling)
            got = theory.batch_mean_variance(s2, b, n=losses.size, sampling=sampling)
            assert got == pytest.approx(var, rel=1e-12, abs=1e-28), (sampling, b)
    assert theory.batch_mean_variance(s2, 3) == s2 / 3  # fresh data: B new i.i.d. examples


# -- the moments of a fixed set of losses --------------------------------------------------

#: Tolerance, in units in the last place, between population_moments and a
#: reference computed another way (exact rationals, np.var): a different
#: summation order or centring rounds differently in the last bits, so the
#: two are compared to a few ulps, never bit for bit.
ULPS = 4

LOSS_SETS = {
    "exponential": np.random.default_rng(0).exponential(size=20_001),
    "heavy_tail": np.random.default_rng(1).pareto(2.5, 9_999),
    "lognormal": np.random.default_rng(2).lognormal(0.0, 2.0, 5_000),
    # the mean is 10^9 times the spread: the second, centring pass
    "shifted": np.random.default_rng(3).standard_normal(7_000) * 1e-3 + 1e6,
    "offset": np.random.default_rng(4).exponential(size=3_000) + 40.0,
    "ties": np.array([-3.0, -3.0, 0.0, 1.0, 1.0, 1.0, 10.0]),
    "two": np.array([2.0, 5.0]),
}


def _exact(x):
    """(mean, mu2, mu4) in exact rational arithmetic, rounded once."""
    values = [Fraction(v) for v in x.tolist()]
    mean = sum(values) / len(values)
    d = [v - mean for v in values]
    return (float(mean), float(sum(v * v for v in d) / len(d)),
            float(sum(v**4 for v in d) / len(d)))


def _close(got, want, ulps=ULPS):
    return abs(got - want) <= ulps * math.ulp(want)


@pytest.mark.parametrize("name", sorted(LOSS_SETS))
def test_population_moments_are_exact_to_a_few_ulps(name):
    x = LOSS_SETS[name]
    m = theory.population_moments(x)
    _, mu2, mu4 = _exact(x)
    assert m.n == x.size
    assert m.mean == float(x.mean())  # the same reduction: the same bits
    assert _close(m.mu2, mu2) and _close(m.mu4, mu4), (m.mu2, mu2, m.mu4, mu4)
    # np.var centres once on the rounded mean; population_moments sums the same
    # squares on the same tree, but is another code path: compared to a few ulps.
    assert _close(m.variance, float(np.var(x)))


def test_population_moments_are_deterministic():
    x = LOSS_SETS["exponential"]
    first = theory.population_moments(x)
    assert all(theory.population_moments(x) == first for _ in range(3))
    assert theory.population_moments(x.tolist()) == first  # a list is converted, not re-summed


@pytest.mark.parametrize("x", [np.full(70_001, 0.1), np.full(10, 3.0), np.zeros(4), np.array([2.5])])
def test_equal_losses_have_zero_central_moments(x):
    m = theory.population_moments(x)
    assert (m.mu2, m.mu4) == (0.0, 0.0)
    assert m.mean == float(x.mean())


def test_population_moments_validate_like_loss_variance():
    with pytest.raises(ValueError, match=r"`losses` must be finite; got 1 NaN or inf value"):
        theory.population_moments([1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match=r"`losses` must be a 1-D array"):
        theory.population_moments(np.ones((3, 3)))
    with pytest.raises(ValueError, match="non-empty"):
        theory.population_moments([])
    with pytest.raises(TypeError, match="`losses` must be an array of real numbers"):
        theory.population_moments({"a": 1})
    m = theory.population_moments(np.full(4, 1e308))  # finite values whose sum overflows
    assert not math.isfinite(m.mean) and math.isnan(m.mu2)
