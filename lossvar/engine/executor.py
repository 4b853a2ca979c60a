"""The engine's executor: conditions in blocks, chunks on workers, merged in block order.

See :mod:`lossvar.engine` for the model (conditions, blocks, chunks) and the
guarantees; :func:`simulate` is the one entry point.
"""

from __future__ import annotations

import copy
import math
import os
import signal
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass

import numpy as np

from ..moments import Moments, block_moments
from ..scratch import scratch
from ..streams import stream
from .checkpoint import CheckpointStore
from .execution import Execution, as_execution, resolve_workers
from .progress import call_progress

__all__ = ["BLOCK_ELEMENTS", "DEFAULT_CHUNK_BLOCKS", "MIN_REPLICATES_FOR_TARGET", "ChunkError",
           "Condition", "Output", "Shipment", "block_size", "simulate", "simulate_chunk"]

#: Blocks per chunk when ``chunk_size`` is None. Blocks hold about 2**18
#: per-sample elements, so a chunk is about 2**24 of them (tens of ms of work):
#: large enough that shipping a chunk to a worker costs little beside it.
DEFAULT_CHUNK_BLOCKS = 64

#: A condition with a precision target is not judged before it has this many
#: replicates: the fourth-moment standard error is itself too noisy before.
MIN_REPLICATES_FOR_TARGET = 1000

#: Replicate values per block are chosen so that a block touches about this
#: many numbers (per-sample losses, gradient entries): large enough that
#: per-block overhead is small, small enough to stay in cache. Part of the
#: definition of the random numbers (a different rule gives different bits).
BLOCK_ELEMENTS = 2**18


def block_size(elements_per_replicate: int) -> int:
    """Replicates per block for a condition touching this many numbers per replicate:
    a power of two in [16, 65536]."""
    exponent = int(math.log2(BLOCK_ELEMENTS)) - math.ceil(math.log2(max(elements_per_replicate, 1)))
    return 2 ** min(16, max(4, exponent))


@dataclass(frozen=True)
class Condition:
    """One Monte Carlo condition.

    Attributes
    ----------
    key : tuple of int
        The condition's stream key under the root seed (e.g. ``(B,)``).
    replicates : int
        How many replicate values to produce (the cap, with a precision target).
    block_size : int
        Replicates per block, the unit of randomness. Part of the definition
        of the random numbers: changing it changes the bits, changing the
        chunking does not.
    simulate : callable
        ``simulate(rng, size) -> ndarray`` of ``size`` replicate values. Must be
        picklable (a module-level class instance) to run on other processes.
    label : str
        How errors name the condition.
    reduce : {"moments", "stack"}
        ``"moments"``: ``simulate`` returns 1-D replicate values, summarized per
        block by their moments and merged. ``"stack"``: ``simulate`` returns an
        array, or a dict of named arrays (records of different shapes), and
        the blocks' arrays are concatenated along their first axis in block
        order (for per-replicate records such as SGD trajectories).
    cost : float, optional
        Relative work of one replicate, for the progress bar only (never for
        the results). Default: the elements the block size implies,
        ``BLOCK_ELEMENTS / block_size`` (see :func:`block_size`); give it where
        a replicate's cost is not proportional to the numbers it touches.
    """

    key: tuple
    replicates: int
    block_size: int
    simulate: Callable
    label: str = ""
    reduce: str = "moments"
    cost: float | None = None

    @property
    def n_blocks(self) -> int:
        return math.ceil(self.replicates / self.block_size)

    def block_len(self, j: int) -> int:
        return min(self.block_size, self.replicates - j * self.block_size)


@dataclass(frozen=True)
class Output:
    """Merged moments of a condition (None for ``reduce="stack"``), its raw
    replicate values in replicate order when kept or stacked (a dict of named
    arrays where ``simulate`` returns one), and whether a precision target was
    met (None without a target)."""

    moments: Moments | None
    values: np.ndarray | dict | None
    target_met: bool | None = None


class ChunkError(RuntimeError):
    """A chunk of a condition failed; no result of the call is returned."""


def simulate_chunk(condition: Condition, root: np.random.SeedSequence, start: int, stop: int,
              keep: bool):
    """Compute blocks ``start..stop-1`` of a condition (the unit a worker runs).

    Returns ``(moments, values)``: an ``(n, 5)`` float array of per-block
    ``(count, mean, M2, M3, M4)`` (None for ``reduce="stack"``) and the
    concatenated values of the chunk (None unless kept or stacked).
    """
    stats, values = [], []
    # A simulator that returns a view of its scratch buffers says so; its
    # values are copied when kept, since the next block overwrites them.
    borrowed = getattr(condition.simulate, "returns_scratch", False)
    for j in range(start, stop):
        v = condition.simulate(stream(root, *condition.key, j), condition.block_len(j))
        if condition.reduce == "stack":
            values.append(_copy(v) if borrowed else v)
            continue
        v = np.asarray(v)
        stats.append(_moments_row(v))
        if keep:
            values.append(v.copy() if borrowed else v)
    moments = None if condition.reduce == "stack" else np.array(stats, dtype=np.float64)
    return moments, _concatenate(values)


