"""A small call's fixed work, done once per call: the exact moments of the losses and the table.

``theory.population_moments`` takes the mean, variance and central moments
of the losses in two passes (issue 13); ``loss_variance`` builds its table
once from numpy columns. Correctness only: speed is measured in
benchmarks/bench_variance.py, never here.
"""

from __future__ import annotations

import math
import time
import warnings
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

import lossvar
from lossvar import theory

#: Tolerance, in units in the last place, between population_moments and a
#: reference computed another way (exact rationals, np.var): a different
#: summation order or centring rounds differently in the last bits, so the
#: two are compared to a few ulps, never bit for bit.
ULPS = 4

POPULATIONS = {
    "exponential": np.random.default_rng(0).exponential(size=20_001),
    "heavy_tail": np.random.default_rng(1).pareto(2.5, 9_999),
    "lognormal": np.random.default_rng(2).lognormal(0.0, 2.0, 5_000),
    # the mean is 10^9 times the spread: the second, centring pass
    "shifted": np.random.default_rng(3).standard_normal(7_000) * 1e-3 + 1e6,
    "offset": np.random.default_rng(4).exponential(size=3_000) + 40.0,
    "ties": np.array([-3.0, -3.0, 0.0, 1.0, 1.0, 1.0, 10.0]),
    "two": np.array([2.0, 5.0]),
}


def _exact(x):
    """(mean, mu2, mu4) in exact rational arithmetic, rounded once."""
    values = [Fraction(v) for v in x.tolist()]
    mean = sum(values) / len(values)
    d = [v - mean for v in values]
    return (float(mean), float(sum(v * v for v in d) / len(d)),
            float(sum(v**4 for v in d) / len(d)))


def _close(got, want, ulps=ULPS):
    return abs(got - want) <= ulps * math.ulp(want)


@pytest.mark.parametrize("name", sorted(POPULATIONS))
def test_population_moments_are_exact_to_a_few_ulps(name):
    x = POPULATIONS[name]
    m = theory.population_moments(x)
    _, mu2, mu4 = _exact(x)
    assert m.n == x.size
    assert m.mean == float(x.mean())  # the same reduction: the same bits
    assert _close(m.mu2, mu2) and _close(m.mu4, mu4), (m.mu2, mu2, m.mu4, mu4)
    # np.var centres once on the rounded mean; population_moments sums the same
    # squares on the same tree, but is another code path: compared to a few ulps.
    assert _close(m.variance, float(np.var(x)))
    assert (m.mu2, m.mu4) == theory.central_moments(x)  # one implementation behind both


def test_population_moments_are_deterministic():
    x = POPULATIONS["exponential"]
    first = theory.population_moments(x)
    assert all(theory.population_moments(x) == first for _ in range(3))
    assert theory.population_moments(x.tolist()) == first  # a list is converted, not re-summed


@pytest.mark.parametrize("x", [np.full(70_001, 0.1), np.full(10, 3.0), np.zeros(4), np.array([2.5])])
def test_equal_losses_have_zero_central_moments(x):
    m = theory.population_moments(x)
    assert (m.mu2, m.mu4) == (0.0, 0.0)
    assert m.mean == float(x.mean())


