"""Benchmark of run_sgd against baselines measured in the same run.

    python benchmarks/bench_sgd.py

Setting (issue 3, section 5): R = 256 Adam runs (lr 1e-2, PyTorch's form)
x 500 steps, B = 32 drawn with replacement, logistic regression on a
synthetic Dataset with N = 10^4, d = 20. Every vectorized implementation
draws its batches the same way and evaluates the full-data loss and
||w - w*||^2 of every run at the start and at the end only
(``record=[0, steps]``: two records of 256 x 10^4 losses, which run_sgd
always makes), so that the timings compare the update loop and the same
records, not more recording. Baselines:

- floor: a hand-written vectorized numpy loop over the 256 stacked runs with
  the same arithmetic (gather, logistic mean gradient, Adam written inline,
  the two records in one shot each);
- lossvar loop: the runs one after another in a Python loop with lossvar's
  own problem and optimizer (``problem.mean_grad`` and ``optim.adam``);
- torch loop: the runs one after another with ``torch.optim.Adam`` and
  autograd on a float64 tensor (skipped when torch is not installed);
- JAX: ``jax.jit(jax.vmap(scan))`` over the 256 runs with ``optax.adam`` in
  float64 (``jax_enable_x64``), fed run_sgd's own batch indices (drawn
  beforehand with numpy from the same stream), with the same two records
  (the full-data loss in run_sgd's stable form and ||w - w*||^2 of every run
  at steps 0 and 500) in the same jit: the fair comparison, and the headline
  ratio. Also timed without the records (the update loop alone). The data
  and the starting points are arguments of the jit, not constants: XLA would
  otherwise constant-fold the step-0 record at compile time. Compile times
  excluded and printed apart. Optional (``pip install jax optax``, or the
  ``bench`` extra); skipped when not installed. Never needed by lossvar or
  its tests.

run_sgd, the floor and the two JAX legs are timed in ``--repeat`` interleaved
rounds (best of each), so that load from other processes hits them alike. The
per-run loops (no records: they are far slower anyway) are timed on
``--loop-runs`` runs (default 16) and scaled to 256 per run-step. Also
printed, for information: run_sgd with its default log-spaced records. Never a
test: tests do not assert on wall-clock time.
"""

from __future__ import annotations

import argparse
import os
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
    loss0, dist0 = _full_loss(w, X, y), np.sum((w - w_star) ** 2, axis=1)
    for t in range(1, STEPS + 1):
        idx = rng.integers(0, n, (R, B), dtype=np.int32)
        Xb, yb = np.take(X, idx, axis=0), np.take(y, idx)
        r = scipy.special.expit(np.matmul(Xb, w[..., None])[..., 0]) - yb
        g = np.matmul(r[..., None, :], Xb)[..., 0, :] / B
        m = B1 * m + (1 - B1) * g
        v = B2 * v + (1 - B2) * g * g
        w = w - LR * (m / (1 - B1**t)) / (np.sqrt(v / (1 - B2**t)) + EPS)
    return loss0, dist0, _full_loss(w, X, y), np.sum((w - w_star) ** 2, axis=1)


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
            updates, state = opt.update(problem.mean_grad(w, X[idx], y[idx]), state, w)
            w = optim.apply_updates(w, updates)


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


def jax_setup(X, y, idx, w_star):
    """The JAX ensemble, jit(vmap(scan)) with optax.adam, compiled twice.

    Returns ``{"records": (compiled, args, compile_s), "loop": (...)}``:
    ``records`` computes what run_sgd and the floor compute, the final
    parameters and the full-data loss and ||w - w*||^2 of every run at steps 0
    and STEPS; ``loop`` only the final parameters. X, y, w0 and w* are
    arguments, so that nothing is folded at compile time.
    """
    import time

    import jax
    import jax.numpy as jnp
    import optax

    jax.config.update("jax_enable_x64", True)
    opt = optax.adam(LR, b1=B1, b2=B2, eps=EPS)

    def loss(w, Xb, yb):  # softplus(z) - y z: its derivative is expit(z) - y everywhere,
        z = Xb @ w        # also at z = 0, where max(z, 0) and |z| have kinks JAX splits
        return jnp.mean(jnp.logaddexp(0.0, z) - yb * z)

    def full_loss(W, Xa, ya):  # (R, d) -> (R,): run_sgd's stable form of the same loss
        Z = W @ Xa.T
        return jnp.mean(jnp.maximum(Z, 0.0) - ya * Z + jnp.log1p(jnp.exp(-jnp.abs(Z))), axis=-1)

    def runs(idx_all, W0, Xa, ya):
        def one_run(w0, idx_run):  # (STEPS, B) indices of one run
            def body(carry, ib):
                w, state = carry
                g = jax.grad(loss)(w, Xa[ib], ya[ib])
                updates, state = opt.update(g, state, w)
                return (optax.apply_updates(w, updates), state), None

            (w, _), _ = jax.lax.scan(body, (w0, opt.init(w0)), idx_run)
            return w

        return jax.vmap(one_run)(W0, idx_all)

    def with_records(idx_all, W0, w_star, Xa, ya):
        W = runs(idx_all, W0, Xa, ya)
        return (W, full_loss(W0, Xa, ya), jnp.sum((W0 - w_star) ** 2, axis=1),
                full_loss(W, Xa, ya), jnp.sum((W - w_star) ** 2, axis=1))

    W0 = jnp.zeros((idx.shape[0], X.shape[1]), dtype=jnp.float64)
    Xj, yj, ij = jnp.asarray(X), jnp.asarray(y), jnp.asarray(idx)
    out = {}
    for name, fn, args in (("records", with_records, (ij, W0, jnp.asarray(w_star), Xj, yj)),
                           ("loop", runs, (ij, W0, Xj, yj))):
        t0 = time.perf_counter()
        compiled = jax.jit(fn).lower(*args).compile()
        out[name] = (compiled, args, time.perf_counter() - t0)
    return out


