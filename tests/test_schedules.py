"""Schedules give their formulas; robbins_monro decides exactly for the families and
numerically (or says inconclusive) for arbitrary callables (docs/theory.md, section 5),
with the analysis of lossvar.theory.robbins_monro (tests/test_theory_robbins_monro.py)."""

import math

import numpy as np
import pytest

from lossvar import schedules as sch
from lossvar.schedules import RobbinsMonroResult, robbins_monro

# -- values --------------------------------------------------------------------------


@pytest.mark.parametrize("schedule, values", [
    (sch.constant(0.1), {1: 0.1, 2: 0.1, 10**6: 0.1}),
    (sch.inverse_time(1.0, 10.0), {1: 1 / 1.1, 10: 0.5, 30: 0.25}),
    (sch.polynomial(2.0, 1.0), {1: 2.0, 4: 0.5, 8: 0.25}),
    (sch.polynomial(1.0, 0.5, k0=3), {1: 0.5, 6: 1 / 3, 13: 0.25}),
    (sch.exponential(1.0, 0.5), {1: 1.0, 2: 0.5, 4: 0.125}),
    (sch.step(1.0, 0.1, every=3), {1: 1.0, 3: 1.0, 4: 0.1, 6: 0.1, 7: 0.01}),
    (sch.cosine(2.0, total_steps=4), {1: 2.0, 3: 1.0, 5: 0.0, 100: 0.0}),
])
def test_values_at_steps(schedule, values):
    for k, eta in values.items():
        got = schedule(k)
        assert isinstance(got, float)
        assert got == pytest.approx(eta, rel=1e-15, abs=1e-15)


@pytest.mark.parametrize("schedule", [
    sch.constant(0.1), sch.inverse_time(1.0, 10.0), sch.polynomial(2.0, 0.75, 1),
    sch.exponential(1.0, 0.9), sch.step(1.0, 0.5, 10), sch.cosine(1.0, 50),
    sch.as_schedule(lambda k: 1 / np.sqrt(k)),
])
def test_arrays_of_k_match_scalar_calls(schedule):
    ks = np.arange(1, 120)
    scalars = np.array([schedule(int(k)) for k in ks])
    # Two code paths: an array of k goes through numpy's SIMD power and cosine,
    # a scalar through the C library's. Each is accurate to a few ulps (numpy's
    # SIMD kernels to at most 4), and which kernel runs depends on the CPU, so
    # they may differ in the last bits but never by more than a few ulps of the
    # schedule's scale (eta0; 8 eps leaves room for the final product).
    eps = np.finfo(np.float64).eps
    np.testing.assert_allclose(schedule(ks), scalars, rtol=8 * eps, atol=8 * eps * np.abs(scalars).max())


def test_as_schedule():
    assert sch.as_schedule(0.1) == sch.constant(0.1)
    family = sch.polynomial(1.0, 1.0)
    assert sch.as_schedule(family) is family
    user = sch.as_schedule(lambda k: 1 / k)
    assert isinstance(user, sch.UserSchedule)
    assert user(4) == 0.25
    assert sch.as_schedule(user) is user
    assert sch.as_schedule(lambda k: 0.0)(3) == 0.0  # a schedule may reach zero


# -- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize("make, name", [
    (lambda v: sch.constant(v), "eta"),
    (lambda v: sch.inverse_time(v, 10), "eta0"),
    (lambda v: sch.inverse_time(1.0, v), "k0"),
    (lambda v: sch.polynomial(v, 1.0), "c"),
    (lambda v: sch.polynomial(1.0, v), "p"),
    (lambda v: sch.exponential(v, 0.9), "eta0"),
    (lambda v: sch.exponential(1.0, v), "gamma"),
    (lambda v: sch.step(v, 0.5, 10), "eta0"),
    (lambda v: sch.step(1.0, v, 10), "factor"),
    (lambda v: sch.cosine(v, 10), "eta0"),
])
@pytest.mark.parametrize("value", [0.0, -1.0, np.nan, np.inf])
def test_factories_refuse_non_positive_or_non_finite(make, name, value):
    with pytest.raises(ValueError, match=rf"`{name}` must be a finite real number in \(0"):
        make(value)


def test_p_must_be_positive():
    with pytest.raises(ValueError, match=r"`p` must be a finite real number in \(0, inf\]; got 0"):
        sch.polynomial(1.0, 0)


