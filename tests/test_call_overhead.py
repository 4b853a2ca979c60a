"""A small call's fixed work, done once per call: the exact moments of the losses and the table.

``theory.population_moments`` takes the mean, variance and central moments
of the losses in two passes (issue 13); ``loss_variance`` builds its table
once from numpy columns. Correctness only: speed is measured in
benchmarks/bench_variance.py, never here.
"""

from __future__ import annotations

import math
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
