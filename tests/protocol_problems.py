"""Problems written outside lossvar that meet only the documented protocol
(lossvar.typing.Problem): used by tests/test_typing.py and benchmarks/bench_protocol.py.

- ``NumpyLogistic``: logistic regression written here from its formulas with numpy,
  the operations in the order lossvar's LogisticRegression documents (scores by
  matmul, the stable loss max(z, 0) - y z + log(1 + e^{-|z|}), the residual
  expit(z) - y, X^T r / n, the ridge term l2 w when l2 > 0), with per-thread scratch
  for ``mean_grad(out=...)``, a stack's mean loss by chunks of rows, and no
  ``minimize`` (optional in the protocol);
- ``Delegating``: a wrapper that hands every call to another problem.

Neither inherits from lossvar nor is named anywhere in lossvar.
"""

from __future__ import annotations

import threading

import numpy as np
import scipy.special


class NumpyLogistic:
    """Binary cross-entropy with logits, labels 0 or 1, ridge ``l2``; p = d."""

    name = "numpy logistic"

    def __init__(self, l2: float = 0.0):
        self.l2 = float(l2)
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"NumpyLogistic(l2={self.l2})"

    def __reduce__(self):
        return (type(self), (self.l2,))

    def n_params(self, d: int) -> int:
        return int(d)

    def check_params(self, w, X) -> None:
        if np.shape(w)[-1] != np.shape(X)[-1]:
            raise ValueError(f"`w` must have length p={np.shape(X)[-1]}; got {np.shape(w)[-1]}")

    def _penalty(self, w):
        return 0.5 * self.l2 * np.sum(w * w, axis=-1)

    @staticmethod
    def _phi(z, y):
        return np.maximum(z, 0.0) - y * z + np.logaddexp(0.0, -np.abs(z))

    @staticmethod
    def _scores(w, X):
        return np.matmul(X, w[..., None])[..., 0]

    def loss(self, w, X, y):
        w, X, y = (np.asarray(a, dtype=np.float64) for a in (w, X, y))
        return self._phi(self._scores(w, X), y) + self._penalty(w)[..., None]

    def mean_loss(self, w, X, y):
        w, X, y = (np.asarray(a, dtype=np.float64) for a in (w, X, y))
        if w.ndim == 2 and X.ndim == 2 and len(w) > 1:
            # A stack on shared data by chunks of rows, whose temporaries stay in cache:
            # each row's value is the same, computed alone or with others.
            rows = max(1, 2**15 // max(X.shape[0], 1))
            return np.concatenate([self._mean_loss(w[i:i + rows], X, y)
                                   for i in range(0, len(w), rows)])
        return self._mean_loss(w, X, y)

    def _mean_loss(self, w, X, y):
        return np.mean(self._phi(self._scores(w, X), y), axis=-1) + self._penalty(w)

    def grad(self, w, X, y):
        w, X, y = (np.asarray(a, dtype=np.float64) for a in (w, X, y))
        r = scipy.special.expit(self._scores(w, X)) - y
        return r[..., None] * X + self.l2 * w[..., None, :]

    def mean_grad(self, w, X, y, *, out=None):
        w, X, y = (np.asarray(a, dtype=np.float64) for a in (w, X, y))
        n = X.shape[-2]
        lead = np.broadcast_shapes(w.shape[:-1], X.shape[:-2], y.shape[:-1])
        if out is None:
            z = np.empty(lead + (n,))
            out = np.empty(lead + (w.shape[-1],))
        else:
            pools = self._local.__dict__.setdefault("pools", {})
            z = pools.get(z_shape := lead + (n,))
            if z is None:
                z = pools[z_shape] = np.empty(z_shape)
        np.matmul(X, w[..., None], out=z[..., None])
        scipy.special.expit(z, out=z)
        np.subtract(z, y, out=z)
        np.matmul(z[..., None, :], X, out=out[..., None, :])
        np.divide(out, n, out=out)
        if self.l2:
            np.add(out, np.multiply(w, self.l2), out=out)
        return out


class Delegating:
    """Every method of the protocol handed to ``inner``."""

    def __init__(self, inner):
        self.inner = inner
        self.name, self.l2 = inner.name, inner.l2

    def __repr__(self) -> str:
        return f"Delegating({self.inner!r})"

    def n_params(self, d):
        return self.inner.n_params(d)

    def check_params(self, w, X):
        return self.inner.check_params(w, X)

    def loss(self, w, X, y):
        return self.inner.loss(w, X, y)

    def mean_loss(self, w, X, y):
        return self.inner.mean_loss(w, X, y)

    def grad(self, w, X, y):
        return self.inner.grad(w, X, y)

    def mean_grad(self, w, X, y, *, out=None):
        return self.inner.mean_grad(w, X, y, out=out)

    def minimize(self, X, y):
        return self.inner.minimize(X, y)
