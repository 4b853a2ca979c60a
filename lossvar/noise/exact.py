r"""Exact gradient-noise statistics of a data set.

:class:`lossvar.GradientNoiseResult` holds, from the per-example gradients
:math:`g_i(w)` of N examples, the mean gradient :math:`G`, the covariance
:math:`\Sigma` (divided by :math:`N - \mathrm{ddof}`, by N by default), the
simple noise scale, the noise scale with curvature and the GSNR per
parameter (docs/theory.md, section 10). :func:`lossvar.gradient_noise`
computes them in one pass over the data in blocks, from any problem that
meets the Problem protocol (:class:`lossvar.typing.Problem`), its Hessian
taken from ``problem.hessian`` or, without one, from Hessian-vector products
``problem.hvp``.

References
----------
S. McCandlish, J. Kaplan, D. Amodei et al. (2018), "An Empirical Model of
Large-Batch Training", arXiv:1812.06162.
J. Liu et al. (2020), "Understanding Why Neural Networks Generalize Well
Through GSNR of Parameters", ICLR 2020.
T. F. Chan, G. H. Golub, R. J. LeVeque (1979), "Updating formulae and a
pairwise algorithm for computing sample variances", Stanford CS-TR-79-773.
N. J. Higham (2002), *Accuracy and Stability of Numerical Algorithms*, 2nd
ed., SIAM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .._result import ResultBase
from .._validate import as_finite_array, as_int
from ..data import Dataset
from ..typing import ArrayLike, Problem
from ._arrays import EPS, frozen, ratio

__all__ = ["GradientNoiseResult", "gradient_noise"]

#: Default block of :func:`gradient_noise`: about this many gradient entries
#: (8 MB of float64) per block, so that large N never holds N x p at once.
_BLOCK_ELEMENTS = 2**20
#: Vector-row pairs per call of ``problem.hvp`` when the curvature terms come
#: from Hessian-vector products: a stack of m vectors against n rows costs a
#: problem about m n times its per-example work in memory (for lossvar.MLP, its
#: widths), so the calls are tiled to keep that near 2**16.
_HVP_PAIRS = 2**16


@dataclass(frozen=True, eq=False)
class GradientNoiseResult(ResultBase):
    r"""Noise statistics of the per-example gradients of a data set at one ``w``.

    Exact statistics of the data, not Monte Carlo estimates: no interval
    (``confidence`` is None). ``to_frame()`` is one row of the scalar
    statistics and ``flags`` (space-separated); docs/guide/results.md.

    :math:`\Sigma` divides by :math:`N - \mathrm{ddof}`: by N (the population
    normalization, the covariance of one uniformly drawn example) for the
    default ``ddof = 0``.

    Attributes
    ----------
    grad : ndarray, shape (p,)
        The mean gradient :math:`G`.
    grad_norm2 : float
        :math:`\|G\|^2`.
    trace_cov : float
        :math:`\operatorname{tr}\Sigma`.
    b_simple : float
        Simple noise scale :math:`B_\mathrm{simple} = \operatorname{tr}\Sigma / \|G\|^2`
        (McCandlish et al. 2018, eq. 2.8): ``inf`` if :math:`G = 0 \ne \Sigma`,
        NaN if both vanish.
    b_noise : float
        Noise scale :math:`B_\mathrm{noise} = \operatorname{tr}(H\Sigma) / G^\top H G`
        (McCandlish et al. 2018, eq. 2.7); NaN without a Hessian, x/0 as for
        ``b_simple``.
    grad_hess_grad, trace_hess_cov : float
        :math:`G^\top H G` and :math:`\operatorname{tr}(H\Sigma)` (NaN without a
        Hessian), the curvature terms of the optimal step
        :math:`\epsilon_\mathrm{opt} = \|G\|^2 / (G^\top H G + c_B \operatorname{tr}(H\Sigma))`.
    gsnr : ndarray, shape (p,)
        Gradient signal-to-noise ratio per parameter,
        :math:`G_j^2 / \Sigma_{jj}` (Liu et al. 2020), with no epsilon added
        (unlike Cockpit's MeanGSNR). A coordinate whose variance is zero to
        rounding (see ``n_zero_variance``) has no finite GSNR: ``inf`` where
        :math:`G_j \ne 0`, NaN where :math:`G_j = 0` too.
    n_zero_variance : int
        The number of coordinates whose variance is zero to rounding:
        :math:`\sqrt{S_{jj}/N} \le N \varepsilon \max_i |g_{ij}|`, with
        :math:`S_{jj} = \sum_i (g_{ij} - G_j)^2` computed and
        :math:`\varepsilon` the float64 machine epsilon, the per-coordinate
        form of ``grad_rounding_bound``. When every :math:`g_{ij}` is the same
        number (a parameter that no example moves, e.g. the weight of a
        constant input feature, whose gradient is :math:`\lambda w_j` for
        every example under an l2 penalty), the computed mean can differ from
        it by rounding and leave a variance of about :math:`10^{-40}` and a
        GSNR of :math:`10^{31}`; such a coordinate counts here, is flagged and
        has GSNR ``inf``. Its (rounding-size) variance stays in
        ``trace_cov``.
    n : int
        Number of examples N.
    ddof : int
        Delta degrees of freedom of :math:`\Sigma`.
    grad_rounding_bound : float
        :math:`N \varepsilon \max_i \|g_i\|`: a bound on the rounding error of
        the computed :math:`\|G\|`. Summing N terms in floating point errs by
        at most :math:`\gamma_{N-1} \sum_i |g_{ij}|` per coordinate,
        :math:`\gamma_k = k u / (1 - k u)`, :math:`u = \varepsilon / 2`
        (Higham 2002, section 4.2), so the mean errs by at most about
        :math:`N u \max_i \|g_i\|`; the other :math:`N u \max_i \|g_i\|`
        covers the division, the merge of blocks, and per-example gradients
        that carry errors of their own (at a minimizer of the logistic loss,
        :math:`\sigma(z_i) - y_i` is computed to about u, not to u relative to
        itself). A model whose per-example gradients lose more can leave
        :math:`\|G\|` above the bound at its minimizer.
    flags : tuple of str
        ``"grad_zero_to_rounding"`` when :math:`\|G\|` is at most
        ``grad_rounding_bound``: G cannot be told from 0, and ``b_simple``,
        ``b_noise`` and ``gsnr`` are those of G = 0 (``inf`` beside nonzero
        noise, NaN where the noise is 0 too) instead of ratios of rounding
        errors (e.g. ``1.99e+25`` at the fitted optimum of breast_cancer);
        ``grad`` and ``grad_norm2`` keep the computed values.
        ``"zero_variance_coordinates"`` when ``n_zero_variance > 0``. Empty
        otherwise.

    References
    ----------
    N. J. Higham (2002), *Accuracy and Stability of Numerical Algorithms*,
    2nd ed., SIAM, section 4.2.
    """

    grad: np.ndarray
    grad_norm2: float
    trace_cov: float
    b_simple: float
    b_noise: float
    grad_hess_grad: float
    trace_hess_cov: float
    gsnr: np.ndarray
    n_zero_variance: int
    n: int
    ddof: int
    grad_rounding_bound: float
    flags: tuple[str, ...]
    confidence: ClassVar[None] = None

    @classmethod
    def from_grads(cls, grads, *, hessian=None, ddof: int = 0) -> GradientNoiseResult:
        r"""Noise statistics from the per-example gradients, stacked in rows.

        Parameters
        ----------
        grads : array_like, shape (N, p)
            Finite per-example gradients :math:`g_i`.
        hessian : array_like, shape (p, p) or (p,), optional
            Hessian :math:`H` of the mean loss, or its diagonal; without it
            ``b_noise`` and the curvature terms are NaN.
        ddof : int, default 0
            :math:`\Sigma` divides by ``N - ddof``: 0 for the population
            covariance (the default), 1 for the unbiased sample covariance.

        Returns
        -------
        GradientNoiseResult

        Examples
        --------
        >>> from lossvar import GradientNoiseResult
        >>> noise = GradientNoiseResult.from_grads([[1.0, 1.0], [2.0, 0.0], [3.0, 2.0]])
        >>> noise.grad_norm2, round(noise.trace_cov, 12), noise.gsnr.tolist()
        (5.0, 1.333333333333, [6.0, 1.5])
        """
        grads = as_finite_array(grads, "grads", ndim=2)
        n, p = grads.shape
        if n < 1 or p < 1:
            raise ValueError(f"`grads` must have shape (N, p) with N >= 1 and p >= 1; got {grads.shape}")
        ddof = as_int(ddof, "ddof", low=0, high=n - 1)
        hessian = _as_hessian(hessian, p)
        mean = grads.mean(axis=0)
        # Centered first (two-pass): the scatter of g_i - G, never E[g g^T] - G G^T.
        dev = grads - mean
        return cls._from_moments(mean, _scatter(dev, full=_is_full(hessian)), n, ddof, hessian,
                                 _max_norm(grads), np.abs(grads).max(axis=0))

    @classmethod
    def _from_moments(cls, mean, scatter, n, ddof, hessian, max_norm, max_abs,
                      curvature=None) -> GradientNoiseResult:
        """Build from G, the centered scatter (p, p) or its diagonal (p,), N, ddof, H, max ||g_i||,
        max_i |g_ij| and, when they come from Hessian-vector products, (G^T H G, tr(H Sigma))."""
        denom = n - ddof
        diag = np.diag(scatter) if scatter.ndim == 2 else scatter
        var = diag / denom
        g2 = float(mean @ mean)
        trace = float(var.sum())
        if curvature is not None:
            ghg, thc = curvature
        elif hessian is None:
            ghg = thc = float("nan")
        elif hessian.ndim == 1:
            ghg, thc = float(hessian @ (mean * mean)), float(hessian @ var)
        else:
            # tr(H Sigma) = sum_jk H_jk Sigma_kj = sum(H * Sigma^T), Sigma symmetric.
            ghg, thc = float(mean @ hessian @ mean), float(np.sum(hessian * scatter) / denom)
        bound = n * EPS * max_norm
        zero = math.sqrt(g2) <= bound
        # Zero to rounding: the ratios are those of G = 0, not of its rounding error.
        signal, curv, signal_j = (0.0, 0.0, np.zeros_like(mean)) if zero else (g2, ghg, mean * mean)
        # The same bound per coordinate: a spread of the g_ij no larger than the rounding of their mean.
        flat = np.sqrt(diag / n) <= n * EPS * max_abs
        n_flat = int(np.count_nonzero(flat))
        flags = tuple(name for name, on in (("grad_zero_to_rounding", zero),
                                            ("zero_variance_coordinates", n_flat > 0)) if on)
        return cls(
            grad=frozen(mean), grad_norm2=g2, trace_cov=trace, b_simple=float(ratio(trace, signal)),
            b_noise=float(ratio(thc, curv)), grad_hess_grad=ghg, trace_hess_cov=thc,
            gsnr=frozen(ratio(signal_j, np.where(flat, 0.0, var) if n_flat else var)),
            n_zero_variance=n_flat, n=int(n), ddof=int(ddof), grad_rounding_bound=float(bound),
            flags=flags,
        )

    def _row(self) -> dict:
        return dict(super()._row(), flags=" ".join(self.flags))

    def summary(self) -> str:
        """The statistics, one a line, and what the flags mean."""
        finite = self.gsnr[np.isfinite(self.gsnr)]
        gsnr = (f"median {np.median(finite):.4g}, range [{finite.min():.4g}, {finite.max():.4g}]"
                if finite.size else "no finite value")
        if self.n_zero_variance:
            gsnr += (f"; {self.n_zero_variance} of {self.gsnr.size} coordinates have zero variance to "
                     f"rounding (no finite GSNR) and are left out")
        lines = [
            f"GradientNoiseResult(n={self.n}, p={self.grad.size}, ddof={self.ddof}; "
            "Sigma divides by N - ddof)",
            f"  ||G||^2          {self.grad_norm2:.6g}",
            f"  tr Sigma         {self.trace_cov:.6g}",
            f"  B_simple         {self.b_simple:.6g}",
            f"  G^T H G          {self.grad_hess_grad:.6g}",
            f"  tr(H Sigma)      {self.trace_hess_cov:.6g}",
            f"  B_noise          {self.b_noise:.6g}",
            f"  GSNR             {gsnr}",
        ]
        if "grad_zero_to_rounding" in self.flags:
            lines.append(
                f"  G is zero to rounding: ||G|| = {math.sqrt(self.grad_norm2):.3g} <= "
                f"{self.grad_rounding_bound:.3g} = N eps max_i ||g_i||, a bound on the rounding error "
                f"of the mean gradient; B_simple, B_noise and the GSNR are those of G = 0")
        return "\n".join(lines)


def _max_norm(grads) -> float:
    """max_i ||g_i|| of the rows (0 for no rows)."""
    return math.sqrt(float(np.einsum("ij,ij->i", grads, grads).max(initial=0.0)))


def _as_hessian(hessian, p):
    if hessian is None:
        return None
    hessian = as_finite_array(hessian, "hessian")
    if hessian.shape not in ((p, p), (p,)):
        raise ValueError(
            f"`hessian` must have shape (p, p) or (p,) (its diagonal) with p={p}; "
            f"got an array of shape {hessian.shape}"
        )
    return hessian


def _is_full(hessian) -> bool:
    """The full p x p scatter is needed only for tr(H Sigma) with a full H."""
    return hessian is not None and hessian.ndim == 2


def _scatter(dev, *, full):
    """sum_i d_i d_i^T of centered rows d_i, or only its diagonal."""
    return dev.T @ dev if full else np.einsum("ij,ij->j", dev, dev)


def _merge_block(acc, block, *, full):
    """``(count, mean, scatter)`` of the rows so far (count 0: none) and one more block.

    The block is centered on its own mean (two-pass inside the block) and
    merged by the pairwise update of Chan, Golub & LeVeque (1979),
    ``S = S_a + S_b + n_a n_b / n delta delta^T`` with ``delta = m_b - m_a``,
    which never subtracts large uncentered sums. The scatter is the (p, p)
    matrix, or its diagonal unless ``full``. These are the first two moments
    of p-vectors with their cross products; :class:`lossvar.moments.Moments`
    holds up to the fourth moment of scalar values, with its own association
    of the same update.
    """
    nb = block.shape[0]
    mb = block.mean(axis=0)
    sb = _scatter(block - mb, full=full)
    na, ma, sa = acc
    if na == 0:
        return nb, mb, sb
    n = na + nb
    delta = mb - ma
    cross = np.outer(delta, delta) if full else delta * delta
    return n, ma + delta * (nb / n), sa + sb + cross * (na * nb / n)


def _mean_hvp(problem, w, X, y, V, rows):
    """H V over all of (X, y) for a stack V (m, p): the row-weighted mean of ``problem.hvp`` on
    tiles of ``rows`` examples (H is the mean of the examples' Hessians)."""
    n = X.shape[0]
    out = None
    for start in range(0, n, rows):
        Xc, yc = X[start:start + rows], y[start:start + rows]
        part = np.asarray(problem.hvp(w, Xc, yc, V), dtype=np.float64) * (Xc.shape[0] / n)
        out = part if out is None else out + part
    return out


def _curvature_from_hvp(problem, w, X, y, mean, ddof, block):
    r"""``(G^T H G, tr(H Sigma))`` from Hessian-vector products, with no dense H.

    :math:`\operatorname{tr}(H\Sigma) = \frac{1}{N - \mathrm{ddof}} \sum_i
    (g_i - G)^\top H (g_i - G)`: a second pass over the data recomputes each
    block's gradients, centres them on G and applies H to the stack.
    """
    n, p = X.shape[0], mean.size
    vectors = max(1, min(block, math.isqrt(_HVP_PAIRS)))
    rows = max(1, _HVP_PAIRS // vectors)
    ghg = float(mean @ _mean_hvp(problem, w, X, y, mean.reshape(1, p), rows)[0])
    total = 0.0
    for start in range(0, n, vectors):
        Xb, yb = X[start:start + vectors], y[start:start + vectors]
        dev = np.asarray(problem.grad(w, Xb, yb), dtype=np.float64) - mean
        total += float(np.einsum("ij,ij->", dev, _mean_hvp(problem, w, X, y, dev, rows)))
    return ghg, total / (n - ddof)


def gradient_noise(problem: Problem, data: Dataset, w: ArrayLike, *, block_size: int | None = None,
                   ddof: int = 0) -> GradientNoiseResult:
    r"""Exact gradient-noise statistics of a problem on a data set at ``w``, in blocks.

    Equal (to rounding) to ``GradientNoiseResult.from_grads(problem.grad(w, X, y),
    hessian=H)`` but one pass over the data in blocks of ``block_size``
    examples, so the N x p per-example gradients never exist at once: each
    block's mean and centered scatter are merged by the pairwise update of
    Chan, Golub & LeVeque (1979). :math:`\Sigma` divides by ``N - ddof`` (by
    N, the population normalization, by default).

    The curvature terms use what the problem offers (the Problem protocol,
    :class:`lossvar.typing.Problem`):

    - ``problem.hessian(w, X, y)``, a (p, p) matrix (or its diagonal):
      :math:`\operatorname{tr}(H\Sigma)` from the accumulated scatter matrix
      and H accumulated as the block-size weighted mean of the blocks'
      Hessians (exact: the mean loss is that weighted mean). One pass, O(p^2)
      memory;
    - else ``problem.hvp(w, X, y, v)``, Hessian-vector products:
      :math:`G^\top H G = G \cdot (H G)` and
      :math:`\operatorname{tr}(H\Sigma) = \frac{1}{N - \mathrm{ddof}}
      \sum_i (g_i - G)^\top H (g_i - G)`, from the products of H with the
      centred gradients of each block, after a first pass has given G. No
      dense H, O(p) memory per vector; the cost is N Hessian-vector products
      over the N examples (N^2 example-vector pairs), tiled so that one call
      sees about 2**16 of them;
    - else neither: ``b_noise`` and the curvature terms are NaN.

    Parameters
    ----------
    problem : Problem
        Anything with ``check_params(w, X)`` and ``grad(w, X, y)`` of shape
        (n, p), and optionally ``hessian`` or ``hvp`` as above.
    data : Dataset
        The N examples (anything with arrays ``X`` and ``y``).
    w : array_like, shape (p,)
        Parameters.
    block_size : int, optional
        Examples per block; by default about 2**20 / p (8 MB of gradients).
    ddof : int, default 0
        :math:`\Sigma` divides by ``N - ddof``.

    Returns
    -------
    GradientNoiseResult
        At a minimizer :math:`\|G\|` may be zero to rounding (at most
        ``grad_rounding_bound``): then ``flags`` says so and the noise scales
        are those of G = 0 rather than ratios of rounding errors. A coordinate
        with zero variance (to rounding) has GSNR ``inf`` and is counted in
        ``n_zero_variance``.

    References
    ----------
    McCandlish et al. (2018), arXiv:1812.06162, section 2.2; docs/theory.md,
    section 10.

    Examples
    --------
    >>> import numpy as np, lossvar
    >>> data = lossvar.datasets.load("breast_cancer")
    >>> noise = lossvar.gradient_noise(lossvar.datasets.problem_for(data), data, np.zeros(data.d))
    >>> round(noise.b_simple, 4), round(noise.b_noise, 4)
    (2.7598, 1.1969)
    """
    X, y = np.asarray(data.X, dtype=np.float64), np.asarray(data.y)
    w = as_finite_array(w, "w", ndim=1)
    problem.check_params(w, X)
    n = X.shape[0]
    if n < 1:
        raise ValueError("`data` must hold at least one example; got 0")
    ddof = as_int(ddof, "ddof", low=0, high=n - 1)
    block = (max(1, _BLOCK_ELEMENTS // w.size) if block_size is None
             else as_int(block_size, "block_size", low=1))
    hessian_of = getattr(problem, "hessian", None)
    acc: tuple = (0, None, None)
    hessian, max_norm, max_abs = None, 0.0, None
    for start in range(0, n, block):
        Xb, yb = X[start:start + block], y[start:start + block]
        hb = None if hessian_of is None else np.asarray(hessian_of(w, Xb, yb), dtype=np.float64)
        gb = problem.grad(w, Xb, yb)
        acc = _merge_block(acc, gb, full=hb is not None and hb.ndim == 2)
        max_norm = max(max_norm, _max_norm(gb))
        block_abs = np.abs(gb).max(axis=0)
        max_abs = block_abs if max_abs is None else np.maximum(max_abs, block_abs)
        if hb is not None:
            hessian = hb * (Xb.shape[0] / n) + (0.0 if hessian is None else hessian)
    _, mean, scatter = acc
    curvature = None
    if hessian is None and getattr(problem, "hvp", None) is not None:
        curvature = _curvature_from_hvp(problem, w, X, y, mean, ddof, block)
    return GradientNoiseResult._from_moments(mean, scatter, n, ddof, hessian, max_norm, max_abs, curvature)
