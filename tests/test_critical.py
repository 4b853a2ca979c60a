"""lossvar.critical: the pieces of the critical-batch measurement against exact answers.

Monte Carlo checks are |estimate - exact| <= Z * SE with Z = 4 (a two-sided false-failure
rate of 6.3e-5 per check for a normal estimate); interval coverage is checked with a
two-sided binomial test at level 1e-3. Seeds are fixed.
"""

import warnings

import numpy as np
import pytest
from scipy import stats as st

import lossvar
from lossvar import critical, theory

Z = 4.0


@pytest.fixture(scope="module")
def least_squares():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 3)) * np.array([1.0, 0.6, 0.3])
    y = X @ np.array([1.0, -2.0, 0.5]) + rng.standard_normal(300)
    return lossvar.LinearRegression(), lossvar.Dataset(X, y, name="ls", task="regression")


# -- one step --------------------------------------------------------------------------


@pytest.mark.parametrize("sampling", ["with_replacement", "without_replacement"])
def test_one_step_gains_agree_with_the_exact_quadratic_theory(least_squares, sampling):
    problem, data = least_squares
    w = np.zeros(3)
    grads = problem.grad(w, data.X, data.y)
    g, h = grads.mean(axis=0), problem.hessian(w, data.X, data.y)
    cov = np.cov(grads, rowvar=False, bias=True)
    loss = float(problem.mean_loss(w, data.X, data.y))
    eps = np.array([0.1, 0.5, 1.0, 1.8]) / np.linalg.eigvalsh(h)[-1]
    gains = critical.one_step_gains(problem, data, w, [1, 8, 300], eps, replicates=3000,
                                    sampling=sampling, rng=7)
    assert sorted(gains) == [1, 8, 300] and gains[8].shape == (3000, 4)
    for b, v in gains.items():
        exact = loss - theory.one_step_expected_loss(loss, g, h, cov, b, eps, n=300, sampling=sampling)
        mean, se = lossvar.stats.mean_se(v, axis=0)
        if sampling == "without_replacement" and b == 300:  # the whole data set: no noise at all
            np.testing.assert_allclose(v, exact[None, :] + 0 * v, rtol=1e-10)
            continue
        assert (np.abs(mean - exact) <= Z * se).all(), (b, mean, exact, se)


def test_one_step_gains_same_bits_for_any_ladder(least_squares):
    # each batch size has its own stream: adding another size changes nothing
    problem, data = least_squares
    eps = np.array([0.05, 0.2])
    one = critical.one_step_gains(problem, data, np.zeros(3), [4], eps, replicates=300, rng=2)
    two = critical.one_step_gains(problem, data, np.zeros(3), [1, 4], eps, replicates=300, rng=2)
    np.testing.assert_array_equal(one[4], two[4])


def test_best_step_recovers_the_maximum_and_covers_it():
    # gains a eps - c eps^2 with noise in a and c per replicate: the maximum a/(2c) = 1
    eps = np.geomspace(0.03, 2.0, 11)
    covered = 0
    for seed in range(400):
        rng = np.random.default_rng([4, seed])
        a = 1.0 + 0.3 * rng.standard_normal(200)
        c = 0.5 + 0.2 * rng.standard_normal(200)
        fit = critical.best_step_fit(a[:, None] * eps - c[:, None] * eps**2, eps, confidence=0.9)
        assert fit.estimable
        covered += fit.learning_rate_ci.low <= 1.0 <= fit.learning_rate_ci.high
    assert st.binomtest(covered, 400, 0.9).pvalue > 1e-3, covered


def test_best_step_is_flagged_where_not_estimable():
    rng = np.random.default_rng(0)
    eps = np.geomspace(0.03, 2.0, 11)
    noise = 0.01 * rng.standard_normal((500, eps.size))
    ok = critical.best_step_fit(eps - 0.5 * eps**2 + noise, eps)  # maximum at eps = 1
    assert ok.estimable and abs(ok.learning_rate - 1) < 0.05
    assert ok.learning_rate_ci.low < ok.learning_rate < ok.learning_rate_ci.high
    for gains in (-eps + 0.2 * eps**2 + noise,  # a < 0, c < 0: a "maximum" at a negative step
                  -eps - 0.5 * eps**2 + noise,  # a < 0: the best step would be negative
                  eps + 0.1 * eps**2 + noise,  # c < 0: no maximum
                  eps + 50 * noise):  # c = 0: Fieller's interval is unbounded
        assert not critical.best_step_fit(gains, eps).estimable
    with pytest.raises(ValueError, match="`gains` must have shape"):
        critical.best_step_fit(noise[:, :3], eps)


