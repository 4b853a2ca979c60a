"""Mergeable moments agree with two-pass formulas on the pooled data."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lossvar.moments import Moments

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
    # every operation is exact to half a subnormal ulp instead of relatively:
    # allow a few of those per term, so the bound holds at every scale.
    floor = 16 * n * np.finfo(np.float64).smallest_subnormal
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
