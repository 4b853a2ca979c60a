"""Row-level exactness (exact SE, z, p-value), the calibrated verdict, planned replicates
and the heavy-tail flag, against exact theory (docs/theory.md, section 3).

Calibration is checked with a binomial test over repeated seeds: under the theory
P(p < 0.05) = 0.05, and each check fails by chance with probability 1e-3 (the
binomial test's level), about 4e-3 for the four checks of this file. Seeds are
fixed, so a checkout passes or fails deterministically.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

import lossvar
from lossvar import stats, theory

SEEDS = 120
BINOM_LEVEL = 1e-3


@pytest.fixture(scope="module")
def breast_cancer_losses():
    data = lossvar.datasets.load("breast_cancer")
    problem = lossvar.datasets.problem_for(data)
    return problem.loss(lossvar.datasets.reference_params(data, problem), data.X, data.y)


def _rejections(losses, sizes, replicates, sampling="without_replacement"):
    hits = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.UnreliableIntervalWarning)
        for seed in range(SEEDS):
            res = lossvar.loss_variance(losses, sizes, replicates=replicates, sampling=sampling,
                                        rng=seed)
            hits += lossvar.agreement(res).pvalue < 0.05
    return hits


@pytest.mark.parametrize("replicates, sampling", [(20_000, "without_replacement"),
                                                  ("auto", "without_replacement"),
                                                  ("auto", "with_replacement")])
def test_verdict_calibrated_on_real_heavy_tailed_losses(breast_cancer_losses, replicates, sampling):
    # The main job's losses (kurtosis 124), at the study's old count and planned.
    hits = _rejections(breast_cancer_losses, [1, 2, 4, 16, 64], replicates, sampling)
    assert st.binomtest(hits, SEEDS, 0.05).pvalue > BINOM_LEVEL, hits


def test_verdict_calibrated_on_lognormal_losses():
    losses = np.random.default_rng(7).lognormal(sigma=1.5, size=2000)
    hits = _rejections(losses, [1, 4, 16], "auto")
    assert st.binomtest(hits, SEEDS, 0.05).pvalue > BINOM_LEVEL, hits


def test_verdict_has_power_against_a_wrong_theory(breast_cancer_losses):
    # The variance without the finite-population factor at B = N/2 is wrong by a
    # factor 2: the verdict must reject it in (nearly) every seed.
    n = breast_cancer_losses.size
    rejected = 0
    for seed in range(20):
        t = lossvar.loss_variance(breast_cancer_losses, [1, 16, n // 2], replicates=5000,
                                  rng=seed).table.copy()
        t["exact_variance"] /= t.fpc
        t["exact_variance_se"] /= t.fpc
        t["z"], _, t["pvalue"] = stats.variance_test(t.variance, t.exact_variance,
                                                     t.exact_variance_se)
        verdict = lossvar.agreement(t)
        rejected += not verdict.agrees and n // 2 in verdict.drivers
    assert rejected >= 19


def test_exactness_columns(breast_cancer_losses):
    x = breast_cancer_losses
    res = lossvar.loss_variance(x, [1, 8, "full"], replicates=4000, rng=3)
    t = res.table
    for sampling, row in [("without_replacement", t.iloc[1])]:
        mu4 = theory.batch_mean_fourth_moment(x, 8, sampling)
        want = theory.variance_se(mu4, row.exact_variance, 4000)
        assert row.exact_variance_se == pytest.approx(want, rel=1e-12)
        assert row.z == pytest.approx((row.variance - row.exact_variance) / want, rel=1e-12)
        assert row.exact_kurtosis == pytest.approx(mu4 / row.exact_variance**2, rel=1e-12)
    full = t.iloc[2]
    assert full.exact_variance == 0 and np.isnan(full.z) and np.isnan(full.pvalue)
    assert full.interval_reliable


def test_fresh_rows_have_exact_se_from_the_population():
    pop = lossvar.GaussianLinearPopulation(w_true=np.array([1.0, -2.0]), noise_std=0.5)
    res = lossvar.variance_study(pop.problem, pop, np.zeros(2), [1, 10], replicates=3000, rng=1)
    t = res.table
    s4 = t.exact_variance.iloc[0] ** 2
    # The loss is s^2/2 times chi-square(1): kurtosis 15, mu4 = 15 s^4 at B = 1.
    assert t.exact_kurtosis.iloc[0] == pytest.approx(15.0)
    assert t.exact_variance_se.iloc[0] == pytest.approx(theory.variance_se(15 * s4, s4**0.5, 3000))
    with pytest.warns(lossvar.stats.UnreliableIntervalWarning, match=r"batch sizes \[1\]"):
        other = lossvar.variance_study(lossvar.LinearRegression(l2=0.1), pop, np.zeros(2), [1],
                                       replicates=100, rng=1).table
    assert np.isnan(other.exact_variance_se).all() and np.isnan(other.z).all()


def test_planned_replicates_meet_the_target(breast_cancer_losses):
    res = lossvar.loss_variance(breast_cancer_losses, [1, 4, 64, "full"], replicates="auto", rng=1)
    t = res.table.iloc[:3]
    assert (t.replicates_rule == "planned").all()
    assert (t.exact_variance_se / t.exact_variance <= 0.02).all()
    # The smallest such R: one fewer misses the target.
    for row in t.itertuples():
        mu4 = row.exact_kurtosis * row.exact_variance**2
        assert theory.variance_se(mu4, row.exact_variance, row.replicates - 1) / row.exact_variance > 0.02
    assert t.replicates.iloc[0] == pytest.approx((124 - 1) / 0.02**2, rel=0.02)
    tighter = lossvar.loss_variance(breast_cancer_losses, [1], replicates="auto", target_rel_se=0.05,
                                    rng=1).table
    assert tighter.replicates.iloc[0] < t.replicates.iloc[0] / 5


def test_auto_on_a_population_is_sequential():
    pop = lossvar.GaussianLinearPopulation(w_true=np.array([1.0]), noise_std=1.0)
    t = lossvar.variance_study(pop.problem, pop, np.zeros(1), [4], replicates="auto",
                               target_rel_se=0.1, rng=1).table
    assert t.replicates_rule.iloc[0] == "sequential" and bool(t.target_met.iloc[0])


def test_heavy_tails_are_flagged_once(breast_cancer_losses):
    # Exact kurtosis of the batch mean: 124 at B = 1, 63 at B = 2 (62.8/2000 < 0.04).
    with pytest.warns(stats.UnreliableIntervalWarning, match=r"batch sizes \[1\]") as record:
        t = lossvar.loss_variance(breast_cancer_losses, [1, 2, 64], replicates=2000, rng=1).table
    assert len(record) == 1
    assert t.interval_reliable.tolist() == [False, True, True]


def test_interval_reliable_rule():
    assert stats.interval_reliable([1999, 2000, 2000], [1.5, 1.5, 70.0]).tolist() == [False, True, False]
    # With the exact kurtosis, the estimate is ignored.
    assert stats.interval_reliable(5000, 3.0, exact_kurtosis=300.0).item() is False
    assert stats.interval_reliable(10**5, 500.0, exact_kurtosis=124.0).item() is True


def test_variance_test_against_scaled_chi_square():
    # For normal batch means the exact law of S2 is sigma^2 chi2_{R-1}/(R-1):
    # the scaled chi-square reference with nu = 2 sigma^4 / Var(S2) = R - 1.
    r, sigma2 = 201, 2.0
    sd = theory.variance_se(3 * sigma2**2, sigma2, r)
    s2 = sigma2 * st.chi2.ppf(0.99, r - 1) / (r - 1)
    z, nu, p = stats.variance_test(s2, sigma2, sd)
    assert nu == pytest.approx(r - 1) and p == pytest.approx(0.02, rel=1e-9)
    assert z == pytest.approx((s2 - sigma2) / sd)
    # Too few degrees of freedom: no p-value.
    assert np.isnan(stats.variance_test(1.0, 1.0, 0.5)[2])


def test_holm_and_agreement_text():
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    table = pd.DataFrame({"batch_size": [1, 2, 3], "sampling": "with_replacement",
                          "z": [0.1, -4.0, 0.3], "pvalue": [0.9, 6e-5, 0.7],
                          "exact_variance": [1.0, 0.5, 0.3], "ci_low": [0.9, 0.6, 0.2],
                          "ci_high": [1.1, 0.7, 0.4]})
    a = lossvar.agreement(table)
    assert not a.agrees and a.drivers == (2,) and a.misses == 1 and a.tested == 3
    assert "disagrees with theory" in str(a) and "rows B = 2 drive it" in str(a)
    with pytest.raises(ValueError, match="missing"):
        lossvar.agreement(table.drop(columns="z"))
    with pytest.raises(ValueError, match="`confidence`"):
        lossvar.agreement(table, confidence=1.5)


def test_replicates_argument_errors():
    with pytest.raises(ValueError, match="`replicates` must be an integer >= 2 or 'auto'; got 'many'"):
        lossvar.loss_variance(np.arange(10.0), [1], replicates="many")
