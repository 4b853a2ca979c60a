"""lossvar.stats.fits: the one straight-line fit against numpy's weighted polynomial fit,
and the power law with the test of its exponent.

Calibration is checked with a two-sided binomial test at level 1e-3 (seeds fixed).
"""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from lossvar import stats
from lossvar.stats import line_fit


def test_matches_numpy_weighted_polyfit_and_is_vectorized():
    rng = np.random.default_rng(0)
    x = np.log(np.arange(1, 30.0))
    Y = 2.0 - 0.7 * x + rng.normal(size=(4, x.size))
    w = rng.uniform(0.5, 2.0, size=x.size)
    rows = line_fit(x, Y, w)
    for i, y in enumerate(Y):
        slope, intercept = np.polyfit(x, y, 1, w=np.sqrt(w))  # polyfit weights multiply residuals
        one = line_fit(x, y, w)
        assert one.slope == pytest.approx(slope, rel=1e-12) == pytest.approx(rows.slope[i], rel=1e-12)
        assert one.intercept == pytest.approx(intercept, rel=1e-12)
        resid = y - intercept - slope * x
        assert one.chi2 == pytest.approx(np.sum(w * resid**2), rel=1e-10)
    assert rows.dof == x.size - 2


def test_standard_errors():
    x = np.arange(10.0)
    fit = line_fit(x, 3.0 + 0.5 * x, np.full(10, 4.0))
    assert fit.slope == pytest.approx(0.5) and fit.chi2 == pytest.approx(0.0, abs=1e-20)
    # Known inverse-variance weights: Var(slope) = 1 / sum w (x - xbar)^2.
    assert fit.se_known == pytest.approx(1 / np.sqrt(4.0 * np.sum((x - x.mean()) ** 2)))
    noisy = line_fit(x, np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1.0]))
    assert noisy.se_residual == pytest.approx(np.sqrt(noisy.chi2 / 8 / np.sum((x - x.mean()) ** 2)))


def test_power_law_recovers_an_exact_law():
    n = np.array([10.0, 30.0, 100.0, 300.0])
    fit = stats.power_law_fit(n, 5.0 * n**-0.5, 1e-6 * n**-0.5, null_exponent=-0.5)
    assert fit.exponent == pytest.approx(-0.5, abs=1e-9) and fit.pvalue == pytest.approx(1.0, abs=1e-6)
    # log C, after the bias term (se/value)^2 / 2 = 5e-13 / 2 ... of a tiny relative error
    assert fit.intercept == pytest.approx(np.log(5.0), abs=1e-9)
    assert fit.sizes == (10.0, 30.0, 100.0, 300.0) and fit.dof == 2


def test_power_law_test_is_calibrated_and_has_power():
    # Means of R = 2000 exponential replicates scaled like 1/n, with their Monte Carlo SE:
    # under the law, P(p < 0.05) = 0.05 up to the delta method's error at 2% relative SE.
    rng = np.random.default_rng(3)
    n = np.array([10.0, 20.0, 40.0, 80.0, 160.0])
    hits, power = 0, 0
    for _ in range(400):
        x = rng.exponential(size=(n.size, 2000)) / n[:, None]
        m, se = stats.mean_se(x, axis=1)
        hits += stats.power_law_fit(n, m, se).pvalue < 0.05
        power += stats.power_law_fit(n, m * n**0.05, se * n**0.05).pvalue < 0.05
    assert st.binomtest(hits, 400, 0.05).pvalue > 1e-3, hits
    assert power > 0.9 * 400, power  # an exponent of -0.95 is told apart from -1


def test_scaling_fit_is_the_power_law_of_the_corrected_variances():
    t = pd.DataFrame({"batch_size": [1, 4, 16, 100], "variance": [2.0, 0.49, 0.13, 0.0],
                      "variance_se": [0.1, 0.02, 0.006, 0.0], "fpc": [1.0, 0.97, 0.85, 0.0]})
    fit = stats.scaling_fit(t)
    want = stats.power_law_fit([1, 4, 16], t.variance[:3] / t.fpc[:3],
                               t.variance_se[:3] / t.fpc[:3])
    assert fit.exponent == pytest.approx(want.exponent, rel=1e-12)
    assert fit.pvalue == pytest.approx(want.pvalue, rel=1e-9)
    assert fit.batch_sizes == (1, 4, 16) and 100 in fit.excluded


@pytest.mark.parametrize(("args", "match"), [
    (([1, 2], [1.0, 0.5], [0.1, 0.1]), "at least 3 distinct sizes"),
    (([1, 2, 2], [1.0, 0.5, 0.5], [0.1, 0.1, 0.1]), "at least 3 distinct sizes"),
    (([1, 2, 4], [1.0, 0.0, 0.25], [0.1, 0.1, 0.1]), "`values` must be finite and positive"),
    (([1, 2, 4], [1.0, 0.5, 0.25], [0.1, np.nan, 0.1]), "`se` must be finite and positive"),
    (([1, 2, 4], [1.0, 0.5], [0.1, 0.1]), "must be 1-D of one length"),
])
def test_power_law_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        stats.power_law_fit(*args)
