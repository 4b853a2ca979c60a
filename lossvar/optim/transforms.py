"""The gradient transformations the optimizers are made of (optax's names).

Each is written once, as an arithmetic on :class:`~lossvar.optim.base.Ops`
(see :mod:`lossvar.optim.base`): ``update`` runs it on fresh arrays,
:func:`~lossvar.optim.in_place` on the state's own arrays. Every operation is
elementwise with scalar hyper-parameters, so parameters may have any leading
shape: a stack of R replicate parameter vectors (R, p) advances in one call,
bit-identical to R separate runs on shape (p,).

Where libraries differ (docs/theory.md, section 9), the options reach each
convention; the aliases (:mod:`lossvar.optim.aliases`) say which setting
matches PyTorch, optax and Keras.
"""

from __future__ import annotations

from typing import NamedTuple

from lossvar._validate import as_float
from lossvar.schedules import Constant, as_schedule

from .base import EmptyState, GradientTransformation, as_array, namespace, transformation

__all__ = [
    "ScaleByAdamState",
    "ScaleByLearningRateState",
    "ScaleByRmsState",
    "ScaleByRssState",
    "TraceState",
    "add_decayed_weights",
    "scale_by_adam",
    "scale_by_learning_rate",
    "scale_by_rms",
    "scale_by_rss",
    "trace",
]


def _decay(value, name: str) -> float:
    return as_float(value, name, low=0, high=1, high_open=True)


def _eps(value) -> float:
    return as_float(value, "eps", low=0)


def _zeros(params):
    params = as_array(params)
    return namespace(params).zeros_like(params)


def _denominator(ops, second_moment, eps: float, eps_in_sqrt: bool):
    """sqrt(v + eps) (eps_in_sqrt) or sqrt(v) + eps, into the scratch ``den``."""
    if eps_in_sqrt:
        return ops.sqrt(ops.add(second_moment, eps, "den"), "den")
    return ops.add(ops.sqrt(second_moment, "den"), eps, "den")


# -- Adam ------------------------------------------------------------------------------


class ScaleByAdamState(NamedTuple):
    """State of :func:`scale_by_adam`: the number of steps taken, the first and second
    moment estimates (not bias-corrected) and, with amsgrad, the running maximum of
    ``nu`` (else None)."""

    count: int  # type: ignore[assignment]  # optax's name; shadows tuple.count
    mu: object
    nu: object
    nu_max: object = None


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                  eps_in_sqrt: bool = False, amsgrad: bool = False) -> GradientTransformation:
    r"""Scale by Adam's bias-corrected moments (Kingma & Ba 2015).

    .. math::

        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \quad m_0 = v_0 = 0,

        u_t = \hat m_t / (\sqrt{\hat v_t} + \epsilon)
        \ \text{or, with eps_in_sqrt,}\ \hat m_t / \sqrt{\hat v_t + \epsilon},

    with :math:`\hat m_t = m_t / (1 - \beta_1^t)`, :math:`\hat v_t = v_t / (1 - \beta_2^t)`
    and t = 1, 2, ... . With ``amsgrad``, :math:`v_t` in :math:`\hat v_t` is
    replaced by :math:`\max(v_1, \dots, v_t)`, the maximum of the raw moments, as
    in PyTorch (Reddi, Kale & Kumar 2018). Where :math:`\hat m_t` is zero the
    update is +0.0, also when the denominator is 0 (``eps = 0``).

    Parameters
    ----------
    b1, b2 : float
        Decay rates of the moments, in [0, 1).
    eps : float
        >= 0.
    eps_in_sqrt : bool
        False: sqrt(v_hat) + eps (PyTorch, optax). True: sqrt(v_hat + eps), the
        lecture's formula (optax's ``eps=0, eps_root=eps``).
    amsgrad : bool
        Use the running maximum of v.

    Returns
    -------
    GradientTransformation
        State :class:`ScaleByAdamState`.
    """
    b1, b2, eps = _decay(b1, "b1"), _decay(b2, "b2"), _eps(eps)
    eps_in_sqrt, amsgrad = bool(eps_in_sqrt), bool(amsgrad)
    # With eps > 0 the denominator is > 0, +inf or NaN, and with b2 > 0 it is NaN
    # only after a NaN gradient, which made mu NaN for good (b1 * NaN is NaN even for
    # b1 = 0): so the numerator m_hat is a zero only where the denominator is
    # positive, and 0 / den is +0.0 there. With b2 = 0 a gradient whose square
    # overflows makes nu = inf and the next 0 * inf a NaN while mu stays finite: the
    # substitution of the denominator is kept.
    positive_den = eps > 0 and b2 > 0

    def init(params):
        return ScaleByAdamState(0, _zeros(params), _zeros(params),
                                _zeros(params) if amsgrad else None)

    def arithmetic(ops, g, state, params):
        t = state.count + 1
        mu = ops.add(ops.mul(state.mu, b1, "mu"), ops.mul(g, 1.0 - b1, "tmp"), "mu")
        nu = ops.add(ops.mul(state.nu, b2, "nu"),
                     ops.mul(ops.mul(g, 1.0 - b2, "tmp"), g, "tmp"), "nu")
        nu_max = ops.maximum(state.nu_max, nu, "nu_max") if amsgrad else None
        m_hat = ops.div(mu, 1.0 - b1**t, "u")
        v_hat = ops.div(nu_max if amsgrad else nu, 1.0 - b2**t, "den")
        den = _denominator(ops, v_hat, eps, eps_in_sqrt)
        u = ops.ratio(m_hat, den, "u", positive_den=positive_den)
        return u, ScaleByAdamState(t, mu, nu, nu_max)

    return transformation(init, arithmetic, "scale_by_adam", {
        "b1": b1, "b2": b2, "eps": eps, "eps_in_sqrt": eps_in_sqrt, "amsgrad": amsgrad})


