"""Optimizers: the discriminating values of docs/theory.md, section 9, convergence, the
in-place form (the bits of ``update``), chains, the array API (PyTorch tensors) and
agreement with torch.optim.

The discriminating problem is f = theta^2 / 2 (gradient theta), theta_0 = 1,
lr = 0.1, three steps: the conventions of the lecture, PyTorch, optax and
Keras give different numbers there.
"""

import numpy as np
import pytest

from lossvar import optim
from lossvar.schedules import cosine, polynomial


def _step(opt, params, grads, state):
    updates, state = opt.update(grads, state, params)
    return optim.apply_updates(params, updates), state


def _three_steps(opt, grads=None):
    """theta after steps 1, 2, 3 on f = theta^2 / 2, or with the given gradient sequence."""
    theta, state, out = 1.0, opt.init(1.0), []
    for t in range(3):
        theta, state = _step(opt, theta, theta if grads is None else grads[t], state)
        out.append(float(theta))
    return out


# docs/theory.md, section 9 table, to the 7 decimals printed there.
THEORY_ROWS = [
    (optim.rmsprop(0.1, decay=0.9, eps=0.1, eps_in_sqrt=True), [0.7763932, 0.6212010, 0.5024920]),
    (optim.rmsprop(0.1, decay=0.9, eps=0.1, eps_in_sqrt=False), [0.7597469, 0.6028864, 0.4850101]),
    (optim.adam(0.1, 0.9, 0.999, eps=0.1, eps_in_sqrt=True), [0.9046537, 0.8101037, 0.7166954]),
    (optim.adam(0.1, 0.9, 0.999, eps=0.1, eps_in_sqrt=False), [0.9090909, 0.8188911, 0.7296876]),
    (optim.momentum(0.1, beta=0.9), [0.9, 0.72, 0.486]),
    (optim.momentum(0.1, beta=0.9, dampening=0.5), [0.9, 0.765, 0.60525]),
    (optim.nesterov(0.1, beta=0.9), [0.81, 0.5751, 0.327321]),
    (optim.adagrad(0.1), [0.9, 0.8331035, 0.7804562]),
]


@pytest.mark.parametrize("opt, expected", THEORY_ROWS,
                         ids=[f"{o.name}-{i}" for i, (o, _) in enumerate(THEORY_ROWS)])
def test_theory_discriminating_values(opt, expected):
    # The table is rounded to 7 decimals: 1e-6 is that rounding with room to spare.
    np.testing.assert_allclose(_three_steps(opt), expected, rtol=0, atol=1e-6)


def test_adamw_by_hand():
    # AdamW, b = (0.9, 0.999), eps = 0.1 outside the root, wd = 0.1, lr = 0.1:
    # w_t = w - lr (m_hat / (sqrt(v_hat) + eps) + wd w), gradient g = w.
    # t=1: g = 1, m = 0.1, v = 0.001, m_hat = v_hat = 1, u = 1/1.1 = 0.909090909,
    #      w = 1 - 0.1 (0.909090909 + 0.1) = 0.899090909.
    # t=2: g = 0.899090909, m = 0.09 + 0.0899090909 = 0.179909091, m_hat = m/0.19 = 0.946889952,
    #      v = 0.000999 + 0.001 g^2 = 0.00180736446, v_hat = v/0.001999 = 0.904134299,
    #      u = 0.946889952 / (0.950859767 + 0.1) = 0.901062141,
    #      w = 0.899090909 - 0.1 (0.901062141 + 0.0899090909) = 0.799993786.
    # t=3: g = 0.799993786, m = 0.241917560, m_hat = m/0.271 = 0.892684725,
    #      v = 0.00244554716, v_hat = v/0.002997001 = 0.815998111,
    #      u = 0.892684725 / (0.903326137 + 0.1) = 0.889725375,
    #      w = 0.799993786 - 0.1 (0.889725375 + 0.0799993786) = 0.703021311.
    opt = optim.adamw(0.1, eps=0.1, weight_decay=0.1)
    np.testing.assert_allclose(_three_steps(opt), [0.899090909, 0.799993786, 0.703021311],
                               rtol=0, atol=1e-8)


