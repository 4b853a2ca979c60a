"""lossvar.theory.one_step: one SGD step on a quadratic model (docs/theory.md, section 10;
McCandlish et al. 2018, eqs. 2.3-2.6).

Hand-computed cases are checked to rounding; Monte Carlo checks use a fixed
seed and a tolerance of z = 4.5 of the Monte Carlo's own standard error: a
correct formula fails such a check with probability P(|Z| > 4.5) ~ 6.8e-6 per
comparison.
"""

from fractions import Fraction

import numpy as np
import pytest

from lossvar import stats, theory

WITH, WITHOUT = "with_replacement", "without_replacement"
Z = 4.5  # two-sided false-failure rate ~ 6.8e-6 per Monte Carlo comparison


def test_one_step_hand_computed_one_dimension():
    # G = 2, H = 4, Sigma = 3, B = 2 independent draws: G^T H G = 16, tr(H Sigma) = 12, c_B = 1/2
    one = theory.optimal_learning_rate([2.0], [[4.0]], [[3.0]], 2, sampling=WITH)
    assert one.learning_rate == pytest.approx(4 / 22, rel=1e-15)
    assert one.improvement == pytest.approx(16 / 44, rel=1e-15)
    assert (one.eps_max, one.improvement_max, one.b_noise, one.batch_size) == (0.25, 0.5, 0.75, 2)
    # L - eps ||G||^2 + eps^2/2 (16 + 6) at L = 5, eps = 0.1
    assert theory.one_step_expected_loss(5.0, [2.0], [[4.0]], [[3.0]], 2, 0.1,
                                         sampling=WITH) == pytest.approx(4.71)


def test_one_step_hand_computed_two_dimensions_without_replacement():
    # H = diag(1, 3), G = (1, 2): ||G||^2 = 5, G^T H G = 13; the off-diagonal of Sigma does not
    # enter tr(H Sigma) = 1*2 + 3*1 = 5. N = 5, B = 2: c_B = 3/(2*4) = 3/8, curvature 13 + 15/8.
    g, h, cov = [1.0, 2.0], np.diag([1.0, 3.0]), [[2.0, 0.5], [0.5, 1.0]]
    one = theory.optimal_learning_rate(g, h, cov, 2, n=5, sampling=WITHOUT)
    curvature = 13 + Fraction(15, 8)
    assert one.learning_rate == pytest.approx(float(5 / curvature), rel=1e-15)
    assert one.improvement == pytest.approx(float(Fraction(25, 2) / curvature), rel=1e-15)
    assert one.eps_max == pytest.approx(5 / 13, rel=1e-15)
    assert one.improvement_max == pytest.approx(25 / 26, rel=1e-15)
    assert one.b_noise == pytest.approx(5 / 13, rel=1e-15)
    # the full batch without replacement is the exact gradient step
    full = theory.optimal_learning_rate(g, h, cov, 5, n=5, sampling=WITHOUT)
    assert (full.learning_rate, full.improvement) == (one.eps_max, one.improvement_max)


def _random_model(seed, p=4):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((p, p))
    b = rng.standard_normal((p, p))
    return rng.standard_normal(p), a @ a.T + 0.1 * np.eye(p), b @ b.T


def test_optimum_is_eps_max_over_one_plus_b_noise_over_b():
    g, h, cov = _random_model(1)
    sizes = np.array([1, 2, 3, 16, 1000])
    one = theory.optimal_learning_rate(g, h, cov, sizes, sampling=WITH)
    assert one.learning_rate.shape == sizes.shape and one.batch_size.tolist() == sizes.tolist()
    factor = 1 + one.b_noise / sizes
    np.testing.assert_allclose(one.learning_rate, one.eps_max / factor, rtol=1e-13)
    np.testing.assert_allclose(one.improvement, one.improvement_max / factor, rtol=1e-13)
    for b in sizes:  # the array result is the scalar result element by element
        assert theory.optimal_learning_rate(g, h, cov, int(b), sampling=WITH).learning_rate == pytest.approx(
            one.learning_rate[sizes == b][0], rel=1e-15)


