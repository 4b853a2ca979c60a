"""The multi-layer perceptron: gradients and Hessian-vector products against PyTorch and finite
differences, the parameter layout, stacks against loops, the start's distribution, the reference
point on digits, bad input; and every engine on a network: the exact finite-population law of
its losses, its gradient noise, SGD with every optimizer and schedule, bits across executions."""

import pickle
import re
import threading

import numpy as np
import pytest
import scipy.stats
from numpy.testing import assert_allclose, assert_array_equal
from threadpoolctl import threadpool_limits

import lossvar.datasets
from lossvar.problems import MLP, LinearRegression, SoftmaxRegression

EPS = np.finfo(np.float64).eps

#: Networks of depth 0 to 3, every activation and both losses, with and without a ridge.
NETS = [
    MLP((3, 4), "tanh", "cross_entropy"),
    MLP((5, 7, 3), "tanh", "cross_entropy", l2=0.1),
    MLP((4, 6, 1), "tanh", "squared"),
    MLP((5, 7, 6, 1), "relu", "squared", l2=0.05),
    MLP((6, 8, 4), "relu", "cross_entropy"),
    MLP((4, 3, 5, 2, 4), "softplus", "cross_entropy", l2=0.2),
    MLP((3, 9, 1), "softplus", "squared"),
]
IDS = [net.name + (f" l2={net.l2}" if net.l2 else "") for net in NETS]


def _targets(net, rng, shape):
    if net.objective == "squared":
        return rng.standard_normal(shape)
    return rng.integers(0, net.sizes[-1], shape)


def _case(net, rng, *, n=9, w_lead=(), x_lead=()):
    """A start plus a perturbation (nonzero biases), standard normal rows and random targets."""
    w = net.init(rng, size=None) + 0.3 * rng.standard_normal(w_lead + (net.p,))
    X = rng.standard_normal(x_lead + (n, net.sizes[0]))
    return w, X, _targets(net, rng, x_lead + (n,))


def _central_difference(f, w, u, h=1e-5, wide=1e-2):
    """The central difference of ``f`` at ``w`` along ``u``, and a bound on its error.

    D_h = (f(w + h u) - f(w - h u)) / 2h differs from the directional derivative by
    the truncation h^2 |f'''| / 6 (f''' along u, within h of w) and the rounding
    (e_+ - e_-) / 2h of the two values. f''' is estimated by the third difference
    at the wider step H = ``wide`` (exact up to O(H^2 f^(5))), doubled to cover that
    error; each value's rounding is bounded by 1e3 eps (1 + |f|): the values here
    come from chains of fewer than a hundred roundings (sums of under ten products
    per layer, four layers, the log-sum-exp and the ridge), so 1e3 leaves a tenfold
    margin. With h = 1e-5 both parts are near 1e-10 for the O(1) values here, while
    a wrong derivative is off by O(1).
    """
    value = (f(w + h * u) - f(w - h * u)) / (2 * h)
    third = (f(w + 2 * wide * u) - 2 * f(w + wide * u) + 2 * f(w - wide * u)
             - f(w - 2 * wide * u)) / (2 * wide**3)
    scale = 1.0 + np.maximum(np.abs(f(w + h * u)), np.abs(f(w - h * u)))
    return value, 2 * h**2 * np.abs(third) / 6 + 1e3 * EPS * scale / h


# -- independent code: finite differences, the built-in linear models, PyTorch -------------


@pytest.mark.parametrize("net", NETS, ids=IDS)
def test_per_example_gradients_match_central_differences(net):
    rng = np.random.default_rng(10)
    w, X, y = _case(net, rng)
    g = net.grad(w, X, y)
    for _ in range(3):
        u = rng.standard_normal(net.p)
        u /= np.linalg.norm(u)
        fd, tol = _central_difference(lambda v: net.loss(v, X, y), w, u)
        assert np.all(np.abs(g @ u - fd) <= tol), (g @ u - fd, tol)


