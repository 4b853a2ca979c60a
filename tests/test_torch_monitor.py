"""lossvar.torch.NoiseScaleHook: the gradient norms of a PyTorch loop with gradient accumulation
fed to lossvar.GradientNoiseMonitor, and the DistributedDataParallel recipe.

A fixed model (no optimizer step) on iris, N = 150: the exact ||G||^2 and tr Sigma come from
its N per-example gradients (lossvar.torch.TorchProblem). Deterministic checks: the hook's
norms equal the norms of mean gradients computed independently (TorchProblem.mean_grad) to
1e-12 relative. Monte Carlo checks over seeds use |mean - exact| <= Z * se with Z = 4
(two-sided normal tail 6.3e-5 per check) and the coverage of the 95% intervals with
binomtest at p > 1e-4 (a false failure with probability <= 1e-4 per interval when the
coverage is nominal; normal intervals of a mean of 40 skewed pairs cover a little less than
95%, which this threshold tolerates, while a wrong standard error or a missing
finite-population correction covers far less).
"""

import json
import math
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

torch = pytest.importorskip("torch", reason="PyTorch is optional (pip install 'lossvar[torch]'): "
                                             "lossvar.torch's tests need it")

import lossvar  # noqa: E402
from lossvar.torch import NoiseScaleHook, TorchProblem, flatten_params  # noqa: E402

RECIPES = Path(__file__).resolve().parent.parent / "docs" / "recipes"
EPS = np.finfo(np.float64).eps
Z = 4.0
CE = torch.nn.CrossEntropyLoss(reduction="none")

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def iris():
    pytest.importorskip("sklearn")
    data = lossvar.datasets.load("iris")
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    problem = TorchProblem(module, CE)
    grads = problem.grad(flatten_params(module), data.X, data.y)
    exact = lossvar.GradientNoiseResult.from_grads(grads)
    return module, problem, data, exact


def _train_steps(module, hook, X, y, rng, steps, b, k):
    """A loop with gradient accumulation and no optimizer step; returns each step's indices."""
    drawn = []
    for _ in range(steps):
        idx = rng.choice(len(X), k * b, replace=False)
        for j in range(k):
            part = idx[j * b:(j + 1) * b]
            (CE(module(X[part]), y[part]).mean() / k).backward()
        hook.step()
        module.zero_grad()
        drawn.append(idx)
    return drawn


def test_norms_equal_independent_mean_gradients_and_two_batch_estimate(iris):
    module, problem, data, _ = iris
    b, k, steps = 4, 3, 30
    X, y = torch.tensor(data.X), torch.tensor(data.y)
    monitor = lossvar.GradientNoiseMonitor(b, k * b, n=data.n, sampling="without_replacement")
    hook = NoiseScaleHook(module, monitor, micro_batches=k)
    pairs = []
    orig_step = hook.step
    hook.step = lambda: pairs.append(orig_step())  # keep each step's pair
    drawn = _train_steps(module, hook, X, y, np.random.default_rng(1), steps, b, k)
    hook.remove()
    w = flatten_params(module)
    small = np.stack([problem.mean_grad(w, data.X[idx[j * b:(j + 1) * b]], data.y[idx[j * b:(j + 1) * b]])
                      for idx in drawn for j in range(k)])
    big = np.stack([problem.mean_grad(w, data.X[idx], data.y[idx]) for idx in drawn])
    ys = np.einsum("ij,ij->i", small, small).reshape(steps, k).mean(axis=1)
    yb = np.einsum("ij,ij->i", big, big)
    np.testing.assert_allclose(np.array(pairs), np.column_stack([ys, yb]), rtol=1e-12)
    # The monitor averages the k small norms of a step: its estimates are the means of the
    # per-pair estimates of two_batch_estimate over every micro-batch with its step's big batch.
    est = monitor.estimate()
    ref = lossvar.two_batch_estimate(small, np.repeat(big, k, axis=0), b, k * b, n=data.n)
    for name in ("grad_norm2", "trace_cov"):
        # Means of the same pairs summed in two orders: within (number of pairs) eps max |pair|.
        tol = steps * k * EPS * np.abs(getattr(ref, f"{name}_pairs")).max()
        assert abs(getattr(est, name) - getattr(ref, name)) <= tol, name
    assert est.b_simple == pytest.approx(ref.b_simple, rel=1e-10)


