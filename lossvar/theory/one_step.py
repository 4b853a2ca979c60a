r"""One SGD step on a quadratic model, and the optimal learning rate (docs/theory.md, section 10).

The expected loss after one step with a batch of B examples drawn with or
without replacement, and the step size that minimizes it, as functions of
the gradient G, the Hessian H and the per-example gradient covariance
:math:`\Sigma` (McCandlish et al. 2018, section 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import as_choice, as_finite_array, as_float, as_int
from .batch import SCHEMES, finite_population_factor

__all__ = ["OneStep", "one_step_expected_loss", "optimal_learning_rate"]


@dataclass(frozen=True)
class OneStep:
    r"""The best single SGD step of a quadratic model (McCandlish et al. 2018, eqs. 2.4-2.6).

    Attributes
    ----------
    learning_rate : float or ndarray
        :math:`\epsilon_{opt} = \|G\|^2 / (G^T H G + c_B \operatorname{tr}(H\Sigma))`.
    improvement : float or ndarray
        :math:`\Delta L_{opt} = \|G\|^4 / (2 (G^T H G + c_B \operatorname{tr}(H\Sigma)))`,
        the expected decrease of the loss at :math:`\epsilon_{opt}`.
    eps_max : float
        :math:`\|G\|^2 / G^T H G`, the best step of the exact gradient.
    improvement_max : float
        :math:`\|G\|^4 / (2 G^T H G)`.
    b_noise : float
        :math:`\operatorname{tr}(H\Sigma) / G^T H G`; for independent draws
        :math:`\epsilon_{opt} = \epsilon_{max}/(1 + B_{noise}/B)`.
    batch_size : int or ndarray of int
        B; the first two fields have its shape.
    """

    learning_rate: float | np.ndarray
    improvement: float | np.ndarray
    eps_max: float
    improvement_max: float
    b_noise: float
    batch_size: int | np.ndarray


def _gradient_model(grad, hessian, cov) -> tuple[float, float, float]:
    """``(||G||^2, G^T H G, tr(H Sigma))`` after checking the shapes agree."""
    g = as_finite_array(grad, "grad", ndim=1)
    if g.size == 0:
        raise ValueError("`grad` must have at least one entry; got shape (0,)")
    p = g.size
    h = as_finite_array(hessian, "hessian", ndim=2)
    s = as_finite_array(cov, "cov", ndim=2)
    for name, a in (("hessian", h), ("cov", s)):
        if a.shape != (p, p):
            raise ValueError(f"`{name}` must have shape (p, p) = ({p}, {p}) to match `grad` of shape "
                             f"({p},); got shape {a.shape}")
    # tr(H Sigma) = sum_ij H_ij Sigma_ji, without forming the product
    return float(g @ g), float(g @ h @ g), float(np.einsum("ij,ji->", h, s))


def _noise_factor(batch_size, n, sampling):
    """``(B, c_B)``: c_B = 1/B for independent draws, (N - B)/(B (N - 1)) without replacement."""
    sampling = as_choice(sampling, "sampling", SCHEMES)
    if n is None and sampling == "without_replacement":
        raise ValueError("`n` (the number of examples batches are drawn from) is required with "
                         "sampling='without_replacement'; got None. 'without_replacement' is the default "
                         "(what a shuffling data loader does): pass n=N, or sampling='with_replacement' "
                         "for independent draws or fresh data")
    n = None if n is None else as_int(n, "n", low=1)
    high = n if sampling == "without_replacement" else None
    arr = np.asarray(batch_size)
    if arr.ndim == 0:
        b = as_int(arr.item() if isinstance(batch_size, np.ndarray) else batch_size, "batch_size",
                   low=1, high=high)
        return b, finite_population_factor(n, b, sampling) / b
    sizes = [as_int(v, "batch_size", low=1, high=high) for v in arr.ravel().tolist()]
    c = [finite_population_factor(n, b, sampling) / b for b in sizes]
    return (np.asarray(sizes, dtype=np.int64).reshape(arr.shape),
            np.asarray(c, dtype=np.float64).reshape(arr.shape))


def one_step_expected_loss(loss, grad, hessian, cov, batch_size, learning_rate, *, n=None,
                           sampling="without_replacement"):
    r"""Expected loss after one SGD step with a batch of size B on a quadratic model.

    .. math::

        E[L(w - \epsilon g_B)] = L - \epsilon \|G\|^2
        + \frac{\epsilon^2}{2}\big(G^T H G + c_B \operatorname{tr}(H\Sigma)\big),

    with :math:`c_B = 1/B` for B independent uniform draws and
    :math:`c_B = (N - B)/(B (N - 1))` for a batch drawn without replacement
    from N examples (0 for the full batch), since
    :math:`\operatorname{Cov}(g_B) = c_B \Sigma`. Exact when L is quadratic
    with Hessian H; a second-order model otherwise.

    Parameters
    ----------
    loss : float
        L(w), the full-data loss.
    grad : array_like, shape (p,)
        G, the full gradient (mean of the per-example gradients).
    hessian : array_like, shape (p, p)
        H.
    cov : array_like, shape (p, p)
        :math:`\Sigma`, the covariance of one per-example gradient drawn
        uniformly, normalized by N.
    batch_size : int or array_like of int
        B >= 1 (at most ``n`` without replacement); broadcast with ``learning_rate``.
    learning_rate : float or array_like
        :math:`\epsilon \ge 0`.
    n : int, optional
        N, required with ``sampling="without_replacement"`` (the default;
        ignored otherwise).
    sampling : {"without_replacement", "with_replacement"}, default "without_replacement"
        How the batch is drawn: without replacement from N examples (what a
        shuffling data loader does, the package's default), or B independent
        draws ("with_replacement", which also covers fresh data).

    Returns
    -------
    float or ndarray
        A float when ``batch_size`` and ``learning_rate`` are scalars.

    References
    ----------
    S. McCandlish, J. Kaplan, D. Amodei & OpenAI Dota Team (2018), "An
    Empirical Model of Large-Batch Training", arXiv:1812.06162, eqs. 2.3-2.6;
    docs/theory.md, section 10.
    """
    loss = as_float(loss, "loss")
    gg, ghg, tr_hs = _gradient_model(grad, hessian, cov)
    _, c = _noise_factor(batch_size, n, sampling)
    eps = as_finite_array(learning_rate, "learning_rate")
    if np.any(eps < 0):
        raise ValueError(f"`learning_rate` must be >= 0; got {float(eps.min())!r}")
    try:
        shape = np.broadcast_shapes(eps.shape, np.shape(c))
    except ValueError:
        raise ValueError(f"`batch_size` and `learning_rate` must broadcast together; got shapes "
                         f"{np.shape(c)} and {eps.shape}") from None
    out = np.broadcast_to(loss - eps * gg + 0.5 * eps**2 * (ghg + c * tr_hs), shape)
    return float(out) if out.ndim == 0 else out.copy()


def optimal_learning_rate(grad, hessian, cov, batch_size, *, n=None,
                          sampling="without_replacement") -> OneStep:
    r"""The step size that minimizes :func:`one_step_expected_loss`, and its gain.

    .. math::

        \epsilon_{opt} = \frac{\|G\|^2}{G^T H G + c_B \operatorname{tr}(H\Sigma)},
        \qquad
        \Delta L_{opt} = \frac{\|G\|^4}{2\,(G^T H G + c_B \operatorname{tr}(H\Sigma))},

    so that :math:`\epsilon_{opt} = \epsilon_{max}/(1 + B_{noise}/B)` and
    :math:`\Delta L_{opt} = \Delta L_{max}/(1 + B_{noise}/B)` for independent
    draws (:math:`c_B = 1/B`), with :math:`B_{noise} = \operatorname{tr}(H\Sigma)/G^T H G`.
    Parameters as in :func:`one_step_expected_loss` (``sampling`` defaults
    to ``"without_replacement"``, which needs ``n``); requires
    :math:`G^T H G > 0` (else no finite step is best) and
    :math:`\operatorname{tr}(H\Sigma) \ge 0`.

    Returns
    -------
    OneStep
        ``learning_rate`` and ``improvement`` have the shape of ``batch_size``.

    References
    ----------
    S. McCandlish, J. Kaplan, D. Amodei & OpenAI Dota Team (2018), "An
    Empirical Model of Large-Batch Training", arXiv:1812.06162, eqs. 2.4-2.6;
    docs/theory.md, section 10.
    """
    gg, ghg, tr_hs = _gradient_model(grad, hessian, cov)
    if not ghg > 0:
        raise ValueError(f"`hessian` must have positive curvature along `grad` (G^T H G > 0; else -G "
                         f"is no descent direction of a convex quadratic model); got G^T H G = {ghg!r}")
    if tr_hs < 0:
        raise ValueError(f"`hessian` and `cov` must give tr(H cov) >= 0 (both positive semidefinite); "
                         f"got {tr_hs!r}")
    b, c = _noise_factor(batch_size, n, sampling)
    curvature = ghg + c * tr_hs  # E[g_B^T H g_B], the curvature of the expected loss in epsilon
    lr, gain = gg / curvature, gg * gg / (2 * curvature)
    if np.ndim(b) == 0:
        lr, gain = float(lr), float(gain)
    return OneStep(learning_rate=lr, improvement=gain, eps_max=gg / ghg,
                   improvement_max=gg * gg / (2 * ghg), b_noise=tr_hs / ghg, batch_size=b)
