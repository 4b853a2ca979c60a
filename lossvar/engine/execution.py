"""How a Monte Carlo call runs: :class:`Execution`, the one run-options object."""

from __future__ import annotations

import os
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from .._validate import as_int

__all__ = ["Execution", "as_execution", "resolve_workers"]


def resolve_workers(workers) -> int:
    """``workers`` as a count: a positive int, or -1 for all cores."""
    workers = as_int(workers, "workers", low=-1)
    if workers == 0:
        raise ValueError("`workers` must be a positive integer or -1 (all cores); got 0")
    return (os.cpu_count() or 1) if workers == -1 else workers


@dataclass(frozen=True)
class Execution:
    """How a Monte Carlo call runs; never what it computes.

    One object, validated when it is made, that every Monte Carlo entry point
    takes as ``execution=`` (:func:`lossvar.loss_variance`,
    :func:`lossvar.variance_study`, :func:`lossvar.run_sgd`,
    :func:`lossvar.gradient_variance`, and :func:`lossvar.engine.simulate`
    below them); ``None`` there means ``Execution()``, one worker in the
    calling process. Results are bit-identical for every choice: streams are
    keyed by unit of work (condition and block), never by worker or chunk,
    and blocks are merged in index order, so, as with scipy's
    ``MonteCarloMethod``, the options say how, not what.

    Attributes
    ----------
    workers : int
        1 (serial, in this process), a number of local processes, or -1 for
        all cores. Not together with ``executor``. A serial call may use this
        process's other cores itself (:attr:`in_process`): ``loss_variance``
        sums the exact moments of the losses in a helper thread while it draws
        the batches, ``run_sgd`` computes its replicates in threads.
    executor : concurrent.futures.Executor, optional
        Where chunks run instead, e.g. ``dask.distributed.Client(...).get_executor()``
        (the data of the call is then scattered to every worker once).
    chunk_size : int, optional
        Replicates per unit of work, rounded up to whole blocks (default 64
        blocks): it bounds memory and sets the scheduling, never a result.
    progress : bool
        A progress bar: the call's own, labelled "lossvar", or, inside
        :func:`lossvar.engine.phase`, the phase's (which every call inside
        reports to, whatever its ``progress``). Its unit is estimated work, not
        chunks.
    checkpoint : path, optional
        Folder for finished chunks, each written atomically with a checksum.
        A rerun of the same call computes only the missing chunks and gives
        the result of an uninterrupted run; a folder written by a call with
        other parameters is refused (:class:`lossvar.engine.CheckpointMismatch`,
        naming them), and a corrupted chunk is recomputed.

    Examples
    --------
    >>> import numpy as np, lossvar
    >>> losses = np.random.default_rng(0).exponential(size=1000)
    >>> how = lossvar.Execution(workers=2, chunk_size=500)
    >>> a = lossvar.loss_variance(losses, [1, 10], replicates=2000, rng=1, execution=how)
    >>> b = lossvar.loss_variance(losses, [1, 10], replicates=2000, rng=1)
    >>> a.table.equals(b.table)
    True
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


def as_execution(execution: Execution | None = None) -> Execution:
    """The :class:`Execution` an entry point runs with: ``execution`` itself, or
    ``Execution()`` for None; anything else is refused, naming ``execution``."""
    if execution is None:
        return _DEFAULTS  # frozen: the defaults can be shared
    if not isinstance(execution, Execution):
        raise TypeError(f"`execution` must be a lossvar.Execution or None; got {execution!r}")
    return execution