def test_estimates_are_unbiased_and_their_intervals_cover_the_exact_values(iris):
    module, _, data, exact = iris
    b, k, steps, seeds = 5, 2, 40, 150
    X, y = torch.tensor(data.X), torch.tensor(data.y)
    truth = dict(grad_norm2=exact.grad_norm2, trace_cov=exact.trace_cov, b_simple=exact.b_simple)
    values, hits = {name: [] for name in truth}, dict.fromkeys(truth, 0)
    for seed in range(seeds):
        monitor = lossvar.GradientNoiseMonitor(b, k * b, n=data.n, sampling="without_replacement")
        hook = NoiseScaleHook(module, monitor, micro_batches=k)
        _train_steps(module, hook, X, y, np.random.default_rng(seed), steps, b, k)
        hook.remove()
        est = monitor.estimate()
        for name, true in truth.items():
            values[name].append(getattr(est, name))
            low, high = getattr(est, f"{name}_ci")
            hits[name] += low <= true <= high
    for name in ("grad_norm2", "trace_cov"):
        v = np.array(values[name])
        assert abs(v.mean() - truth[name]) <= Z * v.std(ddof=1) / math.sqrt(seeds), name
    for name, h in hits.items():
        assert stats.binomtest(h, seeds, 0.95).pvalue > 1e-4, (name, h)


def test_paused_passes_are_not_collected(iris):
    module, _, data, _ = iris
    X, y = torch.tensor(data.X), torch.tensor(data.y)
    params = list(module.parameters())

    def micro_batch(j):
        (CE(module(X[j * 5:(j + 1) * 5]), y[j * 5:(j + 1) * 5]).mean() / 2).backward()

    def probe():  # gradients taken elsewhere (torch.autograd.grad): they pass the hooks too
        torch.autograd.grad(CE(module(X[100:120]), y[100:120]).mean(), params)

    hook = NoiseScaleHook(module, micro_batches=2)
    try:
        micro_batch(0), micro_batch(1)
        expected = hook.step()
        module.zero_grad()
        for j in range(2):
            micro_batch(j)
            with hook.paused():
                probe()
        assert hook.step() == expected
        module.zero_grad()
        micro_batch(0), probe(), micro_batch(1)
        with pytest.raises(ValueError, match="got 3"):
            hook.step()
    finally:
        module.zero_grad()
        hook.remove()


def test_bad_input_is_refused(iris):
    module, _, data, _ = iris
    X, y = torch.tensor(data.X), torch.tensor(data.y)
    with pytest.raises(ValueError, match=r"`micro_batches` must be >= 2 without `distributed`"):
        NoiseScaleHook(module)
    with pytest.raises(ValueError, match=r"`monitor` must have b_big = 4 \* b_small \(4 micro-batch"):
        NoiseScaleHook(module, lossvar.GradientNoiseMonitor(8, 16), micro_batches=4)
    with pytest.raises(ValueError, match=r"`distributed` must be False unless torch.distributed is init"):
        NoiseScaleHook(module, distributed=True)
    with pytest.raises(ValueError, match=r"`b_small` must be smaller than `b_big`"):  # the monitor's own
        lossvar.GradientNoiseMonitor(8, 8)
    hook = NoiseScaleHook(module, micro_batches=3)
    try:
        CE(module(X[:5]), y[:5]).mean().backward()
        with pytest.raises(ValueError, match=r"needs exactly micro_batches=3 backward passes since the last "
                                             r"step; got 1"):
            hook.step()
    finally:
        module.zero_grad()
        hook.remove()


def test_ddp_recipe_feeds_rank_and_all_reduced_norms(tmp_path):
    """Two CPU ranks on the gloo backend; the model stays fixed (--lr 0) so that each step's
    pair can be recomputed in this process from the recipe's own batches."""
    pytest.importorskip("sklearn")
    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available in this torch build")
    recipe = RECIPES / "ddp_noise_scale.py"
    out = tmp_path / "pairs.json"
    steps, world = 12, 2
    run = subprocess.run([sys.executable, str(recipe), "--world-size", str(world), "--steps", str(steps),
                          "--lr", "0", "--batch-size", "8", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "B_simple" in run.stdout and "exact at the (fixed) start" in run.stdout
    result = json.loads(out.read_text())
    ns = runpy.run_path(str(recipe), run_name="recipe")
    data = lossvar.datasets.load("digits")
    model = ns["make_model"]()
    problem = TorchProblem(model, CE)
    w = flatten_params(model)
    for step, (small, big) in enumerate(result["pairs"]):
        parts = [ns["rank_batch"](step, r, world, data.n, 8, result["seed"]) for r in range(world)]
        g = [problem.mean_grad(w, data.X[i], data.y[i]) for i in parts]
        assert small == pytest.approx(np.mean([gi @ gi for gi in g]), rel=1e-12)
        g_big = np.mean(g, axis=0)
        assert big == pytest.approx(g_big @ g_big, rel=1e-12)
