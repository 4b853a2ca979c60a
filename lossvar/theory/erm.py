"""The spread of the empirical-risk minimizer of least squares (docs/theory.md, section 8)."""

from __future__ import annotations

import numpy as np

from .._validate import as_finite_array, as_float, as_int
from ..typing import ArrayLike

__all__ = ["erm_spread"]


def erm_spread(noise_var: float, dim: int, n: ArrayLike) -> float | np.ndarray:
    r"""Exact :math:`E\|w_N - w^*\|^2` of least squares on N Gaussian examples.

    For the linear model :math:`y = x^T w^* + \varepsilon` with
    :math:`x \sim N(0, I_d)` and :math:`\varepsilon \sim N(0, \sigma^2)`
    independent, the minimizer of the empirical risk of N examples is
    :math:`w_N = (X^T X)^{-1} X^T y`, so
    :math:`w_N - w^* = (X^T X)^{-1} X^T \varepsilon` and
    :math:`E\|w_N - w^*\|^2 = \sigma^2\, E \operatorname{tr}(X^T X)^{-1}`.
    :math:`X^T X` is Wishart with N degrees of freedom and scale
    :math:`I_d`, whose inverse has mean :math:`I_d / (N - d - 1)`:

    .. math::

        E\|w_N - w^*\|^2 = \frac{\sigma^2 d}{N - d - 1}, \qquad N > d + 1,

    infinite for :math:`N \le d + 1`. It falls like 1/N, and grows with the
    noise: :math:`\sigma^2 = \sqrt{2 \operatorname{Var}(\mathrm{div})}` for
    the squared-error loss :math:`\mathrm{div} = \varepsilon^2/2`.

    Parameters
    ----------
    noise_var : float
        :math:`\sigma^2 \ge 0`.
    dim : int
        d >= 1, the number of features (no intercept).
    n : float or array_like
        N > d + 1, the examples of a data set (real values draw the curve
        between integers).

    Returns
    -------
    float or ndarray
        A float for a scalar ``n``, else one value per N.

    References
    ----------
    T. W. Anderson (2003), *An Introduction to Multivariate Statistical
    Analysis*, 3rd ed., Wiley, section 7.2 (the mean of an inverse Wishart
    matrix); docs/theory.md, section 8.
    """
    noise_var = as_float(noise_var, "noise_var", low=0)
    dim = as_int(dim, "dim", low=1)
    sizes = as_finite_array(n, "n")
    if np.any(sizes <= dim + 1):
        raise ValueError(f"`n` must be > dim + 1 = {dim + 1} (fewer examples leave the spread "
                         f"infinite); got {float(sizes.min())!r}")
    out = noise_var * dim / (sizes - dim - 1)
    return float(out) if out.ndim == 0 else out
