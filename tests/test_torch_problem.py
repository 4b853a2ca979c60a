"""lossvar.torch.TorchProblem against independent code: torch autograd one example at a time,
lossvar's own numpy MLP, double backward, finite differences and the exact finite-population theory.

Deterministic comparisons: per-example gradients and losses against a plain loop of
``loss.backward()`` agree to RTOL = 1e-12 relative to each example's largest entry (both are
float64 evaluations of the same formulas in different orders). Monte Carlo checks use fixed
seeds and |estimate - exact| <= Z * se: Z = 4.4 for the loss variance (two-sided normal tail
1.1e-5 per check, as tests/test_variance.py) and Z = 4 for the gradient variance (6.3e-5 per
check, as tests/test_gradient_variance.py); this file makes 12 such checks, so a fresh seed
would fail one with probability below 4e-4.
"""

import math
import pickle
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is optional (pip install 'lossvar[torch]'): "
                                             "lossvar.torch's tests need it")

import lossvar  # noqa: E402
from lossvar.torch import (  # noqa: E402
    TorchProblem,
    dataset_arrays,
    flatten_params,
    load_params,
    parameter_layout,
)

RTOL = 1e-12
EPS = np.finfo(np.float64).eps
Z_LOSS, Z_GRAD = 4.4, 4.0
CE = torch.nn.CrossEntropyLoss(reduction="none")


def _half_squared(out, t):
    return 0.5 * (out[:, 0] - t) ** 2

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    data = lossvar.datasets.load("digits")
    return np.array(data.X[:60]), np.array(data.y[:60])


@pytest.fixture(scope="module")
def diabetes():
    pytest.importorskip("sklearn")
    data = lossvar.datasets.load("diabetes")
    return np.array(data.X[:80]), np.array(data.y[:80])


def _mlp():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.Tanh(), torch.nn.Linear(16, 12),
                               torch.nn.ReLU(), torch.nn.Linear(12, 10)).double()


class _ConvNet(torch.nn.Module):
    """A small conv net on 8x8 images: conv 3x3 (4 channels), tanh, 2x2 max-pool, linear."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.head = torch.nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        return self.head(torch.nn.functional.max_pool2d(torch.tanh(self.conv(x)), 2).flatten(1))


def _conv():
    torch.manual_seed(2)
    return _ConvNet().double()


class _Standardized(torch.nn.Module):
    """Inputs standardized by buffers, a frozen random feature layer, a trainable head."""

    def __init__(self, X):
        super().__init__()
        self.register_buffer("center", torch.tensor(X.mean(axis=0) + 0.3))
        self.register_buffer("scale", torch.tensor(X.std(axis=0) + 0.5))
        self.features = torch.nn.Linear(X.shape[1], 8)
        self.features.requires_grad_(False)
        self.head = torch.nn.Sequential(torch.nn.Softplus(), torch.nn.Linear(8, 1))

    def forward(self, x):
        return self.head(self.features((x - self.center) / self.scale))


def _buffered(X):
    torch.manual_seed(3)
    return _Standardized(X).double()


def _cases(digits, diabetes):
    (Xd, yd), (Xr, yr) = digits, diabetes
    return {
        "mlp": (_mlp(), CE, {}, Xd, yd),
        "conv": (_conv(), CE, {"input_shape": (1, 8, 8)}, Xd, yd),
        "buffers": (_buffered(Xr), _half_squared, {}, Xr, yr),
    }


def _loop_backward(module, loss_fn, X, y, input_shape=None):
    """Per-example losses and gradients by a plain loop of loss.backward(), one example at a time."""
    params = [p for p in module.parameters() if p.requires_grad]
    Xt, yt = torch.tensor(X), torch.tensor(y)
    losses, grads = [], []
    for i in range(len(X)):
        module.zero_grad()
        x = Xt[i:i + 1] if input_shape is None else Xt[i:i + 1].reshape((1,) + input_shape)
        loss = loss_fn(module(x), yt[i:i + 1]).sum()
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.reshape(-1) for p in params]).numpy().copy())
    return np.array(losses), np.stack(grads)


def _assert_rows_close(actual, expected, rtol=RTOL):
    """Each row agrees to rtol times that row's largest entry."""
    scale = np.abs(expected).max(axis=-1, keepdims=True)
    assert np.all(np.abs(actual - expected) <= rtol * scale), np.abs(actual - expected).max()


