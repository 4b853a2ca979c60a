"""Per-sample losses and gradients: finite differences, shapes, stability, minimizers."""

import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from lossvar.data import GaussianNoisePopulation
from lossvar.problems import MLP, LinearRegression, LogisticRegression, NoisyQuadratic, SoftmaxRegression

PROBLEMS = {
    "linear": LinearRegression(),
    "linear-l2": LinearRegression(l2=0.3),
    "logistic": LogisticRegression(),
    "logistic-l2": LogisticRegression(l2=0.3),
    "softmax": SoftmaxRegression(3),
    "softmax-l2": SoftmaxRegression(4, l2=0.3),
    "quadratic": NoisyQuadratic([0.5, 2.0, 1.0], w_star=[1.0, -1.0, 0.5]),
}


def _targets(problem, rng, shape):
    if isinstance(problem, LogisticRegression):
        return rng.integers(0, 2, shape).astype(float)
    if isinstance(problem, SoftmaxRegression):
        return rng.integers(0, problem.n_classes, shape)
    if isinstance(problem, NoisyQuadratic):
        return None
    return rng.standard_normal(shape)


def _case(problem, rng, *, n, d, w_lead=(), x_lead=()):
    if isinstance(problem, NoisyQuadratic):
        d = problem.dim
    X = rng.standard_normal(x_lead + (n, d))
    y = _targets(problem, rng, x_lead + (n,))
    w = rng.standard_normal(w_lead + (problem.n_params(d),))
    return w, X, y


def _central_difference(f, w):
    """d f / d w_j for every j by central differences, stacked on the last axis.

    Step h_j = 1e-6 max(1, |w_j|): truncation error h^2 |f'''| / 6 ~ 1e-12 and
    rounding error eps |f| / h ~ 2e-10 |f| for the O(1) values used here.
    """
    cols = []
    for j in range(w.size):
        h = 1e-6 * max(1.0, abs(w[j]))
        e = np.zeros_like(w)
        e[j] = h
        cols.append((f(w + e) - f(w - e)) / (2 * h))
    return np.stack(cols, axis=-1)


def _fd_tolerance(values):
    # 1e-7 (1 + |f|) is 500 times the worst rounding error of the difference
    # quotient (2e-10 |f|) and far above its truncation error (1e-12).
    return 1e-7 * (1.0 + np.abs(values).max())


@pytest.mark.parametrize("key", PROBLEMS)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6), d=st.integers(1, 4))
def test_gradients_match_central_differences(key, seed, n, d):
    problem = PROBLEMS[key]
    w, X, y = _case(problem, np.random.default_rng(seed), n=n, d=d)
    losses = problem.loss(w, X, y)
    assert_allclose(problem.grad(w, X, y),
                    _central_difference(lambda v: problem.loss(v, X, y), w),
                    rtol=1e-6, atol=_fd_tolerance(losses))
    assert_allclose(problem.mean_grad(w, X, y),
                    _central_difference(lambda v: problem.mean_loss(v, X, y), w),
                    rtol=1e-6, atol=_fd_tolerance(losses))