def test_amsgrad_by_hand():
    # AMSGrad, PyTorch rule (max over the raw v, then bias-corrected), on a fixed gradient
    # sequence 1, 0.1, 0.1 where v falls, so the max binds; b = (0.9, 0.5), eps = 0, lr = 0.1.
    # t=1: m = 0.1, v = 0.5, v_max = 0.5, m_hat = 1, v_hat = 0.5/0.5 = 1, w = 1 - 0.1 = 0.9.
    # t=2: m = 0.09 + 0.01 = 0.1, v = 0.25 + 0.005 = 0.255, v_max = 0.5,
    #      m_hat = 0.1/0.19 = 0.526315789, v_hat = 0.5/0.75 = 2/3,
    #      u = 0.526315789 / 0.816496581 = 0.644602564, w = 0.835539744.
    # t=3: m = 0.1, v = 0.1275 + 0.005 = 0.1325, v_max = 0.5,
    #      m_hat = 0.1/0.271 = 0.369003690, v_hat = 0.5/0.875 = 0.571428571,
    #      u = 0.369003690 / 0.755928946 = 0.488145998, w = 0.786725144.
    # Plain Adam would use v = 0.255 and 0.1325 instead: w = 0.9, 0.8097376, 0.7149117.
    grads = [1.0, 0.1, 0.1]
    for ams in (optim.adam(0.1, b1=0.9, b2=0.5, eps=0.0, amsgrad=True),
                optim.amsgrad(0.1, b1=0.9, b2=0.5, eps=0.0)):
        np.testing.assert_allclose(_three_steps(ams, grads), [0.9, 0.835539744, 0.786725144],
                                   rtol=0, atol=1e-8)
    plain = optim.adam(0.1, b1=0.9, b2=0.5, eps=0.0)
    np.testing.assert_allclose(_three_steps(plain, grads), [0.9, 0.8097376, 0.7149117],
                               rtol=0, atol=1e-7)


def test_adagrad_optax_keras_form_by_hand():
    # optax / Keras Adagrad: G_0 = 0.1, eps = 1e-7 inside the root, lr = 0.1, g = w.
    # t=1: G = 1.1, w = 1 - 0.1/sqrt(1.1000001) = 0.904653745.
    # t=2: G = 1.1 + 0.904653745^2 = 1.918398399, w = 0.904653745 (1 - 0.1/sqrt(G + 1e-7))
    #      = 0.839338739.
    # t=3: G = 1.918398399 + 0.839338739^2 = 2.622887918, w = 0.787512775.
    opt = optim.adagrad(0.1, eps=1e-7, initial_accumulator=0.1, eps_in_sqrt=True)
    np.testing.assert_allclose(_three_steps(opt), [0.904653745, 0.839338739, 0.787512775],
                               rtol=0, atol=1e-8)


def test_adam_is_the_formula():
    # The textbook Adam written out with numpy, the operations in the order of the formula:
    # w - lr * m_hat / (sqrt(v_hat) + eps), with m_hat = 0 -> 0.
    rng = np.random.default_rng(1)
    lr, b1, b2, eps = 1e-2, 0.9, 0.999, 1e-8
    opt = optim.adam(lr)
    w, state = np.zeros((5, 3)), opt.init(np.zeros((5, 3)))
    p, mu, nu = np.zeros((5, 3)), np.zeros((5, 3)), np.zeros((5, 3))
    for t in range(1, 20):
        g = rng.standard_normal((5, 3))
        g[0, 0] = 0.0
        w, state = _step(opt, w, g, state)
        mu = b1 * mu + (1.0 - b1) * g
        nu = b2 * nu + (1.0 - b2) * g * g
        m_hat, v_hat = mu / (1.0 - b1**t), nu / (1.0 - b2**t)
        p = p - lr * np.divide(m_hat, np.sqrt(v_hat) + eps, out=np.zeros_like(m_hat),
                               where=m_hat != 0)
        np.testing.assert_array_equal(w, p)


def test_adamw_is_its_chain_bit_for_bit():
    rng = np.random.default_rng(2)
    for lr in (0.01, polynomial(0.1, 0.5)):
        for kw in ({}, dict(eps=0.0, eps_in_sqrt=True), dict(b1=0.0, b2=0.5)):
            alias = optim.adamw(lr, weight_decay=0.3, **kw)
            chained = optim.chain(optim.scale_by_adam(**kw), optim.add_decayed_weights(0.3),
                                  optim.scale_by_learning_rate(lr))
            w0, grads = rng.standard_normal((6, 4)), rng.standard_normal((20, 6, 4))
            runs = []
            for opt in (alias, chained):
                w, state = w0, opt.init(w0)
                for g in grads:
                    w, state = _step(opt, w, g, state)
                runs.append(w)
            _assert_same_bits(*runs)


