"""Replicates in blocks: the unit of randomness, chunks of work, and their merge.

A Monte Carlo *condition* (one batch size, say) asks for ``R`` replicate values.
They are produced in *blocks* of a fixed number of replicates; block ``j`` of
the condition with key ``k`` draws from its own stream
``stream(root, *k, j)``, and is summarized by its :class:`~lossvar.moments.Moments`.
Blocks are grouped into *chunks* only to schedule work (to bound memory, or
to hand work to a worker); the summaries are merged in block order whatever
the chunking, so the same root seed gives bit-identical results for every
chunk size, worker count, executor and completion order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._validate import stream
from .moments import Moments


@dataclass(frozen=True)
class Condition:
    """One Monte Carlo condition.

    Attributes
    ----------
    key : tuple of int
        The condition's stream key under the root seed (e.g. ``(B,)``).
    replicates : int
        How many replicate values to produce.
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
        array whose first axis is the replicate, and the blocks' arrays are
        concatenated in block order (for per-replicate records such as SGD
        trajectories).
    """

    key: tuple
    replicates: int
    block_size: int
    simulate: Callable
    label: str = ""
    reduce: str = "moments"

    @property
    def n_blocks(self) -> int:
        return math.ceil(self.replicates / self.block_size)

    def block_len(self, j: int) -> int:
        return min(self.block_size, self.replicates - j * self.block_size)


@dataclass(frozen=True)
class Output:
    """Merged moments of a condition (None for ``reduce="stack"``) and, when
    kept or stacked, its raw replicate values in replicate order."""

    moments: Moments | None
    values: np.ndarray | None


class ChunkError(RuntimeError):
    """A chunk of a condition failed; the condition's result is not returned."""


def _run_blocks(condition: Condition, root: np.random.SeedSequence, blocks: range, keep: bool):
    out = []
    for j in blocks:
        values = np.asarray(condition.simulate(stream(root, *condition.key, j),
                                               condition.block_len(j)))
        if condition.reduce == "stack":
            out.append((None, values))
        else:
            out.append((Moments.of(values), values if keep else None))
    return out


def run(conditions, root: np.random.SeedSequence, *, chunk_size: int | None = None,
        keep_values: bool = False, progress: bool = False) -> list[Output]:
    """Run every condition's blocks and merge them in block order.

    Parameters
    ----------
    conditions : sequence of Condition
    root : SeedSequence
        The call's root (see :func:`lossvar._validate.as_seed_sequence`).
    chunk_size : int, optional
        Replicates per chunk of work, rounded up to whole blocks (default: one
        block per chunk). Affects memory and scheduling only, never the result.
    keep_values : bool
        Keep the raw replicate values (memory grows with the replicates).
    progress : bool
        Show a tqdm bar over chunks.
    """
    tasks = []
    for c in conditions:
        per_chunk = 1 if chunk_size is None else max(1, math.ceil(chunk_size / c.block_size))
        for start in range(0, c.n_blocks, per_chunk):
            tasks.append((c, range(start, min(start + per_chunk, c.n_blocks))))
    bar = _progress_bar(len(tasks), progress)
    parts: dict[int, list] = {id(c): [] for c in conditions}
    try:
        for i, (c, blocks) in enumerate(tasks):
            try:
                parts[id(c)].extend(_run_blocks(c, root, blocks, keep_values))
            except Exception as exc:
                raise ChunkError(
                    f"condition {c.label or c.key} failed in chunk {i} "
                    f"(blocks {blocks.start}..{blocks.stop - 1}): {exc!r}"
                ) from exc
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    outputs = []
    for c in conditions:
        blocks = parts[id(c)]
        if c.reduce == "stack":
            outputs.append(Output(None, np.concatenate([v for _, v in blocks])))
            continue
        moments = Moments.merge_all(m for m, _ in blocks)
        values = np.concatenate([v for _, v in blocks]) if keep_values else None
        outputs.append(Output(moments, values))
    return outputs


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="chunk", desc="lossvar")
