"""Curvature of a network: exact Hessian-vector products (Pearlmutter's R-operator), the dense
Hessian, and :meth:`MLP.minimize` (L-BFGS polished by inexact Newton steps).

A mixin of :class:`lossvar.problems.mlp.MLP`, which provides the layout, the forward
and backward passes and the inputs' checks; formulas in docs/theory.md, section
"Neural networks: backpropagation and the R-operator".
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import scipy.optimize
import scipy.special

from lossvar._validate import as_finite_array, as_float, as_int

#: Elements of each intermediate (m, n, width) array of a block of
#: Hessian-vector products in :meth:`MLP.hessian` (32 MiB each).
_HESSIAN_BLOCK_ELEMENTS = 2**22

#: Newton steps after L-BFGS in :meth:`MLP.minimize`, and the relative residual
#: at which their conjugate gradients stop (each step divides the gradient norm
#: by about 1 / _NEWTON_FORCING near a minimum).
_NEWTON_STEPS = 10
_NEWTON_FORCING = 1e-3

#: Seed of the start that :meth:`MLP.minimize` draws when given no ``w0``.
DEFAULT_SEED = 0


class Curvature:
    """Hessian-vector products, the Hessian and ``minimize`` of an :class:`~lossvar.MLP`."""

    if TYPE_CHECKING:  # what MLP provides: the layout, the passes, the checks
        sizes: tuple[int, ...]

        @property
        def p(self) -> int: ...

        def init(self, rng=None, size=None) -> np.ndarray: ...

        def check_params(self, w, X) -> None: ...

        def _targets(self, y, n: int, *, check_finite: bool = True) -> np.ndarray: ...

    def hvp(self, w, X, y, v) -> np.ndarray:
        r"""Hessian of the mean loss times ``v``, exactly, by Pearlmutter's R-operator.

        With :math:`\mathcal R\{\cdot\}` the directional derivative along
        :math:`v = (V_j, c_j)_j`, a forward pass
        :math:`\mathcal R\{z_j\} = \mathcal R\{a_{j-1}\} W_j + a_{j-1} V_j + c_j`,
        :math:`\mathcal R\{a_j\} = s'(z_j)\,\mathcal R\{z_j\}`; at the output
        :math:`\mathcal R\{\delta_{m+1}\} = \nabla_f^2 l\,\mathcal R\{f\}`
        (:math:`\mathrm{diag}(p) - p p^\top` for the cross-entropy, 1 for the
        squared loss); a backward pass

        .. math::

            \mathcal R\{\delta_j\} = \bigl(\mathcal R\{\delta_{j+1}\} W_{j+1}^\top
            + \delta_{j+1} V_{j+1}^\top\bigr) \odot s'(z_j)
            + \bigl(\delta_{j+1} W_{j+1}^\top\bigr) \odot s''(z_j) \odot \mathcal R\{z_j\},

        and :math:`H v` has blocks
        :math:`\frac1n \sum_i \mathcal R\{a_{i,j-1}\}^\top \delta_{ij}
        + a_{i,j-1}^\top \mathcal R\{\delta_{ij}\}` (weights) and
        :math:`\frac1n \sum_i \mathcal R\{\delta_{ij}\}` (biases), plus
        :math:`\lambda v` (Pearlmutter 1994; docs/theory.md, section "Neural
        networks"). A stack of m vectors goes through the passes together
        (batched matrix products), at about the cost of 2 m gradients.

        Parameters
        ----------
        w : array_like, shape (p,)
            One parameter vector.
        X : array_like, shape (n, d)
        y : array_like, shape (n,)
        v : array_like, shape (p,) or (m, p)

        Returns
        -------
        ndarray, the shape of ``v``
        """
        state = self._curvature_state(w, X, y)
        v = as_finite_array(v, "v")
        if v.ndim not in (1, 2) or v.shape[-1] != self.p:
            raise ValueError(f"`v` must have shape (p,) or (m, p) with p={self.p} for {self!r}; "
                             f"got an array of shape {v.shape}")
        return self._hvp(state, np.ascontiguousarray(v.reshape(-1, self.p))).reshape(v.shape)

    def hessian(self, w, X, y) -> np.ndarray:
        r"""Dense Hessian of the mean loss over ``(X, y)`` at ``w``, the ridge term included.

        :meth:`hvp` against the rows of the identity, in blocks of vectors
        that keep each intermediate array near 32 MiB, then symmetrized,
        :math:`(H + H^\top)/2` (the products agree with their transposes to
        rounding). It costs p Hessian-vector products, about 2 p gradients of
        the mean loss over the n rows (time of order n p^2 times the widths'
        average) and p^2 numbers of memory: meant for the small networks of
        the studies (p = 2410 for 64-32-10 on digits' 1797 rows: seconds).

        Returns
        -------
        ndarray, shape (p, p)
        """
        state = self._curvature_state(w, X, y)
        n, p = np.shape(X)[0], self.p
        width = max(self.sizes)
        block = max(1, min(p, _HESSIAN_BLOCK_ELEMENTS // (n * width)))
        H = np.empty((p, p))
        for i0 in range(0, p, block):
            i1 = min(p, i0 + block)
            E = np.zeros((i1 - i0, p))
            E[np.arange(i1 - i0), np.arange(i0, i1)] = 1.0
            H[i0:i1] = self._hvp(state, E)
        H += H.T
        H *= 0.5
        return H

    def _curvature_state(self, w, X, y):
        """What every Hessian-vector product at (w, X, y) shares: the forward and
        backward passes, s' and s'' of each hidden layer, and the output's
        softmax (cross-entropy)."""
        w = as_finite_array(w, "w", ndim=1)
        X = as_finite_array(X, "X", ndim=2)
        self.check_params(w, X)
        n = X.shape[0]
        if n < 1:
            raise ValueError("`X` must have at least one row; got 0")
        y = self._targets(y, n)
        if y.ndim != 1:
            raise ValueError(f"`y` must have shape (n,) with n={n}; got an array of shape {y.shape}")
        acts, f = self._forward(w, X, ())
        probs = None
        if self.objective == "cross_entropy":
            probs = scipy.special.softmax(f, axis=-1)
        derivs = [self._derivatives(a) for a in acts[1:]]
        delta = self._output_delta(f, y, 1.0 / n)
        deltas = [delta]  # delta_j of layers L..1, then reversed
        layers = self.unflatten(w)
        for j in range(len(layers) - 1, 0, -1):
            e = delta @ layers[j][0].T
            deltas.append(e)  # e_j = delta_{j+1} W_{j+1}^T, s' applied below
            delta = e * derivs[j - 1][0]
            deltas.append(delta)
        return w, acts, probs, derivs, deltas[::-1], n

    def _hvp(self, state, V):
        """H V^T for a C-contiguous stack V (m, p): the R-forward and R-backward passes."""
        w, acts, probs, derivs, deltas, n = state
        layers, dirs = self.unflatten(w), self.unflatten(V)
        L = len(layers)
        # deltas (from _curvature_state) run delta_1, e_1, delta_2, e_2, ..., delta_L.
        delta_of = deltas[0::2]
        e_of = deltas[1::2]
        r_acts, r_z = [None], []
        for j in range(L):
            VW, c = dirs[j]
            rz = np.matmul(acts[j], VW)
            rz += c[:, None, :]
            if r_acts[j] is not None:
                rz += np.matmul(r_acts[j], layers[j][0])
            r_z.append(rz)
            if j < L - 1:
                r_acts.append(derivs[j][0] * rz)
        rf = r_z[-1]
        if probs is None:
            r_delta = rf / n
        else:
            r_delta = probs * (rf - np.sum(probs * rf, axis=-1, keepdims=True))
            r_delta /= n
        out = np.empty(V.shape)
        blocks = self.unflatten(out)
        for j in range(L - 1, -1, -1):
            gW, gb = blocks[j]
            np.matmul(acts[j].T, r_delta, out=gW)
            if r_acts[j] is not None:
                gW += np.matmul(np.swapaxes(r_acts[j], -1, -2), delta_of[j])
            np.sum(r_delta, axis=-2, out=gb)
            if j == 0:
                break
            W, VW = layers[j][0], dirs[j][0]
            d1, d2 = derivs[j - 1]
            r_prev = np.matmul(r_delta, W.T)
            r_prev += np.matmul(delta_of[j], np.swapaxes(VW, -1, -2))
            r_prev *= d1
            if d2 is not None:
                r_prev += (e_of[j - 1] * d2) * r_z[j - 1]
            r_delta = r_prev
        if self.l2:
            out += self.l2 * V
        return out

    def minimize(self, X, y, *, w0=None, tol: float = 1e-10, rng=DEFAULT_SEED,
                 maxiter: int = 20_000) -> np.ndarray:
        r"""A local minimum of the mean loss over ``(X, y)``, to gradient norm ``tol``.

        Full-batch L-BFGS (Liu & Nocedal 1989; :func:`scipy.optimize.minimize`
        with ``method="L-BFGS-B"`` and ``jac=True``) from ``w0``, or from
        :meth:`init` ``(rng)`` with the fixed default seed, so that the result
        is deterministic (for ``lossvar.datasets.reference_params``); then
        inexact Newton steps (conjugate gradients on :meth:`hvp`, stopped at
        non-positive curvature), kept while they shrink the gradient norm,
        take the gradient from the ~1e-9 where L-BFGS's line search stalls to
        ``tol``. The loss of a network is not convex: the point returned is a
        local minimum (a stationary point reached by descent; the eigenvalues
        of :meth:`hessian` there say whether it is a strict one), not the
        global one, and another start may end at another. With ``l2 = 0`` and
        separable data the loss has no minimum (it decreases forever as the
        weights grow): use ``l2 > 0``.

        Parameters
        ----------
        X : array_like, shape (n, d)
        y : array_like, shape (n,)
        w0 : array_like, shape (p,), optional
            Starting point.
        tol : float, default 1e-10
            Tolerance on the Euclidean norm of the mean gradient; a ValueError
            naming ``tol`` is raised if it is not reached within ``maxiter``
            iterations.
        rng : None, int, SeedSequence or Generator, default 0
            The start's randomness when ``w0`` is None (SPEC 7).
        maxiter : int, default 20000
            Iteration limit of L-BFGS.

        Returns
        -------
        ndarray, shape (p,)

        References
        ----------
        Liu, D. C. & Nocedal, J. (1989). On the limited memory BFGS method for
        large scale optimization. *Mathematical Programming* 45, 503-528.

        Steihaug, T. (1983). The conjugate gradient method and trust regions in
        large scale optimization. *SIAM Journal on Numerical Analysis* 20(3),
        626-637.
        """
        X = as_finite_array(X, "X", ndim=2)
        y = as_finite_array(y, "y", ndim=1)
        tol = as_float(tol, "tol", low=0.0, low_open=True)
        maxiter = as_int(maxiter, "maxiter", low=1)
        if w0 is None:
            w0 = self.init(rng)
        w0 = as_finite_array(w0, "w0", ndim=1)
        self.check_params(w0, X)
        if X.shape[0] < 1:
            raise ValueError("`X` must have at least one row; got 0")
        y = self._targets(y, X.shape[0])

        def objective(w):
            return float(self.mean_loss(w, X, y)), self.mean_grad(w, X, y)

        # gtol bounds the largest gradient entry: tol / sqrt(p) makes it bound the norm too;
        # ftol = 0 leaves the decision to the gradient.
        res = scipy.optimize.minimize(
            objective, w0, jac=True, method="L-BFGS-B",
            options={"gtol": tol / math.sqrt(self.p), "ftol": 0.0, "maxiter": maxiter,
                     "maxfun": 2 * maxiter},
        )
        w, gnorm = self._newton_polish(res.x, X, y, tol)
        if gnorm > tol:
            raise ValueError(
                f"`tol` must be reachable: {self!r}.minimize stopped at gradient norm {gnorm:.3g} "
                f"> tol={tol:g} after {res.nit} L-BFGS iterations ({res.message}); raise `tol` or "
                "`maxiter`, or use l2 > 0 if the data are separable"
            )
        return w

    def _newton_polish(self, w, X, y, tol):
        """Inexact Newton steps (conjugate gradients on :meth:`hvp`) while they shrink the gradient norm.

        Near a minimum the loss changes by about ||g||^2 / (2 lambda_min),
        below the rounding of the loss itself, so L-BFGS, whose line search
        reads loss values, stalls near ||g|| ~ 1e-9; steps judged on the
        gradient norm do not. Conjugate gradients stop at a direction of
        non-positive curvature (Steihaug 1983), so a saddle is never taken
        for a minimum.
        """
        g = self.mean_grad(w, X, y)
        gnorm = float(np.linalg.norm(g))
        for _ in range(_NEWTON_STEPS):
            if gnorm <= tol:
                break
            state = self._curvature_state(w, X, y)
            step = _conjugate_gradients(lambda v, state=state: self._hvp(state, v[None])[0], -g,
                                        rtol=_NEWTON_FORCING, maxiter=self.p)
            if step is None:
                break
            w_new = w + step
            g_new = self.mean_grad(w_new, X, y)
            if np.linalg.norm(g_new) >= gnorm:
                break
            w, g, gnorm = w_new, g_new, float(np.linalg.norm(g_new))
        return w, gnorm


def _conjugate_gradients(matvec, b, *, rtol, maxiter):
    """Solve A x = b by conjugate gradients (Nocedal & Wright 2006, Algorithm 5.2) to
    ||A x - b|| <= rtol ||b||; None if a direction of non-positive curvature appears
    (A is not positive definite there) or the iterations run out."""
    x = np.zeros_like(b)
    r = b.copy()
    d = r.copy()
    rr, target = r @ r, (rtol * np.linalg.norm(b)) ** 2
    for _ in range(maxiter):
        Ad = matvec(d)
        curvature = d @ Ad
        if curvature <= 0:
            return None
        alpha = rr / curvature
        x += alpha * d
        r -= alpha * Ad
        rr_new = r @ r
        if rr_new <= target:
            return x
        d = r + (rr_new / rr) * d
        rr = rr_new
    return None
