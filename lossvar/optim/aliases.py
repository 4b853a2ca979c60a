"""The lecture's optimizers, each a :func:`~lossvar.optim.chain` of transformations.

Each alias returns a :class:`~lossvar.optim.GradientTransformation` named for
tables (``name``, ``hyperparams``); a step is ::

    updates, state = opt.update(grads, state, params)
    params = optim.apply_updates(params, updates)

``lr`` is a positive float or a schedule, a callable of the step k = 1, 2, ...
(:mod:`lossvar.schedules`). Where libraries differ (docs/theory.md, section 9),
the options reach each convention exactly; each docstring says which setting
matches PyTorch, optax and Keras. The lecture's RMSProp and Adam put eps inside
the square root (``eps_in_sqrt=True``).
"""

from __future__ import annotations

from lossvar._validate import as_float
from lossvar.schedules import as_schedule

from .base import GradientTransformation, chain
from .transforms import (
    add_decayed_weights,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_rms,
    scale_by_rss,
    trace,
)

__all__ = ["adagrad", "adam", "adamw", "amsgrad", "momentum", "nesterov", "rmsprop", "sgd"]


def _alias(name: str, hyperparams: dict, *parts: GradientTransformation) -> GradientTransformation:
    return chain(*parts)._replace(name=name, hyperparams=hyperparams)


def _learning_rate(lr):
    """``lr`` validated under its own name (a schedule as it is, a number as a constant)."""
    return scale_by_learning_rate(as_schedule(lr, "lr"))


def sgd(lr) -> GradientTransformation:
    """Plain stochastic gradient descent, w_t = w_{t-1} - lr_t g_t.

    ``chain(scale_by_learning_rate(lr))``.

    Parameters
    ----------
    lr : float or callable
        Step size > 0, or a schedule k -> eta_k.

    Returns
    -------
    GradientTransformation

    Notes
    -----
    PyTorch ``SGD(lr)``, optax ``sgd(lr)``, Keras ``SGD(lr)``.

    Examples
    --------
    >>> from lossvar import optim
    >>> opt = optim.sgd(0.1)
    >>> params = [1.0]
    >>> updates, state = opt.update([1.0], opt.init(params), params)
    >>> float(optim.apply_updates(params, updates)[0]), state[0].count
    (0.9, 1)
    """
    return _alias("sgd", {"lr": lr}, _learning_rate(lr))


def momentum(lr, beta: float = 0.9, dampening: float = 0.0) -> GradientTransformation:
    """Heavy-ball momentum with torch.optim's rules.

    .. math::

        b_1 = g_1, \\quad b_t = \\beta b_{t-1} + (1 - \\text{dampening}) g_t,
        \\quad w_t = w_{t-1} - \\eta_t b_t

    ``chain(trace(beta, dampening=dampening, undamped_first=True),
    scale_by_learning_rate(lr))``.

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
    GradientTransformation

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
    >>> from lossvar import optim
    >>> opt = optim.momentum(0.1, beta=0.9)
    >>> w, s = [1.0], opt.init([1.0])
    >>> for _ in range(3):
    ...     u, s = opt.update(w, s, w)  # f = w^2 / 2, so the gradient is w
    ...     w = optim.apply_updates(w, u)
    >>> round(float(w[0]), 6)
    0.486
    """
    beta = as_float(beta, "beta", low=0, high=1, high_open=True)
    dampening = as_float(dampening, "dampening", low=0, high=1)
    return _alias("momentum", {"lr": lr, "beta": beta, "dampening": dampening},
                  trace(beta, dampening=dampening, undamped_first=True), _learning_rate(lr))


def nesterov(lr, beta: float = 0.9) -> GradientTransformation:
    """Nesterov momentum with torch.optim's rules.

    .. math::

        b_1 = g_1, \\quad b_t = \\beta b_{t-1} + g_t,
        \\quad w_t = w_{t-1} - \\eta_t (g_t + \\beta b_t)

    ``chain(trace(beta, nesterov=True, undamped_first=True), scale_by_learning_rate(lr))``.

    Parameters
    ----------
    lr : float or callable
        Step size > 0, or a schedule k -> eta_k.
    beta : float
        Momentum coefficient, in (0, 1): Nesterov needs momentum (as in PyTorch).

    Returns
    -------
    GradientTransformation

    Notes
    -----
    - PyTorch: ``SGD(lr, momentum=beta, nesterov=True)`` (no dampening), exactly.
    - optax: ``sgd(lr, momentum=beta, nesterov=True)``, the same sequence.
    - Keras: ``SGD(lr, momentum=beta, nesterov=True)``, the same iterates for
      a constant lr.
    """
    beta = as_float(beta, "beta", low=0, high=1, low_open=True, high_open=True)
    return _alias("nesterov", {"lr": lr, "beta": beta},
                  trace(beta, nesterov=True, undamped_first=True), _learning_rate(lr))


