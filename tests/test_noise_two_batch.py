"""Two-batch estimates of ||G||^2, tr Sigma and B_simple (docs/theory.md, section 10).

Deterministic identities are checked to rounding (rtol 1e-12). Monte Carlo
checks use fixed seeds and the bound |mean - exact| <= Z_MC * se, where
Z_MC = 4 gives a false-failure rate of 6.3e-5 per check for a normal mean
(two-sided), so a fresh seed would almost never fail a correct estimator.
"""

import inspect
import itertools
import warnings

import numpy as np
import pytest
from scipy import stats

import lossvar
from lossvar import (
    GradientNoiseResult,
    NegativeEstimateWarning,
    TwoBatchDesign,
    TwoBatchResult,
    sampling,
    theory,
    two_batch_estimate,
    two_batch_estimate_from_callable,
)

RTOL = 1e-12
Z_MC = 4.0  # two-sided normal tail 6.3e-5 per check


# -- two_batch_estimate ----------------------------------------------------------------


def test_two_batch_hand_computed():
    # ||G_small||^2 = 25 at B = 1, ||G_big||^2 = 5 at B = 4: ||G||^2 = -5/3 < 0, flagged.
    small, big = np.array([3.0, 4.0]), np.array([1.0, 2.0])
    with pytest.warns(NegativeEstimateWarning, match=r"\|\|G\|\|\^2 = -1.67, .*no standard error with one"):
        est = two_batch_estimate(small, big, 1, 4, sampling="with_replacement")
    assert est.grad_norm2 == pytest.approx((4 * 5 - 1 * 25) / 3, rel=RTOL)
    assert est.trace_cov == pytest.approx((25 - 5) / (1 - 1 / 4), rel=RTOL)
    assert est.b_simple == pytest.approx(-16.0, rel=RTOL)
    assert est.flags == ("negative_grad_norm2", "negative_b_simple")
    assert est.n_pairs == 1 and np.isnan(est.grad_norm2_se) and np.isnan(est.b_simple_se)
    assert np.isnan(est.b_simple_ci).all() and np.isnan(est.grad_norm2_ci).all()
    # Without replacement from N = 5: c_1 = 1, c_4 = 1/16; tr = 20 / (15/16) = 64/3, ||G||^2 = 25 - 64/3.
    est = two_batch_estimate(small, big, 1, 4, n=5, sampling="without_replacement")
    assert est.trace_cov == pytest.approx(64 / 3, rel=RTOL)
    assert est.grad_norm2 == pytest.approx(11 / 3, rel=RTOL)
    assert "B_simple" in str(est)


def test_two_batch_replicates_average_with_standard_errors():
    rng = np.random.default_rng(5)
    # every pair's estimates positive (checked for this seed), so none is flagged
    small, big = rng.normal(size=(7, 3)) + 5.0, 0.3 * rng.normal(size=(7, 3)) + 3.0
    est = two_batch_estimate(small, big, 2, 8, sampling="with_replacement")
    singles = [two_batch_estimate(s, b, 2, 8, sampling="with_replacement")
               for s, b in zip(small, big, strict=True)]
    g2 = np.array([e.grad_norm2 for e in singles])
    tr = np.array([e.trace_cov for e in singles])
    np.testing.assert_allclose(est.grad_norm2_pairs, g2, rtol=RTOL)
    assert est.grad_norm2 == pytest.approx(g2.mean(), rel=RTOL)
    assert est.trace_cov_se == pytest.approx(tr.std(ddof=1) / np.sqrt(7), rel=RTOL)
    assert est.b_simple == pytest.approx(tr.mean() / g2.mean(), rel=RTOL)
    assert est.n_pairs == 7 and isinstance(est, TwoBatchResult)


def _all_means(grads, b, with_replacement):
    """Mean gradient of every batch of size b: ordered tuples (with), subsets (without)."""
    n = grads.shape[0]
    if with_replacement:
        combos = itertools.product(range(n), repeat=b)
    else:
        combos = itertools.combinations(range(n), b)
    return grads[np.array(list(combos))].mean(axis=1)


@pytest.mark.parametrize(("sampling_", "n", "b_small", "b_big"),
                         [("without_replacement", 8, 2, 5), ("with_replacement", 4, 1, 3)])