@pytest.mark.parametrize("sampling, n", [(WITH, None), (WITHOUT, 10)])
def test_expected_loss_is_minimized_at_the_optimal_rate(sampling, n):
    g, h, cov = _random_model(2)
    loss, b = 3.0, 4
    one = theory.optimal_learning_rate(g, h, cov, b, n=n, sampling=sampling)
    at_opt = theory.one_step_expected_loss(loss, g, h, cov, b, one.learning_rate, n=n, sampling=sampling)
    assert at_opt == pytest.approx(loss - one.improvement, rel=1e-13)
    eps = one.learning_rate * np.linspace(0.5, 1.5, 101)  # index 50 is the optimum
    curve = theory.one_step_expected_loss(loss, g, h, cov, b, eps, n=n, sampling=sampling)
    assert curve.shape == eps.shape and np.argmin(curve) == 50
    assert np.all(curve[:50] > at_opt) and np.all(curve[51:] > at_opt)


def _quadratic_data(seed=20240611, n=12, p=3):
    """Per-example losses l_i(w) = 1/2 (w - x_i)^T H (w - x_i) and their exact model."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((p, p))
    h = a @ a.T / p + 0.5 * np.eye(p)
    x = rng.standard_normal((n, p))
    xbar = x.mean(axis=0)
    w = xbar + 0.2 * rng.standard_normal(p)  # near the optimum: the noise term is large
    grad = h @ (w - xbar)  # g_i = H (w - x_i), G their mean
    cov = h @ np.cov(x.T, ddof=0) @ h  # Cov(g_i) with divisor N
    return rng, h, x, w, grad, cov


def _full_loss(w, h, x):
    d = w[..., None, :] - x  # (..., N, p)
    return 0.5 * np.einsum("...np,pq,...nq->...", d, h, d) / x.shape[0]


def test_model_matches_per_example_gradients():
    _, h, x, w, grad, cov = _quadratic_data()
    g_i = (w - x) @ h
    np.testing.assert_allclose(grad, g_i.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(cov, np.cov(g_i.T, ddof=0), rtol=1e-12, atol=1e-14)


def _monte_carlo_step(sampling, b, eps, reps=200_000):
    """Mean and standard error of L(w - eps g_B) over random batches, and the exact model."""
    rng, h, x, w, grad, cov = _quadratic_data()
    n = x.shape[0]
    if sampling == WITH:
        idx = rng.integers(0, n, (reps, b))
    else:  # the first B of a random permutation: a uniformly random B-subset
        idx = np.argsort(rng.random((reps, n)), axis=1)[:, :b]
    g_b = (w - x[idx].mean(axis=1)) @ h
    after = _full_loss(w - eps * g_b, h, x)
    model = dict(loss=_full_loss(w, h, x), grad=grad, hessian=h, cov=cov, batch_size=b)
    mean, se = stats.mean_se(after)
    return mean, se, model


@pytest.mark.parametrize("sampling", [WITH, WITHOUT])
@pytest.mark.parametrize("b", [2, 6])
def test_expected_loss_against_monte_carlo_on_an_exact_quadratic(sampling, b):
    eps = 0.4  # below 2 / lambda_max(H), on the order of eps_max
    mc, se, model = _monte_carlo_step(sampling, b, eps)
    exact = theory.one_step_expected_loss(**model, learning_rate=eps, n=12, sampling=sampling)
    assert abs(mc - exact) <= Z * se  # false-failure rate ~ 6.8e-6 per case (Z = 4.5)


def test_without_replacement_needs_the_finite_population_factor():
    # B = N/2 = 6 of 12: the right c_B is (N - B)/(B (N - 1)) = 1/11, not 1/B = 1/6
    eps = 0.4
    mc, se, model = _monte_carlo_step(WITHOUT, 6, eps)
    right = theory.one_step_expected_loss(**model, learning_rate=eps, n=12, sampling=WITHOUT)
    wrong = theory.one_step_expected_loss(**model, learning_rate=eps, sampling=WITH)
    assert abs(mc - right) <= Z * se
    assert abs(mc - wrong) > 50 * se  # far beyond any plausible Monte Carlo error


G1, H1, S1 = [1.0, 2.0], np.eye(2), np.eye(2)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(grad=[[1.0, 2.0]]), ValueError, r"`grad` must be a 1-D array; got an array of shape \(1, 2\)"),
    (dict(grad=[]), ValueError, r"`grad` must have at least one entry"),
    (dict(hessian=np.eye(3)), ValueError,
     r"`hessian` must have shape \(p, p\) = \(2, 2\) to match `grad` of shape \(2,\); got shape \(3, 3\)"),
    (dict(cov=[1.0, 1.0]), ValueError, r"`cov` must be a 2-D array; got an array of shape \(2,\)"),
    (dict(cov=np.ones((2, 3))), ValueError, r"`cov` must have shape \(p, p\) = \(2, 2\)"),
    (dict(hessian=-np.eye(2)), ValueError, r"positive curvature along `grad` .*; got G\^T H G = -5.0"),
    (dict(grad=[0.0, 0.0]), ValueError, r"got G\^T H G = 0.0"),
    (dict(cov=-np.eye(2)), ValueError, r"tr\(H cov\) >= 0 .*; got -2.0"),
    (dict(sampling=WITHOUT), ValueError, r"`n` .* is required with sampling='without_replacement'; got None"),
    (dict(sampling=WITHOUT, n=3, batch_size=4), ValueError,
     r"`batch_size` must be an integer in \[1, 3\]; got 4"),
    (dict(batch_size=[2, 0]), ValueError, r"`batch_size` must be an integer >= 1; got 0"),
    (dict(batch_size=True), TypeError, r"`batch_size` must be an integer >= 1; got True"),
    (dict(sampling="fresh"), ValueError, r"`sampling` must be one of .*, but 'fresh' was passed"),
])
def test_one_step_rejects_bad_input(kwargs, error, match):
    args = dict(grad=G1, hessian=H1, cov=S1, batch_size=2, sampling=WITH) | kwargs
    with pytest.raises(error, match=match):
        theory.optimal_learning_rate(**args)


@pytest.mark.parametrize("kwargs, match", [
    (dict(learning_rate=-0.1), r"`learning_rate` must be >= 0; got -0.1"),
    (dict(learning_rate=[0.1, np.inf]), r"`learning_rate` must be finite"),
    (dict(learning_rate=[0.1, 0.2, 0.3], batch_size=[1, 2]),
     r"`batch_size` and `learning_rate` must broadcast together; got shapes \(2,\) and \(3,\)"),
    (dict(loss=np.nan), r"`loss` must be a finite real number"),
])
def test_expected_loss_rejects_bad_input(kwargs, match):
    args = dict(loss=1.0, grad=G1, hessian=H1, cov=S1, batch_size=2, learning_rate=0.1,
                sampling=WITH) | kwargs
    with pytest.raises(ValueError, match=match):
        theory.one_step_expected_loss(**args)


def test_expected_loss_broadcasts_batch_size_and_learning_rate():
    eps = np.array([[0.0], [0.1], [0.2]])
    sizes = np.array([1, 2, 4, 8])
    got = theory.one_step_expected_loss(1.0, G1, H1, S1, sizes, eps, sampling=WITH)
    assert got.shape == (3, 4)
    # ||G||^2 = G^T H G = 5, tr(H Sigma) = 2
    np.testing.assert_allclose(got, 1.0 - 5 * eps + eps**2 / 2 * (5 + 2 / sizes), rtol=1e-15)
    np.testing.assert_array_equal(got[0], 1.0)
