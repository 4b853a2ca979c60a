"""run_sgd on a TorchProblem: R replicate trainings kept on the model's device, against
independent code (torch.optim loops on the same batches, lossvar's numpy problems on the
same data), run to run and across workers, and its bad input.

Deterministic comparisons, float64: the ensemble and the reference evaluate the same updates
in exact arithmetic in other orders (torch's ``loss.mean()`` against lossvar's sum times 1/B,
torch.optim's own arithmetic against lossvar.optim's), so they differ by a few roundings a
step; over the few dozen steps here, on parameters and losses of order 1, that stays below
1e-12, and the issue asks for agreement to TOL = 1e-10.
"""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is optional (pip install 'lossvar[torch]'): "
                                             "lossvar.torch's tests need it")

import lossvar  # noqa: E402
from lossvar import optim  # noqa: E402
from lossvar.sampling import epoch_batches  # noqa: E402
from lossvar.sgd import run_sgd  # noqa: E402
from lossvar.streams import as_seed_sequence, stream  # noqa: E402
from lossvar.torch import TorchProblem, flatten_params, load_params  # noqa: E402

TOL = 1e-10
CE = torch.nn.CrossEntropyLoss(reduction="none")
R, B, STEPS = 8, 16, 40


def _half_squared(out, t):
    return 0.5 * (out[:, 0] - t) ** 2

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def iris():
    pytest.importorskip("sklearn")
    return lossvar.datasets.load("iris")


def _net(seed, sizes=(4, 8, 3)):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(sizes[0], sizes[1]), torch.nn.Tanh(),
                               torch.nn.Linear(sizes[1], sizes[2])).double()


def _starts(sizes=(4, 8, 3)):
    """Each replicate from its own initialization of the model: (R, p)."""
    return np.stack([flatten_params(_net(10 + r, sizes)) for r in range(R)])