# -- RMSProp and Adagrad ---------------------------------------------------------------


class ScaleByRmsState(NamedTuple):
    """State of :func:`scale_by_rms`: the running mean of g^2 and, when centered, of g
    (else None)."""

    nu: object
    mu: object = None


def scale_by_rms(decay: float = 0.9, eps: float = 1e-8, eps_in_sqrt: bool = True,
                 centered: bool = False) -> GradientTransformation:
    r"""Scale by the root of a running mean of squared gradients (RMSProp's scaling).

    .. math::

        E_t = \gamma E_{t-1} + (1 - \gamma) g_t^2, \quad E_0 = 0,
        \quad u_t = g_t / \sqrt{E_t + \epsilon} \ \text{(eps_in_sqrt)}
        \ \text{or}\ g_t / (\sqrt{E_t} + \epsilon).

    With ``centered``, :math:`E_t` is replaced by :math:`\max(E_t - M_t^2, 0)`
    with :math:`M_t = \gamma M_{t-1} + (1 - \gamma) g_t` (a running variance;
    optax's ``scale_by_stddev``; Graves 2013). No bias correction. Where
    :math:`g_t` is zero the update is +0.0, also when the denominator is 0.

    Parameters
    ----------
    decay : float
        gamma, in [0, 1).
    eps : float
        >= 0.
    eps_in_sqrt : bool
        True: sqrt(E + eps) (the lecture, optax, Keras). False: sqrt(E) + eps (PyTorch).
    centered : bool
        Divide by the running standard deviation instead of the RMS.

    Returns
    -------
    GradientTransformation
        State :class:`ScaleByRmsState`.
    """
    decay, eps = _decay(decay, "decay"), _eps(eps)
    eps_in_sqrt, centered = bool(eps_in_sqrt), bool(centered)

    def init(params):
        return ScaleByRmsState(_zeros(params), _zeros(params) if centered else None)

    def arithmetic(ops, g, state, params):
        nu = ops.add(ops.mul(state.nu, decay, "nu"),
                     ops.mul(ops.mul(g, 1.0 - decay, "tmp"), g, "tmp"), "nu")
        mu, second_moment = None, nu
        if centered:
            mu = ops.add(ops.mul(state.mu, decay, "mu"), ops.mul(g, 1.0 - decay, "tmp"), "mu")
            # Rounding can make nu - mu^2 a hair negative where it is 0 in exact arithmetic.
            second_moment = ops.maximum(ops.sub(nu, ops.mul(mu, mu, "var"), "var"), 0.0, "var")
        den = _denominator(ops, second_moment, eps, eps_in_sqrt)
        return ops.ratio(g, den, "u"), ScaleByRmsState(nu, mu)

    return transformation(init, arithmetic, "scale_by_rms", {
        "decay": decay, "eps": eps, "eps_in_sqrt": eps_in_sqrt, "centered": centered})


