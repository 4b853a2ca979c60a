"""Exact gradient-noise statistics: GradientNoiseResult and gradient_noise (docs/theory.md, section 10).

Deterministic identities are checked to rounding (rtol 1e-12): the statistics against
direct numpy on the per-example gradients, the blocked pass against one block, and the
curvature terms from Hessian-vector products against those from the dense Hessian.
"""

import numpy as np
import pytest

import lossvar
from lossvar import MLP, GradientNoiseResult, gradient_noise
from lossvar.data import Dataset, GaussianNoisePopulation
from lossvar.problems import LinearRegression, LogisticRegression, NoisyQuadratic, SoftmaxRegression

RTOL = 1e-12
EPS = np.finfo(np.float64).eps

# Three gradients in the plane: G = (2, 1), ||G||^2 = 5, deviations (-1, 0), (0, -1), (1, 1).
HAND = np.array([[1.0, 1.0], [2.0, 0.0], [3.0, 2.0]])


# -- GradientNoiseResult.from_grads ----------------------------------------------------------


def test_from_grads_hand_computed():
    # Sigma (divide by N = 3) = [[2/3, 1/3], [1/3, 2/3]]; with H = [[1, 1], [1, 2]]:
    # tr(H Sigma) = 2/3 + 2 * 1/3 + 2 * 2/3 = 8/3 and G^T H G = 4 + 4 + 2 = 10.
    noise = GradientNoiseResult.from_grads(HAND, hessian=[[1.0, 1.0], [1.0, 2.0]])
    np.testing.assert_allclose(noise.grad, [2.0, 1.0], rtol=RTOL)
    assert noise.grad_norm2 == pytest.approx(5.0, rel=RTOL)
    assert noise.trace_cov == pytest.approx(4 / 3, rel=RTOL)
    assert noise.b_simple == pytest.approx(4 / 15, rel=RTOL)
    assert noise.trace_hess_cov == pytest.approx(8 / 3, rel=RTOL)
    assert noise.grad_hess_grad == pytest.approx(10.0, rel=RTOL)
    assert noise.b_noise == pytest.approx(4 / 15, rel=RTOL)
    np.testing.assert_allclose(noise.gsnr, [6.0, 1.5], rtol=RTOL)
    assert (noise.n, noise.ddof) == (3, 0)
    assert noise.n_zero_variance == 0 and noise.flags == ()


def test_from_grads_ddof_one_and_diagonal_hessian():
    # ddof = 1 divides by N - 1 = 2: tr Sigma = 2, Sigma_jj = 1; H = diag(1, 2): tr(H Sigma) = 3, G^T H G = 6.
    noise = GradientNoiseResult.from_grads(HAND, hessian=[1.0, 2.0], ddof=1)
    assert noise.trace_cov == pytest.approx(2.0, rel=RTOL)
    assert noise.b_simple == pytest.approx(2 / 5, rel=RTOL)
    np.testing.assert_allclose(noise.gsnr, [4.0, 1.0], rtol=RTOL)
    assert noise.b_noise == pytest.approx(3 / 6, rel=RTOL)
    full = GradientNoiseResult.from_grads(HAND, hessian=np.diag([1.0, 2.0]), ddof=1)
    assert full.b_noise == pytest.approx(noise.b_noise, rel=RTOL)


def test_from_grads_without_hessian_has_nan_curvature_terms():
    noise = GradientNoiseResult.from_grads(HAND)
    assert np.isnan(noise.b_noise) and np.isnan(noise.grad_hess_grad) and np.isnan(noise.trace_hess_cov)


def test_zero_variance_and_zero_gradient_conventions():
    constant = GradientNoiseResult.from_grads([[1.0, 0.0], [1.0, 0.0]])
    assert constant.b_simple == 0.0
    assert constant.gsnr[0] == np.inf and np.isnan(constant.gsnr[1])  # G_j != 0 = Sigma_jj; both 0
    assert constant.n_zero_variance == 2 and constant.flags == ("zero_variance_coordinates",)
    assert "GSNR             no finite value; 2 of 2 coordinates have zero variance" in str(constant)
    centered = GradientNoiseResult.from_grads([[1.0, 0.0], [-1.0, 0.0]])
    assert centered.b_simple == np.inf
    assert np.isnan(GradientNoiseResult.from_grads(np.zeros((3, 2))).b_simple)