@pytest.mark.parametrize("net", NETS, ids=IDS)
def test_mean_gradient_is_the_mean_of_the_per_example_gradients(net):
    w, X, y = _case(net, np.random.default_rng(11), n=17)
    g = net.grad(w, X, y)
    # Two summation orders of the same n products: each within (n + 1) eps sum_i |g_i| / n
    # of the exact mean (Higham 2002, eq. 4.4), so within twice that of each other.
    bound = 2 * (g.shape[0] + 1) * EPS * np.abs(g).mean(axis=0)
    assert np.all(np.abs(net.mean_grad(w, X, y) - g.mean(axis=0)) <= bound)
    # The losses are positive: the same bound is relative, 2 (n + 1) eps, here within 4 n eps.
    assert_allclose(net.mean_loss(w, X, y), net.loss(w, X, y).mean(), rtol=4 * 17 * EPS)


def test_no_hidden_layer_is_softmax_and_linear_regression():
    """With no hidden layer and zero biases the network is a built-in linear model."""
    rng = np.random.default_rng(12)
    X, y = rng.standard_normal((11, 4)), rng.integers(0, 3, 11)
    net, ref = MLP((4, 3), l2=0.1), SoftmaxRegression(3, l2=0.1)
    W = rng.standard_normal(12)
    w = net.flatten([(W.reshape(4, 3), np.zeros(3))])
    weights = slice(0, 12)

    def close(a, b):
        # Same formulas in other operation orders, over at most 11 rows and 4 classes: within
        # 100 eps of the largest magnitude (the sums' rounding is below 20 eps of it).
        assert np.abs(a - b).max() <= 100 * EPS * np.abs(b).max()

    close(net.loss(w, X, y), ref.loss(W, X, y))
    close(net.grad(w, X, y)[:, weights], ref.grad(W, X, y))
    close(net.hessian(w, X, y)[weights, weights], ref.hessian(W, X, y))
    t = rng.standard_normal(11)
    net, ref = MLP((4, 1), loss="squared", l2=0.1), LinearRegression(l2=0.1)
    w = net.flatten([(W[:4, None], np.zeros(1))])
    close(net.grad(w, X, t)[:, :4], ref.grad(W[:4], X, t))
    close(net.hessian(w, X, t)[:4, :4], ref.hessian(W[:4], X, t))


def _torch_loss(torch, net, w, X, y):
    """The same network written in PyTorch from the documented layout (not from lossvar's code)."""
    act = {"tanh": torch.tanh, "relu": torch.relu,
           "softplus": lambda z: torch.logaddexp(z, torch.zeros_like(z))}[net.activation]
    a, start = X, 0
    depth = len(net.sizes) - 1
    for j, (fan_in, fan_out) in enumerate(zip(net.sizes[:-1], net.sizes[1:], strict=True)):
        W = w[start:start + fan_in * fan_out].reshape(fan_in, fan_out)
        b = w[start + fan_in * fan_out:start + (fan_in + 1) * fan_out]
        start += (fan_in + 1) * fan_out
        a = a @ W + b
        if j < depth - 1:
            a = act(a)
    if net.objective == "squared":
        loss = 0.5 * (a[..., 0] - y) ** 2
    else:
        loss = torch.logsumexp(a, dim=-1) - torch.gather(a, -1, y[..., None])[..., 0]
    return loss + 0.5 * net.l2 * (w * w).sum()


