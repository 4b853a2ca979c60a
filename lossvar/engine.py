"""Replicates in blocks: the unit of randomness, chunks of work, and their merge.

A Monte Carlo *condition* (one batch size, say) asks for ``R`` replicate values.
They are produced in *blocks* of a fixed number of replicates; block ``j`` of
the condition with key ``k`` draws from its own stream
``stream(root, *k, j)``, and is summarized by its :class:`~lossvar.moments.Moments`.
Blocks are grouped into *chunks* only to schedule work (to bound memory, or
to hand work to a worker); the summaries are merged in block order whatever
the chunking, so the same root seed gives bit-identical results for every
chunk size, worker count, executor (serial, local processes, dask) and
completion order.

Chunks can be checkpointed (each finished chunk written atomically, with a
checksum) so that a killed run resumes where it stopped, and a condition can
run until the relative standard error of its variance reaches a target,
decided block by block in index order so that the stopping point does not
depend on the workers either.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import hashlib
import io
import json
import math
import os
import signal
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .moments import Moments, block_moments
from .streams import stream

#: Blocks per chunk when ``chunk_size`` is None. Blocks hold about 2**18
#: per-sample elements, so a chunk is about 2**24 of them (tens of ms of work):
#: large enough that shipping a chunk to a worker costs little beside it.
DEFAULT_CHUNK_BLOCKS = 64

#: A condition with a precision target is not judged before it has this many
#: replicates: the fourth-moment standard error is itself too noisy before.
MIN_REPLICATES_FOR_TARGET = 1000

#: Per-thread cap on the scratch memory kept between blocks (:func:`scratch`).
#: A block's buffers take a few MiB (about 2**18 elements each); a request
#: that would take a thread's scratch past the cap gets a fresh array instead.
SCRATCH_LIMIT = 64 << 20


# -- per-worker scratch buffers ----------------------------------------------------------
#
# A block's temporaries (batch indices, gathered losses, batch means, powered
# deviations) are a few MiB each. Allocated afresh per block, each one is a new
# mmap whenever glibc's mmap threshold is low (dask's nannies set
# MALLOC_TRIM_THRESHOLD_, which freezes it at 128 KiB): the kernel then maps and
# zero-fills every page again. Reusing one buffer per role and thread avoids
# that, whatever the allocator settings.

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


class CheckpointMismatch(ValueError):
    """A checkpoint folder was written by a call with other parameters."""


def run_chunk(condition: Condition, root: np.random.SeedSequence, start: int, stop: int,
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
    return run_chunk(conditions[index], root, start, stop, keep)


def _run_shared(shared, index, start, stop, keep):
    return run_chunk(shared.conditions[index], shared.root, start, stop, keep)


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


def resolve_workers(workers) -> int:
    """``workers`` as a count: a positive int, or -1 for all cores."""
    from ._validate import as_int

    workers = as_int(workers, "workers", low=-1)
    if workers == 0:
        raise ValueError("`workers` must be a positive integer or -1 (all cores); got 0")
    return (os.cpu_count() or 1) if workers == -1 else workers


@dataclass(frozen=True)
class Execution:
    """How a Monte Carlo call runs; never what it computes.

    One object, validated once, that every Monte Carlo entry point takes as
    ``execution=`` (``loss_variance``, ``variance_study``, ``run_sgd``,
    ``gradient_variance``); their ``workers``, ``executor``, ``chunk_size``,
    ``progress`` and ``checkpoint`` keywords are conveniences that build it
    through :func:`as_execution`. Results are bit-identical for every choice
    (streams are keyed by unit of work, blocks merged in index order), as with
    scipy's ``MonteCarloMethod`` the options say how, not what.

    Attributes
    ----------
    workers : int
        1 (serial, in this process), a number of local processes, or -1 for all
        cores. Not together with ``executor``.
    executor : concurrent.futures.Executor, optional
        Where chunks run instead, e.g. a dask ``Client(...).get_executor()``.
    chunk_size : int, optional
        Replicates per unit of work (memory and scheduling only).
    progress : bool
        A progress bar: the call's own, labelled "lossvar", or, inside
        :func:`phase`, the phase's (which every call inside reports to, whatever
        its ``progress``). Its unit is estimated work, not chunks.
    checkpoint : path, optional
        Folder for finished chunks; a rerun of the same call resumes from it.
    """

    workers: int = 1
    executor: Executor | None = None
    chunk_size: int | None = None
    progress: bool = False
    checkpoint: str | os.PathLike | None = None

    @property
    def in_process(self) -> bool:
        """Whether the blocks run here, one after another (one worker, no
        executor): only then may a call use this process's other cores itself."""
        return self.executor is None and resolve_workers(self.workers) == 1

    def __post_init__(self):
        from ._validate import as_int

        resolve_workers(self.workers)
        if self.executor is not None:
            if not callable(getattr(self.executor, "submit", None)):
                raise TypeError("`executor` must be a concurrent.futures.Executor (with a submit "
                                f"method); got {self.executor!r}")
            if self.workers != 1:
                raise ValueError(f"give `workers` or `executor`, not both; got workers={self.workers!r} "
                                 "and an executor")
        if self.chunk_size is not None:
            as_int(self.chunk_size, "chunk_size", low=1)
        if not isinstance(self.progress, (bool, np.bool_)):
            raise TypeError(f"`progress` must be True or False; got {self.progress!r}")
        if self.checkpoint is not None and not isinstance(self.checkpoint, (str, os.PathLike)):
            raise TypeError(f"`checkpoint` must be a folder path or None; got {self.checkpoint!r}")


