"""Throughput of loss_variance serially, on 2 local processes and on a dask LocalCluster.

    python benchmarks/bench_parallel.py                 # 10^6 replicates per B (a few minutes)
    python benchmarks/bench_parallel.py --replicates 200000
    python benchmarks/bench_parallel.py --workers 2,4,8,16   # scaling on a larger machine

The work is the foundation benchmark's grid (N = 10^6 losses, B in {1, 4, 16,
64, 256, 1024}, without replacement) at ``--replicates`` per batch size. All
runs must give the same table, bit for bit (checked). Then the peak
resident memory of the coordinating process, with 2 workers, at R and 10 R
replicates of one batch size (each in a fresh subprocess): it must not grow
with R. Ratios only; never a test.

Like for like: the pool's workers are forked from this process with lossvar
imported, and the dask workers have it imported before their run is timed
(spawned workers import this script, hence lossvar, as they start anyway).
On a shared machine, ``--repeat K`` times every leg K times in turn, keeps the
best of each, and prints the dask / pool ratio of every round beside it: on a
shared virtual machine the same chunk of work can take 0.43 s in one run and
0.80 s in the next, so one ratio alone is not a measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import lossvar

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CpuMeter, machine, peak_rss_mib  # noqa: E402

GRID = [1, 4, 16, 64, 256, 1024]
DASK = "dask LocalCluster (2 processes)"
DASK_TUNED = "dask, malloc thresholds set"
DASK_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}


def _losses(n):
    return np.random.default_rng(0).exponential(size=n)


def _import_lossvar():
    import lossvar  # noqa: F401 - the import is the point


@contextlib.contextmanager
def _cluster(env):
    """A 2-process LocalCluster whose workers start with ``env``; this process's
    environment is given back afterwards (a nanny writes its ``pre-spawn-environ``
    into the environment of the process that starts it, where it would override
    dask's config for later clusters and leak into later subprocesses)."""
    import dask
    import distributed

    saved = dict(os.environ)
    for key in DASK_MALLOC:
        os.environ.pop(key, None)
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": env}), \
                distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                         dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client:
            yield client
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10**6)
    p.add_argument("--replicates", type=int, default=10**6)
    p.add_argument("--repeat", type=int, default=1,
                   help="time every leg this many times, in turn; keep the best of each")
    p.add_argument("--workers", default="2",
                   help="comma-separated process counts to time against 1 worker (default 2)")
    p.add_argument("--_rss", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    try:
        counts = [int(w) for w in a.workers.split(",")]
    except ValueError:
        p.error(f"--workers must be comma-separated integers >= 2; got {a.workers!r}")
    if not counts or min(counts) < 2:
        p.error(f"--workers must be comma-separated integers >= 2; got {a.workers!r}")
    losses = _losses(a.n)
    if a._rss:
        lossvar.loss_variance(losses, [64], replicates=a._rss, rng=1,
                              execution=lossvar.Execution(workers=2))
        print(peak_rss_mib())
        return
    print(f"machine: {machine()}")
    print(f"N = {a.n}, R = {a.replicates} per B, B in {GRID}, without replacement")
    kw = dict(replicates=a.replicates, rng=1)
    meter, start = CpuMeter(), time.perf_counter()
    t0 = time.perf_counter()
    serial = lossvar.loss_variance(losses, GRID, **kw)
    rounds: dict[str, list[float]] = {"1 worker": [time.perf_counter() - t0]}
    scratch = {"1 worker (this process)": lossvar.scratch.scratch_nbytes()["max_thread_bytes"]}
    try:
        import dask
        import distributed  # noqa: F401 - _cluster needs it
    except ImportError:
        print("dask: skipped (install the 'distributed' extra)")
        runs = ()
    else:
        # dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which
        # also freezes glibc's adaptive mmap threshold at 128 KiB: a temporary
        # array of a block (about 2 MiB) is then mapped, zero-filled and
        # unmapped afresh. lossvar's blocks allocate none (scratch buffers,
        # intp indices), so dask's default environment is the one to meet the
        # target; the thresholds glibc itself settles on in a long-running
        # process are measured beside it (README, Performance: "dask workers and malloc").
        environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
        runs = ((DASK, environ), (DASK_TUNED, {**environ, **DASK_MALLOC}))
    pool_name = "2 workers (processes)"
    names = {w: f"{w} workers (processes)" for w in counts}
    for k in range(max(a.repeat, 1)):  # each leg's time in every round, in turn
        if k:
            t0 = time.perf_counter()
            again = lossvar.loss_variance(losses, GRID, **kw)
            rounds["1 worker"].append(time.perf_counter() - t0)
            pd.testing.assert_frame_equal(serial.table, again.table, check_exact=True)
        for w in counts:
            t0 = time.perf_counter()
            pool = lossvar.loss_variance(losses, GRID, **kw, execution=lossvar.Execution(workers=w))
            rounds.setdefault(names[w], []).append(time.perf_counter() - t0)
            pd.testing.assert_frame_equal(serial.table, pool.table, check_exact=True)
        for name, env in runs:
            with _cluster(env) as client:
                seen = client.run(lambda: {k: os.environ.get(k) for k in DASK_MALLOC})
                client.run(_import_lossvar)  # as in the pool's forked workers: not timed
                if name not in rounds:
                    print(f"{name}: workers' environment {sorted(set(map(str, seen.values())))}")
                t0 = time.perf_counter()
                dask_run = lossvar.loss_variance(
                    losses, GRID, **kw, execution=lossvar.Execution(executor=client.get_executor()))
                rounds.setdefault(name, []).append(time.perf_counter() - t0)
                held = client.run(lambda: __import__("lossvar.scratch").scratch.scratch_nbytes())
                scratch[name] = max(v["max_thread_bytes"] for v in held.values())
            pd.testing.assert_frame_equal(serial.table, dask_run.table, check_exact=True)
    times = {name: min(ts) for name, ts in rounds.items()}
    load, wall = meter.others(), time.perf_counter() - start
    if a.repeat > 1:
        print(f"best of {a.repeat} runs each, in turn")
    for name, t in times.items():
        print(f"{name:>48}: {t:8.2f} s   throughput x{times['1 worker'] / t:.2f} of 1 worker")
    for name in (DASK, DASK_TUNED):
        if name in times and pool_name in times:
            print(f"{name} / process pool time: {times[name] / times[pool_name]:.2f}")
            if a.repeat > 1:
                # The same ratio round by round (each dask run against the pool run just
                # before it): its spread is how far one run's ratio can be trusted here.
                paired = np.array(rounds[name]) / np.array(rounds[pool_name])
                print(f"  round by round: {', '.join(f'{r:.2f}' for r in paired)} "
                      f"(median {np.median(paired):.2f})")
    print("tables bit-identical across all runs: yes")
    print("targets: 2 workers >= 1.6x throughput of 1; dask <= 1.2x the process pool's time "
          "(default worker environment and tuned)")
    if load is not None:
        print(f"machine load meanwhile: other processes {load['others']:.1f} CPU-s, steal "
              f"{load['steal']:.1f} s, against {load['own']:.1f} CPU-s of these runs in "
              f"{wall:.0f} s on {os.cpu_count()} cores (other processes skew the ratios, and so can "
              "load on the host that no process here shows: compare runs with --repeat)")
    print("per-worker scratch buffers (largest thread): "
          + ", ".join(f"{k}: {v / 2**20:.1f} MiB" for k, v in scratch.items())
          + f" (cap {lossvar.scratch.SCRATCH_LIMIT >> 20} MiB per thread)")
    rss = {}
    for r in (a.replicates // 10, a.replicates):
        out = subprocess.run([sys.executable, __file__, "--n", str(a.n), "--_rss", str(r)],
                             capture_output=True, text=True, check=True)
        rss[r] = float(out.stdout.split()[-1])
    print("coordinator peak RSS (2 workers, B = 64): "
          + ", ".join(f"R = {r}: {m:.0f} MiB" for r, m in rss.items()))


if __name__ == "__main__":
    main()