def _concatenate(parts):
    """Blocks' values joined along the first axis in order: arrays, or dicts of named
    arrays joined name by name; None for no parts."""
    if not parts:
        return None
    if isinstance(parts[0], dict):
        return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}
    return np.concatenate([np.asarray(p) for p in parts])


def _copy(v):
    return {k: np.array(a) for k, a in v.items()} if isinstance(v, dict) else np.array(v)


def _moments_row(v) -> tuple:
    """``(count, mean, M2, M3, M4)`` of a block's values, as :meth:`Moments.of` gives them
    (bit for bit), with the powered deviations written to scratch."""
    x = np.asarray(v, dtype=np.float64)
    if x.size == 0:
        return (0, 0.0, 0.0, 0.0, 0.0)
    work = scratch("moments", (3, x.size)) if x.ndim == 1 else None
    return (x.size, *block_moments(x, work))


_INSTALLED: tuple = ()


def _fork_context():
    """Fork where it is safe (Linux): workers inherit the conditions without
    pickling them, so closures (optimizers, schedules) work too. Elsewhere the
    platform's default, which pickles the initializer's arguments once per worker."""
    import multiprocessing
    import sys

    return multiprocessing.get_context("fork") if sys.platform == "linux" else None


def _install(conditions, root):
    """Process-pool initializer: keep the call's conditions in the worker.

    Ctrl-C in a terminal reaches the whole process group: the workers ignore it
    and the caller's process, which owns the pool, unwinds and shuts them down
    (no traceback from each worker)."""
    global _INSTALLED
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _INSTALLED = (conditions, root)


def _run_installed(index, start, stop, keep):
    conditions, root = _INSTALLED
    return simulate_chunk(conditions[index], root, start, stop, keep)


def _run_shared(shared, index, start, stop, keep):
    return simulate_chunk(shared.conditions[index], shared.root, start, stop, keep)


class Shipment:
    """The conditions and root of a call, as shipped to an external executor.

    Unpickling makes private copies of the arrays inside: arrays that arrive
    through dask's frames can be misaligned (a data pointer at an odd
    address), and numpy then gathers from them some 1.7 times more slowly.
    The copy is made once per worker, when the scattered object arrives.
    """

    def __init__(self, conditions, root):
        self.conditions, self.root = conditions, root

    def __getstate__(self):
        return (self.conditions, self.root)

    def __setstate__(self, state):
        self.conditions, self.root = copy.deepcopy(state)


def _share(executor, conditions, root):
    """The conditions and root as the executor should receive them with every chunk.

    A dask ``Client.get_executor()`` gets them scattered to every worker once
    (a future that dask resolves on the worker), so the data of a condition
    (say 10^6 losses) does not travel with each chunk. Any other executor
    gets the object itself.
    """
    shared = Shipment(conditions, root)
    client = getattr(executor, "_client", None)
    if client is not None and hasattr(client, "scatter"):
        return client.scatter([shared], broadcast=True, hash=False)[0]
    return shared


class _Inline(Executor):
    """Runs each task at submission, in the calling process."""

    def submit(self, fn, /, *args, **kwargs):
        fut = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            fut.set_exception(exc)
        return fut