# -- steps to a target -----------------------------------------------------------------------


class _Records:
    """A stand-in for SGDResult: recorded losses of two runs at steps 0, 10, 20, 30."""

    steps = np.array([0, 10, 20, 30])

    def __init__(self, loss):
        self.loss = np.asarray(loss, dtype=float)

    def values(self, metric, *, used_only=True):
        assert metric == "loss" and not used_only
        return self.loss


def test_steps_to_target_interpolates_a_geometric_decay_exactly():
    # L - L* = 2 * 0.9^k: the target 2 * 0.9^14.5 is crossed at k = 14.5
    k = _Records.steps
    runs = _Records([1.0 + 2 * 0.9**k, 1.0 + 2 * 0.99**k])
    out = critical.steps_to_target(runs, 1.0 + 2 * 0.9**14.5, loss_star=1.0)
    assert out[0] == pytest.approx(14.5, rel=1e-12) and np.isnan(out[1])
    assert critical.steps_to_target(runs, 5.0, loss_star=1.0).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="`target` must exceed `loss_star`"):
        critical.steps_to_target(runs, 0.5, loss_star=1.0)


def _steps_model(lr, cap, lr_max=1.0):
    """Steps to a target at rate lr: 10/lr + 100 lr (fewest at lr = 0.316), NaN above lr_max
    (diverges) or beyond the cap."""
    s = 10.0 / lr + 100.0 * lr
    return np.full(3, np.nan if lr > lr_max or s > cap else s)


def test_tune_learning_rate_brackets_the_best_rate_of_the_grid():
    seen = {}

    def measure(lr, cap, seed):
        seen.setdefault(round(np.log2(lr), 6), []).append(seed.spawn_key)
        s = _steps_model(lr, cap)
        return s, int(np.isnan(s).all() and lr > 1.0)

    found = critical.tune_learning_rate(measure, base=1.0, factor=2.0, start=6, cap=10_000, rng=1)
    grid = 2.0 ** -np.arange(-3, 12)
    best = grid[np.argmin(10 / grid + 100 * grid)]
    assert found.learning_rate == best and found.interior
    assert found.mean_steps == pytest.approx(10 / best + 100 * best)
    assert all(len(v) == 1 for v in seen.values())  # each rate measured once, with its own seed
    assert [r["k"] for r in found.rows] == list(found.tried)  # one row per rate, in the walk's order
    assert found.cap == int(np.ceil(3 * found.mean_steps)) + 10
    # from the other side, through a diverging rate: the same best rate
    other = critical.tune_learning_rate(measure, base=1.0, factor=2.0, start=-2, cap=10_000, rng=1)
    assert other.learning_rate == best and other.interior
    nothing = critical.tune_learning_rate(lambda lr, cap, seed: (np.full(3, np.nan), 3), base=1.0,
                                          factor=2.0, start=0, cap=5, rng=1, max_rates=3)
    assert nothing.index is None and not nothing.interior


def test_steps_at_best_rate_retunes_when_the_cap_was_too_tight():
    calls = []

    def run(lr, replicates, max_steps, seed):
        calls.append((replicates, max_steps))
        return np.full(replicates, 10.0 / lr + 100 * lr if 10.0 / lr + 100 * lr <= max_steps else np.nan), 0

    m = critical.steps_at_best_rate(run, 8, base=1.0, factor=2.0, start=2, cap=20, first_cap=1000,
                                    rng=3, replicates=5, tune_replicates=2)
    assert m.search.learning_rate == 0.25 and m.reached.size == 5
    assert any(r["step_cap"] == 20 for r in m.tuning) and any(r["step_cap"] == 1000 for r in m.tuning)
    assert calls[-1] == (5, int(np.ceil(4 * (40 + 25))) + 20)  # fresh runs, 4 times the slowest
    row = m.to_frame().iloc[0]
    assert row["steps"] == 65.0 and row["examples"] == 8 * 65.0 and row["lr_interior"]
    failed = critical.steps_at_best_rate(lambda *a: (np.full(a[1], np.nan), 0), 8, base=1.0, factor=2.0,
                                         start=0, cap=10, first_cap=10, rng=3, replicates=5,
                                         tune_replicates=2)
    row = failed.to_frame().iloc[0]
    assert failed.steps is None and list(row.index) == ["lr", "replicates", "reached"] and np.isnan(row["lr"])


