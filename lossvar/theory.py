"""Exact results that the Monte Carlo engine is tested against (THEORY.md).

Section 1 of THEORY.md: the variance of the mean of a batch of size ``B``.
"""

from __future__ import annotations

import numpy as np


def finite_population_factor(n: int, batch_size: int, sampling: str) -> float:
    """The factor ``(N - B)/(N - 1)`` without replacement, 1 with replacement.

    For ``N = 1`` and ``B = 1`` the factor is 0 (the one example is the batch).
    """
    if sampling == "with_replacement":
        return 1.0
    if n == 1:
        return 0.0
    return (n - batch_size) / (n - 1)


def batch_mean_variance(population_variance: float, batch_size: int, *, n: int | None = None,
                        sampling: str = "with_replacement") -> float:
    """Exact variance of the mean of a batch of ``B`` per-sample losses.

    .. math::

        \\operatorname{Var}(\\bar\\ell_B) = \\frac{s^2}{B}
        \\quad\\text{(independent draws)},\\qquad
        \\frac{s^2}{B}\\,\\frac{N - B}{N - 1}
        \\quad\\text{(without replacement from } N\\text{)}

    where ``s^2`` is the population variance of the losses (ddof = 0 for a
    fixed data set of ``N`` examples; ``Var(div)`` for fresh data, where
    ``n`` is ``None`` and the batch is ``B`` new i.i.d. examples). The full
    batch of a fixed data set (``B = N`` without replacement) has variance 0.

    References
    ----------
    W. G. Cochran (1977), *Sampling Techniques*, 3rd ed., Theorem 2.2;
    THEORY.md section 1.
    """
    if n is None:
        return population_variance / batch_size
    return population_variance / batch_size * finite_population_factor(n, batch_size, sampling)


def population_variance(losses) -> float:
    """``s^2 = (1/N) sum (l_i - m)^2`` (ddof = 0), the variance of one uniform draw."""
    return float(np.var(np.asarray(losses, dtype=np.float64)))