# -- import -------------------------------------------------------------------------------------


def test_import_lossvar_never_imports_torch():
    code = "import sys, lossvar, lossvar.datasets; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- per-example losses and gradients against a loop of backward() ----------------------------


@pytest.mark.parametrize("case", ["mlp", "conv", "buffers"])
def test_per_example_gradients_equal_a_loop_of_backward(case, digits, diabetes):
    module, loss_fn, kw, X, y = _cases(digits, diabetes)[case]
    problem = TorchProblem(module, loss_fn, **kw)
    w = flatten_params(module)
    losses, grads = _loop_backward(module, loss_fn, X, y, kw.get("input_shape"))
    np.testing.assert_allclose(problem.loss(w, X, y), losses, rtol=RTOL)
    _assert_rows_close(problem.grad(w, X, y), grads)
    assert problem.mean_loss(w, X, y) == pytest.approx(losses.mean(), rel=RTOL)
    _assert_rows_close(problem.mean_grad(w, X, y), grads.mean(axis=0))
    # Blocks of 7 examples give the same values to rounding.
    blocked = TorchProblem(module, loss_fn, block_size=7, **kw)
    _assert_rows_close(blocked.grad(w, X, y), grads)
    _assert_rows_close(blocked.mean_grad(w, X, y), grads.mean(axis=0))


def test_buffers_and_frozen_parameters_stay_outside_the_vector(diabetes):
    X, _ = diabetes
    module = _buffered(X)
    layout = parameter_layout(module)
    assert [s.name for s in layout] == ["head.1.weight", "head.1.bias"]
    assert TorchProblem(module, _half_squared).p == 9


def test_mean_gradient_is_the_training_gradient(digits):
    # The gradient of loss_fn(module(X), y).mean(), what a training loop's backward() gives.
    X, y = digits
    module = _mlp()
    module.zero_grad()
    CE(module(torch.tensor(X)), torch.tensor(y)).mean().backward()
    expected = torch.cat([p.grad.reshape(-1) for p in module.parameters()]).numpy()
    got = TorchProblem(module, CE).mean_grad(flatten_params(module), X, y)
    _assert_rows_close(got, expected)


# -- the same numbers as lossvar's numpy MLP ------------------------------------------------------


def _as_mlp_vector(module):
    """lossvar.MLP's layout from torch Linear layers: W (fan_in, fan_out) C order, then b."""
    linears = [m for m in module if isinstance(m, torch.nn.Linear)]
    return [(lin.weight.detach().numpy().T, lin.bias.detach().numpy()) for lin in linears]


