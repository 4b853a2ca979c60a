"""lossvar.stats.intervals: the one home of the z quantile, a Monte Carlo mean's standard
error and normal interval, the variance and ratio intervals, and the bootstrap.

Coverage is checked with a two-sided binomial test at level 1e-3 per check (seeds fixed).
"""

import numpy as np
import pytest
from scipy import stats as st

from lossvar import stats


def test_mean_se_is_the_monte_carlo_standard_error():
    x = np.random.default_rng(0).exponential(size=(7, 50))
    m, se = stats.mean_se(x, axis=1)
    np.testing.assert_allclose(m, x.mean(axis=1), rtol=1e-15)
    np.testing.assert_allclose(se, np.sqrt(np.var(x, axis=1, ddof=1) / 50), rtol=1e-14)
    m0, se0 = stats.mean_se(x, axis=0)
    assert m0.shape == se0.shape == (50,)
    m1, se1 = stats.mean_se([3.0])
    assert m1 == 3.0 and np.isnan(se1)


def test_two_sided_z():
    assert stats.two_sided_z(0.95) == pytest.approx(st.norm.ppf(0.975), rel=1e-15)
    assert stats.two_sided_z(0.5) == pytest.approx(st.norm.ppf(0.75), rel=1e-15)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=rf"`confidence` must be strictly between 0 and 1; "
                                             rf"got {bad}"):
            stats.mean_interval(1.0, 0.1, bad)


@pytest.mark.parametrize("confidence", [0.8, 0.95])
def test_mean_interval_covers_at_its_level(confidence):
    # 4000 means of 400 skewed (exponential(1)) values, true mean 1: the count of
    # intervals covering it is Binomial(4000, ~confidence) (the CLT at R = 400 is off by
    # well under the test's resolution); a two-sided binomial test at level 1e-3.
    x = np.random.default_rng(11).exponential(size=(4000, 400))
    low, high = stats.mean_interval(*stats.mean_se(x, axis=1), confidence)
    covered = int(np.sum((low <= 1.0) & (1.0 <= high)))
    assert st.binomtest(covered, 4000, confidence).pvalue > 1e-3, covered


@pytest.mark.parametrize("confidence", [0.5, 0.9, 0.95, 0.999])
def test_fourth_moment_interval_is_the_log_scale_formula(confidence):
    # The normal quantile is scipy.special.ndtri, the function behind scipy.stats.norm.ppf.
    from lossvar.moments import Moments

    m = Moments.of(np.random.default_rng(3).exponential(size=5000))
    z = st.norm.ppf(0.5 + confidence / 2.0)
    half = z * m.variance_se() / m.variance
    low, high = stats.variance_interval(m, confidence)
    assert low == pytest.approx(m.variance * np.exp(-half), rel=1e-14)
    assert high == pytest.approx(m.variance * np.exp(half), rel=1e-14)
    assert stats.variance_interval(Moments(10, 1.0, 0.0, 0.0, 0.0), confidence) == (0.0, 0.0)


def test_variance_test_p_values_are_the_scaled_chi_square_law():
    # The chi-square CDF is scipy.special.chdtr, the function behind scipy.stats.chi2.cdf.
    rng = np.random.default_rng(4)
    sigma2 = rng.uniform(0.5, 2.0, 200)
    sd = sigma2 * rng.uniform(0.01, 0.3, 200)
    s2 = sigma2 + sd * rng.standard_normal(200)
    s2[:3] = (0.0, np.nan, 1.0)
    sd[2] = 0.0
    z, nu, p = stats.variance_test(s2, sigma2, sd)
    cdf = st.chi2.cdf(s2 * nu / sigma2, nu)
    want = np.where(nu >= stats.MIN_DOF, np.minimum(1.0, 2.0 * np.minimum(cdf, 1.0 - cdf)), np.nan)
    np.testing.assert_allclose(p[3:], want[3:], rtol=1e-13, atol=1e-300)
    assert p[0] == 0.0 and np.isnan(p[1]) and np.isnan(p[2]) and np.isnan(z[2])


def test_two_sided_score_inverts_the_two_sided_p_value():
    p = np.array([1.0, 0.5, 0.05, 1e-10, 1e-300])
    z = stats.two_sided_score(p)
    np.testing.assert_allclose(2 * st.norm.sf(z[:4]), p[:4], rtol=1e-12)
    assert z[0] == 0.0 and z[2] == pytest.approx(stats.two_sided_z(0.95), rel=1e-15)
    assert np.isfinite(z[-1]) and z[-1] > 37  # where Phi^-1(1 - p/2) would be inf


@pytest.mark.parametrize("rho", [0.0, 0.7])
def test_fieller_interval_covers_a_ratio_at_its_level(rho):
    # 2000 experiments of R = 400 correlated normal pairs with mean ratio 3 / 2; the
    # sample covariance divided by R stands for the variances of the means (at R = 400
    # the Student-t correction moves the coverage by under 1e-3).
    rng = np.random.default_rng([21, int(10 * rho)])
    cov = np.array([[1.0, rho], [rho, 1.0]]) * 4.0
    covered = 0
    for _ in range(2000):
        a, d = rng.multivariate_normal([3.0, 2.0], cov, size=400).T
        c = np.cov(np.vstack([a, d])) / 400
        lo, hi = stats.fieller_interval(a.mean(), d.mean(), c[0, 0], c[1, 1], c[0, 1], 0.95)
        covered += lo <= 1.5 <= hi
    assert st.binomtest(covered, 2000, 0.95).pvalue > 1e-3, covered


