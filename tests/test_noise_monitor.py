"""GradientNoiseMonitor: the online two-batch estimate of the gradient noise scale.

Synthetic gradients with known G and Sigma: the batch means of B examples are drawn
from the normal law N(G, c_B Sigma) with c_B = k_B / B, k_B = 1 for independent draws and
(N - B)/(N - 1) without replacement (docs/theory.md, section 10), so E||G_B||^2 =
||G||^2 + c_B tr Sigma exactly. Monte Carlo checks over many seeds use
|mean - truth| <= Z * se with Z = 4 (two-sided normal tail 6.3e-5 per check) and the
interval coverage with binomtest at p > 1e-4 (a false failure with probability <= 1e-4
per interval when the coverage is nominal; the normal intervals of a mean of 200 skewed
pairs cover 94-95%, measured over 2000 seeds, which this threshold tolerates while an
interval with a wrong standard error, e.g. n_pairs in place of n_eff, covers far less).
"""

import inspect
import math

import numpy as np
import pytest
from scipy import stats

from lossvar import (
    GradientNoiseMonitor,
    NegativeEstimateWarning,
    TwoBatchDesign,
    TwoBatchResult,
    two_batch_estimate,
)

Z = 4.0  # two-sided normal tail 6.3e-5 per check
EPS = np.finfo(np.float64).eps
P = 6
_rng = np.random.default_rng(2024)
_A = _rng.normal(size=(P, P))
SIGMA = _A @ _A.T / P
G = 0.5 * _rng.normal(size=P)
GRAD_NORM2, TRACE = float(G @ G), float(np.trace(SIGMA))  # 1.20 and 5.23: B_simple = 4.34
L = np.linalg.cholesky(SIGMA)


def _norms(seed, b_small, b_big, steps, n=None):
    """Squared norms of `steps` pairs of batch means drawn from N(G, k_B Sigma / B)."""
    rng = np.random.default_rng(seed)

    def means(b):
        k = 1.0 if n is None else (n - b) / (n - 1)
        return G + rng.standard_normal((steps, P)) @ L.T * math.sqrt(k / b)

    small, big = means(b_small), means(b_big)
    return small, big, np.einsum("ij,ij->i", small, small), np.einsum("ij,ij->i", big, big)


def _fed(monitor, small_norm2, big_norm2):
    for s, b in zip(small_norm2.tolist(), big_norm2.tolist(), strict=True):
        monitor.update(s, b)
    return monitor


# -- unbiased, with intervals that cover ---------------------------------------------------


@pytest.mark.parametrize("ema, steps", [(None, 200), (0.95, 400)], ids=["running", "ema"])
@pytest.mark.parametrize("n, sampling", [(None, "with_replacement"), (100, "without_replacement")])
def test_unbiased_with_intervals_that_cover(ema, steps, n, sampling):
    seeds = 500
    truth = dict(grad_norm2=GRAD_NORM2, trace_cov=TRACE, b_simple=TRACE / GRAD_NORM2)
    values, hits = {k: [] for k in truth}, dict.fromkeys(truth, 0)
    for seed in range(seeds):
        *_, ys, yb = _norms(seed, 4, 32, steps, n)
        est = _fed(GradientNoiseMonitor(4, 32, n=n, sampling=sampling, ema=ema), ys, yb).estimate()
        for name, true in truth.items():
            values[name].append(getattr(est, name))
            low, high = getattr(est, f"{name}_ci")
            hits[name] += low <= true <= high
    for name in ("grad_norm2", "trace_cov"):  # unbiased: the mean over seeds is the truth
        v = np.array(values[name])
        assert abs(v.mean() - truth[name]) <= Z * v.std(ddof=1) / math.sqrt(seeds), name
    for name, h in hits.items():
        assert stats.binomtest(h, seeds, 0.95).pvalue > 1e-4, (name, h)
    assert est.n_pairs == steps and est.sampling == sampling and est.n == n


def test_without_replacement_needs_its_correction():
    # Batches drawn without replacement from N = 40, estimated as independent draws: ||G||^2
    # comes out tr Sigma / (N - 1) = 0.13 too low, dozens of standard errors away.
    n, steps = 40, 20_000
    *_, ys, yb = _norms(7, 4, 32, steps, n)
    right = _fed(GradientNoiseMonitor(4, 32, n=n, sampling="without_replacement"), ys, yb).estimate()
    wrong = _fed(GradientNoiseMonitor(4, 32), ys, yb).estimate()
    assert abs(right.grad_norm2 - GRAD_NORM2) <= Z * right.grad_norm2_se
    assert abs(wrong.grad_norm2 - (GRAD_NORM2 - TRACE / (n - 1))) <= Z * wrong.grad_norm2_se
    assert GRAD_NORM2 - wrong.grad_norm2 > 10 * wrong.grad_norm2_se


# -- the same numbers as two_batch_estimate, to rounding ----------------------------------


