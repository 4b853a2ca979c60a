"""Datasets and populations: validation, reproducibility, exact loss moments."""

import numpy as np
import pytest
import scipy.integrate
from numpy.testing import assert_allclose, assert_array_equal

from lossvar.data import (
    Dataset,
    GaussianLinearPopulation,
    GaussianNoisePopulation,
    LogisticPopulation,
)
from lossvar.problems import LinearRegression, LogisticRegression, NoisyQuadratic

# Every Monte Carlo check below is |estimate - exact| <= Z * standard error with
# Z = 4: a two-sided normal tail of 6.3e-5, the false-failure rate of one check
# (the seeds are fixed, so a given run either always passes or always fails).
Z = 4.0


def _mean_and_variance_within_se(losses, mean, variance):
    """Check the sample mean and the sample variance S2 of ``losses`` against exact values.

    se(mean) = S / sqrt(R); Var(S2) = (m4 - S2^2 (R - 3)/(R - 1)) / R with the
    fourth central moment m4 (docs/theory.md, section 2, Morris et al. 2019).
    """
    r = losses.size
    s2 = losses.var(ddof=1)
    m4 = np.mean((losses - losses.mean()) ** 4)
    se_mean = np.sqrt(s2 / r)
    se_var = np.sqrt((m4 - s2**2 * (r - 3) / (r - 1)) / r)
    assert abs(losses.mean() - mean) <= Z * se_mean
    assert abs(s2 - variance) <= Z * se_var


# --- Dataset -----------------------------------------------------------------