def test_two_batch_is_exactly_unbiased_over_all_batches(sampling_, n, b_small, b_big):
    # Averaging over every (small, big) pair is the exact expectation.
    grads = np.random.default_rng(2).normal(size=(n, 3)) + 1.0
    small = _all_means(grads, b_small, sampling_ == "with_replacement")
    big = _all_means(grads, b_big, sampling_ == "with_replacement")
    small, big = np.repeat(small, len(big), axis=0), np.tile(big, (len(small), 1))
    est = two_batch_estimate(small, big, b_small, b_big, n=n, sampling=sampling_)
    exact = GradientNoiseResult.from_grads(grads)
    assert est.grad_norm2 == pytest.approx(exact.grad_norm2, rel=1e-10)
    assert est.trace_cov == pytest.approx(exact.trace_cov, rel=1e-10)


class TestMonteCarloN20:
    """Random batch pairs from N = 20 fixed gradients (p = 3), B_small = 2, B_big = 10."""

    N, B_S, B_B, R = 20, 2, 10, 100_000
    grads = np.array([1.0, -0.5, 0.25]) + np.random.default_rng(1).normal(size=(20, 3))
    exact = GradientNoiseResult.from_grads(grads)

    def _pairs(self, scheme, seed):
        rng = np.random.default_rng(seed)
        draw = getattr(sampling, scheme)
        return (self.grads[draw(rng, self.N, self.B_S, self.R)].mean(axis=1),
                self.grads[draw(rng, self.N, self.B_B, self.R)].mean(axis=1))

    def test_corrected_estimator_is_unbiased_without_replacement(self):
        small, big = self._pairs("without_replacement", 10)
        est = two_batch_estimate(small, big, self.B_S, self.B_B, n=self.N, sampling="without_replacement")
        assert abs(est.grad_norm2 - self.exact.grad_norm2) <= Z_MC * est.grad_norm2_se
        assert abs(est.trace_cov - self.exact.trace_cov) <= Z_MC * est.trace_cov_se

    def test_uncorrected_estimator_is_biased_without_replacement(self):
        # B c_B = N/(N-1) - B/(N-1), so the plain formulas estimate ||G||^2 - tr Sigma/(N-1)
        # and tr Sigma N/(N-1), here about 46 and 8 standard errors from the truth (the margins
        # below are met by every one of 40 other seeds tried).
        small, big = self._pairs("without_replacement", 11)
        est = two_batch_estimate(small, big, self.B_S, self.B_B, sampling="with_replacement")
        bias = est.grad_norm2 - self.exact.grad_norm2
        assert abs(bias) > 20 * est.grad_norm2_se
        assert abs(bias + self.exact.trace_cov / (self.N - 1)) <= Z_MC * est.grad_norm2_se
        assert abs(est.trace_cov - self.exact.trace_cov) > 3 * est.trace_cov_se
        assert abs(est.trace_cov - self.exact.trace_cov * self.N / (self.N - 1)) <= Z_MC * est.trace_cov_se

    def test_plain_estimator_is_unbiased_with_replacement(self):
        small, big = self._pairs("with_replacement", 12)
        est = two_batch_estimate(small, big, self.B_S, self.B_B, sampling="with_replacement")
        assert abs(est.grad_norm2 - self.exact.grad_norm2) <= Z_MC * est.grad_norm2_se
        assert abs(est.trace_cov - self.exact.trace_cov) <= Z_MC * est.trace_cov_se
        assert abs(est.b_simple - self.exact.b_simple) <= Z_MC * est.b_simple_se


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        (([1.0, 2.0], [1.0], 1, 2), {}, ValueError, "`big` must have the shape of `small`"),
        ((np.ones((2, 2, 2)), np.ones((2, 2, 2)), 1, 2), {}, ValueError, "`small` must have shape"),
        (([1.0, np.inf], [1.0, 2.0], 1, 2), {}, ValueError, "`small` must be finite"),
        (([1.0, 2.0], [np.nan, 2.0], 1, 2), {}, ValueError, "`big` must be finite"),
        (([1.0, 2.0], [1.0, 2.0], 4, 4), {}, ValueError, "`b_small` must be smaller than `b_big`"),
        (([1.0, 2.0], [1.0, 2.0], 0, 4), {}, ValueError, "`b_small` must be an integer >= 1"),
        (([1.0, 2.0], [1.0, 2.0], 1, 2.0), {}, TypeError, "`b_big` must be an integer"),
        (([1.0, 2.0], [1.0, 2.0], 1, 2), dict(sampling="without_replacement"), ValueError, "`n`.*required"),
        (([1.0, 2.0], [1.0, 2.0], 1, 6), dict(n=5, sampling="without_replacement"), ValueError,
         "`b_big` must be <= n=5"),
        (([1.0, 2.0], [1.0, 2.0], 1, 2), dict(sampling="bootstrap"), ValueError, "`sampling`"),
    ],
)
def test_two_batch_rejects_bad_input(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        two_batch_estimate(*args, **(dict(sampling="with_replacement") | kwargs))


# -- negative estimates are flagged with their likely cause ------------------------------


def _near_minimum():
    """N = 40 gradients (p = 3) with ||G||^2 = 0.01 beside tr Sigma = 2.6: near a minimum."""
    grads = np.random.default_rng(21).normal(size=(40, 3))
    return grads + (np.array([0.1, 0.0, 0.0]) - grads.mean(axis=0))


def _pairs_without_replacement(grads, b_small, b_big, pairs, seed):
    rng = np.random.default_rng(seed)
    n = grads.shape[0]
    return (grads[sampling.without_replacement(rng, n, b_small, pairs)].mean(axis=1),
            grads[sampling.without_replacement(rng, n, b_big, pairs)].mean(axis=1))


def test_a_sampling_that_does_not_match_the_batches_is_flagged():
    # Drawn without replacement, estimated as independent draws: the plain formulas estimate
    # ||G||^2 - tr Sigma/(N - 1) = 0.01 - 0.067 < 0, about 60 standard errors below 0 here.
    grads = _near_minimum()
    exact = GradientNoiseResult.from_grads(grads)
    small, big = _pairs_without_replacement(grads, 2, 20, 20_000, seed=3)
    cause = (r"(?s)standard errors below 0 \(n_pairs=20000\), beyond what noise plausibly gives: the "
             r"sampling likely does not match .*sampling='with_replacement' was used.*pass "
             r"sampling='without_replacement' and n")
    with pytest.warns(NegativeEstimateWarning, match=cause) as got:
        wrong = two_batch_estimate(small, big, 2, 20, sampling="with_replacement")
    assert got[0].filename == __file__  # the warning points at the caller's line
    assert wrong.flags == ("negative_grad_norm2", "negative_b_simple")
    assert wrong.grad_norm2 < -Z_MC * wrong.grad_norm2_se
    assert "negative two-batch estimate of ||G||^2" in str(wrong)
    right = two_batch_estimate(small, big, 2, 20, n=40)  # the default sampling, as drawn
    assert right.flags == () and "negative" not in str(right)
    assert abs(right.grad_norm2 - exact.grad_norm2) <= Z_MC * right.grad_norm2_se


def test_too_few_pairs_are_named_as_the_likely_cause():
    # Five pairs (seed chosen where the estimate falls below 0): a negative ||G||^2 within its
    # noise. Fieller's interval for B_simple is then a ray, a lower bound.
    grads = _near_minimum()
    small, big = _pairs_without_replacement(grads, 2, 20, 5, seed=0)
    with pytest.warns(NegativeEstimateWarning, match=r"It is within 2.78 standard errors of 0 \(n_pairs=5\): "
                      r"likely too few pairs for the noise"):
        est = two_batch_estimate(small, big, 2, 20, n=40)
    assert -2.78 * est.grad_norm2_se < est.grad_norm2 < 0  # t quantile, 4 degrees of freedom
    assert est.flags == ("negative_grad_norm2", "negative_b_simple")
    assert 0 < est.b_simple_ci.low < GradientNoiseResult.from_grads(grads).b_simple
    assert est.b_simple_ci.high == np.inf


# -- intervals ---------------------------------------------------------------------------


@pytest.mark.parametrize(("mean", "cov", "shape"), [
    ((2.0, 6.0), [[0.09, 0.05], [0.05, 0.8]], "bounded"),  # ||G||^2 many standard errors above 0
    ((0.25, 6.0), [[0.09, 0.05], [0.05, 0.8]], "ray"),  # ||G||^2 1.67 standard errors above 0
    ((-0.1, 6.0), [[0.09, 0.05], [0.05, 0.8]], "ray"),
    ((0.2, 0.1), [[0.09, 0.0], [0.0, 0.8]], "all"),  # neither significant: every B >= 0
])
def test_b_simple_interval_is_fiellers_set(mean, cov, shape):
    # Fieller's set {rho >= 0: (T - rho S)^2 <= z^2 Var(T - rho S)}, checked point by point.
    design = TwoBatchDesign(2, 8, None, "with_replacement")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NegativeEstimateWarning)  # the case S < 0 is flagged, tested above
        est = TwoBatchResult.from_moments(design, mean, cov, n_pairs=4, n_eff=4.0, confidence=0.95)
    s, t = mean
    (v_s, c), (_, v_t) = np.asarray(cov) / 4.0
    z = stats.norm.ppf(0.975)

    def gap(rho):  # <= 0 inside the set
        return (t - rho * s) ** 2 - z**2 * (v_t - 2 * rho * c + rho**2 * v_s)

    low, high = est.b_simple_ci
    rho = np.linspace(0.0, 200.0, 200_001)
    inside = gap(rho) <= 0
    np.testing.assert_array_equal(inside, (rho >= low) & (rho <= high))
    if shape == "bounded":
        assert 0 < low < est.b_simple < high < np.inf
        assert gap(low) == pytest.approx(0.0, abs=1e-12) and gap(high) == pytest.approx(0.0, abs=1e-12)
    elif shape == "ray":
        assert high == np.inf and gap(low) == pytest.approx(0.0, abs=1e-12) and gap(1e9) <= 0
    else:
        assert (low, high) == (0.0, np.inf)


