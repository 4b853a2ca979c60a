"""Exact results that the Monte Carlo engine is tested against (docs/theory.md).

Section 1 of docs/theory.md: the variance of the mean of a batch of size ``B``.
Section 3: its exact fourth moment, and the exact error of a Monte Carlo
variance. Section 6: the exact moment recursions of SGD on the quadratic with
additive noise, its constant-step floor and its asymptotic laws. Section 10:
one SGD step on a quadratic model, and the optimal learning rate.
"""

from __future__ import annotations

import _thread
import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from . import _threads
from ._validate import as_choice, as_finite_array, as_float, as_int
from .engine import scratch
from .sampling import SCHEMES
from .schedules import as_schedule
from .typing import ArrayLike


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
    """eta_1..eta_steps from a float, a schedule or an array of values."""
    if callable(schedule):
        s = as_schedule(schedule, "schedule")
        k = np.arange(1, steps + 1)
        try:
            eta = np.asarray(s(k), dtype=np.float64)
        except (TypeError, ValueError):  # a user callable of one int k at a time
            eta = np.array([s(int(i)) for i in k], dtype=np.float64)
    else:
        eta = np.asarray(schedule, dtype=np.float64)
        eta = np.full(steps, float(eta)) if eta.ndim == 0 else eta
        if eta.shape != (steps,):
            raise ValueError(f"`schedule` given as values must have length steps={steps}; "
                             f"got shape {eta.shape}")
    if not np.all(np.isfinite(eta)) or np.any(eta < 0):
        raise ValueError("`schedule` must give finite step sizes >= 0")
    return eta


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


# -- docs/theory.md, section 3: higher moments of the batch mean, error of a variance ---


def _population(losses) -> np.ndarray:
    x = as_finite_array(losses, "losses", ndim=1)
    if x.size < 2:
        raise ValueError(f"`losses` must hold at least 2 values (a population of N >= 2 examples); "
                         f"got N={x.size}")
    return x


def _central_moments(x: np.ndarray) -> tuple[float, float]:
    """Population ``mu2``, ``mu4`` (divisor N) of checked losses: :func:`population_moments`."""
    m = MomentsPass(x).result()
    return m.mu2, m.mu4


