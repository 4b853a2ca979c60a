"""Monte Carlo of E||g_B - G||^2 against its exact value (gradient_variance).

Exact value (docs/theory.md, section 10): tr(Sigma)/B with independent draws, times
(N - B)/(N - 1) without replacement, Sigma the population covariance of the per-example
gradients. Monte Carlo checks use fixed seeds and |mean - exact| <= Z * se with Z = 4, a
two-sided false-failure rate of 6.3e-5 per check for a normal mean; this file makes
about 40 such checks, so a fresh seed would fail by chance with probability about 0.3%.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import lossvar
from lossvar import Execution, gradient_variance
from lossvar.data import Dataset
from lossvar.noise import GRADIENT_VARIANCE_COLUMNS
from lossvar.problems import LogisticRegression, NoisyQuadratic

Z = 4.0  # two-sided normal tail 6.3e-5 per check
SAMPLINGS = ("with_replacement", "without_replacement")


def _small_logistic():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 4)) * [1.0, 2.0, 0.5, 1.0]
    y = (rng.random(300) < 0.3).astype(int)
    return LogisticRegression(l2=0.05), Dataset(X, y), np.array([0.3, -0.2, 0.5, 0.1])


@pytest.fixture(scope="module")
def cancer():
    data = lossvar.datasets.load("breast_cancer")
    return lossvar.datasets.problem_for(data), data, np.zeros(data.d)


def _direct_exact(problem, data, w, b, sampling):
    grads = problem.grad(w, data.X, data.y)
    trace = np.trace(np.cov(grads, rowvar=False, bias=True))
    fpc = 1.0 if sampling == "with_replacement" else (data.n - b) / (data.n - 1)
    return trace / b * fpc


# -- agreement with the exact value -------------------------------------------------------


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_small_logistic_agrees_with_exact(sampling):
    problem, data, w = _small_logistic()
    res = gradient_variance(problem, data, w, [1, 3, 10, 50, 150, 299], replicates=4000,
                            sampling=sampling, rng=11)
    t = res.table
    assert list(t.columns) == list(GRADIENT_VARIANCE_COLUMNS)
    assert list(t.batch_size) == [1, 3, 10, 50, 150, 299]
    for row in t.itertuples():
        assert row.exact == pytest.approx(_direct_exact(problem, data, w, row.batch_size, sampling),
                                          rel=1e-12)
    assert ((t["mean"] - t.exact).abs() <= Z * t.mean_se).all(), t
    assert res.trace_cov == pytest.approx(t.exact.iloc[0], rel=1e-12)


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_breast_cancer_agrees_with_exact_and_falls_as_one_over_b(cancer, sampling):
    problem, data, w = cancer
    res = gradient_variance(problem, data, w, [1, 4, 16, 64, 256, "full"], replicates=6000,
                            sampling=sampling, rng=5)
    t = res.table
    assert ((t["mean"] - t.exact).abs() <= Z * t.mean_se).all(), t
    # E||g_B - G||^2 = tr Cov(g_B) is a variance: its exponent in B is fitted as one
    fit = lossvar.scaling_fit(pd.DataFrame(dict(batch_size=t.batch_size, variance=t["mean"],
                                                variance_se=t.mean_se, fpc=t.fpc, exact_variance=t.exact)))
    assert fit.exponent_ci.low <= -1.0 <= fit.exponent_ci.high, fit
    assert abs(fit.exponent + 1) <= Z * fit.se


def test_full_batch_without_replacement_is_exactly_zero(cancer):
    problem, data, w = cancer
    t = gradient_variance(problem, data, w, [8, "full"], replicates=50,
                          sampling="without_replacement", rng=0).table.set_index("batch_size")
    full = t.loc[data.n]
    assert full.estimator == "full" and full.fpc == 0.0
    for col in ("mean", "mean_se", "ci_low", "ci_high", "exact"):
        assert full[col] == 0.0, col
    assert full.replicates == 50
    # with replacement the "full" batch still has noise: tr(Sigma) / N
    t = gradient_variance(problem, data, w, ["full"], replicates=200, sampling="with_replacement",
                          rng=0).table
    assert t["mean"].iloc[0] > 0 and t.fpc.iloc[0] == 1.0


def test_quadratic_and_linear_problems(cancer):
    # the gradient noise of the quadratic is its noise rows, whatever w
    rng = np.random.default_rng(2)
    xi = rng.normal(size=(500, 3)) * [0.5, 1.0, 2.0]
    quad = NoisyQuadratic([1.0, 2.0, 3.0])
    t = gradient_variance(quad, Dataset(xi), [3.0, -1.0, 0.0], [1, 7, 49], replicates=4000,
                          sampling="without_replacement", rng=1).table
    s2 = xi.var(axis=0).sum()
    np.testing.assert_allclose(t.exact, s2 / t.batch_size * (500 - t.batch_size) / 499, rtol=1e-12)
    assert ((t["mean"] - t.exact).abs() <= Z * t.mean_se).all(), t


# -- the engine: reproducibility and execution options ------------------------------------


def test_bit_identical_across_workers_chunks_and_executors(cancer):
    problem, data, w = cancer
    kw = dict(replicates=3000, sampling="without_replacement", rng=np.random.SeedSequence(7))
    sizes = [16, 64, 200]
    serial = gradient_variance(problem, data, w, sizes, **kw).table
    pd.testing.assert_frame_equal(
        gradient_variance(problem, data, w, sizes, execution=Execution(workers=2), **kw).table,
        serial, check_exact=True)
    for chunk in (1, 300, 10**6):
        pd.testing.assert_frame_equal(
            gradient_variance(problem, data, w, sizes, execution=Execution(chunk_size=chunk), **kw).table,
            serial, check_exact=True)
    with ThreadPoolExecutor(2) as pool:
        pd.testing.assert_frame_equal(
            gradient_variance(problem, data, w, sizes, execution=Execution(executor=pool, chunk_size=256),
                              **kw).table, serial, check_exact=True)
    # a row depends on the seed and B only, not on the other batch sizes
    alone = gradient_variance(problem, data, w, [64], **kw).table
    pd.testing.assert_frame_equal(alone, serial[serial.batch_size == 64].reset_index(drop=True),
                                  check_exact=True)


def test_checkpoint_resumes_to_the_same_table(cancer, tmp_path):
    problem, data, w = cancer
    folder = tmp_path / "ckpt"
    plain, saved = Execution(chunk_size=256), Execution(chunk_size=256, checkpoint=folder)
    want = gradient_variance(problem, data, w, [32, 128], replicates=2000, rng=3, execution=plain).table
    first = gradient_variance(problem, data, w, [32, 128], replicates=2000, rng=3, execution=saved).table
    chunks = sorted(folder.glob("chunk-*.npz"))
    assert chunks
    chunks[-1].unlink()  # as if killed before the last chunk
    again = gradient_variance(problem, data, w, [32, 128], replicates=2000, rng=3, execution=saved).table
    pd.testing.assert_frame_equal(first, want, check_exact=True)
    pd.testing.assert_frame_equal(again, want, check_exact=True)
    with pytest.raises(ValueError, match="other parameters"):
        gradient_variance(problem, data, w, [32, 128], replicates=3000, rng=3, execution=saved)


def test_seed_is_returned_and_reproduces():
    problem, data, w = _small_logistic()
    res = gradient_variance(problem, data, w, [2, 5], replicates=500)
    again = gradient_variance(problem, data, w, [2, 5], replicates=500, rng=res.seed)
    pd.testing.assert_frame_equal(res.table, again.table, check_exact=True)
    assert "GradientVarianceResult" in repr(res)


# -- interval coverage --------------------------------------------------------------------


def test_interval_coverage_over_seeds():
    # 200 independent seeds at B = 8: the count of 95% intervals that hold the exact value is
    # Binomial(200, 0.95) if the intervals are right; binomtest's two-sided p-value falls
    # below 1e-3 by chance with probability <= 1e-3.
    problem, data, w = _small_logistic()
    exact = _direct_exact(problem, data, w, 8, "without_replacement")
    hits = 0
    for seed in range(200):
        t = gradient_variance(problem, data, w, [8], replicates=400,
                              sampling="without_replacement", rng=seed).table
        hits += int(t.ci_low.iloc[0] <= exact <= t.ci_high.iloc[0])
    assert stats.binomtest(hits, 200, 0.95).pvalue > 1e-3, hits


# -- input errors name the parameter ------------------------------------------------------


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(sampling="fresh"), ValueError, "`sampling` must be one of"),
    (dict(replicates=1), ValueError, r"`replicates` must be an integer >= 2; got 1"),
    (dict(batch_sizes=[0]), ValueError, r"`batch_sizes` must be integers in \[1, N=300\]"),
    (dict(batch_sizes=[301]), ValueError, r"`batch_sizes` must be integers in \[1, N=300\]"),
    (dict(confidence=1.0), ValueError, r"`confidence` must be a finite real number in \(0.0, 1.0\)"),
    (dict(execution=dict(workers=2)), TypeError, r"`execution` must be a lossvar.Execution or None; got \{"),
    (dict(w=np.zeros(5)), ValueError, "`w` must have length p=4"),
    (dict(w=[0.0, np.nan, 0.0, 0.0]), ValueError, "`w` must be finite"),
])
def test_bad_input_is_named(kwargs, exc, match):
    problem, data, w = _small_logistic()
    args = dict(w=w, batch_sizes=[1, 2], replicates=100, sampling="without_replacement")
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        gradient_variance(problem, data, args.pop("w"), args.pop("batch_sizes"), **args)



# -- the Problem protocol, nothing more ----------------------------------------------------


class Protocol:
    """A problem defined outside lossvar: only check_params and grad, computed here in numpy."""

    def __init__(self, l2):
        self.l2 = l2

    def check_params(self, w, X):
        if np.shape(w)[-1] != np.shape(X)[-1]:
            raise ValueError(f"`w` must have length p={np.shape(X)[-1]}; got {np.shape(w)[-1]}")

    def grad(self, w, X, y):
        # the logistic loss's per-example gradient as LogisticRegression writes it
        return LogisticRegression(l2=self.l2).grad(w, X, y)


def test_a_problem_meeting_only_the_protocol_gives_the_built_ins_table():
    problem, data, w = _small_logistic()
    kw = dict(replicates=500, rng=4, execution=Execution(chunk_size=128))
    mine = gradient_variance(Protocol(problem.l2), data, w, [1, 8, 64], **kw).table
    pd.testing.assert_frame_equal(mine, gradient_variance(problem, data, w, [1, 8, 64], **kw).table,
                                  check_exact=True)
