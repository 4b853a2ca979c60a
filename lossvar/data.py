"""Data: fixed data sets and populations that draw fresh examples.

A :class:`Dataset` is a finite, immutable sample (X, y): the regime where a
full batch has no batch noise. A population draws new i.i.d. examples on
every call of ``sample``: the regime where a batch of n fresh examples has
mean-loss variance ``loss_moments(w)[1] / n``, the Var(div)/n of the lecture
(docs/theory.md, section 1). Each population knows its natural problem, its
expected-risk minimizer ``w_star`` and the exact moments of the per-sample
loss, against which the Monte Carlo engine is tested.

This module imports :mod:`lossvar.problems`, never the reverse (the
quadratic's population is built here, ``GaussianNoisePopulation(q)``: data sits above problems).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import scipy.special

from lossvar.problems import LinearRegression, LogisticRegression, NoisyQuadratic

from ._validate import as_choice, as_finite_array, as_float, as_int
from .streams import generator

__all__ = [
    "Dataset",
    "GaussianLinearPopulation",
    "GaussianNoisePopulation",
    "LogisticPopulation",
    "Population",
]

TASKS = ("regression", "classification")


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr = np.array(arr, copy=True)
    arr.flags.writeable = False
    return arr


class Dataset:
    """A fixed finite data set of n examples with d features.

    Parameters
    ----------
    X : array_like, shape (n, d)
        Finite features, stored as read-only float64.
    y : array_like, shape (n,), optional
        Targets: float64 for regression, int64 class labels 0..K-1 for
        classification (integer arrays are kept integer). None (the noise
        rows of :class:`~lossvar.problems.NoisyQuadratic`) stores zeros.
    name : str, optional
        Label used in tables.
    task : {"regression", "classification"}, optional
    n_classes : int, optional
        Number of classes K >= 2 for classification; inferred as
        ``max(y) + 1`` when omitted.

    Attributes
    ----------
    X, y, n, d, name, task, n_classes
    """

    __slots__ = ("X", "y", "name", "task", "n_classes")
    X: np.ndarray
    y: np.ndarray
    name: str | None
    task: str | None
    n_classes: int | None

    def __init__(self, X, y=None, *, name: str | None = None, task: str | None = None,
                 n_classes: int | None = None):
        X = as_finite_array(X, "X", ndim=2)
        n = X.shape[0]
        if n < 1 or X.shape[1] < 1:
            raise ValueError(f"`X` must have at least one row and one column; got shape {X.shape}")
        if task is not None:
            task = as_choice(task, "task", TASKS)
        y = np.zeros(n) if y is None else np.asarray(y)
        if y.ndim != 1 or y.shape[0] != n:
            raise ValueError(
                f"`y` must be a 1-D array of length n={n}, one target per row of `X`; "
                f"got an array of shape {y.shape}"
            )
        if np.issubdtype(y.dtype, np.integer):
            y = y.astype(np.int64)
        else:
            y = as_finite_array(y, "y", ndim=1)
        if task == "classification":
            y, n_classes = _labels(y, n_classes)
        elif n_classes is not None:
            raise ValueError(
                f"`n_classes` is only meaningful with task='classification'; got task={task!r}"
            )
        for attr, value in (("X", _frozen(X)), ("y", _frozen(y)), ("name", name),
                            ("task", task), ("n_classes", n_classes)):
            object.__setattr__(self, attr, value)

    def __setattr__(self, attr, value):
        raise AttributeError(f"Dataset is immutable; cannot set {attr!r}")

    @property
    def n(self) -> int:
        """Number of examples."""
        return self.X.shape[0]

    @property
    def d(self) -> int:
        """Number of features."""
        return self.X.shape[1]

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        extra = "".join(
            f", {k}={v!r}" for k, v in (("name", self.name), ("task", self.task),
                                        ("n_classes", self.n_classes)) if v is not None
        )
        return f"Dataset(n={self.n}, d={self.d}{extra})"

    def fingerprint(self) -> str:
        """SHA-256 hex digest of the shapes and the float64 bytes of X and y.

        Equal data give equal fingerprints whatever the dtype of ``y``
        (labels are hashed as float64); used to key checkpoints.
        """
        h = hashlib.sha256()
        h.update(f"lossvar.Dataset X{self.X.shape} y{self.y.shape}".encode())
        h.update(np.ascontiguousarray(self.X, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(self.y, dtype=np.float64).tobytes())
        return h.hexdigest()


def _labels(y, n_classes):
    labels = y.astype(np.int64)
    if not np.array_equal(labels, y) or labels.min() < 0:
        raise ValueError("`y` must hold integer class labels 0..K-1 for task='classification'")
    if n_classes is None:
        n_classes = max(int(labels.max()) + 1, 2)
    n_classes = as_int(n_classes, "n_classes", low=2)
    if labels.max() >= n_classes:
        raise ValueError(
            f"`y` must hold class labels in 0..{n_classes - 1} for n_classes={n_classes}; "
            f"got {int(labels.max())}"
        )
    return labels, n_classes


class Population:
    """An infinite population of i.i.d. examples.

    Subclasses set ``problem`` (the natural model), ``w_star`` (the
    expected-risk minimizer) and ``n_features``, and implement ``_draw``
    and ``loss_moments``.
    """

    problem: Any = None
    w_star: np.ndarray
    n_features: int
    name = "population"

    def sample(self, n, rng=None) -> Dataset:
        """Draw a data set of ``n`` fresh i.i.d. examples.

        Parameters
        ----------
        n : int
            Number of examples, n >= 1.
        rng : int, SeedSequence, Generator or None
            Source of randomness, with lossvar's one meaning
            (:mod:`lossvar.streams`): an int or SeedSequence gives the same
            sample every time; a Generator gives a child of its SeedSequence,
            so successive calls give independent samples, reproducibly.
        """
        n = as_int(n, "n", low=1)
        return self._draw(n, generator(rng))

    def _draw(self, n, rng) -> Dataset:
        raise NotImplementedError

    def loss_moments(self, w):
        """(mean, variance) of the per-sample loss of ``problem`` at ``w``."""
        raise NotImplementedError

    def loss_kurtosis(self, w) -> float:
        """Kurtosis ``mu4 / sigma^4`` of the per-sample loss at ``w``; NaN where unknown."""
        return float("nan")

    def _params(self, w):
        w = as_finite_array(w, "w")
        self.problem.check_params(w, np.empty((0, self.n_features)))
        return w


class GaussianLinearPopulation(Population):
    r"""Gaussian linear model: x ~ N(0, I_d), y = x . w_true + eps, eps ~ N(0, sigma^2).

    Natural problem :class:`~lossvar.problems.LinearRegression` (no ridge),
    whose expected risk is minimized at ``w_star = w_true``. At ``w`` the
    residual :math:`r = x \cdot w - y \sim N(0, s^2)` with
    :math:`s^2 = \|w - w_{true}\|^2 + \sigma^2`, so the per-sample loss
    :math:`r^2/2` has exactly mean :math:`s^2/2` and variance :math:`s^4/2`
    (docs/theory.md, section 1).

    Parameters
    ----------
    w_true : array_like, shape (d,)
    noise_std : float, default 1.0
        :math:`\sigma \ge 0`.
    """

    name = "gaussian_linear"

    def __init__(self, w_true, noise_std: float = 1.0):
        self.w_star = _frozen(as_finite_array(w_true, "w_true", ndim=1))
        if self.w_star.size < 1:
            raise ValueError("`w_true` must have at least one entry; got an empty array")
        self.noise_std = as_float(noise_std, "noise_std", low=0.0)
        self.n_features = self.w_star.size
        self.problem = LinearRegression()

    def __repr__(self) -> str:
        w_true = self.w_star.tolist()
        return f"GaussianLinearPopulation(w_true={w_true}, noise_std={self.noise_std})"

    def _draw(self, n, rng):
        X = rng.standard_normal((n, self.n_features))
        y = X @ self.w_star + self.noise_std * rng.standard_normal(n)
        return Dataset(X, y, name=self.name, task="regression")

    def loss_moments(self, w):
        """Exact (mean, variance) = (s^2 / 2, s^4 / 2); ``w`` may carry leading dimensions."""
        w = self._params(w)
        s2 = np.sum((w - self.w_star) ** 2, axis=-1) + self.noise_std**2
        return s2 / 2, s2**2 / 2

    def loss_kurtosis(self, w) -> float:
        """Exactly 15 at every ``w``: the loss is ``s^2/2`` times a chi-square with 1 dof,
        whose kurtosis is ``3 + 12/1`` (docs/theory.md, section 3)."""
        self._params(w)
        return 15.0


class LogisticPopulation(Population):
    r"""Well-specified logistic model: x ~ N(0, I_d), y ~ Bernoulli(expit(x . w_true)).

    Natural problem :class:`~lossvar.problems.LogisticRegression` (no
    ridge); ``w_star = w_true``. The loss moments have no closed form:
    the loss depends on x only through the jointly Gaussian pair
    :math:`(z, t) = (x \cdot w, x \cdot w_{true})`, and, given them,

    .. math::

        E[l \mid z, t] = \mathrm{sp}(z) - \sigma(t) z, \qquad
        E[l^2 \mid z, t] = (1 - \sigma(t))\, \mathrm{sp}(z)^2 + \sigma(t)\, \mathrm{sp}(-z)^2,

    with :math:`\mathrm{sp}(z) = \log(1 + e^z)`. :meth:`loss_moments`
    integrates these over (z, t) by 2-D Gauss-Hermite quadrature: a numerical
    result. The number of nodes grows with the norms so that the error stays
    near rounding (about 1e-12 relative) up to ||w||, ||w_true|| of about 10
    (2000 nodes per dimension, the cap); beyond, accuracy degrades slowly.

    Parameters
    ----------
    w_true : array_like, shape (d,)
    quad_nodes : int, optional
        Gauss-Hermite nodes per dimension; by default chosen from the norms
        of ``w`` and ``w_true``.
    """

    name = "logistic"

    MAX_NODES = 2000

    def __init__(self, w_true, *, quad_nodes: int | None = None):
        self.w_star = _frozen(as_finite_array(w_true, "w_true", ndim=1))
        if self.w_star.size < 1:
            raise ValueError("`w_true` must have at least one entry; got an empty array")
        self.n_features = self.w_star.size
        self.quad_nodes = None if quad_nodes is None else as_int(quad_nodes, "quad_nodes", low=2)
        self.problem = LogisticRegression()

    def __repr__(self) -> str:
        return f"LogisticPopulation(w_true={self.w_star.tolist()})"

    def _draw(self, n, rng):
        X = rng.standard_normal((n, self.n_features))
        y = (rng.random(n) < scipy.special.expit(X @ self.w_star)).astype(np.int64)
        return Dataset(X, y, name=self.name, task="classification", n_classes=2)

    def loss_moments(self, w):
        """(mean, variance) of the per-sample loss at ``w`` by Gauss-Hermite quadrature.

        ``w`` may carry leading dimensions (evaluated one vector at a time).
        """
        w = self._params(w)
        flat = w.reshape(-1, self.n_features)
        moments = np.array([self._moments(v) for v in flat]).reshape(w.shape[:-1] + (2,))
        return moments[..., 0], moments[..., 1]

    def _moments(self, w):
        # (z, t) = (a u1, b u1 + c u2) with u1, u2 independent standard normals.
        a = float(np.linalg.norm(w))
        b = float(w @ self.w_star) / a if a > 0 else 0.0
        c = np.sqrt(max(float(self.w_star @ self.w_star) - b**2, 0.0))
        u, wts = scipy.special.roots_hermitenorm(self._n_nodes(a))
        wts = wts / np.sqrt(2 * np.pi)
        z = a * u[:, None]
        p = scipy.special.expit(b * u[:, None] + c * u[None, :])
        sp_pos, sp_neg = np.logaddexp(0.0, z), np.logaddexp(0.0, -z)
        mean = wts @ (sp_pos - p * z) @ wts
        second = wts @ ((1 - p) * sp_pos**2 + p * sp_neg**2) @ wts
        return mean, second - mean**2

    def _n_nodes(self, a):
        """Nodes per dimension: sp and expit have poles at distance pi / norm from
        the real axis, and Gauss-Hermite with m nodes then converges about like
        exp(-2 (pi / norm) sqrt(2 m)); m = 20 norm^2 makes that ~1e-16."""
        if self.quad_nodes is not None:
            return self.quad_nodes
        norm = max(a, float(np.linalg.norm(self.w_star)), 1.0)
        return min(int(np.ceil(20 * norm**2)) + 40, self.MAX_NODES)


class GaussianNoisePopulation(Population):
    r"""Noise rows :math:`\xi \sim N(0, \sigma^2 I)` of a :class:`~lossvar.problems.NoisyQuadratic`.

    Built as ``GaussianNoisePopulation(q)`` for a :class:`~lossvar.NoisyQuadratic` ``q``. ``w_star`` is the
    quadratic's minimizer and :meth:`loss_moments` its exact moments, mean
    :math:`\tfrac12 u^\top H u` and variance :math:`\sigma^2 \|u\|^2`.
    The data sets have ``y`` all zeros (ignored by the problem).

    Parameters
    ----------
    problem : NoisyQuadratic
    """

    name = "quadratic"

    def __init__(self, problem: NoisyQuadratic):
        needed = ("noise_std", "dim", "minimizer", "loss_moments")
        if not all(hasattr(problem, name) for name in needed):
            raise TypeError(f"`problem` must be a NoisyQuadratic (with {', '.join(needed)}); "
                            f"got {problem!r}")
        self.problem = problem
        self.w_star = problem.minimizer()
        self.w_star.flags.writeable = False
        self.n_features = problem.dim

    def __repr__(self) -> str:
        return f"GaussianNoisePopulation({self.problem!r})"

    def _draw(self, n, rng):
        X = self.problem.noise_std * rng.standard_normal((n, self.n_features))
        return Dataset(X, None, name=self.name)

    def loss_moments(self, w):
        """Exact (mean, variance) of the quadratic's per-sample loss at ``w``."""
        return self.problem.loss_moments(w)