_DEFAULTS = Execution()


def as_execution(execution: Execution | None = None, **options) -> Execution:
    """The one place where run options become an :class:`Execution`.

    Either ``execution`` or the keyword conveniences (``workers``,
    ``executor``, ``chunk_size``, ``progress``, ``checkpoint``; those left at
    their defaults are ignored), not both.
    """
    given = {k: v for k, v in options.items() if v is not None and v != getattr(_DEFAULTS, k)}
    if execution is None:
        return Execution(**given) if given else _DEFAULTS  # frozen: the defaults can be shared
    if not isinstance(execution, Execution):
        raise TypeError(f"`execution` must be a lossvar.Execution or None; got {execution!r}")
    if given:
        raise ValueError("give `execution` or the keywords " + ", ".join(f"`{k}`" for k in given)
                         + ", not both")
    return execution


def run(conditions, root: np.random.SeedSequence, *, execution: Execution | None = None,
        keep_values: bool = False, fingerprint: dict | None = None,
        target_rel_se: float | None = None, **options) -> list[Output]:
    """Run every condition's blocks and merge them in block order.

    Parameters
    ----------
    conditions : sequence of Condition
    root : SeedSequence
        The call's root (see :func:`lossvar.streams.as_seed_sequence`).
    execution : Execution, optional
        How to run (workers or an executor, chunk size, progress bar,
        checkpoint folder); or give those as keywords (``**options``). Chunks
        are rounded up to whole blocks (default :data:`DEFAULT_CHUNK_BLOCKS`
        blocks); a checkpoint folder gets each finished chunk atomically, and a
        rerun of the same call computes only the missing chunks.
    keep_values : bool
        Keep the raw replicate values (memory then grows with the replicates).
    fingerprint : dict, optional
        JSON-serializable description of the call, stored in the checkpoint
        and compared on resume: a difference is refused, naming the keys.
    target_rel_se : float, optional
        Stop each condition at the first block (in index order) after which
        ``SE(S2) / S2 <= target_rel_se``, or at ``condition.replicates``
        (reported in ``Output.target_met``).
    """
    spec = as_execution(execution, **options)
    chunk_size, progress, checkpoint = spec.chunk_size, spec.progress, spec.checkpoint
    executor, workers = spec.executor, spec.workers
    conditions = list(conditions)
    store = _Store(checkpoint, fingerprint, chunk_size) if checkpoint is not None else None
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
    bar = _progress_bar(states, progress)
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
                _tick(bar, s, i)
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
        _tick(bar, s, i)


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


# -- progress ---------------------------------------------------------------------------
#
# A bar counts estimated work, not chunks: a chunk of a condition weighs its
# replicates times the elements a replicate touches, read back from the block
# size (block_size() sizes a block to about BLOCK_ELEMENTS elements). Work a
# call will not do (conditions that meet their precision target early) is
# taken off the total as soon as it is known, so the bar ends at 100% and its
# ETA is not inflated by replicate caps that are never reached.

_PHASE: contextvars.ContextVar = contextvars.ContextVar("lossvar_phase", default=None)


