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

:func:`simulate` computes a list of conditions, as the :class:`Execution`
says (workers or an executor, chunk size, progress, checkpoint). Chunks can
be checkpointed (each finished chunk written atomically, with a checksum,
:mod:`~lossvar.engine.checkpoint`) so that a killed call resumes where it
stopped, and a condition can run until the relative standard error of its
variance reaches a target, decided block by block in index order so that the
stopping point does not depend on the workers either. Calls report to a
progress bar, their own or a labelled :func:`phase` of several calls
(:mod:`~lossvar.engine.progress`).
"""

from .checkpoint import CheckpointMismatch
from .execution import Execution, as_execution, resolve_workers
from .executor import (
    BLOCK_ELEMENTS,
    DEFAULT_CHUNK_BLOCKS,
    MIN_REPLICATES_FOR_TARGET,
    ChunkError,
    Condition,
    Output,
    Shipment,
    block_size,
    simulate,
    simulate_chunk,
)
from .progress import Phase, phase

__all__ = ["BLOCK_ELEMENTS", "DEFAULT_CHUNK_BLOCKS", "MIN_REPLICATES_FOR_TARGET", "CheckpointMismatch",
           "ChunkError", "Condition", "Execution", "Output", "Phase", "Shipment", "as_execution",
           "block_size", "phase", "resolve_workers", "simulate", "simulate_chunk"]

