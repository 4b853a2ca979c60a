"""SGD ensembles against the exact recursions of docs/theory.md, section 6.

Monte Carlo checks: at every recorded step k >= 1 the across-replicate mean of
(w_k - w*)^2 must agree with the exact recursion within z standard errors,
with z Bonferroni-corrected over the recorded steps so that one run of one
check fails by chance with probability at most ALPHA = 1e-4 (two-sided
normal approximation of the mean of R = 4096 replicates). This file makes
about 12 such checks: a new seed fails by chance with probability about 1e-3.
The seeds are fixed, so a checkout passes or fails deterministically.
"""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import lossvar
from lossvar import GaussianNoisePopulation, optim, sampling, schedules, theory
from lossvar.sampling import epoch_batches
from lossvar.sgd import BLOCK_SIZE, DivergenceWarning, run_sgd
from lossvar.streams import as_seed_sequence, stream

ALPHA = 1e-4
R = 4096
MU, SIGMA, M1 = 1.0, 1.0, 3.0


def _z(n_checks):
    return stats.norm.isf(ALPHA / (2 * n_checks))


def _agrees(estimate, se, exact):
    z = _z(len(estimate))
    dev = np.abs(estimate - exact)
    assert np.all(dev <= z * se), pd.DataFrame(dict(estimate=estimate, exact=exact, se=se,
                                                    z=dev / se))


def _quadratic_run(schedule, *, steps=1000, batch_size=1, curvature=MU, average=False, rng=0,
                   replicates=R):
    q = lossvar.NoisyQuadratic(curvature, noise_std=SIGMA)
    w0 = np.full(q.dim, M1)
    return run_sgd(q, GaussianNoisePopulation(q), optim.sgd(schedule), steps=steps, batch_size=batch_size,
                   replicates=replicates, w0=w0, rng=rng, average=average)


