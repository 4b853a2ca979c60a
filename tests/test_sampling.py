"""Batch draws: right support, no repeats without replacement, uniform subsets."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from lossvar import sampling, scratch

# Every chi-square uniformity test below fails by chance with probability
# 1e-4 (the p-value threshold), for a false-failure rate of about 4e-4 for
# this file.
ALPHA = 1e-4


def _subset_counts(idx, n, b):
    subsets = {s: i for i, s in enumerate(itertools.combinations(range(n), b))}
    codes = np.array([subsets[tuple(sorted(row))] for row in idx.tolist()])
    return np.bincount(codes, minlength=len(subsets))


@pytest.mark.parametrize("n,b", [(6, 3), (24, 3), (5, 4)])
def test_without_replacement_uniform_over_subsets(n, b):
    # (6, 3) and (5, 4) take the random-keys path, (24, 3) the rejection path.
    rng = np.random.default_rng(123)
    size = 200 * math.comb(n, b)
    idx = sampling.without_replacement(rng, n, b, size)
    assert idx.shape == (size, b)
    assert (np.diff(np.sort(idx, axis=1), axis=1) > 0).all()
    counts = _subset_counts(idx, n, b)
    assert stats.chisquare(counts).pvalue > ALPHA


def test_rejection_path_with_many_collisions_has_no_repeats_and_uniform_margins():
    # B^2 / 2N = 4: about 98% of first draws contain a repeat, so the
    # redraw loop runs many rounds.
    n, b, size = 128, 32, 20_000
    idx = sampling.without_replacement(np.random.default_rng(7), n, b, size)
    assert (np.diff(idx, axis=1) > 0).all()  # rows come sorted and distinct
    counts = np.bincount(idx.ravel(), minlength=n)
    assert stats.chisquare(counts).pvalue > ALPHA


def test_with_replacement_uniform():
    idx = sampling.with_replacement(np.random.default_rng(1), 10, 4, 50_000)
    assert stats.chisquare(np.bincount(idx.ravel(), minlength=10)).pvalue > ALPHA


def test_full_batch_is_the_whole_set():
    idx = sampling.without_replacement(np.random.default_rng(0), 9, 9, 3)
    np.testing.assert_array_equal(idx, np.tile(np.arange(9), (3, 1)))


def test_epoch_batches_are_disjoint_within_an_epoch():
    batches = sampling.epoch_batches(np.random.default_rng(0), 10, 3, 4)
    assert batches.shape == (4, 3, 3)
    for r in range(4):
        assert len(set(batches[r].ravel().tolist())) == 9


def test_unknown_scheme():
    with pytest.raises(ValueError, match="`sampling` must be one of .* but 'bootstrap' was passed"):
        sampling.draw(np.random.default_rng(0), 10, 2, 3, "bootstrap")


@pytest.mark.parametrize("sampling_, n, b, size", [
    ("with_replacement", 1000, 7, 9), ("without_replacement", 1000, 7, 9),   # rejection
    ("without_replacement", 1000, 200, 9), ("without_replacement", 50, 50, 9),  # random keys, B = N
    ("without_replacement", 20_000, 4_000, 9),  # random keys, rows longer than a scratch piece
    ("with_replacement", 10**6, 5, 7001),  # int32 pieces of a scratch buffer, the last one odd
    ("with_replacement", 2**31 + 11, 3, 5001)])  # N past int32: int64 pieces
def test_scratch_draws_are_intp_and_the_same_numbers(sampling_, n, b, size):
    # The engine's draws go to per-thread scratch as intp (np.take then makes no index
    # copy); they must be the numbers of a plain draw from the same stream, and leave
    # the Generator in the same state.
    pool = {}

    def scratch(name, shape, dtype=np.float64):
        return pool.setdefault((name, tuple(shape), np.dtype(dtype)), np.empty(shape, dtype))

    plain_rng, scratch_rng = np.random.default_rng(5), np.random.default_rng(5)
    plain = sampling.draw(plain_rng, n, b, size, sampling_)
    into = sampling.draw(scratch_rng, n, b, size, sampling_, scratch=scratch)
    assert into.dtype == np.intp and plain.dtype == sampling.index_dtype(n)
    np.testing.assert_array_equal(into, plain)
    assert plain_rng.bit_generator.state == scratch_rng.bit_generator.state


@pytest.mark.parametrize("sampling_, n, b, size", [
    ("without_replacement", 1000, 40, 300), ("without_replacement", 10**6, 1024, 256),
    ("without_replacement", 50, 6, 2000), ("with_replacement", 10**5, 1, 70000),
    ("with_replacement", 97, 12, 1)])
def test_draws_into_the_thread_scratch_buffers_are_the_same_numbers(sampling_, n, b, size):
    # lossvar.scratch reuses one buffer per name: a second draw overwrites the first in
    # place, and each is the numbers of a plain draw from its stream.
    for seed in (7, 8):
        plain = sampling.draw(np.random.default_rng(seed), n, b, size, sampling_)
        into = sampling.draw(np.random.default_rng(seed), n, b, size, sampling_, scratch=scratch.scratch)
        np.testing.assert_array_equal(into, plain)