def rmsprop(lr, decay: float = 0.9, eps: float = 1e-8, eps_in_sqrt: bool = True,
            centered: bool = False, momentum: float = 0.0) -> GradientTransformation:
    """RMSProp (Tieleman & Hinton 2012), with optax's defaults.

    .. math::

        E_t = \\gamma E_{t-1} + (1 - \\gamma) g_t^2, \\quad E_0 = 0,
        \\quad u_t = g_t / \\sqrt{E_t + \\epsilon} \\ \\text{(eps_in_sqrt)}
        \\ \\text{or}\\ g_t / (\\sqrt{E_t} + \\epsilon),
        \\quad w_t = w_{t-1} - \\eta_t u_t

    With ``centered``, E_t is replaced by E_t - M_t^2 with
    M_t = gamma M_{t-1} + (1 - gamma) g_t (a running variance). With
    ``momentum`` m > 0, b_t = m b_{t-1} + u_t (b_0 = 0) and w_t = w_{t-1} - eta_t b_t.
    ``chain(scale_by_rms(decay, eps, eps_in_sqrt, centered), [trace(momentum),]
    scale_by_learning_rate(lr))``.

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
    GradientTransformation

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
    >>> from lossvar import optim
    >>> opt = optim.rmsprop(0.1, decay=0.9, eps=0.1)
    >>> u, s = opt.update([1.0], opt.init([1.0]))
    >>> round(float(optim.apply_updates([1.0], u)[0]), 7)  # 1 - 0.1 / sqrt(0.1 + 0.1)
    0.7763932

    References
    ----------
    Tieleman & Hinton (2012), Lecture 6.5, COURSERA: Neural Networks for
    Machine Learning. Graves (2013), arXiv:1308.0850 (centered form).
    """
    rms = scale_by_rms(decay, eps, eps_in_sqrt, centered)
    momentum = as_float(momentum, "momentum", low=0, high=1, high_open=True)
    parts = [rms] + ([trace(momentum)] if momentum > 0 else []) + [_learning_rate(lr)]
    return _alias("rmsprop", {"lr": lr, **rms.hyperparams, "momentum": momentum}, *parts)


def adam(lr, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_in_sqrt: bool = False,
         amsgrad: bool = False) -> GradientTransformation:
    """Adam (Kingma & Ba 2015) with bias correction from t = 1, optax's defaults.

    .. math::

        m_t = \\beta_1 m_{t-1} + (1 - \\beta_1) g_t, \\quad
        v_t = \\beta_2 v_{t-1} + (1 - \\beta_2) g_t^2, \\quad m_0 = v_0 = 0,

        \\hat m_t = m_t / (1 - \\beta_1^t), \\quad \\hat v_t = v_t / (1 - \\beta_2^t),

        w_t = w_{t-1} - \\eta_t \\hat m_t / (\\sqrt{\\hat v_t} + \\epsilon)
        \\ \\text{or, with eps_in_sqrt,}\\ \\eta_t \\hat m_t / \\sqrt{\\hat v_t + \\epsilon}

    With ``amsgrad``, v_t in v_hat is replaced by max(v_1, ..., v_t), the
    maximum of the raw (uncorrected) moments, as in PyTorch.
    ``chain(scale_by_adam(b1, b2, eps, eps_in_sqrt, amsgrad), scale_by_learning_rate(lr))``.

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
        Use the running maximum of v (Reddi, Kale & Kumar 2018); see also :func:`amsgrad`.

    Returns
    -------
    GradientTransformation

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
    >>> from lossvar import optim
    >>> opt = optim.adam(0.1, eps=0.1, eps_in_sqrt=True)
    >>> u, s = opt.update([1.0], opt.init([1.0]))
    >>> round(float(optim.apply_updates([1.0], u)[0]), 7)  # 1 - 0.1 * 1 / sqrt(1 + 0.1)
    0.9046537

    References
    ----------
    Kingma & Ba (2015), "Adam: a method for stochastic optimization", ICLR.
    Reddi, Kale & Kumar (2018), "On the convergence of Adam and beyond", ICLR.
    """
    moments = scale_by_adam(b1, b2, eps, eps_in_sqrt, amsgrad)
    return _alias("adam", {"lr": lr, **moments.hyperparams}, moments, _learning_rate(lr))