def test_adamw_without_decay_is_adam():
    rng = np.random.default_rng(1)
    grads = rng.normal(size=(5, 4))
    runs = []
    for opt in (optim.adamw(0.01, weight_decay=0.0), optim.adam(0.01)):
        w, s = np.ones(4), opt.init(np.ones(4))
        for g in grads:
            w, s = _step(opt, w, g, s)
        runs.append(w)
    np.testing.assert_array_equal(*runs)


def test_lr_schedule_is_called_with_one_based_step():
    seen = []

    def eta(k):
        seen.append(k)
        return 0.1 / k

    opt = optim.sgd(eta)
    w, s = 1.0, opt.init(1.0)
    for _ in range(3):
        w, s = _step(opt, w, 1.0, s)
    assert seen == [1, 2, 3]
    assert s[0].count == 3
    assert float(w) == pytest.approx(1 - 0.1 * (1 + 1 / 2 + 1 / 3), abs=1e-15)


def test_chain_names_and_hyperparameters():
    tx = optim.chain(optim.scale_by_rms(decay=0.5), optim.trace(0.9),
                     optim.scale_by_learning_rate(0.1))
    assert tx.name == "chain(scale_by_rms, trace, scale_by_learning_rate)"
    # "decay" belongs to two parts: each keeps it under its own name
    assert tx.hyperparams["scale_by_rms.decay"] == 0.5 and tx.hyperparams["trace.decay"] == 0.9
    assert tx.hyperparams["lr"] == 0.1 and "decay" not in tx.hyperparams
    assert dict(optim.adam(0.1).hyperparams) == {"lr": 0.1, "b1": 0.9, "b2": 0.999, "eps": 1e-8,
                                                "eps_in_sqrt": False, "amsgrad": False}


def test_a_transformation_from_elsewhere_chains_and_runs_in_place():
    # init and update only (no arithmetic): chain calls its update, in_place too.
    def init(params):
        return 0

    def update(updates, state, params=None):
        return 2.0 * updates, state + 1

    double = optim.GradientTransformation(init, update)
    tx = optim.chain(double, optim.scale_by_learning_rate(0.1))
    w, state = _step(tx, np.ones(3), np.full(3, 0.5), tx.init(np.ones(3)))
    np.testing.assert_array_equal(w, 1.0 - 0.1 * (2.0 * 0.5))
    assert state[0] == 1
    kept = []

    def keep(updates, state, params=None):
        kept.append(updates)
        return updates, state

    keeper = optim.GradientTransformation(init, keep)
    for opt in (tx, optim.chain(double), optim.chain(optim.scale_by_adam(), keeper,
                                                    optim.scale_by_learning_rate(0.1))):
        fast = np.ones(3)
        advance = optim.in_place(opt, fast)
        pure, st = np.ones(3), opt.init(np.ones(3))
        for g in np.random.default_rng(4).standard_normal((5, 3)):
            pure, st = _step(opt, pure, g, st)
            advance(fast, g)
        _assert_same_bits(fast, pure)
    # what it keeps stays as it was given: the pure step's and the in-place step's alike
    _assert_same_bits(np.stack(kept[0::2]), np.stack(kept[1::2]))


# -- convergence ---------------------------------------------------------------------

LAMBDA = np.array([1.0, 100.0])  # f = sum lambda_i theta_i^2 / 2, condition number 100


def _quadratic_grad(theta):
    return LAMBDA * theta


def _rosenbrock_grad(theta):
    x, y = theta[..., 0], theta[..., 1]
    return np.stack([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)], axis=-1)


def _run(opt, grad, theta0, steps):
    theta = np.asarray(theta0, dtype=np.float64)
    state = opt.init(theta)
    for _ in range(steps):
        theta, state = _step(opt, theta, grad(theta), state)
    return theta


