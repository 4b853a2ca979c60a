"""The arguments of :func:`lossvar.run_sgd`, checked and normalized once per call."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import array_api_compat
import numpy as np

from .._validate import as_choice, as_finite_array, as_int

#: Replicates per block: the unit of randomness (part of the definition of the
#: random numbers; changing it changes the bits).
BLOCK_SIZE = 256

DATASET_SAMPLINGS = ("reshuffle", "with_replacement", "full")
POPULATION_SAMPLINGS = ("fresh",)

#: The methods of lossvar.typing.Problem that run_sgd calls.
_PROBLEM_METHODS = ("n_params", "check_params", "mean_loss", "mean_grad")

#: Records per decade of steps in the default log-spaced grid.
_PER_DECADE = 10


@dataclass(frozen=True)
class Spec:
    """The validated, normalized arguments of one call (shared by all blocks)."""

    problem: object
    X: np.ndarray | None
    y: np.ndarray | None
    population: object
    optimizer: object
    steps: int
    batch_size: int
    replicates: int
    sampling: str
    w0: np.ndarray
    w_star: np.ndarray
    record: np.ndarray
    average: bool
    param_rows: np.ndarray
    fields: tuple
    loss_known: bool
    dist_known: bool
    info: dict
    #: Whether the problem has ``device_arrays``: the blocks then keep their work on its device.
    device: bool = False


def check_inputs(problem, source, optimizer, steps, batch_size, replicates, sampling, w0,
                  record, average, record_params=None) -> Spec:
    missing = [m for m in _PROBLEM_METHODS if not callable(getattr(problem, m, None))]
    if missing:
        raise TypeError(f"`problem` must meet lossvar.typing.Problem; got {problem!r}, "
                        f"without {', '.join(missing)}")
    if not (callable(getattr(optimizer, "init", None))
            and callable(getattr(optimizer, "update", None))):
        raise TypeError(f"`optimizer` must be a lossvar.optim.GradientTransformation "
                        f"(init, update); got {optimizer!r}")
    steps = as_int(steps, "steps", low=1)
    replicates = as_int(replicates, "replicates", low=1)
    device = callable(getattr(problem, "device_arrays", None))
    is_population = hasattr(source, "sample")
    if not is_population and not hasattr(source, "X"):
        raise TypeError(f"`source` must be a Dataset or a population (with sample(n, rng)); "
                        f"got {source!r}")
    if is_population:
        sampling = as_choice("fresh" if sampling is None else sampling, "sampling",
                             POPULATION_SAMPLINGS)
        X = y = None
        d = as_int(source.n_features, "source.n_features", low=1)
        n = None
    else:
        sampling = as_choice("reshuffle" if sampling is None else sampling, "sampling",
                             DATASET_SAMPLINGS)
        X, y = _data(problem, source, device)
        n, d = X.shape
    batch_size = _batch_size(batch_size, sampling, n)
    p = problem.n_params(d)
    problem.check_params(np.zeros(p), np.empty((0, d)))
    if device and _foreign(w0):
        w0 = _host_start(problem, w0)
    w0 = _start(w0, p, replicates)
    record = _record_steps(record, steps)
    average = bool(average)
    param_rows = _param_rows(record_params, replicates)
    loss_known = dist_known = True
    if is_population:
        w_star = np.array(source.w_star, dtype=np.float64)
        loss_known = source.problem == problem
    elif callable(getattr(problem, "minimize", None)):
        w_star = _minimizer(problem, source, X, y)
    else:
        w_star, dist_known = np.full(p, np.nan), False
    if w_star.shape != (p,):
        raise ValueError(f"the minimizer has shape {w_star.shape}, but `problem` has p={p} "
                         "parameters for this source")
    fields = ("loss", "dist2") + (("avg_loss", "avg_dist2") if average else ())
    info = dict(problem=repr(problem), source=repr(source),
                optimizer=getattr(optimizer, "name", repr(optimizer)),
                hyperparams=dict(getattr(optimizer, "hyperparams", {})), sampling=sampling,
                batch_size=batch_size, steps=steps, replicates=replicates,
                n=n, average=average, block_size=BLOCK_SIZE)
    return Spec(problem, X, y, source if is_population else None, optimizer, steps,
                 batch_size, replicates, sampling, w0, w_star, record, average, param_rows,
                 fields, loss_known, dist_known, info, device)


def to_host(a) -> np.ndarray:
    """An array of any array-API namespace as a numpy array (a copy from its device)."""
    if isinstance(a, np.ndarray):
        return a
    return np.asarray(array_api_compat.to_device(a, "cpu"))


def _foreign(a) -> bool:
    """An array of another namespace than numpy's (a torch tensor, say)."""
    return array_api_compat.is_array_api_obj(a) and not isinstance(a, (np.ndarray, np.generic))