def test_from_grads_matches_direct_numpy():
    rng = np.random.default_rng(3)
    grads = rng.normal(size=(50, 6)) + rng.normal(size=6)
    A = rng.normal(size=(6, 6))
    H = A @ A.T
    for ddof in (0, 1):
        noise = GradientNoiseResult.from_grads(grads, hessian=H, ddof=ddof)
        cov = np.cov(grads, rowvar=False, ddof=ddof)
        G = grads.mean(axis=0)
        assert noise.grad_norm2 == pytest.approx(G @ G, rel=RTOL)
        assert noise.trace_cov == pytest.approx(np.trace(cov), rel=RTOL)
        assert noise.b_simple == pytest.approx(np.trace(cov) / (G @ G), rel=RTOL)
        assert noise.b_noise == pytest.approx(np.trace(H @ cov) / (G @ H @ G), rel=RTOL)
        np.testing.assert_allclose(noise.gsnr, G**2 / np.diag(cov), rtol=RTOL)


def test_gradient_noise_is_immutable_and_prints():
    noise = GradientNoiseResult.from_grads(HAND)
    with pytest.raises(AttributeError):
        noise.grad_norm2 = 1.0
    with pytest.raises(ValueError):
        noise.grad[0] = 1.0
    text = str(noise)
    assert "B_simple" in text and "N - ddof" in text and "n=3" in text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(grads=[1.0, 2.0]), "`grads` must be a 2-D array"),
        (dict(grads=[[1.0, np.nan]]), "`grads` must be finite"),
        (dict(grads=np.zeros((0, 2))), "`grads` must have shape"),
        (dict(grads=HAND, ddof=3), "`ddof` must be an integer in"),
        (dict(grads=HAND, hessian=np.eye(3)), "`hessian` must have shape"),
        (dict(grads=HAND, hessian=[[np.inf, 0], [0, 1]]), "`hessian` must be finite"),
    ],
)
def test_from_grads_rejects_bad_input(kwargs, match):
    grads = kwargs.pop("grads")
    with pytest.raises(ValueError, match=match):
        GradientNoiseResult.from_grads(grads, **kwargs)


# -- gradient_noise from a problem, in blocks ------------------------------------------


def _cases():
    rng = np.random.default_rng(7)
    n, d = 53, 3
    X = rng.normal(size=(n, d))
    quad = NoisyQuadratic(curvature=[1.0, 2.0, 5.0], w_star=[0.5, -1.0, 0.0], noise_std=0.7)
    return [
        (LinearRegression(l2=0.1), Dataset(X, X @ [1.0, -2.0, 0.5] + rng.normal(size=n)), rng.normal(size=d)),
        (LogisticRegression(l2=0.05), Dataset(X, (rng.random(n) < 0.4).astype(int)), rng.normal(size=d)),
        (SoftmaxRegression(n_classes=3, l2=0.01), Dataset(X, rng.integers(0, 3, n)), rng.normal(size=3 * d)),
        (quad, GaussianNoisePopulation(quad).sample(n, rng=1), np.array([1.0, 0.0, 2.0])),
    ]


@pytest.mark.parametrize("case", _cases(), ids=["linear", "logistic", "softmax", "quadratic"])
@pytest.mark.parametrize("block_size", [1, 4, 17, 53, 200, None])
def test_blocks_match_from_grads(case, block_size):
    problem, data, w = case
    grads = problem.grad(w, data.X, data.y)
    if isinstance(problem, NoisyQuadratic):
        hessian = np.diag(problem.curvature)
    elif isinstance(problem, LinearRegression):
        hessian = data.X.T @ data.X / data.n + problem.l2 * np.eye(data.d)
    else:
        hessian = problem.hessian(w, data.X, data.y)
    want = GradientNoiseResult.from_grads(grads, hessian=hessian, ddof=1)
    got = gradient_noise(problem, data, w, block_size=block_size, ddof=1)
    np.testing.assert_allclose(got.grad, want.grad, rtol=RTOL)
    np.testing.assert_allclose(got.gsnr, want.gsnr, rtol=RTOL)
    for name in ("grad_norm2", "trace_cov", "b_simple", "b_noise", "grad_hess_grad", "trace_hess_cov"):
        assert getattr(got, name) == pytest.approx(getattr(want, name), rel=RTOL), name
    assert (got.n, got.ddof) == (data.n, 1)


