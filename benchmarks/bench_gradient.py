"""Benchmark of gradient_variance against a hand-written numpy floor measured in the same run.

    python benchmarks/bench_gradient.py       # the default grid (about half a minute)

Grid: logistic regression on N = 20000 synthetic examples with p = 20 features,
B in {1, 4, 16, 64, 128}, R = 10^4 replicates per B, with replacement, one process.

- floor: the bare numpy a user would write with the per-example gradients
  precomputed, ``dev = grads - grads.mean(0)``, then per B
  ``m = dev[rng.integers(0, N, (R, B))].mean(axis=1); (m * m).sum(axis=1).mean()``
  in one shot (it holds R x B x p numbers at once: 200 MB at B = 128);
- gradient_variance: the same draws and sums on the engine, in blocks of about
  2**18 gathered numbers, with the moments, standard errors and exact value,
  including its own computation of the N x p gradients.

Prints one line per B and the grid total as ratios (engine time / floor time),
target <= 1.5. Then the per-step cost of GradientNoiseMonitor.update (two
squared norms in, running and exponentially weighted estimates kept), best of
5 rounds of 10^5 updates, beside one ``estimate()``. Never a test: tests do
not assert on wall-clock time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import lossvar
from lossvar import GradientNoiseMonitor, gradient_variance

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_time, machine  # noqa: E402

GRID = (1, 4, 16, 64, 128)


def _floor(dev, b, r, rng):
    m = dev[rng.integers(0, dev.shape[0], (r, b))].mean(axis=1)
    return float(np.einsum("ij,ij->i", m, m).mean())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--dim", type=int, default=20)
    p.add_argument("--replicates", type=int, default=10**4)
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(a.n, a.dim))
    y = (rng.random(a.n) < 0.3).astype(float)
    data = lossvar.Dataset(X, y)
    problem = lossvar.LogisticRegression(l2=0.01)
    w = rng.normal(size=a.dim) * 0.1
    grads = problem.grad(w, X, y)
    dev = grads - grads.mean(axis=0)
    r = a.replicates
    print(f"machine: {machine()}")
    print(f"N = {a.n}, p = {a.dim}, R = {r} per B, B in {list(GRID)}, with replacement")
    print(f"{'B':>6} {'floor s':>9} {'engine s':>9} {'engine/floor':>13}")
    gradient_variance(problem, data, w, [1, 2], replicates=1000, sampling="with_replacement",
                      rng=0)  # warm-up
    tot_floor = tot_engine = 0.0
    for b in GRID:
        rep = 5 if b <= 16 else 3  # best of several where a run takes milliseconds
        t_floor = best_time(lambda b=b: _floor(dev, b, r, rng), rep)
        t_engine = best_time(lambda b=b: gradient_variance(problem, data, w, [b], replicates=r,
                                                           sampling="with_replacement", rng=1), rep)
        tot_floor += t_floor
        tot_engine += t_engine
        print(f"{b:>6} {t_floor:>9.4f} {t_engine:>9.4f} {t_engine / t_floor:>13.2f}")
    print(f"{'grid':>6} {tot_floor:>9.4f} {tot_engine:>9.4f} {tot_engine / tot_floor:>13.2f}")
    print("target: engine/floor <= 1.5 (grid total)")
    _monitor_cost(rng)


def _monitor_cost(rng, updates=10**5):
    norms = (1.0 + rng.random((updates, 2)) * [1.0, 0.1]).tolist()  # small > big, as in training
    for kwargs in (dict(), dict(ema=0.99), dict(n=50_000, sampling="without_replacement", ema=0.99)):
        monitor = GradientNoiseMonitor(16, 512, **kwargs)

        def feed(monitor=monitor):
            for s, b in norms:
                monitor.update(s, b)

        per_update = best_time(feed, 5) / updates
        per_estimate = best_time(monitor.estimate, 5)
        print(f"GradientNoiseMonitor({', '.join(f'{k}={v!r}' for k, v in kwargs.items()) or 'defaults'}): "
              f"{per_update * 1e6:.2f} us per update, {per_estimate * 1e6:.0f} us per estimate()")


if __name__ == "__main__":
    main()
