"""Throughput of loss_variance serially, on 2 local processes and on a dask LocalCluster.

    python benchmarks/bench_parallel.py                 # 10^6 replicates per B (a few minutes)
    python benchmarks/bench_parallel.py --replicates 200000

The work is the foundation benchmark's grid (N = 10^6 losses, B in {1, 4, 16,
64, 256, 1024}, without replacement) at ``--replicates`` per batch size. All
runs must give the same table, bit for bit (checked). Then the peak
resident memory of the coordinating process, with 2 workers, at R and 10 R
replicates of one batch size (each in a fresh subprocess): it must not grow
with R. Ratios only; never a test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import lossvar

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, peak_rss_mib  # noqa: E402

GRID = [1, 4, 16, 64, 256, 1024]
DASK = "dask LocalCluster (2 processes)"
DASK_TUNED = "dask, malloc thresholds set"
DASK_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}


def _losses(n):
    return np.random.default_rng(0).exponential(size=n)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10**6)
    p.add_argument("--replicates", type=int, default=10**6)
    p.add_argument("--_rss", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    losses = _losses(a.n)
    if a._rss:
        lossvar.loss_variance(losses, [64], replicates=a._rss, rng=1, workers=2)
        print(peak_rss_mib())
        return
    print(f"machine: {machine()}")
    print(f"N = {a.n}, R = {a.replicates} per B, B in {GRID}, without replacement")
    kw = dict(replicates=a.replicates, rng=1)
    times = {}
    t0 = time.perf_counter()
    serial = lossvar.loss_variance(losses, GRID, **kw)
    times["1 worker"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pool = lossvar.loss_variance(losses, GRID, **kw, workers=2)
    times["2 workers (processes)"] = time.perf_counter() - t0
    pd.testing.assert_frame_equal(serial.table, pool.table, check_exact=True)
    scratch = {"1 worker (this process)": lossvar.engine.scratch_nbytes()["max_thread_bytes"]}
    try:
        import dask
        import distributed
    except ImportError:
        print("dask: skipped (install the 'distributed' extra)")
    else:
        # dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which
        # also freezes glibc's adaptive mmap threshold at 128 KiB: every numpy
        # temporary of a block (about 2 MiB) is then mapped, zero-filled and
        # unmapped afresh. Measured with dask's defaults and with the thresholds
        # glibc itself settles on in a long-running process (README, Performance: "dask workers and malloc").
        environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
        tuned = {**environ, **DASK_MALLOC}
        for name, env in ((DASK, environ), (DASK_TUNED, tuned)):
            # A nanny copies these into its own process's environment, and a
            # variable set there overrides dask's config for later clusters.
            for key in DASK_MALLOC:
                os.environ.pop(key, None)
            with dask.config.set({"distributed.nanny.pre-spawn-environ": env}), \
                    distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                             dashboard_address=None) as cluster, \
                    distributed.Client(cluster) as client:
                seen = client.run(lambda: {k: os.environ.get(k) for k in DASK_MALLOC})
                print(f"{name}: workers' environment {sorted(set(map(str, seen.values())))}")
                t0 = time.perf_counter()
                dask_run = lossvar.loss_variance(losses, GRID, **kw,
                                                 executor=client.get_executor())
                times[name] = time.perf_counter() - t0
                held = client.run(lambda: __import__("lossvar").engine.scratch_nbytes())
                scratch[name] = max(v["max_thread_bytes"] for v in held.values())
            pd.testing.assert_frame_equal(serial.table, dask_run.table, check_exact=True)
    for name, t in times.items():
        print(f"{name:>48}: {t:8.2f} s   throughput x{times['1 worker'] / t:.2f} of 1 worker")
    for name in (DASK, DASK_TUNED):
        if name in times:
            print(f"{name} / process pool time: {times[name] / times['2 workers (processes)']:.2f}")
    print("tables bit-identical across all runs: yes")
    print("targets: 2 workers >= 1.6x throughput of 1; dask <= 1.2x the process pool's time "
          "(default worker environment and tuned)")
    print("per-worker scratch buffers (largest thread): "
          + ", ".join(f"{k}: {v / 2**20:.1f} MiB" for k, v in scratch.items())
          + f" (cap {lossvar.engine.SCRATCH_LIMIT >> 20} MiB per thread)")
    rss = {}
    for r in (a.replicates // 10, a.replicates):
        out = subprocess.run([sys.executable, __file__, "--n", str(a.n), "--_rss", str(r)],
                             capture_output=True, text=True, check=True)
        rss[r] = float(out.stdout.split()[-1])
    print("coordinator peak RSS (2 workers, B = 64): "
          + ", ".join(f"R = {r}: {m:.0f} MiB" for r, m in rss.items()))


if __name__ == "__main__":
    main()
