"""Benchmark of run_sgd against baselines measured in the same run.

    python benchmarks/bench_sgd.py

Setting (issue 3, section 5): R = 256 Adam runs (lr 1e-2, PyTorch's form)
x 500 steps, B = 32 drawn with replacement, logistic regression on a
synthetic Dataset with N = 10^4, d = 20. Every implementation draws its
batches the same way and evaluates the full-data loss and ||w - w*||^2 at the
start and at the end only (``record=[0, steps]``), so that the timings compare
the update loop, not the recording. Baselines:

- floor: a hand-written vectorized numpy loop over the 256 stacked runs with
  the same arithmetic (gather, logistic mean gradient, Adam written inline);
- lossvar loop: the runs one after another in a Python loop with lossvar's
  own problem and optimizer (``problem.mean_grad`` and ``optim.adam``);
- torch loop: the runs one after another with ``torch.optim.Adam`` and
  autograd on a float64 tensor (skipped when torch is not installed);
- JAX: ``jax.jit(jax.vmap(scan))`` over the 256 runs with ``optax.adam`` in
  float64 (``jax_enable_x64``), fed run_sgd's own batch indices (drawn
  beforehand with numpy from the same stream); compile time excluded and
  printed apart. Optional (``pip install jax optax``, or the ``bench``
  extra); skipped when not installed. Never needed by lossvar or its tests.

The per-run loops are timed on ``--loop-runs`` runs (default 16) and scaled
to 256 per run-step. Also printed, for information: run_sgd with its default
log-spaced records. Never a test: tests do not assert on wall-clock time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import scipy.special

import lossvar

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_time, machine  # noqa: E402

from lossvar import optim
from lossvar.sgd import run_sgd

R, STEPS, B, N, D, LR = 256, 500, 32, 10_000, 20, 1e-2
B1, B2, EPS = 0.9, 0.999, 1e-8


def dataset(seed=0) -> lossvar.Dataset:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D))
    w_true = rng.standard_normal(D) / np.sqrt(D)
    y = (rng.random(N) < scipy.special.expit(X @ w_true)).astype(np.int64)
    return lossvar.Dataset(X, y, name="synthetic_logistic", task="classification")


def floor(X, y, w_star, rng):
    """The same arithmetic, vectorized over the 256 runs, written by hand."""
    n, d = X.shape
    w = np.zeros((R, d))
    m, v = np.zeros_like(w), np.zeros_like(w)
    loss0 = _full_loss(w, X, y)
    for t in range(1, STEPS + 1):
        idx = rng.integers(0, n, (R, B), dtype=np.int32)
        Xb, yb = np.take(X, idx, axis=0), np.take(y, idx)
        r = scipy.special.expit(np.matmul(Xb, w[..., None])[..., 0]) - yb
        g = np.matmul(r[..., None, :], Xb)[..., 0, :] / B
        m = B1 * m + (1 - B1) * g
        v = B2 * v + (1 - B2) * g * g
        w = w - LR * (m / (1 - B1**t)) / (np.sqrt(v / (1 - B2**t)) + EPS)
    return loss0, _full_loss(w, X, y), np.sum((w - w_star) ** 2, axis=1)


def _full_loss(w, X, y):
    z = np.matmul(X, w[..., None])[..., 0]
    return np.mean(np.maximum(z, 0) - y * z + np.logaddexp(0, -np.abs(z)), axis=-1)


def lossvar_loop(problem, X, y, runs, rng):
    """One run after another with lossvar's problem and optimizer."""
    opt = optim.adam(LR, B1, B2, EPS)
    n = X.shape[0]
    for _ in range(runs):
        w = np.zeros(X.shape[1])
        state = opt.init(w)
        for _ in range(STEPS):
            idx = rng.integers(0, n, B)
            w, state = opt.step(w, problem.mean_grad(w, X[idx], y[idx]), state)


def torch_loop(X, y, runs, rng):
    import torch

    Xt, yt = torch.from_numpy(np.array(X)), torch.from_numpy(np.array(y))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    n = X.shape[0]
    for _ in range(runs):
        w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([w], lr=LR, betas=(B1, B2), eps=EPS)
        for _ in range(STEPS):
            idx = torch.from_numpy(rng.integers(0, n, B))
            opt.zero_grad()
            loss_fn(Xt[idx] @ w, yt[idx]).backward()
            opt.step()


def run_sgd_indices(n, seed=1):
    """The batch indices run_sgd draws for the 256 runs (one block: stream (0, 0, 0)), shape (R, STEPS, B)."""
    from lossvar.sampling import with_replacement
    from lossvar.streams import as_seed_sequence, stream

    rng = stream(as_seed_sequence(seed), 0, 0, 0)
    steps = [with_replacement(rng, n, B, R) for _ in range(STEPS)]
    return np.ascontiguousarray(np.stack(steps, axis=1))


