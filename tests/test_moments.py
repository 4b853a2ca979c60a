"""Mergeable moments agree with two-pass formulas on the pooled data; the summation kernel
of the exact moments gives the same result whichever thread sums which part."""

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lossvar import stats, theory
from lossvar.moments import Moments, MomentsPass, block_moments

finite = st.floats(-1e3, 1e3, allow_nan=False)


def _two_pass(x):
    d = x - x.mean()
    return x.size, x.mean(), (d**2).sum(), (d**3).sum(), (d**4).sum()


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.integers(1, 40), elements=finite),
       arrays(np.float64, st.integers(1, 40), elements=finite),
       arrays(np.float64, st.integers(0, 40), elements=finite))
def test_merge_matches_two_pass_on_pooled(a, b, c):
    merged = Moments.of(a).merge(Moments.of(b)).merge(Moments.of(c))
    n, mean, m2, m3, m4 = _two_pass(np.concatenate([a, b, c]))
    assert merged.count == n
    # Rounding scale: M_p sums n terms of size spread^p, each merge adds a few
    # rounding errors of that size; 1e-9 * n leaves a wide margin over 1e-16.
    pooled = np.concatenate([a, b, c])
    # Deviations carry a rounding error of order eps * |x| even when all x are equal.
    spread = float(np.ptp(pooled)) + 1e-6 * float(np.abs(pooled).max()) + 1e-300
    tol = 1e-9 * n
    # Below the normal range (spread**p underflows for spreads under ~1e-77)
    # every operation is exact to half a subnormal ulp instead of relatively, and
    # the merge's terms (e.g. delta^4 / n^3, then times n_a n_b (n_a^2 - n_a n_b +
    # n_b^2)) multiply such an absolute error by factors up to about n^3: allow that,
    # so the bound holds at every scale (hypothesis found 677 ulps at n = 13).
    floor = 16 * n**3 * np.finfo(np.float64).smallest_subnormal
    assert abs(merged.mean - mean) <= tol * max(float(np.abs(pooled).max()), 1e-300)
    for got, want, p in [(merged.m2, m2, 2), (merged.m3, m3, 3), (merged.m4, m4, 4)]:
        assert abs(got - want) <= tol * spread**p + floor


def test_variance_se_formula():
    x = np.random.default_rng(0).exponential(size=1000)
    m = Moments.of(x)
    r = x.size
    s2 = x.var(ddof=1)
    m4 = ((x - x.mean()) ** 4).mean()
    want = np.sqrt((m4 - s2**2 * (r - 3) / (r - 1)) / r)
    np.testing.assert_allclose(m.variance_se(), want, rtol=1e-12)
    np.testing.assert_allclose(m.variance, s2, rtol=1e-12)


def test_normal_se_reduces_to_textbook():
    # Under normality SE(S2) ~ S2 sqrt(2/(R-1)); with R = 1e5 the plug-in
    # kurtosis is within a few percent of 3.
    x = np.random.default_rng(1).normal(size=100_000)
    m = Moments.of(x)
    np.testing.assert_allclose(m.variance_se(), m.variance * np.sqrt(2 / (x.size - 1)), rtol=0.03)


def test_empty_merge_is_identity():
    m = Moments.of(np.arange(5.0))
    assert Moments.empty().merge(m) == m
    assert m.merge(Moments.empty()) == m


def test_mean_se_is_the_monte_carlo_standard_error_of_the_values():
    x = np.random.default_rng(2).exponential(size=5000)
    _, se = stats.mean_se(x)
    # the same formula, sqrt(S2 / n), from the merged sums instead of the values
    np.testing.assert_allclose(Moments.of(x[:1234]).merge(Moments.of(x[1234:])).mean_se(), se,
                               rtol=1e-12)
    assert math.isnan(Moments.of(x[:1]).mean_se())


@pytest.mark.parametrize("size", [1, 2, 17, 65536])
def test_block_moments_with_work_equal_moments_of(size):
    # With a work buffer the same operations run in the same order into it: the same bits.
    x = np.random.default_rng(size).pareto(2.5, size)
    want = Moments.of(x)
    d = x - float(x.mean())
    d2 = d * d
    assert (want.mean, want.m2, want.m3, want.m4) == (float(x.mean()), float(d2.sum()),
                                                      float((d2 * d).sum()), float((d2 * d2).sum()))
    assert block_moments(x, np.empty((3, size + 5))) == (want.mean, want.m2, want.m3, want.m4)


# -- MomentsPass: the second pass shared with a helper thread ------------------------------

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
        shared = MomentsPass(x)
        shared.start_helper()
        assert shared.result() == alone
    closed = MomentsPass(x)
    closed.start_helper()
    closed.close()  # the helper stops after its leaf; the rest is summed by the caller
    assert closed.result() == alone
    assert closed.result() is closed.result()
    m = MomentsPass(x)
    assert (m.n, m.mean) == (x.size, alone.mean) and m.x is x


def test_a_shared_pass_raises_the_helpers_error_under_the_callers_error_state():
    x = np.random.default_rng(8).exponential(size=200_000) * 1e200  # d * d overflows
    with np.errstate(over="raise"):
        p = MomentsPass(x)
        p.start_helper()
        time.sleep(0.2)  # the helper, alone, has most likely summed every leaf by now
        with pytest.raises(FloatingPointError):
            p.result()
    with np.errstate(over="ignore"):
        p = MomentsPass(x)
        p.start_helper()
        m = p.result()
    assert m.variance == math.inf


def test_a_pass_validates_before_any_thread_starts():
    with pytest.raises(ValueError, match=r"`losses` must be finite; got 1 NaN or inf value"):
        MomentsPass(np.r_[np.ones(100_000), np.nan])
    p = MomentsPass(np.full(200_000, 1e308))  # finite values whose sum overflows
    p.start_helper()  # nothing left to share
    assert math.isnan(p.result().mu2)