def test_dataset_attributes_and_read_only_copies():
    X = np.arange(6.0).reshape(3, 2)
    y = np.array([1.0, 2.0, 3.0])
    ds = Dataset(X, y, name="toy", task="regression")
    assert (ds.n, ds.d, len(ds)) == (3, 2, 3)
    assert (ds.name, ds.task, ds.n_classes) == ("toy", "regression", None)
    assert ds.X.dtype == np.float64 and ds.y.dtype == np.float64
    with pytest.raises(ValueError, match="read-only"):
        ds.X[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        ds.y[0] = 1.0
    X[0, 0] = 99.0  # the caller's array stays writable and is not shared
    assert ds.X[0, 0] == 0.0
    with pytest.raises(AttributeError, match="immutable"):
        ds.X = X


def test_dataset_without_targets_stores_zeros():
    ds = Dataset(np.ones((4, 2)))
    assert_array_equal(ds.y, np.zeros(4))
    assert ds.task is None


def test_dataset_classification_labels():
    ds = Dataset(np.ones((4, 1)), [0, 2, 1, 2], task="classification")
    assert ds.n_classes == 3 and ds.y.dtype == np.int64
    ds = Dataset(np.ones((2, 1)), [0.0, 1.0], task="classification", n_classes=4)
    assert ds.n_classes == 4 and ds.y.dtype == np.int64
    with pytest.raises(ValueError, match="integer class labels"):
        Dataset(np.ones((2, 1)), [0.5, 1.0], task="classification")
    with pytest.raises(ValueError, match=r"class labels in 0..1 for n_classes=2; got 2"):
        Dataset(np.ones((2, 1)), [0, 2], task="classification", n_classes=2)


def test_dataset_fingerprint():
    X = np.random.default_rng(0).standard_normal((5, 3))
    y = np.arange(5)
    fp = Dataset(X, y).fingerprint()
    assert len(fp) == 64
    assert fp == Dataset(X.copy(), y.astype(float)).fingerprint()
    X2 = X.copy()
    X2[4, 2] = np.nextafter(X2[4, 2], np.inf)
    assert Dataset(X2, y).fingerprint() != fp
    assert Dataset(X, y[::-1]).fingerprint() != fp
    assert Dataset(X.reshape(3, 5), y[:3]).fingerprint() != Dataset(X, y).fingerprint()


@pytest.mark.parametrize("X, y, match", [
    ([[1.0, np.nan], [0.0, 1.0]], None, "`X` must be finite; got 1 NaN or inf"),
    ([1.0, 2.0], None, "`X` must be a 2-D array"),
    (np.zeros((0, 2)), None, "`X` must have at least one row"),
    (np.zeros((3, 2)), np.zeros(2), "`y` must be a 1-D array of length n=3"),
    (np.zeros((3, 2)), np.zeros((3, 1)), "`y` must be a 1-D array of length n=3"),
    (np.zeros((2, 2)), [0.0, np.inf], "`y` must be finite"),
])
def test_dataset_bad_input(X, y, match):
    with pytest.raises(ValueError, match=match):
        Dataset(X, y)


def test_dataset_bad_task():
    with pytest.raises(ValueError, match="The value for `task` must be one of 'regression', "
                                         "'classification', but 'cluster' was passed."):
        Dataset(np.zeros((2, 1)), task="cluster")


# --- Populations ---------------------------------------------------------------


POPULATIONS = {
    "linear": GaussianLinearPopulation([1.0, -0.5, 2.0], noise_std=0.7),
    "logistic": LogisticPopulation([1.0, -2.0, 0.5]),
    "quadratic": GaussianNoisePopulation(NoisyQuadratic([0.5, 1.0, 3.0], w_star=[1.0, 0.0, -1.0],
                                noise_std=0.8)),
}


@pytest.mark.parametrize("key", POPULATIONS)
def test_population_sampling_is_reproducible(key):
    population = POPULATIONS[key]
    a = population.sample(50, np.random.default_rng(1))
    b = population.sample(50, np.random.default_rng(1))
    assert_array_equal(a.X, b.X)
    assert_array_equal(a.y, b.y)
    assert (a.n, a.d) == (50, population.n_features)
    # One meaning of rng (lossvar.streams): an int or SeedSequence is the root, a
    # Generator gives a child of its SeedSequence, as at every Monte Carlo entry point.
    assert_array_equal(population.sample(50, 1).X, population.sample(50, np.random.SeedSequence(1)).X)
    assert_array_equal(population.sample(50, np.random.SeedSequence(1).spawn(1)[0]).X, a.X)
    rng = np.random.default_rng(1)
    population.sample(50, rng)
    assert not np.array_equal(population.sample(50, rng).X, a.X)


@pytest.mark.parametrize("n, error", [(0, ValueError), (2.0, TypeError)])
def test_population_sample_size_is_validated(n, error):
    with pytest.raises(error, match="`n` must be an integer >= 1"):
        POPULATIONS["linear"].sample(n, np.random.default_rng(0))


def test_population_natural_problems_and_minimizers():
    linear, logistic, quadratic = (POPULATIONS[k] for k in ("linear", "logistic", "quadratic"))
    assert isinstance(linear.problem, LinearRegression) and linear.problem.l2 == 0
    assert isinstance(logistic.problem, LogisticRegression) and logistic.problem.l2 == 0
    assert isinstance(quadratic, GaussianNoisePopulation)
    assert_array_equal(linear.w_star, [1.0, -0.5, 2.0])
    assert_array_equal(logistic.w_star, [1.0, -2.0, 0.5])
    assert_array_equal(quadratic.w_star, [1.0, 0.0, -1.0])
    assert_array_equal(quadratic.sample(5, 0).y, np.zeros(5))


def test_gaussian_linear_moments_formula():
    population = GaussianLinearPopulation([1.0, 2.0], noise_std=2.0)
    mean, var = population.loss_moments(np.array([1.0, 0.0]))
    s2 = 4.0 + 4.0
    assert (mean, var) == (s2 / 2, s2**2 / 2)
    means, variances = population.loss_moments(np.zeros((3, 2)))
    assert means.shape == variances.shape == (3,)


def test_loss_moments_check_the_parameter_length():
    for population in POPULATIONS.values():
        with pytest.raises(ValueError, match="`w` must have length p=3"):
            population.loss_moments(np.zeros(2))


@pytest.mark.parametrize("key, w", [
    ("linear", [0.0, 0.5, 1.0]),
    ("linear", [1.0, -0.5, 2.0]),
    ("logistic", [0.5, -1.0, 1.0]),
    ("logistic", [1.0, -2.0, 0.5]),
    ("quadratic", [0.0, 1.0, 0.0]),
])
def test_per_sample_loss_moments_match_monte_carlo(key, w):
    population = POPULATIONS[key]
    w = np.array(w)
    data = population.sample(200_000, np.random.default_rng(2024))
    losses = population.problem.loss(w, data.X, data.y)
    _mean_and_variance_within_se(losses, *population.loss_moments(w))


@pytest.mark.parametrize("key", POPULATIONS)
def test_fresh_batch_mean_loss_has_variance_var_div_over_n(key):
    population = POPULATIONS[key]
    w = np.array([0.3, 0.2, -0.4])
    n, replicates = 8, 40_000
    data = population.sample(n * replicates, np.random.default_rng(7))
    X = data.X.reshape(replicates, n, -1)
    y = data.y.reshape(replicates, n)
    batch_means = population.problem.mean_loss(w, X, y)
    mean, var = population.loss_moments(w)
    _mean_and_variance_within_se(batch_means, mean, var / n)


def test_logistic_moments_at_zero_and_against_one_dimensional_quadrature():
    population = LogisticPopulation([0.0, 0.0])
    mean, var = population.loss_moments(np.zeros(2))
    assert_allclose(mean, np.log(2.0), rtol=1e-15)
    assert abs(var) < 1e-15
    # With w_true = 0, y ~ Bernoulli(1/2) independently of z = x.w ~ N(0, a^2):
    # E l = E sp(z) - E z / 2, E l^2 = (E sp(z)^2 + E sp(-z)^2) / 2.
    w = np.array([3.0, 4.0])
    a = 5.0

    def expect(f):
        return scipy.integrate.quad(
            lambda u: f(a * u) * np.exp(-u * u / 2) / np.sqrt(2 * np.pi), -40, 40,
            points=[0.0], epsabs=1e-14, epsrel=1e-13, limit=200)[0]

    def sp(z):
        return np.logaddexp(0.0, z)

    exact_mean = expect(sp)
    exact_second = (expect(lambda z: sp(z) ** 2) + expect(lambda z: sp(-z) ** 2)) / 2
    mean, var = population.loss_moments(w)
    # Both are quadratures accurate to ~1e-13; 1e-11 leaves room for either.
    assert_allclose(mean, exact_mean, rtol=1e-11)
    assert_allclose(var, exact_second - exact_mean**2, rtol=1e-11)


def test_logistic_moments_converge_in_the_number_of_nodes():
    population = LogisticPopulation([1.0, -2.0, 0.5])
    w = np.array([2.0, -3.0, 1.0])
    default = np.array(population.loss_moments(w))
    fine = np.array(LogisticPopulation([1.0, -2.0, 0.5], quad_nodes=1500).loss_moments(w))
    assert_allclose(default, fine, rtol=1e-11)


def test_population_bad_arguments():
    with pytest.raises(ValueError, match="`noise_std` must be"):
        GaussianLinearPopulation([1.0], noise_std=-1.0)
    with pytest.raises(ValueError, match="`w_true` must be finite"):
        LogisticPopulation([np.nan])
    with pytest.raises(TypeError, match="`problem` must be a NoisyQuadratic"):
        GaussianNoisePopulation(LinearRegression())
