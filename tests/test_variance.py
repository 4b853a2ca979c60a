"""The variance engine against the exact theory of docs/theory.md, section 1.

Tolerances come from each estimate's own standard error. Unless a test says
otherwise an agreement check is |estimate - exact| <= Z * SE with Z = 4.4,
a two-sided false-failure rate of about 1e-5 per check; this file makes about
60 such checks, so a run fails by chance with probability below 1e-3. The
seeds are fixed, so a given checkout passes or fails deterministically; the
rate is what a new seed would risk.
"""

import warnings
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import lossvar
from lossvar import Execution, GaussianNoisePopulation, loss_variance, scaling_fit, theory, variance_study
from lossvar import sampling as draws
from lossvar.moments import Moments
from lossvar.stats import UnreliableIntervalWarning
from lossvar.variance import BatchMeans

Z = 4.4
SCHEMES = ["without_replacement", "with_replacement"]


def _agrees(table):
    """Rows with positive exact variance agree with it within Z standard errors."""
    t = table[table.exact_variance > 0]
    dev = (t.variance - t.exact_variance).abs()
    assert (dev <= Z * t.variance_se).all(), t[["batch_size", "variance", "exact_variance",
                                                "variance_se"]]
    # the batch mean is unbiased for the full-data mean
    assert ((table["mean"] - table.exact_mean).abs() <= Z * table.mean_se + 1e-12).all()


@pytest.fixture(scope="module")
def skewed_losses():
    return np.random.default_rng(2024).exponential(size=300)


@pytest.mark.parametrize("sampling", SCHEMES)
def test_synthetic_matches_exact(skewed_losses, sampling):
    res = loss_variance(skewed_losses, [1, 2, 7, 30, 150, 299, "full"], replicates=40_000,
                        sampling=sampling, rng=11)
    t = res.table
    assert list(t.batch_size) == [1, 2, 7, 30, 150, 299, 300]
    assert list(t.estimator) == ["single"] + ["minibatch"] * 5 + ["full"]
    s2 = skewed_losses.var()
    n = skewed_losses.size
    b = t.batch_size.to_numpy()
    fpc = (n - b) / (n - 1) if sampling == "without_replacement" else np.ones_like(b, float)
    np.testing.assert_allclose(t.exact_variance, s2 / b * fpc, rtol=1e-12)
    _agrees(t)


def test_full_batch_without_replacement_is_exactly_zero(skewed_losses):
    t = loss_variance(skewed_losses, ["full"], replicates=100, rng=0, keep_means=True)
    row = t.table.iloc[0]
    assert row.variance == 0.0 and row.variance_se == 0.0
    assert row.ci_low == 0.0 and row.ci_high == 0.0 and row.exact_variance == 0.0
    assert row["mean"] == skewed_losses.mean()
    assert np.all(t.means[300] == skewed_losses.mean())


def test_unbiased_at_small_n():
    # N = 50, B = 20: a dependence between batches would show as bias here,
    # where the finite-population factor 30/49 is far from 1.
    losses = np.random.default_rng(3).gamma(0.5, size=50)
    t = loss_variance(losses, [20], replicates=200_000, rng=5).table
    assert t.fpc.iloc[0] == pytest.approx(30 / 49)
    _agrees(t)


def test_real_dataset_matches_exact():
    pytest.importorskip("sklearn")
    from lossvar import datasets

    data = datasets.load("breast_cancer")
    problem = datasets.problem_for(data)
    w = datasets.reference_params(data, problem)
    for sampling in SCHEMES:
        res = variance_study(problem, data, w, [1, 4, 16, 64, 256, "full"], replicates=20_000,
                             sampling=sampling, rng=3)
        _agrees(res.table)
        if sampling == "without_replacement":
            assert res.table.variance.iloc[-1] == 0.0
        fit = scaling_fit(res)
        assert fit.exponent_ci.low <= -1 <= fit.exponent_ci.high or fit.pvalue > 1e-5


def test_population_full_batch_matches_var_div_over_n():
    pop = lossvar.GaussianLinearPopulation(np.array([1.0, -2.0, 0.5]), noise_std=0.7)
    w = np.array([0.5, -1.0, 0.0])
    _, var_div = pop.loss_moments(w)
    res = variance_study(pop.problem, pop, w, [1, 8, "full"], replicates=20_000, full_size=64,
                         rng=4)
    t = res.table
    assert list(t.estimator) == ["single", "minibatch", "full"]
    assert (t.sampling == "fresh").all()
    np.testing.assert_allclose(t.exact_variance, var_div / np.array([1, 8, 64]), rtol=1e-12)
    _agrees(t)