def test_b_noise_of_the_quadratic_is_exact():
    # g_i = h * u + xi_i: G = h * u + mean(xi), Sigma = cov(xi) (divide by N), H = diag(h).
    rng = np.random.default_rng(11)
    h, w_star = np.array([0.5, 2.0, 8.0]), np.array([1.0, 0.0, -1.0])
    problem = NoisyQuadratic(curvature=h, w_star=w_star)
    xi = rng.normal(size=(400, 3)) * [1.0, 0.3, 2.0]
    w = np.array([0.0, 1.0, 1.0])
    G = h * (w - w_star) + xi.mean(axis=0)
    var = xi.var(axis=0)
    noise = gradient_noise(problem, Dataset(xi), w, block_size=64)
    assert noise.trace_hess_cov == pytest.approx(h @ var, rel=RTOL)
    assert noise.grad_hess_grad == pytest.approx(h @ G**2, rel=RTOL)
    assert noise.b_noise == pytest.approx((h @ var) / (h @ G**2), rel=RTOL)
    assert noise.b_simple == pytest.approx(var.sum() / (G @ G), rel=RTOL)


def test_b_noise_of_ridge_regression_uses_its_exact_hessian():
    rng = np.random.default_rng(12)
    X, y, lam = rng.normal(size=(120, 4)), rng.normal(size=120), 0.3
    w = rng.normal(size=4)
    grads = (X @ w - y)[:, None] * X + lam * w
    H = X.T @ X / 120 + lam * np.eye(4)
    cov = np.cov(grads, rowvar=False, bias=True)
    G = grads.mean(axis=0)
    noise = gradient_noise(LinearRegression(l2=lam), Dataset(X, y), w, block_size=25)
    assert noise.b_noise == pytest.approx(np.trace(H @ cov) / (G @ H @ G), rel=RTOL)


def test_gradient_noise_never_sees_more_than_a_block():
    problem, data, w = _cases()[1]
    seen = []

    class Spy:
        def check_params(self, w, X):
            problem.check_params(w, X)

        def grad(self, w, X, y):
            seen.append(X.shape[0])
            return problem.grad(w, X, y)

        def hessian(self, w, X, y):
            return problem.hessian(w, X, y)

    got = gradient_noise(Spy(), data, w, block_size=10)
    assert max(seen) == 10 and sum(seen) == data.n
    assert got.b_noise == pytest.approx(gradient_noise(problem, data, w).b_noise, rel=RTOL)


def test_gradient_noise_rejects_bad_input():
    problem, data, w = _cases()[0]
    with pytest.raises(ValueError, match="`block_size` must be an integer >= 1"):
        gradient_noise(problem, data, w, block_size=0)
    with pytest.raises(ValueError, match="`w` must have length p=3"):
        gradient_noise(problem, data, np.zeros(4))
    with pytest.raises(ValueError, match="`w` must be finite"):
        gradient_noise(problem, data, [0.0, np.nan, 0.0])
    with pytest.raises(ValueError, match="`ddof` must be an integer in"):
        gradient_noise(problem, data, w, ddof=data.n)


@pytest.mark.parametrize("block_size", [1, 7, 1000])
def test_blocks_are_stable_far_from_the_minimizer(block_size):
    # ||G|| ~ 1e8 and Sigma ~ 1: E[g^2] - G^2 would lose all 16 digits; the centered merge keeps
    # the variance to the 1e-8 already lost in rounding g_i = 1e8 + xi_i.
    xi = np.random.default_rng(0).normal(size=(1000, 2))
    problem = NoisyQuadratic(curvature=[1.0, 2.0])
    noise = gradient_noise(problem, Dataset(xi), [1e8, -1e8], block_size=block_size)
    assert noise.trace_cov == pytest.approx(xi.var(axis=0).sum(), rel=1e-6)
    assert noise.trace_hess_cov == pytest.approx([1.0, 2.0] @ xi.var(axis=0), rel=1e-6)


# -- a gradient that is zero to rounding -------------------------------------------------


def test_fitted_optimum_is_zero_to_rounding():
    # At the Newton-polished minimizer ||G|| ~ 1e-13 is the rounding floor of the per-example
    # gradients: tr Sigma / ||G||^2 ~ 2e25 would be a ratio of rounding errors.
    data = lossvar.datasets.load("breast_cancer")
    problem = lossvar.datasets.problem_for(data)
    w = problem.minimize(data.X, data.y)
    noise = gradient_noise(problem, data, w)
    grads = problem.grad(w, data.X, data.y)
    bound = data.n * np.finfo(np.float64).eps * np.linalg.norm(grads, axis=1).max()
    assert noise.grad_rounding_bound == pytest.approx(bound, rel=RTOL)
    assert np.sqrt(noise.grad_norm2) <= bound and noise.flags == ("grad_zero_to_rounding",)
    assert noise.trace_cov > 0 and noise.trace_hess_cov > 0
    assert noise.b_simple == np.inf and noise.b_noise == np.inf and np.all(noise.gsnr == 0.0)
    text = str(noise)
    assert "B_simple         inf" in text and "G is zero to rounding" in text
    # a step of 1e-6 from the minimizer: ||G|| ~ 1e-7, far above the bound, and the ratios are back
    away = gradient_noise(problem, data, w + 1e-6)
    assert away.flags == () and "zero to rounding" not in str(away)
    assert away.b_simple == pytest.approx(away.trace_cov / away.grad_norm2, rel=RTOL)


