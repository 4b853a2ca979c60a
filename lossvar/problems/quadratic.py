"""The noisy quadratic: exact SGD recursions' model problem (docs/theory.md, section 6)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lossvar._validate import as_finite_array, as_float

from ._base import Problem, gradient_out

__all__ = ["NoisyQuadratic"]


@dataclass(frozen=True, eq=False)
class NoisyQuadratic(Problem):
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

    def mean_grad(self, w, X, y=None, *, out=None) -> np.ndarray:
        """H (w - w*) + the mean of the noise rows, shape lead + (p,). ``out``: a writeable
        C-contiguous float64 array of that shape, written and returned (the same bits)."""
        w, X, _ = self._inputs(w, X, y)
        drift, noise = self.curvature * (w - self.w_star), self._mean_noise(X)
        shape = np.broadcast_shapes(drift.shape, noise.shape)
        return np.add(drift, noise, out=gradient_out(out, shape))

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