def test_intervals_cover_at_their_level_without_replacement():
    # 1000 independent estimates, each from 200 pairs of batches drawn without replacement from
    # N = 20 fixed gradients. For a correct interval the count that holds the exact value is
    # Binomial(1000, 0.95); binomtest's p-value falls below 1e-3 by chance with probability
    # <= 1e-3 per interval (the normal intervals of a mean of 200 skewed values cover 94-95%).
    grads = TestMonteCarloN20.grads
    exact = GradientNoiseResult.from_grads(grads)
    hits = np.zeros(3, dtype=int)
    for seed in range(1000):
        small, big = _pairs_without_replacement(grads, 2, 10, 200, seed=seed)
        est = two_batch_estimate(small, big, 2, 10, n=20)
        hits += [est.grad_norm2_ci[0] <= exact.grad_norm2 <= est.grad_norm2_ci[1],
                 est.trace_cov_ci[0] <= exact.trace_cov <= est.trace_cov_ci[1],
                 est.b_simple_ci[0] <= exact.b_simple <= est.b_simple_ci[1]]
    for name, h in zip(("grad_norm2", "trace_cov", "b_simple"), hits, strict=True):
        assert stats.binomtest(int(h), 1000, 0.95).pvalue > 1e-3, (name, h)


# -- one sampling default ----------------------------------------------------------------