class ScaleByRssState(NamedTuple):
    """State of :func:`scale_by_rss`: the sum of squared gradients (from its initial value)."""

    sum_of_squares: object


def scale_by_rss(initial_accumulator: float = 0.1, eps: float = 1e-7,
                 eps_in_sqrt: bool = True) -> GradientTransformation:
    r"""Scale by the root of the sum of squared gradients (Adagrad's scaling).

    .. math::

        G_t = G_{t-1} + g_t^2, \quad G_0 = \text{initial_accumulator},
        \quad u_t = g_t / \sqrt{G_t + \epsilon} \ \text{(eps_in_sqrt)}
        \ \text{or}\ g_t / (\sqrt{G_t} + \epsilon)

    (Duchi, Hazan & Singer 2011). The defaults are optax's and Keras'; PyTorch's
    are ``initial_accumulator=0, eps=1e-10, eps_in_sqrt=False``
    (:func:`lossvar.optim.adagrad`). Where :math:`g_t` is zero the update is
    +0.0, also when the denominator is 0.

    Parameters
    ----------
    initial_accumulator : float
        G_0 >= 0.
    eps : float
        >= 0.
    eps_in_sqrt : bool
        Where eps goes.

    Returns
    -------
    GradientTransformation
        State :class:`ScaleByRssState`.
    """
    initial_accumulator = as_float(initial_accumulator, "initial_accumulator", low=0)
    eps, eps_in_sqrt = _eps(eps), bool(eps_in_sqrt)

    def init(params):
        params = as_array(params)
        return ScaleByRssState(namespace(params).full_like(params, initial_accumulator))

    def arithmetic(ops, g, state, params):
        total = ops.add(state.sum_of_squares, ops.mul(g, g, "tmp"), "sum_of_squares")
        den = _denominator(ops, total, eps, eps_in_sqrt)
        return ops.ratio(g, den, "u"), ScaleByRssState(total)

    return transformation(init, arithmetic, "scale_by_rss", {
        "initial_accumulator": initial_accumulator, "eps": eps, "eps_in_sqrt": eps_in_sqrt})


# -- momentum ------------------------------------------------------------------------------


class TraceState(NamedTuple):
    """State of :func:`trace`: the number of steps taken and the momentum buffer."""

    count: int  # type: ignore[assignment]  # optax's name; shadows tuple.count
    trace: object


def trace(decay: float, nesterov: bool = False, dampening: float = 0.0,
          undamped_first: bool = False) -> GradientTransformation:
    r"""Momentum: a decaying sum of past updates (optax's ``trace``, with PyTorch's options).

    .. math::

        b_t = \beta b_{t-1} + (1 - \text{dampening})\, g_t, \quad b_0 = 0,
        \qquad u_t = b_t \ \text{or, with nesterov,}\ u_t = g_t + \beta b_t,

    with :math:`\beta` = ``decay``. With ``undamped_first`` the first buffer is
    the first update itself, :math:`b_1 = g_1` (PyTorch's SGD: the first
    gradient is not damped); without, :math:`b_1 = \beta \cdot 0 + g_1`
    (optax, and PyTorch's RMSprop momentum), which differs from :math:`g_1`
    only in the sign of a zero when ``dampening`` is 0.

    Parameters
    ----------
    decay : float
        beta, in [0, 1).
    nesterov : bool
        Nesterov's look-ahead form.
    dampening : float
        In [0, 1] (PyTorch's ``dampening``; optax has none).
    undamped_first : bool
        Start the buffer at the first update (PyTorch's SGD).

    Returns
    -------
    GradientTransformation
        State :class:`TraceState`.
    """
    decay = _decay(decay, "decay")
    dampening = as_float(dampening, "dampening", low=0, high=1)
    nesterov, undamped_first = bool(nesterov), bool(undamped_first)

    def init(params):
        return TraceState(0, _zeros(params))

    def arithmetic(ops, g, state, params):
        if undamped_first and state.count == 0:
            b = ops.copy(g, "trace")
        else:
            fresh = g if dampening == 0.0 else ops.mul(g, 1.0 - dampening, "tmp")
            b = ops.add(ops.mul(state.trace, decay, "trace"), fresh, "trace")
        u = ops.add(g, ops.mul(b, decay, "u"), "u") if nesterov else b
        return u, TraceState(state.count + 1, b)

    return transformation(init, arithmetic, "trace", {
        "decay": decay, "nesterov": nesterov, "dampening": dampening,
        "undamped_first": undamped_first})