def jax_setup(X, y, idx):
    """``(compiled, args, compile_seconds)`` of the JAX ensemble: jit(vmap(scan)) with optax.adam."""
    import time

    import jax
    import jax.numpy as jnp
    import optax

    jax.config.update("jax_enable_x64", True)
    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    opt = optax.adam(LR, b1=B1, b2=B2, eps=EPS)

    def loss(w, Xb, yb):  # softplus(z) - y z: its derivative is expit(z) - y everywhere,
        z = Xb @ w        # also at z = 0, where max(z, 0) and |z| have kinks JAX splits
        return jnp.mean(jnp.logaddexp(0.0, z) - yb * z)

    def one_run(idx_run):  # (STEPS, B) indices of one run
        w0 = jnp.zeros(X.shape[1], dtype=jnp.float64)

        def body(carry, ib):
            w, state = carry
            g = jax.grad(loss)(w, Xj[ib], yj[ib])
            updates, state = opt.update(g, state, w)
            return (optax.apply_updates(w, updates), state), None

        (w, _), _ = jax.lax.scan(body, (w0, opt.init(w0)), idx_run)
        return w

    args = jnp.asarray(idx)
    t0 = time.perf_counter()
    compiled = jax.jit(jax.vmap(one_run)).lower(args).compile()
    return compiled, args, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loop-runs", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    data = dataset()
    problem = lossvar.LogisticRegression()
    X, y = data.X, data.y.astype(np.float64)
    w_star = problem.minimize(X, y)
    opt = optim.adam(LR, B1, B2, EPS)
    print(f"machine: {machine()}")
    print(f"setting: R={R} Adam runs x {STEPS} steps, B={B} with replacement, logistic "
          f"regression N={N}, d={D}; records at steps 0 and {STEPS}")

    def engine():
        return run_sgd(problem, data, opt, steps=STEPS, batch_size=B, replicates=R,
                       sampling="with_replacement", rng=1, record=[0, STEPS])

    run_sgd(problem, data, opt, steps=5, batch_size=B, replicates=R,
            sampling="with_replacement", rng=1)  # warm-up (and w* is then cached by BLAS)
    t_engine = best_time(engine, args.repeat)
    t_floor = best_time(lambda: floor(X, y, w_star, np.random.default_rng(1)), args.repeat)
    t_default = best_time(lambda: run_sgd(problem, data, opt, steps=STEPS, batch_size=B,
                                      replicates=R, sampling="with_replacement", rng=1), 1)
    runs = args.loop_runs
    t_loop = best_time(lambda: lossvar_loop(problem, X, y, runs, np.random.default_rng(2)), 1)
    t_loop *= R / runs
    run_steps = R * STEPS
    us = 1e6 / run_steps
    print(f"run_sgd:              {t_engine:8.3f} s  ({t_engine * us:6.2f} us per run-step)")
    print(f"vectorized floor:     {t_floor:8.3f} s  ({t_floor * us:6.2f} us per run-step)")
    print(f"lossvar per-run loop: {t_loop:8.3f} s  ({t_loop * us:6.2f} us per run-step; "
          f"{runs} runs timed, scaled to {R})")
    try:
        import torch  # noqa: F401
    except ImportError:
        t_torch = None
        print("torch per-run loop:   skipped (torch not installed)")
    else:
        torch.set_num_threads(1)
        t_torch = best_time(lambda: torch_loop(X, y, runs, np.random.default_rng(3)), 1) * R / runs
        print(f"torch per-run loop:   {t_torch:8.3f} s  ({t_torch * us:6.2f} us per run-step; "
              f"{runs} runs timed, scaled to {R}; torch {torch.__version__}, 1 thread)")
    t_jax = None
    try:
        import jax
        import optax
    except ImportError:
        print("JAX jit(vmap(scan)):  skipped (pip install jax optax)")
    else:
        idx = run_sgd_indices(N)
        compiled, jargs, t_compile = jax_setup(X, y, idx)
        w_jax = np.asarray(compiled(jargs).block_until_ready())
        t_jax = best_time(lambda: compiled(jargs).block_until_ready(), args.repeat)
        w_ours = engine().final_params
        print(f"JAX jit(vmap(scan)):  {t_jax:8.3f} s  ({t_jax * us:6.2f} us per run-step; jax "
              f"{jax.__version__}, optax {optax.__version__}, float64; compile {t_compile:.2f} s "
              f"excluded; max |w_jax - w_run_sgd| = {np.max(np.abs(w_jax - w_ours)):.1e})")
    print(f"run_sgd with default log-spaced records (info): {t_default:.3f} s")
    print()
    print(f"run_sgd / floor          = {t_engine / t_floor:6.2f}  (target <= 1.5)")
    print(f"lossvar loop / run_sgd   = {t_loop / t_engine:6.1f}  (target >= 10)")
    if t_torch is not None:
        print(f"torch loop / run_sgd     = {t_torch / t_engine:6.1f}  (target >= 50)")
    if t_jax is not None:
        print(f"run_sgd / JAX            = {t_engine / t_jax:6.2f}  (target <= 0.8)")


if __name__ == "__main__":
    main()