@pytest.mark.parametrize("name, sizes, activation, loss", [
    ("iris", (4, 8, 3), "tanh", "cross_entropy"),
    ("diabetes", (10, 6, 1), "relu", "squared"),
])
def test_gradient_noise_equals_lossvars_mlp(name, sizes, activation, loss):
    pytest.importorskip("sklearn")
    data = lossvar.datasets.load(name)
    torch.manual_seed(4)
    act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[activation]
    module = torch.nn.Sequential(torch.nn.Linear(sizes[0], sizes[1]), act(),
                                 torch.nn.Linear(sizes[1], sizes[2])).double()
    problem = TorchProblem(module, CE if loss == "cross_entropy" else _half_squared)
    net = lossvar.MLP(sizes, activation, loss)
    w_net = net.flatten(_as_mlp_vector(module))
    # The permutation taking the torch vector to the MLP's: the MLP layout of the torch indices.
    index = np.arange(problem.p, dtype=np.float64)
    layers = [(index[s.slice].reshape(s.shape).T, index[b.slice]) for s, b in
              zip(problem.layout[0::2], problem.layout[1::2], strict=True)]
    perm = net.flatten(layers).astype(np.intp)
    ours = lossvar.gradient_noise(problem, data, flatten_params(module))
    theirs = lossvar.gradient_noise(net, data, w_net)
    # Both evaluate the same float64 formulas in other orders: each gradient entry rounds by at
    # most about (width + depth) eps relative to its terms (Higham 2002, sec. 3.1, for the dot
    # products), and the statistics sum over N examples and p parameters, adding (N + p) eps.
    rtol = (max(sizes) + 2 + data.n + problem.p) * EPS
    for field in ("grad_norm2", "trace_cov", "b_simple", "grad_hess_grad", "trace_hess_cov", "b_noise"):
        assert getattr(ours, field) == pytest.approx(getattr(theirs, field), rel=rtol), field
    mean_abs = np.abs(net.grad(w_net, data.X, data.y)).mean(axis=0)
    assert np.all(np.abs(ours.grad[perm] - theirs.grad) <= rtol * mean_abs)


# -- engines take a TorchProblem unchanged -------------------------------------------------------


@pytest.fixture(scope="module")
def iris_problem():
    pytest.importorskip("sklearn")
    data = lossvar.datasets.load("iris")
    torch.manual_seed(5)
    module = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    return TorchProblem(module, CE), data, flatten_params(module)


@pytest.mark.parametrize("sampling", ["without_replacement", "with_replacement"])
def test_variance_study_agrees_with_the_exact_finite_population_law(iris_problem, sampling):
    problem, data, w = iris_problem
    res = lossvar.variance_study(problem, data, w, [1, 5, 30, 120], replicates=20_000, sampling=sampling,
                                 rng=3)
    t = res.table
    losses = problem.loss(w, data.X, data.y)
    b, n = t.batch_size.to_numpy(), data.n
    fpc = (n - b) / (n - 1) if sampling == "without_replacement" else np.ones(b.size)
    np.testing.assert_allclose(t.exact_variance, losses.var() / b * fpc, rtol=1e-12)
    assert ((t.variance - t.exact_variance).abs() <= Z_LOSS * t.variance_se).all(), t


@pytest.mark.parametrize("sampling", ["without_replacement", "with_replacement"])
def test_gradient_variance_agrees_with_the_exact_law(iris_problem, sampling):
    problem, data, w = iris_problem
    res = lossvar.gradient_variance(problem, data, w, [1, 5, 30], replicates=4000, sampling=sampling,
                                    rng=11)
    t = res.table
    grads = problem.grad(w, data.X, data.y)
    trace = ((grads - grads.mean(axis=0)) ** 2).sum(axis=1).mean()
    b, n = t.batch_size.to_numpy(), data.n
    fpc = (n - b) / (n - 1) if sampling == "without_replacement" else np.ones(b.size)
    np.testing.assert_allclose(t.exact, trace / b * fpc, rtol=1e-12)
    assert ((t["mean"] - t.exact).abs() <= Z_GRAD * t.mean_se).all(), t


# -- Hessian-vector products -----------------------------------------------------------------------


