"""The fast paths give the bits of the plain ones: scratch buffers and fused moments.

Each test writes the previous, allocating form of a computation next to the
one lossvar now runs, on fixed seeds, and asks for exact equality. No test
here looks at wall-clock time.
"""

from __future__ import annotations

import threading
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

import lossvar
from lossvar import engine, sampling
from lossvar.moments import Moments, block_moments
from lossvar.variance import BatchMeans


def _old_rejection(rng, n, batch_size, size, dtype):
    idx = rng.integers(0, n, (size, batch_size), dtype=dtype)
    idx.sort(axis=1)
    repeat = idx[:, 1:] == idx[:, :-1]
    rows = np.flatnonzero(repeat.any(axis=1))
    while rows.size:
        sub = idx[rows]
        rep = np.zeros(sub.shape, dtype=bool)
        rep[:, 1:] = sub[:, 1:] == sub[:, :-1]
        sub[rep] = rng.integers(0, n, int(rep.sum()), dtype=dtype)
        sub.sort(axis=1)
        idx[rows] = sub
        still = (sub[:, 1:] == sub[:, :-1]).any(axis=1)
        rows = rows[still]
    return idx


@pytest.mark.parametrize("n, b, size", [(1000, 40, 300), (10**6, 1024, 256), (50, 6, 2000),
                                        (10**5, 1, 70000), (97, 12, 1)])
def test_draws_into_scratch_are_the_same_bits(n, b, size):
    for scheme in sampling.SCHEMES:
        plain = sampling.draw(np.random.default_rng(7), n, b, size, scheme)
        fast = sampling.draw(np.random.default_rng(7), n, b, size, scheme, scratch=engine.scratch)
        np.testing.assert_array_equal(plain, fast)
    if 8 * b <= n and b > 1:
        old = _old_rejection(np.random.default_rng(7), n, b, size, np.int32)
        np.testing.assert_array_equal(old, sampling.without_replacement(
            np.random.default_rng(7), n, b, size, scratch=engine.scratch))


def test_batch_means_simulator_matches_fancy_indexing():
    losses = np.random.default_rng(0).exponential(size=20_000)
    for scheme in sampling.SCHEMES:
        for b in (1, 64, 2000):  # a batch of one is its loss; from 8 on, numpy's own mean
            sim = BatchMeans(losses, b, scheme)
            got = sim(np.random.default_rng(b), 512).copy()
            idx = sampling.draw(np.random.default_rng(b), losses.size, b, 512, scheme)
            np.testing.assert_array_equal(got, losses[idx].mean(axis=1))


@pytest.mark.parametrize("b", [2, 3, 5, 7, 8])
def test_short_batches_are_summed_by_columns_to_rounding(b):
    # Below variance.COLUMN_SUM_BELOW the batches are summed column by column over
    # all rows at once: b - 1 additions and a division, as many roundings as
    # numpy's mean of a short row, so within (b + 1) units in the last place
    # of the sum of absolute values. Another code path: compared to rounding.
    rng = np.random.default_rng(b)
    losses = rng.standard_normal(5000) * 10.0 ** rng.integers(-3, 4, 5000)  # both signs, many scales
    for scheme in sampling.SCHEMES:
        got = BatchMeans(losses, b, scheme)(np.random.default_rng(9), 4096).copy()
        idx = sampling.draw(np.random.default_rng(9), losses.size, b, 4096, scheme)
        gathered = losses[idx]
        bound = (b + 1) * np.finfo(float).eps * np.abs(gathered).sum(axis=1) / b
        assert np.all(np.abs(got - gathered.mean(axis=1)) <= bound)
        exact = np.array([float(sum(map(Fraction, row)) / b) for row in gathered[:200].tolist()])
        assert np.all(np.abs(got[:200] - exact) <= bound[:200])


@pytest.mark.parametrize("size", [1, 2, 17, 65536])
def test_block_moments_with_work_equal_moments_of(size):
    x = np.random.default_rng(size).pareto(2.5, size)
    want = Moments.of(x)
    d = x - float(x.mean())
    d2 = d * d
    assert (want.mean, want.m2, want.m3, want.m4) == (float(x.mean()), float(d2.sum()),
                                                      float((d2 * d).sum()), float((d2 * d2).sum()))
    assert block_moments(x, np.empty((3, size + 5))) == (want.mean, want.m2, want.m3, want.m4)


def test_kept_means_survive_scratch_reuse_and_match_the_table():
    losses = np.random.default_rng(1).exponential(size=5000)
    res = lossvar.loss_variance(losses, [1, 8, 100], replicates=3000, rng=2, keep_means=True,
                                chunk_size=64)
    for b, means in res.means.items():
        row = res.table.set_index("batch_size").loc[b]
        assert means.size == 3000
        assert Moments.of(means).variance == pytest.approx(row.variance, rel=1e-12)
        assert len(np.unique(means[:64])) > 1  # not one reused buffer repeated


def test_serial_workers_and_chunking_stay_bit_identical():
    losses = np.random.default_rng(3).exponential(size=30_000)
    kw = dict(replicates=20_000, rng=4)
    base = lossvar.loss_variance(losses, [1, 16, 500], **kw).table
    for other in (dict(chunk_size=1000), dict(workers=2)):
        pd.testing.assert_frame_equal(base, lossvar.loss_variance(losses, [1, 16, 500], **kw,
                                                                  **other).table, check_exact=True)


def test_checked_losses_keeps_the_validation_messages():
    with pytest.raises(ValueError, match="must be finite; got 1 NaN or inf value"):
        lossvar.loss_variance([1.0, np.nan, 2.0], [1], replicates=10)
    with pytest.raises(ValueError, match="1-D"):
        lossvar.loss_variance(np.ones((3, 3)), [1], replicates=10)
    with pytest.raises(ValueError, match="non-empty"):
        lossvar.loss_variance([], [1], replicates=10)
    # finite values whose sum overflows are accepted (the moments: tests/test_call_overhead.py);
    # the overflow of the batch means is not hidden
    with pytest.warns(RuntimeWarning, match="overflow"):
        lossvar.loss_variance(np.full(4, 1e308), [1], replicates=10, rng=0)


def test_scratch_is_bounded_per_thread_and_reported(monkeypatch):
    monkeypatch.setattr(engine, "SCRATCH_LIMIT", 1 << 20)
    seen = {}

    def work():
        a = engine.scratch("perf-test-a", (1000,))
        big = engine.scratch("perf-test-big", (1 << 18,))  # 2 MiB: over the cap, not kept
        seen["kept"] = engine.scratch("perf-test-a", 1000).base is a.base
        seen["big_kept"] = big.base is not None  # kept buffers are views of the pool's
        seen["bytes"] = engine.scratch_nbytes()["this_thread_bytes"]
        big[:] = 1.0
        engine.release_scratch()

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen["kept"] and not seen["big_kept"] and seen["bytes"] <= 1 << 20
    info = engine.scratch_nbytes()
    assert set(info) == {"threads", "bytes", "max_thread_bytes", "this_thread_bytes"}
