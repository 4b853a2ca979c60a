"""Batch index draws: with replacement, without replacement, reshuffled epochs.

Every function returns a ``(size, B)`` array of indices into ``range(N)``,
one independent batch per row, vectorized over rows: there is no Python loop
over replicates and no per-replicate ``rng.choice`` call.

Indices are drawn and sorted as int32 when ``N < 2**31`` (half the memory
traffic of int64, and numpy's integer sort is faster on it), and returned so
unless written into scratch (below); the dtype never changes the set drawn.

``scratch``: the draws may be written into reusable buffers instead of new
arrays (``scratch(name, shape, dtype) -> array``, e.g.
:func:`lossvar.scratch.scratch`). The indices then come back as ``np.intp``,
ready for ``np.take`` or fancy indexing: those convert indices of any other
type into a new intp array first, 8 bytes per index at every call (2 MiB for a
block of 2**18 indices), and under a low mmap threshold (dask's workers) that
array is a fresh mmap, zero-filled page by page, at every block. Without
replacement the rows are still drawn and sorted as int32 and only then
widened, once, into the intp buffer; with replacement they are drawn as int32
pieces of 64 KiB, each widened as it is copied into the buffer. The numbers
are the same bits either way: ``Generator.integers`` of int32 or int64 draws
each value from the bit generator's own stream (32 bits a value while the
range fits), so filling a buffer piece by piece, in either type, reproduces
one call for the whole array; ``Generator.random`` likewise, for the random
keys.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._validate import as_choice

SCHEMES = ("without_replacement", "with_replacement")

#: Rejection of repeats is used while ``B <= N / _KEYS_RATIO``: then each
#: redraw repeats an earlier index with probability below 1/8, so the rounds
#: of redraws die out geometrically. Closer to ``N``, random keys cost
#: ``size * N <= _KEYS_RATIO * size * B``, a small multiple of the draw itself.
_KEYS_RATIO = 8

#: Values per ``rng.integers`` call when filling a buffer: 64 KiB pieces, below
#: glibc's smallest mmap threshold, so the pieces come from the heap.
_PIECE_BYTES = 1 << 16


def index_dtype(n: int):
    """The integer dtype of indices into ``n`` examples: int32 while it fits, else int64."""
    return np.int32 if n < 2**31 else np.int64


def _fresh(name, shape, dtype):
    return np.empty(shape, dtype)


def _fill_integers(rng, n, out):
    """``out[...] = rng.integers(0, n, out.shape, out.dtype)``, in small pieces (same bits).

    Each piece is drawn as :func:`index_dtype` (int32 while ``n`` fits: twice the
    values per 64 KiB piece, so half the calls) and widened as it is copied.
    """
    flat = out.reshape(-1)
    dtype = np.dtype(index_dtype(n))
    piece = _PIECE_BYTES // dtype.itemsize
    for a in range(0, flat.size, piece):
        flat[a:a + piece] = rng.integers(0, n, min(piece, flat.size - a), dtype=dtype)
    return out


def _widened(idx, scratch):
    """``idx`` as intp, in the scratch buffer ``"indices"`` (no new array)."""
    if idx.dtype == np.intp:
        return idx
    out = scratch("indices", idx.shape, np.intp)
    np.copyto(out, idx)
    return out


def with_replacement(rng: np.random.Generator, n: int, batch_size: int, size: int, *,
                     scratch=None) -> np.ndarray:
    """``size`` batches of ``batch_size`` independent uniform draws from ``range(n)``
    (intp when written into ``scratch``, else :func:`index_dtype`)."""
    if scratch is None:
        return rng.integers(0, n, (size, batch_size), dtype=index_dtype(n))
    return _fill_integers(rng, n, scratch("indices", (size, batch_size), np.intp))


def without_replacement(rng: np.random.Generator, n: int, batch_size: int, size: int, *,
                        scratch=None) -> np.ndarray:
    """``size`` independent simple random samples of ``batch_size`` distinct indices
    (intp when written into ``scratch``, else :func:`index_dtype`).

    Each row is a uniformly random ``batch_size``-subset of ``range(n)``
    (rows are sorted, which does not matter for a batch mean and makes the
    gather that follows cache friendly). Two vectorized algorithms, chosen by
    ``(n, batch_size)`` alone so that the stream of numbers is a function of the
    seed and the problem, never of chunking:

    - rejection of repeats, when ``8 B <= N``: draw every row with replacement,
      sort each row, and redraw only the positions that repeat an earlier
      index, until no row has a repeat (about ``B^2 / (2N)`` redraws a row in
      the first round, each failing again with probability below ``B / N``).
      The procedure treats all labels alike, so the final set is
      exchangeable and hence a uniform ``B``-subset.
    - random keys otherwise (``N`` not much larger than ``B``): the ``B``
      smallest of ``N`` i.i.d. uniform keys per row (``argpartition``), which
      costs ``size * N`` but no loop.
    """
    dtype = index_dtype(n)
    if batch_size == 1:
        return with_replacement(rng, n, 1, size, scratch=scratch)
    if batch_size == n:
        every = np.broadcast_to(np.arange(n, dtype=dtype), (size, n))
        return every if scratch is None else _widened(every, scratch)
    if _KEYS_RATIO * batch_size <= n:
        if scratch is None:
            return _rejection(rng, n, batch_size, size, dtype, _fresh)
        return _widened(_rejection(rng, n, batch_size, size, dtype, scratch), scratch)
    if scratch is not None:
        return _keys(rng, n, batch_size, size, scratch)
    keys = rng.random((size, n))
    idx = np.argpartition(keys, batch_size - 1, axis=1)[:, :batch_size]
    idx.sort(axis=1)
    return idx.astype(dtype, copy=False)


def _keys(rng, n, batch_size, size, scratch):
    """Random keys into scratch, a few rows at a time: the numbers and the result of
    one ``rng.random((size, n))`` and one ``argpartition`` over all rows (keys come
    from the stream in row-major order, and each row is partitioned on its own).
    A piece's keys stay in cache and ``argpartition``'s new output array is at
    most 64 KiB, below any mmap threshold. Rows longer than that go in one piece:
    a new array per row would then be mapped afresh row after row, while one
    large array at least gets huge pages."""
    out = scratch("indices", (size, batch_size), np.intp)
    rows = _PIECE_BYTES // (8 * n) or size
    keys = scratch("keys", (min(rows, size), n))
    for a in range(0, size, rows):
        part = keys[:min(rows, size - a)]
        rng.random(out=part)
        rows_out = out[a:a + part.shape[0]]
        rows_out[...] = np.argpartition(part, batch_size - 1, axis=1)[:, :batch_size]
        rows_out.sort(axis=1)
    return out


def _rejection(rng, n, batch_size, size, dtype, buffer):
    idx = _fill_integers(rng, n, buffer("idx", (size, batch_size), dtype))
    idx.sort(axis=1)
    # repeat[r, c]: position c of row r repeats position c - 1 (never c = 0).
    repeat = buffer("repeat", (size, batch_size), np.bool_)
    repeat[:, 0] = False
    np.equal(idx[:, 1:], idx[:, :-1], out=repeat[:, 1:])
    rows = np.flatnonzero(repeat.any(axis=1))
    while rows.size:
        k = rows.size
        sub = np.take(idx, rows, axis=0, out=buffer("sub", (k, batch_size), dtype), mode="clip")
        rep = repeat[:k]
        np.equal(sub[:, 1:], sub[:, :-1], out=rep[:, 1:])
        # Redrawn in row-major order of the repeated positions.
        sub[rep] = rng.integers(0, n, int(np.count_nonzero(rep)), dtype=dtype)
        sub.sort(axis=1)
        idx[rows] = sub
        np.equal(sub[:, 1:], sub[:, :-1], out=rep[:, 1:])
        rows = rows[rep.any(axis=1)]
    return idx


def draw(rng: np.random.Generator, n: int, batch_size: int, size: int, sampling: str, *,
         scratch=None) -> np.ndarray:
    """Dispatch on the sampling scheme name (one of :data:`SCHEMES`)."""
    sampling = as_choice(sampling, "sampling", SCHEMES)
    if sampling == "with_replacement":
        return with_replacement(rng, n, batch_size, size, scratch=scratch)
    return without_replacement(rng, n, batch_size, size, scratch=scratch)


def epoch_batches(rng: np.random.Generator, n: int, batch_size: int, size: int) -> np.ndarray:
    """One epoch of the lecture's reshuffling, for ``size`` replicates.

    Each replicate gets a new uniformly random permutation of ``range(n)``
    (``rng.permuted``, Fisher-Yates per row), cut in order into ``n // batch_size``
    batches; the last ``n % batch_size`` indices are dropped.

    Returns
    -------
    ndarray of int, shape (size, n // batch_size, batch_size)

    Marginally each batch is a sample without replacement (docs/theory.md,
    section 1); batches of one epoch are disjoint.
    """
    per_epoch = n // batch_size
    perm = np.tile(np.arange(n, dtype=index_dtype(n)), (size, 1))
    rng.permuted(perm, axis=1, out=perm)
    return perm[:, : per_epoch * batch_size].reshape(size, per_epoch, batch_size)


def as_list(batch_sizes) -> list:
    """``batch_sizes`` as a list: one size (an int or ``"full"``) or a sequence of them."""
    if isinstance(batch_sizes, (str, numbers.Integral)):
        return [batch_sizes]
    try:
        return list(batch_sizes)
    except TypeError:
        raise TypeError("`batch_sizes` must be a sequence of positive integers or 'full'; "
                        f"got {batch_sizes!r}") from None


def as_batch_sizes(batch_sizes, n, sampling) -> list[int]:
    """Validate batch sizes and normalize them to a sorted list of distinct ints.

    ``"full"`` stands for ``n``. Without replacement each must be in
    ``[1, n]``; with replacement or fresh data any positive integer. The one
    batch-size check of every entry point; errors name ``batch_sizes``.
    """
    items = as_list(batch_sizes)
    if not items:
        raise ValueError("`batch_sizes` must contain at least one batch size; got an empty sequence")
    high = n if sampling == "without_replacement" else None
    allowed = f"integers in [1, N={n}] or 'full'" if high else "positive integers or 'full'"
    sizes = []
    for b in items:
        if isinstance(b, str):
            if b != "full":
                raise ValueError(f"`batch_sizes` must be {allowed}; got {b!r}")
            b = n
        elif isinstance(b, (bool, np.bool_)) or not isinstance(b, numbers.Integral):
            raise TypeError(f"`batch_sizes` must be {allowed}; got {b!r}")
        b = int(b)
        if b < 1 or (high is not None and b > high):
            raise ValueError(f"`batch_sizes` must be {allowed}; got {b}")
        if b in sizes:
            raise ValueError(f"`batch_sizes` must be distinct; got {b} twice")
        sizes.append(b)
    return sorted(sizes)