def test_hvp_equals_double_backward_and_central_differences(digits):
    X, y = digits
    module = _mlp()
    problem = TorchProblem(module, CE)
    w = flatten_params(module)
    V = np.random.default_rng(6).normal(size=(3, problem.p))
    Hv = problem.hvp(w, X, y, V)
    assert problem.hvp(w, X, y, V[0]).shape == (problem.p,)
    _assert_rows_close(problem.hvp(w, X, y, V[0]), Hv[0])
    # Double backward: the gradient of <grad L, v> (torch.autograd with create_graph=True).
    params = [p for p in module.parameters()]
    loss = CE(module(torch.tensor(X)), torch.tensor(y)).mean()
    g = torch.autograd.grad(loss, params, create_graph=True)
    flat = torch.cat([gi.reshape(-1) for gi in g])
    expected = np.stack([torch.cat([h.reshape(-1) for h in torch.autograd.grad(
        flat @ torch.tensor(v), params, retain_graph=True)]).numpy() for v in V])
    _assert_rows_close(Hv, expected)
    # Central differences of the mean gradient: truncation h^2 |D^3 L| / 6 and rounding
    # eps |grad| / h, both about 1e-10 relative at h = eps^(1/3); 1e-6 leaves room for the
    # third derivatives while a wrong product would be off by O(1).
    h = EPS ** (1 / 3)
    for v, hv in zip(V, Hv, strict=True):
        fd = (problem.mean_grad(w + h * v, X, y) - problem.mean_grad(w - h * v, X, y)) / (2 * h)
        assert np.linalg.norm(fd - hv) <= 1e-6 * np.linalg.norm(hv)


def test_hessian_is_symmetric_and_its_rows_are_hvps(iris_problem):
    problem, data, w = iris_problem
    H = problem.hessian(w, data.X, data.y)
    assert H.shape == (problem.p, problem.p)
    np.testing.assert_array_equal(H, H.T)
    rows = problem.hvp(w, data.X, data.y, np.eye(problem.p)[:5])
    _assert_rows_close(H[:5], rows)


# -- stacks ------------------------------------------------------------------------------------------


def _stack(digits):
    X, y = digits
    rng = np.random.default_rng(7)
    module = _mlp()
    w = flatten_params(module)
    W = w + 0.1 * rng.normal(size=(4, w.size))
    idx = rng.integers(0, len(X), (4, 9))
    return module, W, X[idx], y[idx]


def test_stack_by_loop_is_bit_identical_to_a_loop_over_replicates(digits):
    module, W, Xs, ys = _stack(digits)
    problem = TorchProblem(module, CE, stack="loop")
    for method in ("loss", "grad", "mean_loss", "mean_grad"):
        stacked = getattr(problem, method)(W, Xs, ys)
        looped = np.stack([getattr(problem, method)(W[r], Xs[r], ys[r]) for r in range(len(W))])
        np.testing.assert_array_equal(stacked, looped, err_msg=method)


def test_stack_by_vmap_equals_a_loop_to_rounding(digits):
    # torch's batched kernels may round a replicate otherwise than the same replicate alone.
    module, W, Xs, ys = _stack(digits)
    problem = TorchProblem(module, CE)
    for method in ("loss", "grad", "mean_grad"):
        stacked = getattr(problem, method)(W, Xs, ys)
        looped = np.stack([getattr(problem, method)(W[r], Xs[r], ys[r]) for r in range(len(W))])
        _assert_rows_close(stacked, looped)
    # Every replicate on the same data: X (n, d) broadcasts against w (R, p).
    X, y = digits
    shared = problem.grad(W, X[:10], y[:10])
    assert shared.shape == (4, 10, problem.p)
    _assert_rows_close(shared[2], problem.grad(W[2], X[:10], y[:10]))


# -- data, layout, dtypes -------------------------------------------------------------------------


def test_dataset_arrays_of_images_and_input_shape(digits):
    X, y = digits
    images = torch.tensor(X).reshape(-1, 1, 8, 8)

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return len(X)

        def __getitem__(self, i):
            return images[i], int(y[i])

    for ds in (torch.utils.data.TensorDataset(images, torch.tensor(y)), Pairs()):
        data = dataset_arrays(ds, name="digits images")
        np.testing.assert_array_equal(data.X, X)
        np.testing.assert_array_equal(data.y, y)
        assert data.task == "classification" and data.n_classes == 10
    module = _conv()
    problem = TorchProblem(module, CE, input_shape=tuple(images[0].shape))
    _, grads = _loop_backward(module, CE, X, y, (1, 8, 8))
    _assert_rows_close(problem.grad(flatten_params(module), data.X, data.y), grads)
    floats = dataset_arrays(torch.utils.data.TensorDataset(images, torch.tensor(y, dtype=torch.float64)))
    assert floats.task == "regression" and floats.y.dtype == np.float64