QUADRATIC_STEPS = 1000
QUADRATIC = [
    # Fixed steps below 2/lambda_max; adaptive methods, which move about lr per step near
    # the optimum, anneal lr to 0 with a cosine schedule.
    optim.sgd(0.019),
    optim.momentum(0.01, beta=0.9),
    optim.momentum(0.01, beta=0.9, dampening=0.5),
    optim.nesterov(0.01, beta=0.9),
    optim.rmsprop(cosine(0.01, QUADRATIC_STEPS)),
    optim.rmsprop(cosine(0.01, QUADRATIC_STEPS), decay=0.99, eps_in_sqrt=False),
    optim.rmsprop(cosine(0.01, QUADRATIC_STEPS), centered=True, momentum=0.5),
    optim.adam(cosine(0.05, QUADRATIC_STEPS)),
    optim.adam(cosine(0.05, QUADRATIC_STEPS), eps_in_sqrt=True),
    optim.adam(cosine(0.05, QUADRATIC_STEPS), amsgrad=True),
    optim.adamw(cosine(0.05, QUADRATIC_STEPS)),
    optim.adagrad(0.5),
    optim.adagrad(0.5, eps=1e-7, initial_accumulator=0.1, eps_in_sqrt=True),
]


@pytest.mark.parametrize("opt", QUADRATIC, ids=[f"{o.name}-{i}" for i, o in enumerate(QUADRATIC)])
def test_converges_on_ill_conditioned_quadratic(opt):
    # Deterministic: each setting reaches < 1e-8 from (1, 1) in 1000 steps (sgd, the slowest,
    # contracts the lambda = 1 direction by 0.981 a step: 0.981^1000 = 5e-9).
    theta = _run(opt, _quadratic_grad, [1.0, 1.0], QUADRATIC_STEPS)
    assert np.abs(theta).max() < 1e-8


ROSENBROCK = [
    # (optimizer, steps): each reaches |theta - (1, 1)| < 1e-3 from (0, 0) within the steps
    # (observed first hits: sgd 8436, momentum 1529, nesterov 1536, rmsprop 5452, adam 500,
    # adagrad 6581), so the margin is >= 15%.
    (optim.sgd(1.9e-3), 10_000),
    (optim.momentum(1e-3, beta=0.9), 2000),
    (optim.nesterov(1e-3, beta=0.9), 2000),
    (optim.rmsprop(polynomial(1.0, 1.0, k0=100), decay=0.99), 7000),
    (optim.adam(0.01), 1000),
    (optim.adagrad(0.1), 8000),
]


@pytest.mark.parametrize("opt, steps", ROSENBROCK, ids=[o.name for o, _ in ROSENBROCK])
def test_converges_on_rosenbrock(opt, steps):
    theta = _run(opt, _rosenbrock_grad, [0.0, 0.0], steps)
    assert np.abs(theta - 1.0).max() < 1e-3


# -- structure: zero gradients, purity, stacked replicates ---------------------------

EVERY = [
    optim.sgd(0.1),
    optim.sgd(polynomial(0.5, 0.6)),
    optim.momentum(0.1),
    optim.momentum(polynomial(0.5, 0.6), beta=0.5, dampening=0.5),
    optim.nesterov(0.1),
    optim.rmsprop(0.1),
    optim.rmsprop(0.1, eps=0.0, eps_in_sqrt=False, centered=True, momentum=0.9),
    optim.adam(0.1),
    optim.adam(polynomial(0.1, 0.5), eps=0.0, eps_in_sqrt=True, amsgrad=True),
    optim.amsgrad(0.1, b2=0.0),
    optim.adamw(0.1, weight_decay=0.0),
    optim.adamw(0.1, weight_decay=0.5, b1=0.0),
    optim.adagrad(0.1),
    optim.adagrad(0.1, eps=0.0),
    optim.adagrad(0.1, eps=1e-7, initial_accumulator=0.1, eps_in_sqrt=True),
]
EVERY_IDS = [f"{o.name}-{i}" for i, o in enumerate(EVERY)]

#: Each transformation alone (the aliases above are chains of them).
TRANSFORMS = [
    optim.scale_by_adam(), optim.scale_by_adam(b1=0.0, b2=0.0, eps=0.0, amsgrad=True),
    optim.scale_by_adam(eps_in_sqrt=True, b2=1e-300), optim.scale_by_rms(),
    optim.scale_by_rms(decay=0.5, eps=0.0, eps_in_sqrt=False, centered=True),
    optim.scale_by_rss(), optim.scale_by_rss(0.0, eps=0.0, eps_in_sqrt=False),
    optim.trace(0.9), optim.trace(0.5, nesterov=True, dampening=0.3, undamped_first=True),
    optim.add_decayed_weights(0.1), optim.scale_by_learning_rate(polynomial(0.5, 0.6)),
    optim.scale_by_learning_rate(0.3, flip_sign=False),
]
TRANSFORM_IDS = [f"{t.name}-{i}" for i, t in enumerate(TRANSFORMS)]


