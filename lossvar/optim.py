"""Optimizers as pure functions, in optax's shape.

A factory closes over the hyper-parameters and returns an :class:`Optimizer`
``(init, step, name, hyperparams)``::

    opt = adam(1e-3)
    state = opt.init(params)
    params, state = opt.step(params, grads, state)

The state is an immutable NamedTuple whose ``count`` is the number of steps
already taken; a step makes update ``t = count + 1`` (bias correction starts
at t = 1) with step size ``lr(t)``. Nothing mutates its inputs. Every
operation is elementwise with scalar hyper-parameters, so parameters may have
any leading shape: a stack of R replicate parameter vectors, shape (R, d),
advances in one call, bit-identical to R separate runs on shape (d,).

``lr`` is a positive float or a schedule, a callable of the step
k = 1, 2, ... (:mod:`lossvar.schedules`). Arrays are float64.

Where libraries differ (docs/theory.md, section 9), the options reach each
convention exactly; each docstring says which setting matches PyTorch,
optax and Keras. The lecture's RMSProp and Adam put eps inside the square
root (``eps_in_sqrt=True``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from lossvar._validate import as_float
from lossvar.schedules import Constant, as_schedule

__all__ = [
    "AdagradState",
    "AdamState",
    "MomentumState",
    "Optimizer",
    "RmspropState",
    "SgdState",
    "adagrad",
    "adam",
    "adamw",
    "momentum",
    "nesterov",
    "rmsprop",
    "sgd",
]


class Optimizer(NamedTuple):
    """A pair of pure functions and a description.

    Attributes
    ----------
    init : callable
        ``init(params) -> state``.
    step : callable
        ``step(params, grads, state) -> (params, state)``.
    name : str
        The factory's name, for tables.
    hyperparams : dict
        The validated hyper-parameters (``lr`` as passed: a float or a schedule).
    """

    init: Callable
    step: Callable
    name: str
    hyperparams: dict


class SgdState(NamedTuple):
    """State of :func:`sgd`: the number of steps taken."""

    count: int  # type: ignore[assignment]  # optax's name; shadows tuple.count


class MomentumState(NamedTuple):
    """State of :func:`momentum` and :func:`nesterov`: count and momentum buffer."""

    count: int  # type: ignore[assignment]  # optax's name; shadows tuple.count
    trace: np.ndarray


class RmspropState(NamedTuple):
    """State of :func:`rmsprop`.

    ``nu``: running mean of g^2; ``mu``: running mean of g (None unless
    centered); ``trace``: momentum buffer (None unless momentum > 0).
    """

    count: int  # type: ignore[assignment]  # optax's name; shadows tuple.count
    nu: np.ndarray
    mu: np.ndarray | None
    trace: np.ndarray | None


class AdamState(NamedTuple):
    """State of :func:`adam` and :func:`adamw`.

    ``mu``, ``nu``: first and second moment estimates (not bias-corrected);
    ``nu_max``: running maximum of ``nu`` (None unless amsgrad).
    """

    count: int  # type: ignore[assignment]  # optax's name; shadows tuple.count
    mu: np.ndarray
    nu: np.ndarray
    nu_max: np.ndarray | None


class AdagradState(NamedTuple):
    """State of :func:`adagrad`: count and the sum of squared gradients."""

    count: int  # type: ignore[assignment]  # optax's name; shadows tuple.count
    sum_of_squares: np.ndarray


# -- shared pieces -------------------------------------------------------------------


def _params(params) -> np.ndarray:
    return np.asarray(params, dtype=np.float64)


def _inputs(params, grads, buffer=None) -> tuple[np.ndarray, np.ndarray]:
    """Params and grads as float64 arrays of one shape (that of the state's buffers)."""
    p, g = _params(params), np.asarray(grads, dtype=np.float64)
    if g.shape != p.shape:
        raise ValueError(
            f"`grads` must have the same shape as `params` {p.shape}; got shape {g.shape}"
        )
    if buffer is not None and buffer.shape != p.shape:
        raise ValueError(
            f"`state` was made by init for params of shape {buffer.shape}; "
            f"got params of shape {p.shape}"
        )
    return p, g


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 / 0 = 0: no gradient information, no move (eps = 0 is allowed)."""
    return np.divide(num, den, out=np.zeros_like(num), where=num != 0)


def _scale(g: np.ndarray, second_moment: np.ndarray, eps: float, eps_in_sqrt: bool):
    """g / sqrt(v + eps) or g / (sqrt(v) + eps)."""
    den = np.sqrt(second_moment + eps) if eps_in_sqrt else np.sqrt(second_moment) + eps
    return _ratio(g, den)


def _in_place(step, make):
    """Attach ``make`` to ``step`` as ``step.in_place``: the in-place form run_sgd uses.

    ``make(params) -> advance`` builds private state arrays for the stack of
    parameters ``params``; ``advance(params, grads)`` then makes the next
    update, overwriting ``params`` (and the private state) in place, with the
    same operations in the same order as ``step``, so the same bits. The
    public ``step`` stays pure.
    """
    step.in_place = make
    return step


def _ratio_into(num: np.ndarray, den: np.ndarray, out: np.ndarray) -> np.ndarray:
    """:func:`_ratio` written to ``out`` (not ``num`` or ``den``)."""
    out.fill(0.0)
    return np.divide(num, den, out=out, where=num != 0)


def _decay(value, name: str) -> float:
    return as_float(value, name, low=0, high=1, high_open=True)


def _eps(value) -> float:
    return as_float(value, "eps", low=0)


# -- the optimizers ------------------------------------------------------------------


def sgd(lr) -> Optimizer:
    """Plain stochastic gradient descent, w_t = w_{t-1} - lr_t g_t.

    Parameters
    ----------
    lr : float or callable
        Step size > 0, or a schedule k -> eta_k.

    Returns
    -------
    Optimizer

    Notes
    -----
    PyTorch ``SGD(lr)``, optax ``sgd(lr)``, Keras ``SGD(lr)``.

    Examples
    --------
    >>> opt = sgd(0.1)
    >>> w, state = opt.step([1.0], [1.0], opt.init([1.0]))
    >>> float(w[0]), state.count
    (0.9, 1)
    """
    schedule = as_schedule(lr, "lr")

    def init(params):
        _params(params)
        return SgdState(0)

    def step(params, grads, state):
        p, g = _inputs(params, grads)
        t = state.count + 1
        return p - schedule(t) * g, SgdState(t)

    def make(params):
        tmp = np.empty_like(params)
        count = [0]

        def advance(p, g):
            count[0] += 1
            np.multiply(g, schedule(count[0]), out=tmp)
            np.subtract(p, tmp, out=p)
        return advance

    return Optimizer(init, _in_place(step, make), "sgd", {"lr": lr})


def momentum(lr, beta=0.9, dampening=0.0) -> Optimizer:
    """Heavy-ball momentum with torch.optim's rules.

    .. math::

        b_1 = g_1, \\quad b_t = \\beta b_{t-1} + (1 - \\text{dampening}) g_t,
        \\quad w_t = w_{t-1} - \\eta_t b_t

    Parameters
    ----------
    lr : float or callable
        Step size > 0, or a schedule k -> eta_k.
    beta : float
        Momentum coefficient, in [0, 1); 0 is plain SGD.
    dampening : float
        In [0, 1]; the first buffer is the undamped first gradient, as in PyTorch.

    Returns
    -------
    Optimizer

    Notes
    -----
    - PyTorch: ``SGD(lr, momentum=beta, dampening=dampening)``, exactly.
    - optax: ``sgd(lr, momentum=beta)`` (m = g + beta m from m = 0, the same
      sequence when dampening = 0; optax has no dampening).
    - Keras: ``SGD(lr, momentum=beta)`` keeps v = beta v - lr g, the same
      iterates for a constant lr (lr enters the buffer, so they differ under a
      schedule); no dampening.

    Examples
    --------
    >>> opt = momentum(0.1, beta=0.9)
    >>> w, s = [1.0], opt.init([1.0])
    >>> for _ in range(3):
    ...     w, s = opt.step(w, w, s)  # f = w^2 / 2, so the gradient is w
    >>> round(float(w[0]), 6)
    0.486
    """
    beta = _decay(beta, "beta")
    dampening = as_float(dampening, "dampening", low=0, high=1)
    return _heavy_ball("momentum", lr, beta, dampening, nesterov=False)


def nesterov(lr, beta=0.9) -> Optimizer:
    """Nesterov momentum with torch.optim's rules.

    .. math::

        b_1 = g_1, \\quad b_t = \\beta b_{t-1} + g_t,
        \\quad w_t = w_{t-1} - \\eta_t (g_t + \\beta b_t)

    Parameters
    ----------
    lr : float or callable
        Step size > 0, or a schedule k -> eta_k.
    beta : float
        Momentum coefficient, in (0, 1): Nesterov needs momentum (as in PyTorch).

    Returns
    -------
    Optimizer

    Notes
    -----
    - PyTorch: ``SGD(lr, momentum=beta, nesterov=True)`` (no dampening), exactly.
    - optax: ``sgd(lr, momentum=beta, nesterov=True)``, the same sequence.
    - Keras: ``SGD(lr, momentum=beta, nesterov=True)``, the same iterates for
      a constant lr.
    """
    beta = as_float(beta, "beta", low=0, high=1, low_open=True, high_open=True)
    return _heavy_ball("nesterov", lr, beta, 0.0, nesterov=True)


def _heavy_ball(name, lr, beta, dampening, *, nesterov) -> Optimizer:
    schedule = as_schedule(lr, "lr")

    def init(params):
        return MomentumState(0, np.zeros_like(_params(params)))

    def step(params, grads, state):
        p, g = _inputs(params, grads, state.trace)
        t = state.count + 1
        # torch.optim: the first buffer is the gradient itself, not (1 - dampening) g.
        trace = g.copy() if state.count == 0 else beta * state.trace + (1.0 - dampening) * g
        direction = g + beta * trace if nesterov else trace
        return p - schedule(t) * direction, MomentumState(t, trace)

    def make(params):
        trace, tmp = np.zeros_like(params), np.empty_like(params)
        count = [0]

        def advance(p, g):
            count[0] += 1
            if count[0] == 1:
                np.copyto(trace, g)
            else:
                np.multiply(trace, beta, out=trace)
                np.multiply(g, 1.0 - dampening, out=tmp)
                np.add(trace, tmp, out=trace)
            if nesterov:
                np.multiply(trace, beta, out=tmp)
                np.add(g, tmp, out=tmp)
                np.multiply(tmp, schedule(count[0]), out=tmp)
            else:
                np.multiply(trace, schedule(count[0]), out=tmp)
            np.subtract(p, tmp, out=p)
        return advance

    step = _in_place(step, make)

    hyper = {"lr": lr, "beta": beta} | ({} if nesterov else {"dampening": dampening})
    return Optimizer(init, step, name, hyper)


def rmsprop(lr, decay=0.9, eps=1e-8, eps_in_sqrt=True, centered=False, momentum=0.0
            ) -> Optimizer:
    """RMSProp (Tieleman & Hinton 2012), with optax's defaults.

    .. math::

        E_t = \\gamma E_{t-1} + (1 - \\gamma) g_t^2, \\quad E_0 = 0,
        \\quad u_t = g_t / \\sqrt{E_t + \\epsilon} \\ \\text{(eps_in_sqrt)}
        \\ \\text{or}\\ g_t / (\\sqrt{E_t} + \\epsilon),
        \\quad w_t = w_{t-1} - \\eta_t u_t

    With ``centered``, E_t is replaced by E_t - M_t^2 with
    M_t = gamma M_{t-1} + (1 - gamma) g_t (a running variance). With
    ``momentum`` m > 0, b_t = m b_{t-1} + u_t (b_0 = 0) and w_t = w_{t-1} - eta_t b_t.

    Parameters
    ----------
    lr : float or callable
        Step size > 0, or a schedule k -> eta_k.
    decay : float
        gamma, in [0, 1).
    eps : float
        >= 0.
    eps_in_sqrt : bool
        True: sqrt(E + eps), the lecture's formula (and optax's, Keras').
        False: sqrt(E) + eps, PyTorch's.
    centered : bool
        Divide by the running standard deviation instead of the RMS.
    momentum : float
        In [0, 1); 0 means none.

    Returns
    -------
    Optimizer

    Notes
    -----
    - Lecture: ``rmsprop(eta, decay=gamma, eps=eps)``, exactly.
    - PyTorch: ``RMSprop(lr, alpha, eps, momentum=m, centered=c)`` is
      ``rmsprop(lr, decay=alpha, eps=eps, eps_in_sqrt=False, momentum=m,
      centered=c)`` (PyTorch's default alpha is 0.99).
    - optax: ``rmsprop(lr, decay, eps, centered=c, momentum=m)`` with its
      default ``eps_in_sqrt=True``, ``initial_scale=0``, no bias correction.
    - Keras: ``RMSprop(lr, rho, epsilon, centered=c)``: eps inside the root,
      rho = decay (default 0.9, epsilon 1e-7). Keras' momentum buffer carries
      lr (b = m b + lr u), the same iterates for a constant lr.

    Examples
    --------
    >>> opt = rmsprop(0.1, decay=0.9, eps=0.1)
    >>> w, s = opt.step([1.0], [1.0], opt.init([1.0]))
    >>> round(float(w[0]), 7)  # 1 - 0.1 / sqrt(0.1 + 0.1)
    0.7763932

    References
    ----------
    Tieleman & Hinton (2012), Lecture 6.5, COURSERA: Neural Networks for
    Machine Learning. Graves (2013), arXiv:1308.0850 (centered form).
    """
    schedule = as_schedule(lr, "lr")
    decay = _decay(decay, "decay")
    eps = _eps(eps)
    momentum = _decay(momentum, "momentum")
    eps_in_sqrt, centered = bool(eps_in_sqrt), bool(centered)

    def init(params):
        zeros = np.zeros_like(_params(params))
        return RmspropState(0, zeros, zeros if centered else None,
                            zeros if momentum > 0 else None)

    def step(params, grads, state):
        p, g = _inputs(params, grads, state.nu)
        t = state.count + 1
        nu = decay * state.nu + (1.0 - decay) * g * g
        mu = decay * state.mu + (1.0 - decay) * g if centered else None
        # Rounding can make nu - mu^2 a hair negative where it is 0 in exact arithmetic.
        second_moment = np.maximum(nu - mu * mu, 0.0) if centered else nu
        u = _scale(g, second_moment, eps, eps_in_sqrt)
        trace = momentum * state.trace + u if momentum > 0 else None
        new = p - schedule(t) * (u if trace is None else trace)
        return new, RmspropState(t, nu, mu, trace)

    return Optimizer(init, step, "rmsprop", {
        "lr": lr, "decay": decay, "eps": eps, "eps_in_sqrt": eps_in_sqrt,
        "centered": centered, "momentum": momentum,
    })


def adam(lr, b1=0.9, b2=0.999, eps=1e-8, eps_in_sqrt=False, amsgrad=False) -> Optimizer:
    """Adam (Kingma & Ba 2015) with bias correction from t = 1, optax's defaults.

    .. math::

        m_t = \\beta_1 m_{t-1} + (1 - \\beta_1) g_t, \\quad
        v_t = \\beta_2 v_{t-1} + (1 - \\beta_2) g_t^2, \\quad m_0 = v_0 = 0,

        \\hat m_t = m_t / (1 - \\beta_1^t), \\quad \\hat v_t = v_t / (1 - \\beta_2^t),

        w_t = w_{t-1} - \\eta_t \\hat m_t / (\\sqrt{\\hat v_t} + \\epsilon)
        \\ \\text{or, with eps_in_sqrt,}\\ \\eta_t \\hat m_t / \\sqrt{\\hat v_t + \\epsilon}

    With ``amsgrad``, v_t in v_hat is replaced by max(v_1, ..., v_t), the
    maximum of the raw (uncorrected) moments, as in PyTorch.

    Parameters
    ----------
    lr : float or callable
        Step size > 0, or a schedule k -> eta_k.
    b1, b2 : float
        Decay rates of the moments, in [0, 1).
    eps : float
        >= 0.
    eps_in_sqrt : bool
        False: sqrt(v_hat) + eps (PyTorch, optax). True: sqrt(v_hat + eps),
        the lecture's formula.
    amsgrad : bool
        Use the running maximum of v (Reddi, Kale & Kumar 2018).

    Returns
    -------
    Optimizer

    Notes
    -----
    - Lecture (delta = b1, gamma = b2): ``adam(eta, b1, b2, eps, eps_in_sqrt=True)``.
    - PyTorch: ``Adam(lr, betas=(b1, b2), eps, amsgrad)`` is the default form, exactly.
    - optax: ``adam(lr, b1, b2, eps, eps_root=0)`` is the default form;
      ``eps_in_sqrt=True`` is optax's ``eps=0, eps_root=eps``. optax's
      ``amsgrad`` takes the maximum of the bias-corrected v_hat instead, which
      is not reproduced.
    - Keras: ``Adam(lr, beta_1, beta_2, epsilon)`` divides by sqrt(v) + eps
      with lr_t = lr sqrt(1 - b2^t) / (1 - b1^t) ("epsilon hat"): the default
      form with eps replaced by eps / sqrt(1 - b2^t), step by step (default
      epsilon 1e-7). Keras' amsgrad takes the maximum of the raw v, as here.

    Examples
    --------
    >>> opt = adam(0.1, eps=0.1, eps_in_sqrt=True)
    >>> w, s = opt.step([1.0], [1.0], opt.init([1.0]))
    >>> round(float(w[0]), 7)  # 1 - 0.1 * 1 / sqrt(1 + 0.1)
    0.9046537

    References
    ----------
    Kingma & Ba (2015), "Adam: a method for stochastic optimization", ICLR.
    Reddi, Kale & Kumar (2018), "On the convergence of Adam and beyond", ICLR.
    """
    return _adam("adam", lr, b1, b2, eps, eps_in_sqrt, amsgrad, weight_decay=0.0)


def adamw(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-2, eps_in_sqrt=False) -> Optimizer:
    """AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019).

    .. math::

        w_t = (1 - \\eta_t \\lambda) w_{t-1} - \\eta_t \\hat m_t / (\\sqrt{\\hat v_t} + \\epsilon)

    with m_hat, v_hat as in :func:`adam` (computed from the gradient alone:
    the decay never enters the moments) and lambda = ``weight_decay``.

    Parameters
    ----------
    lr : float or callable
        Step size > 0, or a schedule k -> eta_k.
    b1, b2 : float
        Decay rates of the moments, in [0, 1).
    eps : float
        >= 0.
    weight_decay : float
        lambda >= 0; 0 gives :func:`adam`.
    eps_in_sqrt : bool
        As in :func:`adam`.

    Returns
    -------
    Optimizer

    Notes
    -----
    - PyTorch: ``AdamW(lr, betas, eps, weight_decay)``, exactly (default
      weight_decay 1e-2, as here).
    - optax: ``adamw(lr, b1, b2, eps, weight_decay=wd)`` subtracts
      lr (u + wd w), the same update (optax's default weight_decay is 1e-4).
    - Keras: ``AdamW(lr, weight_decay=wd, ...)`` applies w -= lr wd w first,
      the same decay (default 0.004), with Keras' epsilon-hat form of Adam.

    References
    ----------
    Loshchilov & Hutter (2019), "Decoupled weight decay regularization", ICLR.
    """
    weight_decay = as_float(weight_decay, "weight_decay", low=0)
    return _adam("adamw", lr, b1, b2, eps, eps_in_sqrt, False, weight_decay=weight_decay)


def _adam(name, lr, b1, b2, eps, eps_in_sqrt, amsgrad, *, weight_decay) -> Optimizer:
    schedule = as_schedule(lr, "lr")
    b1, b2, eps = _decay(b1, "b1"), _decay(b2, "b2"), _eps(eps)
    eps_in_sqrt, amsgrad = bool(eps_in_sqrt), bool(amsgrad)

    def init(params):
        zeros = np.zeros_like(_params(params))
        return AdamState(0, zeros, zeros, zeros if amsgrad else None)

    def step(params, grads, state):
        p, g = _inputs(params, grads, state.mu)
        t = state.count + 1
        mu = b1 * state.mu + (1.0 - b1) * g
        nu = b2 * state.nu + (1.0 - b2) * g * g
        nu_max = np.maximum(state.nu_max, nu) if amsgrad else None
        mu_hat = mu / (1.0 - b1**t)
        nu_hat = (nu_max if amsgrad else nu) / (1.0 - b2**t)
        u = _scale(mu_hat, nu_hat, eps, eps_in_sqrt)
        eta = schedule(t)
        decayed = p * (1.0 - eta * weight_decay) if weight_decay else p
        return decayed - eta * u, AdamState(t, mu, nu, nu_max)

    # With eps > 0 the denominator is > 0, +inf or NaN, and with b2 > 0 it is NaN
    # only after a NaN gradient, which made mu NaN for good (b1 * NaN is NaN even for
    # b1 = 0): so _ratio's mask acts only where m_hat is -0.0, which m_hat + 0.0 maps
    # to +0.0 as the mask does. With b2 = 0 a gradient whose square overflows makes
    # nu = inf and the next 0 * inf a NaN while mu stays finite: the mask is kept.
    plain_ratio = eps > 0 and b2 > 0
    constant_eta = float(schedule.eta) if type(schedule) is Constant else None

    def make(params):
        # mu and nu stacked, so that one ufunc call updates both: each element still
        # goes through the operations of ``step`` in the same order.
        moments = np.zeros((2,) + params.shape)
        mu, nu = moments
        work = np.empty_like(moments)  # g (1 - b1) | g (1 - b2) g, then m_hat | den
        column = (2,) + (1,) * params.ndim
        decay = np.array([b1, b2]).reshape(column)
        gain = np.array([1.0 - b1, 1.0 - b2]).reshape(column)
        bias = np.empty(column)
        nu_max = np.zeros_like(params) if amsgrad else None
        u = np.empty_like(params)
        count = [0]

        def advance(p, g):
            count[0] = t = count[0] + 1
            np.multiply(moments, decay, out=moments)  # b1 mu | b2 nu
            np.multiply(g, gain, out=work)
            np.multiply(work[1], g, out=work[1])
            np.add(moments, work, out=moments)
            if amsgrad:
                np.maximum(nu_max, nu, out=nu_max)
                np.divide(mu, 1.0 - b1**t, out=work[0])
                np.divide(nu_max, 1.0 - b2**t, out=work[1])
            else:
                bias[0], bias[1] = 1.0 - b1**t, 1.0 - b2**t
                np.divide(moments, bias, out=work)
            m_hat, den = work  # den holds nu_hat until the next line
            if eps_in_sqrt:
                np.sqrt(np.add(den, eps, out=den), out=den)
            else:
                np.add(np.sqrt(den, out=den), eps, out=den)
            if plain_ratio:
                np.add(m_hat, 0.0, out=m_hat)
                update = np.divide(m_hat, den, out=m_hat)
            else:
                update = _ratio_into(m_hat, den, u)
            eta = constant_eta if constant_eta is not None else schedule(t)
            if weight_decay:
                np.multiply(p, 1.0 - eta * weight_decay, out=p)
            np.multiply(update, eta, out=update)
            np.subtract(p, update, out=p)
        return advance

    step = _in_place(step, make)

    hyper = {"lr": lr, "b1": b1, "b2": b2, "eps": eps, "eps_in_sqrt": eps_in_sqrt}
    hyper |= {"weight_decay": weight_decay} if name == "adamw" else {"amsgrad": amsgrad}
    return Optimizer(init, step, name, hyper)


def adagrad(lr, eps=1e-10, initial_accumulator=0.0, eps_in_sqrt=False) -> Optimizer:
    """Adagrad (Duchi, Hazan & Singer 2011), with PyTorch's defaults.

    .. math::

        G_t = G_{t-1} + g_t^2, \\quad G_0 = \\text{initial_accumulator},

        w_t = w_{t-1} - \\eta_t g_t / (\\sqrt{G_t} + \\epsilon)
        \\ \\text{or, with eps_in_sqrt,}\\ \\eta_t g_t / \\sqrt{G_t + \\epsilon}

    Parameters
    ----------
    lr : float or callable
        Step size > 0, or a schedule k -> eta_k.
    eps : float
        >= 0.
    initial_accumulator : float
        G_0 >= 0.
    eps_in_sqrt : bool
        False: sqrt(G) + eps (PyTorch). True: sqrt(G + eps) (optax, Keras).

    Returns
    -------
    Optimizer

    Notes
    -----
    - PyTorch: ``Adagrad(lr, eps=1e-10, initial_accumulator_value=0)`` is the
      default, exactly. Its ``lr_decay`` d is the schedule
      ``lambda k: lr / (1 + (k - 1) * d)``.
    - optax: ``adagrad(lr)`` is ``adagrad(lr, eps=1e-7, initial_accumulator=0.1,
      eps_in_sqrt=True)``.
    - Keras: ``Adagrad(lr)`` is ``adagrad(lr, eps=1e-7, initial_accumulator=0.1,
      eps_in_sqrt=True)``.

    References
    ----------
    Duchi, Hazan & Singer (2011), J. Mach. Learn. Res. 12:2121.
    """
    schedule = as_schedule(lr, "lr")
    eps = _eps(eps)
    initial_accumulator = as_float(initial_accumulator, "initial_accumulator", low=0)
    eps_in_sqrt = bool(eps_in_sqrt)

    def init(params):
        return AdagradState(0, np.full_like(_params(params), initial_accumulator))

    def step(params, grads, state):
        p, g = _inputs(params, grads, state.sum_of_squares)
        t = state.count + 1
        sum_of_squares = state.sum_of_squares + g * g
        u = _scale(g, sum_of_squares, eps, eps_in_sqrt)
        return p - schedule(t) * u, AdagradState(t, sum_of_squares)

    return Optimizer(init, step, "adagrad", {
        "lr": lr, "eps": eps, "initial_accumulator": initial_accumulator,
        "eps_in_sqrt": eps_in_sqrt,
    })