# -- weight decay and the step size --------------------------------------------------------


def add_decayed_weights(weight_decay: float = 0.0) -> GradientTransformation:
    r"""Add the decayed weights, :math:`u_t = g_t + \lambda w_{t-1}` (optax's name).

    Placed before :func:`scale_by_learning_rate`, the decay is scaled by the
    step size: :math:`w_t = w_{t-1} - \eta_t (u + \lambda w_{t-1})`, decoupled
    from an adaptive scaling placed before it (Loshchilov & Hutter 2019). With
    ``weight_decay = 0`` the updates pass unchanged. Needs ``params``.

    Parameters
    ----------
    weight_decay : float
        lambda >= 0.

    Returns
    -------
    GradientTransformation
        State :class:`~lossvar.optim.EmptyState`.
    """
    weight_decay = as_float(weight_decay, "weight_decay", low=0)

    def init(params):
        return EmptyState()

    def arithmetic(ops, g, state, params):
        if weight_decay == 0.0:
            return g, state
        if params is None:
            raise ValueError("`params` must be given to update: add_decayed_weights "
                             "decays them; got None")
        return ops.add(g, ops.mul(params, weight_decay, "u"), "u"), state

    return transformation(init, arithmetic, "add_decayed_weights",
                          {"weight_decay": weight_decay})


class ScaleByLearningRateState(NamedTuple):
    """State of :func:`scale_by_learning_rate`: the number of steps taken."""

    count: int  # type: ignore[assignment]  # optax's name; shadows tuple.count


def scale_by_learning_rate(learning_rate, *, flip_sign: bool = True) -> GradientTransformation:
    r"""Scale by the step size, :math:`u_t = -\eta_t g_t` (optax's name).

    Parameters
    ----------
    learning_rate : float or callable
        A step size > 0, or a schedule of the step k = 1, 2, ...
        (:mod:`lossvar.schedules`): the count lives in the state, and step k
        uses :math:`\eta_k`.
    flip_sign : bool
        Multiply by :math:`-\eta` (descent, the default) or by :math:`\eta`.

    Returns
    -------
    GradientTransformation
        State :class:`ScaleByLearningRateState`; ``hyperparams["lr"]`` is
        ``learning_rate`` as passed (lossvar's tables read the step size there).

    Notes
    -----
    With :func:`~lossvar.optim.apply_updates`, :math:`w + (-\eta u)` equals
    :math:`w - \eta u` bit for bit (negation is exact and :math:`a - b` is
    :math:`a + (-b)` in IEEE arithmetic).
    """
    schedule = as_schedule(learning_rate, "learning_rate")
    constant = float(schedule.eta) if isinstance(schedule, Constant) else None
    sign = -1.0 if flip_sign else 1.0

    def init(params):
        return ScaleByLearningRateState(0)

    def arithmetic(ops, g, state, params):
        t = state.count + 1
        eta = constant if constant is not None else schedule(t)
        return ops.mul(g, sign * eta, "u"), ScaleByLearningRateState(t)

    return transformation(init, arithmetic, "scale_by_learning_rate", {"lr": learning_rate})