@pytest.mark.parametrize("make, match", [
    (lambda: sch.exponential(1.0, 1.5), r"`gamma` must be a finite real number in \(0, 1\]"),
    (lambda: sch.step(1.0, 2.0, 10), r"`factor` must be a finite real number in \(0, 1\]"),
    (lambda: sch.polynomial(1.0, 1.0, k0=-1), r"`k0` must be a finite real number in \[0, inf\]"),
    (lambda: sch.step(1.0, 0.5, 0), r"`every` must be an integer >= 1; got 0"),
    (lambda: sch.cosine(1.0, 0), r"`total_steps` must be an integer >= 1; got 0"),
])
def test_factories_refuse_out_of_range(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_factories_refuse_wrong_types():
    with pytest.raises(TypeError, match=r"`every` must be an integer >= 1; got 2.5"):
        sch.step(1.0, 0.5, 2.5)
    with pytest.raises(TypeError, match=r"`schedule` must be a positive finite number or"):
        robbins_monro("fast")


@pytest.mark.parametrize("fn, value, k", [
    (lambda k: 0.1 * (2 - k), "-0.1", 3),
    (lambda k: math.nan if k == 5 else 0.1, "nan", 5),
    (lambda k: math.inf if k == 2 else 0.1, "inf", 2),
])
def test_user_schedule_checks_each_value(fn, value, k):
    s = sch.as_schedule(fn, name="lr")
    for j in range(1, k):
        s(j)
    with pytest.raises(ValueError, match=rf"`lr` schedule returned {value} at step k={k}; "
                                         r"step sizes must be finite and >= 0"):
        s(k)


def test_user_schedule_checks_arrays_naming_first_bad_k():
    s = sch.as_schedule(lambda k: 5.0 - k, name="lr")
    with pytest.raises(ValueError, match=r"returned -1.0 at step k=6;"):
        s(np.arange(1, 10))


def test_user_schedule_must_return_numbers():
    with pytest.raises(TypeError, match=r"`lr` schedule must return real numbers"):
        sch.as_schedule(lambda k: "fast")(1)
    with pytest.raises(TypeError, match=r"must return one value per step"):
        sch.as_schedule(lambda k: [0.1, 0.2])(1)


# -- Robbins-Monro: exact for the families (lossvar.theory.family_verdict) -----------


@pytest.mark.parametrize("schedule, verdict", [
    (sch.polynomial(1.0, 0.3), (True, False, False)),
    (sch.polynomial(1.0, 0.5), (True, False, False)),       # sum eta^2 = sum 1/k = inf
    (sch.polynomial(1.0, 0.5000001), (True, True, True)),
    (sch.polynomial(1.0, 0.75), (True, True, True)),
    (sch.polynomial(1.0, 1.0), (True, True, True)),         # harmonic: diverges
    (sch.polynomial(3.0, 1.0, k0=100), (True, True, True)),
    (sch.polynomial(1.0, 1.0001), (False, True, False)),    # zeta(1.0001) ~ 1e4, finite
    (sch.polynomial(1.0, 2.0), (False, True, False)),
    (sch.inverse_time(0.5, 10.0), (True, True, True)),
    (sch.constant(0.1), (True, False, False)),
    (0.1, (True, False, False)),
    (sch.exponential(1.0, 0.99), (False, True, False)),
    (sch.exponential(1.0, 1.0), (True, False, False)),
    (sch.step(1.0, 0.5, 100), (False, True, False)),
    (sch.step(1.0, 1.0, 100), (True, False, False)),
    (sch.cosine(1.0, 1000), (False, True, False)),
])
def test_exact_verdicts(schedule, verdict):
    report = robbins_monro(schedule)
    assert (report.sum_diverges, report.sum_squares_converges, report.satisfied) == verdict
    assert report.basis.startswith("exact")


# -- Robbins-Monro: numeric for other callables (lossvar.theory.tail_verdict) -----------


@pytest.mark.parametrize("fn, verdict", [
    (lambda k: 1 / k**0.75, (True, True, True)),            # takes an array of k
    (lambda k: 1.0 / float(k) ** 2, (False, True, False)),  # one int k at a time
    (lambda k: 0.1, (True, False, False)),                  # one value for an array: asked per k
    (lambda k: 1 / (k * np.log(k) ** 2), (None, True, None)),
])
def test_other_callables_get_the_numeric_verdict_of_their_tail(fn, verdict):
    report = robbins_monro(fn)
    assert isinstance(report, RobbinsMonroResult)
    assert (report.sum_diverges, report.sum_squares_converges, report.satisfied) == verdict
    assert report.basis.startswith("numeric")


def test_numeric_path_raises_on_bad_values_naming_k():
    with pytest.raises(ValueError, match=r"`schedule` schedule returned -0.001 at step k=1000"):
        robbins_monro(lambda k: -1 / k)
    with pytest.raises(ValueError, match=r"`schedule` raised ZeroDivisionError.* at step k=1000"):
        robbins_monro(lambda k: 1 / (k - k))