@pytest.mark.parametrize("opt", EVERY, ids=EVERY_IDS)
def test_zero_gradients_leave_params_unchanged(opt):
    # Also with eps = 0, where the update is 0/0: no gradient information, no move
    # (AdamW still decays: its zero-gradient step is the decay alone).
    params = np.array([[1.5, -2.0, 0.0], [3.0, 0.25, -1.0]])
    state = opt.init(params)
    decay = opt.hyperparams.get("weight_decay", 0.0)
    for _ in range(3):
        new, state = _step(opt, params, np.zeros_like(params), state)
        np.testing.assert_array_equal(new, params - 0.1 * (decay * params))
        params = new


@pytest.mark.parametrize("opt", EVERY, ids=EVERY_IDS)
def test_stacked_replicates_are_bit_identical_to_separate_runs(opt):
    rng = np.random.default_rng(7)
    start, noise = rng.normal(size=(4, 3)), rng.normal(size=(5, 4, 3))
    scales = rng.uniform(0.5, 3.0, size=3)

    def run(theta, noise):  # a noisy quadratic: the gradient depends on the iterate
        state = opt.init(theta)
        for t in range(5):
            theta, state = _step(opt, theta, scales * theta + noise[t], state)
        return theta

    stacked = run(start, noise)
    for r in range(4):
        np.testing.assert_array_equal(stacked[r], run(start[r], noise[:, r]))


@pytest.mark.parametrize("opt", EVERY + TRANSFORMS, ids=EVERY_IDS + TRANSFORM_IDS)
def test_update_mutates_nothing(opt):
    params, grads = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    _, state = opt.update(grads, opt.init(params), params)  # a state with non-zero buffers
    snapshot = [np.copy(x) for x in _arrays(state)]
    p0, g0 = params.copy(), grads.copy()
    updates, new_state = opt.update(grads, state, params)
    np.testing.assert_array_equal(params, p0)
    np.testing.assert_array_equal(grads, g0)
    for before, after in zip(snapshot, _arrays(state), strict=True):
        np.testing.assert_array_equal(before, after)
    assert updates.dtype == np.float64 and updates.shape == params.shape


def _arrays(state):
    if isinstance(state, np.ndarray):
        yield state
    elif isinstance(state, tuple):
        for part in state:
            yield from _arrays(part)


# -- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize("lr", [0, 0.0, -0.1, np.nan, np.inf])
@pytest.mark.parametrize("factory", [optim.sgd, optim.momentum, optim.nesterov, optim.rmsprop,
                                     optim.adam, optim.adamw, optim.adagrad, optim.amsgrad])
def test_bad_learning_rate(factory, lr):
    with pytest.raises(ValueError, match=r"`lr` must be a finite real number in \(0, inf\]; got"):
        factory(lr)
    with pytest.raises(ValueError, match=r"`learning_rate` must be a finite real number in \(0"):
        optim.scale_by_learning_rate(lr)


def test_learning_rate_of_wrong_type():
    with pytest.raises(TypeError, match="`lr` must be a positive finite number or a callable"):
        optim.sgd("0.1")


@pytest.mark.parametrize("factory, name", [
    (lambda v: optim.adam(0.1, b1=v), "b1"),
    (lambda v: optim.adam(0.1, b2=v), "b2"),
    (lambda v: optim.adamw(0.1, b1=v), "b1"),
    (lambda v: optim.adamw(0.1, b2=v), "b2"),
    (lambda v: optim.rmsprop(0.1, decay=v), "decay"),
    (lambda v: optim.rmsprop(0.1, momentum=v), "momentum"),
    (lambda v: optim.momentum(0.1, beta=v), "beta"),
    (lambda v: optim.nesterov(0.1, beta=v), "beta"),
    (lambda v: optim.trace(v), "decay"),
    (lambda v: optim.scale_by_rms(decay=v), "decay"),
])
@pytest.mark.parametrize("value", [1.0, -0.1, 1.5, np.nan])
def test_rates_outside_unit_interval(factory, name, value):
    with pytest.raises(ValueError, match=rf"`{name}` must be a finite real number in [\[(]0, 1\)"):
        factory(value)


def test_nesterov_needs_momentum():
    with pytest.raises(ValueError, match=r"`beta` must be a finite real number in \(0, 1\); got 0"):
        optim.nesterov(0.1, beta=0)


