"""The result protocol (lossvar.typing.Result, docs/guide/results.md): every result object has
its tidy table, its readable text and its level, its intervals are ConfidenceIntervals, and
agreement reads the comparison rows of every result with exact theory.

Agreement checks on stochastic results use fixed seeds; a calibration check is a binomial
test at level 1e-3 (it fails by chance with probability 1e-3).
"""

import dataclasses
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

import lossvar
from lossvar import critical, optim, results, schedules, stats, theory

GUIDE = Path(__file__).resolve().parent.parent / "docs/guide/results.md"
BINOM_LEVEL = 1e-3


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return lossvar.Dataset(X, X @ [1.0, -1.0, 0.5] + rng.normal(size=n))


def _batch_grad(problem, data, w):
    return lambda idx: problem.mean_grad(w, data.X[idx], data.y[idx])


def _quadratic_run(mu=1.0, w0=3.0, steps=50, replicates=400, seed=0, average=False):
    q = lossvar.NoisyQuadratic(mu, noise_std=1.0)
    sched = schedules.polynomial(0.5, 0.75)
    tr = lossvar.run_sgd(q, lossvar.GaussianNoisePopulation(q), optim.sgd(sched), steps=steps,
                         batch_size=1, replicates=replicates, w0=np.atleast_1d(w0), rng=seed,
                         average=average)
    return tr, theory.quadratic_moments(sched, mu, 1.0, w0, steps=steps)


def _steps_run(lr, replicates, max_steps, seed):
    s = 10.0 / lr + 100 * lr
    return np.full(replicates, s if s <= max_steps else np.nan), 0


def _monitor_estimate():
    data, problem = _data(), lossvar.LinearRegression()
    monitor = lossvar.GradientNoiseMonitor(4, 32, n=data.n, sampling="without_replacement", ema=0.9)
    rng = np.random.default_rng(3)
    for _ in range(50):
        small, big = (problem.mean_grad(np.zeros(3), data.X[i], data.y[i])
                      for i in (rng.choice(data.n, 4, replace=False), rng.choice(data.n, 32, replace=False)))
        monitor.update(float(small @ small), float(big @ big))
    return monitor.estimate()


def _make(name):
    losses = np.random.default_rng(0).exponential(size=300)
    data, problem = _data(), lossvar.LinearRegression()
    eps = np.geomspace(0.03, 2.0, 11)
    g = np.random.default_rng(4)
    a, c = 1.0 + 0.3 * g.standard_normal(200), 0.5 + 0.2 * g.standard_normal(200)
    h = np.random.default_rng(5)
    variance = lambda: lossvar.loss_variance(losses, [1, 4, 16, "full"], replicates=2000, rng=1)  # noqa: E731
    makers = {
        "VarianceResult": variance,
        "GradientVarianceResult": lambda: lossvar.gradient_variance(
            problem, data, np.zeros(3), [1, 8, "full"], replicates=500, rng=1),
        "GradientNoiseResult": lambda: lossvar.gradient_noise(problem, data, np.zeros(3)),
        "TwoBatchResult": lambda: lossvar.two_batch_estimate_from_callable(
            _batch_grad(problem, data, np.zeros(3)), data.n, 4, 32, replicates=200, rng=2),
        "TwoBatchResult (monitor)": _monitor_estimate,
        "ScalingFitResult": lambda: lossvar.scaling_fit(variance()),
        "PowerLawFitResult": lambda: stats.power_law_fit([10, 100, 1000], [0.1, 0.0101, 0.00099],
                                                         [1e-3, 1e-4, 1e-5]),
        "LineFitResult": lambda: stats.line_fit([0.0, 1.0, 2.0, 3.0], [0.1, 1.1, 1.9, 3.2]),
        "SGDResult": lambda: _quadratic_run()[0],
        "RateFitResult": lambda: lossvar.convergence_rate(_quadratic_run()[0], n_resamples=50),
        "AgreementResult": lambda: lossvar.agreement(variance()),
        "RobbinsMonroResult": lambda: lossvar.robbins_monro(schedules.polynomial(0.5, 0.75)),
        "BestStepResult": lambda: critical.best_step_fit(a[:, None] * eps - c[:, None] * eps**2, eps),
        "LearningRateResult": lambda: critical.tune_learning_rate(
            lambda lr, cap, seed: _steps_run(lr, 2, cap, seed), base=1.0, factor=2.0, start=2, cap=1000,
            rng=3),
        "StepsResult": lambda: critical.steps_at_best_rate(
            _steps_run, 8, base=1.0, factor=2.0, start=2, cap=20, first_cap=1000, rng=3, replicates=5,
            tune_replicates=2),
        "CriticalBatchFitResult": lambda: critical.critical_batch_fit(
            {b: 100 + 3200 / b + h.normal(0, 10, 50) for b in (1, 4, 16, 64)}, n_resamples=100, rng=0),
        "VerifyResult": lambda: results.VerifyResult(
            "variance", [results.TableCheck("variance", "identical")], []),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.UnreliableIntervalWarning)
        return makers[name]()