class Phase:
    """One labelled progress bar over a phase of work: one or several Monte Carlo calls.

    Made by :func:`phase`. ``total`` is the phase's work in the caller's
    units; every :func:`run` inside the phase (directly, or through
    :func:`lossvar.loss_variance`, :func:`lossvar.sgd.run_sgd`, ...) counts
    one unit, or its share of the enclosing :meth:`part`, spread over its
    chunks by their estimated work. The bar shows a percentage and an ETA.

    Attributes
    ----------
    label : str
    n, total : float
        Work done and work planned, in the caller's units; ``total`` shrinks
        when a call skips work (a condition that stops at its precision
        target) or a part ends with calls unmade. Equal once the phase is done.
    """

    def __init__(self, label: str, total: float, enabled: bool, file=None):
        self.label, self.n, self.total = label, 0.0, float(total)
        self._part: list | None = None  # [weight left, calls left or None]
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=f"lossvar: {label}" if label else "lossvar",
                             file=file,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]")

    @contextlib.contextmanager
    def part(self, weight: float, calls: int | None = 1):
        """Within the block, ``weight`` units of the phase shared by the next ``calls``
        engine calls (equally; ``None``: a number not known beforehand, each call
        taking half of what is left and the rest counted when the block ends)."""
        self._part = [float(weight), calls]
        try:
            yield self
        finally:
            left, self._part = self._part[0], None
            if calls is None:
                self._advance(left, 0.0)
            else:
                self._advance(0.0, -left)

    def claim(self) -> float:
        """The weight of the next engine call of the phase."""
        if self._part is None:
            return 1.0
        left, calls = self._part
        take = left / 2 if calls is None else (left / calls if calls else 0.0)
        self._part = [left - take, None if calls is None else max(calls - 1, 0)]
        return take

    def _advance(self, dn: float, dtotal: float):
        self.n += dn
        self.total += dtotal
        if self._bar is not None:  # n passes the total by rounding at most: tqdm warns on that
            self._bar.total = max(self.total, self.n)
            self._bar.update(dn)

    def close(self, complete: bool):
        # sums of shares differ from the total by rounding only when all is done
        if complete and abs(self.total - self.n) <= 1e-9 * max(1.0, abs(self.total)):
            self._advance(self.total - self.n, 0.0)
        if self._bar is not None:
            self._bar.close()


@contextlib.contextmanager
def phase(label: str, total: float = 1, *, enabled: bool = True, file=None):
    """A :class:`Phase`: the Monte Carlo calls inside share one labelled progress bar.

    Parameters
    ----------
    label : str
        What the phase computes ("SGD runs, 10 schedules"); the bar reads
        ``lossvar: LABEL``.
    total : float
        The phase's work in the caller's units: the number of engine calls
        inside, or the sum of the weights of its :meth:`Phase.part` blocks.
    enabled : bool
        False: no bar, and the calls inside show none either.
    file : file object, optional
        Where the bar is written (default ``sys.stderr``).

    Progress never changes a result: it only observes finished chunks.

    Examples
    --------
    >>> import numpy as np
    >>> from lossvar import engine
    >>> uniform = engine.Condition((0,), 1000, 100, lambda rng, size: rng.random(size))
    >>> with engine.phase("three calls", total=3, enabled=False) as ph:
    ...     _ = engine.run([uniform], np.random.SeedSequence(1))
    ...     with ph.part(2):  # a call that weighs twice as much
    ...         _ = engine.run([uniform, uniform], np.random.SeedSequence(2))
    >>> ph.n == ph.total == 3
    True
    """
    ph = Phase(label, total, enabled, file)
    token = _PHASE.set(ph)
    complete = False
    try:
        yield ph
        complete = True
    finally:
        _PHASE.reset(token)
        ph.close(complete)


class _RunProgress:
    """What one :func:`run` reports to its phase: work done and planned, in the
    phase's units (the call's weight times the fraction of its initial plan)."""

    def __init__(self, states, ph: Phase, own: bool):
        self.ph, self.own, self.states = ph, own, states
        self.work = [[_chunk_work(s.condition, a, b) for a, b in s.chunks] for s in states]
        self.collected: list[set] = [set() for _ in states]
        self.left = [sum(w) for w in self.work]  # estimated work still to come, per condition
        self.stop_count = None  # replicates at which the last condition with a target stopped
        self.done, planned = 0.0, sum(self.left)
        weight = ph.claim()
        self.scale = weight / planned if planned else 0.0
        if not planned:
            ph._advance(weight, 0.0)

    def tick(self, s, i):
        before = sum(self.left)
        self.collected[s.index].add(i)
        self.done += self.work[s.index][i]
        update = [s]
        if s.done and s.target is not None and s.target_met:
            self.stop_count = s.moments.count
            update = [t for t in self.states if t.target is not None]
        for t in update:
            self.left[t.index] = self._left(t)
        dn = self.scale * self.work[s.index][i]
        self.ph._advance(dn, dn + self.scale * (sum(self.left) - before))

    def _left(self, s) -> float:
        if s.done:
            return 0.0
        todo = [i for i in range(s.n_chunks) if i not in self.collected[s.index]]
        if s.target is not None and self.stop_count is not None:
            # as many replicates as the last condition that met its target needed
            blocks = max(1, math.ceil(self.stop_count / s.condition.block_size))
            todo = [i for i in todo if s.chunks[i][0] < blocks]
        return float(sum(self.work[s.index][i] for i in todo))

    def close(self, complete: bool):
        if complete:  # whatever was planned and not done was skipped
            self.ph._advance(0.0, -self.scale * sum(self.left))
        if self.own:
            self.ph.close(complete)


