r"""SGD on the noisy quadratic, exactly (docs/theory.md, section 6).

The moment recursions of SGD on a diagonal quadratic with additive noise
(:func:`quadratic_moments`, with the Polyak-Ruppert average), the
constant-step floor and the stationary covariance, the asymptotic laws of
:math:`\eta_k = c/k^p` with the stall factor for p > 1, and the exact
p-values of Monte Carlo mean squares of iterates whose law is normal
(:func:`mean_square_pvalues`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy import stats as _st

from .._validate import as_finite_array, as_float, as_int

__all__ = ["NCX2_LIMIT", "Asymptote", "QuadraticMoments", "constant_step_floor", "inverse_k_exact",
           "mean_square_pvalues", "polyak_ruppert_limit", "quadratic_moments", "sgd_asymptote",
           "stall_factor", "stationary_covariance"]


# -- docs/theory.md, section 6: SGD on the quadratic with additive noise ---------------
#
# Indexing. docs/theory.md writes w_1 for the start and eta_k for the update from w_k
# to w_{k+1}. lossvar's tables count ``step`` = the number of updates made, so
# the iterate after n updates is w_{n+1}: step n <-> k = n + 1, and the update
# that produces step n uses eta_n (the schedule is called with n = 1, 2, ...).


@dataclass(frozen=True)
class QuadraticMoments:
    r"""Exact first and second moments of SGD on a diagonal quadratic (docs/theory.md, section 6).

    Every array is indexed by ``step`` n = 0, 1, ..., steps (the number of
    updates made; the iterate is docs/theory.md's :math:`w_{n+1}`). Per-coordinate
    arrays have shape ``(steps + 1, d)``.

    Attributes
    ----------
    step : ndarray of int, shape (steps + 1,)
    eta : ndarray, shape (steps + 1,)
        Step size of the update that produced this iterate (NaN at step 0).
    mean, var : ndarray, shape (steps + 1, d)
        :math:`m = E[w - w^*]` and :math:`v = \operatorname{Var}(w)` per coordinate.
    mse : ndarray, shape (steps + 1,)
        :math:`E\|w - w^*\|^2 = \sum_i m_i^2 + v_i`.
    avg_mean, avg_var : ndarray, shape (steps + 1, d)
        The same for the Polyak-Ruppert average :math:`\bar w` of the iterates
        :math:`w_1, \dots, w_{n+1}` (the start included, as in docs/theory.md).
    avg_mse : ndarray, shape (steps + 1,)
        :math:`E\|\bar w - w^*\|^2`.
    """

    step: np.ndarray
    eta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    mse: np.ndarray
    avg_mean: np.ndarray
    avg_var: np.ndarray
    avg_mse: np.ndarray


def _curvatures(mu) -> np.ndarray:
    h = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    if h.ndim != 1 or h.size == 0 or not np.all(np.isfinite(h)) or np.any(h <= 0):
        raise ValueError(f"`mu` must be a positive number or a 1-D array of positive numbers; "
                         f"got {mu!r}")
    return h


def _step_sizes(schedule, steps: int) -> np.ndarray:
    """eta_1..eta_steps from a float, a schedule or an array of values.

    A schedule (any callable of the step k = 1, 2, ...) is called once on the
    array of every k when it gives one value per k, else once per k.
    """
    if callable(schedule):
        k = np.arange(1, steps + 1)
        eta = _on_every_step(schedule, k)
        if eta is None:  # a callable of one int k at a time
            eta = np.array([_step_value(schedule, int(i)) for i in k], dtype=np.float64)
    else:
        eta = np.asarray(schedule, dtype=np.float64)
        eta = np.full(steps, float(eta)) if eta.ndim == 0 else eta
        if eta.shape != (steps,):
            raise ValueError(f"`schedule` given as values must have length steps={steps}; "
                             f"got shape {eta.shape}")
    bad = ~np.isfinite(eta) | (eta < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"`schedule` must give finite step sizes >= 0; got {float(eta[i])!r} at "
                         f"step k={i + 1}")
    return eta


def _on_every_step(schedule, k) -> np.ndarray | None:
    """The schedule's values on the array ``k``, or None where it takes no array."""
    try:
        eta = np.asarray(schedule(k), dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return eta if eta.shape == k.shape else None


def _step_value(schedule, k: int) -> float:
    out = schedule(k)
    try:
        return float(out)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`schedule` must return one real number per step; got {out!r} at step "
                        f"k={k}") from exc


def quadratic_moments(schedule, mu, sigma2, m1, v1=0.0, *, steps) -> QuadraticMoments:
    r"""Exact moments of SGD on :math:`f(w) = \sum_i \mu_i/2 (w_i - w_i^*)^2` with additive noise.

    The stochastic gradient is :math:`g_k = H (w_k - w^*) + \xi_k` with
    :math:`H = \mathrm{diag}(\mu)` and :math:`\xi_k` independent, mean 0,
    covariance :math:`\sigma^2 I`; :math:`w_{k+1} = w_k - \eta_k g_k`. Each
    coordinate is an independent 1-D problem with :math:`a_k = 1 - \eta_k \mu`:

    .. math::

        m_{k+1} = a_k m_k, \qquad v_{k+1} = a_k^2 v_k + \eta_k^2 \sigma^2,
        \qquad E (w_k - w^*)^2 = m_k^2 + v_k .

    The Polyak-Ruppert sum :math:`T_n = \sum_{i \le n} (w_i - w^*)` is tracked
    exactly with :math:`c_n = \operatorname{Cov}(w_n, T_n)`:
    :math:`\operatorname{Var} T_{n+1} = \operatorname{Var} T_n + v_{n+1} + 2 a_n c_n`,
    :math:`c_{n+1} = a_n c_n + v_{n+1}` (:math:`\xi_n` is independent of
    :math:`T_n`), and :math:`\bar w_n - w^* = T_n / n`.

    With Gaussian noise and a fixed start, every iterate and average is
    exactly normal with these moments. For a mini-batch of B fresh noise
    vectors pass ``sigma2 / B``.

    Parameters
    ----------
    schedule : float, callable or array_like
        A constant step, a schedule ``k -> eta_k`` (k = 1, 2, ...), or the
        values ``eta_1..eta_steps``.
    mu : float or array_like, shape (d,)
        Curvatures (eigenvalues of H), > 0.
    sigma2 : float
        Noise variance per coordinate, >= 0.
    m1 : float or array_like, shape (d,)
        :math:`E[w_1 - w^*]`, the start's offset.
    v1 : float or array_like, shape (d,)
        :math:`\operatorname{Var}(w_1)` (0 for a fixed start).
    steps : int
        Number of updates.

    Returns
    -------
    QuadraticMoments
        Indexed by step n = 0..steps (iterate :math:`w_{n+1}`).

    References
    ----------
    Robbins & Monro (1951), Ann. Math. Stat. 22:400; Bach & Moulines (2011),
    NeurIPS; Polyak & Juditsky (1992), SIAM J. Control Optim. 30:838;
    docs/theory.md, section 6.
    """
    steps = as_int(steps, "steps", low=1)
    h = _curvatures(mu)
    sigma2 = as_float(sigma2, "sigma2", low=0)
    eta = _step_sizes(schedule, steps)
    m = np.broadcast_to(np.asarray(m1, dtype=np.float64), h.shape).astype(np.float64)
    v = np.broadcast_to(np.asarray(v1, dtype=np.float64), h.shape).astype(np.float64)
    d = h.size
    mean, var = np.empty((steps + 1, d)), np.empty((steps + 1, d))
    tmean, tvar = np.empty((steps + 1, d)), np.empty((steps + 1, d))
    noise = (eta**2 * sigma2).tolist()
    for i in range(d):
        columns = _coordinate(eta.tolist(), noise, float(h[i]), float(m[i]), float(v[i]))
        mean[:, i], var[:, i], tmean[:, i], tvar[:, i] = columns
    count = np.arange(1, steps + 2, dtype=np.float64)[:, None]
    avg_mean, avg_var = tmean / count, tvar / count**2
    return QuadraticMoments(
        step=np.arange(steps + 1), eta=np.concatenate([[np.nan], eta]),
        mean=mean, var=var, mse=np.sum(mean**2 + var, axis=1),
        avg_mean=avg_mean, avg_var=avg_var, avg_mse=np.sum(avg_mean**2 + avg_var, axis=1),
    )


def _coordinate(eta, noise, h, m, v):
    """The recursions of one coordinate, in Python floats (a loop over numpy
    scalars or 1-element arrays costs ten times more per step)."""
    mean, var, tmean, tvar = [m], [v], [m], [v]
    t_m, t_v, c = m, v, v
    for e, b in zip(eta, noise, strict=True):
        a = 1.0 - e * h
        m = a * m
        c_prev = a * c
        v = a * a * v + b
        t_m += m
        t_v += v + 2.0 * c_prev
        c = c_prev + v
        mean.append(m)
        var.append(v)
        tmean.append(t_m)
        tvar.append(t_v)
    return mean, var, tmean, tvar


def constant_step_floor(eta, mu, sigma2) -> float:
    r"""Stationary :math:`E\|w - w^*\|^2` of constant-step SGD on the quadratic.

    .. math::

        v^* = \sum_i \frac{\eta \sigma^2}{\mu_i (2 - \eta \mu_i)},

    the trace of the solution of the discrete Lyapunov equation
    :math:`\Sigma = (I - \eta H)\Sigma(I - \eta H) + \eta^2 \sigma^2 I` for
    diagonal H (see :func:`stationary_covariance` for a general H). For one
    coordinate, :math:`v_k = v^* + a^{2(k-1)} (v_1 - v^*)`. With a batch of B
    fresh noise vectors pass ``sigma2 / B``. Requires :math:`0 < \eta < 2/\mu_i`.

    References
    ----------
    docs/theory.md, section 6; Liu, Ziyin & Ueda (2021), ICML.
    """
    h = _curvatures(mu)
    eta = as_float(eta, "eta", low=0, low_open=True)
    sigma2 = as_float(sigma2, "sigma2", low=0)
    if np.any(eta * h >= 2):
        raise ValueError(f"`eta` must be in (0, 2/mu_max) = (0, {2 / h.max():.6g}) for a "
                         f"stationary law; got {eta!r}")
    return float(np.sum(eta * sigma2 / (h * (2.0 - eta * h))))


def stationary_covariance(eta, hessian, noise_cov) -> np.ndarray:
    r"""Stationary covariance of constant-step SGD on a quadratic with additive noise.

    Solves :math:`\Sigma = (I - \eta H)\,\Sigma\,(I - \eta H) + \eta^2 S`
    (:func:`scipy.linalg.solve_discrete_lyapunov`); its trace is the floor
    of :math:`E\|w - w^*\|^2`. Requires the spectral radius of
    :math:`I - \eta H` below 1.

    Parameters
    ----------
    eta : float
    hessian : array_like, shape (d, d)
        Symmetric positive definite H.
    noise_cov : array_like, shape (d, d)
        Covariance S of the gradient noise.

    References
    ----------
    docs/theory.md, section 6; Liu, Ziyin & Ueda (2021), ICML.
    """
    eta = as_float(eta, "eta", low=0, low_open=True)
    H = as_finite_array(hessian, "hessian", ndim=2)
    S = as_finite_array(noise_cov, "noise_cov", ndim=2)
    A = np.eye(H.shape[0]) - eta * H
    radius = float(np.max(np.abs(np.linalg.eigvals(A))))
    if radius >= 1:
        raise ValueError(f"`eta` must make I - eta H a contraction (spectral radius < 1); got "
                         f"eta={eta!r} with radius {radius:.6g}")
    return scipy.linalg.solve_discrete_lyapunov(A, eta**2 * S)


def inverse_k_exact(k, mu, sigma2):
    r"""Exact :math:`E(w_k - w^*)^2 = \sigma^2 / (\mu^2 (k - 1))` for :math:`\eta_k = 1/(\mu k)`.

    The first update has :math:`a_1 = 0`, which forgets the start, and from
    then on :math:`w_{k}` is the running mean of :math:`w^* - \xi_j / \mu`,
    ``j < k``. ``k`` is docs/theory.md's iterate index (k >= 2), i.e. the value
    after ``k - 1`` updates: after n updates, :math:`\sigma^2/(\mu^2 n)`.

    References
    ----------
    docs/theory.md, section 6.
    """
    k = np.asarray(k, dtype=np.float64)
    if np.any(k < 2):
        raise ValueError(f"`k` must be >= 2 (the iterate after at least one update); got {k!r}")
    out = sigma2 / (mu**2 * (k - 1.0))
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class Asymptote:
    r"""Leading behaviour :math:`E(w_k - w^*)^2 \sim C\, L(k)\, k^{-a}` of SGD with :math:`\eta_k = c/k^p`.

    Attributes
    ----------
    exponent : float
        a (0 for a plateau or a stall).
    constant : float
        C, or NaN where it depends on the start and the early noise.
    log_factor : bool
        Whether :math:`L(k) = \ln k` (the boundary 2 c mu = 1), else 1.
    regime : str
        "constant", "c/k, 2 c mu > 1", "c/k, 2 c mu = 1", "c/k, 2 c mu < 1",
        "c/k^p, 1/2 < p < 1", "c/k^p, p <= 1/2" or "c/k^p, p > 1 (stall)".
    note : str
    """

    exponent: float
    constant: float
    log_factor: bool
    regime: str
    note: str


def sgd_asymptote(c, p, mu, sigma2) -> Asymptote:
    r"""The asymptotic law of :math:`E(w_k - w^*)^2` on the 1-D quadratic for :math:`\eta_k = c/k^p`.

    - p = 0 (constant step c < 2/mu): the floor
      :math:`c\sigma^2/(\mu(2 - c\mu))` (:func:`constant_step_floor`);
    - p = 1, 2 c mu > 1: :math:`k E \to c^2\sigma^2/(2c\mu - 1)`;
    - p = 1, 2 c mu = 1: :math:`E \sim c^2 \sigma^2 \ln k / k`;
    - p = 1, 2 c mu < 1: :math:`E \sim C k^{-2c\mu}`, C set by the start and the
      early noise (the bias decays as :math:`m_1 k^{-c\mu}/\Gamma(1 - c\mu)`);
    - 0 < p < 1 (both 1/2 < p < 1 and p <= 1/2):
      :math:`E \sim c\sigma^2/(2\mu k^p)`, with relative corrections of order
      :math:`k^{p-1} p/(2c\mu)`: the approach is slow as p -> 1;
    - p > 1: stalls; the mean tends to :math:`m_1 \prod_k (1 - c\mu/k^p)`
      (:func:`stall_factor`), a nonzero start-dependent limit.

    References
    ----------
    Robbins & Monro (1951); Bach & Moulines (2011), NeurIPS; docs/theory.md, section 6.
    """
    c = as_float(c, "c", low=0, low_open=True)
    p = as_float(p, "p", low=0)
    mu = as_float(mu, "mu", low=0, low_open=True)
    sigma2 = as_float(sigma2, "sigma2", low=0)
    if p == 0:
        return Asymptote(0.0, constant_step_floor(c, mu, sigma2), False, "constant",
                         "plateau at the constant-step floor")
    if p == 1:
        r = 2 * c * mu
        if r > 1:
            return Asymptote(1.0, c * c * sigma2 / (r - 1), False, "c/k, 2 c mu > 1",
                             "k E -> c^2 sigma^2 / (2 c mu - 1), smallest at c = 1/mu")
        if r == 1:
            return Asymptote(1.0, c * c * sigma2, True, "c/k, 2 c mu = 1",
                             "E ~ c^2 sigma^2 ln(k) / k")
        return Asymptote(r, float("nan"), False, "c/k, 2 c mu < 1",
                         "slow: E ~ C k^(-2 c mu), C depends on the start and early noise")
    if p < 1:
        regime = "c/k^p, 1/2 < p < 1" if p > 0.5 else "c/k^p, p <= 1/2"
        return Asymptote(p, c * sigma2 / (2 * mu), False, regime,
                         "E ~ c sigma^2 / (2 mu k^p); converges in mean square for any p in "
                         "(0, 1), slowly")
    return Asymptote(0.0, float("nan"), False, "c/k^p, p > 1 (stall)",
                     "sum eta_k < inf: the mean tends to m_1 * stall_factor(c, p, mu) != 0")


def stall_factor(c, p, mu, *, terms: int = 10**6) -> float:
    r"""The limit :math:`\prod_{k \ge 1} (1 - c\mu/k^p)` of :math:`m_k / m_1` for p > 1.

    For p = 2 it is exactly :math:`\sin(\pi\sqrt{c\mu})/(\pi\sqrt{c\mu})`
    (Euler's product for the sine). For other p the product is taken over
    ``terms`` factors and the tail :math:`\exp(-c\mu \sum_{k > K} k^{-p})`
    is added with the integral estimate :math:`K^{1-p}/(p-1)`.

    References
    ----------
    docs/theory.md, section 6.
    """
    c = as_float(c, "c", low=0, low_open=True)
    p = as_float(p, "p", low=1, low_open=True)
    mu = as_float(mu, "mu", low=0, low_open=True)
    if p == 2:
        x = np.pi * np.sqrt(c * mu)
        return float(np.sin(x) / x)
    terms = as_int(terms, "terms", low=1)
    k = np.arange(1, terms + 1, dtype=np.float64)
    factors = 1.0 - c * mu / k**p
    if np.any(factors == 0):
        return 0.0
    sign = -1.0 if np.count_nonzero(factors < 0) % 2 else 1.0
    log_tail = -c * mu * (terms + 0.5) ** (1 - p) / (p - 1)
    return float(sign * np.exp(np.sum(np.log(np.abs(factors))) + log_tail))


def polyak_ruppert_limit(mu, sigma2) -> float:
    r"""The limit :math:`n E\|\bar w_n - w^*\|^2 \to \sum_i \sigma^2/\mu_i^2`.

    :math:`\operatorname{tr}(H^{-1} S H^{-1})` for noise covariance
    :math:`S = \sigma^2 I`: the Cramer-Rao-optimal rate, reached by averaging
    for slowly decaying steps (1/2 < p < 1) and for a constant step on a
    quadratic, but not for c/k with 2 c mu < 1.

    References
    ----------
    Polyak & Juditsky (1992), SIAM J. Control Optim. 30:838; docs/theory.md, section 6.
    """
    h = _curvatures(mu)
    return float(np.sum(sigma2 / h**2))


#: Above this noncentrality :func:`mean_square_pvalues` takes the normal law: scipy's
#: noncentral chi-square series takes time growing like its square root (seconds at
#: 1e16, and NaN from about 1e12), and the law is then normal to within its skewness,
#: about nc^(-1/2) = 1e-5.
NCX2_LIMIT = 1e10


def mean_square_pvalues(mc_mean, replicates, mean, var):
    r"""Exact two-sided p-values of Monte Carlo means of :math:`(w - w^*)^2`.

    For R independent runs whose :math:`w - w^*` is exactly
    :math:`N(m, v)` (SGD on the quadratic with Gaussian noise and a fixed
    start: :func:`quadratic_moments` gives m and v), the sum of
    :math:`(w - w^*)^2 / v` over the runs is noncentral chi-square,

    .. math::

        \frac{R\,\overline{(w - w^*)^2}}{v} \sim \chi'^2_{R}(\lambda),
        \qquad \lambda = \frac{R\, m^2}{v},

    and the p-value of an observed mean is :math:`\min(1, 2\min(F, 1 - F))`
    with F its distribution function there. Above :data:`NCX2_LIMIT`, or
    where scipy's series fails, the normal law with the exact mean
    :math:`m^2 + v` and standard deviation
    :math:`\sqrt{(2 v^2 + 4 m^2 v)/R}` is used instead.

    Parameters
    ----------
    mc_mean : float or array_like
        The Monte Carlo means of :math:`(w - w^*)^2`.
    replicates : int or array_like
        R, the runs behind each mean, >= 1.
    mean, var : float or array_like
        The exact mean m and variance v >= 0 of :math:`w - w^*`; all four
        arguments broadcast together.

    Returns
    -------
    ndarray
        NaN where v = 0 (a deterministic iterate, such as the fixed start).

    References
    ----------
    N. L. Johnson, S. Kotz & N. Balakrishnan (1995), *Continuous Univariate
    Distributions*, vol. 2, 2nd ed., chapter 29 (the noncentral chi-square
    law, its mean :math:`R + \lambda` and variance :math:`2(R + 2\lambda)`);
    docs/theory.md, section 6.
    """
    try:
        x, r, m, v = np.broadcast_arrays(*(np.asarray(a, dtype=float)
                                           for a in (mc_mean, replicates, mean, var)))
    except ValueError:
        raise ValueError("`mc_mean`, `replicates`, `mean` and `var` must broadcast together; got "
                         "shapes " + ", ".join(str(np.shape(a)) for a in (mc_mean, replicates, mean, var))
                         ) from None
    if np.any(~(r >= 1)):
        raise ValueError(f"`replicates` must be >= 1; got {float(r[~(r >= 1)][0])!r}")
    if np.any(~(v >= 0)):
        raise ValueError(f"`var` must be >= 0; got {float(v[~(v >= 0)][0])!r}")
    ok = v > 0
    safe_v = np.where(ok, v, 1.0)
    df, nc = r, r * m**2 / safe_v
    cdf, sf = np.full(x.shape, np.nan), np.full(x.shape, np.nan)
    series = ok & (nc <= NCX2_LIMIT)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        q = (r * x / safe_v)[series]
        cdf[series] = _st.ncx2.cdf(q, df[series], nc[series])
        sf[series] = _st.ncx2.sf(q, df[series], nc[series])
        p = np.minimum(1.0, 2.0 * np.minimum(cdf, sf))
        z = (x - m**2 - v) / np.sqrt((2.0 * v**2 + 4.0 * m**2 * v) / r)
        normal = 2.0 * _st.norm.sf(np.abs(z))
    p = np.where(np.isfinite(p) & np.isfinite(cdf) & np.isfinite(sf), p, normal)
    return np.where(ok, p, np.nan)