RESULTS = ["VarianceResult", "GradientVarianceResult", "GradientNoiseResult", "TwoBatchResult",
           "TwoBatchResult (monitor)", "ScalingFitResult", "PowerLawFitResult", "LineFitResult",
           "SGDResult", "RateFitResult", "AgreementResult", "RobbinsMonroResult", "BestStepResult",
           "LearningRateResult", "StepsResult", "CriticalBatchFitResult", "VerifyResult"]
#: Results without an interval: exact statistics, a bare line, standard errors only, decided
#: verdicts and reports (docs/guide/results.md).
NO_INTERVAL = {"GradientNoiseResult", "LineFitResult", "SGDResult", "RobbinsMonroResult",
               "LearningRateResult", "StepsResult", "VerifyResult"}
WITH_EXACT_THEORY = {"VarianceResult", "GradientVarianceResult", "TwoBatchResult",
                     "TwoBatchResult (monitor)", "SGDResult", "ScalingFitResult", "PowerLawFitResult"}


def _documented():
    """{class name: (columns, optional columns)} from the "Columns:" lines of the guide."""
    out = {}
    for section in re.split(r"^### ", GUIDE.read_text(), flags=re.M)[1:]:
        name = section.split("`")[1]
        text = " ".join(re.search(r"^Columns: (.*?)(?:\n\n|\Z)", section, flags=re.M | re.S)
                        .group(1).split())
        main, _, extra = text.partition("(+")
        out[name] = (re.findall(r"`(\w+)`", main), re.findall(r"`(\w+)`", extra.split(" with ")[0]))
    return out


DOCUMENTED = _documented()


def _intervals(result):
    return {f.name: getattr(result, f.name) for f in dataclasses.fields(result)
            if isinstance(getattr(result, f.name), lossvar.ConfidenceInterval)}


def test_the_guide_documents_every_public_result_type():
    public = {name for module in (lossvar, lossvar.stats, lossvar.noise, critical, results)
              for name in module.__all__ if name.endswith("Result")}
    assert set(DOCUMENTED) == public == {n.split(" ")[0] for n in RESULTS}


@pytest.mark.parametrize("name", RESULTS)
def test_every_result_meets_the_protocol(name):
    result = _make(name)
    cls = type(result).__name__
    assert cls == name.split(" ")[0]
    assert isinstance(result, lossvar.typing.Result)
    frame = result.to_frame()
    assert isinstance(frame, pd.DataFrame) and len(frame) > 0
    columns, optional = DOCUMENTED[cls]
    got = list(frame.columns)
    assert [c for c in got if c in columns] == columns and set(got) <= set(columns) | set(optional), got
    assert result.summary() == str(result) and result.summary().strip()
    fields = _intervals(result)
    if name in NO_INTERVAL:
        assert result.confidence is None and not fields
    else:
        assert 0.0 < result.confidence < 1.0
    for field, ci in fields.items():
        low, high = ci
        assert (math.isnan(low) or math.isnan(high)) or low <= high, (field, ci)
        assert f"{field}_low" in got and f"{field}_high" in got
        assert frame[f"{field}_low"].iloc[0] == low or math.isnan(low)
    # bare interval floats are table columns only, never fields of a result
    assert not {"ci_low", "ci_high"} & {f.name for f in dataclasses.fields(result)}
    assert isinstance(result, lossvar.typing.ComparableResult) == (name in WITH_EXACT_THEORY)