def _chunk_work(condition: Condition, start: int, stop: int) -> float:
    """Estimated work of blocks ``start..stop-1``: replicates times elements per replicate."""
    per_replicate = (max(1.0, BLOCK_ELEMENTS / condition.block_size) if condition.cost is None
                     else float(condition.cost))
    return per_replicate * sum(condition.block_len(j) for j in range(start, stop))


def _tick(bar, state, chunk):
    if bar is not None:
        bar.tick(state, chunk)


def _progress_bar(states, enabled: bool):
    """The call's progress: to the enclosing phase, else (if ``enabled``) its own bar."""
    ph = _PHASE.get()
    if ph is None and not enabled:
        return None
    own = ph is None
    return _RunProgress(states, Phase("", 1, True) if own else ph, own)


class _Store:
    """A checkpoint folder: ``meta.json`` plus one checksummed file per chunk."""

    def __init__(self, folder, fingerprint, chunk_size):
        from ._build_revision import version as __version__

        self.folder = Path(folder)
        self.meta = dict(fingerprint or {}, chunk_size=chunk_size, lossvar=__version__)
        self.meta = json.loads(json.dumps(self.meta, sort_keys=True, default=str))
        self.folder.mkdir(parents=True, exist_ok=True)
        meta_path = self.folder / "meta.json"
        if meta_path.exists():
            try:
                old = json.loads(meta_path.read_text())
            except (OSError, ValueError) as exc:
                raise CheckpointMismatch(f"`checkpoint`: {meta_path} is unreadable ({exc}); "
                                         "remove the folder to start afresh") from None
            differ = sorted(k for k in set(old) | set(self.meta) if old.get(k) != self.meta.get(k))
            if differ:
                detail = "; ".join(f"{k}: checkpoint has {old.get(k)!r}, this call "
                                   f"{self.meta.get(k)!r}" for k in differ)
                raise CheckpointMismatch(f"`checkpoint` {self.folder} was written with other "
                                         f"parameters ({detail}); use another folder or remove it")
        else:
            _atomic_write(meta_path, json.dumps(self.meta, sort_keys=True, indent=1).encode())

    def _path(self, condition, chunk):
        key = "_".join(str(k) for k in condition.key)
        return self.folder / f"chunk-{key}-{chunk[0]}-{chunk[1]}.npz"

    def save(self, condition, chunk, result):
        moments, values = result
        buf = io.BytesIO()
        arrays = {}
        if moments is not None:
            arrays["moments"] = moments
        if isinstance(values, dict):
            arrays.update({f"values.{k}": a for k, a in values.items()})
        elif values is not None:
            arrays["values"] = values
        np.savez(buf, **arrays)
        payload = buf.getvalue()
        _atomic_write(self._path(condition, chunk),
                      hashlib.sha256(payload).hexdigest().encode() + payload)

    def load(self, condition, chunk, keep):
        path = self._path(condition, chunk)
        if not path.exists():
            return None
        raw = path.read_bytes()
        digest, payload = raw[:64], raw[64:]
        try:
            ok = hashlib.sha256(payload).hexdigest().encode() == digest
            if ok:
                with np.load(io.BytesIO(payload), allow_pickle=False) as z:
                    moments = z["moments"] if "moments" in z else None
                    values = z["values"] if "values" in z else None
                    named = {k[7:]: z[k] for k in z.files if k.startswith("values.")}
                    values = named or values
                needs_values = condition.reduce == "stack" or keep
                ok = (values is not None) or not needs_values
        except (ValueError, OSError, KeyError):
            ok = False
        if not ok:
            warnings.warn(f"checkpoint chunk {path.name} is corrupted or incomplete; recomputing it",
                          RuntimeWarning, stacklevel=3)
            return None
        return moments, values


def _atomic_write(path: Path, data: bytes):
    """Write via a temporary file, fsync, and rename: a reader sees all or nothing."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
