"""Calibration of the variance verdict (lossvar.agreement) and coverage of its intervals.

    python benchmarks/bench_calibration.py              # 400 seeds per case (about 10 minutes)
    python benchmarks/bench_calibration.py --seeds 20   # a smoke run

Under the theory of docs/theory.md, section 3, a calibrated verdict has
P(agreement p < 0.05) = 0.05. For each case below, over ``--seeds`` seeds, it
prints that rejection rate with its Clopper-Pearson 95% interval, and the
coverage of the rows' fourth-moment intervals (at 95%) against the exact
variance, split by the ``interval_reliable`` flag (rows with an exact variance
of 0 are left out), each with its Clopper-Pearson interval.

Cases: the per-sample losses of breast_cancer at its reference fit (kurtosis
about 124), batch sizes 1, 2, 4, ..., 256 and the full set, both samplings,
at 20,000 replicates per batch size and at replicates="auto" (planned from
the exact kurtosis for a relative SE of 0.02); and 2000 lognormal(sigma = 1.5)
losses at "auto", both samplings.

Not a test: it prints measurements and asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import stats as st

import lossvar
from lossvar import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256, "full"]
SAMPLINGS = ("without_replacement", "with_replacement")


def _losses():
    data = lossvar.datasets.load("breast_cancer")
    problem = lossvar.datasets.problem_for(data)
    bc = problem.loss(lossvar.datasets.reference_params(data, problem), data.X, data.y)
    logn = np.random.default_rng(7).lognormal(sigma=1.5, size=2000)
    return [("breast_cancer", bc, 20_000), ("breast_cancer", bc, "auto"),
            ("lognormal(1.5), N=2000", logn, "auto")]


def _rate(hits: int, n: int) -> str:
    if n == 0:
        return "   n/a (0 rows)"
    ci = st.binomtest(hits, n, 0.05).proportion_ci(confidence_level=0.95, method="exact")
    return f"{hits / n:.4f} [{ci.low:.4f}, {ci.high:.4f}] ({hits}/{n})"


def run_case(losses, replicates, sampling, seeds):
    rejected, tested = 0, 0
    covered = {True: [0, 0], False: [0, 0]}  # flag -> [covered, rows]
    for seed in range(seeds):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", stats.UnreliableIntervalWarning)
            res = lossvar.loss_variance(losses, SIZES, replicates=replicates, sampling=sampling,
                                        confidence=0.95, rng=seed)
        verdict = lossvar.agreement(res, confidence=0.95)
        if verdict.tested:
            tested += 1
            rejected += verdict.pvalue < 0.05
        t = res.table[res.table.exact_variance > 0]
        hit = (t.ci_low <= t.exact_variance) & (t.exact_variance <= t.ci_high)
        for flag in (True, False):
            sel = t.interval_reliable.astype(bool) == flag
            covered[flag][0] += int(hit[sel].sum())
            covered[flag][1] += int(sel.sum())
    return rejected, tested, covered


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=400, help="seeds per case (default 400)")
    a = p.parse_args(argv)
    print(f"machine: {machine()}")
    print(f"batch sizes {SIZES}; {a.seeds} seeds per case; rates with Clopper-Pearson 95% intervals")
    print("verdict: P(agreement p < 0.05), nominal 0.05; coverage of the 95% fourth-moment "
          "intervals, nominal 0.95, split by interval_reliable")
    for name, losses, replicates in _losses():
        for sampling in SAMPLINGS:
            t0 = time.perf_counter()
            rejected, tested, covered = run_case(losses, replicates, sampling, a.seeds)
            print(f"\n{name}, replicates={replicates}, {sampling} ({time.perf_counter() - t0:.0f} s)")
            print(f"  P(p < 0.05)                 {_rate(rejected, tested)}")
            for flag in (True, False):
                print(f"  coverage, reliable={flag!s:<5}    {_rate(*covered[flag])}")


if __name__ == "__main__":
    main()