def amsgrad(lr, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
            eps_in_sqrt: bool = False) -> GradientTransformation:
    """AMSGrad (Reddi, Kale & Kumar 2018): :func:`adam` with ``amsgrad=True``.

    The second moment in v_hat is the running maximum of the raw moments,
    max(v_1, ..., v_t), then bias-corrected, as in PyTorch and Keras.

    Parameters
    ----------
    lr : float or callable
        Step size > 0, or a schedule k -> eta_k.
    b1, b2 : float
        Decay rates of the moments, in [0, 1).
    eps : float
        >= 0.
    eps_in_sqrt : bool
        As in :func:`adam`.

    Returns
    -------
    GradientTransformation

    Notes
    -----
    - PyTorch: ``Adam(lr, betas=(b1, b2), eps, amsgrad=True)``, exactly.
    - optax: ``amsgrad`` takes the maximum of the bias-corrected v_hat, not reproduced.
    - Keras: ``Adam(..., amsgrad=True)``, with Keras' epsilon-hat form (see :func:`adam`).

    References
    ----------
    Reddi, Kale & Kumar (2018), "On the convergence of Adam and beyond", ICLR.
    """
    moments = scale_by_adam(b1, b2, eps, eps_in_sqrt, amsgrad=True)
    hyper = {"lr": lr} | {k: v for k, v in moments.hyperparams.items() if k != "amsgrad"}
    return _alias("amsgrad", hyper, moments, _learning_rate(lr))


def adamw(lr, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 1e-2,
          eps_in_sqrt: bool = False) -> GradientTransformation:
    """AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019).

    .. math::

        w_t = w_{t-1} - \\eta_t \\bigl(\\hat m_t / (\\sqrt{\\hat v_t} + \\epsilon)
        + \\lambda w_{t-1}\\bigr)

    with m_hat, v_hat as in :func:`adam` (computed from the gradient alone:
    the decay never enters the moments) and lambda = ``weight_decay``.
    ``chain(scale_by_adam(b1, b2, eps, eps_in_sqrt), add_decayed_weights(weight_decay),
    scale_by_learning_rate(lr))``, bit for bit.

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
    GradientTransformation

    Notes
    -----
    - PyTorch: ``AdamW(lr, betas, eps, weight_decay)`` computes
      (1 - lr lambda) w - lr u, the same update in exact arithmetic (it rounds
      differently; default weight_decay 1e-2, as here).
    - optax: ``adamw(lr, b1, b2, eps, weight_decay=wd)`` subtracts
      lr (u + wd w), the same operations (optax's default weight_decay is 1e-4).
    - Keras: ``AdamW(lr, weight_decay=wd, ...)`` applies w -= lr wd w first,
      the same decay (default 0.004), with Keras' epsilon-hat form of Adam.

    References
    ----------
    Loshchilov & Hutter (2019), "Decoupled weight decay regularization", ICLR.
    """
    moments = scale_by_adam(b1, b2, eps, eps_in_sqrt)
    decay = add_decayed_weights(weight_decay)
    hyper = {"lr": lr} | {k: v for k, v in moments.hyperparams.items() if k != "amsgrad"}
    return _alias("adamw", hyper | dict(decay.hyperparams), moments, decay, _learning_rate(lr))


def adagrad(lr, eps: float = 1e-10, initial_accumulator: float = 0.0,
            eps_in_sqrt: bool = False) -> GradientTransformation:
    """Adagrad (Duchi, Hazan & Singer 2011), with PyTorch's defaults.

    .. math::

        G_t = G_{t-1} + g_t^2, \\quad G_0 = \\text{initial_accumulator},

        w_t = w_{t-1} - \\eta_t g_t / (\\sqrt{G_t} + \\epsilon)
        \\ \\text{or, with eps_in_sqrt,}\\ \\eta_t g_t / \\sqrt{G_t + \\epsilon}

    ``chain(scale_by_rss(initial_accumulator, eps, eps_in_sqrt), scale_by_learning_rate(lr))``.

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
    GradientTransformation

    Notes
    -----
    - PyTorch: ``Adagrad(lr, eps=1e-10, initial_accumulator_value=0)`` is the
      default, exactly. Its ``lr_decay`` d is the schedule
      ``lambda k: lr / (1 + (k - 1) * d)``.
    - optax: ``adagrad(lr)`` is ``adagrad(lr, eps=1e-7, initial_accumulator=0.1,
      eps_in_sqrt=True)`` (optax multiplies by a reciprocal square root:
      the same in exact arithmetic).
    - Keras: ``Adagrad(lr)`` is ``adagrad(lr, eps=1e-7, initial_accumulator=0.1,
      eps_in_sqrt=True)``.

    References
    ----------
    Duchi, Hazan & Singer (2011), J. Mach. Learn. Res. 12:2121.
    """
    rss = scale_by_rss(initial_accumulator, eps, eps_in_sqrt)
    return _alias("adagrad", {"lr": lr, "eps": rss.hyperparams["eps"],
                              "initial_accumulator": rss.hyperparams["initial_accumulator"],
                              "eps_in_sqrt": rss.hyperparams["eps_in_sqrt"]}, rss, _learning_rate(lr))