def simulate(conditions, root: np.random.SeedSequence, *, execution: Execution | None = None,
             keep_values: bool = False, fingerprint: dict | None = None,
             target_rel_se: float | None = None) -> list[Output]:
    """Compute every condition's blocks and merge them in block order.

    Parameters
    ----------
    conditions : sequence of Condition
    root : SeedSequence
        The call's root (see :func:`lossvar.streams.as_seed_sequence`).
    execution : Execution, optional
        How to run; see :class:`lossvar.Execution`.
    keep_values : bool
        Keep the raw replicate values (memory then grows with the replicates).
    fingerprint : dict, optional
        JSON-serializable description of the call, stored in the checkpoint
        and compared on resume: a difference is refused, naming the keys.
    target_rel_se : float, optional
        Stop each condition at the first block (in index order) after which
        ``SE(S2) / S2 <= target_rel_se``, or at ``condition.replicates``
        (reported in ``Output.target_met``).

    Returns
    -------
    list of Output
        One per condition, in order.
    """
    spec = as_execution(execution)
    chunk_size, progress, checkpoint = spec.chunk_size, spec.progress, spec.checkpoint
    executor, workers = spec.executor, spec.workers
    conditions = list(conditions)
    store = CheckpointStore(checkpoint, fingerprint, chunk_size) if checkpoint is not None else None
    own_pool = None
    if executor is None:
        n_workers = resolve_workers(workers)
        if n_workers == 1:
            executor = _Inline()
        else:  # the conditions (and their data) reach each worker once, not once per chunk
            executor = own_pool = ProcessPoolExecutor(n_workers, mp_context=_fork_context(),
                                                      initializer=_install,
                                                      initargs=(conditions, root))
        # One worker computes one chunk at a time: none is computed ahead and thrown
        # away when a condition reaches its precision target.
        in_flight = 1 if n_workers == 1 else 2 * n_workers
    else:  # an external pool of unknown size: keep enough work queued
        in_flight = 4 * (os.cpu_count() or 1)
    states = [_State(c, i, chunk_size, keep_values, target_rel_se)
              for i, c in enumerate(conditions)]
    bar = call_progress(states, _chunk_work, progress)
    pending: dict[Future, tuple[_State, int]] = {}
    shared = None
    try:
        queue = ((s, i) for s in states for i in range(s.n_chunks))
        for s, i in queue:
            if s.done:
                continue
            cached = store.load(s.condition, s.chunks[i], keep_values) if store else None
            if cached is not None:
                s.accept(i, cached)
                if bar is not None:
                    bar.tick(s, i)
                continue
            start, stop = s.chunks[i]
            if own_pool is not None:
                fut = executor.submit(_run_installed, s.index, start, stop, keep_values)
            else:
                if shared is None:
                    shared = _share(executor, conditions, root)
                fut = executor.submit(_run_shared, shared, s.index, start, stop, keep_values)
            pending[fut] = (s, i)
            while len(pending) >= in_flight:
                _collect(pending, store, bar)
        while pending:
            _collect(pending, store, bar)
    except BaseException:
        for fut in pending:
            fut.cancel()
        if bar is not None:
            bar.close(False)
        raise
    else:
        if bar is not None:
            bar.close(True)
    finally:
        if own_pool is not None:
            own_pool.shutdown(wait=True, cancel_futures=True)
    return [s.output() for s in states]


def _collect(pending, store, bar):
    done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
    for fut in sorted(done, key=lambda f: pending[f][1]):
        s, i = pending.pop(fut)
        try:
            result = fut.result()
        except Exception as exc:
            start, stop = s.chunks[i]
            raise ChunkError(
                f"condition {s.condition.label or s.condition.key} failed in chunk {i} "
                f"(blocks {start}..{stop - 1}); no partial result is returned: {exc!r}"
            ) from exc
        if store is not None:
            store.save(s.condition, s.chunks[i], result)
        s.accept(i, result)
        if bar is not None:
            bar.tick(s, i)


class _State:
    """Per-condition bookkeeping: chunks, the in-order merge, the stopping rule."""

    def __init__(self, condition: Condition, index: int, chunk_size, keep, target):
        self.condition, self.index, self.keep, self.target = condition, index, keep, target
        per = (DEFAULT_CHUNK_BLOCKS if chunk_size is None
               else max(1, math.ceil(chunk_size / condition.block_size)))
        nb = condition.n_blocks
        self.chunks = [(a, min(a + per, nb)) for a in range(0, nb, per)]
        self.n_chunks = len(self.chunks)
        self.ready: dict[int, tuple] = {}
        self.next_chunk = 0
        self.moments = Moments.empty()
        self.values: list = []
        self.done = False
        self.target_met = None if target is None else False

    def accept(self, i, result):
        self.ready[i] = result
        while not self.done and self.next_chunk in self.ready:
            moments, values = self.ready.pop(self.next_chunk)
            self._merge(moments, values)
            self.next_chunk += 1
            if self.next_chunk == self.n_chunks:
                self.done = True
        if self.done:
            self.ready.clear()

    def _merge(self, moments, values):
        if self.condition.reduce == "stack":
            self.values.append(values)
            return
        offset = 0
        for count, mean, m2, m3, m4 in moments:
            block = Moments(int(count), float(mean), float(m2), float(m3), float(m4))
            self.moments = self.moments.merge(block)
            if self.keep:
                self.values.append(values[offset:offset + block.count])
            offset += block.count
            if self.target is not None and self._target_reached():
                self.target_met = True
                self.done = True
                return

    def _target_reached(self) -> bool:
        m = self.moments
        if m.count < MIN_REPLICATES_FOR_TARGET:
            return False
        s2 = m.variance
        return s2 == 0.0 or m.variance_se() <= self.target * s2

    def output(self) -> Output:
        values = _concatenate(self.values)
        moments = None if self.condition.reduce == "stack" else self.moments
        return Output(moments, values, self.target_met)


def _chunk_work(condition: Condition, start: int, stop: int) -> float:
    """Estimated work of blocks ``start..stop-1``: replicates times elements per replicate."""
    per_replicate = (max(1.0, BLOCK_ELEMENTS / condition.block_size) if condition.cost is None
                     else float(condition.cost))
    return per_replicate * sum(condition.block_len(j) for j in range(start, stop))
