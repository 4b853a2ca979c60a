"""The batch mean and its moments (docs/theory.md, sections 1 and 3).

Section 1: the exact variance of the mean of a batch of ``B`` of ``N``
per-sample losses, drawn with or without replacement, or of ``B`` fresh
examples. Section 3: its exact fourth moment and kurtosis, and the exact
standard deviation of a Monte Carlo variance. :func:`population_moments` is
the one route to the moments of a fixed set of losses that these need.
"""

from __future__ import annotations

import numpy as np

from .._validate import as_choice, as_finite_array, as_int
from ..moments import MomentsPass, PopulationMoments
from ..typing import ArrayLike

__all__ = ["SCHEMES", "PopulationMoments", "batch_mean_fourth_moment", "batch_mean_kurtosis",
           "batch_mean_variance", "finite_population_factor", "fourth_moment_from_moments",
           "population_moments", "population_variance", "variance_se"]

#: The ways a batch is drawn from a fixed data set (:data:`lossvar.typing.Sampling`),
#: the package's default first.
SCHEMES = ("without_replacement", "with_replacement")


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
    docs/theory.md, section 1.
    """
    if n is None:
        return population_variance / batch_size
    return population_variance / batch_size * finite_population_factor(n, batch_size, sampling)


def population_variance(losses) -> float:
    """``s^2 = (1/N) sum (l_i - m)^2`` (ddof = 0), the variance of one uniform draw."""
    return float(np.var(np.asarray(losses, dtype=np.float64)))


def population_moments(losses: ArrayLike) -> PopulationMoments:
    r"""The mean, variance and central moments :math:`\mu_2, \mu_4` of N losses, in two passes.

    Everything the exact theory of every batch size needs from a fixed data
    set (:func:`batch_mean_variance`, :func:`fourth_moment_from_moments`):
    compute it once per data set. One pass takes the mean; one more takes the
    sums of the deviations ``d = l - mean`` and of their squares and fourth
    powers, leaf by leaf in a buffer that stays in cache, on numpy's own
    pairwise summation tree (so ``variance`` has the bits of ``np.var``).
    The mean's rounding error ``dm = mean(d)`` is removed algebraically,
    :math:`\mu_2 = \overline{d^2} - dm^2` and
    :math:`\mu_4 = \overline{d^4} - 4\,dm\,\overline{d^3} + 6\,dm^2\,\overline{d^2} - 3\,dm^4`;
    the :math:`\overline{d^3}` term is dropped where Cauchy-Schwarz bounds it
    below :math:`2^{-50}\mu_4` (a few units in the last place). Where it is
    not (losses whose mean is large against their spread), a second pass
    centres the deviations again, as :math:`y = d - dm`.

    Parameters
    ----------
    losses : array_like, shape (N,)
        Finite per-sample losses, N >= 1.

    Returns
    -------
    PopulationMoments
        All NaN but ``mean`` when the sum of the losses overflows.

    References
    ----------
    T. F. Chan, G. H. Golub & R. J. LeVeque (1983), "Algorithms for computing
    the sample variance: analysis and recommendations", Amer. Statist. 37:242
    (the corrected two-pass algorithm); docs/theory.md, section 3.

    See Also
    --------
    lossvar.moments.MomentsPass : the kernel, whose second pass an engine may
        share with a helper thread while it does other work.
    """
    return MomentsPass(losses).result()


# -- docs/theory.md, section 3: higher moments of the batch mean, error of a variance ---


def _population(losses) -> np.ndarray:
    x = as_finite_array(losses, "losses", ndim=1)
    if x.size < 2:
        raise ValueError(f"`losses` must hold at least 2 values (a population of N >= 2 examples); "
                         f"got N={x.size}")
    return x


def _srs_fourth_moment(m2: float, m4: float, n: int, b: int) -> float:
    """Fourth central moment of the mean of a simple random sample (2 <= b <= n)."""
    if n < 4:
        # The closed form is 0/0 here. The batch mean is -(N - B)/B times the mean
        # of the N - B examples left out, and N - B <= 1 for 2 <= B <= N <= 3.
        return ((n - b) / b) ** 4 * m4
    coef4 = n * n + n - 6 * n * b + 6 * b * b
    coef22 = 3 * n * (b - 1) * (n - b - 1)
    return (n - b) * (coef4 * m4 + coef22 * m2 * m2) / (float(b) ** 3 * (n - 1) * (n - 2) * (n - 3))


def _batch_moments(losses, batch_size, sampling) -> tuple[float, float]:
    """(variance, fourth central moment) of the batch mean, validated."""
    x = _population(losses)
    n = x.size
    sampling = as_choice(sampling, "sampling", SCHEMES)
    b = as_int(batch_size, "batch_size", low=1, high=n if sampling == "without_replacement" else None)
    pop = population_moments(x)
    m2, m4 = pop.mu2, pop.mu4
    var = batch_mean_variance(m2, b, n=n, sampling=sampling)
    return var, fourth_moment_from_moments(m2, m4, b, n=n, sampling=sampling)


def fourth_moment_from_moments(mu2: float, mu4: float, batch_size: int, *, n: int | None = None,
                               sampling: str = "with_replacement") -> float:
    """:func:`batch_mean_fourth_moment` from the population moments ``mu2``, ``mu4``
    (:func:`population_moments`: compute them once per data set for every batch size).

    ``n`` is None for ``B`` fresh i.i.d. draws from a population (the
    with-replacement form), else the size ``N`` of the fixed data set.
    """
    b = int(batch_size)
    if b == 1:  # one uniform draw under either scheme
        return float(mu4)
    if n is None or sampling != "without_replacement":
        return (mu4 + 3 * (b - 1) * mu2 * mu2) / float(b) ** 3
    return _srs_fourth_moment(mu2, mu4, int(n), b)


def batch_mean_fourth_moment(losses, batch_size, sampling) -> float:
    r"""Exact fourth central moment of the mean of a batch of ``B`` of the losses :math:`l_1..l_N`.

    With the population central moments :math:`\mu_r = \frac1N \sum_i (l_i - m)^r`:

    .. math::

        E(\bar\ell_B - m)^4 = \frac{\mu_4 + 3 (B - 1)\mu_2^2}{B^3}
        \quad\text{(B independent uniform draws)},

    .. math::

        E(\bar\ell_B - m)^4 = \frac{N - B}{B^3 (N-1)(N-2)(N-3)}
        \Big[(N^2 + N - 6NB + 6B^2)\,\mu_4 + 3N(B - 1)(N - B - 1)\,\mu_2^2\Big]

    without replacement (simple random sampling), for :math:`N \ge 4`; it is 0
    at :math:`B = N` and tends to the first form as :math:`N \to \infty`. For
    :math:`N \le 3` the bracket is 0/0 and the value is
    :math:`((N - B)/B)^4 \mu_4` (:math:`B \ge 2`), since the batch mean is
    :math:`-(N-B)/B` times the mean of the examples left out. Both forms give
    :math:`\mu_4` at ``B = 1``.

    The second form expands :math:`E(\sum_{k \le B} Y_k)^4` of draws without
    replacement into the averages of :math:`y_i^4`, :math:`y_i^3 y_j`,
    :math:`y_i^2 y_j^2`, :math:`y_i^2 y_j y_k`, :math:`y_i y_j y_k y_l` over
    distinct indices of the centred population (:math:`\sum y_i = 0`).

    Parameters
    ----------
    losses : array_like, shape (N,)
        The fixed per-example losses, N >= 2.
    batch_size : int
        B >= 1; at most N without replacement.
    sampling : {"with_replacement", "without_replacement"}

    Returns
    -------
    float

    References
    ----------
    J. W. Tukey (1950), "Some sampling simplified", J. Amer. Statist. Assoc.
    45:501; J. Wishart (1952), "Moment coefficients of the k-statistics in
    samples from a finite population", Biometrika 39:1; docs/theory.md, section 3.
    """
    return _batch_moments(losses, batch_size, sampling)[1]


def batch_mean_kurtosis(losses, batch_size, sampling) -> float:
    r"""Kurtosis :math:`\mu_{4,B} / \sigma_B^4` of the batch mean (3 for a normal law).

    :math:`\mu_{4,B}` from :func:`batch_mean_fourth_moment`, :math:`\sigma_B^2`
    from :func:`batch_mean_variance`. NaN where :math:`\sigma_B = 0` (the full
    batch without replacement, or equal losses). It is the factor that sets
    the relative error of a Monte Carlo variance (:func:`variance_se`).

    References
    ----------
    docs/theory.md, section 3.
    """
    var, m4 = _batch_moments(losses, batch_size, sampling)
    return m4 / (var * var) if var > 0 else float("nan")


def _replicates(replicates) -> np.ndarray:
    r = np.asarray(replicates)
    if r.ndim == 0:
        value = replicates.item() if isinstance(replicates, np.ndarray) else replicates
        return np.asarray(as_int(value, "replicates", low=2), dtype=np.float64)
    values = [as_int(v, "replicates", low=2) for v in r.ravel().tolist()]
    return np.asarray(values, dtype=np.float64).reshape(r.shape)


def variance_se(fourth_moment, variance, replicates):
    r"""Exact standard deviation of the sample variance (ddof = 1) of R i.i.d. values.

    .. math::

        \operatorname{SD}(S^2) = \sqrt{\frac{1}{R}\Big(\mu_4 - \sigma^4 \frac{R - 3}{R - 1}\Big)},

    for values with variance :math:`\sigma^2` and fourth central moment
    :math:`\mu_4`; :math:`\sigma^2\sqrt{2/(R - 1)}` for normal values
    (:math:`\mu_4 = 3\sigma^4`). For R batch means pass
    :func:`batch_mean_fourth_moment` and :func:`batch_mean_variance`; with
    plug-in moments (:math:`m_4` with divisor R and :math:`S^2`) it is the
    usual Monte Carlo standard error of a variance.

    Parameters
    ----------
    fourth_moment, variance : float or array_like
        :math:`\mu_4 \ge 0` and :math:`\sigma^2 \ge 0`; broadcast together
        with ``replicates``.
    replicates : int or array_like of int
        R >= 2.

    Returns
    -------
    float or ndarray
        A float when every input is a scalar.

    References
    ----------
    T. P. Morris, I. R. White & M. J. Crowther (2019), "Using simulation
    studies to evaluate statistical methods", Stat. Med. 38:2074, Table 6;
    docs/theory.md, section 3.
    """
    m4 = as_finite_array(fourth_moment, "fourth_moment")
    s2 = as_finite_array(variance, "variance")
    r = _replicates(replicates)
    try:
        shape = np.broadcast_shapes(m4.shape, s2.shape, r.shape)
    except ValueError:
        raise ValueError(f"`fourth_moment`, `variance` and `replicates` must broadcast together; got "
                         f"shapes {m4.shape}, {s2.shape} and {r.shape}") from None
    for name, a in (("fourth_moment", m4), ("variance", s2)):
        if np.any(a < 0):
            raise ValueError(f"`{name}` must be >= 0; got {float(a.min())!r}")
    excess = m4 - s2 * s2 * (r - 3) / (r - 1)
    if np.any(excess < 0):  # a true mu4 is >= sigma^4, which keeps this positive
        i = np.unravel_index(np.argmin(excess), shape)
        raise ValueError("`fourth_moment` must be >= variance**2 (R - 3)/(R - 1); got fourth_moment="
                         f"{float(np.broadcast_to(m4, shape)[i])!r}, "
                         f"variance={float(np.broadcast_to(s2, shape)[i])!r}")
    out = np.sqrt(excess / r)
    return float(out) if out.ndim == 0 else out