@pytest.mark.parametrize("block_size", [7, None])
def test_exact_minimizers_are_zero_to_rounding(block_size):
    # G = 0 in exact arithmetic: the ridge solution of the normal equations, and the noisy
    # quadratic at w* with centered noise rows.
    rng = np.random.default_rng(8)
    X = rng.normal(size=(300, 4))
    y = X @ [1.0, -1.0, 0.5, 2.0] + rng.normal(size=300)
    ridge = LinearRegression(l2=0.1)
    xi = rng.normal(size=(300, 3))
    xi -= xi.mean(axis=0)
    quad = NoisyQuadratic(curvature=[1.0, 2.0, 5.0], w_star=[0.5, -1.0, 0.0])
    for problem, data, w in [(ridge, Dataset(X, y), ridge.minimize(X, y)),
                             (quad, Dataset(xi), np.array([0.5, -1.0, 0.0]))]:
        noise = gradient_noise(problem, data, w, block_size=block_size)
        assert noise.flags == ("grad_zero_to_rounding",), problem
        assert noise.b_simple == np.inf and noise.b_noise == np.inf
        assert GradientNoiseResult.from_grads(problem.grad(w, data.X, data.y)).flags == noise.flags



# -- a coordinate with zero variance -------------------------------------------------------


def _constant_feature_data(n=301, seed=3):
    """Linear-regression data whose second feature is 0 for every example."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    X[:, 1] = 0.0
    return Dataset(X, X @ [1.0, 0.0, -0.5] + rng.normal(size=n))


@pytest.mark.parametrize("block_size", [None, 40])
def test_a_constant_feature_under_l2_has_no_finite_gsnr(block_size):
    # g_i1 = (x_i . w - y_i) * 0 + l2 w_1 = l2 w_1 for every example: Sigma_11 = 0 exactly. The
    # computed mean of the 301 equal numbers is off by rounding, which leaves a variance of order
    # 1e-35 and a GSNR of order 1e30 unless it is recognized as zero.
    data, problem = _constant_feature_data(), LinearRegression(l2=0.1)
    w = np.array([0.3, 0.7, -0.2])
    grads = problem.grad(w, data.X, data.y)
    assert np.all(grads[:, 1] == 0.1 * 0.7)
    naive = grads.mean(axis=0) ** 2 / grads.var(axis=0)
    assert naive[1] > 1e20  # the ratio of rounding errors that the flag replaces
    noise = gradient_noise(problem, data, w, block_size=block_size)
    assert noise.gsnr[1] == np.inf and noise.n_zero_variance == 1
    assert noise.flags == ("zero_variance_coordinates",)
    np.testing.assert_allclose(noise.gsnr[[0, 2]], naive[[0, 2]], rtol=RTOL)  # the others as before
    text = str(noise)
    assert f"range [{naive[[0, 2]].min():.4g}, {naive[[0, 2]].max():.4g}]" in text
    assert "1 of 3 coordinates have zero variance to rounding (no finite GSNR) and are left out" in text
    assert noise.trace_cov == pytest.approx(grads.var(axis=0).sum(), rel=RTOL)


def test_a_small_but_real_spread_is_not_zero_variance():
    # A feature varying at 1e-9 of the others: its variance is real, far above rounding.
    data = _constant_feature_data()
    X = data.X.copy()
    X[:, 1] = 1e-9 * np.random.default_rng(4).normal(size=data.n)
    problem, w = LinearRegression(l2=0.1), np.array([0.3, 0.7, -0.2])
    noise = gradient_noise(problem, Dataset(X, data.y), w)
    grads = problem.grad(w, X, data.y)
    assert noise.n_zero_variance == 0 and noise.flags == ()
    np.testing.assert_allclose(noise.gsnr, grads.mean(axis=0) ** 2 / grads.var(axis=0), rtol=1e-9)


def test_a_network_with_a_constant_input_pixel():
    # As on digits, whose constant pixels feed weights that only the l2 term moves: each of the
    # 4 weights from input 0 has the gradient l2 w_j for every example.
    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 3))
    X[:, 0] = 0.0
    net = MLP((3, 4, 2), l2=1e-2)
    w = net.init(rng=0)
    noise = gradient_noise(net, Dataset(X, rng.integers(0, 2, 200)), w)
    pixel0 = np.arange(4)  # W_1[0, :], the first fan_out entries in C order
    assert noise.n_zero_variance == 4 and np.all(noise.gsnr[pixel0] == np.inf)
    assert np.isfinite(np.delete(noise.gsnr, pixel0)).all()
    assert "zero_variance_coordinates" in noise.flags


# -- the curvature terms from Hessian-vector products ------------------------------------


class HvpOnly:
    """A problem that meets the protocol with Hessian-vector products and no dense Hessian."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def check_params(self, w, X):
        self.inner.check_params(w, X)

    def grad(self, w, X, y):
        return self.inner.grad(w, X, y)

    def hvp(self, w, X, y, v):
        self.calls.append((np.shape(v)[0] if np.ndim(v) == 2 else 1, np.shape(X)[0]))
        return self.inner.hvp(w, X, y, v)