@dataclass(frozen=True)
class PopulationMoments:
    r"""The exact moments of a fixed set of ``N`` losses (divisor N), from :func:`population_moments`.

    Attributes
    ----------
    n : int
        N.
    mean : float
        ``losses.mean()``, bit for bit.
    variance : float
        :math:`s^2`, the mean squared deviation from ``mean``:
        :func:`population_variance` (``np.var``), bit for bit.
    mu2, mu4 : float
        The central moments :math:`\mu_2, \mu_4` of :func:`central_moments`,
        taken about the exact mean to working precision (the rounding error of
        ``mean`` removed); 0 for equal losses. ``mu2`` equals ``variance`` up
        to that rounding.
    """

    n: int
    mean: float
    variance: float
    mu2: float
    mu4: float


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

    See Also
    --------
    MomentsPass : the same numbers, with the second pass shared with a helper thread.
    """
    return MomentsPass(losses).result()


class MomentsPass:
    """:func:`population_moments` in steps: validated at once, the second pass shareable.

    Making it validates ``losses`` (errors name ``losses``) and takes their
    mean, in the calling thread. The second pass is cut into the leaves of
    numpy's pairwise summation tree; :meth:`start_helper` lets one helper
    thread sum leaves while the caller does other work, and :meth:`result`
    sums the leaves still untaken in the calling thread, waits for the
    helper's and adds them all up on the tree. Which thread sums which leaf
    never changes a bit: each leaf is one reduction of a fixed slice, and
    the tree that adds them up is fixed by N. :meth:`close` stops the helper
    (it takes no further leaf) and waits for it; :meth:`result` closes too.

    Attributes
    ----------
    x : ndarray
        The validated float64 losses (``losses`` itself where it is one).
    n : int
    mean : float
        ``x.mean()``, bit for bit.
    """

    def __init__(self, losses: ArrayLike):
        try:
            x = np.asarray(losses, dtype=np.float64)
        except (TypeError, ValueError):
            x = None
        if x is None or x.ndim != 1:
            x = as_finite_array(losses, "losses", ndim=1)  # raises, naming the problem
        if x.size == 0:
            raise ValueError("`losses` must be a non-empty 1-D array of per-sample losses; got size 0")
        # The finiteness check rides on the mean (a NaN or inf makes it non-finite);
        # only then does the full check run, for its message.
        with np.errstate(over="ignore"):
            mean = float(x.mean())
        self.x, self.n, self.mean = x, x.size, mean
        self._result: PopulationMoments | None = None
        self._helper: _threads.Later | None = None  # while a helper thread runs
        self._error: BaseException | None = None
        if not math.isfinite(mean):
            as_finite_array(x, "losses")
            nan = float("nan")  # finite losses whose sum overflows
            self._result = PopulationMoments(x.size, mean, nan, nan, nan)
            return
        self._leaves = _leaves(self.n)
        self._sums: list = [None] * len(self._leaves)
        self._claim = _thread.allocate_lock()  # guards _taken and _stop
        self._taken = 0
        self._stop = False

    def start_helper(self) -> None:
        """Let one helper thread sum leaves of the second pass from now on.

        The helper sums into a buffer of the calling thread's scratch (kept for
        the next call; :meth:`result` and :meth:`close` wait for the helper, so
        no two threads ever use it at once) under the caller's numpy error
        state; an error it meets is raised by :meth:`result`
        (:class:`lossvar._threads.Later`). A pass of one leaf is not shared.
        """
        if self._result is not None or self._helper is not None or len(self._leaves) < 2:
            return
        work = scratch("population_moments_helper", (3, min(self.n, _LEAF)))
        self._helper = _threads.Later(self._work, work)

    def _work(self, work):
        """Sum leaves, claimed one at a time, until none is left or the pass is closed."""
        leaves, sums, x, mean = self._leaves, self._sums, self.x, self.mean
        while True:
            with self._claim:
                i = self._taken
                if self._stop or i == len(leaves):
                    return
                self._taken = i + 1
            sums[i] = _powers(x, mean, *leaves[i], work)

    def close(self) -> None:
        """Stop the helper thread, if any, after the leaf it is summing, and wait for it."""
        running = self._helper
        if running is None:
            return
        with self._claim:
            self._stop = True
        self._helper = None
        running.wait()  # the helper must be done with the buffer before this thread goes on
        self._error = running.error

    def result(self) -> PopulationMoments:
        """The :class:`PopulationMoments`; leaves the helper has not taken are summed here."""
        if self._result is not None:
            return self._result
        work = scratch("population_moments", (3, min(self.n, _LEAF)))
        try:
            self._work(work)
        finally:
            self.close()
        if self._error is not None:
            raise self._error
        for i, s in enumerate(self._sums):  # leaves untaken when the pass was closed
            if s is None:
                self._sums[i] = _powers(self.x, self.mean, *self._leaves[i], work)
        sums = iter(self._sums)
        self._result = _finish(self.x, self.mean, *_pairwise(0, self.n, lambda a, b: next(sums)))
        return self._result


#: Values per leaf of the pairwise sums of :func:`population_moments`: the
#: work buffer (3 rows of 512 KiB, reused leaf after leaf) stays in cache, and
#: 10^6 losses take 16 leaves, so the Python cost per leaf is small beside the
#: arithmetic (measured: 2**15 and 2**17 are no faster).
_LEAF = 1 << 16

#: :func:`population_moments` corrects the deviations' mean ``dm`` algebraically
#: while ``dm**2 <= _SHIFT * s2`` (the mean's rounding error far below the
#: spread), dropping the ``dm * mean(d**3)`` term of ``mu4`` while its bound is
#: below ``_DROPPED * mu4``; otherwise it centres again in a second pass.
_SHIFT = 2.0**-20
_DROPPED = 2.0**-50


def _pairwise(start, n, leaf):
    """numpy's pairwise summation tree over ``n`` values from ``start``.

    ``leaf(a, b)`` returns a list of sums over values ``a..b-1``, each by one
    ``add.reduce`` along a contiguous row (the same tree below ``_LEAF``);
    above it the tree is numpy's own (halves rounded down to a multiple of
    8), so every total has the bits of one ``sum`` over the whole array.
    Leaves are visited left to right.
    """
    if n <= _LEAF:
        return leaf(start, start + n)
    half = n // 2
    half -= half % 8
    left, right = _pairwise(start, half, leaf), _pairwise(start + half, n - half, leaf)
    return [a + b for a, b in zip(left, right, strict=True)]


def _leaves(n) -> list[tuple[int, int]]:
    """The leaves ``(a, b)`` of :func:`_pairwise` over ``n`` values, left to right."""
    out: list[tuple[int, int]] = []

    def leaf(a, b):
        out.append((a, b))
        return [0.0]

    _pairwise(0, n, leaf)
    return out


def _finish(x, mean, sum_d, sum_d2, sum_d4) -> PopulationMoments:
    """The moments from the leaf sums of ``d = x - mean``, ``d**2`` and ``d**4``."""
    n = x.size
    s2 = sum_d2 / n  # np.var: the same deviations, squares and tree
    dm, d4 = sum_d / n, sum_d4 / n
    if dm * dm <= _SHIFT * s2 and 4.0 * abs(dm) * math.sqrt(s2 * d4) <= _DROPPED * d4:
        return PopulationMoments(n, mean, s2, s2 - dm * dm, d4 + dm * dm * (6.0 * s2 - 3.0 * dm * dm))
    # The mean is large against the spread (or the losses are equal): centre again.
    if x.min() == x.max():  # a rounded mean of equal values need not equal them
        return PopulationMoments(n, mean, s2, 0.0, 0.0)
    work = scratch("population_moments", (3, min(n, _LEAF)))

    def centred(a, b):
        w = work[:, :b - a]
        y = np.subtract(x[a:b], mean, out=w[0])
        np.subtract(y, dm, out=y)
        np.multiply(y, y, out=w[1])
        np.multiply(w[1], w[1], out=w[2])
        return np.add.reduce(w[1:], axis=1).tolist()

    sum_y2, sum_y4 = _pairwise(0, n, centred)
    return PopulationMoments(n, mean, s2, sum_y2 / n, sum_y4 / n)


def _powers(x, mean, a, b, work) -> list:
    """The sums of ``d``, ``d**2`` and ``d**4`` over ``d = x[a:b] - mean``, one leaf of the tree."""
    w = work[:, :b - a]
    d = np.subtract(x[a:b], mean, out=w[0])
    np.multiply(d, d, out=w[1])
    np.multiply(w[1], w[1], out=w[2])
    return np.add.reduce(w, axis=1).tolist()


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
    m2, m4 = _central_moments(x)
    var = batch_mean_variance(m2, b, n=n, sampling=sampling)
    return var, fourth_moment_from_moments(m2, m4, b, n=n, sampling=sampling)


def central_moments(losses) -> tuple[float, float]:
    """Population central moments ``(mu2, mu4)`` of the losses (divisor N), N >= 2.

    About the exact mean to working precision (:func:`population_moments`,
    whose ``mu2`` and ``mu4`` they are); the inputs of
    :func:`fourth_moment_from_moments`: computing them once per data set
    serves every batch size.
    """
    return _central_moments(_population(losses))


def fourth_moment_from_moments(mu2: float, mu4: float, batch_size: int, *, n: int | None = None,
                               sampling: str = "with_replacement") -> float:
    """:func:`batch_mean_fourth_moment` from the population moments ``mu2``, ``mu4``.

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


# -- docs/theory.md, section 10: one SGD step on a quadratic model ------------------------


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
