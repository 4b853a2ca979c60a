"""Helpers shared by the benchmarks: wall-clock timing, the machine, its load, peak memory."""

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


class CpuMeter:
    """CPU time used on the whole machine since creation, split into this process's
    (with its finished child processes: workers it started and joined) and the rest.

    On a shared machine the rest (other users' processes, the kernel) says how far
    wall-clock ratios can be trusted. Linux only (``/proc/stat``); elsewhere every
    reading is None.
    """

    def __init__(self):
        self._start = self._read()

    @staticmethod
    def _read():
        try:
            import resource

            with open("/proc/stat") as fh:
                ticks = [int(v) for v in fh.readline().split()[1:9]]
        except (ImportError, OSError):
            return None
        hz = os.sysconf("SC_CLK_TCK")
        user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        own = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
        return (user + nice + system + irq + softirq) / hz, own, steal / hz

    def others(self) -> dict | None:
        """``{"others": s, "own": s, "steal": s}`` of CPU since creation (None off Linux)."""
        now = self._read()
        if now is None or self._start is None:
            return None
        busy, own, steal = (b - a for a, b in zip(self._start, now, strict=True))
        return {"others": max(busy - own, 0.0), "own": own, "steal": steal}