def test_flatten_and_load_params_round_trip():
    module = _conv()
    layout = parameter_layout(module)
    assert [s.name for s in layout] == [name for name, _ in module.named_parameters()]
    assert layout[-1].slice.stop == sum(p.numel() for p in module.parameters())
    w = flatten_params(module)
    np.testing.assert_array_equal(w[layout[0].slice].reshape(layout[0].shape),
                                  module.conv.weight.detach().numpy())
    new = np.arange(w.size, dtype=np.float64)
    load_params(module, new)
    np.testing.assert_array_equal(flatten_params(module), new)
    with pytest.raises(ValueError, match=rf"`w` must have shape \(p,\) with p={w.size}"):
        load_params(module, new[:-1])


def test_float32_problem_returns_float64_close_to_float64(digits):
    X, y = digits
    module = _mlp()
    w = flatten_params(module)
    g64 = TorchProblem(module, CE).grad(w, X, y)
    m64 = TorchProblem(module, CE).mean_grad(w, X, y)
    p32 = TorchProblem(module.float(), CE, dtype=torch.float32)
    g32 = p32.grad(w, X, y)
    assert g32.dtype == np.float64
    # float32 rounds each entry by about width eps_32 = 16 * 1.2e-7 relative to the row.
    _assert_rows_close(g32, g64, rtol=16 * 4 * np.finfo(np.float32).eps)
    # The mean into a float64 host buffer: the rows' rounding plus at most n roundings of
    # the float32 sum, each below eps_32 times the largest entry.
    m32 = p32.mean_grad(w, X, y, out=np.empty(p32.p))
    eps = np.finfo(np.float32).eps
    np.testing.assert_allclose(m32, m64, rtol=0, atol=(16 * 4 + len(X)) * eps * np.abs(g64).max())


def test_tensors_on_the_device_are_used_as_they_are(digits):
    X, y = digits
    module = _mlp()
    problem = TorchProblem(module, CE)
    w = flatten_params(module)
    by_tensor = problem.grad(torch.tensor(w), torch.tensor(X), torch.tensor(y))
    np.testing.assert_array_equal(by_tensor, problem.grad(w, X, y))


def test_results_written_into_out_stay_where_out_is(digits):
    # out= a host array or a tensor on the device: the result of the call without out,
    # written there (the same computation, another destination), and out itself returned.
    X, y = digits
    problem = TorchProblem(_mlp(), CE)
    w = np.stack([flatten_params(problem.module), flatten_params(_mlp()) * 0.5])
    Xb = np.stack([X[:20], X[20:40]])
    yb = np.stack([y[:20], y[20:40]])
    wt, Xt, yt = problem.device_arrays(w, Xb, yb)
    assert yt.dtype == torch.long and Xt.dtype == torch.float64
    for method, shape in (("mean_grad", (2, problem.p)), ("mean_loss", (2,)), ("grad", (2, 20, problem.p))):
        expected = getattr(problem, method)(w, Xb, yb)
        host, tensor = np.empty(shape), torch.empty(shape, dtype=torch.float64)
        assert getattr(problem, method)(w, Xb, yb, out=host) is host
        assert getattr(problem, method)(wt, Xt, yt, out=tensor) is tensor
        np.testing.assert_array_equal(host, expected)
        np.testing.assert_array_equal(tensor.numpy(), expected)
    with pytest.raises(ValueError, match=r"`out` must be a writeable C-contiguous float64 array of shape "
                                         r"\(2,\), or a contiguous tensor of that shape on the module's "
                                         r"device cpu in torch.float64; got a torch.float32 tensor"):
        problem.mean_loss(wt, Xt, yt, out=torch.empty(2, dtype=torch.float32))
    # With out (an engine's call), a diverged row is not refused: its values are NaN.
    wt[1, 0] = np.nan
    out = torch.empty(2, dtype=torch.float64)
    problem.mean_loss(wt, Xt, yt, out=out)
    assert np.isfinite(out[0].item()) and np.isnan(out[1].item())
    with pytest.raises(ValueError, match=r"`w` must be finite"):
        problem.mean_loss(wt, Xt, yt)
    with pytest.raises(ValueError, match=r"`w` must be finite"):
        problem.device_arrays(wt, None, None)
    with pytest.raises(ValueError, match=r"`y` needs `X`"):
        problem.device_arrays(None, None, y)