@pytest.mark.parametrize("net", NETS, ids=IDS)
def test_per_example_gradients_match_pytorch_autograd(net):
    torch = pytest.importorskip("torch", reason="PyTorch is optional: the comparison needs it")
    w, X, y = _case(net, np.random.default_rng(13))
    wt, Xt, yt = torch.tensor(w), torch.tensor(X), torch.tensor(y)
    per_example = torch.func.vmap(torch.func.grad(lambda w, x, t: _torch_loss(torch, net, w, x, t)),
                                  in_dims=(None, 0, 0))
    expected = per_example(wt, Xt, yt).numpy()
    got = net.grad(w, X, y)
    # float64 on both sides, the same formulas in other orders: ~1e-15; 1e-12 is the bar.
    rel = np.linalg.norm(got - expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert rel.max() <= 1e-12, rel.max()
    assert_allclose(net.loss(w, X, y), _torch_loss(torch, net, wt, Xt, yt).numpy(), rtol=1e-12)


@pytest.mark.parametrize("net", NETS, ids=IDS)
def test_hessian_vector_products_match_pytorch_double_backward(net):
    torch = pytest.importorskip("torch", reason="PyTorch is optional: the comparison needs it")
    rng = np.random.default_rng(14)
    w, X, y = _case(net, rng)
    V = rng.standard_normal((3, net.p))
    wt = torch.tensor(w, requires_grad=True)
    mean = _torch_loss(torch, net, wt, torch.tensor(X), torch.tensor(y)).mean()
    (g,) = torch.autograd.grad(mean, wt, create_graph=True)
    expected = np.stack([torch.autograd.grad(g, wt, torch.tensor(v), retain_graph=True)[0].numpy()
                         for v in V])
    got = net.hvp(w, X, y, V)
    rel = np.linalg.norm(got - expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert rel.max() <= 1e-12, rel.max()


@pytest.mark.parametrize("net", NETS, ids=IDS)
def test_hessian_vector_products_match_central_differences_of_the_gradient(net):
    rng = np.random.default_rng(15)
    w, X, y = _case(net, rng)
    for _ in range(2):
        v = rng.standard_normal(net.p)
        v /= np.linalg.norm(v)
        fd, tol = _central_difference(lambda u: net.mean_grad(u, X, y), w, v)
        assert np.all(np.abs(net.hvp(w, X, y, v) - fd) <= tol)


@pytest.mark.parametrize("net", NETS, ids=IDS)
def test_stacked_hessian_vector_products_equal_single_ones(net):
    rng = np.random.default_rng(16)
    w, X, y = _case(net, rng)
    V = rng.standard_normal((5, net.p))
    stacked = net.hvp(w, X, y, V)
    assert stacked.shape == (5, net.p)
    for v, row in zip(V, stacked, strict=True):
        assert_array_equal(net.hvp(w, X, y, v), row)


@pytest.mark.parametrize("net", NETS, ids=IDS)
def test_hessian_is_symmetric_and_the_products_with_the_identity(net):
    w, X, y = _case(net, np.random.default_rng(17))
    H = net.hessian(w, X, y)
    assert_array_equal(H, H.T)
    products = net.hvp(w, X, y, np.eye(net.p))
    # The dense Hessian is (P + P^T) / 2: it differs from the products P only by their
    # asymmetry, the rounding of sums of n = 9 examples' terms, each a chain of a few dozen
    # roundings: 1e3 eps of the largest entry covers it.
    assert np.abs(H - products).max() <= 1e3 * EPS * np.abs(products).max()


def test_hessian_in_blocks_equals_one_stacked_product():
    # 10000 rows: the dense Hessian takes the identity's rows in blocks of 2**22 / (n * 7) = 59 < p.
    net = MLP((5, 7, 3), l2=0.1)
    w, X, y = _case(net, np.random.default_rng(26), n=10_000)
    products = net.hvp(w, X, y, np.eye(net.p))
    # The same operations on each direction, whichever block it is in.
    assert_array_equal(net.hessian(w, X, y), (products + products.T) / 2)


# -- the layout ------------------------------------------------------------------------------


def test_parameter_layout_is_weights_in_c_order_then_bias_layer_by_layer():
    net = MLP((2, 3, 1), loss="squared")
    assert net.n_params(2) == 2 * 3 + 3 + 3 * 1 + 1
    w = np.arange(13.0)
    (W1, b1), (W2, b2) = net.unflatten(w)
    assert_array_equal(W1, [[0, 1, 2], [3, 4, 5]])
    assert_array_equal(b1, [6, 7, 8])
    assert_array_equal(W2, [[9], [10], [11]])
    assert_array_equal(b2, [12])
    assert all(np.shares_memory(a, w) for layer in net.unflatten(w) for a in layer)
    assert_array_equal(net.flatten(net.unflatten(w)), w)
    # a layer computes a @ W + b
    x = np.array([[0.3, -0.2]])
    f = np.tanh(x @ W1 / 10 + b1 / 10) @ W2 / 10 + b2 / 10
    assert_allclose(net.loss(w / 10, x, [0.5]), 0.5 * (f[:, 0] - 0.5) ** 2, rtol=4 * EPS)


def test_unflatten_and_flatten_carry_leading_dimensions():
    net = MLP((3, 4, 2))
    W = np.random.default_rng(18).standard_normal((2, 5, net.p))
    layers = net.unflatten(W)
    assert [(a.shape, b.shape) for a, b in layers] == [((2, 5, 3, 4), (2, 5, 4)), ((2, 5, 4, 2), (2, 5, 2))]
    assert_array_equal(net.flatten(layers), W)


def test_name_repr_equality_and_pickling():
    net = MLP((64, 32, 10), "tanh", l2=1e-2)
    assert net.name == "mlp 64-32-10 tanh"
    assert MLP((3, 5, 1), "relu", "squared").name == "mlp 3-5-1 relu squared"
    assert eval(repr(net), {"MLP": MLP}) == net
    assert net != MLP((64, 32, 10), "relu", l2=1e-2)
    net.mean_grad(net.init(0), np.zeros((4, 64)), np.zeros(4, dtype=int))  # scratch made
    assert net.scratch_nbytes() > 0
    clone = pickle.loads(pickle.dumps(net))
    assert clone == net and hash(clone) == hash(net)
    assert clone.scratch_nbytes() == 0  # scratch stays behind
    w, X = net.init(1), np.random.default_rng(19).standard_normal((5, 64))
    assert_array_equal(clone.grad(w, X, np.arange(5)), net.grad(w, X, np.arange(5)))


# -- stacks, caller buffers, threads ----------------------------------------------------------

STACKS = [  # (w leading dims, X leading dims)
    ((4,), (4,)),  # replicate r on its own batch: the ensemble's hot path
    ((3,), ()),  # a stack on shared data
    ((), (3,)),  # one network on several batches
    ((2, 3), (2, 3)),
    ((2, 3), (3,)),
]


@pytest.mark.parametrize("net", NETS, ids=IDS)
@pytest.mark.parametrize(("w_lead", "x_lead"), STACKS)
def test_stacks_are_bit_identical_to_loops(net, w_lead, x_lead):
    w, X, y = _case(net, np.random.default_rng(20), n=6, w_lead=w_lead, x_lead=x_lead)
    lead = np.broadcast_shapes(w_lead, x_lead)
    results = {f: getattr(net, f)(w, X, y) for f in ("loss", "grad", "mean_loss", "mean_grad")}
    assert results["grad"].shape == lead + (6, net.p)
    assert results["mean_grad"].shape == lead + (net.p,)
    for idx in np.ndindex(lead):
        wi = w[idx[len(lead) - len(w_lead):]]
        Xi, yi = X[idx[len(lead) - len(x_lead):]], y[idx[len(lead) - len(x_lead):]]
        for f, stacked in results.items():
            assert_array_equal(stacked[idx], getattr(net, f)(wi, Xi, yi), err_msg=f)


@pytest.mark.parametrize(("w_lead", "x_lead"), [((120,), ()), ((), (120,)), ((40, 3), (3,))])
def test_large_stacks_are_evaluated_in_chunks_with_the_bits_of_a_loop(w_lead, x_lead):
    # 120 x 2000 x 7 elements per hidden array: beyond one 8 MiB chunk, so the stack is cut.
    net = MLP((5, 7, 3), l2=0.1)
    w, X, y = _case(net, np.random.default_rng(25), n=2000, w_lead=w_lead, x_lead=x_lead)
    lead = np.broadcast_shapes(w_lead, x_lead)
    losses, means = net.loss(w, X, y), net.mean_loss(w, X, y)
    assert means.shape == lead
    for idx in list(np.ndindex(lead))[::17]:
        wi = w[idx[len(lead) - len(w_lead):]]
        Xi, yi = X[idx[len(lead) - len(x_lead):]], y[idx[len(lead) - len(x_lead):]]
        assert_array_equal(losses[idx], net.loss(wi, Xi, yi))
        assert_array_equal(means[idx], net.mean_loss(wi, Xi, yi))


@pytest.mark.parametrize("net", NETS, ids=IDS)
def test_mean_grad_into_out_has_the_same_bits_and_returns_out(net):
    w, X, y = _case(net, np.random.default_rng(21), n=8, w_lead=(5,), x_lead=(5,))
    out = np.full((5, net.p), np.nan)
    for _ in range(2):  # the second call reuses the scratch of the first
        assert net.mean_grad(w, X, y, out=out) is out
        assert_array_equal(out, net.mean_grad(w, X, y))


def test_threads_have_their_own_scratch():
    net = MLP((5, 7, 3), l2=0.1)
    rng = np.random.default_rng(22)
    cases = [_case(net, rng, n=8, w_lead=(6,), x_lead=(6,)) for _ in range(4)]
    expected = [net.mean_grad(*c) for c in cases]
    got = [None] * 4
    barrier = threading.Barrier(4)

    def work(i):
        barrier.wait()
        out = np.empty((6, net.p))
        for _ in range(200):  # same shapes in every thread: one shared buffer would mix them
            net.mean_grad(*cases[i], out=out)
        got[i] = out

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e, g in zip(expected, got, strict=True):
        assert_array_equal(g, e)


def test_scratch_is_bounded():
    net = MLP((5, 7, 3))
    rng = np.random.default_rng(23)
    alone = []  # the scratch of each shape, kept by a network that saw only that shape
    for r in range(1, 11):
        case = _case(net, rng, n=8, w_lead=(r,), x_lead=(r,))
        net.mean_grad(*case)
        fresh = MLP((5, 7, 3))
        fresh.mean_grad(*case)
        alone.append(fresh.scratch_nbytes())
    assert alone[-1] <= net.scratch_nbytes() < sum(alone)  # the oldest shapes were dropped


# -- the start ----------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["tanh", "relu", "softplus"])
def test_init_draws_glorot_or_he_weights_and_zero_biases(activation):
    net = MLP((20, 30, 10), activation)
    W = net.init(rng=24, size=400)
    assert W.shape == (400, net.p)
    fans = list(zip(net.sizes[:-1], net.sizes[1:], strict=True))
    for (weights, bias), var, (fan_in, fan_out) in zip(net.unflatten(W), net.weight_variances(), fans,
                                                        strict=True):
        assert_array_equal(bias, 0.0)
        x = weights.ravel()
        if activation == "relu":  # He normal, N(0, 2 / fan_in): E w^4 = 3 var^2
            assert var == 2 / fan_in
            fourth = 3 * var**2
        else:  # Glorot uniform on (-a, a), a^2 = 6 / (fan_in + fan_out): E w^4 = a^4 / 5
            limit = np.sqrt(6 / (fan_in + fan_out))
            assert var == 2 / (fan_in + fan_out) and np.abs(x).max() <= limit
            fourth = limit**4 / 5
        # The mean of w^2 estimates var with standard error sqrt((E w^4 - var^2) / N); N >= 1.2e5
        # makes it normal to far beyond the z used. z for a two-sided false-failure rate of 1e-6 per
        # layer (six comparisons in this test's three cases).
        z = scipy.stats.norm.isf(0.5e-6)
        se = np.sqrt((fourth - var**2) / x.size)
        assert abs(np.mean(x * x) - var) <= z * se
        if activation != "relu":  # and the shape: uniform, by Kolmogorov-Smirnov at the same rate
            assert scipy.stats.kstest(x[:5000], scipy.stats.uniform(-limit, 2 * limit).cdf).pvalue > 1e-6


def test_init_follows_spec7():
    net = MLP((4, 5, 3))
    assert_array_equal(net.init(rng=7), net.init(rng=7))
    assert not np.array_equal(net.init(rng=7), net.init(rng=8))
    gen = np.random.default_rng(np.random.SeedSequence(7))
    assert not np.array_equal(net.init(gen), net.init(gen))  # a Generator gives children


# -- the reference point ------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn")
    return lossvar.datasets.load("digits")


def test_reference_point_on_digits_reaches_its_tolerance(digits):
    # l2 = datasets.REFERENCE_L2 = 1e-2, the ridge of the data set's natural model: the
    # minimum exists (digits is separable by a network) and the Hessian is well enough
    # conditioned there for the Newton polish. One BLAS thread: the matrices are small, and a
    # busy machine's oversubscribed BLAS threads would cost far more than they bring.
    net = MLP((64, 32, 10), "tanh", l2=lossvar.datasets.REFERENCE_L2)
    with threadpool_limits(1, user_api="blas"):
        w = lossvar.datasets.reference_params(digits, net)
        assert np.linalg.norm(net.mean_grad(w, digits.X, digits.y)) <= 1e-10
        assert_array_equal(w, net.minimize(digits.X, digits.y))  # deterministic


def test_reference_point_is_a_local_minimum(digits):
    # A smaller network on the same data keeps the dense Hessian (p = 1210) quick.
    net = MLP((64, 16, 10), "tanh", l2=lossvar.datasets.REFERENCE_L2)
    with threadpool_limits(1, user_api="blas"):
        w = net.minimize(digits.X, digits.y)
        H = net.hessian(w, digits.X, digits.y)
    eigenvalues = np.linalg.eigvalsh(H)
    # eigvalsh's backward error is O(p eps ||H||), and the products' rounding is of that order:
    # nothing below -p eps ||H|| is negative curvature.
    assert eigenvalues[0] > -net.p * EPS * eigenvalues[-1], eigenvalues[:3]


def test_minimize_says_when_tol_is_not_reached(digits):
    net = MLP((64, 8, 10), l2=1e-2)
    with pytest.raises(ValueError, match=r"`tol` must be reachable: .* gradient norm"):
        net.minimize(digits.X, digits.y, maxiter=3)


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"sizes": (4,)}, r"`sizes` must have at least two entries \(d, \.\.\., k\); got \(4,\)"),
    ({"sizes": (4, 0, 3)}, r"`sizes` must hold integers >= 1; got \(4, 0, 3\)"),
    ({"sizes": (4, 2.5, 3)}, r"`sizes` must hold integers >= 1; got \(4, 2\.5, 3\)"),
    ({"sizes": (4, 3), "activation": "sigmoid"},
     r"The value for `activation` must be one of 'tanh', 'relu', 'softplus', but 'sigmoid'"),
    ({"sizes": (4, 3), "loss": "hinge"},
     r"The value for `loss` must be one of 'cross_entropy', 'squared', but 'hinge'"),
    ({"sizes": (4, 1)}, r"`sizes` must end with k >= 2 outputs for loss='cross_entropy'; got k=1"),
    ({"sizes": (4, 3), "loss": "squared"}, r"`sizes` must end with k = 1 output for loss='squared'; got k=3"),
    ({"sizes": (4, 3), "l2": -1.0}, r"`l2` must be a finite real number in \[0.0, inf\]; got -1.0"),
])
def test_bad_networks_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(**kwargs)