def test_quadratic_population_matches_exact():
    q = lossvar.NoisyQuadratic(np.array([1.0, 4.0]), noise_std=2.0)
    pop = GaussianNoisePopulation(q)
    w = np.array([1.0, 0.5])
    res = variance_study(q, pop, w, [1, 10], replicates=20_000, rng=8)
    np.testing.assert_allclose(res.table.exact_variance, 4.0 * 1.25 / np.array([1, 10]))
    _agrees(res.table)


@pytest.mark.parametrize("dist", ["normal", "exponential"])
def test_interval_coverage_binomial(dist):
    """The default interval covers the exact variance at a 95% rate.

    M = 300 repetitions of three batch sizes; each binomial test fails by
    chance with probability 1e-3, so this test (6 checks) about 6e-3.
    """
    rng = np.random.default_rng(17)
    losses = rng.normal(size=1000) if dist == "normal" else rng.exponential(size=1000)
    m = 300
    hits = np.zeros(3, dtype=int)
    for rep in range(m):
        t = loss_variance(losses, [1, 8, 64], replicates=4000, rng=rep).table
        hits += ((t.ci_low <= t.exact_variance) & (t.exact_variance <= t.ci_high)).to_numpy()
    for h in hits:
        assert stats.binomtest(int(h), m, 0.95).pvalue > 1e-3, hits / m


def test_interval_coverage_on_real_heavy_tailed_losses():
    """Coverage on the main job's data: breast_cancer at its reference fit.

    Its per-sample losses have kurtosis about 124 (a few misfit examples carry
    most of the variance), the hard case for a fourth-moment interval. At the
    study's 20,000 replicates the rate is still 95% (binomial test, 300
    repetitions of two batch sizes; chance failure about 2e-3).
    """
    real = lossvar.datasets.load("breast_cancer")
    problem = lossvar.datasets.problem_for(real)
    losses = problem.loss(lossvar.datasets.reference_params(real, problem), real.X, real.y)
    kurtosis = np.mean((losses - losses.mean()) ** 4) / losses.var() ** 2
    assert kurtosis > 100
    m = 300
    hits = np.zeros(2, dtype=int)
    for rep in range(m):
        t = loss_variance(losses, [1, 8], replicates=20_000, rng=10_000 + rep).table
        hits += ((t.ci_low <= t.exact_variance) & (t.exact_variance <= t.ci_high)).to_numpy()
    for h in hits:
        assert stats.binomtest(int(h), m, 0.95).pvalue > 1e-3, hits / m


def test_chi2_interval_fails_coverage_on_skewed_losses():
    """The check above can fail: chi-square intervals ignore the kurtosis."""
    losses = np.random.default_rng(17).exponential(size=1000)
    m = 200
    hits = sum(int(loss_variance(losses, [1], replicates=4000, rng=rep,
                                 interval="chi2").table.eval("ci_low <= exact_variance <= ci_high")
                   .iloc[0]) for rep in range(m))
    assert stats.binomtest(hits, m, 0.95).pvalue < 1e-6


def test_chi2_interval_coverage_on_normal_losses():
    losses = np.random.default_rng(23).normal(size=1000)
    m = 300
    hits = sum(int(loss_variance(losses, [16], replicates=2000, rng=rep, interval="chi2",
                                 sampling="with_replacement")
                   .table.eval("ci_low <= exact_variance <= ci_high").iloc[0])
               for rep in range(m))
    assert stats.binomtest(hits, m, 0.95).pvalue > 1e-3


def test_bootstrap_interval_brackets_estimate(skewed_losses):
    t = loss_variance(skewed_losses, [1, 10], replicates=5000, rng=1, interval="bootstrap").table
    assert (t.ci_low < t.variance).all() and (t.variance < t.ci_high).all()
    again = loss_variance(skewed_losses, [1, 10], replicates=5000, rng=1, interval="bootstrap")
    pd.testing.assert_frame_equal(t, again.table)


