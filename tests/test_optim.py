"""Optimizers reproduce the discriminating values of docs/theory.md, section 9 and converge.

The discriminating problem is f = theta^2 / 2 (gradient theta), theta_0 = 1,
lr = 0.1, three steps: the conventions of the lecture, PyTorch, optax and
Keras give different numbers there.
"""

import numpy as np
import pytest

from lossvar import optim
from lossvar.schedules import cosine, polynomial


def _three_steps(opt, grads=None):
    """theta after steps 1, 2, 3 on f = theta^2 / 2, or with the given gradient sequence."""
    theta, state, out = 1.0, opt.init(1.0), []
    for t in range(3):
        theta, state = opt.step(theta, theta if grads is None else grads[t], state)
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
    # PyTorch AdamW, b = (0.9, 0.999), eps = 0.1 outside the root, wd = 0.1, lr = 0.1:
    # w_t = (1 - lr wd) w - lr m_hat / (sqrt(v_hat) + eps), gradient g = w.
    # t=1: g = 1, m = 0.1, v = 0.001, m_hat = v_hat = 1, u = 1/1.1 = 0.909090909,
    #      w = 0.99 - 0.0909090909 = 0.899090909.
    # t=2: g = 0.899090909, m = 0.09 + 0.0899090909 = 0.179909091, m_hat = m/0.19 = 0.946889952,
    #      v = 0.000999 + 0.001 g^2 = 0.00180736446, v_hat = v/0.001999 = 0.904134299,
    #      u = 0.946889952 / (0.950859767 + 0.1) = 0.901062141,
    #      w = 0.99 * 0.899090909 - 0.0901062141 = 0.799993786.
    # t=3: g = 0.799993786, m = 0.241917560, m_hat = m/0.271 = 0.892684725,
    #      v = 0.00244554716, v_hat = v/0.002997001 = 0.815998111,
    #      u = 0.892684725 / (0.903326137 + 0.1) = 0.889725375,
    #      w = 0.99 * 0.799993786 - 0.0889725375 = 0.703021311.
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
    ams = optim.adam(0.1, b1=0.9, b2=0.5, eps=0.0, amsgrad=True)
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


def test_adamw_without_decay_is_adam():
    rng = np.random.default_rng(1)
    grads = rng.normal(size=(5, 4))
    runs = []
    for opt in (optim.adamw(0.01, weight_decay=0.0), optim.adam(0.01)):
        w, s = np.ones(4), opt.init(np.ones(4))
        for g in grads:
            w, s = opt.step(w, g, s)
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
        w, s = opt.step(w, 1.0, s)
    assert seen == [1, 2, 3]
    assert s.count == 3
    assert float(w) == pytest.approx(1 - 0.1 * (1 + 1 / 2 + 1 / 3), abs=1e-15)


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
        theta, state = opt.step(theta, grad(theta), state)
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
    optim.momentum(0.1),
    optim.momentum(0.1, dampening=0.5),
    optim.nesterov(0.1),
    optim.rmsprop(0.1),
    optim.rmsprop(0.1, eps=0.0, eps_in_sqrt=False, centered=True, momentum=0.9),
    optim.adam(0.1),
    optim.adam(0.1, eps=0.0, eps_in_sqrt=True, amsgrad=True),
    optim.adamw(0.1, weight_decay=0.0),
    optim.adagrad(0.1),
    optim.adagrad(0.1, eps=0.0),
    optim.adagrad(0.1, eps=1e-7, initial_accumulator=0.1, eps_in_sqrt=True),
]
EVERY_IDS = [f"{o.name}-{i}" for i, o in enumerate(EVERY)]


@pytest.mark.parametrize("opt", EVERY, ids=EVERY_IDS)
def test_zero_gradients_leave_params_unchanged(opt):
    # Also with eps = 0, where the update is 0/0: no gradient information, no move.
    params = np.array([[1.5, -2.0, 0.0], [3.0, 0.25, -1.0]])
    state = opt.init(params)
    for _ in range(3):
        new, state = opt.step(params, np.zeros_like(params), state)
        np.testing.assert_array_equal(new, params)


def test_adamw_zero_gradient_still_decays():
    new, _ = (opt := optim.adamw(0.1, weight_decay=0.5)).step(2.0, 0.0, opt.init(2.0))
    assert float(new) == 2.0 * (1 - 0.1 * 0.5)


