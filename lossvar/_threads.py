"""Threads for the large parts of a computation that numpy runs without the GIL.

numpy releases the GIL inside a ufunc loop and a random draw, so a few
threads that each run large operations on their own rows use the cores of one
process. Short calls gain nothing (the GIL then passes back and forth more
often than the work takes), nor do BLAS calls made from several threads at
once (OpenBLAS's own threads then compete for the cores): callers keep those in
one thread. The threads live only as long as their work, so none is left
running when the engine forks its workers.
"""

from __future__ import annotations

import os
import threading

import numpy as np


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Later:
    """``fn(*args)`` started now in a thread, under this thread's ``np.errstate``;
    :meth:`result` waits for it and returns its value (or raises its error)."""

    def __init__(self, fn, *args):
        errors = np.geterr()
        self._out: list = []

        def call():
            try:
                with np.errstate(**errors):
                    self._out.append((True, fn(*args)))
            except BaseException as e:  # handed to the caller by result()
                self._out.append((False, e))

        self._thread = threading.Thread(target=call, name="lossvar", daemon=True)
        self._thread.start()

    def result(self):
        self._thread.join()
        ok, value = self._out[0]
        if not ok:
            raise value
        return value


def run(fn, items) -> None:
    """``fn(item)`` for every item, the first in this thread and the others at
    the same time in threads; returns when all are done, raising the first error."""
    items = list(items)
    later = [Later(fn, item) for item in items[1:]]
    try:
        if items:
            fn(items[0])
    finally:
        for job in later:  # none left running on the caller's arrays
            job._thread.join()
    for job in later:
        job.result()