def test_scaling_fit_recovers_minus_one(skewed_losses):
    res = loss_variance(skewed_losses, [1, 4, 16, 64, 256, "full"], replicates=20_000, rng=9)
    fit = scaling_fit(res)
    # The test of exponent = -1 is exact under the theory: p < 1e-3 with probability 1e-3.
    assert fit.pvalue > 1e-3
    assert fit.exponent_ci.low <= -1 <= fit.exponent_ci.high
    assert 300 in fit.excluded and "exact variance is 0" in fit.excluded[300]
    assert fit.batch_sizes == (1, 4, 16, 64, 256)


def test_scaling_fit_rejects_other_exponent():
    """Replicates built with Var(B) = B^-0.5 give a tiny p-value for -1."""
    rng = np.random.default_rng(1)
    rows = []
    for b in [1, 4, 16, 64, 256]:
        x = rng.normal(scale=b**-0.25, size=5000)
        m = lossvar.moments.Moments.of(x)
        rows.append(dict(batch_size=b, variance=m.variance, variance_se=m.variance_se()))
    fit = scaling_fit(pd.DataFrame(rows))
    assert fit.pvalue < 1e-10
    assert fit.exponent_ci.low <= -0.5 <= fit.exponent_ci.high


@pytest.mark.reproducibility
def test_same_seed_bit_identical_whatever_chunking(skewed_losses):
    kw = dict(batch_sizes=[1, 3, 50, "full"], replicates=70_000, rng=42)
    base = loss_variance(skewed_losses, **kw, keep_means=True)
    for chunk in [1, 999, 10**6]:
        other = loss_variance(skewed_losses, **kw, execution=Execution(chunk_size=chunk), keep_means=True)
        pd.testing.assert_frame_equal(base.table, other.table, check_exact=True)
        for b in base.means:
            np.testing.assert_array_equal(base.means[b], other.means[b])


@pytest.mark.reproducibility
def test_rows_depend_only_on_seed_and_batch_size(skewed_losses):
    a = loss_variance(skewed_losses, [1, 3, 50], replicates=3000, rng=42).table
    b = loss_variance(skewed_losses, [50, 7], replicates=3000, rng=42).table
    pd.testing.assert_series_equal(a.iloc[2], b.iloc[1], check_names=False)
    c = loss_variance(skewed_losses, [50], replicates=3000, rng=43).table
    assert c.variance.iloc[0] != a.variance.iloc[2]


@pytest.mark.reproducibility
def test_rng_forms(skewed_losses):
    run = lambda rng: loss_variance(skewed_losses, [5], replicates=500, rng=rng).table  # noqa: E731
    # 500 replicates are too few for a reliable interval on these losses, and each call says so
    with pytest.warns(UnreliableIntervalWarning, match="may under-cover"):
        ss = np.random.SeedSequence(5)
        pd.testing.assert_frame_equal(run(5), run(ss))
        pd.testing.assert_frame_equal(run(ss), run(ss))  # a SeedSequence is never advanced
        g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
        first, second = run(g1), run(g1)
        assert first.variance.iloc[0] != second.variance.iloc[0]  # a Generator is consumed
        pd.testing.assert_frame_equal(first, run(g2))  # ... reproducibly
        res = loss_variance(skewed_losses, [5], replicates=500, rng=None)
        pd.testing.assert_frame_equal(res.table, run(res.seed))  # an unseeded run is reproducible


def test_keep_means_shape_and_consistency(skewed_losses):
    with pytest.warns(UnreliableIntervalWarning, match="may under-cover"):  # 1000 replicates
        res = loss_variance(skewed_losses, [1, 10], replicates=1000, rng=0, keep_means=True)
    for b, row in zip([1, 10], res.table.itertuples(), strict=True):
        assert res.means[b].shape == (1000,)
        assert res.means[b].var(ddof=1) == pytest.approx(row.variance, rel=1e-10)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(losses=[]), ValueError, "`losses` must be a non-empty"),
        (dict(losses=[[1.0, 2.0]]), ValueError, r"`losses` must be a 1-D array; got .* shape \(1, 2\)"),
        (dict(losses=[1.0, np.nan, 2.0, np.inf]), ValueError,
         "`losses` must be finite; got 2 NaN or inf value.*first at index 1"),
        (dict(batch_sizes=[0]), ValueError, r"`batch_sizes` must be integers in \[1, N=5\] or 'full'; got 0"),
        (dict(batch_sizes=[2.5]), TypeError, "`batch_sizes` must be .*got 2.5"),
        (dict(batch_sizes=[6]), ValueError, r"\[1, N=5\].*got 6"),
        (dict(batch_sizes=["all"]), ValueError, "got 'all'"),
        (dict(batch_sizes=[2, 2]), ValueError, "distinct; got 2 twice"),
        (dict(batch_sizes=[]), ValueError, "at least one batch size"),
        (dict(replicates=1), ValueError, "`replicates` must be an integer >= 2; got 1"),
        (dict(replicates=10.0), TypeError, "`replicates` must be an integer >= 2; got 10.0"),
        (dict(confidence=1.0), ValueError, r"`confidence` must be .* in \(0.0, 1.0\); got 1.0"),
        (dict(confidence=0), ValueError, "`confidence`"),
        (dict(sampling="bootstrap"), ValueError, "`sampling` must be one of .*'bootstrap' was passed"),
        (dict(interval="wald"), ValueError, "`interval` must be one of"),
        (dict(rng="seed"), TypeError, "`rng` must be"),
    ],
)
def test_bad_input(kwargs, exc, match):
    args = dict(losses=[1.0, 2.0, 3.0, 4.0, 5.0], batch_sizes=[1, 2], replicates=10)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        loss_variance(args.pop("losses"), args.pop("batch_sizes"), **args)


