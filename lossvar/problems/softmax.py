"""Softmax regression: multinomial cross-entropy of a linear predictor for K classes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.special

from lossvar._validate import as_float, as_int

from ._base import SmoothConvex, gradient_out

__all__ = ["SoftmaxRegression"]


@dataclass(frozen=True)
class SoftmaxRegression(SmoothConvex):
    r"""Multinomial cross-entropy (softmax regression) for K classes.

    The parameter vector ``w`` of length p = d K is read as a (d, K) matrix
    W in C order, ``W = w.reshape(d, K)``, so ``w[j * K + k]`` is the weight
    of feature j for class k. With logits :math:`z_i = W^\top x_i`,

    .. math::

        l_i(w) = \log \sum_k e^{z_{ik}} - z_{i y_i} + \tfrac{\lambda}{2}\|w\|^2,
        \qquad \nabla_W l_i = x_i (\mathrm{softmax}(z_i) - e_{y_i})^\top + \lambda W,

    computed with a stable log-sum-exp. Labels ``y`` are integers 0..K-1
    (floats with integral values are accepted).

    The model is over-parameterized: adding the same vector to every column
    of W leaves every loss unchanged, so with ``l2 = 0`` the minimizer is not
    unique; :meth:`minimize` started from zero returns the one whose columns
    sum to zero (the minimum-norm one).

    Parameters
    ----------
    n_classes : int
        Number of classes K >= 2.
    l2 : float, default 0.0
        Ridge strength :math:`\lambda \ge 0`.
    """

    n_classes: int
    l2: float = 0.0
    name = "softmax"

    def __post_init__(self):
        object.__setattr__(self, "n_classes", as_int(self.n_classes, "n_classes", low=2))
        object.__setattr__(self, "l2", as_float(self.l2, "l2", low=0.0))

    def n_params(self, d: int) -> int:
        """Length p = d K of the parameter vector for ``d`` features."""
        return as_int(d, "d", low=1) * self.n_classes

    def _targets(self, y, n):
        y = np.asarray(y)
        labels = y.astype(np.intp)
        if y.shape[-1:] != (n,):
            raise ValueError(
                f"`y` must have shape (..., n) with n={n}, one label per row of `X`; "
                f"got an array of shape {y.shape}"
            )
        bad = (labels != y) | (labels < 0) | (labels >= self.n_classes)
        if bad.any():
            raise ValueError(
                f"`y` must hold integer class labels in 0..{self.n_classes - 1}; "
                f"got {y[bad].flat[0].item()!r}"
            )
        return labels

    def _logits(self, w, X):
        W = w.reshape(w.shape[:-1] + (X.shape[-1], self.n_classes))
        return np.matmul(X, W)

    def _residuals(self, Z, y):
        """softmax(z_i) - e_{y_i}, the derivative of l_i in the logits."""
        m, E, s = _shifted_exp(Z)
        E /= s[..., None]
        E -= y[..., None] == np.arange(self.n_classes)
        return E

    def _nll(self, w, X, y):
        Z = self._logits(w, X)
        m, _, s = _shifted_exp(Z)
        idx = np.broadcast_to(y, Z.shape[:-1])[..., None]
        return m + np.log(s) - np.take_along_axis(Z, idx, axis=-1)[..., 0]

    def loss(self, w, X, y) -> np.ndarray:
        w, X, y = self._inputs(w, X, y)
        return self._nll(w, X, y) + self._penalty(w)[..., None]

    def mean_loss(self, w, X, y) -> np.ndarray:
        w, X, y = self._inputs(w, X, y)
        return np.mean(self._nll(w, X, y), axis=-1) + self._penalty(w)

    def grad(self, w, X, y) -> np.ndarray:
        w, X, y = self._inputs(w, X, y)
        E = self._residuals(self._logits(w, X), y)
        G = X[..., :, :, None] * E[..., :, None, :]
        return G.reshape(G.shape[:-2] + (-1,)) + self.l2 * w[..., None, :]

    def mean_grad(self, w, X, y, *, out=None) -> np.ndarray:
        """Gradient of the mean loss, shape lead + (p,): X^T (softmax(Z) - e_y) / n, plus
        l2 w when l2 > 0. ``out``: a writeable C-contiguous float64 array of that
        shape, written and returned (the same bits)."""
        w, X, y = self._inputs(w, X, y)
        E = self._residuals(self._logits(w, X), y)
        M = np.matmul(np.swapaxes(X, -1, -2), E)
        G = gradient_out(out, M.shape[:-2] + (w.shape[-1],))
        np.divide(M, X.shape[-2], out=G.reshape(M.shape))
        if self.l2:
            np.add(G, self.l2 * w, out=G)
        return G

    def _hessian(self, w, X, y):
        """Hessian of the mean loss, (1/n) sum_i x_i x_i^T kron (diag p_i - p_i p_i^T) + l2 I."""
        n, d = X.shape
        K = self.n_classes
        P = scipy.special.softmax(X @ w.reshape(d, K), axis=-1)
        M = (X[:, :, None] * P[:, None, :]).reshape(n, d * K)
        H = -(M.T @ M)
        # Block (a, a) adds X^T diag(P[:, a]) X: one (K, d, d) batched matmul.
        diag = np.matmul(X.T * P.T[:, None, :], X)
        H = H.reshape(d, K, d, K)
        H[:, np.arange(K), :, np.arange(K)] += diag
        return H.reshape(d * K, d * K) / n + self.l2 * np.eye(d * K)

    def _margins(self, X, y):
        """Rows a with a . w >= 0 for all rows iff W (weakly) separates the data.

        One row per sample i and class k != y_i: x_i (e_{y_i} - e_k)^T, flattened
        in the C order of W, so a . w = z_{i y_i} - z_{ik}.
        """
        n, K = X.shape[0], self.n_classes
        D = np.eye(K)[y][:, None, :] - np.eye(K)[None, :, :]  # (n, k, class)
        keep = np.arange(K)[None, :] != y[:, None]
        A = X[:, None, :, None] * D[:, :, None, :]  # (n, k, d, class)
        return A[keep].reshape(n * (K - 1), -1)


def _shifted_exp(Z):
    """Row maxima m, exp(Z - m) and its row sums: the pieces of a stable log-sum-exp.

    The class axis is short, and a numpy reduction along a short last axis
    costs far more per row than a loop over the K classes does.
    """
    m = Z[..., 0].copy()
    for k in range(1, Z.shape[-1]):
        np.maximum(m, Z[..., k], out=m)
    E = np.exp(Z - m[..., None])
    s = E[..., 0].copy()
    for k in range(1, Z.shape[-1]):
        s += E[..., k]
    return m, E, s