def test_bad_data_and_parameters_are_refused():
    net = MLP((3, 4, 2))
    w, X, y = net.init(0), np.zeros((5, 3)), np.array([0, 1, 1, 0, 1])
    for method in (net.loss, net.grad, net.mean_loss, net.mean_grad):
        with pytest.raises(ValueError, match=r"`w` must have length p=26 for MLP\(.*\); got length 25"):
            method(w[:-1], X, y)
        with pytest.raises(ValueError, match=r"`X` must have d=3 columns \(sizes\[0\]\) .*; got 4"):
            method(w, np.zeros((5, 4)), y)
        with pytest.raises(ValueError, match=r"`y` must hold integer class labels in 0\.\.1 .*; got 2"):
            method(w, X, [0, 1, 2, 0, 1])
        for label in (0.5, np.nan, 1e300, -1.0):
            with pytest.raises(ValueError, match=rf"`y` must hold integer class labels in 0\.\.1 .*; "
                                                 rf"got {re.escape(repr(label))}"):
                method(w, X, [0, 1, label, 0, 1])
        with pytest.raises(ValueError, match=r"`y` must have shape \(\.\.\., n\) with n=5"):
            method(w, X, y[:4])
        bad = X.copy()
        bad[2, 1] = np.nan
        with pytest.raises(ValueError, match=r"`X` must be finite; got 1 NaN or inf value\(s\), "
                                             r"the first at index \(2, 1\)"):
            method(w, bad, y)
        with pytest.raises(ValueError, match=r"`w` must be finite"):
            method(np.full(net.p, np.inf), X, y)
    with pytest.raises(ValueError, match=r"`y` must be finite"):
        MLP((3, 1), loss="squared").loss(np.zeros(4), X, [0, 1, np.nan, 0, 1])
    with pytest.raises(ValueError, match=r"`d` must be 3, the input width sizes\[0\] .*; got 4"):
        net.n_params(4)
    with pytest.raises(ValueError, match=r"`out` must be a writeable C-contiguous float64 array of "
                                         r"shape \(26,\); got a float64 array of shape \(25,\)"):
        net.mean_grad(w, X, y, out=np.empty(25))
    with pytest.raises(ValueError, match=r"`v` must have shape \(p,\) or \(m, p\) with p=26"):
        net.hvp(w, X, y, np.zeros(25))
    with pytest.raises(ValueError, match=r"`w` must be a 1-D array; got an array of shape \(2, 26\)"):
        net.hvp(np.zeros((2, 26)), X, y, np.zeros(26))
    with pytest.raises(ValueError, match=r"`w` must have length p=26"):
        net.unflatten(np.zeros(27))
    with pytest.raises(ValueError, match=r"`layers\[1\]` must be \(W, b\) with W of shape \(\.\.\., 4, 2\)"):
        net.flatten([(np.zeros((3, 4)), np.zeros(4)), (np.zeros((4, 3)), np.zeros(2))])
    with pytest.raises(ValueError, match=r"`tol` must be a finite real number in \(0.0, inf\]; got 0"):
        net.minimize(X, y, tol=0)


