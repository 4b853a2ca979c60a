"""Per-sample loss and gradient of each model.

A problem maps a parameter vector ``w`` and data ``(X, y)`` to the per-sample
losses l_i(w) and gradients grad l_i(w) whose batch averages are the
stochastic estimators that lossvar studies.

Shape contract, shared by every problem:

- ``w`` has shape ``(..., p)``; leading dimensions index a stack of parameter
  vectors (one per replicate).
- ``X`` has shape ``(..., n, d)`` and ``y`` shape ``(..., n)`` (or ``(n,)``);
  their leading dimensions broadcast against those of ``w``. With ``w`` of
  shape ``(R, p)`` and ``X`` of shape ``(R, B, d)``, replicate r is evaluated
  on its own batch; with ``X`` of shape ``(n, d)`` every replicate sees the
  same data.
- With ``lead = broadcast(w.shape[:-1], X.shape[:-2])``: ``loss`` returns
  ``lead + (n,)``, ``grad`` returns ``lead + (n, p)``, ``mean_loss`` returns
  ``lead`` and ``mean_grad`` returns ``lead + (p,)``.

Each replicate of a stack goes through the same BLAS call as a single
parameter vector would, so a stacked ``w`` gives bit-identical values to a loop
over its rows. There is no implicit intercept: add a column of ones to ``X``
if you want one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.optimize
import scipy.special

from lossvar import _threads
from lossvar._validate import as_finite_array, as_float, as_int

__all__ = [
    "LinearRegression",
    "LogisticRegression",
    "NoisyQuadratic",
    "SoftmaxRegression",
]

#: Elements per chunk of the stacked full-data loss (``_GeneralizedLinear.mean_loss``
#: with w of shape (R, p) on one data set): three buffers of this many doubles.
_CHUNK_ELEMENTS = 2**15

#: With ``threads`` > 1: scores of up to this many elements are made in one
#: matmul, then their losses by chunks of _THREAD_CHUNK elements per thread;
#: below _THREADED_ELEMENTS in all, one thread does it.
_GROUP_ELEMENTS = 2**19
_THREAD_CHUNK = 2**16
_THREADED_ELEMENTS = 2**18


class _Problem:
    """Input handling and averaging shared by every problem."""

    name = ""
    l2: float = 0.0

    # What every problem provides (declared for the shared code below).
    def loss(self, w, X, y) -> np.ndarray:
        raise NotImplementedError

    def mean_loss(self, w, X, y) -> np.ndarray:
        raise NotImplementedError

    def grad(self, w, X, y) -> np.ndarray:
        raise NotImplementedError

    def mean_grad(self, w, X, y) -> np.ndarray:
        raise NotImplementedError

    def n_params(self, d: int) -> int:
        """Length p of the parameter vector for ``d`` features (here p = d)."""
        return as_int(d, "d", low=1)

    def check_params(self, w, X) -> None:
        """Raise ValueError unless ``w.shape[-1] == n_params(X.shape[-1])``."""
        w_shape, X_shape = np.shape(w), np.shape(X)
        if len(X_shape) < 2:
            raise ValueError(f"`X` must have shape (..., n, d); got an array of shape {X_shape}")
        if len(w_shape) < 1:
            raise ValueError(f"`w` must have shape (..., p); got an array of shape {w_shape}")
        d = X_shape[-1]
        p = self.n_params(d)
        if w_shape[-1] != p:
            raise ValueError(
                f"`w` must have length p={p} for {self!r} with d={d} features; "
                f"got length {w_shape[-1]}"
            )

    def _inputs(self, w, X, y):
        w = np.asarray(w, dtype=np.float64)
        X = np.asarray(X, dtype=np.float64)
        self.check_params(w, X)
        return w, X, self._targets(y, X.shape[-2])

    def _targets(self, y, n):
        y = np.asarray(y, dtype=np.float64)
        if y.shape[-1:] != (n,):
            raise ValueError(
                f"`y` must have shape (..., n) with n={n}, one target per row of `X`; "
                f"got an array of shape {y.shape}"
            )
        return y

    def _penalty(self, w):
        """l2/2 ||w||^2, for the problems with a ridge ``l2``."""
        return 0.5 * self.l2 * np.sum(w * w, axis=-1)

    def hessian(self, w, X, y=None) -> np.ndarray:
        r"""Hessian of the mean loss over ``(X, y)`` at ``w``, the ridge term included.

        .. math::

            H(w) = \frac1n \sum_{i=1}^n \nabla^2 l_i(w),

        a (p, p) symmetric matrix (one parameter vector and one data set: no
        leading dimensions). Used for the noise scale
        :math:`B_\mathrm{noise} = \operatorname{tr}(H\Sigma) / G^\top H G`
        (McCandlish et al. 2018, arXiv:1812.06162, eq. 2.7; docs/theory.md,
        section 10).

        Parameters
        ----------
        w : array_like, shape (p,)
        X : array_like, shape (n, d)
        y : array_like, shape (n,)
            Targets (ignored by :class:`NoisyQuadratic`, which may get None).

        Returns
        -------
        ndarray, shape (p, p)
        """
        w = as_finite_array(w, "w", ndim=1)
        X = as_finite_array(X, "X", ndim=2)
        self.check_params(w, X)
        return self._hessian(w, X, self._targets(y, X.shape[0]))

    def _hessian(self, w, X, y):
        raise NotImplementedError

    def _training_data(self, X, y):
        """Validate a single data set (n, d) for ``minimize``."""
        X = as_finite_array(X, "X", ndim=2)
        if X.shape[0] < 1:
            raise ValueError("`X` must have at least one row; got 0")
        y = self._targets(as_finite_array(y, "y", ndim=1), X.shape[0])
        return X, y



@dataclass(frozen=True)
class _GeneralizedLinear(_Problem):
    """Per-sample loss phi(x.w, y) + l2/2 ||w||^2 of a linear predictor."""

    l2: float = 0.0

    #: Whether phi costs enough per element (exp, log) that computing it on
    #: several threads pays (mean_loss's ``threads``); else one thread does it.
    _costly_phi = False

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

    def mean_loss(self, w, X, y, *, threads: int = 1) -> np.ndarray:
        """The mean loss over the rows of ``X``, the ridge term included.

        ``w`` of shape (..., p); for a stack of parameter vectors w (R, p) on
        one data set X (n, d), ``threads`` > 1 computes the losses of
        different rows on that many threads at once (large inputs only). The
        result has the same bits for every ``threads``.
        """
        w, X, y = self._inputs(w, X, y)
        threads = as_int(threads, "threads", low=1)
        if w.ndim == 2 and X.ndim == 2 and y.ndim == 1 and w.shape[0] > 1 and X.shape[0] > 0:
            return self._stacked_mean_loss(w, X, y, threads) + self._penalty(w)
        return np.mean(self._phi(self._scores(w, X), y), axis=-1) + self._penalty(w)

    def _stacked_mean_loss(self, w, X, y, threads=1):
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
        threads = min(threads, R)
        if threads > 1 and R * n >= _THREADED_ELEMENTS and self._costly_phi:
            return self._mean_loss_threaded(w, X, y, threads)
        return self._mean_loss_rows(w, X, y, max(1, min(R, _CHUNK_ELEMENTS // n)))

    def _mean_loss_threaded(self, w, X, y, threads):
        """:meth:`_mean_loss_rows` on ``threads`` threads: the scores of a group
        of rows in one matmul in this thread (BLAS calls from several threads
        compete), then the loss and mean of each row, the group's rows cut
        among the threads. Every row goes through the same operations."""
        R, n = w.shape[0], X.shape[0]
        group = max(threads, min(R, _GROUP_ELEMENTS // n))
        rows = max(1, _THREAD_CHUNK // n)
        z, out = np.empty((group, n)), np.empty(R)
        buffers = [(np.empty((rows, n)), np.empty((rows, n))) for _ in range(threads)]
        for g0 in range(0, R, group):
            k = min(group, R - g0)
            np.matmul(X, w[g0:g0 + k, :, None], out=z[:k, :, None])
            cuts = [k * i // threads for i in range(threads + 1)]

            def part(i, g0=g0, cuts=cuts):
                a, b = buffers[i]
                for r0 in range(cuts[i], cuts[i + 1], rows):
                    r1 = min(r0 + rows, cuts[i + 1])
                    np.mean(self._phi_into(z[r0:r1], y, a[:r1 - r0], b[:r1 - r0]), axis=-1,
                            out=out[g0 + r0:g0 + r1])
            _threads.run(part, range(threads))
        return out

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

    def mean_grad(self, w, X, y) -> np.ndarray:
        w, X, y = self._inputs(w, X, y)
        r = self._dphi(self._scores(w, X), y)
        # X^T r / n without the per-sample (n, p) array.
        return np.matmul(r[..., None, :], X)[..., 0, :] / X.shape[-2] + self.l2 * w

    def _hessian(self, w, X, y):
        """Hessian X^T diag(phi''(z)) X / n + l2 I of the mean loss, X of shape (n, d)."""
        c = self._d2phi(X @ w, y)
        return (X.T * c) @ X / X.shape[0] + self.l2 * np.eye(X.shape[1])


class _SmoothConvex(_Problem):
    """``minimize`` for the smooth convex losses (logistic, softmax)."""

    def minimize(self, X, y, *, w0=None, tol: float = 1e-12) -> np.ndarray:
        r"""Minimizer of the mean loss over ``(X, y)``, to gradient norm ``tol``.

        Newton's method with a trust region and the exact Hessian
        (:func:`scipy.optimize.minimize`, ``method="trust-ncg"``), then full
        Newton steps judged on the gradient norm, which converge quadratically
        to ``tol``. With ``l2 = 0`` the minimizer exists only if the data are
        not separable (Albert & Anderson 1984, Biometrika 71:1): this is
        checked first with a linear program, and a ValueError asks for
        ``l2 > 0`` when the mean loss has no minimizer. A ValueError is also
        raised if ``tol`` is not reached (for badly scaled features the
        rounding floor of the gradient may lie above 1e-12: standardize the
        features or pass a larger ``tol``).

        Parameters
        ----------
        X : array_like, shape (n, d)
        y : array_like, shape (n,)
        w0 : array_like, shape (p,), optional
            Starting point; zeros by default.
        tol : float, default 1e-12
            Tolerance on the Euclidean norm of the mean gradient.

        Returns
        -------
        ndarray, shape (p,)
        """
        X, y = self._training_data(X, y)
        tol = as_float(tol, "tol", low=0.0, low_open=True)
        p = self.n_params(X.shape[1])
        w0 = np.zeros(p) if w0 is None else as_finite_array(w0, "w0", ndim=1)
        self.check_params(w0, X)
        if self.l2 == 0:
            _check_not_separable(self, X, y)
        res = scipy.optimize.minimize(
            lambda w: (self.mean_loss(w, X, y), self.mean_grad(w, X, y)),
            w0,
            jac=True,
            hess=lambda w: self._hessian(w, X, y),
            method="trust-ncg",
            options={"gtol": tol, "maxiter": 500},
        )
        w, gnorm = self._newton_polish(res.x, X, y, tol)
        if gnorm > tol:
            raise ValueError(
                f"{self!r}.minimize did not converge: gradient norm {gnorm:.3g} > tol={tol:g} "
                f"({res.message}); if the data are (nearly) separable the minimizer does not "
                "exist, use l2 > 0"
            )
        return w

    def _newton_polish(self, w, X, y, tol):
        """Full Newton steps while they shrink the gradient norm.

        Near the minimizer the loss changes by about ||g||^2, below the rounding
        of the loss itself, so a trust region driven by loss values stalls
        around ||g|| ~ 1e-9; Newton steps judged on the gradient do not.
        """
        g = self.mean_grad(w, X, y)
        gnorm = float(np.linalg.norm(g))
        for _ in range(20):
            if gnorm <= tol:
                break
            # lstsq: the minimum-norm step, so a singular Hessian (softmax with
            # l2 = 0, constant features) never moves along its null space.
            w_new = w - np.linalg.lstsq(self._hessian(w, X, y), g, rcond=None)[0]
            g_new = self.mean_grad(w_new, X, y)
            if np.linalg.norm(g_new) >= gnorm:
                break
            w, g, gnorm = w_new, g_new, float(np.linalg.norm(g_new))
        return w, gnorm


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
class LogisticRegression(_SmoothConvex, _GeneralizedLinear):
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

    _costly_phi = True

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

    def _d2phi(self, z, y):
        p = scipy.special.expit(z)
        return p * (1.0 - p)

    def _margins(self, X, y):
        """Rows a_i with a_i . w >= 0 for all i iff w (weakly) separates the data."""
        return (2.0 * y - 1.0)[:, None] * X


@dataclass(frozen=True)
class SoftmaxRegression(_SmoothConvex, _Problem):
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

    def mean_grad(self, w, X, y) -> np.ndarray:
        w, X, y = self._inputs(w, X, y)
        E = self._residuals(self._logits(w, X), y)
        G = np.matmul(np.swapaxes(X, -1, -2), E) / X.shape[-2]
        return G.reshape(G.shape[:-2] + (-1,)) + self.l2 * w

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


def _check_not_separable(problem, X, y) -> None:
    """Raise if some w != 0 has a_i . w >= 0 for all margin rows, one of them > 0.

    Along such a w the loss decreases strictly forever, so no minimizer
    exists. Found by the linear program max sum_i a_i . w subject to
    a_i . w >= 0 and |w_j| <= 1.
    """
    A = problem._margins(X, y)
    res = scipy.optimize.linprog(
        -A.sum(axis=0), A_ub=-A, b_ub=np.zeros(A.shape[0]), bounds=(-1.0, 1.0), method="highs"
    )
    if res.status != 0:
        return
    m = A @ res.x
    scale = np.abs(A).max()
    if m.min() >= -1e-9 * scale and m.max() > 1e-6 * scale:
        raise ValueError(
            f"The data are separable: the mean loss of {problem!r} has no minimizer "
            "(it decreases forever along a separating direction); use l2 > 0"
        )



@dataclass(frozen=True, eq=False)
class NoisyQuadratic(_Problem):
    r"""Quadratic with additive Gaussian gradient noise.

    The data rows ``X[i]`` are the noise vectors :math:`\xi_i` (``y`` is
    ignored and may be None). With diagonal Hessian :math:`H = \mathrm{diag}(h)`
    and :math:`u = w - w^*`,

    .. math::

        l_i(w) = \tfrac12 u^\top H u + \xi_i \cdot u,
        \qquad \nabla l_i(w) = H u + \xi_i .

    For :math:`\xi \sim N(0, \sigma^2 I)` the gradient is unbiased,
    :math:`E[\nabla l] = H u`, with noise covariance :math:`\sigma^2 I`, and
    the per-sample loss has exactly mean :math:`\tfrac12 u^\top H u` and
    variance :math:`\sigma^2 \|u\|^2` (:meth:`loss_moments`). This is the
    model of docs/theory.md, section 6 (exact SGD recursions). ``n_params(d) = d``,
    and d must be the dimension of ``curvature``.

    Parameters
    ----------
    curvature : float or array_like, shape (d,)
        Positive eigenvalues h of H (a scalar for d = 1).
    w_star : array_like, shape (d,), optional
        Minimizer :math:`w^*`; zeros by default.
    noise_std : float, default 1.0
        Noise standard deviation :math:`\sigma \ge 0` of :meth:`population`.
    """

    curvature: np.ndarray
    w_star: np.ndarray | None = None
    noise_std: float = 1.0
    name = "quadratic"
    dim: int = field(init=False, repr=False)

    def __post_init__(self):
        h = as_finite_array(self.curvature, "curvature")
        if h.ndim == 0:
            h = h.reshape(1)
        if h.ndim != 1 or h.size == 0 or np.any(h <= 0):
            raise ValueError(
                "`curvature` must be a positive number or a non-empty 1-D array of positive "
                f"numbers; got {self.curvature!r}"
            )
        d = h.size
        if self.w_star is None:
            w_star = np.zeros(d)
        else:
            w_star = as_finite_array(self.w_star, "w_star").reshape(-1)
            if w_star.size != d:
                raise ValueError(
                    f"`w_star` must have length d={d}, the length of `curvature`; "
                    f"got length {w_star.size}"
                )
        for name, value in (("curvature", h), ("w_star", w_star)):
            value = value.copy()
            value.flags.writeable = False
            object.__setattr__(self, name, value)
        object.__setattr__(self, "noise_std", as_float(self.noise_std, "noise_std", low=0.0))
        object.__setattr__(self, "dim", d)

    def __repr__(self) -> str:
        return (
            f"NoisyQuadratic(curvature={self.curvature.tolist()}, "
            f"w_star={np.asarray(self.w_star).tolist()}, noise_std={self.noise_std})"
        )

    def check_params(self, w, X) -> None:
        """Also require ``X.shape[-1] == d``, the dimension of ``curvature``."""
        super().check_params(w, X)
        if np.shape(X)[-1] != self.dim:
            raise ValueError(
                f"`X` must have d={self.dim} columns (the dimension of `curvature`) "
                f"for {self!r}; got {np.shape(X)[-1]}"
            )

    def _targets(self, y, n):
        return None

    def _quadratic(self, u):
        return 0.5 * np.sum(self.curvature * u * u, axis=-1)

    def loss(self, w, X, y=None) -> np.ndarray:
        w, X, _ = self._inputs(w, X, y)
        u = w - self.w_star
        return self._quadratic(u)[..., None] + np.matmul(X, u[..., None])[..., 0]

    def mean_loss(self, w, X, y=None) -> np.ndarray:
        w, X, _ = self._inputs(w, X, y)
        u = w - self.w_star
        return self._quadratic(u) + np.sum(self._mean_noise(X) * u, axis=-1)

    def grad(self, w, X, y=None) -> np.ndarray:
        w, X, _ = self._inputs(w, X, y)
        return (self.curvature * (w - self.w_star))[..., None, :] + X

    def mean_grad(self, w, X, y=None) -> np.ndarray:
        w, X, _ = self._inputs(w, X, y)
        return self.curvature * (w - self.w_star) + self._mean_noise(X)

    def _hessian(self, w, X, y):
        """diag(curvature): the noise rows shift the gradient, never the curvature."""
        return np.diag(self.curvature).astype(np.float64)

    @staticmethod
    def _mean_noise(X):
        # A gemv per replicate: several times faster than X.mean(axis=-2).
        n = X.shape[-2]
        return np.matmul(np.full(n, 1.0 / n), X)

    def minimize(self, X, y=None, *, w0=None, tol: float = 1e-12) -> np.ndarray:
        r"""Minimizer :math:`w^* - H^{-1} \bar\xi` of the mean loss over the noise rows.

        ``w0`` and ``tol`` are accepted for a uniform interface and ignored.
        """
        X = as_finite_array(X, "X", ndim=2)
        self.check_params(self.w_star, X)
        if X.shape[0] < 1:
            raise ValueError("`X` must have at least one row; got 0")
        return self.w_star - X.mean(axis=0) / self.curvature

    def minimizer(self) -> np.ndarray:
        """The minimizer :math:`w^*` of the expected loss."""
        return np.array(self.w_star, dtype=np.float64)

    def loss_moments(self, w):
        r"""Exact mean and variance of the per-sample loss at ``w``.

        Mean :math:`\tfrac12 u^\top H u`, variance :math:`\sigma^2 \|u\|^2`,
        :math:`u = w - w^*`; ``w`` may carry leading dimensions.
        """
        w = as_finite_array(w, "w")
        self.check_params(w, np.empty((0, self.dim)))
        u = w - self.w_star
        return self._quadratic(u), self.noise_std**2 * np.sum(u * u, axis=-1)
