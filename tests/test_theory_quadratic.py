"""lossvar.theory.quadratic: SGD on the noisy quadratic, exactly (docs/theory.md, section 6).

The recursions are deterministic: identities that hold exactly are checked to
rounding (rtol 1e-12); asymptotic forms against the size of their first
correction term, stated at each test. The p-values of mean squares are checked
against scipy's noncentral chi-square and, for their calibration, against
simulated Gaussian iterates with a binomial test whose false-failure rate is
stated there.
"""

import numpy as np
import pytest
import scipy.stats as st

from lossvar import schedules, theory

MU, S2 = 1.0, 1.0


def _brute_force(eta, mu, sigma2, m1, v1):
    """Moments of every iterate and every average from the explicit linear map.

    w_k - w* = (prod a) m1 + (prod a) z_0 - sum_j (prod_{i>j} a_i) eta_j xi_j, with
    z_0 the start's randomness (variance v1); coefficients are tracked as a matrix.
    """
    n = len(eta)
    coef = np.zeros((n + 1, n + 1))  # iterate x (start noise, xi_1..xi_n)
    mean = np.zeros(n + 1)
    coef[0, 0], mean[0] = 1.0, m1
    for k in range(n):
        a = 1.0 - eta[k] * mu
        coef[k + 1] = a * coef[k]
        coef[k + 1, k + 1] = -eta[k]
        mean[k + 1] = a * mean[k]
    scale = np.concatenate([[v1], np.full(n, sigma2)])
    var = (coef**2) @ scale
    cum = np.cumsum(coef, axis=0) / np.arange(1, n + 2)[:, None]
    avg_mean = np.cumsum(mean) / np.arange(1, n + 2)
    avg_var = (cum**2) @ scale
    return mean, var, avg_mean, avg_var


