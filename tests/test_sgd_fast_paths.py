"""run_sgd's fast paths give the bits of the plain computations they replace (issue 13).

- the full-data loss of a stack of parameters (``mean_loss`` of LinearRegression and
  LogisticRegression with w of shape (R, p) on one data set) is computed by chunks of
  rows, one row when all rows are equal: the same bits as the one-shot form and as a
  loop over the rows;
- with replacement, the indices of several steps come from one draw: the same numbers
  as one draw per step;
- with l2 == 0 the gradient skips ``+ 0 * w`` for lossvar's own optimizers: their
  trajectories do not depend on the -0.0 that term turns into +0.0;
- the non-finite check is one dot with zeros, the rows scanned only when it is not 0:
  the same first bad steps as a plain loop.

(The in-place optimizers against the pure steps: tests/test_optim.py.)

Bit equality between the fast and the plain forms is asserted on purpose: they apply
the same per-element operations (correctly rounded IEEE arithmetic, and libm's scalar
``logaddexp``/``expit``, which numpy and scipy do not vectorize for float64), the same
dgemv per row and the same per-row pairwise sums, only over different slices; the
module is rerun under the alternate CPU dispatch in CI to keep that claim honest.
"""

import warnings

import numpy as np
import pytest
import scipy.special

import lossvar
from lossvar import optim, sampling, schedules
from lossvar.sgd import BLOCK_SIZE
from lossvar.streams import as_seed_sequence, stream

pytestmark = pytest.mark.reproducibility


def _bits(a):
    """int64 bit patterns, NaN as one pattern whatever its payload."""
    a = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
    b = a.view(np.int64).copy()
    b[np.isnan(a)] = 0x7FF8000000000000
    return b


def _assert_same_bits(a, b):
    np.testing.assert_array_equal(_bits(a), _bits(b))


def _one_shot(problem, w, X, y):
    """The mean loss as LinearRegression and LogisticRegression computed it, for every
    shape, before the chunks: all scores at once, the per-sample losses, their mean."""
    w, X, y = (np.asarray(a, dtype=np.float64) for a in (w, X, y))
    z = np.matmul(X, w[..., None])[..., 0]
    if isinstance(problem, lossvar.LogisticRegression):
        phi = np.maximum(z, 0.0) - y * z + np.logaddexp(0.0, -np.abs(z))
    else:
        phi = 0.5 * (z - y) ** 2
    return np.mean(phi, axis=-1) + 0.5 * problem.l2 * np.sum(w * w, axis=-1)


# -- the full-data loss of a stack ------------------------------------------------------


def _stack(rng, R, d):
    """Parameters with the awkward values: equal rows, zeros of both signs, NaN, inf, huge."""
    w = rng.standard_normal((max(R, 8), d)) * 0.5
    w[1] = w[0]
    w[2] = -0.0
    w[3, 0] = np.nan
    w[4, 1] = np.inf
    w[5, 2] = -np.inf
    w[6] = 1e200
    w[7, ::2] = 5e-324
    return w[:R]


def _linear_data(rng, n, d, logistic):
    X = rng.standard_normal((n, d))
    X[:, 1] = -0.0
    X[::5, 2] = 0.0
    if logistic:
        y = (rng.random(n) < scipy.special.expit(X[:, 0] * 3)).astype(np.float64)
    else:
        y = X @ rng.standard_normal(d) + rng.standard_normal(n)
    return X, y


PROBLEMS = [lossvar.LogisticRegression(), lossvar.LogisticRegression(l2=0.3),
            lossvar.LinearRegression(), lossvar.LinearRegression(l2=0.1)]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("n, R", [(37, 29), (5003, 29), (40_000, 3), (3001, 400)],
                         ids=["one chunk", "chunks of 6 rows", "one row per chunk",
                              "groups of rows"])
@pytest.mark.parametrize("problem", PROBLEMS, ids=repr)
def test_stacked_mean_loss_equals_one_shot_and_row_loop(problem, n, R, threads):
    # threads > 1: the logistic losses of large stacks are computed on that many
    # threads (the scores of a group of rows in one matmul, the losses cut by rows)
    rng = np.random.default_rng(0)
    d = 4
    X, y = _linear_data(rng, n, d, isinstance(problem, lossvar.LogisticRegression))
    with np.errstate(all="ignore"):
        for w in (rng.standard_normal((2, d)), rng.standard_normal((R, d)), _stack(rng, R, d)):
            got = problem.mean_loss(w, X, y, threads=threads)
            assert got.shape == (len(w),) and got.dtype == np.float64
            _assert_same_bits(got, _one_shot(problem, w, X, y))
            _assert_same_bits(got, [problem.mean_loss(row, X, y) for row in w])


def test_mean_loss_threads_must_be_a_positive_integer():
    X, y = _linear_data(np.random.default_rng(0), 10, 4, True)
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises((ValueError, TypeError), match="threads"):
            lossvar.LogisticRegression().mean_loss(np.zeros((3, 4)), X, y, threads=bad)


