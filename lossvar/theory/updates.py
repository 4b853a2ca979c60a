"""The size of an SGD update at the constant-step stationary law (docs/theory.md, section 6)."""

from __future__ import annotations

import numpy as np

from .._validate import as_float
from .quadratic import constant_step_floor

__all__ = ["sgd_update_floor"]


def sgd_update_floor(eta: float, curvature: float, noise_var: float) -> float:
    r"""Stationary :math:`E[(w_{k+1} - w_k)^2]` of constant-step SGD on a 1-D quadratic.

    With gradient :math:`g_k = h (w_k - w^*) + \xi_k`, noise of variance
    :math:`\sigma^2` and :math:`w_{k+1} = w_k - \eta g_k`, the update is
    :math:`-\eta g_k`; at the stationary law :math:`w_k - w^*` has mean 0 and
    variance :math:`v^* = \eta\sigma^2 / (h (2 - \eta h))`
    (:func:`constant_step_floor`), independent of :math:`\xi_k`, so

    .. math::

        E[(w_{k+1} - w_k)^2] = \eta^2 \big(h^2 v^* + \sigma^2\big)
        = \frac{2\eta^2\sigma^2}{2 - \eta h} = 2 \eta h\, v^* .

    It does not depend on the start: with a constant step, SGD's updates do
    not shrink below it. On a diagonal quadratic each coordinate is its own
    1-D problem (one call per curvature). For a batch of B fresh noise
    vectors pass ``noise_var / B``.

    Parameters
    ----------
    eta : float
        The step size, in (0, 2/h).
    curvature : float
        h > 0.
    noise_var : float
        :math:`\sigma^2 \ge 0`, per coordinate.

    Returns
    -------
    float

    References
    ----------
    G. Ch. Pflug (1986), "Stochastic minimization with constant step-size:
    asymptotic laws", SIAM J. Control Optim. 24:655; docs/theory.md, section 6.
    """
    eta = as_float(eta, "eta", low=0, low_open=True)
    h = np.float64(as_float(curvature, "curvature", low=0, low_open=True))
    noise_var = as_float(noise_var, "noise_var", low=0)
    if eta * h >= 2:
        raise ValueError(f"`eta` must be in (0, 2/curvature) = (0, {2 / h:.6g}) for a stationary "
                         f"law; got {eta!r}")
    floor = constant_step_floor(eta, h, noise_var)
    return float(eta**2 * (h**2 * floor + noise_var))
