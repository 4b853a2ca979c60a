"""What the built-in problems share: input handling, the Hessian entry point, Newton's
method for the smooth convex losses, and per-thread scratch for the hot path."""

from __future__ import annotations

import threading

import numpy as np
import scipy.optimize

from lossvar._validate import as_finite_array, as_float, as_int

#: Input shapes whose scratch a thread keeps per pool (:class:`ScratchPool`); the
#: oldest is dropped beyond this, so a thread holds a bounded amount.
SCRATCH_SHAPES = 4


class ScratchPool:
    """Per-thread buffers by input shape, for ``mean_grad(..., out=...)``.

    :meth:`get` gives the calling thread's dict of named arrays for one key
    (an input shape), made empty when first asked; a thread keeps the dicts
    of its :data:`SCRATCH_SHAPES` most recent keys. Threads never share a
    buffer, and a pickled pool arrives empty (a worker makes its own).
    """

    def __init__(self):
        self._local = threading.local()

    def __reduce__(self):
        return (type(self), ())

    def get(self, key) -> dict:
        pools = getattr(self._local, "pools", None)
        if pools is None:
            pools = self._local.pools = {}
        buffers = pools.pop(key, None)
        if buffers is None:
            buffers = {}
            while len(pools) >= SCRATCH_SHAPES:
                del pools[next(iter(pools))]
        pools[key] = buffers  # most recent last
        return buffers

    def nbytes(self) -> int:
        """Bytes of scratch the calling thread keeps in this pool."""
        pools = getattr(self._local, "pools", None) or {}
        return sum(a.nbytes for buffers in pools.values() for a in buffers.values())


def buffer(buffers: dict | None, name, shape) -> np.ndarray:
    """The array ``name`` of ``buffers`` (made when first asked), or a new one without buffers."""
    if buffers is None:
        return np.empty(shape)
    a = buffers.get(name)
    if a is None:
        a = buffers[name] = np.empty(shape)
    return a


def gradient_out(out, shape) -> np.ndarray:
    """``out`` checked as the destination of a mean gradient of ``shape`` (a new array if None)."""
    if out is None:
        return np.empty(shape)
    if not (isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == shape
            and out.flags.c_contiguous and out.flags.writeable):
        got = (f"{out.dtype} array of shape {out.shape}" if isinstance(out, np.ndarray)
               else type(out).__name__)
        raise ValueError(f"`out` must be a writeable C-contiguous float64 array of shape {shape}; "
                         f"got a {got}")
    return out


class Problem:
    """Input handling and averaging shared by the linear problems and the quadratic."""

    name = ""
    l2: float = 0.0

    # What every problem provides (declared for the shared code below).
    def loss(self, w, X, y) -> np.ndarray:
        raise NotImplementedError

    def mean_loss(self, w, X, y) -> np.ndarray:
        raise NotImplementedError

    def grad(self, w, X, y) -> np.ndarray:
        raise NotImplementedError

    def mean_grad(self, w, X, y, *, out=None) -> np.ndarray:
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
            Targets (ignored by :class:`~lossvar.NoisyQuadratic`, which may get None).

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


class SmoothConvex(Problem):
    """``minimize`` for the smooth convex losses (logistic, softmax)."""

    def _margins(self, X, y):
        raise NotImplementedError

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