@pytest.mark.parametrize("opt", EVERY, ids=EVERY_IDS)
def test_stacked_replicates_are_bit_identical_to_separate_runs(opt):
    rng = np.random.default_rng(7)
    start, noise = rng.normal(size=(4, 3)), rng.normal(size=(5, 4, 3))
    scales = rng.uniform(0.5, 3.0, size=3)

    def run(theta, noise):  # a noisy quadratic: the gradient depends on the iterate
        state = opt.init(theta)
        for t in range(5):
            theta, state = opt.step(theta, scales * theta + noise[t], state)
        return theta

    stacked = run(start, noise)
    for r in range(4):
        np.testing.assert_array_equal(stacked[r], run(start[r], noise[:, r]))


@pytest.mark.parametrize("opt", EVERY, ids=EVERY_IDS)
def test_step_mutates_nothing(opt):
    params, grads = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    _, state = opt.step(params, grads, opt.init(params))  # a state with non-zero buffers
    snapshot = [np.copy(x) if isinstance(x, np.ndarray) else x for x in state]
    p0, g0 = params.copy(), grads.copy()
    new, new_state = opt.step(params, grads, state)
    np.testing.assert_array_equal(params, p0)
    np.testing.assert_array_equal(grads, g0)
    for before, after in zip(snapshot, state, strict=True):
        np.testing.assert_array_equal(before, after)
    assert new is not params
    assert new_state.count == state.count + 1
    assert new.dtype == np.float64


# -- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize("lr", [0, 0.0, -0.1, np.nan, np.inf])
@pytest.mark.parametrize("factory", [optim.sgd, optim.momentum, optim.nesterov, optim.rmsprop,
                                     optim.adam, optim.adamw, optim.adagrad])
def test_bad_learning_rate(factory, lr):
    with pytest.raises(ValueError, match=r"`lr` must be a finite real number in \(0, inf\]; got"):
        factory(lr)


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
    match = r"`grads` must have the same shape as `params` \(3,\); got shape \(2,\)"
    with pytest.raises(ValueError, match=match):
        opt.step(np.zeros(3), np.zeros(2), state)


def test_state_for_other_shape():
    opt = optim.adam(0.1)
    with pytest.raises(ValueError, match=r"`state` was made by init for params of shape \(3,\)"):
        opt.step(np.zeros((2, 3)), np.zeros((2, 3)), opt.init(np.zeros(3)))


def test_schedule_going_negative_fails_at_that_step():
    opt = optim.sgd(lambda k: 0.1 * (2 - k))  # 0.1, then 0 (allowed), then -0.1
    w, s = opt.step(1.0, 1.0, opt.init(1.0))
    w, s = opt.step(w, 1.0, s)
    assert float(w) == pytest.approx(0.9)
    with pytest.raises(ValueError, match=r"`lr` schedule returned -0.1 at step k=3; "
                                         r"step sizes must be finite and >= 0"):
        opt.step(w, 1.0, s)


def test_schedule_non_finite_fails_naming_k():
    opt = optim.adam(lambda k: np.inf if k == 2 else 0.1)
    w, s = opt.step(1.0, 1.0, opt.init(1.0))
    with pytest.raises(ValueError, match=r"`lr` schedule returned inf at step k=2"):
        opt.step(w, 1.0, s)


# -- the in-place forms run_sgd uses: the same bits as the pure step --------------------

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
    nan = np.isnan(a)
    np.testing.assert_array_equal(nan, np.isnan(b))
    np.testing.assert_array_equal(a[~nan].view(np.int64), b[~nan].view(np.int64))


def _in_place_equals_step(opt, rng, steps=40):
    w_pure = rng.standard_normal((7, 5))
    w_pure[0], w_pure[1] = -0.0, 0.0
    w_fast = w_pure.copy()
    state = opt.init(w_pure)
    advance = opt.step.in_place(w_fast)
    with np.errstate(all="ignore"):
        for g in _adversarial_gradients(rng, steps, w_pure.shape):
            w_pure, state = opt.step(w_pure, g, state)
            advance(w_fast, g)
            _assert_same_bits(w_fast, w_pure)


