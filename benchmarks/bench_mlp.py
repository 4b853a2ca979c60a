"""Benchmark of the multi-layer perceptron: its gradients and run_sgd's network ensembles against
torch.func, PyTorch's optimizer, JAX and hand-written numpy floors.

    python benchmarks/bench_mlp.py        # a few minutes (--skip-sgd: half a minute)

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

- run_sgd on an ensemble: R = 256 networks from their own Glorot starts,
  Adam (lr 1e-2, PyTorch's form), B = 32 with replacement, 500 steps, the
  full-data loss and ||w - w*||^2 of every run recorded at steps 0 and 500
  (``record=[0, 500]``; w* the reference point, computed once and cached
  before the timing). Against (a) a hand-written vectorized numpy loop doing
  the same arithmetic on the same batches (run_sgd's own draws: stream (0, 0,
  0) of its seed) with the same two records, target run_sgd / floor <= 1.5;
  (b) the runs one after another with ``torch.optim.Adam`` (weight_decay =
  l2: the gradient of the same ridge) on a ``torch.nn.Sequential``, timed on
  ``--loop-runs`` runs and scaled to 256, target torch / run_sgd >= 30;
  (c) ``jax.jit(jax.vmap(scan))`` with ``optax.adam`` in float64 on the same
  batch indices with the same records in the same jit (compile time excluded
  and printed; skipped when JAX is absent: ``pip install --target DIR jax
  optax`` and DIR on the path is enough). The scratch that run_sgd's
  thread keeps afterwards (the network's and lossvar.scratch's) is printed:
  it does not grow with the number of steps or of blocks.

Each leg is timed as the best of several rounds, the legs of a round one after
the other, so that a busy machine slows both alike; the CPU time that other
processes took during the run is printed (benchmarks/_common.py). The
per-thread scratch that ``mean_grad`` keeps is printed too. Never a test:
tests do not assert on wall-clock time.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

import lossvar.datasets
import lossvar.scratch
from lossvar import optim
from lossvar.problems import MLP
from lossvar.sampling import with_replacement
from lossvar.sgd import run_sgd
from lossvar.streams import as_seed_sequence, stream

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CpuMeter, best_time, machine  # noqa: E402

SIZES = (64, 32, 10)
L2 = 1e-2
R, STEPS, B, LR = 256, 500, 32, 1e-2
B1, B2, EPS = 0.9, 0.999, 1e-8


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


def _layers(W):
    """Views of the stacked flat parameters (R, p) as W1 (R, 64, 32), b1, W2 (R, 32, 10), b2
    (lossvar's layout: each layer's weights in C order, then its bias)."""
    (i, o), (o2, c) = SIZES[:2], SIZES[1:]
    a, b = i * o, i * o + o
    return (W[:, :a].reshape(-1, i, o), W[:, a:b], W[:, b:b + o2 * c].reshape(-1, o2, c),
            W[:, b + o2 * c:])


def floor_full_loss(W, X, y):
    """The mean cross-entropy plus the ridge of R stacked networks on all the data, (R,)."""
    W1, b1, W2, b2 = _layers(W)
    F = np.tanh(X @ W1 + b1[:, None, :]) @ W2 + b2[:, None, :]
    top = F.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(F - top).sum(axis=-1)) + top[..., 0]
    return np.mean(lse - np.take_along_axis(F, y[None, :, None], -1)[..., 0], axis=-1) \
        + 0.5 * L2 * np.sum(W * W, axis=1)


def floor_sgd(W0, X, y, w_star, seed):
    """run_sgd's arithmetic written by hand: the 256 stacked networks, Adam inline, run_sgd's
    batches, the two records in one shot each."""
    n = X.shape[0]
    onehot = (y[:, None] == np.arange(SIZES[-1])).astype(np.float64)
    rng = stream(as_seed_sequence(seed), 0, 0, 0)
    W = W0.copy()
    G, m, v = np.empty_like(W), np.zeros_like(W), np.zeros_like(W)
    grads = _layers(G)
    loss0, dist0 = floor_full_loss(W, X, y), np.sum((W - w_star) ** 2, axis=1)
    for t in range(1, STEPS + 1):
        idx = with_replacement(rng, n, B, R)
        W1, b1, W2, b2 = _layers(W)
        for into, g in zip(grads, floor_mean_grad(W1, b1, W2, b2, np.take(X, idx, axis=0),
                                                  np.take(onehot, idx, axis=0)), strict=True):
            into[...] = g
        m *= B1
        m += (1 - B1) * G
        v *= B2
        v += (1 - B2) * G * G
        W -= LR * (m / (1 - B1**t)) / (np.sqrt(v / (1 - B2**t)) + EPS)
    return W, loss0, dist0, floor_full_loss(W, X, y), np.sum((W - w_star) ** 2, axis=1)


def torch_loop(torch, W0, X, y, runs, seed):
    """The first ``runs`` runs one after another with torch.optim.Adam (no records)."""
    Xt, yt = torch.from_numpy(np.array(X)), torch.from_numpy(np.array(y))  # writable copies
    rng = np.random.default_rng(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))
    model = model.double()
    for r in range(runs):
        with torch.no_grad():
            for layer, (Wj, bj) in zip((model[0], model[2]), MLP(SIZES).unflatten(W0[r]), strict=True):
                layer.weight.copy_(torch.from_numpy(Wj.T.copy()))
                layer.bias.copy_(torch.from_numpy(bj))
        opt = torch.optim.Adam(model.parameters(), lr=LR, betas=(B1, B2), eps=EPS, weight_decay=L2)
        for _ in range(STEPS):
            idx = torch.from_numpy(rng.integers(0, X.shape[0], B))
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(Xt[idx]), yt[idx]).backward()
            opt.step()


def jax_ensemble(W0, X, y, w_star, seed):
    """jit(vmap(scan)) with optax.adam on run_sgd's batch indices, with the same records;
    (compiled, args, compile seconds, versions), or None without JAX."""
    try:
        import jax
        import jax.numpy as jnp
        import optax
    except ImportError:
        return None
    import time

    jax.config.update("jax_enable_x64", True)
    opt = optax.adam(LR, b1=B1, b2=B2, eps=EPS)
    rng = stream(as_seed_sequence(seed), 0, 0, 0)
    idx = np.stack([with_replacement(rng, X.shape[0], B, R) for _ in range(STEPS)], axis=1)

    def unflat(w):
        (i, o), c = SIZES[:2], SIZES[2]
        a, b = i * o, i * o + o
        return w[:a].reshape(i, o), w[a:b], w[b:b + o * c].reshape(o, c), w[b + o * c:]

    def loss(w, Xb, yb):
        W1, b1, W2, b2 = unflat(w)
        F = jnp.tanh(Xb @ W1 + b1) @ W2 + b2
        ce = jax.nn.logsumexp(F, axis=-1) - jnp.take_along_axis(F, yb[:, None], -1)[:, 0]
        return jnp.mean(ce) + 0.5 * L2 * jnp.sum(w * w)

    def run(idx_all, W0, Xa, ya, w_star):
        def one_run(w0, idx_run):
            def body(carry, ib):
                w, state = carry
                updates, state = opt.update(jax.grad(loss)(w, Xa[ib], ya[ib]), state, w)
                return (optax.apply_updates(w, updates), state), None

            (w, _), _ = jax.lax.scan(body, (w0, opt.init(w0)), idx_run)
            return w

        W = jax.vmap(one_run)(W0, idx_all)
        full = jax.vmap(loss, in_axes=(0, None, None))
        return (W, full(W0, Xa, ya), jnp.sum((W0 - w_star) ** 2, axis=1), full(W, Xa, ya),
                jnp.sum((W - w_star) ** 2, axis=1))

    args = tuple(jnp.asarray(a) for a in (idx, W0, X, y, w_star))
    t0 = time.perf_counter()
    compiled = jax.jit(run).lower(*args).compile()
    return compiled, args, time.perf_counter() - t0, f"jax {jax.__version__}, optax {optax.__version__}"


def sgd_part(net, data, rounds, loop_runs):
    """run_sgd on the ensemble against the numpy floor, a per-run torch.optim loop and JAX."""
    X, y = data.X, np.asarray(data.y, np.int64)
    W0 = net.init(rng=3, size=R)
    opt = optim.adam(LR, B1, B2, EPS)

    def engine():
        return run_sgd(net, data, opt, steps=STEPS, batch_size=B, replicates=R, w0=W0,
                       sampling="with_replacement", rng=1, record=[0, STEPS])

    print(f"\nrun_sgd: R = {R} networks, Adam lr {LR}, B = {B} with replacement, {STEPS} steps, "
          f"records at 0 and {STEPS} (best of {rounds}); load average (1 min) "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    ours = run_sgd(net, data, opt, steps=5, batch_size=B, replicates=R, w0=W0,
                   sampling="with_replacement", rng=1)  # warm-up; w* computed and cached
    w_star = ours.w_star
    ours = engine()
    mine = floor_sgd(W0, X, y, w_star, 1)
    rec = ours.table.sort_values(["replicate", "step"])
    loss_ours = rec["loss"].to_numpy().reshape(R, 2)
    print(f"  same numbers: max |w| diff run_sgd vs floor {np.max(np.abs(mine[0] - ours.final_params)):.1e}, "
          f"max rel diff of the final losses {np.max(np.abs(mine[3] / loss_ours[:, 1] - 1)):.1e}")
    legs = {"run_sgd": engine, "floor": lambda: floor_sgd(W0, X, y, w_star, 1)}
    jx = jax_ensemble(W0, X, y, w_star, 1)
    if jx is not None:
        compiled, jargs, t_compile, versions = jx
        got = [np.asarray(o) for o in compiled(*jargs)]
        print(f"  same numbers: max |w| diff run_sgd vs JAX {np.max(np.abs(got[0] - ours.final_params)):.1e},"
              " "
              f"max rel diff of the final losses {np.max(np.abs(got[3] / loss_ours[:, 1] - 1)):.1e}")
        legs["jax"] = lambda: [o.block_until_ready() for o in compiled(*jargs)]
    times = dict.fromkeys(legs, float("inf"))
    for _ in range(rounds):  # interleaved: a burst of load from elsewhere hits every leg alike
        for name, fn in legs.items():
            times[name] = min(times[name], best_time(fn, 1))
    us = 1e6 / (R * STEPS)
    t_engine, t_floor = times["run_sgd"], times["floor"]
    print(f"  run_sgd                 {t_engine:8.3f} s  ({t_engine * us:6.2f} us per run-step)")
    print(f"  numpy floor             {t_floor:8.3f} s  ({t_floor * us:6.2f} us per run-step)")
    print(f"  run_sgd / floor         {t_engine / t_floor:8.2f}   (target <= 1.5)")
    try:
        import torch
    except ImportError:
        print("  torch per-run loop: skipped (torch not installed)")
    else:
        torch.set_num_threads(1)
        t_torch = best_time(lambda: torch_loop(torch, W0, X, y, loop_runs, 2), 1) * R / loop_runs
        print(f"  torch.optim per-run     {t_torch:8.3f} s  ({loop_runs} runs timed, scaled to {R}; "
              f"torch {torch.__version__}, 1 thread)")
        print(f"  torch loop / run_sgd    {t_torch / t_engine:8.1f}   (target >= 30)")
    if jx is None:
        print("  JAX: skipped (not importable: pip install jax optax)")
    else:
        print(f"  JAX jit(vmap(scan))     {times['jax']:8.3f} s  ({versions}, float64, same records; "
              f"compile {t_compile:.1f} s excluded)")
        print(f"  run_sgd / JAX           {t_engine / times['jax']:8.2f}")
    held = lossvar.scratch.scratch_nbytes()
    print(f"  scratch after the runs: the network's {net.scratch_nbytes() / 2**20:.2f} MiB in this thread; "
          f"lossvar.scratch {held['bytes'] / 2**20:.2f} MiB in {held['threads']} thread(s), at most "
          f"{held['max_thread_bytes'] / 2**20:.2f} MiB in one")
    print(f"  load average (1 min) at the end: {os.getloadavg()[0]:.2f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=7, help="best of this many rounds (default 7)")
    p.add_argument("--replicates", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--loop-runs", type=int, default=8,
                   help="runs of the per-run torch loop timed, scaled to 256 (default 8)")
    p.add_argument("--skip-sgd", action="store_true", help="the gradient parts only")
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
    if not a.skip_sgd:
        sgd_part(net, data, a.rounds, a.loop_runs)
    load = meter.others()
    if load is not None:
        print(f"\nCPU during the run: this process {load['own']:.1f} s, other processes "
              f"{load['others']:.1f} s, steal {load['steal']:.1f} s")


if __name__ == "__main__":
    main()
