"""Helpers shared by the benchmarks: wall-clock timing, the machine, peak memory."""

from __future__ import annotations

import os
import platform
import time

import numpy as np


def best_time(fn, repeat: int = 1) -> float:
    """The smallest wall time of ``repeat`` calls of ``fn``."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} cores, {_cpu_model()}, "
            f"{platform.python_implementation()} {platform.python_version()}, "
            f"numpy {np.__version__}, {platform.system()} {platform.release()}")


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), in MiB.

    Unlike ``getrusage().ru_maxrss``, VmHWM starts afresh at exec, so a
    child process does not report its parent's peak.
    """
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")