@pytest.mark.parametrize("name", ["VarianceResult", "SGDResult", "LearningRateResult", "VerifyResult"])
def test_to_frame_is_a_copy(name):
    result = _make(name)
    before = result.to_frame()
    frame = result.to_frame()
    frame["added"] = 1
    del frame[frame.columns[0]]
    assert result.to_frame().equals(before)


def test_confidence_interval_unpacks_like_scipys():
    ci = lossvar.ConfidenceInterval(1.0, 2.0)
    low, high = ci
    assert (low, high) == (ci.low, ci.high) == (1.0, 2.0)
    fit = stats.power_law_fit([10, 100, 1000], [0.1, 0.01, 0.001], [1e-3, 1e-4, 1e-5], confidence=0.9)
    z = st.norm.ppf(0.95)
    assert fit.exponent_ci.low == pytest.approx(fit.exponent - z * fit.se, rel=1e-12)


# -- agreement through the comparison hook -------------------------------------------------------


def test_agreement_names_a_result_without_exact_theory():
    for name in sorted(set(RESULTS) - WITH_EXACT_THEORY):
        result = _make(name)
        with pytest.raises(TypeError, match=rf"`result` \({type(result).__name__}\) has no exact theory"):
            lossvar.agreement(result)


def test_agreement_of_a_variance_result_is_that_of_its_table():
    res = _make("VarianceResult")
    a, b = lossvar.agreement(res), lossvar.agreement(res.table)
    assert (a.pvalue, a.tested, a.misses, a.drivers, a.unreliable) == \
        (b.pvalue, b.tested, b.misses, b.drivers, b.unreliable)
    # The full batch (exactly 0) is no comparison; every other batch size is one.
    assert list(res.comparison().label) == [1, 4, 16]
    with pytest.raises(ValueError, match="`exact` must be None"):
        res.comparison(exact=1.0)


def _gradient_variance_pvalues(seeds, b_sizes=(1, 4, 16)):
    data, problem = _data(n=200), lossvar.LinearRegression()
    return [lossvar.agreement(lossvar.gradient_variance(problem, data, np.zeros(3), list(b_sizes),
                                                        replicates=2000, rng=s)).pvalue
            for s in range(seeds)]


def test_gradient_variance_verdict_is_calibrated():
    # Under the theory the verdict's p-value is uniform: P(p < 0.05) = 0.05.
    p = np.array(_gradient_variance_pvalues(150))
    assert st.binomtest(int((p < 0.05).sum()), p.size, 0.05).pvalue > BINOM_LEVEL, p


def test_gradient_variance_verdict_rejects_a_wrong_theory():
    # Without the finite-population factor the exact value at B = N/2 is twice too large.
    data, problem = _data(n=200), lossvar.LinearRegression()
    res = lossvar.gradient_variance(problem, data, np.zeros(3), [1, 100], replicates=2000, rng=0)
    wrong = res.table.assign(exact=res.table.exact / res.table.fpc)
    bad = dataclasses.replace(res, table=wrong)
    a = lossvar.agreement(bad)
    assert not a.agrees and a.drivers == (100,)


