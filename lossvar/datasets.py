"""Real data sets: scikit-learn's bundled ones, standardized, with their natural model.

Needs scikit-learn (``pip install 'lossvar[datasets]'``); no network access:
only the data sets shipped inside scikit-learn are offered.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from lossvar._validate import as_choice, as_int
from lossvar.data import Dataset
from lossvar.problems import MLP, LinearRegression, LogisticRegression, SoftmaxRegression

__all__ = ["NAMES", "REFERENCE_L2", "load", "network_for", "problem_for", "reference_params"]

NAMES = ("breast_cancer", "diabetes", "digits", "iris", "wine")

#: Ridge strength of the natural models: small, but enough for the minimizer
#: to exist (breast_cancer is nearly separable) and to be unique.
REFERENCE_L2 = 1e-2

_REGRESSION = ("diabetes",)

#: Reference points of recent (problem, data set) pairs: a network's costs seconds, and a
#: study asks for the same one several times.
_REFERENCES: OrderedDict = OrderedDict()
_REFERENCES_KEPT = 8


def _standardize(a: np.ndarray) -> np.ndarray:
    """Center each column and scale it to standard deviation 1 (ddof=0).

    Constant columns are centered to 0 and left there, not divided by 0.
    """
    a = a - a.mean(axis=0)
    sd = a.std(axis=0)
    return np.divide(a, sd, out=np.zeros_like(a), where=sd > 0)


def load(name: str) -> Dataset:
    """Load one of scikit-learn's bundled data sets as a standardized :class:`Dataset`.

    Every feature column is centered and scaled to standard deviation 1
    (population sd, ddof=0); constant columns (16 pixels of ``digits``
    never change) are left at 0 rather than divided by 0. No intercept
    column is added.

    Targets: for the regression set (``diabetes``) y is also centered and
    scaled to standard deviation 1, so that losses are O(1); for the
    classification sets y holds integer labels 0..K-1.

    ============= ============== ===== ==== ===
    name          task           n     d    K
    ============= ============== ===== ==== ===
    breast_cancer classification 569   30   2
    diabetes      regression     442   10   -
    digits        classification 1797  64   10
    iris          classification 150   4    3
    wine          classification 178   13   3
    ============= ============== ===== ==== ===

    Parameters
    ----------
    name : {"breast_cancer", "diabetes", "digits", "iris", "wine"}

    Returns
    -------
    Dataset
        With ``name``, ``task`` and (for classification) ``n_classes`` set.
    """
    name = as_choice(name, "name", NAMES)
    try:
        import sklearn.datasets
    except ImportError as exc:
        raise ImportError(
            "lossvar.datasets needs scikit-learn: pip install 'lossvar[datasets]'"
        ) from exc
    X, y = getattr(sklearn.datasets, f"load_{name}")(return_X_y=True)
    X = _standardize(np.asarray(X, dtype=np.float64))
    if name in _REGRESSION:
        y = _standardize(np.asarray(y, dtype=np.float64)[:, None])[:, 0]
        return Dataset(X, y, name=name, task="regression")
    y = np.asarray(y, dtype=np.int64)
    return Dataset(X, y, name=name, task="classification", n_classes=int(y.max()) + 1)


def problem_for(dataset: Dataset):
    """The natural model of a data set, with the ridge ``REFERENCE_L2 = 1e-2``.

    :class:`~lossvar.problems.LinearRegression` for regression,
    :class:`~lossvar.problems.LogisticRegression` for 2 classes and
    :class:`~lossvar.problems.SoftmaxRegression` for K > 2 classes.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"`dataset` must be a lossvar Dataset; got {type(dataset).__name__}")
    if dataset.task == "regression":
        return LinearRegression(l2=REFERENCE_L2)
    if dataset.task == "classification" and dataset.n_classes is not None:  # always set then
        if dataset.n_classes == 2:
            return LogisticRegression(l2=REFERENCE_L2)
        return SoftmaxRegression(dataset.n_classes, l2=REFERENCE_L2)
    raise ValueError(
        "`dataset` must have task 'regression' or 'classification' to have a natural model; "
        f"got task={dataset.task!r}"
    )


def network_for(dataset: Dataset, hidden=(32,), activation: str = "tanh") -> MLP:
    """A multi-layer perceptron for a data set, with the ridge ``REFERENCE_L2 = 1e-2``.

    ``MLP((d, *hidden, k), activation, loss, l2=REFERENCE_L2)`` with d the data
    set's features and, as :func:`problem_for` chooses the linear model, the
    softmax cross-entropy on k = K classes for classification (two classes
    included) or the squared loss on k = 1 output for regression. The default
    on ``digits`` is the 64-32-10 tanh network of the studies and of
    docs/guide/networks.md.

    Parameters
    ----------
    dataset : Dataset
    hidden : sequence of int, default (32,)
        Widths of the hidden layers, each at least 1; ``()`` gives the linear
        model as a network.
    activation : {"tanh", "relu", "softplus"}, default "tanh"
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"`dataset` must be a lossvar Dataset; got {type(dataset).__name__}")
    try:
        widths = tuple(hidden)
    except TypeError:
        raise TypeError(f"`hidden` must be a sequence of integers >= 1; got {hidden!r}") from None
    widths = tuple(as_int(h, "hidden", low=1) for h in widths)
    if dataset.task == "regression":
        return MLP((dataset.d, *widths, 1), activation, "squared", l2=REFERENCE_L2)
    if dataset.task == "classification" and dataset.n_classes is not None:
        return MLP((dataset.d, *widths, max(dataset.n_classes, 2)), activation, "cross_entropy",
                   l2=REFERENCE_L2)
    raise ValueError(
        "`dataset` must have task 'regression' or 'classification' to have a network; "
        f"got task={dataset.task!r}"
    )


def reference_params(dataset: Dataset, problem=None) -> np.ndarray:
    """The reference parameter vector: the minimizer of the mean loss on the full data.

    Computed by ``problem.minimize(dataset.X, dataset.y)`` (gradient norm
    below 1e-12), deterministic. For a network (:class:`lossvar.MLP`,
    whose loss is not convex) it is a local minimum: the one that full-batch
    L-BFGS reaches from the network's fixed default start, to gradient norm
    1e-10 (:meth:`lossvar.MLP.minimize`). The last few results are kept, by
    the problem (which must then be hashable, as the built-ins are) and
    :meth:`Dataset.fingerprint`, so that asking again costs nothing; a copy is
    returned each time.

    Parameters
    ----------
    dataset : Dataset
    problem : problem, optional
        Defaults to :func:`problem_for` ``(dataset)``.
    """
    if problem is None:
        problem = problem_for(dataset)
    try:
        key = (problem, dataset.fingerprint())
        hash(key)
    except (AttributeError, TypeError):
        return problem.minimize(dataset.X, dataset.y)
    if key not in _REFERENCES:
        _REFERENCES[key] = np.asarray(problem.minimize(dataset.X, dataset.y), dtype=np.float64)
        if len(_REFERENCES) > _REFERENCES_KEPT:
            _REFERENCES.popitem(last=False)
    _REFERENCES.move_to_end(key)
    return _REFERENCES[key].copy()