def test_recursion_matches_the_explicit_linear_map():
    eta = np.random.default_rng(0).uniform(0.0, 1.5, 30)
    q = theory.quadratic_moments(eta, 1.3, 0.7, m1=2.0, v1=0.4, steps=30)
    mean, var, avg_mean, avg_var = _brute_force(eta, 1.3, 0.7, 2.0, 0.4)
    np.testing.assert_allclose(q.mean[:, 0], mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(q.var[:, 0], var, rtol=1e-12)
    np.testing.assert_allclose(q.avg_mean[:, 0], avg_mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(q.avg_var[:, 0], avg_var, rtol=1e-12)
    np.testing.assert_allclose(q.mse, mean**2 + var, rtol=1e-12)
    np.testing.assert_allclose(q.avg_mse, avg_mean**2 + avg_var, rtol=1e-12)
    assert q.step.tolist() == list(range(31)) and np.isnan(q.eta[0])
    np.testing.assert_array_equal(q.eta[1:], eta)


@pytest.mark.parametrize("m1", [0.0, 3.0, -10.0])
def test_inverse_k_is_exactly_sigma2_over_mu2_n(m1):
    mu = 2.0
    q = theory.quadratic_moments(lambda k: 1 / (mu * k), mu, S2, m1=m1, steps=500)
    k = np.arange(2, 502)  # iterate index; after n = k - 1 updates
    np.testing.assert_allclose(q.mse[1:], theory.inverse_k_exact(k, mu, S2), rtol=1e-12)
    np.testing.assert_allclose(q.mse[1:], S2 / (mu**2 * q.step[1:]), rtol=1e-12)
    with pytest.raises(ValueError, match="`k` must be >= 2"):
        theory.inverse_k_exact(1, mu, S2)


def test_constant_step_transient_and_floor():
    eta, v1, m1 = 0.3, 0.4, 1.5
    q = theory.quadratic_moments(eta, MU, S2, m1=m1, v1=v1, steps=200)
    floor = theory.constant_step_floor(eta, MU, S2)
    assert floor == pytest.approx(eta * S2 / (MU * (2 - eta * MU)), rel=1e-15)
    a = 1 - eta * MU
    n = q.step
    np.testing.assert_allclose(q.var[:, 0], floor + a ** (2 * n) * (v1 - floor), rtol=1e-12)
    np.testing.assert_allclose(q.mean[:, 0], a**n * m1, rtol=1e-12)
    # mini-batch of B fresh noise vectors: sigma^2 / B, the floor scales as eta / B
    assert theory.constant_step_floor(eta, MU, S2 / 4) == pytest.approx(floor / 4, rel=1e-15)
    with pytest.raises(ValueError, match=r"`eta` must be in \(0, 2/mu_max\)"):
        theory.constant_step_floor(2.5, MU, S2)


def test_multidimensional_floor_sum_and_lyapunov():
    h = np.array([0.5, 1.0, 3.0])
    eta, s2 = 0.2, 0.8
    floor = theory.constant_step_floor(eta, h, s2)
    assert floor == pytest.approx(np.sum(eta * s2 / (h * (2 - eta * h))), rel=1e-14)
    sigma = theory.stationary_covariance(eta, np.diag(h), s2 * np.eye(3))
    assert np.trace(sigma) == pytest.approx(floor, rel=1e-12)
    # a rotated H has the same spectrum: the trace is invariant with isotropic noise
    Q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((3, 3)))
    sigma_rot = theory.stationary_covariance(eta, Q @ np.diag(h) @ Q.T, s2 * np.eye(3))
    assert np.trace(sigma_rot) == pytest.approx(floor, rel=1e-12)
    # and the diagonal recursion sums the independent coordinates
    q = theory.quadratic_moments(eta, h, s2, m1=[1.0, -1.0, 2.0], steps=400)
    parts = sum(theory.quadratic_moments(eta, hi, s2, m1=mi, steps=400).mse
                for hi, mi in zip(h, [1.0, -1.0, 2.0], strict=True))
    np.testing.assert_allclose(q.mse, parts, rtol=1e-12)
    assert q.mse[-1] == pytest.approx(floor, rel=1e-12)
    with pytest.raises(ValueError, match="contraction"):
        theory.stationary_covariance(11.0, np.diag(h), np.eye(3))


def test_c_over_k_above_the_threshold():
    c = 1.5  # 2 c mu = 3 > 1
    asym = theory.sgd_asymptote(c, 1.0, MU, S2)
    assert asym.exponent == 1.0 and asym.constant == pytest.approx(c * c * S2 / (2 * c * MU - 1))
    q = theory.quadratic_moments(schedules.polynomial(c, 1.0), MU, S2, m1=1.0, steps=10**5)
    for n in (10**4, 10**5):
        # the first correction to k E is O(1/k) here (2 c mu - 1 = 2 > 1)
        assert abs(n * q.mse[n] / asym.constant - 1) <= 1.0 / n


def test_c_over_k_at_and_below_the_threshold():
    q = theory.quadratic_moments(schedules.polynomial(0.5, 1.0), MU, S2, m1=1.0, steps=10**5)
    asym = theory.sgd_asymptote(0.5, 1.0, MU, S2)
    assert asym.log_factor and asym.regime == "c/k, 2 c mu = 1"
    # k E - c^2 sigma^2 ln k converges: it moves far less than c^2 sigma^2 ln(10) per decade
    drift = [n * q.mse[n] - asym.constant * np.log(n) for n in (10**3, 10**4, 10**5)]
    assert abs(drift[2] - drift[1]) < 1e-3 * asym.constant * np.log(10)
    c = 0.2  # 2 c mu = 0.4 < 1: E ~ C k^-0.4, correction relative k^-(1 - 2 c mu)
    asym = theory.sgd_asymptote(c, 1.0, MU, S2)
    assert asym.exponent == pytest.approx(0.4) and np.isnan(asym.constant)
    q = theory.quadratic_moments(schedules.polynomial(c, 1.0), MU, S2, m1=1.0, steps=10**5)
    slope = -np.log(q.mse[10**5] / q.mse[10**4]) / np.log(10)
    assert abs(slope - 0.4) <= 10.0 ** (-4 * 0.6)


@pytest.mark.parametrize("c, p", [(1.0, 0.75), (2.0, 0.75), (0.5, 0.3), (1.0, 0.5)])
def test_c_over_k_to_the_p(c, p):
    asym = theory.sgd_asymptote(c, p, MU, S2)
    assert asym.exponent == p and asym.constant == c * S2 / (2 * MU)
    q = theory.quadratic_moments(schedules.polynomial(c, p), MU, S2, m1=1.0, steps=10**5)
    for n in (10**3, 10**4, 10**5):
        # twice the first-order correction p/(2 c mu) k^(p-1) + c mu/2 k^-p
        bound = 2 * (p / (2 * c * MU) * n ** (p - 1) + c * MU / 2 * n**-p)
        assert abs(q.mse[n] * n**p / asym.constant - 1) <= bound
    # converges to 0 in mean square, also for p <= 1/2: monotone decrease over the tail
    assert np.all(np.diff(q.mse[100:]) < 0)


def test_stall_for_p_above_one():
    c = 0.5
    asym = theory.sgd_asymptote(c, 2.0, MU, S2)
    assert asym.exponent == 0 and "stall" in asym.regime
    sf = theory.stall_factor(c, 2.0, MU)
    assert sf == pytest.approx(np.sin(np.pi * np.sqrt(c)) / (np.pi * np.sqrt(c)), rel=1e-15)
    q = theory.quadratic_moments(schedules.polynomial(c, 2.0), MU, S2, m1=3.0, steps=10**4)
    # the tail prod_{k > n} (1 - c mu / k^2) = 1 - c mu / n + O(n^-2)
    n = 10**4
    assert abs(q.mean[n, 0] / (3.0 * sf) - 1) <= 2 * c * MU / n
    assert q.mse[-1] > (3.0 * sf) ** 2  # stalls away from w*: the bias never vanishes
    # the numeric product (any p > 1) agrees with Euler's formula next to p = 2
    assert theory.stall_factor(c, 2.0 + 1e-7, MU) == pytest.approx(sf, rel=1e-6)
    assert theory.stall_factor(1.0, 2.0, MU) == pytest.approx(0.0, abs=1e-16)


def test_polyak_ruppert_limit():
    assert theory.polyak_ruppert_limit(MU, S2) == S2 / MU**2
    assert theory.polyak_ruppert_limit([1.0, 2.0], S2) == pytest.approx(1.25)
    q = theory.quadratic_moments(0.1, MU, S2, m1=1.0, steps=10**5)
    err = {n: abs((n + 1) * q.avg_mse[n] / theory.polyak_ruppert_limit(MU, S2) - 1)
           for n in (10**4, 10**5)}
    # n E -> sigma^2 / mu^2 with an O(1/n) correction: ten times smaller per decade
    assert err[10**5] < 1e-3 and 8 < err[10**4] / err[10**5] < 12
    # it does not rescue c/k with 2 c mu < 1: E(avg) ~ k^(-2 c mu) = k^-0.4, so n E(avg)
    # grows like n^0.6 (a factor 10^0.6 = 4 per decade; asked here: at least 2)
    q = theory.quadratic_moments(schedules.polynomial(0.2, 1.0), MU, S2, m1=1.0, steps=10**4)
    assert (10**4 + 1) * q.avg_mse[10**4] > 2 * (10**3 + 1) * q.avg_mse[10**3]


def test_input_errors():
    with pytest.raises(ValueError, match="`mu` must be a positive number"):
        theory.quadratic_moments(0.1, -1.0, S2, m1=0.0, steps=3)
    with pytest.raises(ValueError, match="length steps=3"):
        theory.quadratic_moments([0.1, 0.2], MU, S2, m1=0.0, steps=3)
    with pytest.raises(ValueError, match="`steps` must be an integer >= 1; got 0"):
        theory.quadratic_moments(0.1, MU, S2, m1=0.0, steps=0)


def test_schedules_plain_callables_and_values_give_the_same_steps():
    q = theory.quadratic_moments(schedules.polynomial(0.5, 0.75), MU, S2, m1=1.0, steps=50)
    k = np.arange(1, 51)
    as_values = theory.quadratic_moments(0.5 / k**0.75, MU, S2, m1=1.0, steps=50)
    one_at_a_time = theory.quadratic_moments(lambda k: 0.5 / float(k) ** 0.75, MU, S2, m1=1.0, steps=50)
    for other in (as_values, one_at_a_time):
        np.testing.assert_allclose(other.eta[1:], q.eta[1:], rtol=1e-15)
        np.testing.assert_allclose(other.mse, q.mse, rtol=1e-12)


@pytest.mark.parametrize("schedule, error, match", [
    (lambda k: 0.5 - 0.0625 * k, ValueError, r"`schedule` must give finite step sizes >= 0; got "
                                             r"-0.0625 at step k=9"),  # exact in binary
    (lambda k: np.inf, ValueError, r"got inf at step k=1"),
    (lambda k: "fast", TypeError, r"`schedule` must return one real number per step; got 'fast' at step k=1"),
    ([0.1, -0.1, 0.1], ValueError, r"got -0.1 at step k=2"),
])
def test_bad_step_sizes_name_the_step(schedule, error, match):
    with pytest.raises(error, match=match):
        theory.quadratic_moments(schedule, MU, S2, m1=0.0, steps=3 if isinstance(schedule, list) else 20)


# -- exact p-values of Monte Carlo mean squares -------------------------------------------


def test_mean_square_pvalues_are_the_noncentral_chi_square_tails():
    r, m, v = 50, 0.7, 0.3
    x = np.array([0.4, 0.79, 1.2])  # below, near and above E(w - w*)^2 = m^2 + v = 0.79
    law = st.ncx2(r, r * m**2 / v)
    want = [min(1.0, 2 * min(law.cdf(r * xi / v), law.sf(r * xi / v))) for xi in x]
    np.testing.assert_allclose(theory.mean_square_pvalues(x, r, m, v), want, rtol=1e-12)
    # the arguments broadcast; a deterministic iterate (v = 0) has no p-value
    got = theory.mean_square_pvalues([[0.5], [0.9]], [10, 1000], 0.7, [0.3, 0.0])
    assert got.shape == (2, 2) and np.isnan(got[:, 1]).all() and np.isfinite(got[:, 0]).all()


@pytest.mark.parametrize("m, v, r", [(0.0, 1.0, 5), (2.0, 0.5, 20), (0.3, 2.0, 200)])
def test_mean_square_pvalues_are_uniform_for_gaussian_iterates(m, v, r):
    # Studies of r runs with w - w* ~ N(m, v) exactly: the p-value of each study's mean
    # square is uniform, so P(p <= alpha) = alpha. Binomial test at level 1e-6 per case:
    # a correct p-value fails it once in a million runs of this test.
    rng = np.random.default_rng(20240611 + r)
    studies, alpha = 20_000, 0.1
    w = m + np.sqrt(v) * rng.standard_normal((studies, r))
    p = theory.mean_square_pvalues((w**2).mean(axis=1), r, m, v)
    hits = int((p <= alpha).sum())
    assert st.binomtest(hits, studies, alpha).pvalue > 1e-6, hits


def test_mean_square_pvalues_take_the_normal_law_above_the_noncentrality_limit():
    r, v = 100, 1.0
    m = np.sqrt(theory.NCX2_LIMIT * v / r)  # noncentrality exactly at the limit
    sd = np.sqrt((2 * v**2 + 4 * m**2 * v) / r)  # the exact SD of a mean of (w - w*)^2
    x = m**2 + v + np.array([-2.0, 0.5, 1.0]) * sd
    m_above = m * (1 + 1e-6)
    sd_above = np.sqrt((2 * v**2 + 4 * m_above**2 * v) / r)
    above = theory.mean_square_pvalues(x, r, m_above, v)
    np.testing.assert_allclose(above, 2 * st.norm.sf(np.abs((x - m_above**2 - v) / sd_above)),
                               rtol=1e-12)
    # At the limit the law is normal to within its skewness, sqrt(8 (r + 3 nc)^2 / (r + 2 nc)^3)
    # ~ 3e-5, and the tail probabilities of the two laws differ by about that much.
    at = theory.mean_square_pvalues(x, r, m, v)
    np.testing.assert_allclose(at, 2 * st.norm.sf(np.abs((x - m**2 - v) / sd)), atol=1e-4)


@pytest.mark.parametrize("args, match", [
    (([1.0], [1, 2, 3], [0.0, 1.0], 1.0), r"`mc_mean`, `replicates`, `mean` and `var` must broadcast"),
    ((1.0, 0, 0.0, 1.0), r"`replicates` must be >= 1; got 0.0"),
    ((1.0, 10, 0.0, -1.0), r"`var` must be >= 0; got -1.0"),
    ((1.0, 10, 0.0, np.nan), r"`var` must be >= 0; got nan"),
])
def test_mean_square_pvalues_reject_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        theory.mean_square_pvalues(*args)
