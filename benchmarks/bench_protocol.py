"""Benchmark: a problem written outside lossvar runs at the built-in's speed.

    python benchmarks/bench_protocol.py          # about a minute

The problems of tests/protocol_problems.py meet only the documented protocol
(lossvar.typing.Problem): ``NumpyLogistic`` does LogisticRegression's arithmetic
with numpy (no ``minimize``), ``Delegating`` hands every call to a
LogisticRegression. Each is timed against the built-in in three engines, on the
synthetic logistic data of benchmarks/bench_sgd.py (N = 10^4, d = 20):

- run_sgd: R = 256 Adam runs x 500 steps, B = 32 with replacement, records at
  steps 0 and 500 (the minimizer is computed once, before the timing);
- variance_study: the loss estimator at w = w*/2 for B = 1, 8, 64, 512, 20 000
  replicates;
- gradient_variance: B = 1, 8, 64, 2000 replicates.

Target: each ratio (problem from elsewhere / built-in) <= 1.1. The legs of a
round run one after another and each is the best of ``--repeat`` rounds, so
that load from other processes hits them alike; the CPU time other processes
took is printed. The bits are compared once (they are equal: tests/test_typing.py).
Never a test: tests do not assert on wall-clock time.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

import lossvar
from lossvar import optim

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _common import CpuMeter, best_time, machine  # noqa: E402
from bench_sgd import B1, B2, EPS, LR, STEPS, B, R, dataset  # noqa: E402
from protocol_problems import Delegating, NumpyLogistic  # noqa: E402


def _legs(problem, data, w):
    opt = optim.adam(LR, B1, B2, EPS)
    return {
        "run_sgd": lambda: lossvar.run_sgd(problem, data, opt, steps=STEPS, batch_size=B,
                                           replicates=R, sampling="with_replacement", rng=1,
                                           record=[0, STEPS]),
        "variance_study": lambda: lossvar.variance_study(problem, data, w, [1, 8, 64, 512],
                                                         replicates=20_000, rng=2),
        "gradient_variance": lambda: lossvar.gradient_variance(problem, data, w, [1, 8, 64],
                                                               replicates=2000, rng=3),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", lossvar.stats.UnreliableIntervalWarning)

    data = dataset()
    builtin = lossvar.LogisticRegression()
    w = 0.5 * builtin.minimize(data.X, data.y)
    problems = {"built-in": builtin, "NumpyLogistic": NumpyLogistic(),
                "Delegating": Delegating(builtin)}
    legs = {name: _legs(p, data, w) for name, p in problems.items()}
    print(f"machine: {machine()}")
    print(f"setting: logistic regression N={data.n}, d={data.d}; run_sgd R={R} Adam x {STEPS} "
          f"steps, B={B}; variance_study 4 batch sizes x 20000; gradient_variance 3 x 2000")
    results = {name: {k: f() for k, f in leg.items()} for name, leg in legs.items()}  # warm-up
    for name in ("NumpyLogistic", "Delegating"):
        same = (np.array_equal(results[name]["run_sgd"].final_params,
                               results["built-in"]["run_sgd"].final_params)
                and results[name]["variance_study"].table.equals(
                    results["built-in"]["variance_study"].table)
                and results[name]["gradient_variance"].table.equals(
                    results["built-in"]["gradient_variance"].table))
        print(f"{name}: the built-in's bits in all three engines: {'yes' if same else 'NO'}")
    times = {name: dict.fromkeys(leg, float("inf")) for name, leg in legs.items()}
    meter = CpuMeter()
    for _ in range(args.repeat):
        for engine in legs["built-in"]:
            for name in legs:
                times[name][engine] = min(times[name][engine], best_time(legs[name][engine], 1))
    load = meter.others()
    if load is not None:
        print(f"CPU time of other processes during the timing: {load['others']:.1f} s "
              f"(this one: {load['own']:.1f} s)")
    print()
    print(f"{'engine':<18} {'built-in':>9} {'NumpyLogistic':>14} {'Delegating':>11}   ratios (target <= 1.1)")
    for engine in legs["built-in"]:
        t = [times[name][engine] for name in legs]
        print(f"{engine:<18} {t[0]:8.3f}s {t[1]:13.3f}s {t[2]:10.3f}s   "
              f"{t[1] / t[0]:.3f}  {t[2] / t[0]:.3f}")


if __name__ == "__main__":
    main()
