r"""Adaptive-batch tests of one batch: the norm, inner-product and orthogonality tests.

Each takes the B per-example gradients of one batch and returns the
critical tolerance: the test passes for every :math:`\theta` at or above it.
They use the sample normalization (divide by B - 1), as the papers do.

References
----------
R. H. Byrd, G. M. Chin, J. Nocedal, Y. Wu (2012), "Sample size selection in
optimization methods for machine learning", Math. Program. 134:127-155.
R. Bollapragada, R. Byrd, J. Nocedal (2018), "Adaptive Sampling Strategies for
Stochastic Optimization", SIAM J. Optim. 28:3312-3343, arXiv:1710.11258.
"""

from __future__ import annotations

import numpy as np

from .._validate import as_finite_array
from ..typing import ArrayLike

__all__ = ["inner_product_test", "norm_test", "orthogonality_test"]


def _batch(grads):
    """Validated (B, p) gradients, their mean g and ||g||^2 > 0."""
    grads = as_finite_array(grads, "grads", ndim=2)
    if grads.shape[0] < 2 or grads.shape[1] < 1:
        raise ValueError(
            f"`grads` must have shape (B, p) with B >= 2 per-example gradients; got {grads.shape}"
        )
    g = grads.mean(axis=0)
    g2 = float(g @ g)
    if g2 == 0:
        raise ValueError("`grads` must have a nonzero mean gradient g; the tests divide by ||g||^2")
    return grads, g, g2


def norm_test(grads: ArrayLike) -> float:
    r"""Largest :math:`\theta` for which the norm test of a batch passes.

    .. math::

        \theta^2 = \frac{\sum_i \|g_i - g\|^2}{(B - 1)\, B\, \|g\|^2}

    (Byrd, Chin, Nocedal & Wu 2012, eq. 3.9, with the sample variance),
    where :math:`g_i` are the B per-example gradients and g their mean. It is
    the batch's own simple noise scale divided by B:
    :math:`\theta^2 = \hat B_\mathrm{simple} / B` with
    :math:`\hat B_\mathrm{simple}` = ``lossvar.GradientNoiseResult.from_grads(grads,
    ddof=1).b_simple``, so the test with parameter :math:`\theta` asks for
    :math:`B \ge B_\mathrm{simple}/\theta^2`. Also
    :math:`\theta_\mathrm{norm}^2 = \theta_\mathrm{ip}^2 + \theta_\mathrm{orth}^2`.

    Parameters
    ----------
    grads : array_like, shape (B, p)
        Per-example gradients of one batch, B >= 2, with nonzero mean.

    Returns
    -------
    float
    """
    arr, g, g2 = _batch(grads)
    b = arr.shape[0]
    dev = arr - g
    return float(np.sqrt(np.sum(dev * dev) / (b - 1) / b / g2))


def inner_product_test(grads: ArrayLike) -> float:
    r"""Largest :math:`\theta` for which the inner-product test of a batch passes.

    .. math::

        \theta^2 = \frac{\sum_i (g_i \cdot g - \|g\|^2)^2}{(B - 1)\, B\, \|g\|^4}

    (Bollapragada, Byrd & Nocedal 2018, eq. 2.6): the variance of the
    component of the gradients along g only, so it allows smaller batches than
    the norm test.

    Parameters
    ----------
    grads : array_like, shape (B, p)
        Per-example gradients of one batch, B >= 2, with nonzero mean.

    Returns
    -------
    float
    """
    arr, g, g2 = _batch(grads)
    b = arr.shape[0]
    dots = arr @ g - g2
    return float(np.sqrt(np.sum(dots * dots) / (b - 1) / b / (g2 * g2)))


def orthogonality_test(grads: ArrayLike) -> float:
    r"""Largest :math:`\nu` for which the orthogonality test of a batch passes.

    .. math::

        \nu^2 = \frac{\sum_i \|g_i - (g_i \cdot g / \|g\|^2)\, g\|^2}{(B - 1)\, B\, \|g\|^2}

    (Bollapragada, Byrd & Nocedal 2018, eq. 3.3): the variance of the component of the
    gradients orthogonal to g, which the inner-product test ignores.

    Parameters
    ----------
    grads : array_like, shape (B, p)
        Per-example gradients of one batch, B >= 2, with nonzero mean.

    Returns
    -------
    float
    """
    arr, g, g2 = _batch(grads)
    b = arr.shape[0]
    orth = arr - np.outer(arr @ g / g2, g)
    return float(np.sqrt(np.sum(orth * orth) / (b - 1) / b / g2))
