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

import _thread
import os

import numpy as np


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Later:
    """``fn(*args)`` started now in a thread, under this thread's ``np.errstate``
    (and error callback); :meth:`result` waits for it and returns its value or
    raises its error. A bare thread (``_thread``), started without waiting for
    it to be scheduled as ``threading.Thread.start`` does: on a small call that
    wait is a visible part of the cost."""

    def __init__(self, fn, *args):
        errstate, errcall = np.geterr(), np.geterrcall()
        self._done = _thread.allocate_lock()
        self._done.acquire()
        self._waited = False
        self.value = self.error = None

        def call():
            try:
                with np.errstate(call=errcall, **errstate):
                    self.value = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
                self.error = exc
            finally:
                self._done.release()

        _thread.start_new_thread(call, ())

    def wait(self) -> None:
        """Return once the thread is done; an interrupt meanwhile is raised after it."""
        interrupted = None
        while not self._waited:
            try:
                self._done.acquire()
                self._waited = True
            except BaseException as exc:  # noqa: BLE001 - e.g. KeyboardInterrupt: re-raised below
                interrupted = exc
        if interrupted is not None:
            raise interrupted

    def result(self):
        self.wait()
        if self.error is not None:
            raise self.error
        return self.value


def for_each(fn, items) -> None:
    """``fn(item)`` for every item, the first in this thread and the others at
    the same time in threads; returns when all are done, raising the first error."""
    items = list(items)
    later = [Later(fn, item) for item in items[1:]]
    try:
        if items:
            fn(items[0])
    finally:
        for job in later:  # none left running on the caller's arrays
            job.wait()
    for job in later:
        job.result()
