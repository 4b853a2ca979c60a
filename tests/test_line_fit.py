"""The one straight-line fit (stats.line_fit) against numpy's weighted polynomial fit."""

import numpy as np
import pytest

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