def _batches(seed, sampling, n):
    """The indices run_sgd documents for block 0: stream(root, 0, 0, 0), step after step."""
    rng = stream(as_seed_sequence(seed), 0, 0, 0)
    if sampling == "with_replacement":
        return [rng.integers(0, n, (R, B)) for _ in range(STEPS)]
    if sampling == "full":
        return [np.tile(np.arange(n), (R, 1))] * STEPS
    out = []
    while len(out) < STEPS:
        epoch = epoch_batches(rng, n, B, R)
        out += [epoch[:, i] for i in range(n // B)]
    return out[:STEPS]


def _pairs():
    """(lossvar optimizer, torch.optim factory) with the same convention (docs/guide/optimizers.md)."""
    o = torch.optim
    return {
        "sgd": (optim.sgd(0.1), lambda p: o.SGD(p, lr=0.1)),
        "momentum": (optim.momentum(0.05, 0.9, 0.3),
                     lambda p: o.SGD(p, lr=0.05, momentum=0.9, dampening=0.3)),
        "nesterov": (optim.nesterov(0.05, 0.8), lambda p: o.SGD(p, lr=0.05, momentum=0.8, nesterov=True)),
        "rmsprop": (optim.rmsprop(0.01, decay=0.99, eps=1e-8, eps_in_sqrt=False),
                    lambda p: o.RMSprop(p, lr=0.01, alpha=0.99, eps=1e-8)),
        "rmsprop centered momentum": (
            optim.rmsprop(0.01, decay=0.9, eps=1e-6, eps_in_sqrt=False, centered=True, momentum=0.5),
            lambda p: o.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-6, centered=True, momentum=0.5)),
        "adam": (optim.adam(0.01), lambda p: o.Adam(p, lr=0.01)),
        "amsgrad": (optim.amsgrad(0.01, 0.9, 0.9),
                    lambda p: o.Adam(p, lr=0.01, betas=(0.9, 0.9), amsgrad=True)),
        "adamw": (optim.adamw(0.01, weight_decay=0.1), lambda p: o.AdamW(p, lr=0.01, weight_decay=0.1)),
        "adagrad": (optim.adagrad(0.1), lambda p: o.Adagrad(p, lr=0.1)),
    }


CASES = [(name, "with_replacement") for name in _pairs()] + [("adam", "reshuffle"), ("sgd", "full")]


@pytest.mark.parametrize("name, sampling", CASES, ids=[f"{n}, {s}" for n, s in CASES])
def test_ensemble_equals_separate_torch_optim_loops(iris, name, sampling):
    ours, factory = _pairs()[name]
    problem = TorchProblem(_net(0), CE)
    W0 = _starts()
    record = [0, 10, STEPS]
    tr = run_sgd(problem, iris, ours, steps=STEPS, batch_size=None if sampling == "full" else B,
                 replicates=R, sampling=sampling, w0=W0, rng=7, record=record, record_params="all")
    X, y = torch.tensor(iris.X), torch.tensor(iris.y)
    idx = _batches(tr.seed, sampling, iris.n)
    for r in range(R):
        net = copy.deepcopy(problem.module)
        load_params(net, W0[r])
        theirs = factory(net.parameters())
        path, losses = [], []
        for t in range(STEPS + 1):
            if t in record:
                path.append(flatten_params(net))
                with torch.no_grad():
                    losses.append(CE(net(X), y).mean().item())
            if t == STEPS:
                break
            i = torch.as_tensor(idx[t][r])
            theirs.zero_grad()
            CE(net(X[i]), y[i]).mean().backward()
            theirs.step()
        np.testing.assert_allclose(tr.params[r], np.array(path), rtol=TOL, atol=TOL)
        np.testing.assert_allclose(tr.values("loss")[r], losses, rtol=TOL, atol=TOL)
        np.testing.assert_allclose(tr.final_params[r], path[-1], rtol=TOL, atol=TOL)
    assert tr.info["arrays"] == "torch.Tensor of dtype torch.float64 on cpu"


def test_float32_ensemble_equals_a_float32_torch_loop(iris):
    net32 = _net(0).float()
    problem = TorchProblem(net32, CE, dtype=torch.float32)
    W0 = _starts()
    tr = run_sgd(problem, iris, optim.sgd(0.1), steps=STEPS, batch_size=B, replicates=R,
                 sampling="with_replacement", w0=W0, rng=8, record=[0, STEPS])
    assert tr.final_params.dtype == np.float64
    X, y = torch.tensor(iris.X, dtype=torch.float32), torch.tensor(iris.y)
    idx = _batches(tr.seed, "with_replacement", iris.n)
    # float32 rounds each step's gradient differently in the two orders by about
    # (B + width) eps_32 relative; STEPS steps of lr 0.1 add up at most STEPS of them.
    tol = STEPS * (B + 8) * np.finfo(np.float32).eps
    for r in range(R):
        net = copy.deepcopy(net32)
        load_params(net, W0[r])
        theirs = torch.optim.SGD(net.parameters(), lr=0.1)
        for t in range(STEPS):
            i = torch.as_tensor(idx[t][r])
            theirs.zero_grad()
            CE(net(X[i]), y[i]).mean().backward()
            theirs.step()
        np.testing.assert_allclose(tr.final_params[r], flatten_params(net), rtol=tol, atol=tol)


def _as_mlp_layers(problem, w):
    """lossvar.MLP's layout of a torch vector: W (fan_in, fan_out) in C order, then b, per layer."""
    return [(w[s.slice].reshape(s.shape).T, w[b.slice]) for s, b in
            zip(problem.layout[0::2], problem.layout[1::2], strict=True)]


def test_the_batches_are_those_of_a_numpy_problem_of_the_same_data(iris):
    # lossvar's own numpy MLP on the same weights and the same seed: the same indices drawn
    # from the same streams, so the same trainings to rounding (two blocks: R = 300).
    problem = TorchProblem(_net(0), CE)
    mlp = lossvar.MLP((4, 8, 3), "tanh", "cross_entropy")
    w0 = flatten_params(problem.module)
    perm = mlp.flatten(_as_mlp_layers(problem, np.arange(problem.p, dtype=np.float64))).astype(np.intp)
    kw = dict(steps=30, batch_size=B, replicates=300, rng=9, record=[0, 30], sampling="reshuffle")
    ours = run_sgd(problem, iris, optim.adam(0.01), w0=w0, **kw)
    theirs = run_sgd(mlp, iris, optim.adam(0.01), w0=w0[perm], **kw)
    np.testing.assert_allclose(ours.final_params[:, perm], theirs.final_params, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(ours.values("loss"), theirs.values("loss"), rtol=TOL, atol=TOL)


@pytest.mark.reproducibility
def test_bit_identical_run_to_run_and_whatever_the_workers(iris, tmp_path):
    # Two blocks (256 + 44 replicates): each block is one vmap stack, whatever the chunks,
    # workers and checkpoints, so the bits depend only on the seed and the arguments (on one
    # machine). The checkpoint is written, then read back.
    problem = TorchProblem(_net(0), CE)
    kw = dict(steps=20, batch_size=B, replicates=300, rng=11, average=True, record_params=[0, 299],
              w0=flatten_params(problem.module))
    a = run_sgd(problem, iris, optim.adam(0.01), **kw)
    saved = lossvar.Execution(chunk_size=1, checkpoint=tmp_path)
    for how in (None, lossvar.Execution(chunk_size=1), lossvar.Execution(workers=2), saved, saved):
        b = run_sgd(problem, iris, optim.adam(0.01), execution=how, **kw)
        assert a.table.equals(b.table)
        assert np.array_equal(a.final_params, b.final_params)
        assert np.array_equal(a.params, b.params, equal_nan=True)


@pytest.mark.reproducibility
def test_a_stack_by_loop_gives_each_replicate_its_bits_alone(iris):
    # stack="loop": each replicate of a block is evaluated alone, so its trajectory is that of
    # the replicate by itself on its batches (the optimizer's in-place form has the bits of
    # its update), bit for bit.
    problem = TorchProblem(_net(0), CE, stack="loop")
    W0 = _starts()
    opt = optim.adam(0.01)
    tr = run_sgd(problem, iris, opt, steps=STEPS, batch_size=B, replicates=R,
                 sampling="with_replacement", w0=W0, rng=13, record=[0, STEPS])
    X, y = torch.tensor(iris.X), torch.tensor(iris.y)
    idx = _batches(tr.seed, "with_replacement", iris.n)
    for r in range(R):
        w = torch.tensor(W0[r])
        state = opt.init(w)
        for t in range(STEPS):
            i = torch.as_tensor(idx[t][r])
            updates, state = opt.update(problem.mean_grad(w, X[i], y[i], out=torch.empty_like(w)), state, w)
            w = optim.apply_updates(w, updates)
        np.testing.assert_array_equal(tr.final_params[r], w.numpy())


class _OnTheHost:
    """A TorchProblem without device_arrays: run_sgd's numpy blocks, the same problem calls."""

    def __init__(self, inner):
        self.inner = inner

    def n_params(self, d):
        return self.inner.n_params(d)

    def check_params(self, w, X):
        self.inner.check_params(w, X)

    def mean_grad(self, w, X, y, *, out=None):
        return self.inner.mean_grad(w, X, y, out=out)

    def mean_loss(self, w, X, y):
        return self.inner.mean_loss(w, X, y, out=np.empty(np.shape(w)[:-1]))


def test_divergence_is_watched_on_the_device_as_on_the_host():
    # A linear model, starts from 1 to 1e150 and a step too large: the parameters overflow
    # at many different steps. The replicates that diverge, and the step at which they do,
    # are those of run_sgd's numpy blocks on the same problem.
    rng = np.random.default_rng(6)
    X = rng.standard_normal((200, 3))
    data = lossvar.Dataset(X, X @ np.array([1.0, -2.0, 0.5]) + rng.standard_normal(200),
                           task="regression")
    torch.manual_seed(0)
    problem = TorchProblem(torch.nn.Linear(3, 1, bias=False).double(), _half_squared)
    w0 = rng.standard_normal((R, 3)) * np.logspace(0, 150, R)[:, None]
    kw = dict(steps=300, batch_size=1, replicates=R, sampling="with_replacement", w0=w0, rng=3,
              record=[0, 300])
    with pytest.warns(lossvar.DivergenceWarning):
        ours = run_sgd(problem, data, optim.sgd(20.0), **kw)
    with pytest.warns(lossvar.DivergenceWarning):
        host = run_sgd(_OnTheHost(problem), data, optim.sgd(20.0), **kw)
    assert len(set(ours.diverged.step)) > 3  # the steps do vary
    assert ours.diverged.equals(host.diverged)
    np.testing.assert_allclose(ours.final_params, host.final_params, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(ours.values("loss", used_only=False),
                               host.values("loss", used_only=False), rtol=TOL)


def test_fresh_examples_of_a_population(iris):
    # A torch linear model on a Gaussian linear population: the same draws as lossvar's
    # LinearRegression, so the same trajectories to rounding, and the distance to w*.
    population = lossvar.GaussianLinearPopulation([1.0, -2.0, 0.5], noise_std=0.5)
    torch.manual_seed(0)
    problem = TorchProblem(torch.nn.Linear(3, 1, bias=False).double(), _half_squared)
    kw = dict(steps=50, batch_size=4, replicates=R, w0=np.zeros(3), rng=12, record=[0, 50])
    ours = run_sgd(problem, population, optim.sgd(0.05), **kw)
    theirs = run_sgd(lossvar.LinearRegression(), population, optim.sgd(0.05), **kw)
    np.testing.assert_allclose(ours.final_params, theirs.final_params, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(ours.values("dist2"), theirs.values("dist2"), rtol=TOL, atol=TOL)
    assert np.isnan(ours.values("loss")).all()  # the population's risk is its own problem's


# -- bad input ---------------------------------------------------------------------------------------


class _Source:
    """A data source holding tensors (X, y)."""

    def __init__(self, X, y):
        self.X, self.y = X, y


def test_data_and_starts_elsewhere_or_in_another_dtype_are_refused(iris):
    problem = TorchProblem(_net(0), CE)
    w0 = flatten_params(problem.module)
    kw = dict(steps=3, batch_size=B, replicates=2, rng=1)
    with pytest.raises(ValueError, match=r"`w0` must be on the problem's device in its dtype.*`w` must "
                                         r"have the problem's dtype torch.float64; got torch.float32"):
        run_sgd(problem, iris, optim.sgd(0.1), w0=torch.tensor(w0, dtype=torch.float32), **kw)
    with pytest.raises(ValueError, match=r"`w0` must be on the problem's device.*got a tensor on meta"):
        run_sgd(problem, iris, optim.sgd(0.1), w0=torch.zeros(w0.size, dtype=torch.float64, device="meta"),
                **kw)
    y = torch.tensor(iris.y)
    with pytest.raises(ValueError, match=r"`source` must hold its data where the problem computes.*"
                                         r"`X` must be on the module's device cpu; got a tensor on meta"):
        run_sgd(problem, _Source(torch.zeros((150, 4), dtype=torch.float64, device="meta"), y),
                optim.sgd(0.1), **kw)
    with pytest.raises(ValueError, match=r"`source` must hold.*`X` must have the problem's dtype "
                                         r"torch.float64; got torch.float32"):
        run_sgd(problem, _Source(torch.tensor(iris.X, dtype=torch.float32), y), optim.sgd(0.1), **kw)
    # Tensors where the problem computes are used as they are: the same run as numpy data.
    a = run_sgd(problem, _Source(torch.tensor(iris.X), y), optim.sgd(0.1), w0=torch.tensor(w0), **kw)
    b = run_sgd(problem, iris, optim.sgd(0.1), w0=w0, **kw)
    np.testing.assert_allclose(a.final_params, b.final_params, rtol=TOL, atol=TOL)


def test_optimizers_and_schedules_that_cannot_run_on_tensors_are_refused(iris):
    problem = TorchProblem(_net(0), CE)
    kw = dict(steps=3, batch_size=B, replicates=2, rng=1)
    numpy_only = optim.GradientTransformation(lambda p: optim.EmptyState(),
                                              lambda g, s, p=None: (-0.1 * np.asarray(g), s))
    with pytest.raises(TypeError, match=r"`optimizer` must give updates and a state of the problem's "
                                        r"arrays \(torch.Tensor of dtype torch.float64 on cpu.*got "
                                        r"numpy.ndarray"):
        run_sgd(problem, iris, numpy_only, **kw)
    elsewhere = optim.sgd(lambda k: torch.tensor(0.1, device="meta"))
    with pytest.raises(TypeError, match=r"`optimizer` must run on the problem's arrays.*`lr` schedule "
                                        r"must return real numbers; got tensor\(.*meta"):
        run_sgd(problem, iris, elsewhere, **kw)