# -- every engine takes a network ---------------------------------------------------------
#
# Monte Carlo checks compare with exact values within Z = 4 standard errors: a two-sided normal
# tail of 6.3e-5 per check.

Z = 4.0


@pytest.fixture(scope="module")
def fixed():
    """A tanh network at a perturbed start on N = 120 fixed examples: its losses and per-example
    gradients are a finite population, whose batch means have exact moments."""
    net = MLP((4, 6, 3), "tanh", l2=1e-2)
    rng = np.random.default_rng(21)
    X = rng.standard_normal((120, 4))
    y = rng.integers(0, 3, 120)
    w = net.init(rng) + 0.3 * rng.standard_normal(net.p)
    return net, lossvar.Dataset(X, y, name="fixed", task="classification"), w


def test_variance_study_of_network_losses_agrees_with_the_exact_finite_population_law(fixed):
    # Var of the mean of B losses drawn without replacement from N: s^2 / B (N - B) / (N - 1),
    # s^2 the population variance of the N losses (docs/theory.md, section 1).
    net, data, w = fixed
    losses = net.loss(w, data.X, data.y)
    sizes = np.array([1, 8, 60, 120])
    res = lossvar.variance_study(net, data, w, sizes, replicates=20_000, rng=3)
    t = res.table
    want = losses.var() / sizes * (120 - sizes) / 119
    assert_allclose(t.exact_variance, want, rtol=1e-12, atol=1e-300)
    assert t.variance.iloc[-1] == 0.0  # the full batch is the data set: no spread at all
    inner = t.iloc[:-1]
    assert ((inner.variance - inner.exact_variance).abs() <= Z * inner.variance_se).all(), inner
    assert ((t["mean"] - losses.mean()).abs() <= Z * t.mean_se + 1e-12).all()


