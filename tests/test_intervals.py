"""lossvar.stats.mean_se, mean_interval and two_sided_z: the one home of a Monte Carlo
mean's standard error and normal interval (used by run_sgd's summary, the rate fits and
every study)."""

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