@pytest.mark.parametrize("key", PROBLEMS)
def test_means_are_averages_of_per_sample_values(key):
    problem = PROBLEMS[key]
    w, X, y = _case(problem, np.random.default_rng(1), n=7, d=3, w_lead=(4,), x_lead=(4,))
    # Different summation orders only: agreement to a few ulps of the values.
    assert_allclose(problem.mean_loss(w, X, y), problem.loss(w, X, y).mean(axis=-1), rtol=1e-13)
    assert_allclose(problem.mean_grad(w, X, y), problem.grad(w, X, y).mean(axis=-2),
                    rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("key", PROBLEMS)
@pytest.mark.parametrize("w_lead", [(), (5,), (2, 3)])
def test_stacked_w_with_shared_data_is_bit_identical_to_a_loop(key, w_lead):
    problem = PROBLEMS[key]
    n, d = 9, 3
    w, X, y = _case(problem, np.random.default_rng(2), n=n, d=d, w_lead=w_lead)
    p = w.shape[-1]
    loss, grad = problem.loss(w, X, y), problem.grad(w, X, y)
    mean_loss, mean_grad = problem.mean_loss(w, X, y), problem.mean_grad(w, X, y)
    assert loss.shape == w_lead + (n,)
    assert grad.shape == w_lead + (n, p)
    assert mean_loss.shape == w_lead
    assert mean_grad.shape == w_lead + (p,)
    for idx in np.ndindex(w_lead):
        assert_array_equal(loss[idx], problem.loss(w[idx], X, y))
        assert_array_equal(grad[idx], problem.grad(w[idx], X, y))
        assert_array_equal(mean_loss[idx], problem.mean_loss(w[idx], X, y))
        assert_array_equal(mean_grad[idx], problem.mean_grad(w[idx], X, y))


@pytest.mark.parametrize("key", PROBLEMS)
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), r=st.integers(1, 5), b=st.integers(1, 8))
def test_one_batch_per_replicate_is_bit_identical_to_a_loop(key, seed, r, b):
    problem = PROBLEMS[key]
    w, X, y = _case(problem, np.random.default_rng(seed), n=b, d=3, w_lead=(r,), x_lead=(r,))
    p = w.shape[-1]
    loss, grad = problem.loss(w, X, y), problem.grad(w, X, y)
    mean_loss, mean_grad = problem.mean_loss(w, X, y), problem.mean_grad(w, X, y)
    assert (loss.shape, grad.shape, mean_loss.shape, mean_grad.shape) == (
        (r, b), (r, b, p), (r,), (r, p))
    for i in range(r):
        yi = None if y is None else y[i]
        assert_array_equal(loss[i], problem.loss(w[i], X[i], yi))
        assert_array_equal(grad[i], problem.grad(w[i], X[i], yi))
        assert_array_equal(mean_loss[i], problem.mean_loss(w[i], X[i], yi))
        assert_array_equal(mean_grad[i], problem.mean_grad(w[i], X[i], yi))


ALL_PROBLEMS = {**PROBLEMS, "mlp": MLP((3, 4, 3), l2=0.1), "mlp-squared": MLP((3, 2, 1), "relu", "squared")}


def _mlp_case(problem, rng, *, n, w_lead=(), x_lead=()):
    X = rng.standard_normal(x_lead + (n, 3))
    k = problem.sizes[-1]
    y = rng.standard_normal(x_lead + (n,)) if k == 1 else rng.integers(0, k, x_lead + (n,))
    return rng.standard_normal(w_lead + (problem.p,)), X, y


@pytest.mark.parametrize("key", ALL_PROBLEMS)
@pytest.mark.parametrize("w_lead, x_lead", [((), ()), ((5,), ()), ((5,), (5,)), ((2, 3), (3,))])
def test_mean_grad_into_out_gives_the_same_bits(key, w_lead, x_lead):
    # The hot path: the gradient written into the caller's array, the intermediate
    # arrays kept between calls; the same operations as without ``out``.
    problem = ALL_PROBLEMS[key]
    rng = np.random.default_rng(11)
    for n in (1, 6, 6):  # the second call of a shape reuses its scratch
        if isinstance(problem, MLP):
            w, X, y = _mlp_case(problem, rng, n=n, w_lead=w_lead, x_lead=x_lead)
        else:
            w, X, y = _case(problem, rng, n=n, d=3, w_lead=w_lead, x_lead=x_lead)
        if isinstance(problem, (LinearRegression, LogisticRegression, MLP)) and y is not None:
            y = np.asarray(y, dtype=np.float64)  # as run_sgd passes them
        want = problem.mean_grad(w, X, y)
        out = np.full(want.shape, np.nan)
        got = problem.mean_grad(w, X, y, out=out)
        assert got is out
        assert_array_equal(got.view(np.int64), want.view(np.int64))


@pytest.mark.parametrize("key", ["linear", "logistic-l2", "softmax", "quadratic"])
def test_mean_grad_out_of_the_wrong_kind_is_named(key):
    problem = PROBLEMS[key]
    w, X, y = _case(problem, np.random.default_rng(12), n=4, d=3, w_lead=(2,))
    for bad in (np.empty((2, w.shape[-1] + 1)), np.empty((2, w.shape[-1]), np.float32),
                np.empty((w.shape[-1], 2)).T, [[0.0] * w.shape[-1]] * 2):
        with pytest.raises(ValueError, match=r"`out` must be a writeable C-contiguous float64 "
                                             r"array of shape \(2, \d+\); got a"):
            problem.mean_grad(w, X, y, out=bad)