def test_gradient_noise_of_a_network_is_the_formulas_on_its_per_example_gradients(fixed):
    # tr Sigma, ||G||^2, B_simple = tr Sigma / ||G||^2 and B_noise = tr(H Sigma) / G^T H G
    # (McCandlish et al. 2018, eqs. 2.7-2.8) from MLP.grad and the dense MLP.hessian.
    net, data, w = fixed
    g = net.grad(w, data.X, data.y)
    G = g.mean(axis=0)
    S = (g - G).T @ (g - G) / len(g)
    H = net.hessian(w, data.X, data.y)
    noise = lossvar.gradient_noise(net, data, w)
    assert noise.trace_cov == pytest.approx(np.trace(S), rel=1e-12)
    assert noise.grad_norm2 == pytest.approx(G @ G, rel=1e-12)
    assert noise.b_simple == pytest.approx(np.trace(S) / (G @ G), rel=1e-12)
    assert noise.b_noise == pytest.approx(np.sum(H * S) / (G @ H @ G), rel=1e-9)


def test_gradient_variance_of_a_network_agrees_with_tr_sigma_over_b_times_the_fpc(fixed):
    net, data, w = fixed
    g = net.grad(w, data.X, data.y)
    trace = np.sum(np.var(g, axis=0))
    t = lossvar.gradient_variance(net, data, w, [1, 8, 60], replicates=4000, rng=5).table
    assert_allclose(t.exact, trace / t.batch_size * (120 - t.batch_size) / 119, rtol=1e-12)
    assert ((t["mean"] - t.exact).abs() <= Z * t.mean_se).all(), t