def test_two_batch_verdict_against_the_exact_noise():
    data, problem = _data(n=200), lossvar.LinearRegression()
    noise = lossvar.gradient_noise(problem, data, np.zeros(3))
    p = []
    for seed in range(150):
        est = lossvar.two_batch_estimate_from_callable(_batch_grad(problem, data, np.zeros(3)), data.n,
                                                       4, 32, replicates=500, rng=seed)
        p.append(lossvar.agreement(est, exact=noise).pvalue)
    p = np.array(p)
    assert st.binomtest(int((p < 0.05).sum()), p.size, 0.05).pvalue > BINOM_LEVEL, p
    # An exact tr Sigma 1.5 times too large (about 7 standard errors here) is rejected.
    est = lossvar.two_batch_estimate_from_callable(_batch_grad(problem, data, np.zeros(3)), data.n, 4,
                                                   32, replicates=2000, rng=0)
    wrong = dict(grad_norm2=noise.grad_norm2, trace_cov=noise.trace_cov * 1.5)
    a = lossvar.agreement(est, exact=wrong)
    assert not a.agrees and a.drivers == ("trace_cov",)
    with pytest.raises(ValueError, match="`exact` must give the exact statistics"):
        lossvar.agreement(est)
    with pytest.raises(ValueError, match="ddof=0"):
        lossvar.agreement(est, exact=lossvar.gradient_noise(problem, data, np.zeros(3), ddof=1))


def test_sgd_verdict_against_the_exact_recursion():
    # One dimension: exact noncentral chi-square p-values; the steps share runs (Holm).
    p = []
    for seed in range(60):
        tr, exact = _quadratic_run(steps=30, replicates=200, seed=seed, average=True)
        a = lossvar.agreement(tr, exact=exact)
        # every recorded step k >= 1, for the iterate and the average
        assert a.tested == 2 * int((tr.steps >= 1).sum()) > 20
        p.append(a.pvalue)
    # Holm's global test is conservative: P(p < 0.05) <= 0.05 under the theory.
    assert st.binomtest(int((np.array(p) < 0.05).sum()), len(p), 0.05,
                        alternative="greater").pvalue > BINOM_LEVEL, p
    # A wrong curvature (the recursion of mu = 2 for a run at mu = 1) is rejected.
    tr, _ = _quadratic_run(steps=30, replicates=2000, seed=1)
    other = theory.quadratic_moments(schedules.polynomial(0.5, 0.75), 2.0, 1.0, 3.0, steps=30)
    assert not lossvar.agreement(tr, exact=other).agrees
    with pytest.raises(TypeError, match="QuadraticMoments"):
        lossvar.agreement(tr)


def test_sgd_verdict_in_more_dimensions_uses_student_t():
    q = lossvar.NoisyQuadratic([1.0, 2.0], noise_std=1.0)
    sched = schedules.polynomial(0.5, 0.75)
    tr = lossvar.run_sgd(q, lossvar.GaussianNoisePopulation(q), optim.sgd(sched), steps=20, batch_size=1,
                         replicates=1000, w0=[3.0, 1.0], rng=0)
    frame = tr.comparison(theory.quadratic_moments(sched, [1.0, 2.0], 1.0, [3.0, 1.0], steps=20))
    assert "pvalue" not in frame and (frame.dof == 999).all() and not frame.attrs["independent"]
    with pytest.raises(ValueError, match="must cover the recorded steps"):
        tr.comparison(theory.quadratic_moments(sched, [1.0, 2.0], 1.0, [3.0, 1.0], steps=10))
    # the moments of another dimension are no reference (the 1-D law would give exact p-values)
    with pytest.raises(ValueError, match=r"run's 2 parameter\(s\).*got the moments of 1"):
        tr.comparison(theory.quadratic_moments(sched, 1.0, 1.0, 3.0, steps=20))


def test_fit_verdicts_test_the_exponent():
    fit = stats.power_law_fit([10, 100, 1000], [0.1, 0.0102, 0.00098], [1e-3, 1e-4, 1e-5])
    a = lossvar.agreement(fit)
    assert a.tested == 1 and a.pvalue == pytest.approx(fit.pvalue, rel=1e-9)
    assert a.agrees == (fit.pvalue >= 0.05)