# -- the hyperbola ----------------------------------------------------------------------------


def _runs(rng, s_min=100.0, e_min=3200.0, sizes=(1, 4, 16, 64, 256), n=200):
    return {b: s_min + e_min / b + rng.normal(0.0, 0.1 * (s_min + e_min / b), n) for b in sizes}


def test_critical_batch_fit_recovers_the_hyperbola():
    exact = {b: np.array([100 + 3200 / b, 100 + 3200 / b + 1e-9]) for b in (1, 4, 16, 64)}
    fit = critical.critical_batch_fit(exact, n_resamples=100, rng=0)
    assert fit.s_min == pytest.approx(100, rel=1e-6) and fit.e_min == pytest.approx(3200, rel=1e-6)
    assert fit.b_crit == pytest.approx(32, rel=1e-6) and fit.batch_sizes == (1, 4, 16, 64)
    row = fit.to_frame().iloc[0]
    assert list(row.index)[:3] == ["s_min", "e_min", "b_crit"] and row["b_crit_ci_low"] == fit.b_crit_ci.low


def test_critical_batch_interval_covers_at_its_level():
    # 300 experiments of 200 runs per batch size: the percentile bootstrap of B_crit
    covered = 0
    for seed in range(300):
        fit = critical.critical_batch_fit(_runs(np.random.default_rng([9, seed])), confidence=0.9,
                                          n_resamples=400, rng=seed)
        covered += fit.b_crit_ci.low <= 32.0 <= fit.b_crit_ci.high
    assert st.binomtest(covered, 300, 0.9).pvalue > 1e-3, covered


@pytest.mark.parametrize(("steps", "kw", "match"), [
    ({1: [1.0, 2.0], 2: [1.0, 2.0]}, {}, "at least 3 batch sizes"),
    ({1: [1.0, 2.0], 2: [1.0, 2.0], 4: [1.0]}, {}, "at least 2 finite step counts"),
    ({1: [1.0, 2.0], 2: [1.0, np.nan], 4: [1.0, 2.0]}, {}, "at least 2 finite step counts"),
    ({1: [1.0, 2.0], 2: [1.0, 2.0], 4: [1.0, 2.0]}, {"n_resamples": 10}, "`n_resamples` must be"),
])
def test_critical_batch_fit_bad_input(steps, kw, match):
    with pytest.raises(ValueError, match=match):
        critical.critical_batch_fit(steps, **kw)


# -- gradient descent to levels -----------------------------------------------------------------


def test_gradient_descent_path_stops_at_the_first_step_below_each_level(least_squares):
    problem, data = least_squares
    w_star = problem.minimize(data.X, data.y)
    loss_star = float(problem.mean_loss(w_star, data.X, data.y))
    lr = 1 / np.linalg.eigvalsh(problem.hessian(np.zeros(3), data.X, data.y))[-1]
    points = critical.gradient_descent_path(problem, data, np.zeros(3), learning_rate=lr,
                                            fractions=[0.1, 1.0, 0.5, 0.01], loss_star=loss_star)
    assert [p.fraction for p in points] == [1.0, 0.5, 0.1, 0.01] and points[0].step == 0
    loss0 = float(problem.mean_loss(np.zeros(3), data.X, data.y))
    for p in points[1:]:  # each point is below its level, the step before it is not
        assert p.excess_fraction <= p.fraction
        w = np.zeros(3)
        for _ in range(p.step - 1):
            w = w - lr * problem.mean_grad(w, data.X, data.y)
        assert (problem.mean_loss(w, data.X, data.y) - loss_star) / (loss0 - loss_star) > p.fraction
        np.testing.assert_array_equal(w - lr * problem.mean_grad(w, data.X, data.y), p.params)
    with pytest.warns(RuntimeWarning, match="did not reach the levels"):
        short = critical.gradient_descent_path(problem, data, np.zeros(3), learning_rate=lr,
                                               fractions=[1e-9], loss_star=loss_star, max_steps=3)
    assert short == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="`loss_star` must be below"):
            critical.gradient_descent_path(problem, data, np.zeros(3), learning_rate=lr, fractions=[0.5],
                                           loss_star=loss0 + 1)