def test_threaded_mean_loss_keeps_the_callers_floating_point_error_handling():
    # the threads run under the caller's np.errstate: an overflow raises as it would here
    rng = np.random.default_rng(3)
    X, y = _linear_data(rng, 3001, 4, True)
    w = rng.standard_normal((400, 4))
    w[300] = 1e308
    with np.errstate(all="raise"), pytest.raises(FloatingPointError):
        lossvar.LogisticRegression().mean_loss(w, X, y, threads=2)


@pytest.mark.parametrize("problem", PROBLEMS, ids=repr)
def test_stacked_mean_loss_of_equal_rows_is_one_row_repeated(problem):
    rng = np.random.default_rng(1)
    X, y = _linear_data(rng, 10_001, 6, isinstance(problem, lossvar.LogisticRegression))
    with np.errstate(invalid="ignore"):
        for row in (np.zeros(6), np.full(6, -0.0), rng.standard_normal(6), np.full(6, np.nan)):
            w = np.tile(row, (300, 1))
            got = problem.mean_loss(w, X, y)
            _assert_same_bits(got, _one_shot(problem, w, X, y))
            _assert_same_bits(got, np.full(300, problem.mean_loss(row, X, y)))
    # +0.0 and -0.0 rows are not "equal bits": both computed, each as its own row
    w = np.zeros((2, 6))
    w[1, 3] = -0.0
    _assert_same_bits(problem.mean_loss(w, X, y), _one_shot(problem, w, X, y))


@pytest.mark.parametrize("problem", PROBLEMS, ids=repr)
def test_mean_loss_of_other_shapes_is_unchanged(problem):
    # Only w (R, p) on X (n, d), y (n,) is chunked; every other shape keeps the one-shot form.
    rng = np.random.default_rng(2)
    n, d = 23, 3
    logistic = isinstance(problem, lossvar.LogisticRegression)
    X, y = _linear_data(rng, n, d, logistic)
    Xs = rng.standard_normal((5, n, d))
    ys = (rng.random((5, n)) < 0.5).astype(float) if logistic else rng.standard_normal((5, n))
    cases = [
        (rng.standard_normal(d), X, y),                 # one parameter vector
        (rng.standard_normal((1, d)), X, y),            # a stack of one
        (rng.standard_normal((0, d)), X, y),            # an empty stack
        (rng.standard_normal((5, d)), Xs, ys),          # a batch per replicate
        (rng.standard_normal((5, d)), X, ys),           # targets per replicate
        (rng.standard_normal((4, 5, d)), X, y),         # two leading axes
        (rng.standard_normal(d), Xs, ys),               # one w, several data sets
        (rng.standard_normal((5, d)).tolist(), X.tolist(), y.tolist()),  # lists
        (rng.standard_normal((5, d)).T.copy().T, np.asfortranarray(X), y),  # other layouts
        (rng.standard_normal((6, d))[::2], X[:, :], y[::1]),  # strided rows
    ]
    for w, Xc, yc in cases:
        got = problem.mean_loss(w, Xc, yc)
        want = _one_shot(problem, w, Xc, yc)
        assert got.shape == want.shape
        _assert_same_bits(got, want)
    with pytest.warns(RuntimeWarning):  # no data: the mean of nothing, as before
        assert np.isnan(problem.mean_loss(np.ones((3, d)), np.empty((0, d)), np.empty(0))).all()
    with pytest.raises(ValueError, match="length p"):
        problem.mean_loss(np.ones((3, d + 1)), X, y)


def test_softmax_mean_loss_of_a_stack_equals_the_row_loop():
    rng = np.random.default_rng(3)
    problem = lossvar.SoftmaxRegression(3, l2=0.05)
    X, y = rng.standard_normal((41, 4)), rng.integers(0, 3, 41)
    w = rng.standard_normal((6, 12))
    w[1] = w[0]
    _assert_same_bits(problem.mean_loss(w, X, y), [problem.mean_loss(row, X, y) for row in w])


def test_recorded_loss_is_problem_mean_loss_of_each_run():
    # The records of run_sgd are the loss of each run's own parameters, row by row.
    rng = np.random.default_rng(4)
    X, y = _linear_data(rng, 500, 3, True)
    data = lossvar.Dataset(X, y.astype(int), name="t", task="classification")
    problem = lossvar.LogisticRegression(l2=0.01)
    tr = lossvar.run_sgd(problem, data, optim.adam(0.05), steps=30, batch_size=4, replicates=20,
                         sampling="with_replacement", rng=0, record=[0, 30], record_params="all")
    for j in range(len(tr.steps)):
        want = [problem.mean_loss(tr.params[r, j], X, y) for r in range(20)]
        _assert_same_bits(tr.values("loss")[:, j], want)


