"""The problems' public Hessian of the mean loss (used for B_noise, docs/theory.md, section 10).

Closed forms are checked to rounding (rtol 1e-12); the smooth losses against central
differences of the mean gradient with step 1e-6, whose truncation and rounding errors
are below 1e-7 here.
"""

import numpy as np
import pytest

from lossvar.problems import LinearRegression, LogisticRegression, NoisyQuadratic, SoftmaxRegression


def _numeric_hessian(problem, w, X, y, h=1e-6):
    cols = []
    for j in range(w.size):
        e = np.zeros(w.size)
        e[j] = h
        cols.append((problem.mean_grad(w + e, X, y) - problem.mean_grad(w - e, X, y)) / (2 * h))
    return np.array(cols).T


def test_linear_regression_hessian_is_the_gram_matrix():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 3)), rng.normal(size=50)
    H = LinearRegression(l2=0.2).hessian(rng.normal(size=3), X, y)
    np.testing.assert_allclose(H, X.T @ X / 50 + 0.2 * np.eye(3), rtol=1e-12)


def test_quadratic_hessian_is_the_diagonal_of_its_curvatures():
    quad = NoisyQuadratic([0.5, 2.0, 8.0])
    xi = np.random.default_rng(1).normal(size=(10, 3))
    np.testing.assert_array_equal(quad.hessian([1.0, 2.0, 3.0], xi), np.diag([0.5, 2.0, 8.0]))
    with pytest.raises(ValueError, match="`X` must have d=3 columns"):
        quad.hessian([1.0, 2.0], xi[:, :2])


@pytest.mark.parametrize("problem, k", [(LogisticRegression(l2=0.1), 1),
                                        (SoftmaxRegression(n_classes=3, l2=0.1), 3)])
def test_smooth_hessians_match_finite_differences(problem, k):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(40, 3))
    y = rng.integers(0, 2 if k == 1 else 3, 40)
    w = rng.normal(size=3 * k)
    H = problem.hessian(w, X, y)
    assert H.shape == (3 * k, 3 * k)
    np.testing.assert_allclose(H, H.T, atol=1e-14)
    np.testing.assert_allclose(H, _numeric_hessian(problem, w, X, y), atol=1e-7)


def test_hessian_rejects_bad_input():
    with pytest.raises(ValueError, match="`w` must be a 1-D array"):
        LinearRegression().hessian(np.zeros((2, 3)), np.zeros((4, 3)), np.zeros(4))
    with pytest.raises(ValueError, match="`y` must have shape"):
        LinearRegression().hessian(np.zeros(3), np.zeros((4, 3)), np.zeros(5))