def test_pickles_for_worker_processes(digits):
    X, y = digits
    problem = TorchProblem(_mlp(), CE)
    w = flatten_params(problem.module)
    copy = pickle.loads(pickle.dumps(problem))
    np.testing.assert_array_equal(copy.grad(w, X, y), problem.grad(w, X, y))


# -- bad input ---------------------------------------------------------------------------------------


class _Centered(torch.nn.Module):
    """Subtracts the batch mean: each example's output depends on the others."""

    def forward(self, x):
        return x - x.mean(dim=0)


def test_batch_dependent_modules_are_refused(digits):
    X, y = digits
    torch.manual_seed(8)
    bn = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 10)).double()
    with pytest.raises(ValueError, match=r"`module` must be in eval mode.*BatchNorm1d `1`.*module.eval\(\)"):
        TorchProblem(bn, CE)
    problem = TorchProblem(bn.eval(), CE)  # running statistics: per example
    w = flatten_params(bn)
    assert problem.grad(w, X, y).shape == (60, problem.p)
    bn.train()
    with pytest.raises(ValueError, match="must be in eval mode"):
        problem.loss(w, X, y)
    drop = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 10)).double()
    with pytest.raises(ValueError, match=r"Dropout `1` is in training mode and zeroes random units"):
        TorchProblem(drop, CE)
    centered = torch.nn.Sequential(torch.nn.Linear(64, 8), _Centered(), torch.nn.Linear(8, 10)).double()
    with pytest.raises(ValueError, match=r"losses of a batch of 4 examples differ from the same examples"):
        TorchProblem(centered, CE).grad(flatten_params(centered), X, y)


def test_reducing_or_batch_normalized_losses_are_refused(digits):
    X, y = digits
    module = _mlp()
    w = flatten_params(module)
    with pytest.raises(ValueError, match=r"`loss_fn` must return one loss per example.*got shape \(\)"):
        TorchProblem(module, torch.nn.CrossEntropyLoss()).grad(w, X, y)
    with pytest.raises(ValueError, match="differ from the same examples one at a time"):
        TorchProblem(module, lambda out, t: CE(out, t) / len(t)).loss(w, X, y)


def test_devices_and_dtypes_are_never_converted_silently(digits):
    X, y = digits
    module = _mlp()
    with pytest.raises(ValueError, match=r"dtype=torch.float64; `0.weight` is torch.float32: call "
                                         r"module.to\(torch.float64\) or pass dtype=torch.float32"):
        TorchProblem(_mlp().float(), CE)
    with pytest.raises(ValueError, match=r"`device` must be the module's device, cpu; got cuda"):
        TorchProblem(module, CE, device="cuda")
    problem = TorchProblem(module, CE)
    w = flatten_params(module)
    with pytest.raises(ValueError, match=r"`X` must have the problem.s dtype torch.float64; got .*float32"):
        problem.grad(w, torch.tensor(X, dtype=torch.float32), y)
    with pytest.raises(ValueError, match=r"`X` must be on the module's device cpu; got a tensor on meta"):
        problem.grad(w, torch.zeros(X.shape, dtype=torch.float64, device="meta"), y)
    with pytest.raises(ValueError, match=r"`y` must have dtype torch.float64; got torch.float32"):
        TorchProblem(_buffered(X[:, :10]), _half_squared).loss(
            flatten_params(_buffered(X[:, :10])), X[:, :10], torch.zeros(60, dtype=torch.float32))


