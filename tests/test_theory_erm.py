"""lossvar.theory.erm: the spread of the least-squares minimizer (docs/theory.md, section 8).

Checked against scipy's inverse Wishart mean to rounding (rtol 1e-12) and
against simulated data sets with a z test of z = 4.5 on the Monte Carlo
standard error (false-failure rate P(|Z| > 4.5) ~ 6.8e-6 per comparison).
"""

import numpy as np
import pytest
import scipy.stats as st

from lossvar import stats, theory

Z = 4.5  # two-sided false-failure rate ~ 6.8e-6 per Monte Carlo comparison


@pytest.mark.parametrize("d, n", [(1, 3), (3, 10), (5, 40)])
def test_spread_is_sigma2_times_the_trace_of_the_inverse_wishart_mean(d, n):
    # X^T X ~ Wishart(n, I_d) for n rows x ~ N(0, I_d); w_N - w* = (X^T X)^-1 X^T eps
    mean_inverse = np.atleast_2d(st.invwishart(df=n, scale=np.eye(d)).mean())  # a scalar for d = 1
    assert theory.erm_spread(0.7, d, n) == pytest.approx(0.7 * np.trace(mean_inverse), rel=1e-12)


@pytest.mark.parametrize("d, n", [(2, 20), (3, 40)])
def test_spread_against_simulated_least_squares(d, n):
    # n - d - 1 well above 4: ||w_N - w*||^2 has a finite variance, so its mean is
    # normal to a good approximation at this many data sets
    rng = np.random.default_rng(20240611 + n)
    sets, sigma = 100_000, 1.5
    X = rng.standard_normal((sets, n, d))
    eps = sigma * rng.standard_normal((sets, n))
    err = np.linalg.solve(X.transpose(0, 2, 1) @ X, (X.transpose(0, 2, 1) @ eps[..., None]))[..., 0]
    mean, se = stats.mean_se((err**2).sum(axis=1))
    assert abs(mean - theory.erm_spread(sigma**2, d, n)) <= Z * se


def test_spread_over_many_sizes_falls_like_one_over_n():
    sizes = np.array([5, 10, 100, 1000.5])
    got = theory.erm_spread(2.0, 3, sizes)
    np.testing.assert_allclose(got, 2.0 * 3 / (sizes - 4), rtol=1e-15)
    assert isinstance(theory.erm_spread(2.0, 3, 5), float)


@pytest.mark.parametrize("args, error, match", [
    ((1.0, 3, 4), ValueError, r"`n` must be > dim \+ 1 = 4 .*; got 4.0"),
    ((1.0, 3, [10, 3]), ValueError, r"`n` must be > dim \+ 1 = 4 .*; got 3.0"),
    ((1.0, 0, 10), ValueError, r"`dim` must be an integer >= 1; got 0"),
    ((1.0, 2.5, 10), TypeError, r"`dim` must be an integer >= 1; got 2.5"),
    ((-1.0, 3, 10), ValueError, r"`noise_var` must be a finite real number in \[0"),
    ((1.0, 3, np.nan), ValueError, r"`n` must be finite"),
])
def test_bad_input_names_the_parameter(args, error, match):
    with pytest.raises(error, match=match):
        theory.erm_spread(*args)