@pytest.mark.parametrize("factory", [
    lambda: optim.rmsprop(0.1, eps=-1e-8),
    lambda: optim.adam(0.1, eps=-1e-8),
    lambda: optim.adamw(0.1, eps=-1e-8),
    lambda: optim.adagrad(0.1, eps=-1e-8),
    lambda: optim.scale_by_rss(eps=-1e-8),
])
def test_negative_eps(factory):
    with pytest.raises(ValueError, match=r"`eps` must be a finite real number in \[0, inf\]; got"):
        factory()


@pytest.mark.parametrize("factory, name", [
    (lambda: optim.momentum(0.1, dampening=1.5), "dampening"),
    (lambda: optim.adamw(0.1, weight_decay=-0.1), "weight_decay"),
    (lambda: optim.adagrad(0.1, initial_accumulator=-1.0), "initial_accumulator"),
])
def test_other_bad_hyperparameters(factory, name):
    with pytest.raises(ValueError, match=f"`{name}` must be a finite real number in"):
        factory()


@pytest.mark.parametrize("opt", EVERY, ids=EVERY_IDS)
def test_params_and_grads_of_different_shapes(opt):
    state = opt.init(np.zeros(3))
    match = r"`updates` must have the same shape as `params` \(3,\); got shape \(2,\)"
    with pytest.raises(ValueError, match=match):
        opt.update(np.zeros(2), state, np.zeros(3))
    with pytest.raises(ValueError, match=match):
        optim.apply_updates(np.zeros(3), np.zeros(2))


def test_state_for_other_shape():
    opt = optim.adam(0.1)
    with pytest.raises(ValueError, match=r"`state` was made by init for params of shape \(3,\)"):
        opt.update(np.zeros((2, 3)), opt.init(np.zeros(3)), np.zeros((2, 3)))


def test_weight_decay_needs_params():
    opt = optim.adamw(0.1)
    with pytest.raises(ValueError, match="`params` must be given to update"):
        opt.update(np.ones(2), opt.init(np.ones(2)))


def test_chain_of_something_else():
    with pytest.raises(TypeError, match=r"`transforms\[1\]` must be a GradientTransformation"):
        optim.chain(optim.trace(0.9), "adam")


def test_schedule_going_negative_fails_at_that_step():
    opt = optim.sgd(lambda k: 0.1 * (2 - k))  # 0.1, then 0 (allowed), then -0.1
    w, s = _step(opt, 1.0, 1.0, opt.init(1.0))
    w, s = _step(opt, w, 1.0, s)
    assert float(w) == pytest.approx(0.9)
    with pytest.raises(ValueError, match=r"`lr` schedule returned -0.1 at step k=3; "
                                         r"step sizes must be finite and >= 0"):
        _step(opt, w, 1.0, s)


def test_schedule_non_finite_fails_naming_k():
    opt = optim.adam(lambda k: np.inf if k == 2 else 0.1)
    w, s = _step(opt, 1.0, 1.0, opt.init(1.0))
    with pytest.raises(ValueError, match=r"`lr` schedule returned inf at step k=2"):
        _step(opt, w, 1.0, s)


# -- the in-place form: the bits of update, by construction -----------------------------

SPECIALS = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 5e-324, -5e-324, 1e-310, -1e300, 1e300])


def _adversarial_gradients(rng, steps, shape):
    """Gradients over 325 decades, with zeros of both signs, NaN, +-inf, subnormals and
    1e300 (whose square overflows) sprinkled in, and now and then a row of -0.0."""
    for t in range(steps):
        g = rng.standard_normal(shape) * 10.0 ** rng.integers(-320, 5, shape)
        special = rng.random(shape) < 0.15
        g[special] = rng.choice(SPECIALS, int(special.sum()))
        if t % 7 == 3:
            g[2] = -0.0
        yield g