@pytest.mark.parametrize("key", ["linear", "logistic-l2", "mlp"])
def test_a_non_finite_row_leaves_the_other_rows_alone(key):
    # run_sgd's diverged replicates: NaN rows of w give NaN gradients, the others theirs.
    problem = ALL_PROBLEMS[key]
    rng = np.random.default_rng(14)
    if isinstance(problem, MLP):
        w, X, y = _mlp_case(problem, rng, n=4, w_lead=(3,), x_lead=(3,))
    else:
        w, X, y = _case(problem, rng, n=4, d=3, w_lead=(3,), x_lead=(3,))
    y = np.asarray(y, dtype=np.float64)
    want = problem.mean_grad(w, X, y)
    w[1] = np.nan
    with np.errstate(invalid="ignore"):
        got = problem.mean_grad(w, X, y, out=np.empty(want.shape))
    assert np.isnan(got[1]).all()
    assert_array_equal(got[[0, 2]], want[[0, 2]])


def _awkward_stack(rng, R, d):
    """Parameters with the awkward values: equal rows, zeros of both signs, NaN, inf, huge."""
    w = rng.standard_normal((max(R, 8), d)) * 0.5
    w[1] = w[0]
    w[2] = -0.0
    w[3, 0] = np.nan
    w[4, 1] = np.inf
    w[5, 2] = -np.inf
    w[6] = 1e200
    w[7, ::2] = 5e-324
    return w[:R]


@pytest.mark.parametrize("n, R", [(37, 29), (5003, 29), (40_000, 3), (3001, 400)],
                         ids=["one chunk", "chunks of 6 rows", "one row per chunk", "many chunks"])
@pytest.mark.parametrize("key", ["linear", "linear-l2", "logistic", "logistic-l2", "softmax-l2"])
def test_mean_loss_of_a_stack_is_each_rows_own(key, n, R):
    # A stack on shared data is computed by chunks of rows (one row when all rows are
    # equal), and run_sgd cuts it into parts: each row's value is that row's alone.
    problem = PROBLEMS[key]
    rng = np.random.default_rng(0)
    w, X, y = _case(problem, rng, n=n, d=4)
    X[:, 1] = -0.0
    X[::5, 2] = 0.0
    d = X.shape[1]
    with np.errstate(all="ignore"):
        for stack in (rng.standard_normal((2, problem.n_params(d))),
                      _awkward_stack(rng, R, problem.n_params(d)),
                      np.tile(rng.standard_normal(problem.n_params(d)), (R, 1))):
            got = problem.mean_loss(stack, X, y)
            assert got.shape == (len(stack),)
            assert_array_equal(got.view(np.int64),
                               np.array([problem.mean_loss(row, X, y) for row in stack]).view(np.int64))
            half = len(stack) // 2
            parts = np.concatenate([problem.mean_loss(stack[:half], X, y),
                                    problem.mean_loss(stack[half:], X, y)])
            assert_array_equal(got.view(np.int64), parts.view(np.int64))


def test_data_leading_dims_broadcast_against_w():
    problem = LinearRegression()
    rng = np.random.default_rng(3)
    w = rng.standard_normal((2, 1, 3))
    X = rng.standard_normal((4, 5, 3))
    y = rng.standard_normal((4, 5))
    assert problem.loss(w, X, y).shape == (2, 4, 5)
    assert problem.mean_grad(w, X, y).shape == (2, 4, 3)


def test_linear_loss_formula():
    problem = LinearRegression(l2=0.5)
    w = np.array([1.0, -2.0])
    X = np.array([[1.0, 1.0], [0.0, 2.0]])
    y = np.array([0.0, 1.0])
    # residuals -1 and -5; penalty 0.25 * 5
    assert_array_equal(problem.loss(w, X, y), [0.5 + 1.25, 12.5 + 1.25])
    assert_array_equal(problem.grad(w, X, y), [[-1 + 0.5, -1 - 1.0], [0.5, -10 - 1.0]])


def test_logistic_is_exact_at_huge_logits():
    problem = LogisticRegression()
    X = np.array([[1000.0], [-1000.0], [1000.0], [-1000.0]])
    y = np.array([1.0, 0.0, 0.0, 1.0])
    w = np.array([1.0])
    assert_array_equal(problem.loss(w, X, y), [0.0, 0.0, 1000.0, 1000.0])
    assert_array_equal(problem.grad(w, X, y), [[0.0], [0.0], [1000.0], [1000.0]])


def test_logistic_keeps_relative_precision_for_confident_correct_predictions():
    # log(1 + e^-z) = log1p(exp(-z)) at z = 30, which logaddexp(0, z) - z loses.
    loss = LogisticRegression().loss(np.array([30.0]), np.array([[1.0]]), np.array([1.0]))
    assert_allclose(loss, np.log1p(np.exp(-30.0)), rtol=1e-15)