def test_non_finite_data_losses_and_gradients_are_refused(digits):
    X, y = digits
    module = _mlp()
    problem = TorchProblem(module, CE)
    w = flatten_params(module)
    bad = X.copy()
    bad[3, 5] = np.nan
    with pytest.raises(ValueError, match=r"`X` must be finite; got 1 NaN or inf value\(s\)"):
        problem.grad(w, bad, y)
    with pytest.raises(ValueError, match=r"`w` must be finite"):
        problem.loss(np.full(problem.p, np.inf), X, y)
    inf_loss = TorchProblem(module, lambda out, t: CE(out, t) / (t != 3).to(out.dtype))
    with pytest.raises(ValueError, match=r"the losses of `loss_fn` at `w` must be finite"):
        inf_loss.loss(w, X, y)
    # sqrt(z^2) at z = 0: a finite loss with an undefined (NaN) gradient.
    torch.manual_seed(9)
    lin = torch.nn.Linear(64, 1, bias=False).double()
    kink = TorchProblem(lin, lambda out, t: torch.sqrt(out[:, 0] ** 2))
    with pytest.raises(ValueError, match=r"the per-example gradients of `loss_fn` at `w` must be finite"):
        kink.grad(np.zeros(64), X, y)


def test_shapes_and_arguments_are_checked(digits):
    X, y = digits
    module = _mlp()
    problem = TorchProblem(module, CE)
    w = flatten_params(module)
    with pytest.raises(ValueError, match=rf"`w` must have length p={w.size}, the number of trainable"):
        problem.grad(w[:-1], X, y)
    with pytest.raises(ValueError, match=r"`y` must have shape \(\.\.\., n\) with n=60"):
        problem.loss(w, X, y[:-1])
    with pytest.raises(ValueError, match=r"`X` must have d=64 columns, the size of input_shape=\(1, 8, 8\)"):
        TorchProblem(_conv(), CE, input_shape=(1, 8, 8)).loss(flatten_params(_conv()), X[:, :10], y)
    with pytest.raises(ValueError, match=r"`y` must hold integers for target_dtype=torch.int64; got 0.5"):
        TorchProblem(module, CE, target_dtype=torch.long).loss(w, X, np.full(60, 0.5))
    labels = TorchProblem(module, CE, target_dtype=torch.long).loss(w, X, y.astype(np.float64))
    np.testing.assert_array_equal(labels, problem.loss(w, X, y))
    with pytest.raises(ValueError, match=r"`out` must be a writeable C-contiguous float64 array of shape"):
        problem.mean_grad(w, X, y, out=np.empty(w.size + 1))
    with pytest.raises(ValueError, match=r"`v` must have shape \(p,\) or \(m, p\)"):
        problem.hvp(w, X, y, np.ones(3))
    with pytest.raises(TypeError, match=r"`loss_fn` must be a callable"):
        TorchProblem(module, "cross_entropy")
    with pytest.raises(TypeError, match=r"`module` must be a torch.nn.Module"):
        TorchProblem(lambda x: x, CE)
    frozen = torch.nn.Linear(3, 2).double().requires_grad_(False)
    with pytest.raises(ValueError, match="at least one parameter that requires a gradient"):
        TorchProblem(frozen, CE)
    with pytest.raises(ValueError, match=r"The value for `stack` must be one of"):
        TorchProblem(module, CE, stack="chunks")
    assert problem.n_params(64) == w.size and math.isclose(problem.l2, 0.0)