def _assert_same_bits(a, b):
    """Equal bit patterns, NaN compared as NaN whatever its payload."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    nan = np.isnan(a)
    np.testing.assert_array_equal(nan, np.isnan(b))
    np.testing.assert_array_equal(a[~nan].view(np.int64), b[~nan].view(np.int64))


def _in_place_equals_update(opt, rng, steps=40):
    w_pure = rng.standard_normal((7, 5))
    w_pure[0], w_pure[1] = -0.0, 0.0
    w_fast = w_pure.copy()
    state = opt.init(w_pure)
    advance = optim.in_place(opt, w_fast)
    with np.errstate(all="ignore"):
        for g in _adversarial_gradients(rng, steps, w_pure.shape):
            w_pure, state = _step(opt, w_pure, g, state)
            advance(w_fast, g)
            _assert_same_bits(w_fast, w_pure)


@pytest.mark.parametrize("opt", EVERY + TRANSFORMS, ids=EVERY_IDS + TRANSFORM_IDS)
def test_in_place_equals_update_on_adversarial_gradients(opt):
    rng = np.random.default_rng(5)
    for _ in range(5):
        _in_place_equals_update(opt, rng)


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("eps_in_sqrt", [False, True])
def test_in_place_adam_equals_update_at_every_corner(eps_in_sqrt, amsgrad):
    # The denominator is substituted only where it may be 0 or NaN with m_hat zero:
    # b2 = 0 (nu = inf after an overflowing square, then 0 * inf = NaN with mu finite)
    # and eps = 0 keep the substitution, eps > 0 with b2 > 0 skips it.
    rng = np.random.default_rng([eps_in_sqrt, amsgrad])
    for b1 in (0.0, 0.4, 0.9):
        for b2 in (0.0, 1e-300, 0.5, 0.999):
            for eps in (1e-8, 1e-300, 0.0):
                for lr in (1e-2, polynomial(0.1, 0.5)):
                    for opt in (optim.adam(lr, b1, b2, eps, eps_in_sqrt, amsgrad),
                                optim.adamw(lr, b1, b2, eps, 0.2, eps_in_sqrt)):
                        _in_place_equals_update(opt, rng, steps=20)


def test_adam_moves_by_zero_where_the_denominator_is_nan():
    # b2 = 0: a gradient of 1e300 makes nu = inf (and the step 1e300 / inf = 0); the next
    # step computes 0 * inf = NaN in nu while mu = g is 0 there: the step is 0
    # (0 / NaN counted as 0), where an unsubstituted ratio would make w NaN.
    for eps in (1e-8, 0.0):
        opt = optim.adam(0.1, b1=0.0, b2=0.0, eps=eps)
        w_pure, w_fast = np.ones(2), np.ones(2)
        state, advance = opt.init(w_pure), optim.in_place(opt, w_fast)
        with np.errstate(all="ignore"):
            for g in (np.array([1e300, 1.0]), np.array([0.0, 1.0])):
                w_pure, state = _step(opt, w_pure, g, state)
                advance(w_fast, g)
        assert np.isnan(state[0].nu[0]) and w_pure[0] == 1.0
        _assert_same_bits(w_fast, w_pure)


def test_a_zero_update_is_positive_zero():
    # b1 = 0 and g = -1 then -0 make mu = 0 * (-1) + (-0) = -0.0, so m_hat = -0.0: the
    # update is +0.0 (no gradient information, no move), and w = -0.0 stays -0.0
    # (w + (-eta) (+0.0) = -0.0 + -0.0), where an update of -0.0 would make it +0.0.
    for opt in (optim.scale_by_adam(b1=0.0), optim.adam(0.5, b1=0.0)):
        w = np.array([-0.0])
        _, state = opt.update(np.array([-1.0]), opt.init(w), w)
        updates, state = opt.update(np.array([-0.0]), state, w)
        mu = (state[0] if isinstance(state[0], tuple) else state).mu
        assert np.signbit(mu[0]) and updates[0] == 0.0
        new = optim.apply_updates(w, updates)
        assert new[0] == 0.0 and np.signbit(new[0]) == (opt.name == "adam")


def test_in_place_refuses_a_state_whose_fields_share_an_array():
    shared = np.zeros(3)

    def init(params):
        return optim.ScaleByAdamState(0, shared, shared)

    adam = optim.scale_by_adam()
    opt = adam._replace(init=init)
    with pytest.raises(ValueError, match="share arrays"):
        optim.in_place(opt, np.zeros(3))


# -- the array API: the same definitions on PyTorch tensors -------------------------------


@pytest.mark.parametrize("opt", EVERY + TRANSFORMS, ids=EVERY_IDS + TRANSFORM_IDS)
def test_torch_tensors_give_numpy_numbers(opt):
    torch = pytest.importorskip("torch", reason="PyTorch is optional: the array-API test needs it")
    rng = np.random.default_rng(6)
    w0, grads = rng.standard_normal((4, 3)), rng.standard_normal((10, 4, 3))
    grads[:, 0, 0] = 0.0
    w_np, s_np = w0.copy(), opt.init(w0)
    w_t = torch.tensor(w0)
    s_t = opt.init(w_t)
    w_fast = torch.tensor(w0)
    advance = optim.in_place(opt, w_fast)
    for g in grads:
        w_np, s_np = _step(opt, w_np, g, s_np)
        w_t, s_t = _step(opt, w_t, torch.tensor(g), s_t)
        advance(w_fast, torch.tensor(g))
        assert isinstance(w_t, torch.Tensor) and w_t.dtype == torch.float64
        # The same operations in the same order, in another library's kernels: to a few
        # roundings of each of the 10 steps (of parameters of order 1).
        np.testing.assert_allclose(w_t.numpy(), w_np, rtol=1e-14, atol=1e-14)
        # the in-place form on tensors: the same code as update on tensors
        _assert_same_bits(w_fast.numpy(), w_t.numpy())


# -- agreement with torch.optim --------------------------------------------------------------


def _torch_optimizers(torch, params):
    """(lossvar optimizer, torch.optim optimizer on ``params``) with the same settings."""
    o = torch.optim
    return [
        (optim.sgd(0.05), o.SGD(params, lr=0.05)),
        (optim.momentum(0.05, 0.9, 0.3), o.SGD(params, lr=0.05, momentum=0.9, dampening=0.3)),
        (optim.nesterov(0.05, 0.8), o.SGD(params, lr=0.05, momentum=0.8, nesterov=True)),
        (optim.rmsprop(0.01, decay=0.99, eps=1e-8, eps_in_sqrt=False),
         o.RMSprop(params, lr=0.01, alpha=0.99, eps=1e-8)),
        (optim.rmsprop(0.01, decay=0.9, eps=1e-6, eps_in_sqrt=False, centered=True, momentum=0.5),
         o.RMSprop(params, lr=0.01, alpha=0.9, eps=1e-6, centered=True, momentum=0.5)),
        (optim.adam(0.01, 0.8, 0.99, 1e-8), o.Adam(params, lr=0.01, betas=(0.8, 0.99), eps=1e-8)),
        (optim.amsgrad(0.01, 0.9, 0.9), o.Adam(params, lr=0.01, betas=(0.9, 0.9), amsgrad=True)),
        (optim.adamw(0.01, weight_decay=0.1), o.AdamW(params, lr=0.01, weight_decay=0.1)),
        (optim.adagrad(0.1), o.Adagrad(params, lr=0.1)),
        # torch's weight_decay on these adds wd * w to the gradient: the decay first in the chain
        (optim.chain(optim.add_decayed_weights(0.1), optim.momentum(0.05, 0.9)),
         o.SGD(params, lr=0.05, momentum=0.9, weight_decay=0.1)),
        (optim.chain(optim.add_decayed_weights(0.1), optim.adam(0.01)),
         o.Adam(params, lr=0.01, weight_decay=0.1)),
        (optim.chain(optim.add_decayed_weights(0.1), optim.rmsprop(0.01, 0.99, eps_in_sqrt=False)),
         o.RMSprop(params, lr=0.01, weight_decay=0.1)),
        (optim.chain(optim.add_decayed_weights(0.1), optim.adagrad(0.1)),
         o.Adagrad(params, lr=0.1, weight_decay=0.1)),
    ]


def test_agreement_with_torch_optim():
    torch = pytest.importorskip("torch", reason="PyTorch is optional: the comparison needs it")
    rng = np.random.default_rng(8)
    scales, w0 = rng.uniform(0.5, 3.0, 6), rng.standard_normal(6)
    noise = rng.standard_normal((50, 6))
    count = len(_torch_optimizers(torch, [torch.zeros(1, requires_grad=True)]))
    for i in range(count):
        p = torch.tensor(w0, requires_grad=True)
        ours, theirs = _torch_optimizers(torch, [p])[i]
        w, state = w0.copy(), ours.init(w0)
        for t in range(50):
            g = scales * w + noise[t]  # a noisy quadratic: the gradient depends on the iterate
            w, state = _step(ours, w, g, state)
            p.grad = torch.tensor(scales * p.detach().numpy() + noise[t])
            theirs.step()
        # The same updates in exact arithmetic, rounded differently (torch divides by
        # sqrt(v) / sqrt(1 - b2^t), fuses the decay of AdamW, ...): 50 steps of a
        # contraction keep the difference within a few hundred units in the last place.
        np.testing.assert_allclose(w, p.detach().numpy(), rtol=1e-12, atol=1e-14,
                                   err_msg=ours.name)