# -- indices drawn for several steps at once --------------------------------------------


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
    tr = lossvar.run_sgd(lossvar.LinearRegression(), data, optim.sgd(0.05), steps=steps,
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


def _plain_run(problem, X, y, opt, steps, B, w0, seed):
    """run_sgd's arithmetic with the allocating forms, block by block: per-step draws,
    mean_grad (with its + l2 w), the pure step, an np.isfinite check every step and the
    records at the start and the end."""
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
                new, state = opt.step(w, problem.mean_grad(w, X[idx], y[idx]), state)
                w[...] = new
                mark(~np.isfinite(w).all(axis=1), t)
            mark(*record(steps, w))
        finals.append(w)
        firsts.append(first_bad)
    return np.concatenate(finals), np.concatenate(firsts)


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lossvar.DivergenceWarning)
        tr = lossvar.run_sgd(lossvar.LinearRegression(), data, opt, steps=300, batch_size=1,
                             replicates=24, sampling="with_replacement", w0=w0, rng=3,
                             record=[0, 300])
    w, first_bad = _plain_run(lossvar.LinearRegression(), X, y, opt, 300, 1, w0, 3)
    bad = np.flatnonzero(first_bad >= 0)
    assert len(set(first_bad[bad].tolist())) > 3  # the steps do vary
    np.testing.assert_array_equal(tr.diverged.replicate, bad)
    np.testing.assert_array_equal(tr.diverged.step, first_bad[bad])
    _assert_same_bits(tr.final_params, w)


def test_the_dot_with_zeros_is_zero_iff_every_entry_is_finite():
    values = np.array([0.0, -0.0, 5e-324, -5e-324, 1e-310, 1.0, -3.5, 1e308, -1.7976931348623157e308])
    rng = np.random.default_rng(7)
    with np.errstate(invalid="ignore"):
        for _ in range(200):
            w = rng.choice(values, (int(rng.integers(1, 9)), int(rng.integers(1, 6))))
            assert np.dot(w.reshape(-1), np.zeros(w.size)) == 0.0
            bad = rng.choice([np.nan, np.inf, -np.inf, -np.nan])
            w.flat[rng.integers(w.size)] = bad
            assert np.dot(w.reshape(-1), np.zeros(w.size)) != 0.0


# -- no + 0 * w for lossvar's optimizers when l2 == 0 -----------------------------------


EVERY_OPTIMIZER = [
    optim.sgd(0.1), optim.sgd(schedules.polynomial(0.5, 0.6)), optim.momentum(0.1),
    optim.momentum(0.1, dampening=0.5), optim.nesterov(0.1), optim.rmsprop(0.1),
    optim.rmsprop(0.1, eps=0.0, eps_in_sqrt=False, centered=True, momentum=0.9),
    optim.adam(0.1), optim.adam(0.1, b1=0.0), optim.adam(0.1, eps=0.0, eps_in_sqrt=True, amsgrad=True),
    optim.adamw(0.1, weight_decay=0.5), optim.adamw(0.3, b1=0.0, weight_decay=3.0),
    optim.adagrad(0.1), optim.adagrad(0.1, eps=0.0),
]


@pytest.mark.parametrize("in_place", [False, True], ids=["step", "in_place"])
@pytest.mark.parametrize("opt", EVERY_OPTIMIZER, ids=lambda o: f"{o.name}-{o.hyperparams}")
def test_lossvar_optimizers_ignore_the_sign_of_a_zero_gradient(opt, in_place):
    # Feeding g (skip_l2) or g + 0 * w (the term for l2 = 0) gives the same iterates,
    # with gradients full of -0.0 and parameters at +-0.0 and tiny values, as in
    # run_sgd: rows with a non-finite entry are set to NaN and then get NaN gradients.
    if in_place and getattr(opt.step, "in_place", None) is None:
        pytest.skip("no in-place form")
    rng = np.random.default_rng(8)
    zeros = np.array([0.0, -0.0, 5e-324, -5e-324, 1e-300, -1e-300])
    flipped = 0  # gradients the term changes (-0.0 to +0.0)
    for _ in range(10):
        w0 = rng.choice(zeros, (6, 4))
        w0[0] = rng.standard_normal(4)
        seed = rng.integers(2**32)
        runs = []
        for with_term in (False, True):
            w = w0.copy()
            state = opt.init(w)
            advance = opt.step.in_place(w) if in_place else None
            g_rng = np.random.default_rng(seed)
            with np.errstate(all="ignore"):
                for _ in range(30):
                    g = g_rng.choice(np.array([-0.0, -0.0, 0.0, -1e-310, 1e-310, -0.5, 0.5, 1e200]),
                                     w.shape)
                    g[np.isnan(w).any(axis=1)] = np.nan
                    if with_term:
                        flipped += np.count_nonzero(np.signbit(g) & (g == 0) & ~np.signbit(w))
                        g = g + w * 0.0
                    if in_place:
                        advance(w, g)
                    else:
                        w, state = opt.step(w, g, state)
                    w[~np.isfinite(w).all(axis=1)] = np.nan
            runs.append(w)
        _assert_same_bits(runs[0], runs[1])
    assert flipped > 10
