"""lossvar.theory.robbins_monro: the Robbins-Monro conditions, exactly for the schedule families
and numerically (or inconclusive) from any tail (docs/theory.md, section 5)."""

import math

import numpy as np
import pytest

from lossvar import theory
from lossvar.theory.robbins_monro import FAMILIES, TAIL_K


@pytest.mark.parametrize("family, params, verdict", [
    ("polynomial", dict(p=0.3), (True, False, False)),
    ("polynomial", dict(p=0.5), (True, False, False)),       # sum eta^2 = sum 1/k = inf
    ("polynomial", dict(p=0.5000001), (True, True, True)),
    ("polynomial", dict(p=1.0, c=3.0, k0=100.0), (True, True, True)),  # harmonic: diverges
    ("polynomial", dict(p=1.0001), (False, True, False)),    # zeta(1.0001) ~ 1e4, finite
    ("inverse_time", {}, (True, True, True)),
    ("constant", {}, (True, False, False)),
    ("exponential", dict(gamma=0.99), (False, True, False)),
    ("exponential", dict(gamma=1.0), (True, False, False)),
    ("step", dict(factor=0.5), (False, True, False)),
    ("step", dict(factor=1.0), (True, False, False)),
    ("cosine", dict(total_steps=1000), (False, True, False)),
])
def test_family_verdicts(family, params, verdict):
    report = theory.family_verdict(family, **params)
    assert (report.sum_diverges, report.sum_squares_converges, report.satisfied) == verdict
    assert report.basis.startswith("exact")


def test_family_verdict_refuses_unknown_families_and_missing_parameters():
    with pytest.raises(ValueError, match=r"`family` must be one of 'constant', .*; got 'harmonic'"):
        theory.family_verdict("harmonic")
    with pytest.raises(TypeError, match=r"the polynomial family needs `p`"):
        theory.family_verdict("polynomial", c=1.0)
    assert set(FAMILIES) == {"constant", "polynomial", "inverse_time", "exponential", "step", "cosine"}


def test_report_says_sufficient_not_necessary():
    report = theory.family_verdict("polynomial", p=0.5)
    assert "sufficient, not necessary" in report.note
    text = str(report)
    assert "sufficient, not necessary" in text and "satisfied: no" in text
    assert "sum eta_k = inf: yes; sum eta_k^2 < inf: no" in text


def _tail(fn):
    return np.array([fn(int(k)) for k in TAIL_K], dtype=np.float64)


@pytest.mark.parametrize("fn, verdict", [
    (lambda k: 1 / k, (True, True, True)),
    (lambda k: 5 / (k + 100), (True, True, True)),          # k eta_k -> 5 geometrically
    (lambda k: 1 / k**0.75, (True, True, True)),
    (lambda k: 1 / math.sqrt(k), (True, False, False)),     # k eta_k^2 = 1: harmonic
    (lambda k: 1 / k**2, (False, True, False)),
    (lambda k: math.exp(-math.log(k) ** 2), (False, True, False)),
    (lambda k: 0.1, (True, False, False)),
    (lambda k: 0.9**k, (False, True, False)),                # underflows to 0: eventually zero
    (lambda k: k**0.5, (True, False, False)),
])
def test_tail_verdicts(fn, verdict):
    report = theory.tail_verdict(_tail(fn))
    assert (report.sum_diverges, report.sum_squares_converges, report.satisfied) == verdict
    assert report.basis.startswith("numeric")


@pytest.mark.parametrize("fn", [
    lambda k: 1 / (k * math.log(k + 1)),      # diverges, but looks like k^-1 up to a log
    lambda k: 1 / (k * math.log(k) ** 2),     # converges, and looks the same
    lambda k: k**-1.0001,                     # converges; no finite range shows it
])
def test_log_factors_are_inconclusive_not_guessed(fn):
    report = theory.tail_verdict(_tail(fn))
    assert report.sum_diverges is None
    assert report.sum_squares_converges is True
    assert report.satisfied is None
    assert "inconclusive" in report.basis


def test_irregular_tail_is_inconclusive():
    assert theory.tail_verdict(_tail(lambda k: (2 + math.sin(k)) / k)).satisfied is None


def test_zero_then_positive_is_inconclusive():
    assert theory.tail_verdict(_tail(lambda k: 0.0 if k < 10**5 else 1 / k)).satisfied is None


HARMONIC = _tail(lambda k: 1 / k)


@pytest.mark.parametrize("eta", [np.ones(5), -HARMONIC, np.r_[np.nan, HARMONIC[1:]]])
def test_tail_verdict_refuses_other_values(eta):
    with pytest.raises(ValueError, match=rf"`eta` must hold {TAIL_K.size} finite values >= 0"):
        theory.tail_verdict(eta)