class DenseHvp(LogisticRegression):
    """Logistic regression with a Hessian-vector product from its dense Hessian."""

    def hvp(self, w, X, y, v):
        return np.asarray(v) @ self.hessian(w, X, y)


@pytest.mark.parametrize("ddof", [0, 1])
def test_curvature_from_hvp_equals_the_dense_hessian_on_a_network(ddof):
    # tr(H Sigma) as mean_i (g_i - G)^T H (g_i - G) against sum(H * S) / (N - ddof) with the dense
    # H of MLP.hessian: equal to rounding. N = 300 > 256 examples, so the products are tiled in
    # both the vectors and the examples.
    rng = np.random.default_rng(6)
    X = rng.normal(size=(300, 4))
    data = Dataset(X, rng.integers(0, 3, 300))
    net = MLP((4, 5, 3), activation="softplus", l2=1e-3)
    w = net.init(rng=1)
    dense = gradient_noise(net, data, w, ddof=ddof)
    only = HvpOnly(net)
    got = gradient_noise(only, data, w, ddof=ddof)
    for name in ("grad_hess_grad", "trace_hess_cov", "b_noise", "b_simple", "trace_cov"):
        assert getattr(got, name) == pytest.approx(getattr(dense, name), rel=RTOL), name
    assert np.isfinite(got.b_noise) and got.b_noise > 0
    assert max(m * rows for m, rows in only.calls) <= 2**16  # the documented tile of vector-row pairs
    assert sum(rows for m, rows in only.calls if m == 1) == 300  # H G over every example once


def test_curvature_from_hvp_of_a_linear_model():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(90, 3))
    data = Dataset(X, (rng.random(90) < 0.5).astype(int))
    w = rng.normal(size=3)
    want = gradient_noise(LogisticRegression(l2=0.05), data, w)
    got = gradient_noise(HvpOnly(DenseHvp(l2=0.05)), data, w, block_size=8)
    assert got.b_noise == pytest.approx(want.b_noise, rel=RTOL)
    assert got.trace_hess_cov == pytest.approx(want.trace_hess_cov, rel=RTOL)
    assert got.grad_hess_grad == pytest.approx(want.grad_hess_grad, rel=RTOL)


def test_the_dense_hessian_is_preferred_and_neither_gives_nan():
    problem, data, w = _cases()[1]

    class GradOnly:
        check_params, grad = problem.check_params, problem.grad

    class Both(DenseHvp):
        def hvp(self, w, X, y, v):
            raise AssertionError("hvp called although the problem has a hessian")

    bare = gradient_noise(GradOnly(), data, w)
    assert np.isnan(bare.b_noise) and np.isnan(bare.trace_hess_cov) and np.isnan(bare.grad_hess_grad)
    assert bare.b_simple == pytest.approx(gradient_noise(problem, data, w).b_simple, rel=RTOL)
    assert gradient_noise(Both(l2=problem.l2), data, w).b_noise == pytest.approx(
        gradient_noise(problem, data, w).b_noise, rel=RTOL)


def test_gradient_noise_uses_the_public_hessian():
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(80, 3)), rng.normal(size=80)
    problem, w = LinearRegression(l2=0.1), rng.normal(size=3)
    grads = problem.grad(w, X, y)
    H = problem.hessian(w, X, y)
    cov = np.cov(grads, rowvar=False, bias=True)
    G = grads.mean(axis=0)
    noise = gradient_noise(problem, Dataset(X, y), w, block_size=7)
    assert noise.b_noise == pytest.approx(np.trace(H @ cov) / (G @ H @ G), rel=1e-12)
