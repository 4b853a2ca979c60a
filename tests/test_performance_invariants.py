"""The fast paths give the bits of the plain ones: in-place steps.

Each test writes the previous, allocating form of a computation next to the
one lossvar now runs, on fixed seeds, and asks for exact equality. No test
here looks at wall-clock time.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

import lossvar
from lossvar import optim, sampling, schedules


def _old_adam_step(p, g, mu, nu, t, lr=1e-2, b1=0.9, b2=0.999, eps=1e-8):
    mu = b1 * mu + (1.0 - b1) * g
    nu = b2 * nu + (1.0 - b2) * g * g
    mu_hat = mu / (1.0 - b1**t)
    nu_hat = nu / (1.0 - b2**t)
    den = np.sqrt(nu_hat) + eps
    u = np.divide(mu_hat, den, out=np.zeros_like(mu_hat), where=mu_hat != 0)
    return p - lr * u, mu, nu


@pytest.mark.parametrize("opt", [
    optim.adam(1e-2), optim.adam(schedules.polynomial(0.1, 0.6), eps_in_sqrt=True, amsgrad=True),
    optim.adamw(1e-2, weight_decay=0.1), optim.sgd(0.05), optim.momentum(0.05, 0.9, 0.1),
    optim.nesterov(0.05, 0.8),
], ids=lambda o: o.name)
def test_in_place_optimizer_steps_equal_pure_steps(opt):
    rng = np.random.default_rng(0)
    w_pure = rng.standard_normal((9, 4))
    w_fast = w_pure.copy()
    state = opt.init(w_pure)
    advance = opt.step.in_place(w_fast)
    for _ in range(30):
        g = rng.standard_normal((9, 4))
        g[0, 0] = 0.0
        w_pure, state = opt.step(w_pure, g, state)
        advance(w_fast, g)
        np.testing.assert_array_equal(w_pure, w_fast)


def test_pure_adam_is_still_the_formula():
    rng = np.random.default_rng(1)
    opt = optim.adam(1e-2)
    w, state = np.zeros((5, 3)), opt.init(np.zeros((5, 3)))
    p, mu, nu = np.zeros((5, 3)), np.zeros((5, 3)), np.zeros((5, 3))
    for t in range(1, 20):
        g = rng.standard_normal((5, 3))
        w, state = opt.step(w, g, state)
        p, mu, nu = _old_adam_step(p, g, mu, nu, t)
        np.testing.assert_array_equal(w, p)


def _plain_ensemble(problem, X, y, opt, steps, B, R, seed):
    """run_sgd's arithmetic with the allocating forms: gather, mean_grad, pure step."""
    from lossvar.streams import as_seed_sequence, stream

    rng = stream(as_seed_sequence(seed), 0, 0, 0)
    w = np.zeros((R, X.shape[1]))
    state = opt.init(w)
    for _ in range(steps):
        idx = sampling.with_replacement(rng, X.shape[0], B, R)
        w, state = opt.step(w, problem.mean_grad(w, np.take(X, idx, axis=0), np.take(y, idx)), state)
    return w


@pytest.mark.parametrize("problem", [lossvar.LogisticRegression(), lossvar.LogisticRegression(l2=0.05),
                                     lossvar.LinearRegression(l2=0.1)], ids=repr)
def test_run_sgd_fast_path_equals_plain_loop(problem):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((400, 6))
    if isinstance(problem, lossvar.LogisticRegression):
        y = (rng.random(400) < scipy.special.expit(X[:, 0])).astype(np.int64)
        data = lossvar.Dataset(X, y, name="t", task="classification")
    else:
        y = X[:, 0] + rng.standard_normal(400)
        data = lossvar.Dataset(X, y, name="t", task="regression")
    for opt in (optim.adam(1e-2), optim.rmsprop(1e-2)):
        tr = lossvar.run_sgd(problem, data, opt, steps=40, batch_size=8, replicates=100,
                             sampling="with_replacement", rng=9, record=[0, 40])
        want = _plain_ensemble(problem, data.X, np.asarray(data.y, np.float64), opt, 40, 8, 100, 9)
        np.testing.assert_array_equal(tr.final_params, want)


def test_foreign_optimizer_gets_its_own_gradient_arrays():
    kept = []

    def init(params):
        return 0

    def step(params, grads, state):
        kept.append(grads)
        return params - 0.1 * grads, state + 1

    opt = optim.Optimizer(init, step, "keeper", {})
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    data = lossvar.Dataset(X, X[:, 0] + rng.standard_normal(200), name="t", task="regression")
    lossvar.run_sgd(lossvar.LinearRegression(), data, opt, steps=5, batch_size=4, replicates=3,
                    sampling="with_replacement", rng=0, record=[0, 5])
    assert len({id(g) for g in kept}) == len(kept)
    assert not all(np.array_equal(kept[0], g) for g in kept[1:])