def test_one_sampling_default_across_the_package():
    functions = [lossvar.loss_variance, lossvar.gradient_variance, two_batch_estimate,
                 two_batch_estimate_from_callable, theory.optimal_learning_rate,
                 theory.one_step_expected_loss]
    defaults = {f.__name__: inspect.signature(f).parameters["sampling"].default for f in functions}
    assert set(defaults.values()) == {"without_replacement"}, defaults


@pytest.mark.parametrize("call", [
    lambda: two_batch_estimate([1.0, 2.0], [1.0, 1.5], 2, 8),
    lambda: theory.optimal_learning_rate([1.0], [[1.0]], [[1.0]], 2),
    lambda: theory.one_step_expected_loss(1.0, [1.0], [[1.0]], [[1.0]], 2, 0.1),
], ids=["two_batch_estimate", "optimal_learning_rate", "one_step_expected_loss"])
def test_the_default_sampling_asks_for_n(call):
    with pytest.raises(ValueError, match=r"`n` \(.*\) is required with sampling='without_replacement'; "
                       r"got None. 'without_replacement' is the default .*: pass n=N, or "
                       r"sampling='with_replacement' for independent draws or fresh data"):
        call()


# -- the callable form -----------------------------------------------------------------


def _logistic_closure(n=200, seed=4):
    """A scikit-learn style numpy gradient: mean logistic-loss gradient over ``indices``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (rng.random(n) < 1 / (1 + np.exp(-X @ [1.0, -1.0, 0.5]))).astype(float)
    w = np.array([0.3, 0.2, -0.4])
    calls = []

    def batch_grad(indices):
        calls.append(indices)
        Xb = X[indices]
        return Xb.T @ (1 / (1 + np.exp(-Xb @ w)) - y[indices]) / len(indices)

    per_example = (1 / (1 + np.exp(-X @ w)) - y)[:, None] * X
    return batch_grad, GradientNoiseResult.from_grads(per_example), calls


@pytest.mark.parametrize("scheme", ["without_replacement", "with_replacement"])
def test_callable_form_is_unbiased_on_logistic_regression(scheme):
    batch_grad, exact, calls = _logistic_closure()
    est = two_batch_estimate_from_callable(batch_grad, 200, 5, 50, replicates=3000, sampling=scheme, rng=0)
    assert est.n_pairs == 3000 and est.sampling == scheme
    assert abs(est.grad_norm2 - exact.grad_norm2) <= Z_MC * est.grad_norm2_se
    assert abs(est.trace_cov - exact.trace_cov) <= Z_MC * est.trace_cov_se
    assert sorted({len(c) for c in calls}) == [5, 50]
    assert all(np.issubdtype(c.dtype, np.integer) and c.min() >= 0 and c.max() < 200 for c in calls)
    if scheme == "without_replacement":
        assert all(len(np.unique(c)) == len(c) for c in calls)


def test_callable_form_is_reproducible_and_follows_spec7():
    batch_grad, _, _ = _logistic_closure()
    a = two_batch_estimate_from_callable(batch_grad, 200, 2, 10, replicates=20, rng=3)
    b = two_batch_estimate_from_callable(batch_grad, 200, 2, 10, replicates=20, rng=np.random.SeedSequence(3))
    np.testing.assert_array_equal(a.grad_norm2_pairs, b.grad_norm2_pairs)
    gen = np.random.default_rng(3)
    c = two_batch_estimate_from_callable(batch_grad, 200, 2, 10, replicates=20, rng=gen)
    d = two_batch_estimate_from_callable(batch_grad, 200, 2, 10, replicates=20, rng=gen)
    assert not np.array_equal(c.grad_norm2_pairs, d.grad_norm2_pairs)


def test_callable_form_rejects_bad_input():
    batch_grad, _, _ = _logistic_closure()
    with pytest.raises(TypeError, match="`batch_grad` must be a callable"):
        two_batch_estimate_from_callable(np.zeros(3), 200, 2, 10)
    with pytest.raises(ValueError, match="`batch_grad` must return arrays of one shape"):
        two_batch_estimate_from_callable(lambda idx: np.zeros(len(idx)), 200, 2, 10, rng=0)
    with pytest.raises(ValueError, match="`batch_grad` must return arrays of one shape"):
        two_batch_estimate_from_callable(lambda idx: np.zeros((3, 3)), 200, 2, 10, rng=0)
    with pytest.raises(ValueError, match="`batch_grad\\(indices\\)` must be finite"):
        two_batch_estimate_from_callable(lambda idx: np.full(3, np.nan), 200, 2, 10, rng=0)
    with pytest.raises(ValueError, match="`replicates` must be an integer >= 1"):
        two_batch_estimate_from_callable(batch_grad, 200, 2, 10, replicates=0)
    with pytest.raises(ValueError, match="`n` must be an integer >= 2"):
        two_batch_estimate_from_callable(batch_grad, 1, 2, 10)
    with pytest.raises(ValueError, match="`b_big` must be <= n=8"):
        two_batch_estimate_from_callable(batch_grad, 8, 2, 10)
    with pytest.raises(TypeError, match="`rng`"):
        two_batch_estimate_from_callable(batch_grad, 200, 2, 10, rng="seed")