def test_softmax_is_exact_at_huge_logits():
    problem = SoftmaxRegression(3)
    w = np.array([1e4, 0.0, -1e4])  # d = 1, W = [[1e4, 0, -1e4]]
    X = np.ones((3, 1))
    y = np.array([0, 1, 2])
    assert_array_equal(problem.loss(w, X, y), [0.0, 1e4, 2e4])
    assert_array_equal(problem.grad(w, X, y), [[0.0, 0.0, 0.0], [1.0, -1.0, 0.0], [1.0, 0.0, -1.0]])


def test_softmax_with_two_classes_is_logistic():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((6, 3))
    y = rng.integers(0, 2, 6)
    v = rng.standard_normal(3)
    W = np.stack([np.zeros(3), v], axis=1)  # class-1 logit x.v, class-0 logit 0
    assert_allclose(SoftmaxRegression(2).loss(W.ravel(), X, y),
                    LogisticRegression().loss(v, X, y), rtol=1e-14, atol=1e-15)


def test_softmax_parameter_layout_is_c_order():
    problem = SoftmaxRegression(3)
    X = np.array([[2.0, 5.0]])
    w = np.zeros(6)
    w[1 * 3 + 2] = 1.0  # W[1, 2]: feature 1, class 2, logit 5
    z = np.array([0.0, 0.0, 5.0])
    assert_allclose(problem.loss(w, X, [0]), scipy.special.logsumexp(z) - z[0], rtol=1e-15)


def test_quadratic_loss_gradient_and_moments():
    h = np.array([0.5, 2.0])
    w_star = np.array([1.0, -1.0])
    problem = NoisyQuadratic(h, w_star=w_star, noise_std=3.0)
    w = np.array([2.0, 1.0])
    xi = np.array([[1.0, 0.0], [0.0, -1.0]])
    u = w - w_star
    q = 0.5 * np.sum(h * u * u)
    assert_allclose(problem.loss(w, xi), [q + 1.0, q - 2.0], rtol=1e-15)
    assert_allclose(problem.grad(w, xi), h * u + xi, rtol=1e-15)
    mean, var = problem.loss_moments(w)
    assert_allclose([mean, var], [q, 9.0 * 5.0], rtol=1e-15)
    assert_array_equal(problem.minimizer(), w_star)
    assert_allclose(problem.minimize(xi), w_star - xi.mean(axis=0) / h, rtol=1e-15)


def test_quadratic_scalar_curvature_and_default_minimizer():
    problem = NoisyQuadratic(2.0)
    assert problem.dim == 1 and problem.n_params(1) == 1
    assert_array_equal(problem.minimizer(), [0.0])
    assert_allclose(problem.mean_grad(np.array([1.5]), np.zeros((3, 1))), [3.0])


def test_quadratic_population_draws_its_noise():
    problem = NoisyQuadratic([1.0, 2.0], noise_std=0.5)
    population = GaussianNoisePopulation(problem)
    assert isinstance(population, GaussianNoisePopulation)
    assert population.problem is problem


def test_linear_minimize_matches_lstsq_and_normal_equations():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((40, 4))
    y = rng.standard_normal(40)
    assert_allclose(LinearRegression().minimize(X, y), np.linalg.lstsq(X, y, rcond=None)[0],
                    rtol=1e-12)
    l2 = 0.7
    w = LinearRegression(l2=l2).minimize(X, y)
    assert_allclose(w, np.linalg.solve(X.T @ X / 40 + l2 * np.eye(4), X.T @ y / 40), rtol=1e-12)
    assert np.linalg.norm(LinearRegression(l2=l2).mean_grad(w, X, y)) < 1e-13


@pytest.mark.parametrize("problem", [LogisticRegression(), LogisticRegression(l2=0.1),
                                     SoftmaxRegression(3), SoftmaxRegression(3, l2=0.1)])
def test_minimize_reaches_a_zero_gradient(problem):
    rng = np.random.default_rng(6)
    X = rng.standard_normal((200, 4))
    y = _targets(problem, rng, 200)
    w = problem.minimize(X, y)
    assert np.linalg.norm(problem.mean_grad(w, X, y)) <= 1e-12
    w_other = problem.minimize(X, y, w0=np.full(w.size, 0.3))
    if isinstance(problem, SoftmaxRegression):
        # Unique only up to a vector added to every class column: compare centered.
        def center(v):
            W = v.reshape(-1, problem.n_classes)
            return W - W.mean(axis=1, keepdims=True)
        w, w_other = center(w), center(w_other)
    # Both gradients are below 1e-12 and the Hessian is well conditioned here.
    assert_allclose(w_other, w, atol=1e-9)


