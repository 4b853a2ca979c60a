"""Benchmark of loss_variance against baselines measured in the same run.

    python benchmarks/bench_variance.py            # the issue's grid (about a minute)
    python benchmarks/bench_variance.py --quick    # only the per-call overhead (seconds)
    python benchmarks/bench_variance.py --memory   # also peak RSS at 10^7 replicates, B = 1024

Grid: N = 10^6 per-sample losses, B in {1, 4, 16, 64, 256, 1024}, R = 10^5
replicates per B, one process. Baselines:

- floor: the bare numpy one-liner ``losses[rng.integers(0, N, (R, B))].mean(axis=1).var(ddof=1)``;
- loop: the per-replicate loop a user would write, ``rng.choice(N, B, replace=False)``
  then the mean, once per replicate. It is timed on ``--loop-replicates``
  replicates per B (default 5000) and its per-replicate time is scaled to R;
  the ratio is of per-replicate costs.

Prints one line per B and the totals, as ratios (engine time / baseline time),
then the per-call overhead of a small call: a single batch size B <= 4 with
replacement (the floor's own draws), whose time beyond the floor is what the
call adds whatever R (validation, the exact moments of the N losses, the
engine's set-up, the statistics and the table).
Never a test: tests do not assert on wall-clock time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import lossvar

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_time, machine, peak_rss_mib  # noqa: E402

GRID = (1, 4, 16, 64, 256, 1024)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10**6)
    p.add_argument("--replicates", type=int, default=10**5)
    p.add_argument("--loop-replicates", type=int, default=5000)
    p.add_argument("--memory", action="store_true",
                   help="also measure peak RSS for 10^7 replicates at B = 1024 (minutes)")
    p.add_argument("--memory-only", action="store_true", help="only the memory measurement")
    p.add_argument("--quick", action="store_true", help="only the per-call overhead (seconds)")
    p.add_argument("--_peak", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._peak:
        return _peak_child(a.n, a._peak)

    if a.memory_only:
        return _memory(a.n)
    rng = np.random.default_rng(0)
    losses = rng.exponential(size=a.n)
    n, r = a.n, a.replicates
    print(f"machine: {machine()}")
    _warm_up(losses)
    if a.quick:
        return _overhead(losses, r)
    print(f"N = {n}, R = {r} per B, B in {list(GRID)}")
    print(f"{'B':>6} {'floor s':>9} {'with s':>8} {'w/o s':>8} {'loop us/rep':>12} "
          f"{'with/floor':>11} {'w/o/floor':>10} {'loop/w/o':>9}")
    tot = dict(floor=0.0, with_=0.0, without=0.0)
    for b in GRID:
        rep = 5 if b <= 16 else 1  # best of several where a run takes milliseconds
        t_floor = best_time(lambda b=b: losses[rng.integers(0, n, (r, b))].mean(axis=1).var(ddof=1),
                        rep)
        t_with = best_time(lambda b=b: lossvar.loss_variance(losses, [b], replicates=r,
                                                         sampling="with_replacement", rng=1), rep)
        t_wo = best_time(lambda b=b: lossvar.loss_variance(losses, [b], replicates=r,
                                                       sampling="without_replacement", rng=1), rep)
        m = a.loop_replicates

        def loop(b=b, m=m):
            out = np.empty(m)
            for i in range(m):
                out[i] = losses[rng.choice(n, b, replace=False)].mean()
            return out.var(ddof=1)

        per_loop = best_time(loop) / m
        per_wo = t_wo / r
        tot["floor"] += t_floor
        tot["with_"] += t_with
        tot["without"] += t_wo
        print(f"{b:>6} {t_floor:>9.3f} {t_with:>8.3f} {t_wo:>8.3f} {per_loop * 1e6:>12.2f} "
              f"{t_with / t_floor:>11.2f} {t_wo / t_floor:>10.2f} {per_loop / per_wo:>9.1f}x")
    print(f"{'grid':>6} {tot['floor']:>9.3f} {tot['with_']:>8.3f} {tot['without']:>8.3f} "
          f"{'':>12} {tot['with_'] / tot['floor']:>11.2f} {tot['without'] / tot['floor']:>10.2f}")
    print("targets: with/floor <= 1.5, w/o/floor <= 3 (grid totals); "
          "loop/w/o >= 30x at B <= 16 and >= 1x everywhere")
    _overhead(losses, r)
    if a.memory:
        _memory(n)


def _warm_up(losses):
    """One small call first: imports, caches and scratch buffers are then ready."""
    with warnings.catch_warnings():  # 1000 replicates are flagged as too few for the tails
        warnings.simplefilter("ignore", lossvar.stats.UnreliableIntervalWarning)
        lossvar.loss_variance(losses, [1, 2], replicates=1000, rng=0)


def _interleaved_best(fns, repeat):
    """The smallest wall time of each of ``fns`` (a dict), timed in turn ``repeat`` times.

    Alternating the candidates spreads any burst of load on the machine over
    all of them, instead of on the one timed while it lasts.
    """
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            best[name] = min(best[name], best_time(fn))
    return best


def _overhead(losses, r, repeat=25):
    """What a small call pays beyond the floor, and the part that depends on the losses alone."""
    from lossvar import theory
    from lossvar.scratch import SCRATCH_LIMIT, scratch_nbytes

    n = losses.size
    rng = np.random.default_rng(5)

    def floor(b):
        return lambda: losses[rng.integers(0, n, (r, b))].mean(axis=1).var(ddof=1)

    def call(b, replicates=r):
        return lambda: lossvar.loss_variance(losses, [b], replicates=replicates,
                                             sampling="with_replacement", rng=1)

    with warnings.catch_warnings():  # R = 2 is flagged as too few for the interval
        warnings.simplefilter("ignore", lossvar.stats.UnreliableIntervalWarning)
        t = _interleaved_best({"floor 1": floor(1), "call 1": call(1), "floor 4": floor(4),
                               "call 4": call(4), "tiny": call(1, 2),
                               "moments": lambda: theory.population_moments(losses),
                               "mean": losses.mean, "var": lambda: np.var(losses)}, repeat)
    print(f"per-call overhead (best of {repeat}, interleaved; call time minus the floor's, R = {r}, "
          "sampling='with_replacement' as the floor draws):")
    for b in (1, 4):
        t_floor, t_call = t[f"floor {b}"], t[f"call {b}"]
        print(f"  B = {b}: call {t_call * 1e3:.2f} ms, floor {t_floor * 1e3:.2f} ms, "
              f"overhead {(t_call - t_floor) * 1e3:.2f} ms (target < 2 ms)")
    print(f"  a call with R = 2 (all fixed costs): {t['tiny'] * 1e3:.2f} ms")
    print(f"  exact moments of the {n} losses (mean, s2, mu2, mu4), once per call: "
          f"{t['moments'] * 1e3:.2f} ms (theory.population_moments: the mean, {t['mean'] * 1e3:.2f} ms, "
          f"then one fused pass; np.var alone takes {t['var'] * 1e3:.2f} ms)")
    info = scratch_nbytes()
    print(f"  scratch buffers kept by this process: {info['bytes'] / 2**20:.1f} MiB "
          f"in {info['threads']} thread(s) (cap {SCRATCH_LIMIT >> 20} MiB per thread)")


def _memory(n):
    reps = 10**7
    out = subprocess.run([sys.executable, __file__, "--n", str(n), "--_peak", str(reps)],
                         capture_output=True, text=True, check=True)
    print(out.stdout.strip())


def _peak_child(n, reps):
    losses = np.random.default_rng(0).exponential(size=n)
    base = peak_rss_mib()
    t0 = time.perf_counter()
    lossvar.loss_variance(losses, [1024], replicates=reps, rng=1)
    print(f"peak RSS for {reps} replicates at B = 1024, N = {n}: {peak_rss_mib():.0f} MiB "
          f"(before the call: {base:.0f} MiB; {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