def test_population_moments_validate_like_loss_variance():
    with pytest.raises(ValueError, match=r"`losses` must be finite; got 1 NaN or inf value"):
        theory.population_moments([1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match=r"`losses` must be a 1-D array"):
        theory.population_moments(np.ones((3, 3)))
    with pytest.raises(ValueError, match="non-empty"):
        theory.population_moments([])
    with pytest.raises(TypeError, match="`losses` must be an array of real numbers"):
        theory.population_moments({"a": 1})
    m = theory.population_moments(np.full(4, 1e308))  # finite values whose sum overflows
    assert not math.isfinite(m.mean) and math.isnan(m.mu2)


def test_loss_variance_exact_columns_use_the_population_moments():
    x = POPULATIONS["heavy_tail"]
    m = theory.population_moments(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lossvar.stats.UnreliableIntervalWarning)
        table = lossvar.loss_variance(x, [1, 3], replicates=50, rng=0).table
    for b, row in zip((1, 3), table.itertuples(), strict=True):
        fourth = theory.fourth_moment_from_moments(m.mu2, m.mu4, b, n=x.size,
                                                   sampling="without_replacement")
        var = theory.batch_mean_variance(m.variance, b, n=x.size, sampling="without_replacement")
        assert row.exact_mean == m.mean and row.exact_variance == var
        assert row.exact_kurtosis == fourth / var**2


def test_a_single_condition_row_is_the_row_of_a_larger_call():
    # A row depends on the seed and its batch size only, so the one-condition
    # table (its own columns, dtypes and statistics) is that row of a larger one.
    x = POPULATIONS["exponential"]
    kw = dict(replicates=3000, rng=7)
    big = lossvar.loss_variance(x, [1, 4, 64, "full"], **kw).table
    for i, b in enumerate((1, 4, 64)):
        small = lossvar.loss_variance(x, [b], **kw).table
        pd.testing.assert_frame_equal(small, big.iloc[[i]].reset_index(drop=True), check_exact=True)
    for sampling in ("with_replacement", "without_replacement"):
        t = lossvar.loss_variance(x, [2], sampling=sampling, target_rel_se=0.5, **kw).table
        assert list(t.columns)[-2:] == ["target_rel_se", "target_met"]
        assert t.target_met.dtype == bool and t.interval_reliable.dtype == bool


def test_unreliable_intervals_are_named_in_one_warning():
    x = POPULATIONS["heavy_tail"]
    with pytest.warns(lossvar.stats.UnreliableIntervalWarning) as caught:
        res = lossvar.loss_variance(x, [1, 2, x.size], replicates=100, rng=1)
    flagged = res.table.loc[~res.table.interval_reliable, "batch_size"].tolist()
    assert flagged == [1, 2]  # the full batch has no noise: its zero variance is exact
    assert len(caught) == 1 and f"batch sizes {flagged}" in str(caught[0].message)


# -- the second pass shared with a helper thread (theory.MomentsPass) -----------------------

#: Populations of several leaves (the pass is cut into leaves of 2**16 values),
#: one of them through the centring second pass.
SHARED = {
    "exponential": np.random.default_rng(5).exponential(size=300_001),
    "heavy_tail": np.random.default_rng(6).pareto(2.5, 140_000),
    "shifted": np.random.default_rng(7).standard_normal(200_000) * 1e-3 + 1e6,
}


@pytest.mark.parametrize("name", sorted(SHARED))
def test_a_shared_pass_is_the_pass(name):
    # Which thread sums a leaf never changes the result: each leaf is one reduction
    # of a fixed slice, added up on a tree fixed by N (a determinism property of
    # one computation, like workers=1 against workers=2).
    x = SHARED[name]
    alone = theory.population_moments(x)
    for _ in range(3):
        shared = theory.MomentsPass(x)
        shared.start_helper()
        assert shared.result() == alone
    closed = theory.MomentsPass(x)
    closed.start_helper()
    closed.close()  # the helper stops after its leaf; the rest is summed by the caller
    assert closed.result() == alone
    assert closed.result() is closed.result()
    m = theory.MomentsPass(x)
    assert (m.n, m.mean) == (x.size, alone.mean) and m.x is x


def test_a_shared_pass_raises_the_helpers_error_under_the_callers_error_state():
    x = np.random.default_rng(8).exponential(size=200_000) * 1e200  # d * d overflows
    with np.errstate(over="raise"):
        p = theory.MomentsPass(x)
        p.start_helper()
        time.sleep(0.2)  # the helper, alone, has most likely summed every leaf by now
        with pytest.raises(FloatingPointError):
            p.result()
    with np.errstate(over="ignore"):
        p = theory.MomentsPass(x)
        p.start_helper()
        m = p.result()
    assert m.variance == math.inf


def test_a_pass_validates_before_any_thread_starts():
    with pytest.raises(ValueError, match=r"`losses` must be finite; got 1 NaN or inf value"):
        theory.MomentsPass(np.r_[np.ones(100_000), np.nan])
    p = theory.MomentsPass(np.full(200_000, 1e308))  # finite values whose sum overflows
    p.start_helper()  # nothing left to share
    assert math.isnan(p.result().mu2)


def test_serial_calls_share_the_pass_and_stay_bit_identical():
    # N = 200_003 losses make four leaves: a serial call sums some of them in a helper
    # thread, a call with worker processes (or an executor) sums all in its own thread.
    x = SHARED["exponential"][:200_003]
    kw = dict(replicates=3000, rng=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lossvar.stats.UnreliableIntervalWarning)
        base = lossvar.loss_variance(x, [1, 3, 40, "full"], **kw).table
        for other in (dict(workers=2), dict(chunk_size=700), dict(replicates="auto", rng=11)):
            got = lossvar.loss_variance(x, [1, 3, 40, "full"], **{**kw, **other}).table
            if "replicates" in other:  # planned from the exact moments, which come first
                pd.testing.assert_series_equal(got.exact_kurtosis, base.exact_kurtosis,
                                               check_exact=True)
                continue
            pd.testing.assert_frame_equal(base, got, check_exact=True)
    m = theory.population_moments(x)
    assert (base.exact_mean == m.mean).all()