def test_softmax_minimize_without_ridge_returns_the_minimum_norm_minimizer():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((100, 3))
    y = rng.integers(0, 3, 100)
    W = SoftmaxRegression(3).minimize(X, y).reshape(3, 3)
    assert_allclose(W.sum(axis=1), 0.0, atol=1e-12)


def test_minimize_refuses_separable_data_without_ridge():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((50, 3))
    y = (X @ np.array([1.0, -1.0, 0.5]) > 0).astype(float)
    with pytest.raises(ValueError, match="separable.*use l2 > 0"):
        LogisticRegression().minimize(X, y)
    w = LogisticRegression(l2=1e-2).minimize(X, y)
    assert np.linalg.norm(LogisticRegression(l2=1e-2).mean_grad(w, X, y)) <= 1e-12
    labels = np.argmax(X, axis=1)
    with pytest.raises(ValueError, match="separable.*use l2 > 0"):
        SoftmaxRegression(3).minimize(X, labels)


def test_names():
    assert [PROBLEMS[k].name for k in ("linear", "logistic", "softmax", "quadratic")] == [
        "linear", "logistic", "softmax", "quadratic"]


def test_n_params():
    assert LinearRegression().n_params(5) == 5
    assert SoftmaxRegression(4).n_params(5) == 20


@pytest.mark.parametrize("problem, p, d, got", [
    (LinearRegression(), 3, 3, 4),
    (SoftmaxRegression(3), 6, 2, 5),
])
def test_wrong_parameter_length_is_named(problem, p, d, got):
    X = np.zeros((4, d))
    w = np.zeros(got)
    match = rf"`w` must have length p={p} for .* with d={d} features; got length {got}"
    for method in (problem.loss, problem.grad, problem.mean_loss, problem.mean_grad):
        with pytest.raises(ValueError, match=match):
            method(w, X, np.zeros(4, dtype=int))


def test_quadratic_wrong_dimension_is_named():
    problem = NoisyQuadratic([1.0, 2.0])
    with pytest.raises(ValueError, match="`X` must have d=2 columns"):
        problem.loss(np.zeros(3), np.zeros((4, 3)))


@pytest.mark.parametrize("make, error, match", [
    (lambda: LinearRegression(l2=-1.0), ValueError, "`l2` must be a finite real number"),
    (lambda: LogisticRegression(l2=np.nan), ValueError, "`l2` must be a finite real number"),
    (lambda: SoftmaxRegression(1), ValueError, "`n_classes` must be an integer >= 2; got 1"),
    (lambda: SoftmaxRegression(2.5), TypeError, "`n_classes` must be an integer"),
    (lambda: NoisyQuadratic([1.0, -1.0]), ValueError, "`curvature` must be a positive"),
    (lambda: NoisyQuadratic([1.0, np.inf]), ValueError, "`curvature` must be finite"),
    (lambda: NoisyQuadratic([1.0, 2.0], w_star=[1.0]), ValueError, "`w_star` must have length d=2"),
    (lambda: NoisyQuadratic(1.0, noise_std=-1.0), ValueError, "`noise_std` must be"),
])
def test_bad_constructor_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_targets_are_named():
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"`y` must have shape \(..., n\) with n=4"):
        LinearRegression().loss(np.zeros(2), X, np.zeros(3))
    with pytest.raises(ValueError, match="`y` must hold binary labels 0 or 1"):
        LogisticRegression().loss(np.zeros(2), X, [0, 1, -1, 1])
    with pytest.raises(ValueError, match=r"`y` must hold integer class labels in 0..2; got 3"):
        SoftmaxRegression(3).loss(np.zeros(6), X, [0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"`y` must hold integer class labels in 0..2; got 0.5"):
        SoftmaxRegression(3).loss(np.zeros(6), X, [0, 1, 2, 0.5])


def test_bad_training_data_is_named():
    with pytest.raises(ValueError, match="`X` must be finite"):
        LinearRegression().minimize([[1.0], [np.nan]], [0.0, 1.0])
    with pytest.raises(ValueError, match="`X` must be a 2-D array"):
        LogisticRegression().minimize([1.0, 2.0], [0.0, 1.0])
    with pytest.raises(ValueError, match=r"`X` must have shape \(..., n, d\)"):
        LinearRegression().loss(np.zeros(1), np.zeros(3), np.zeros(3))