def _ready(out):
    return [o.block_until_ready() for o in out] if isinstance(out, tuple) else out.block_until_ready()


def _jax_legs(X, y, w_star, legs):
    """Add the two JAX legs to ``legs`` (compiled and run once); None without JAX."""
    try:
        import jax
        import optax
    except ImportError:
        return None
    compiled = jax_setup(X, y, run_sgd_indices(N), w_star)
    fn, fargs, t_compile = compiled["records"]
    loop, largs, t_compile_loop = compiled["loop"]
    records = tuple(np.asarray(o) for o in _ready(fn(*fargs)))
    _ready(loop(*largs))
    legs["jax"] = lambda: _ready(fn(*fargs))
    legs["jax_loop"] = lambda: _ready(loop(*largs))
    return {"records": records, "compile": t_compile, "compile_loop": t_compile_loop,
            "versions": f"jax {jax.__version__}, optax {optax.__version__}"}


def _interleaved(legs, repeat):
    """The best time of each leg over ``repeat`` rounds, one call of every leg per round
    (a burst of load from elsewhere then hits every leg alike)."""
    times = dict.fromkeys(legs, float("inf"))
    for _ in range(repeat):
        for name, fn in legs.items():
            times[name] = min(times[name], best_time(fn, 1))
    return times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loop-runs", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)

    data = dataset()
    problem = lossvar.LogisticRegression()
    X, y = data.X, data.y.astype(np.float64)
    w_star = problem.minimize(X, y)
    opt = optim.adam(LR, B1, B2, EPS)
    print(f"machine: {machine()}")
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"setting: R={R} Adam runs x {STEPS} steps, B={B} with replacement, logistic "
          f"regression N={N}, d={D}; records at steps 0 and {STEPS}")

    def engine():
        return run_sgd(problem, data, opt, steps=STEPS, batch_size=B, replicates=R,
                       sampling="with_replacement", rng=1, record=[0, STEPS])

    run_sgd(problem, data, opt, steps=5, batch_size=B, replicates=R,
            sampling="with_replacement", rng=1)  # warm-up (and w* is then cached by BLAS)
    legs = {"run_sgd": engine, "floor": lambda: floor(X, y, w_star, np.random.default_rng(1))}
    jax_info = _jax_legs(X, y, w_star, legs)
    times = _interleaved(legs, args.repeat)
    t_engine, t_floor = times["run_sgd"], times["floor"]
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
    t_jax, t_jax_loop = times.get("jax"), times.get("jax_loop")
    if jax_info is None:
        print("JAX jit(vmap(scan)):  skipped (pip install jax optax)")
    else:
        ours = engine()
        rec = ours.table.sort_values(["replicate", "step"])
        loss_ours = rec["loss"].to_numpy().reshape(R, 2)
        dist_ours = rec["dist2"].to_numpy().reshape(R, 2)
        w_jax, l0_jax, _, l_jax, d_jax = jax_info["records"]
        print(f"JAX, same records:    {t_jax:8.3f} s  ({t_jax * us:6.2f} us per run-step; "
              f"{jax_info['versions']}, float64; compile {jax_info['compile']:.2f} s excluded)")
        print(f"JAX, loop alone:      {t_jax_loop:8.3f} s  ({t_jax_loop * us:6.2f} us per run-step; "
              f"no records; compile {jax_info['compile_loop']:.2f} s excluded)")
        with np.errstate(all="ignore"):
            print(f"  JAX vs run_sgd: max |w diff| = {np.max(np.abs(w_jax - ours.final_params)):.1e}, "
                  f"max rel diff of the recorded losses = "
                  f"{np.max(np.abs(np.stack([l0_jax, l_jax], 1) / loss_ours - 1)):.1e}, of the "
                  f"final ||w - w*||^2 = {np.max(np.abs(d_jax / dist_ours[:, 1] - 1)):.1e}")
    print(f"run_sgd with default log-spaced records (info): {t_default:.3f} s")
    print(f"load average (1 min) at end: {os.getloadavg()[0]:.2f}")
    print()
    print(f"run_sgd / floor          = {t_engine / t_floor:6.2f}  (target <= 1.5)")
    print(f"lossvar loop / run_sgd   = {t_loop / t_engine:6.1f}  (target >= 10)")
    if t_torch is not None:
        print(f"torch loop / run_sgd     = {t_torch / t_engine:6.1f}  (target >= 50)")
    if t_jax is not None:
        print(f"run_sgd / JAX            = {t_engine / t_jax:6.2f}  (target <= 0.8; JAX with the "
              "same records)")
        print(f"run_sgd / JAX loop alone = {t_engine / t_jax_loop:6.2f}  (JAX without records: "
              "not the same work)")


if __name__ == "__main__":
    main()