def test_two_batch_estimate_on_network_gradients_is_unbiased(fixed):
    # Pairs of batch means (B = 4 and 30) drawn without replacement; with n = N the estimator
    # corrects for the finite population.
    net, data, w = fixed
    rng = np.random.default_rng(6)
    i = lossvar.sampling.without_replacement(rng, 120, 4, 3000)
    j = lossvar.sampling.without_replacement(rng, 120, 30, 3000)
    small = net.mean_grad(w, data.X[i], data.y[i])
    big = net.mean_grad(w, data.X[j], data.y[j])
    est = lossvar.two_batch_estimate(small, big, 4, 30, n=120, sampling="without_replacement")
    exact = lossvar.gradient_noise(net, data, w)
    assert abs(est.grad_norm2 - exact.grad_norm2) <= Z * est.grad_norm2_se
    assert abs(est.trace_cov - exact.trace_cov) <= Z * est.trace_cov_se


def test_adaptive_batch_tests_on_network_gradients(fixed):
    # theta_norm^2 = B_simple / B of the batch's own gradients (sample variance), and the norm
    # test splits into the inner-product and orthogonality tests (Bollapragada et al. 2018).
    net, data, w = fixed
    g = net.grad(w, data.X[:16], data.y[:16])
    own = lossvar.GradientNoiseResult.from_grads(g, ddof=1)
    theta = lossvar.noise.norm_test(g)
    assert theta**2 == pytest.approx(own.b_simple / 16, rel=1e-12)
    ip, orth = lossvar.noise.inner_product_test(g), lossvar.noise.orthogonality_test(g)
    assert theta**2 == pytest.approx(ip**2 + orth**2, rel=1e-12)


