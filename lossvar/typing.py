"""Type aliases for lossvar's public API (in the spirit of ``numpy.typing``).

They document what an argument may be; every entry point still validates and
normalizes its inputs at run time, with errors that name the parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from os import PathLike
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ArrayLike", "BatchSizes", "ComparableResult", "DataSource", "Executor", "FloatArray",
           "PathLikeStr", "Problem", "RNGLike", "Replicates", "Result", "Sampling", "ScheduleLike"]

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
    """What lossvar's engines need of a model: per-example losses and gradients.

    :func:`lossvar.run_sgd`, :func:`lossvar.variance_study`,
    :func:`lossvar.gradient_variance` and the other engines use a problem
    through these methods and nothing else: any class that has them (no
    base class to inherit) runs at the built-ins' speed, with their bits when
    it does their arithmetic. The built-ins (:class:`~lossvar.LinearRegression`,
    :class:`~lossvar.LogisticRegression`, :class:`~lossvar.SoftmaxRegression`,
    :class:`~lossvar.NoisyQuadratic`, :class:`~lossvar.MLP`) meet it; see
    docs/guide/problems.md.

    Shapes: ``w`` is ``(..., p)``, a stack of parameter vectors; ``X`` is
    ``(..., n, d)`` and ``y`` ``(..., n)`` or ``(n,)``; leading dimensions
    broadcast (``w`` (R, p) with ``X`` (R, B, d): replicate r on its own
    batch; with ``X`` (n, d): every replicate on the same data). With ``lead``
    the broadcast leading shape, ``loss`` returns ``lead + (n,)``, ``grad``
    ``lead + (n, p)``, ``mean_loss`` ``lead`` and ``mean_grad``
    ``lead + (p,)``, all float64. Row independence: the value for one
    parameter vector of a stack does not depend on the other rows (the same
    bits as that row alone), so engines may cut a stack into parts, and one
    diverged (NaN or inf) row leaves the others' values alone.

    Optional members, used where present: ``hvp(w, X, y, v)`` (the Hessian of
    the mean loss times ``v`` of shape (p,) or (m, p)) and ``hessian(w, X, y)``
    (p, p), for the one-step theory and B_noise; ``minimize(X, y)`` (the
    minimizer, for :func:`lossvar.run_sgd`'s distance ``dist2``; without it
    the distance is NaN); ``init(rng, size=None)`` (a random start);
    attributes ``name`` and ``l2`` (for tables).
    ``device_arrays(w, X, y)``: ``(w, X, y)`` as the arrays the problem
    computes in (e.g. torch tensors on a device; ``None`` stays ``None``);
    :func:`lossvar.run_sgd` then keeps parameters, optimizer state, batches
    and records in those arrays and passes buffers of that kind as ``out=``
    (docs/guide/problems.md).
    """

    def n_params(self, d: int) -> int:
        """Length p of the parameter vector for data of ``d`` features."""
        ...

    def check_params(self, w: ArrayLike, X: ArrayLike) -> None:
        """Raise ValueError, naming the argument, unless ``w`` fits data shaped like ``X``."""
        ...

    def loss(self, w: ArrayLike, X: ArrayLike, y: ArrayLike) -> np.ndarray:
        """Per-example losses l_i(w), shape ``lead + (n,)``."""
        ...

    def grad(self, w: ArrayLike, X: ArrayLike, y: ArrayLike) -> np.ndarray:
        """Per-example gradients, shape ``lead + (n, p)``."""
        ...

    def mean_loss(self, w: ArrayLike, X: ArrayLike, y: ArrayLike) -> np.ndarray:
        """The mean of the per-example losses over the n rows, shape ``lead``.

        :func:`lossvar.run_sgd` computes the loss of a record by calling it on
        parts of the replicates' stack at once, from several threads when it
        runs the blocks in this process: it must be safe to call from several
        threads (numpy releases the GIL in its loops).
        """
        ...

    def mean_grad(self, w: ArrayLike, X: ArrayLike, y: ArrayLike, *,
                  out: np.ndarray | None = None) -> np.ndarray:
        """The gradient of the mean loss over the n rows, shape ``lead + (p,)``: the hot path.

        With ``out`` (a writeable C-contiguous float64 array of that shape)
        the gradient is written into it and ``out`` is returned, with the same
        bits as without. :func:`lossvar.run_sgd` calls it so, once per step,
        with float64 arrays of checked shapes: a problem may then skip its
        input checks and keep its intermediate arrays between calls (per
        thread and shape), and must not raise on a non-finite row of ``w``.
        """
        ...


#: A fixed :class:`~lossvar.Dataset`, or a population with ``sample(n, rng)``.
DataSource = Any


@runtime_checkable
class Result(Protocol):
    """What every result object of lossvar has (docs/guide/results.md).

    Every function of lossvar that returns a Monte Carlo estimate, a fit, a
    verdict or a report returns an object with these members, whose intervals
    are :class:`lossvar.ConfidenceInterval` fields (``low, high = ci``). The
    exact-theory values of :mod:`lossvar.theory` and :mod:`lossvar.moments`
    (``QuadraticMoments``, ``OneStep``, ``Asymptote``, ``PopulationMoments``) are
    values, not results, and do not have them.
    """

    @property
    def confidence(self) -> float | None:
        """The level the result's intervals were computed at; None where it has no interval."""
        ...

    def to_frame(self) -> pd.DataFrame:
        """Its tidy table, as a new DataFrame: a copy of ``table`` where the result has
        one, else one row of its scalar fields, each interval field ``x`` as the
        columns ``x_low`` and ``x_high``."""
        ...

    def summary(self) -> str:
        """A readable account of it; ``str(result)`` is this text."""
        ...


@runtime_checkable
class ComparableResult(Result, Protocol):
    """A result with exact theory to compare with: what :func:`lossvar.agreement` reads.

    ``comparison(exact)`` returns one row per compared quantity with the columns
    ``label``, ``estimate``, ``se`` and ``exact``, and where the result has them
    ``ci_low`` and ``ci_high`` (its own intervals, at ``attrs["confidence"]``),
    ``z`` and ``pvalue`` (from an exact reference law), ``dof`` (a Student t
    reference for ``z``) and ``reliable`` (False where an interval may
    under-cover). ``attrs["independent"]`` says whether the rows come from
    independent random streams. ``exact`` is None where the result holds its
    exact values itself; otherwise it names them (e.g. the
    :class:`lossvar.GradientNoiseResult` of the same data).
    """

    def comparison(self, exact: Any = None) -> pd.DataFrame:
        """The rows to compare with exact values (see the class)."""
        ...
