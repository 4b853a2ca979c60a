"""Benchmark of the multi-layer perceptron's gradients against torch.func and a hand-written numpy floor.

    python benchmarks/bench_mlp.py        # about half a minute

Network: digits (1797 examples, 64 standardized pixels, 10 classes), 64-32-10
tanh, softmax cross-entropy, l2 = 1e-2, float64, on the CPU.

- per-example gradients of all 1797 examples: ``MLP.grad`` (one (1797, 2410)
  array) against ``torch.func.vmap(torch.func.grad(loss))`` over
  ``torch.func.functional_call`` of the same ``torch.nn.Sequential`` (one
  tensor per parameter, the recipe of PyTorch's "Per-sample gradients"
  tutorial). torch uses as many threads as numpy's BLAS (threadpoolctl reads
  that number; printed). Target: lossvar / torch <= 1.
- the hot path of SGD ensembles: ``MLP.mean_grad(w, X, y, out=g)`` for R = 256
  parameter vectors, each on its own batch of B = 32 examples, against a
  hand-written vectorized numpy forward and backward doing the same arithmetic
  (stacked matmuls, one array per layer, one-hot labels made beforehand), the
  floor for run_sgd's MLP ensembles. Target: lossvar / floor <= 1.2.

Each leg is timed as the best of several rounds, the legs of a round one after
the other, so that a busy machine slows both alike; the CPU time that other
processes took during the run is printed (benchmarks/_common.py). The
per-thread scratch that ``mean_grad`` keeps is printed too. Never a test:
tests do not assert on wall-clock time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

import lossvar.datasets
from lossvar.problems import MLP

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CpuMeter, best_time, machine  # noqa: E402

SIZES = (64, 32, 10)
L2 = 1e-2


def blas_threads() -> int:
    """Threads of the BLAS that numpy calls (threadpoolctl)."""
    counts = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
    return max(counts, default=1)


def torch_per_example(torch, net, w, X, y):
    """A callable computing per-example gradients with torch.func.vmap(grad) on the same network."""
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))
    model = model.double()
    layers = net.unflatten(w)
    # nn.Linear stores W^T (fan_out, fan_in): the same numbers as lossvar's (fan_in, fan_out).
    params = {"0.weight": torch.tensor(layers[0][0].T.copy()), "0.bias": torch.tensor(layers[0][1]),
              "2.weight": torch.tensor(layers[1][0].T.copy()), "2.bias": torch.tensor(layers[1][1])}
    Xt, yt = torch.tensor(X), torch.tensor(y)

    def loss(p, x, t):
        logits = torch.func.functional_call(model, p, (x[None],))
        ce = torch.nn.functional.cross_entropy(logits, t[None])
        return ce + 0.5 * L2 * sum((v * v).sum() for v in p.values())

    per_example = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))
    return lambda: per_example(params, Xt, yt)


def floor_mean_grad(W1, b1, W2, b2, X, onehot):
    """The mean gradient of R stacked networks on their own batches, in plain numpy."""
    B = X.shape[-2]
    A1 = np.tanh(X @ W1 + b1[:, None, :])
    F = A1 @ W2 + b2[:, None, :]
    E = np.exp(F - F.max(axis=-1, keepdims=True))
    D2 = (E / E.sum(axis=-1, keepdims=True) - onehot) / B
    D1 = (D2 @ W2.transpose(0, 2, 1)) * (1.0 - A1 * A1)
    return (X.transpose(0, 2, 1) @ D1 + L2 * W1, D1.sum(axis=1) + L2 * b1,
            A1.transpose(0, 2, 1) @ D2 + L2 * W2, D2.sum(axis=1) + L2 * b2)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=7, help="best of this many rounds (default 7)")
    p.add_argument("--replicates", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    a = p.parse_args(argv)
    meter = CpuMeter()
    data = lossvar.datasets.load("digits")
    X, y = data.X, data.y
    net = MLP(SIZES, "tanh", l2=L2)
    w = net.init(rng=0)
    threads = blas_threads()
    print(f"machine: {machine()}")
    print(f"network: {net!r}, p = {net.p}; numpy BLAS threads: {threads}")

    try:
        import torch
    except ImportError:
        torch = None
    print(f"\nper-example gradients, n = {X.shape[0]}, float64 (best of {a.rounds})")
    t_ours = best_time(lambda: net.grad(w, X, y), 1)  # warm-up
    if torch is None:
        print("  torch is not installed: lossvar's time only")
        t_ours = best_time(lambda: net.grad(w, X, y), a.rounds)
        print(f"  lossvar MLP.grad        {t_ours * 1e3:8.2f} ms")
    else:
        torch.set_num_threads(threads)
        torch_fn = torch_per_example(torch, net, w, X, y)
        got = torch_fn()
        ours = net.grad(w, X, y)
        # Same numbers, to rounding: the benchmark compares equal work.
        gW1 = ours[:, :64 * 32].reshape(-1, 64, 32)
        assert np.allclose(gW1, got["0.weight"].numpy().transpose(0, 2, 1), rtol=0, atol=1e-12)
        t_ours = t_torch = float("inf")
        for _ in range(a.rounds):
            t_ours = min(t_ours, best_time(lambda: net.grad(w, X, y)))
            t_torch = min(t_torch, best_time(torch_fn))
        print(f"  torch {torch.__version__} threads: {torch.get_num_threads()} (set to numpy's BLAS)")
        print(f"  lossvar MLP.grad        {t_ours * 1e3:8.2f} ms")
        print(f"  torch.func.vmap(grad)   {t_torch * 1e3:8.2f} ms")
        print(f"  lossvar / torch         {t_ours / t_torch:8.2f}   (target <= 1)")

    R, B = a.replicates, a.batch_size
    rng = np.random.default_rng(1)
    idx = rng.integers(0, X.shape[0], (R, B))
    Xb, yb = np.ascontiguousarray(X[idx]), y[idx]
    W = net.init(rng=2, size=R)
    onehot = (yb[..., None] == np.arange(SIZES[-1])).astype(np.float64)
    (W1, b1), (W2, b2) = [(np.ascontiguousarray(Wj), np.ascontiguousarray(bj))
                          for Wj, bj in net.unflatten(W)]
    out = np.empty((R, net.p))
    net.mean_grad(W, Xb, yb, out=out)
    floor = floor_mean_grad(W1, b1, W2, b2, Xb, onehot)
    assert np.allclose(net.flatten(list(zip(floor[0::2], floor[1::2], strict=True))), out,
                       rtol=0, atol=1e-13)
    t_mean = t_floor = float("inf")
    reps = 20  # a call takes about a millisecond: time 20 in a row
    for _ in range(a.rounds):
        t_mean = min(t_mean, best_time(lambda: [net.mean_grad(W, Xb, yb, out=out)
                                                for _ in range(reps)]) / reps)
        t_floor = min(t_floor, best_time(lambda: [floor_mean_grad(W1, b1, W2, b2, Xb, onehot)
                                                  for _ in range(reps)]) / reps)
    print(f"\nmean gradient of R = {R} stacked networks on batches of B = {B} (best of {a.rounds})")
    print(f"  lossvar mean_grad(out=) {t_mean * 1e3:8.3f} ms per call")
    print(f"  numpy floor             {t_floor * 1e3:8.3f} ms per call")
    print(f"  lossvar / floor         {t_mean / t_floor:8.2f}   (target <= 1.2)")
    print(f"  scratch kept by mean_grad in this thread: {net.scratch_nbytes() / 2**20:.2f} MiB")
    load = meter.others()
    if load is not None:
        print(f"\nCPU during the run: this process {load['own']:.1f} s, other processes "
              f"{load['others']:.1f} s, steal {load['steal']:.1f} s")


if __name__ == "__main__":
    main()