def test_agrees_with_two_batch_estimate_on_the_same_pairs():
    small, big, ys, yb = _norms(11, 4, 32, 1000, 100)
    batch = two_batch_estimate(small, big, 4, 32, n=100)
    online = _fed(GradientNoiseMonitor(4, 32, n=100, sampling="without_replacement"), ys, yb).estimate()
    pairs = np.stack([batch.grad_norm2_pairs, batch.trace_cov_pairs])
    r = pairs.shape[1]
    # Both accumulate the same R per-pair values in different orders (numpy's pairwise mean and
    # two-pass covariance; West's updates). A mean of R terms errs by at most about R u mean|x|
    # in any order, u = eps / 2 (Higham 2002, section 4.2); a variance by at most about
    # R u kappa relative, kappa = sqrt(1 + mean^2 / var) (Chan, Golub & LeVeque 1983). So the
    # two differ by at most R eps mean|x| in the means and 2 R eps kappa in the covariance.
    mean, cov = pairs.mean(axis=1), np.cov(pairs)
    kappa = np.sqrt(1 + mean**2 / np.diag(cov)).max()
    step_mean = r * EPS * np.abs(pairs).mean(axis=1)
    step_cov = 2 * r * EPS * kappa * np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    # Every reported number is a smooth function of these five moments: its tolerance is the sum
    # of its changes when each moment moves by its bound (first order; twice that for margin).
    design = TwoBatchDesign(4, 32, 100, "without_replacement")

    def fields(m, c):
        e = TwoBatchResult.from_moments(design, m, c, n_pairs=r, n_eff=r, confidence=0.95)
        return np.array([e.grad_norm2, e.trace_cov, e.b_simple, e.grad_norm2_se, e.trace_cov_se,
                         e.b_simple_se, *e.grad_norm2_ci, *e.trace_cov_ci, *e.b_simple_ci])

    base = fields(mean, cov)
    tol = np.zeros_like(base)
    for i in range(2):
        m = mean.copy()
        m[i] += step_mean[i]
        tol += np.abs(fields(m, cov) - base)
    for i, j in ((0, 0), (1, 1), (0, 1)):
        c = cov.copy()
        c[i, j] += step_cov[i, j]
        c[j, i] = c[i, j]
        tol += np.abs(fields(mean, c) - base)
    np.testing.assert_array_equal(base, fields(mean, cov))  # from_moments is two_batch_estimate's path
    got = np.array([online.grad_norm2, online.trace_cov, online.b_simple, online.grad_norm2_se,
                    online.trace_cov_se, online.b_simple_se, *online.grad_norm2_ci, *online.trace_cov_ci,
                    *online.b_simple_ci])
    want = np.array([batch.grad_norm2, batch.trace_cov, batch.b_simple, batch.grad_norm2_se,
                     batch.trace_cov_se, batch.b_simple_se, *batch.grad_norm2_ci, *batch.trace_cov_ci,
                     *batch.b_simple_ci])
    assert np.all(np.abs(got - want) <= 2 * tol), (got - want, tol)
    assert np.all(tol < 1e-9 * np.abs(want))  # the bound is tight enough to mean something
    assert (online.n_pairs, online.n_eff, online.flags) == (r, r, ())
    assert online.grad_norm2_pairs is None and batch.grad_norm2_pairs.shape == (r,)


# -- exponential weights --------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.99])
def test_ema_weights_and_effective_sample_size(beta):
    steps = 300
    *_, ys, yb = _norms(3, 4, 32, steps)
    monitor = _fed(GradientNoiseMonitor(4, 32, ema=beta), ys, yb)
    est = monitor.estimate()
    # Kish: (sum w)^2 / sum w^2 with w = beta^(T - t), in closed form
    closed = (1 - beta**steps) * (1 + beta) / ((1 - beta) * (1 + beta**steps))
    assert est.n_eff == pytest.approx(closed, rel=4 * steps * EPS)
    # the weighted mean and its standard error, computed directly
    s, t = TwoBatchDesign(4, 32, None, "with_replacement").pairs(ys, yb)
    w = beta ** np.arange(steps - 1, -1, -1.0)
    for x, value, se in ((s, est.grad_norm2, est.grad_norm2_se), (t, est.trace_cov, est.trace_cov_se)):
        mean = np.average(x, weights=w)
        var = np.sum(w * (x - mean) ** 2) / (w.sum() - np.sum(w**2) / w.sum())  # reliability weights
        # weighted sums of T terms in two orders: at most 2 T eps sum w|x| / sum w apart (see above)
        assert abs(value - mean) <= 2 * steps * EPS * np.average(np.abs(x), weights=w)
        kappa = math.sqrt(1 + mean**2 / var)
        assert se == pytest.approx(math.sqrt(var / closed), rel=4 * steps * EPS * kappa)
    plain = monitor.estimate(weighted=False)
    assert plain.n_eff == steps and plain.n_pairs == steps == est.n_pairs
    alone = _fed(GradientNoiseMonitor(4, 32), ys, yb).estimate()
    assert (plain.grad_norm2, plain.trace_cov_se) == (alone.grad_norm2, alone.trace_cov_se)  # one path