def test_with_replacement_allows_batches_larger_than_n():
    t = loss_variance([1.0, 2.0, 4.0], [5], replicates=2000, sampling="with_replacement",
                      rng=0).table
    assert t.estimator.iloc[0] == "minibatch"
    _agrees(t)


def test_study_bad_input():
    pop = lossvar.GaussianLinearPopulation(np.zeros(3))
    with pytest.raises(ValueError, match="`w` must have length"):
        variance_study(pop.problem, pop, np.zeros(4), [1], replicates=10)
    with pytest.raises(ValueError, match="`full_size` must be given"):
        variance_study(pop.problem, pop, np.zeros(3), ["full"], replicates=10)
    with pytest.raises(ValueError, match="`sampling` must be None or 'fresh'"):
        variance_study(pop.problem, pop, np.zeros(3), [1], replicates=10,
                       sampling="with_replacement")
    data = pop.sample(20, np.random.default_rng(0))
    with pytest.raises(ValueError, match="`w` must have length"):
        variance_study(pop.problem, data, np.zeros(2), [1], replicates=10)


def test_loose_run_keywords_are_refused():
    # how to run is one object (lossvar.Execution), documented once
    for kw in (dict(workers=2), dict(chunk_size=10), dict(progress=True), dict(checkpoint="x")):
        with pytest.raises(TypeError, match="unexpected keyword argument"):
            loss_variance([1.0, 2.0, 3.0], [1], replicates=10, **kw)
    pop = lossvar.GaussianLinearPopulation(np.zeros(2))
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        variance_study(pop.problem, pop, np.zeros(2), [1], replicates=10, workers=2)
    with pytest.raises(TypeError, match=r"`execution` must be a lossvar.Execution or None; got 2"):
        loss_variance([1.0, 2.0, 3.0], [1], replicates=10, execution=2)


# -- the exact columns: the moments of the losses, once per call ---------------------------

HEAVY = np.random.default_rng(1).pareto(2.5, 9_999)


def test_exact_columns_use_the_population_moments():
    m = theory.population_moments(HEAVY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableIntervalWarning)
        table = loss_variance(HEAVY, [1, 3], replicates=50, rng=0).table
    for b, row in zip((1, 3), table.itertuples(), strict=True):
        fourth = theory.fourth_moment_from_moments(m.mu2, m.mu4, b, n=HEAVY.size,
                                                   sampling="without_replacement")
        var = theory.batch_mean_variance(m.variance, b, n=HEAVY.size, sampling="without_replacement")
        assert row.exact_mean == m.mean and row.exact_variance == var
        assert row.exact_kurtosis == fourth / var**2


def test_a_single_condition_row_is_the_row_of_a_larger_call():
    # A row depends on the seed and its batch size only, so the one-condition
    # table (its own columns, dtypes and statistics) is that row of a larger one.
    x = np.random.default_rng(0).exponential(size=20_001)
    kw = dict(replicates=3000, rng=7)
    big = loss_variance(x, [1, 4, 64, "full"], **kw).table
    for i, b in enumerate((1, 4, 64)):
        small = loss_variance(x, [b], **kw).table
        pd.testing.assert_frame_equal(small, big.iloc[[i]].reset_index(drop=True), check_exact=True)
    for scheme in SCHEMES:
        t = loss_variance(x, [2], sampling=scheme, target_rel_se=0.5, **kw).table
        assert list(t.columns)[-2:] == ["target_rel_se", "target_met"]
        assert t.target_met.dtype == bool and t.interval_reliable.dtype == bool