def _data(problem, source, device):
    """The data set's (X, y): numpy arrays (X float64; y float64 labels, once, not once per
    step inside the problem, except for a problem with ``device_arrays``, which converts
    the targets itself); for such a problem, arrays of another namespace as they are, once
    the problem has accepted them (on its device, in its dtype)."""
    X, y = source.X, source.y
    if device and (_foreign(X) or _foreign(y)):
        try:
            problem.device_arrays(None, X, y)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"`source` must hold its data where the problem computes: "
                            f"problem.device_arrays refused source.X or source.y: {exc}") from exc
        return X, y
    X = np.ascontiguousarray(X, dtype=np.float64)
    return X, (np.asarray(y) if device else np.asarray(y, dtype=np.float64))


def _host_start(problem, w0) -> np.ndarray:
    """``w0`` of the problem's own kind (a tensor), checked by it, as float64 on the host."""
    try:
        wt = problem.device_arrays(w0, None, None)[0]
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"`w0` must be on the problem's device in its dtype (or a numpy array): "
                        f"problem.device_arrays refused it: {exc}") from exc
    return to_host(wt).astype(np.float64)


def _param_rows(record_params, replicates) -> np.ndarray:
    """The replicates whose parameters are kept: sorted unique indices in [0, R)."""
    if record_params is None:
        return np.empty(0, np.int64)
    if isinstance(record_params, str):
        as_choice(record_params, "record_params", ("all",))
        return np.arange(replicates, dtype=np.int64)
    values = np.asarray(record_params)
    if values.ndim != 1 or not (values.size == 0 or np.issubdtype(values.dtype, np.integer)):
        raise ValueError(f"`record_params` must be 'all', None or a sequence of replicate "
                         f"indices in [0, replicates={replicates}); got {record_params!r}")
    bad = (values < 0) | (values >= replicates)
    if bad.any():
        raise ValueError(f"`record_params` must hold replicate indices in [0, "
                         f"replicates={replicates}); got {int(values[bad][0])}")
    return np.unique(values.astype(np.int64))


#: Minimizers of recent (problem, data set) pairs: Newton on the full data costs
#: more than a short ensemble, and studies run many ensembles on one data set.
_MINIMIZERS: OrderedDict = OrderedDict()
_MINIMIZERS_KEPT = 8


def _minimizer(problem, dataset, X, y) -> np.ndarray:
    """``problem.minimize(X, y)``, cached by the problem and the data's fingerprint."""
    try:
        key = (problem, dataset.fingerprint())
        hash(key)
    except (AttributeError, TypeError):
        return np.asarray(problem.minimize(X, y), dtype=np.float64)
    if key not in _MINIMIZERS:
        _MINIMIZERS[key] = np.asarray(problem.minimize(X, y), dtype=np.float64)
        if len(_MINIMIZERS) > _MINIMIZERS_KEPT:
            _MINIMIZERS.popitem(last=False)
    _MINIMIZERS.move_to_end(key)
    return _MINIMIZERS[key].copy()


def _batch_size(batch_size, sampling, n):
    if sampling == "full":
        if batch_size is None:
            return n
        if isinstance(batch_size, str) and batch_size == "full":
            return n
        b = as_int(batch_size, "batch_size", low=n, high=n)
        return b
    if batch_size is None:
        raise TypeError(f"`batch_size` must be given (an integer >= 1) with sampling={sampling!r}")
    if sampling == "reshuffle":
        b = as_int(batch_size, "batch_size", low=1)
        if b > n:
            raise ValueError(f"`batch_size` must be an integer in [1, N={n}] with "
                             f"sampling='reshuffle' (each batch is cut from one permutation of "
                             f"the N examples); got {b}")
        return b
    return as_int(batch_size, "batch_size", low=1)


def _start(w0, p, replicates):
    if w0 is None:
        return np.zeros(p)
    w0 = as_finite_array(w0, "w0")
    if w0.shape not in ((p,), (replicates, p)):
        raise ValueError(f"`w0` must have shape (p,)=({p},) or (R, p)=({replicates}, {p}); "
                         f"got an array of shape {w0.shape}")
    return w0


def _record_steps(record, steps):
    if record is None:
        num = int(np.ceil(_PER_DECADE * np.log10(steps))) + 1 if steps > 1 else 1
        grid = np.round(np.logspace(0, np.log10(steps), num)).astype(np.int64)
        return np.unique(np.concatenate([[0], grid, [steps]]))
    values = np.asarray(record)
    if values.ndim != 1 or values.size == 0 or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"`record` must be a non-empty sequence of integer step counts in "
                         f"[0, steps={steps}]; got {record!r}")
    bad = (values < 0) | (values > steps)
    if bad.any():
        raise ValueError(f"`record` must hold step counts in [0, steps={steps}]; "
                         f"got {int(values[bad][0])}")
    return np.unique(values.astype(np.int64))