def test_ema_follows_a_drifting_gradient():
    # ||G||^2 steps from 1.20 to 4 x 1.20 halfway: the weighted estimate (beta = 0.95, about the
    # last 20 steps) finds the new value; the running average sits near the mean of the two.
    first = _norms(5, 4, 32, 2000)
    rng = np.random.default_rng(6)
    small = 2 * G + rng.standard_normal((2000, P)) @ L.T * math.sqrt(1 / 4)
    big = 2 * G + rng.standard_normal((2000, P)) @ L.T * math.sqrt(1 / 32)
    monitor = GradientNoiseMonitor(4, 32, ema=0.95)
    _fed(monitor, first[2], first[3])
    _fed(monitor, np.einsum("ij,ij->i", small, small), np.einsum("ij,ij->i", big, big))
    weighted, running = monitor.estimate(), monitor.estimate(weighted=False)
    assert abs(weighted.grad_norm2 - 4 * GRAD_NORM2) <= Z * weighted.grad_norm2_se
    assert abs(running.grad_norm2 - 2.5 * GRAD_NORM2) <= Z * running.grad_norm2_se


# -- flags, reset, defaults and bad input ----------------------------------------------------


def test_a_negative_estimate_is_flagged_and_reset_forgets():
    monitor = GradientNoiseMonitor(4, 32)
    monitor.update(1.0, 2.0)  # ||G_small||^2 < ||G_big||^2: tr Sigma < 0
    monitor.update(1.5, 1.9)
    with pytest.warns(NegativeEstimateWarning, match=r"negative two-batch estimate of tr Sigma") as got:
        est = monitor.estimate()
    assert got[0].filename == __file__
    assert est.flags == ("negative_trace_cov", "negative_b_simple") and est.n_pairs == 2
    monitor.reset()
    assert monitor.n_pairs == 0
    with pytest.raises(ValueError, match=r"needs at least one update\(small_norm2, big_norm2\); got 0"):
        monitor.estimate()


def test_the_default_sampling_is_the_documented_exception():
    # The package's default is "without_replacement"; a training stream often has no known N.
    params = inspect.signature(GradientNoiseMonitor).parameters
    assert params["sampling"].default == "with_replacement" and params["n"].default is None
    assert "with_replacement" in repr(GradientNoiseMonitor(4, 32))


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    (dict(b_small=8, b_big=8), ValueError, r"`b_small` must be smaller than `b_big`; got b_small=8, b_big=8"),
    (dict(b_small=16), ValueError, r"`b_small` must be smaller than `b_big`; got b_small=16, b_big=8"),
    (dict(b_small=0), ValueError, r"`b_small` must be an integer >= 1; got 0"),
    (dict(b_big=8.0), TypeError, r"`b_big` must be an integer"),
    (dict(n=6, sampling="without_replacement"), ValueError,
     r"`b_big` must be <= n=6 with sampling='without_replacement'; got b_big=8"),
    (dict(sampling="without_replacement"), ValueError,
     r"`n` \(the data set size N\) is required with sampling='without_replacement'; got None"),
    (dict(n=1), ValueError, r"`n` must be an integer >= 2; got 1"),
    (dict(sampling="shuffled"), ValueError, r"`sampling` must be one of .*, but 'shuffled' was passed"),
    (dict(ema=1.0), ValueError, r"`ema` must be a finite real number in \(0.0, 1.0\); got 1.0"),
    (dict(ema=0), ValueError, r"`ema` must be a finite real number in \(0.0, 1.0\); got 0"),
    (dict(confidence=95), ValueError, r"`confidence` must be a finite real number in \(0.0, 1.0\); got 95"),
])
def test_bad_construction_names_the_argument(kwargs, exc, match):
    args = dict(b_small=2, b_big=8) | kwargs
    with pytest.raises(exc, match=match):
        GradientNoiseMonitor(args.pop("b_small"), args.pop("b_big"), **args)


@pytest.mark.parametrize(("small", "big", "exc", "match"), [
    (-1.0, 1.0, ValueError, r"`small_norm2` must be a finite real number in \[0.0, inf\]; got -1.0"),
    (1.0, -1e-300, ValueError, r"`big_norm2` must be a finite real number in \[0.0, inf\]; got -1e-300"),
    (np.nan, 1.0, ValueError, r"`small_norm2` must be a finite real number .*; got nan"),
    (1.0, np.inf, ValueError, r"`big_norm2` must be a finite real number .*; got inf"),
    ("1.0", 1.0, TypeError, r"`small_norm2` must be a finite real number .*; got '1.0'"),
    (1.0, np.array([1.0, 2.0]), TypeError, r"`big_norm2` must be a finite real number"),
])
def test_bad_norms_name_the_argument_and_are_not_counted(small, big, exc, match):
    monitor = GradientNoiseMonitor(2, 8)
    monitor.update(2.0, 1.0)
    with pytest.raises(exc, match=match):
        monitor.update(small, big)
    assert monitor.n_pairs == 1


def test_weighted_needs_ema():
    monitor = GradientNoiseMonitor(2, 8)
    monitor.update(2.0, 1.0)
    with pytest.raises(ValueError, match=r"`weighted` must be False or None without `ema`; got True"):
        monitor.estimate(weighted=True)