OPTIMIZERS = [  # every alias, each with another schedule of lossvar.schedules
    lambda: lossvar.optim.sgd(lossvar.schedules.constant(0.2)),
    lambda: lossvar.optim.momentum(lossvar.schedules.cosine(0.1, 12)),
    lambda: lossvar.optim.nesterov(lossvar.schedules.step(0.1, 0.5, 4)),
    lambda: lossvar.optim.rmsprop(lossvar.schedules.exponential(0.01, 0.9)),
    lambda: lossvar.optim.adam(lossvar.schedules.inverse_time(0.02, 5)),
    lambda: lossvar.optim.adamw(lossvar.schedules.polynomial(0.05, 0.6, 2), weight_decay=0.1),
    lambda: lossvar.optim.adagrad(0.1),
    lambda: lossvar.optim.amsgrad(lossvar.schedules.cosine(0.02, 12)),
]


@pytest.mark.reproducibility
@pytest.mark.parametrize("make", OPTIMIZERS, ids=lambda m: m().name)
def test_a_network_ensemble_equals_its_runs_one_at_a_time_on_the_same_batches(fixed, make):
    # R = 3 stacked runs from their own Glorot starts against the public pieces in a loop, one
    # replicate at a time, on the documented draws of block 0 (stream(root, 0, 0, 0)).
    net, data, _ = fixed
    R, B, steps = 3, 8, 12
    w0 = net.init(np.random.default_rng(8), size=R)
    tr = lossvar.run_sgd(net, data, make(), steps=steps, batch_size=B, replicates=R, w0=w0,
                         sampling="with_replacement", rng=42, record=[0, steps])
    gen = lossvar.streams.stream(tr.seed, 0, 0, 0)
    idx = [gen.integers(0, data.n, (R, B), dtype=np.int32) for _ in range(steps)]
    for r in range(R):
        opt, w = make(), w0[r].copy()
        state = opt.init(w)
        for t in range(steps):
            i = idx[t][r]
            updates, state = opt.update(net.mean_grad(w, data.X[i], data.y[i]), state, w)
            w = lossvar.optim.apply_updates(w, updates)
        assert_array_equal(tr.final_params[r], w)
    assert tr.by_step.loss_mean.iloc[-1] < tr.by_step.loss_mean.iloc[0]  # it trains


@pytest.mark.reproducibility
def test_network_runs_have_the_same_bits_with_workers_dask_and_a_resumed_checkpoint(fixed, tmp_path):
    net, data, _ = fixed
    kw = dict(steps=15, batch_size=8, replicates=300, rng=4, record=[0, 7, 15], record_params="all",
              w0=net.init(np.random.default_rng(9), size=300))
    plain = lossvar.run_sgd(net, data, lossvar.optim.adam(0.05), **kw)
    how = lossvar.Execution(workers=2, chunk_size=100, checkpoint=str(tmp_path / "ckpt"))
    for execution in (how, how):  # the second resumes from the checkpoint
        other = lossvar.run_sgd(net, data, lossvar.optim.adam(0.05), execution=execution, **kw)
        assert_array_equal(other.params, plain.params)
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        other = lossvar.run_sgd(net, data, lossvar.optim.adam(0.05),
                                execution=lossvar.Execution(executor=client.get_executor()), **kw)
    assert_array_equal(other.params, plain.params)