def test_fieller_interval_is_nan_where_the_denominator_is_not_significant():
    # s^2 <= z^2 v_s: the set of ratios is unbounded
    assert np.isnan(stats.fieller_interval(1.0, 0.1, 0.01, 0.01, 0.0, 0.95)).all()
    lo, hi = stats.fieller_interval(1.0, 2.0, 1e-6, 1e-6, 0.0, 0.95)
    assert lo < 0.5 < hi and hi - lo < 1e-2


def test_mean_interval_with_degrees_of_freedom_is_student_t():
    m, se = np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.2, 0.3])
    low, high = stats.mean_interval(m, se, 0.9, dof=np.array([1, 5, 40]))
    want = st.t.interval(0.9, [1, 5, 40], loc=m, scale=se)
    np.testing.assert_allclose(low, want[0], rtol=1e-14)
    np.testing.assert_allclose(high, want[1], rtol=1e-14)
    assert np.isnan(stats.mean_interval(1.0, 0.1, 0.95, dof=0)).all()  # one run: no interval
    low, high = stats.mean_interval(1.0, 0.1, 0.95)  # without dof: the normal interval
    assert high - low == pytest.approx(2 * st.norm.ppf(0.975) * 0.1, rel=1e-14)


def test_fieller_interval_with_a_lower_bound_reports_the_hull_above_it():
    z2 = st.norm.ppf(0.975) ** 2
    # Both estimates clearly positive: the bounded interval, unchanged by the bound.
    assert stats.fieller_interval(1.0, 2.0, 1e-6, 1e-6, 0.0, lower=0.0) == stats.fieller_interval(
        1.0, 2.0, 1e-6, 1e-6, 0.0)
    # An interval reaching below the bound is cut at it: t/s = 0.05, and
    # (t - rho s)^2 <= z^2 v_t holds down to rho = (t - z sqrt(v_t)) / s < 0.
    lo, hi = stats.fieller_interval(0.1, 2.0, 0.01, 1e-8, 0.0, lower=0.0)
    assert lo == 0.0 and hi == pytest.approx((0.1 + np.sqrt(z2 * 0.01)) / 2.0, rel=1e-6)
    # The denominator not significant but the numerator is: a ray [r, inf) above the bound,
    # with r the positive root of (t - rho s)^2 = z^2 (v_t + rho^2 v_s).
    t, s, v_t, v_s = 1.0, 0.1, 1e-4, 0.01
    lo, hi = stats.fieller_interval(t, s, v_t, v_s, 0.0, lower=0.0)
    assert hi == np.inf and (t - lo * s) ** 2 == pytest.approx(z2 * (v_t + lo**2 * v_s))
    assert lo > 0 and np.isnan(stats.fieller_interval(t, s, v_t, v_s, 0.0)).all()
    # Neither significant: every ratio above the bound.
    assert stats.fieller_interval(0.01, 0.01, 1.0, 1.0, 0.0, lower=0.0) == (0.0, np.inf)
    # A set entirely below the bound is empty there.
    assert np.isnan(stats.fieller_interval(-1.0, 2.0, 1e-6, 1e-6, 0.0, lower=0.0)).all()
    assert np.isnan(stats.fieller_interval(np.nan, 2.0, 1e-6, 1e-6, 0.0, lower=0.0)).all()


def test_bootstrap_standard_error_of_independent_samples():
    # A stratified bootstrap of the difference of two means: each sample resampled by
    # itself, so SE^2 = s1^2/n1 + s2^2/n2 (plug-in, ddof 0). With 4000 resamples the
    # bootstrap SE is within 4 of its own relative SEs, 4 sqrt(1/(2 * 4000)) = 4.5%,
    # of that (a false-failure rate of 6e-5).
    rng = np.random.default_rng(5)
    x, y = rng.exponential(size=300), rng.normal(size=80)
    res = stats.bootstrap((x, y), lambda a, b, axis=-1: a.mean(axis=axis) - b.mean(axis=axis),
                          n_resamples=4000, rng=np.random.default_rng(6))
    want = np.sqrt(x.var() / x.size + y.var() / y.size)
    assert res.standard_error == pytest.approx(want, rel=4 * np.sqrt(1 / 8000))
    lo, hi = res.confidence_interval
    assert lo < x.mean() - y.mean() < hi
    again = stats.bootstrap((x, y), lambda a, b, axis=-1: a.mean(axis=axis) - b.mean(axis=axis),
                            n_resamples=4000, rng=np.random.default_rng(6), batch=7)
    assert again.standard_error == pytest.approx(res.standard_error, rel=0.1)


def test_bootstrap_resamples_whole_columns_of_a_matrix():
    # A (k, R) sample: the R columns (replicates) are resampled, each carrying its k values,
    # so a statistic of the rows sees the same replicates in every row.
    rng = np.random.default_rng(8)
    base = rng.normal(size=200)
    v = np.vstack([base, 2 * base])
    res = stats.bootstrap((v,), lambda a, axis=-1: a[1].mean(axis=axis) - 2 * a[0].mean(axis=axis),
                          n_resamples=50, rng=np.random.default_rng(9))
    np.testing.assert_allclose(res.bootstrap_distribution, 0.0, atol=1e-12)


def test_bootstrap_interval_nan_end_without_a_warning():
    # a statistic that is NaN on some resamples: the interval's end says so, no warning
    x = np.array([0.0, 0.0, 1.0, 2.0])
    res = stats.bootstrap((x,), lambda a, axis=-1: np.where(a.min(axis=axis) > 0, 1.0, np.nan),
                          n_resamples=20, rng=np.random.default_rng(0))
    assert np.isnan(res.confidence_interval.low)
    with pytest.raises(ValueError, match="`n_resamples` must be"):
        stats.bootstrap((x,), np.mean, n_resamples=1)
