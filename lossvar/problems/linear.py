"""Linear predictors: least squares and logistic regression (per-example loss phi(x . w, y))."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.special

from lossvar._validate import as_float

from ._base import Problem, ScratchPool, SmoothConvex, buffer, gradient_out

__all__ = ["LinearRegression", "LogisticRegression"]

#: Elements per chunk of the stacked full-data loss (``_GeneralizedLinear.mean_loss``
#: with w of shape (R, p) on one data set): three buffers of this many doubles.
_CHUNK_ELEMENTS = 2**15

#: The scratch of ``mean_grad(..., out=...)``: scores and residuals per input shape.
_SCRATCH = ScratchPool()


@dataclass(frozen=True)
class _GeneralizedLinear(Problem):
    """Per-sample loss phi(x.w, y) + l2/2 ||w||^2 of a linear predictor."""

    l2: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "l2", as_float(self.l2, "l2", low=0.0))

    def _phi(self, z, y):
        raise NotImplementedError

    def _dphi(self, z, y):
        raise NotImplementedError

    def _d2phi(self, z, y):
        raise NotImplementedError

    @staticmethod
    def _scores(w, X):
        # matmul with a trailing unit axis: one BLAS gemv per replicate.
        return np.matmul(X, w[..., None])[..., 0]

    def loss(self, w, X, y) -> np.ndarray:
        w, X, y = self._inputs(w, X, y)
        return self._phi(self._scores(w, X), y) + self._penalty(w)[..., None]

    def mean_loss(self, w, X, y) -> np.ndarray:
        """The mean loss over the rows of ``X``, the ridge term included, shape lead."""
        w, X, y = self._inputs(w, X, y)
        if w.ndim == 2 and X.ndim == 2 and y.ndim == 1 and w.shape[0] > 1 and X.shape[0] > 0:
            return self._stacked_mean_loss(w, X, y) + self._penalty(w)
        return np.mean(self._phi(self._scores(w, X), y), axis=-1) + self._penalty(w)

    def _stacked_mean_loss(self, w, X, y):
        """``np.mean(self._phi(self._scores(w, X), y), axis=-1)`` for a stack w (R, p) on
        shared data X (n, d), y (n,): the same bits, by chunks of rows.

        Each row goes through the same gemv, the same ufuncs in the same order
        and the same reduction along its own contiguous row as in the one-shot
        form (elementwise operations and a per-row mean do not depend on
        which other rows share the call), but a chunk's temporaries stay in
        cache and are reused, instead of six (R, n) arrays. When every row of
        ``w`` has the same bits (e.g. all replicates at their common start),
        one row is computed and repeated.
        """
        R, n = w.shape[0], X.shape[0]
        bits = w.view(np.int64)
        if (bits == bits[:1]).all():
            return np.repeat(self._mean_loss_rows(w[:1], X, y, 1), R)
        return self._mean_loss_rows(w, X, y, max(1, min(R, _CHUNK_ELEMENTS // n)))

    def _mean_loss_rows(self, w, X, y, rows):
        R, n = w.shape[0], X.shape[0]
        out = np.empty(R)
        z, a, b = (np.empty((rows, n)) for _ in range(3))
        for r0 in range(0, R, rows):
            k = min(rows, R - r0)
            zk = z[:k]
            np.matmul(X, w[r0:r0 + k, :, None], out=zk[..., None])
            np.mean(self._phi_into(zk, y, a[:k], b[:k]), axis=-1, out=out[r0:r0 + k])
        return out

    def _phi_into(self, z, y, out, tmp):
        """``self._phi(z, y)`` written to ``out`` (``tmp``: scratch), same operations.

        This default computes ``_phi`` and copies it; the problems here write
        each operation into the buffers instead.
        """
        np.copyto(out, self._phi(z, y))
        return out

    def grad(self, w, X, y) -> np.ndarray:
        w, X, y = self._inputs(w, X, y)
        r = self._dphi(self._scores(w, X), y)
        return r[..., None] * X + self.l2 * w[..., None, :]

    def _dphi_into(self, z, y, out):
        """``self._dphi(z, y)`` written to ``out``, the same operations."""
        raise NotImplementedError

    def mean_grad(self, w, X, y, *, out=None) -> np.ndarray:
        r"""Gradient of the mean loss over the rows of ``X``, shape lead + (p,).

        :math:`X^\top \phi'(Xw, y) / n + \lambda w` (the ridge term only when
        :math:`\lambda > 0`), without the per-example (n, p) array.

        Parameters
        ----------
        w : array_like, shape (..., p)
        X : array_like, shape (..., n, d)
        y : array_like, shape (..., n) or (n,)
        out : ndarray, optional
            A writeable C-contiguous float64 array of the result's shape: the
            gradient is written into it and ``out`` is returned, the scores and
            residuals kept per thread and input shape (the hot path of SGD
            ensembles). With ``out`` the inputs are taken as they are (float64
            arrays; the labels are not checked). The bits are the same with
            and without ``out``.
        """
        if out is None:
            w, X, y = self._inputs(w, X, y)
            buffers = None
        else:
            w, X, y = (np.asarray(a, dtype=np.float64) for a in (w, X, y))
            buffers = _SCRATCH.get((w.shape, X.shape, y.shape))
        n = X.shape[-2]
        scores = np.broadcast_shapes(w.shape[:-1], X.shape[:-2])
        lead = np.broadcast_shapes(scores, y.shape[:-1])
        g = gradient_out(out, lead + (w.shape[-1],))
        z = buffer(buffers, "z", scores + (n,))
        np.matmul(X, w[..., None], out=z[..., None])
        r = self._dphi_into(z, y, buffer(buffers, "r", lead + (n,)))
        np.matmul(r[..., None, :], X, out=g[..., None, :])
        np.divide(g, n, out=g)
        if self.l2:
            np.add(g, np.multiply(w, self.l2, out=buffer(buffers, "ridge", w.shape)), out=g)
        return g

    def _hessian(self, w, X, y):
        """Hessian X^T diag(phi''(z)) X / n + l2 I of the mean loss, X of shape (n, d)."""
        c = self._d2phi(X @ w, y)
        return (X.T * c) @ X / X.shape[0] + self.l2 * np.eye(X.shape[1])


@dataclass(frozen=True)
class LinearRegression(_GeneralizedLinear):
    r"""Least squares with an optional ridge penalty.

    .. math::

        l_i(w) = \tfrac12 (x_i \cdot w - y_i)^2 + \tfrac{\lambda}{2} \|w\|^2,
        \qquad \nabla l_i(w) = (x_i \cdot w - y_i)\, x_i + \lambda w,

    with :math:`\lambda` = ``l2`` added to every per-sample loss, so that the
    mean loss is the ridge objective. ``n_params(d) = d``.

    Parameters
    ----------
    l2 : float, default 0.0
        Ridge strength :math:`\lambda \ge 0`.
    """

    name = "linear"

    def _phi(self, z, y):
        return 0.5 * (z - y) ** 2

    def _phi_into(self, z, y, out, tmp):
        np.subtract(z, y, out=out)
        np.square(out, out=out)  # what ** 2 computes
        return np.multiply(out, 0.5, out=out)

    def _dphi(self, z, y):
        return z - y

    def _dphi_into(self, z, y, out):
        return np.subtract(z, y, out=out)

    def _d2phi(self, z, y):
        # phi'' = 1 everywhere: H = X^T X / n + l2 I, whatever w.
        return np.ones_like(z)

    def minimize(self, X, y, *, w0=None, tol: float = 1e-12) -> np.ndarray:
        r"""Exact minimizer of the mean loss over ``(X, y)``.

        Solves the normal equations
        :math:`(X^\top X / n + \lambda I) w = X^\top y / n` as the equivalent
        augmented least-squares problem (better conditioned than forming
        :math:`X^\top X`). With ``l2 = 0`` and rank-deficient ``X`` the
        minimizer is not unique and the minimum-norm one is returned, as by
        :func:`numpy.linalg.lstsq`. ``w0`` and ``tol`` are accepted for a
        uniform interface and ignored: the solution is direct.
        """
        X, y = self._training_data(X, y)
        n, d = X.shape
        if self.l2 > 0:
            X = np.vstack([X, np.sqrt(n * self.l2) * np.eye(d)])
            y = np.concatenate([y, np.zeros(d)])
        return np.linalg.lstsq(X, y, rcond=None)[0]


@dataclass(frozen=True)
class LogisticRegression(SmoothConvex, _GeneralizedLinear):
    r"""Binary cross-entropy with logits, labels y in {0, 1}.

    .. math::

        l_i(w) = \log(1 + e^{z_i}) - y_i z_i + \tfrac{\lambda}{2}\|w\|^2,
        \qquad z_i = x_i \cdot w,
        \qquad \nabla l_i(w) = (\sigma(z_i) - y_i)\, x_i + \lambda w,

    with :math:`\sigma` the logistic function (:func:`scipy.special.expit`).
    The loss is evaluated as
    :math:`\max(z, 0) - y z + \log(1 + e^{-|z|})`, which equals the above,
    stays finite for any :math:`|z|` and keeps full relative precision for
    confident correct predictions (where ``logaddexp(0, z) - y z`` would
    cancel). ``n_params(d) = d``.

    Parameters
    ----------
    l2 : float, default 0.0
        Ridge strength :math:`\lambda \ge 0`. With ``l2 = 0`` the minimizer
        does not exist when the data are separable.
    """

    name = "logistic"

    def _targets(self, y, n):
        y = super()._targets(y, n)
        if not np.all((y == 0) | (y == 1)):
            bad = y[(y != 0) & (y != 1)].flat[0].item()
            raise ValueError(f"`y` must hold binary labels 0 or 1 for {self!r}; got {bad!r}")
        return y

    def _phi(self, z, y):
        return np.maximum(z, 0.0) - y * z + np.logaddexp(0.0, -np.abs(z))

    def _phi_into(self, z, y, out, tmp):
        np.maximum(z, 0.0, out=out)
        np.multiply(y, z, out=tmp)
        np.subtract(out, tmp, out=out)
        np.abs(z, out=tmp)
        np.negative(tmp, out=tmp)
        np.logaddexp(0.0, tmp, out=tmp)
        return np.add(out, tmp, out=out)

    def _dphi(self, z, y):
        return scipy.special.expit(z) - y

    def _dphi_into(self, z, y, out):
        scipy.special.expit(z, out=out)
        return np.subtract(out, y, out=out)

    def _d2phi(self, z, y):
        p = scipy.special.expit(z)
        return p * (1.0 - p)

    def _margins(self, X, y):
        """Rows a_i with a_i . w >= 0 for all i iff w (weakly) separates the data."""
        return (2.0 * y - 1.0)[:, None] * X
