"""Per-thread scratch buffers, reused call after call (the engine's blocks, the moments' passes).

A block's temporaries (batch indices, gathered losses, batch means, powered
deviations) are a few MiB each. Allocated afresh per block, each one is a new
mmap whenever glibc's mmap threshold is low (dask's nannies set
``MALLOC_TRIM_THRESHOLD_``, which freezes it at 128 KiB): the kernel then maps
and zero-fills every page again. Reusing one buffer per role and thread avoids
that, whatever the allocator settings.

This module imports nothing of lossvar: the summation kernel of
:mod:`lossvar.moments`, the draws of :mod:`lossvar.sampling` and the engine's
simulators all write into it.
"""

from __future__ import annotations

import math
import threading

import numpy as np

__all__ = ["SCRATCH_LIMIT", "release_scratch", "scratch", "scratch_nbytes"]

#: Per-thread cap on the scratch memory kept between calls (:func:`scratch`).
#: A block's buffers take a few MiB (about 2**18 elements each); a request
#: that would take a thread's scratch past the cap gets a fresh array instead.
SCRATCH_LIMIT = 64 << 20

_LOCAL = threading.local()
_POOLS: dict[int, dict] = {}
_POOLS_LOCK = threading.Lock()


def scratch(name: str, shape, dtype=np.float64) -> np.ndarray:
    """An uninitialized C-contiguous array for this thread's role ``name``.

    The memory is reused by the next request for the same name in the same
    thread (it grows to the largest request), so a caller must be done with
    the previous array of that name before asking again, and must copy what
    it returns to be kept. Bounded per thread by :data:`SCRATCH_LIMIT`.
    """
    dtype = np.dtype(dtype)
    if isinstance(shape, (int, np.integer)):  # the common forms first: np.ndim costs more than a block
        shape = (int(shape),)
    elif isinstance(shape, tuple):
        shape = tuple(int(k) for k in shape)
    else:
        shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(k) for k in shape)
    nbytes = math.prod(shape) * dtype.itemsize
    pool = getattr(_LOCAL, "pool", None)
    if pool is None:
        pool = _LOCAL.pool = {}
        with _POOLS_LOCK:
            _POOLS[threading.get_ident()] = pool
    buf = pool.get(name)
    if buf is None or buf.nbytes < nbytes:
        held = sum(b.nbytes for b in pool.values()) - (0 if buf is None else buf.nbytes)
        if held + nbytes > SCRATCH_LIMIT:
            return np.empty(shape, dtype)
        buf = pool[name] = np.empty(max(nbytes, 64), np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


def scratch_nbytes() -> dict:
    """Scratch memory held in this process: ``{"threads", "bytes", "max_thread_bytes",
    "this_thread_bytes"}`` (the last: the calling thread's own buffers)."""
    with _POOLS_LOCK:
        sizes = [sum(b.nbytes for b in pool.values()) for pool in _POOLS.values()]
    own = getattr(_LOCAL, "pool", None) or {}
    return {"threads": len(sizes), "bytes": sum(sizes), "max_thread_bytes": max(sizes, default=0),
            "this_thread_bytes": sum(b.nbytes for b in own.values())}


def release_scratch() -> None:
    """Drop this thread's scratch buffers (they are made again when next needed)."""
    pool = getattr(_LOCAL, "pool", None)
    if pool is not None:
        pool.clear()
