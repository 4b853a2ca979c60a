"""Type aliases for lossvar's public API (in the spirit of ``numpy.typing``).

They document what an argument may be; every entry point still validates and
normalizes its inputs at run time, with errors that name the parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from os import PathLike
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["ArrayLike", "BatchSizes", "DataSource", "Executor", "FloatArray", "PathLikeStr", "Problem",
           "RNGLike", "Replicates", "Sampling", "ScheduleLike"]

#: The ``rng`` argument (SPEC 7): see :mod:`lossvar.streams` for its one meaning.
RNGLike = int | np.random.SeedSequence | np.random.Generator | None
#: Batch sizes: positive integers, or ``"full"`` for the whole data set.
BatchSizes = int | Literal["full"] | Sequence[int | Literal["full"]]
#: A replicate count, or ``"auto"`` (planned from the exact kurtosis).
Replicates = int | Literal["auto"]
Sampling = Literal["with_replacement", "without_replacement"]
FloatArray = NDArray[np.float64]
PathLikeStr = str | PathLike[str]
#: A step size: a number or a schedule (a callable of the step k = 1, 2, ...).
ScheduleLike = float | Callable[[Any], Any]
#: Any ``concurrent.futures.Executor``, e.g. a dask client's ``get_executor()``.
Executor = Any


class Problem(Protocol):
    """What lossvar needs of a model: per-example losses and gradients."""

    def loss(self, w: ArrayLike, X: ArrayLike, y: ArrayLike) -> np.ndarray: ...

    def grad(self, w: ArrayLike, X: ArrayLike, y: ArrayLike) -> np.ndarray: ...

    def check_params(self, w: ArrayLike, X: ArrayLike) -> None: ...


#: A fixed :class:`~lossvar.Dataset`, or a population with ``sample(n, rng)``.
DataSource = Any