def test_unreliable_intervals_are_named_in_one_warning():
    with pytest.warns(UnreliableIntervalWarning) as caught:
        res = loss_variance(HEAVY, [1, 2, HEAVY.size], replicates=100, rng=1)
    flagged = res.table.loc[~res.table.interval_reliable, "batch_size"].tolist()
    assert flagged == [1, 2]  # the full batch has no noise: its zero variance is exact
    assert len(caught) == 1 and f"batch sizes {flagged}" in str(caught[0].message)


@pytest.mark.reproducibility
def test_serial_calls_share_the_pass_and_stay_bit_identical():
    # N = 200_003 losses make four leaves of the moments' pass: a serial call sums some
    # of them in a helper thread, a call with worker processes sums all in its own thread.
    x = np.random.default_rng(5).exponential(size=200_003)
    kw = dict(replicates=3000, rng=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableIntervalWarning)
        base = loss_variance(x, [1, 3, 40, "full"], **kw).table
        for how in (Execution(workers=2), Execution(chunk_size=700)):
            got = loss_variance(x, [1, 3, 40, "full"], **kw, execution=how).table
            pd.testing.assert_frame_equal(base, got, check_exact=True)
        planned = loss_variance(x, [1, 3, 40, "full"], replicates="auto", rng=11).table
    # planned from the exact moments, which come first
    pd.testing.assert_series_equal(planned.exact_kurtosis, base.exact_kurtosis, check_exact=True)
    assert (base.exact_mean == theory.population_moments(x).mean).all()


def test_overflowing_losses_are_accepted_and_the_overflow_shown():
    # finite values whose sum overflows: the moments are NaN (tests/test_theory_batch.py),
    # and the overflow of the batch means is not hidden
    with pytest.warns(RuntimeWarning, match="overflow"):
        loss_variance(np.full(4, 1e308), [1], replicates=10, rng=0)


# -- the batch-means simulator ------------------------------------------------------------


def test_batch_means_simulator_matches_fancy_indexing():
    losses = np.random.default_rng(0).exponential(size=20_000)
    for scheme in SCHEMES:
        for b in (1, 64, 2000):  # a batch of one is its loss; from 8 on, numpy's own mean
            sim = BatchMeans(losses, b, scheme)
            got = sim(np.random.default_rng(b), 512).copy()
            idx = draws.draw(np.random.default_rng(b), losses.size, b, 512, scheme)
            np.testing.assert_array_equal(got, losses[idx].mean(axis=1))


@pytest.mark.parametrize("b", [2, 3, 5, 7, 8])
def test_short_batches_are_summed_by_columns_to_rounding(b):
    # Below variance.COLUMN_SUM_BELOW the batches are summed column by column over
    # all rows at once: b - 1 additions and a division, as many roundings as
    # numpy's mean of a short row, so within (b + 1) units in the last place
    # of the sum of absolute values. Another code path: compared to rounding.
    rng = np.random.default_rng(b)
    losses = rng.standard_normal(5000) * 10.0 ** rng.integers(-3, 4, 5000)  # both signs, many scales
    for scheme in SCHEMES:
        got = BatchMeans(losses, b, scheme)(np.random.default_rng(9), 4096).copy()
        idx = draws.draw(np.random.default_rng(9), losses.size, b, 4096, scheme)
        gathered = losses[idx]
        bound = (b + 1) * np.finfo(float).eps * np.abs(gathered).sum(axis=1) / b
        assert np.all(np.abs(got - gathered.mean(axis=1)) <= bound)
        exact = np.array([float(sum(map(Fraction, row)) / b) for row in gathered[:200].tolist()])
        assert np.all(np.abs(got[:200] - exact) <= bound[:200])


def test_kept_means_survive_scratch_reuse_and_match_the_table():
    losses = np.random.default_rng(1).exponential(size=5000)
    res = loss_variance(losses, [1, 8, 100], replicates=3000, rng=2, keep_means=True,
                        execution=Execution(chunk_size=64))
    for b, means in res.means.items():
        row = res.table.set_index("batch_size").loc[b]
        assert means.size == 3000
        assert Moments.of(means).variance == pytest.approx(row.variance, rel=1e-12)
        assert len(np.unique(means[:64])) > 1  # not one reused buffer repeated