SCHEDULES = {
    "constant": schedules.constant(0.1),
    "c/k, 2c mu > 1": schedules.polynomial(2.0, 1.0),
    "c/k, 2c mu < 1": schedules.polynomial(0.25, 1.0),
    "c/k^0.75": schedules.polynomial(1.0, 0.75),
    "c/k^0.3": schedules.polynomial(0.5, 0.3),
    "c/k^2": schedules.polynomial(0.5, 2.0),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_monte_carlo_matches_exact_recursion(name):
    schedule = SCHEDULES[name]
    tr = _quadratic_run(schedule, rng=sum(map(ord, name)))
    exact = theory.quadratic_moments(schedule, MU, SIGMA**2, m1=M1, steps=1000)
    s = tr.by_step
    assert s.dist2_mean[0] == M1**2 and s.dist2_se[0] == 0  # the fixed start
    s = s[s.step >= 1]
    _agrees(s.dist2_mean.to_numpy(), s.dist2_se.to_numpy(), exact.mse[s.step])
    # the expected risk of the quadratic population is mu/2 (w - w*)^2, exactly
    np.testing.assert_allclose(tr.table.loss, 0.5 * MU * tr.table.dist2, rtol=1e-15)
    np.testing.assert_allclose(s.lr, schedule(s.step.to_numpy()), rtol=1e-15)
    if name == "c/k^2":  # the stall: the mean of w keeps a start-dependent offset
        final = tr.final_params[:, 0]
        se = final.std(ddof=1) / np.sqrt(R)
        _agrees(np.array([final.mean()]), np.array([se]), exact.mean[-1])
        assert abs(final.mean()) > 10 * se


def test_minibatch_and_diagonal_hessian():
    # B = 4 fresh noise vectors per step: sigma^2 -> sigma^2 / 4; two independent coordinates
    h = np.array([0.5, 2.0])
    tr = _quadratic_run(schedules.constant(0.2), steps=300, batch_size=4, curvature=h, rng=5)
    exact = theory.quadratic_moments(0.2, h, SIGMA**2 / 4, m1=M1, steps=300)
    s = tr.by_step[tr.by_step.step >= 1]
    _agrees(s.dist2_mean.to_numpy(), s.dist2_se.to_numpy(), exact.mse[s.step])
    assert exact.mse[-1] == pytest.approx(theory.constant_step_floor(0.2, h, SIGMA**2 / 4),
                                          rel=1e-6)


def test_inverse_k_step_gives_sigma2_over_mu2_n():
    mu = 2.0
    schedule = schedules.polynomial(1 / mu, 1.0)  # eta_k = 1 / (mu k)
    q = lossvar.NoisyQuadratic(mu, noise_std=SIGMA)
    tr = run_sgd(q, GaussianNoisePopulation(q), optim.sgd(schedule), steps=500, batch_size=1,
                 replicates=R, w0=[M1], rng=7)
    s = tr.by_step[tr.by_step.step >= 1]
    exact = theory.inverse_k_exact(s.step.to_numpy() + 1, mu, SIGMA**2)
    np.testing.assert_allclose(exact, SIGMA**2 / (mu**2 * s.step), rtol=1e-15)
    _agrees(s.dist2_mean.to_numpy(), s.dist2_se.to_numpy(), exact)


@pytest.mark.parametrize("schedule", [schedules.constant(0.1), schedules.polynomial(1.0, 0.75)],
                         ids=["constant", "c/k^0.75"])
def test_polyak_ruppert_average_matches_exact(schedule):
    tr = _quadratic_run(schedule, steps=1000, average=True, rng=11)
    exact = theory.quadratic_moments(schedule, MU, SIGMA**2, m1=M1, steps=1000)
    s = tr.by_step[tr.by_step.step >= 1]
    both = np.concatenate
    _agrees(both([s.dist2_mean, s.avg_dist2_mean]), both([s.dist2_se, s.avg_dist2_se]),
            both([exact.mse[s.step], exact.avg_mse[s.step]]))
    assert s.avg_dist2_mean.iloc[-1] < s.dist2_mean.iloc[-1]  # averaging helps here


# -- fixed data sets -------------------------------------------------------------------


def _linear_dataset(n=60, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.standard_normal(n)
    return lossvar.Dataset(X, y, task="regression")


@pytest.mark.parametrize("n, b", [(12, 3), (10, 3), (7, 7), (5, 1)])
def test_epoch_batches_visit_every_example_once(n, b):
    batches = epoch_batches(np.random.default_rng(0), n, b, 50)
    assert batches.shape == (50, n // b, b)
    flat = batches.reshape(50, -1)
    for row in flat:  # distinct within the epoch: each example at most once
        assert len(set(row.tolist())) == (n // b) * b
    if n % b == 0:  # then exactly once
        assert np.all(np.sort(flat, axis=1) == np.arange(n))
    else:  # the dropped remainder is a uniformly random set: every example gets dropped
        dropped = set(range(n)) - set(flat[0].tolist())
        assert len(dropped) == n % b
        counts = np.bincount(flat.ravel(), minlength=n)
        assert counts.min() < 50  # some replicate dropped each example at least once
        assert counts.min() > 0


def test_reshuffle_on_linear_regression_decreases_distance():
    data = _linear_dataset()
    tr = run_sgd(lossvar.LinearRegression(), data, optim.sgd(0.05), steps=300, batch_size=6,
                 replicates=64, rng=1)
    s = tr.by_step
    np.testing.assert_allclose(tr.w_star, np.linalg.lstsq(data.X, data.y, rcond=None)[0])
    assert s.dist2_mean.iloc[-1] < 0.01 * s.dist2_mean.iloc[0]
    assert s.loss_mean.iloc[-1] < s.loss_mean.iloc[0]
    assert tr.loss_star == pytest.approx(lossvar.LinearRegression().mean_loss(tr.w_star, data.X,
                                                                              data.y))


def test_full_batch_is_gradient_descent_and_stacking_is_exact():
    data = _linear_dataset()
    problem = lossvar.LinearRegression(l2=0.1)
    w0 = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [-5.0, 0.5, 2.0]])
    tr = run_sgd(problem, data, optim.sgd(0.1), steps=25, replicates=3, sampling="full",
                 w0=w0, rng=0, record=[0, 10, 25])
    X, y = data.X, data.y
    for r in range(3):
        w = w0[r].copy()
        for _ in range(25):
            w = w - 0.1 * (X.T @ (X @ w - y) / len(y) + 0.1 * w)
        np.testing.assert_allclose(tr.final_params[r], w, rtol=1e-12)
        one = run_sgd(problem, data, optim.sgd(0.1), steps=25, replicates=1, sampling="full",
                      w0=w0[r], record=[0, 10, 25])
        np.testing.assert_array_equal(one.final_params[0], tr.final_params[r])
    assert tr.info["batch_size"] == len(y)


def _with_replacement_batches(gen, n, b, reps, steps):
    return [gen.integers(0, n, (reps, b), dtype=np.int32) for _ in range(steps)]


def _reshuffled_batches(gen, n, b, reps, steps):
    out = []
    while len(out) < steps:
        epoch = epoch_batches(gen, n, b, reps)
        out += [epoch[:, i] for i in range(n // b)]
    return out[:steps]


@pytest.mark.parametrize("sampling, batches", [("with_replacement", _with_replacement_batches),
                                               ("reshuffle", _reshuffled_batches)])
def test_stacked_replicates_equal_one_at_a_time_with_the_same_batches(sampling, batches):
    data = lossvar.Dataset(*_logistic_data(), task="classification")
    problem, opt = lossvar.LogisticRegression(), optim.adam(0.05)
    steps, b, reps = 60, 8, 5  # 60 steps = 2.4 epochs of 25 batches (N = 200)
    tr = run_sgd(problem, data, opt, steps=steps, batch_size=b, replicates=reps,
                 sampling=sampling, rng=42, record=[steps])
    # the documented draws of block 0 from stream(root, 0, 0, 0)
    idx = batches(stream(tr.seed, 0, 0, 0), data.n, b, reps, steps)
    X, y = data.X, data.y.astype(float)
    for r in range(reps):
        w = np.zeros(data.d)
        state = opt.init(w)
        for t in range(steps):
            i = idx[t][r]
            updates, state = opt.update(problem.mean_grad(w, X[i], y[i]), state, w)
            w = optim.apply_updates(w, updates)
        np.testing.assert_array_equal(tr.final_params[r], w)


def _logistic_data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.standard_normal((n, 2))])
    y = (rng.random(n) < 1 / (1 + np.exp(-X @ np.array([0.3, 1.0, -1.0])))).astype(int)
    return X, y


@pytest.mark.reproducibility
def test_same_seed_same_bits_whatever_the_chunking():
    data = _linear_dataset()
    kw = dict(steps=40, batch_size=5, replicates=300, rng=9, average=True)
    a = run_sgd(lossvar.LinearRegression(), data, optim.momentum(0.02), **kw)
    b = run_sgd(lossvar.LinearRegression(), data, optim.momentum(0.02),
                execution=lossvar.Execution(chunk_size=1000), **kw)
    pd.testing.assert_frame_equal(a.table, b.table)
    pd.testing.assert_frame_equal(a.by_step, b.by_step)
    c = run_sgd(lossvar.LinearRegression(), data, optim.momentum(0.02), **(kw | {"rng": a.seed}))
    pd.testing.assert_frame_equal(a.table, c.table)
    d = run_sgd(lossvar.LinearRegression(), data, optim.momentum(0.02), **(kw | {"rng": 10}))
    assert not a.table.dist2.equals(d.table.dist2)
    assert list(a.table.columns) == ["replicate", "step", "loss", "dist2", "lr", "avg_loss",
                                     "avg_dist2"]
    assert len(a.table) == 300 * len(a.by_step)
    assert a.by_step.step.iloc[0] == 0 and a.by_step.step.iloc[-1] == 40


@pytest.mark.reproducibility
def test_recorded_parameters_are_the_runs_own_whatever_the_workers(tmp_path):
    # Replicates 0, 5 and 300 (300 is in the second block of 256): their parameters at
    # every recorded step equal what the distances, the final parameters and a
    # one-replicate rerun with the same batches say, and the same bits come back from
    # two workers, another chunking and a resumed checkpoint.
    data = _linear_dataset()
    kw = dict(steps=30, batch_size=5, replicates=301, rng=4, record=[0, 7, 30])
    a = run_sgd(lossvar.LinearRegression(), data, optim.adam(0.05), record_params=[300, 0, 5], **kw)
    assert a.params.shape == (3, 3, a.w_star.size)
    assert a.params_replicates.tolist() == [0, 5, 300]
    np.testing.assert_array_equal(a.params[:, 0], np.zeros((3, a.w_star.size)))
    np.testing.assert_array_equal(a.params[:, -1], a.final_params[[0, 5, 300]])
    dist2 = a.values("dist2")[[0, 5, 300]]
    # the same numbers through another reduction: a few ulps apart at most
    np.testing.assert_allclose(np.sum((a.params - a.w_star) ** 2, axis=2), dist2, rtol=1e-13)
    for other in (dict(workers=2), dict(chunk_size=1), dict(checkpoint=tmp_path / "c"),
                  dict(checkpoint=tmp_path / "c")):
        b = run_sgd(lossvar.LinearRegression(), data, optim.adam(0.05),
                    record_params=[0, 5, 300], execution=lossvar.Execution(**other), **kw)
        np.testing.assert_array_equal(a.params, b.params)
    every = run_sgd(lossvar.LinearRegression(), data, optim.adam(0.05), record_params="all", **kw)
    np.testing.assert_array_equal(every.params[[0, 5, 300]], a.params)
    pd.testing.assert_frame_equal(every.table, a.table)
    none = run_sgd(lossvar.LinearRegression(), data, optim.adam(0.05), **kw)
    assert none.params.shape[0] == 0 and none.params_replicates.size == 0


def test_record_params_bad_input(small):
    q, data = small
    kw = dict(steps=3, batch_size=5, replicates=4)
    with pytest.raises(ValueError, match=r"`record_params` must hold replicate indices in "
                                         r"\[0, replicates=4\); got 4"):
        run_sgd(q, data, optim.sgd(0.1), record_params=[0, 4], **kw)
    with pytest.raises(ValueError, match=r"`record_params` must be 'all', None or a sequence"):
        run_sgd(q, data, optim.sgd(0.1), record_params=[0.5], **kw)
    with pytest.raises(ValueError, match=r"record_params.*'all'.*'some'"):
        run_sgd(q, data, optim.sgd(0.1), record_params="some", **kw)


def test_population_loss_is_nan_when_the_risk_is_unknown():
    pop = lossvar.GaussianLinearPopulation([1.0, -1.0], noise_std=0.5)
    tr = run_sgd(lossvar.LinearRegression(l2=0.1), pop, optim.sgd(0.05), steps=20,
                 batch_size=4, replicates=8, rng=0)
    assert tr.table.loss.isna().all() and np.isnan(tr.loss_star)
    assert np.isfinite(tr.table.dist2).all()
    tr = run_sgd(lossvar.LinearRegression(), pop, optim.sgd(0.05), steps=20, batch_size=4,
                 replicates=8, rng=0, record=[20])
    w = tr.final_params
    np.testing.assert_allclose(tr.table.loss, (np.sum((w - [1, -1]) ** 2, 1) + 0.25) / 2)


# -- divergence and bad input ----------------------------------------------------------


def test_divergence_is_reported_and_excluded():
    # eta = 2.5 > 2/mu and no noise: w0 = 0 stays at w* forever, w0 = 1 grows like 1.5^k
    q = lossvar.NoisyQuadratic(1.0, noise_std=0.0)
    w0 = np.array([[0.0], [1.0], [0.0], [-1.0], [0.0]])
    with pytest.warns(DivergenceWarning, match=r"2 of 5 replicates diverged.*1 \(step"):
        tr = run_sgd(q, GaussianNoisePopulation(q), optim.sgd(2.5), steps=2000, batch_size=1, replicates=5,
                     w0=w0, rng=0, record=[0, 10, 2000])
    # the parameters first overflow at the same update as a hand loop
    u, k = 1.0, 0
    with np.errstate(over="ignore", invalid="ignore"):
        while np.isfinite(u):
            u, k = u - 2.5 * (1.0 * (u - 0.0) + 0.0), k + 1
    assert tr.diverged.replicate.tolist() == [1, 3]
    assert tr.diverged.step.tolist() == [k, k]
    assert tr.by_step.n.tolist() == [3, 3, 3]
    assert np.all(tr.by_step.dist2_mean == 0)
    assert np.isnan(tr.final_params[[1, 3]]).all()
    assert tr.values("dist2").shape == (3, 3)

    # overflow of the recorded loss (u^2) is caught at the record step, before the params
    with pytest.warns(DivergenceWarning):
        tr = run_sgd(q, GaussianNoisePopulation(q), optim.sgd(2.5), steps=1000, batch_size=1, replicates=5,
                     w0=w0, rng=0, record=[0, 500, 1000])
    assert tr.diverged.step.tolist() == [1000, 1000]
    row = tr.table[(tr.table.replicate == 1) & (tr.table.step == 1000)]
    assert row.dist2.isna().all() and row.loss.isna().all()


@pytest.fixture
def small():
    q = lossvar.NoisyQuadratic([1.0, 2.0])
    return q, lossvar.Dataset(np.random.default_rng(0).standard_normal((50, 2)))


def test_bad_input(small):
    q, data = small
    opt = optim.sgd(0.1)
    with pytest.raises(ValueError, match=r"`steps` must be an integer >= 1; got 0"):
        run_sgd(q, data, opt, steps=0, batch_size=5, replicates=2)
    with pytest.raises(ValueError, match=r"`batch_size` must be an integer in \[1, N=50\] with "
                                         r"sampling='reshuffle'.*got 51"):
        run_sgd(q, data, opt, steps=5, batch_size=51, replicates=2)
    run_sgd(q, data, opt, steps=2, batch_size=51, replicates=2, sampling="with_replacement")
    with pytest.raises(ValueError, match=r"The value for `sampling` must be one of 'reshuffle', "
                                         r"'with_replacement', 'full', but 'bogus' was passed"):
        run_sgd(q, data, opt, steps=5, batch_size=5, replicates=2, sampling="bogus")
    with pytest.raises(ValueError, match=r"must be one of 'fresh', but 'reshuffle' was passed"):
        run_sgd(q, GaussianNoisePopulation(q), opt, steps=5, batch_size=5, replicates=2,
                sampling="reshuffle")
    with pytest.raises(ValueError, match=r"`w0` must have shape \(p,\)=\(2,\) or \(R, p\)="
                                         r"\(3, 2\); got an array of shape \(3,\)"):
        run_sgd(q, data, opt, steps=5, batch_size=5, replicates=3, w0=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"`record` must hold step counts in \[0, steps=5\]; "
                                         r"got 6"):
        run_sgd(q, data, opt, steps=5, batch_size=5, replicates=2, record=[0, 6])
    with pytest.raises(ValueError, match=r"`batch_size` must be an integer in \[50, 50\]"):
        run_sgd(q, data, opt, steps=5, batch_size=5, replicates=2, sampling="full")
    with pytest.raises(TypeError, match=r"`batch_size` must be given"):
        run_sgd(q, data, opt, steps=5, replicates=2)
    with pytest.raises(ValueError, match=r"`replicates` must be an integer >= 1; got 0"):
        run_sgd(q, data, opt, steps=5, batch_size=5, replicates=0)
    with pytest.raises(ValueError, match=r"`w0` must be finite"):
        run_sgd(q, data, opt, steps=5, batch_size=5, replicates=2, w0=[np.nan, 0.0])


# -- run_sgd is the public pieces in a loop: mean_grad, update, apply_updates ------------------


def _bits(a):
    """int64 bit patterns, NaN as one pattern whatever its payload."""
    a = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
    b = a.view(np.int64).copy()
    b[np.isnan(a)] = 0x7FF8000000000000
    return b


def _assert_same_bits(a, b):
    np.testing.assert_array_equal(_bits(a), _bits(b))


def _plain_run(problem, X, y, opt, steps, B, w0, seed):
    """run_sgd's computation written with the public API, block by block: per-step draws
    of the documented stream, mean_grad without ``out``, the pure update, an np.isfinite
    check every step and the records at the start and the end."""
    w_star = problem.minimize(X, y)
    finals, firsts = [], []
    for j, start in enumerate(range(0, len(w0), BLOCK_SIZE)):
        rng = stream(as_seed_sequence(seed), 0, j, 0)
        w = np.array(w0[start:start + BLOCK_SIZE], dtype=np.float64)
        state = opt.init(w)
        first_bad = np.full(len(w), -1)

        def mark(bad, t, w=w, first_bad=first_bad):
            first_bad[bad & (first_bad < 0)] = t
            w[bad] = np.nan

        def record(t, w):
            values = np.stack([problem.mean_loss(w, X, y), np.sum((w - w_star) ** 2, axis=1)], 1)
            return ~np.isfinite(values).all(axis=1), t

        with np.errstate(all="ignore"):
            mark(*record(0, w))
            for t in range(1, steps + 1):
                idx = sampling.with_replacement(rng, X.shape[0], B, len(w))
                updates, state = opt.update(problem.mean_grad(w, X[idx], y[idx]), state, w)
                w[...] = optim.apply_updates(w, updates)
                mark(~np.isfinite(w).all(axis=1), t)
            mark(*record(steps, w))
        finals.append(w)
        firsts.append(first_bad)
    return np.concatenate(finals), np.concatenate(firsts)


@pytest.mark.reproducibility
@pytest.mark.parametrize("problem", [lossvar.LogisticRegression(), lossvar.LogisticRegression(l2=0.05),
                                     lossvar.LinearRegression(l2=0.1)], ids=repr)
@pytest.mark.parametrize("opt", [optim.adam(1e-2), optim.rmsprop(1e-2), optim.nesterov(0.05, 0.5),
                                 optim.adamw(0.02, weight_decay=0.3)], ids=lambda o: o.name)
def test_run_sgd_equals_the_public_pieces_in_a_loop(problem, opt):
    # Two blocks (300 replicates), indices of several steps in one draw (2**18 // (R_b B)
    # steps a draw): the numbers of one draw per step, the arithmetic of update.
    rng = np.random.default_rng(2)
    X = rng.standard_normal((400, 6))
    if isinstance(problem, lossvar.LogisticRegression):
        y = (rng.random(400) < 1 / (1 + np.exp(-X[:, 0]))).astype(np.int64)
        data = lossvar.Dataset(X, y, name="t", task="classification")
    else:
        y = X[:, 0] + rng.standard_normal(400)
        data = lossvar.Dataset(X, y, name="t", task="regression")
    tr = run_sgd(problem, data, opt, steps=40, batch_size=8, replicates=300,
                 sampling="with_replacement", rng=9, record=[0, 40])
    w, _ = _plain_run(problem, data.X, np.asarray(data.y, np.float64), opt, 40, 8, np.zeros((300, 6)), 9)
    _assert_same_bits(tr.final_params, w)


@pytest.mark.parametrize("R, B, steps", [(100, 1000, 5), (300, 1100, 4), (256, 32, 45)],
                         ids=["2 steps a draw, the last draw of 1", "1 step a draw in block 0, "
                              "5 in block 1", "32 steps a draw"])
def test_bulk_draws_give_the_per_step_batches(R, B, steps):
    # run_sgd draws the indices of 2**18 // (R_b B) steps at once; a plain loop drawing
    # each step's (R_b, B) indices on its own gives the same trajectories.
    rng = np.random.default_rng(5)
    X = rng.standard_normal((5000, 3))
    y = X @ np.array([0.5, -1.0, 2.0]) + rng.standard_normal(5000)
    data = lossvar.Dataset(X, y, name="t", task="regression")
    tr = run_sgd(lossvar.LinearRegression(), data, optim.sgd(0.05), steps=steps,
                 batch_size=B, replicates=R, sampling="with_replacement", rng=11,
                 record=[0, steps])
    w, _ = _plain_run(lossvar.LinearRegression(), X, y, optim.sgd(0.05), steps, B,
                      np.zeros((R, 3)), 11)
    _assert_same_bits(tr.final_params, w)


def test_one_draw_of_many_steps_equals_the_draws_of_each():
    # The properties the bulk draw rests on: one draw of many steps gives the numbers of
    # the draws of each step (sampling.with_replacement's, of sampling.index_dtype), in
    # intp as in that dtype, and leaves the generator in the same state.
    for n in (10_000, 3, 2**31 - 1, 2**31 + 5, 2**32, 2**40):
        a, b = np.random.default_rng(9), np.random.default_rng(9)
        bulk = a.integers(0, n, (7, 13, 5), dtype=np.intp)
        each = np.stack([sampling.with_replacement(b, n, 5, 13) for _ in range(7)])
        assert each.dtype == sampling.index_dtype(n)
        np.testing.assert_array_equal(bulk, each)
        assert a.integers(0, 2**62) == b.integers(0, 2**62)


@pytest.mark.parametrize("opt", [optim.sgd(20.0), optim.nesterov(20.0, 0.5), optim.adam(1e307)],
                         ids=lambda o: o.name)
def test_divergence_steps_equal_a_plain_loop(opt):
    # Starting points from 1 to 1e150 and huge steps: the parameters overflow at many
    # different steps between the two records.
    rng = np.random.default_rng(6)
    X = rng.standard_normal((300, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + rng.standard_normal(300)
    data = lossvar.Dataset(X, y, name="t", task="regression")
    w0 = rng.standard_normal((24, 3)) * np.logspace(0, 150, 24)[:, None]
    with pytest.warns(lossvar.DivergenceWarning):
        tr = run_sgd(lossvar.LinearRegression(), data, opt, steps=300, batch_size=1,
                     replicates=24, sampling="with_replacement", w0=w0, rng=3, record=[0, 300])
    w, first_bad = _plain_run(lossvar.LinearRegression(), X, y, opt, 300, 1, w0, 3)
    bad = np.flatnonzero(first_bad >= 0)
    assert len(set(first_bad[bad].tolist())) > 3  # the steps do vary
    np.testing.assert_array_equal(tr.diverged.replicate, bad)
    np.testing.assert_array_equal(tr.diverged.step, first_bad[bad])
    _assert_same_bits(tr.final_params, w)


def test_the_dot_with_zeros_is_zero_iff_every_entry_is_finite():
    # run_sgd's check for non-finite parameters after each step
    values = np.array([0.0, -0.0, 5e-324, -5e-324, 1e-310, 1.0, -3.5, 1e308, -1.7976931348623157e308])
    rng = np.random.default_rng(7)
    with np.errstate(invalid="ignore"):
        for _ in range(200):
            w = rng.choice(values, (int(rng.integers(1, 9)), int(rng.integers(1, 6))))
            assert np.dot(w.reshape(-1), np.zeros(w.size)) == 0.0
            bad = rng.choice([np.nan, np.inf, -np.inf, -np.nan])
            w.flat[rng.integers(w.size)] = bad
            assert np.dot(w.reshape(-1), np.zeros(w.size)) != 0.0


@pytest.mark.reproducibility
@pytest.mark.parametrize("problem", [lossvar.LogisticRegression(l2=0.01), lossvar.SoftmaxRegression(3),
                                     lossvar.MLP((3, 4, 3), l2=0.01)], ids=repr)
def test_recorded_loss_is_the_mean_loss_of_each_run_whatever_the_workers(problem):
    # A record's loss is problem.mean_loss on parts of the replicates: 64 replicates on
    # 8192 examples are 2 parts of 2**18 losses, each computed in its own thread on a
    # machine of 2 cores or more. Each row's value is that row's alone, however the
    # rows are cut, and whether the blocks run here or in worker processes.
    rng = np.random.default_rng(4)
    X = rng.standard_normal((8192, 3))
    y = rng.integers(0, 2 if isinstance(problem, lossvar.LogisticRegression) else 3, 8192)
    data = lossvar.Dataset(X, y, name="t", task="classification")
    kw = dict(steps=20, batch_size=4, replicates=64, sampling="with_replacement", rng=0,
              record=[0, 11, 20], record_params="all", w0=rng.standard_normal((64, problem.n_params(3))))
    here = run_sgd(problem, data, optim.adam(0.05), **kw)
    elsewhere = run_sgd(problem, data, optim.adam(0.05), execution=lossvar.Execution(workers=2), **kw)
    for j in range(len(here.steps)):
        want = [problem.mean_loss(here.params[r, j], X, y) for r in range(64)]
        _assert_same_bits(here.values("loss")[:, j], want)
        _assert_same_bits(elsewhere.values("loss")[:, j], want)


def test_a_transformation_from_elsewhere_gets_its_own_gradient_arrays():
    kept = []

    def init(params):
        return 0

    def update(grads, state, params=None):
        kept.append(grads)
        return -0.1 * grads, state + 1

    opt = optim.GradientTransformation(init, update, "keeper")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    data = lossvar.Dataset(X, X[:, 0] + rng.standard_normal(200), name="t", task="regression")
    tr = run_sgd(lossvar.LinearRegression(), data, opt, steps=5, batch_size=4, replicates=3,
                 sampling="with_replacement", rng=0, record=[0, 5])
    assert len({id(g) for g in kept}) == len(kept)
    assert not all(np.array_equal(kept[0], g) for g in kept[1:])
    assert tr.info["optimizer"] == "keeper" and tr.by_step.lr.isna().all()


def test_a_problem_without_minimize_has_no_distance():
    class NoMinimize:
        def __init__(self):
            self.inner = lossvar.LinearRegression()

        def __getattr__(self, name):
            if name == "minimize":
                raise AttributeError(name)
            return getattr(self.inner, name)

    data = _linear_dataset()
    tr = run_sgd(NoMinimize(), data, optim.sgd(0.05), steps=20, batch_size=5, replicates=4, rng=0)
    want = run_sgd(lossvar.LinearRegression(), data, optim.sgd(0.05), steps=20, batch_size=5,
                   replicates=4, rng=0)
    assert tr.table.dist2.isna().all() and np.isnan(tr.w_star).all() and np.isnan(tr.loss_star)
    assert len(tr.diverged) == 0
    np.testing.assert_array_equal(tr.table.loss, want.table.loss)