ADAM_VARIANTS = {
    "adam": lambda lr, **h: optim.adam(lr, **h),
    "adam-eps_in_sqrt": lambda lr, **h: optim.adam(lr, eps_in_sqrt=True, **h),
    "adam-amsgrad": lambda lr, **h: optim.adam(lr, amsgrad=True, **h),
    "adam-amsgrad-eps_in_sqrt": lambda lr, **h: optim.adam(lr, amsgrad=True, eps_in_sqrt=True, **h),
    "adamw": lambda lr, **h: optim.adamw(lr, weight_decay=0.1, **h),
    "adamw-eps_in_sqrt": lambda lr, **h: optim.adamw(lr, weight_decay=0.3, eps_in_sqrt=True, **h),
}


@pytest.mark.parametrize("lr", [1e-2, polynomial(0.1, 0.5)], ids=["constant", "schedule"])
@pytest.mark.parametrize("variant", list(ADAM_VARIANTS))
def test_in_place_adam_equals_step_on_adversarial_gradients(variant, lr):
    # The in-place Adam updates mu and nu as one stacked array, skips the schedule call
    # for a constant lr and replaces _ratio's mask by m_hat + 0.0 when eps > 0 and
    # b2 > 0; b2 = 0 (nu = inf after an overflowing square, then 0 * inf = NaN with mu
    # finite) and eps = 0 keep the mask. Every corner, bit for bit, against the pure step.
    rng = np.random.default_rng([list(ADAM_VARIANTS).index(variant), callable(lr)])
    for b1 in (0.0, 0.4, 0.9):
        for b2 in (0.0, 1e-300, 0.5, 0.999):
            for eps in (1e-8, 1e-300, 0.0):
                for _ in range(2):
                    _in_place_equals_step(ADAM_VARIANTS[variant](lr, b1=b1, b2=b2, eps=eps), rng)


@pytest.mark.parametrize("opt", [
    optim.sgd(0.1), optim.sgd(polynomial(0.5, 0.6)), optim.momentum(0.1, beta=0.9),
    optim.momentum(polynomial(0.5, 0.6), beta=0.5, dampening=0.5), optim.nesterov(0.1, beta=0.9),
], ids=lambda o: f"{o.name}-{o.hyperparams}")
def test_other_in_place_steps_equal_step_on_adversarial_gradients(opt):
    rng = np.random.default_rng(5)
    for _ in range(20):
        _in_place_equals_step(opt, rng)


def test_in_place_adam_keeps_the_mask_where_it_matters():
    # b2 = 0: a gradient of 1e300 makes nu = inf (and the step 1e300 / inf = 0); the next
    # step computes 0 * inf = NaN in nu while mu = g is 0 there: the pure step moves by 0
    # (0 / NaN masked to 0), where an unmasked ratio would make w NaN.
    for eps in (1e-8, 0.0):
        opt = optim.adam(0.1, b1=0.0, b2=0.0, eps=eps)
        w_pure, w_fast = np.ones(2), np.ones(2)
        state, advance = opt.init(w_pure), opt.step.in_place(w_fast)
        with np.errstate(all="ignore"):
            for g in (np.array([1e300, 1.0]), np.array([0.0, 1.0])):
                w_pure, state = opt.step(w_pure, g, state)
                advance(w_fast, g)
        assert np.isnan(state.nu[0]) and w_pure[0] == 1.0
        _assert_same_bits(w_fast, w_pure)


def test_in_place_adam_zero_update_is_positive_zero():
    # _ratio gives +0.0 for m_hat == -0.0, and w - eta * (+0.0) keeps w == -0.0 where
    # -0.0 would turn it into +0.0. Reaching m_hat = -0.0 at w = -0.0 takes some doing:
    # b1 = 0 and g = -1 then -0 make mu = 0 * (-1) + (-0) = -0.0, and a tiny first step
    # followed by a decay factor 0.4 rounds w = -5e-324 to -0.0.
    opt = optim.adamw(lambda k: 5e-324 if k == 1 else 0.6, b1=0.0, weight_decay=1.0)
    w_pure, w_fast = np.array([-1e-323]), np.array([-1e-323])
    state, advance = opt.init(w_pure), opt.step.in_place(w_fast)
    for g in (np.array([-1.0]), np.array([-0.0])):
        w_pure, state = opt.step(w_pure, g, state)
        advance(w_fast, g)
    assert w_pure[0] == 0.0 and np.signbit(w_pure[0]) and np.signbit(state.mu[0])
    _assert_same_bits(w_fast, w_pure)
