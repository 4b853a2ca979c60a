"""lossvar.engine: same bits serially, on processes and on dask; checkpoints; precision targets;
progress. The run options themselves: tests/test_engine_execution.py."""

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lossvar
from lossvar import Execution, engine
from lossvar.stats import plan_replicates

sys.path.insert(0, str(Path(__file__).parent))
from bars import bars, full_bars  # noqa: E402

pytestmark = pytest.mark.reproducibility  # bit-identity across workers, executors, chunks, resume

LOSSES = np.random.default_rng(99).exponential(size=5000)
KW = dict(batch_sizes=[1, 7, 64, 1000, "full"], replicates=30_000, rng=2024)


def _lv(losses=LOSSES, chunk_size=2000, keep_means=False, **how):
    """loss_variance of KW in chunks of ``chunk_size``, run as ``how`` says."""
    call = {k: how.pop(k) for k in list(how) if k in KW}
    return lossvar.loss_variance(losses, **{**KW, **call}, keep_means=keep_means,
                                 execution=Execution(chunk_size=chunk_size, **how))


@pytest.fixture(scope="module")
def serial():
    return _lv(keep_means=True)


def _same(a, b):
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)


def test_process_pool_bit_identical(serial):
    _same(serial, _lv(keep_means=True, workers=2))
    _same(serial, _lv(chunk_size=None, workers=-1))


def test_any_executor_and_completion_order_bit_identical(serial):
    # Threads finish chunks in whatever order the scheduler likes; the merge
    # is in block order regardless.
    with ThreadPoolExecutor(4) as ex:
        other = _lv(chunk_size=512, executor=ex, keep_means=True)
    _same(serial, other)
    for b in serial.means:
        np.testing.assert_array_equal(serial.means[b], other.means[b])


def test_dask_local_cluster_bit_identical(serial):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        other = _lv(executor=client.get_executor())
        pop = lossvar.GaussianLinearPopulation(np.array([1.0, 2.0]), noise_std=0.5)
        kw = dict(replicates=5000, rng=1)
        fresh_dask = lossvar.variance_study(pop.problem, pop, np.zeros(2), [1, 16], **kw,
                                            execution=Execution(executor=client.get_executor(),
                                                                chunk_size=1000))
        sgd_dask = _sgd(executor=client.get_executor())
    _same(serial, other)
    _same(lossvar.variance_study(pop.problem, pop, np.zeros(2), [1, 16], **kw,
                                 execution=Execution(chunk_size=1000)), fresh_dask)
    _same(_sgd(), sgd_dask)


def _sgd(**how):
    """600 Adam runs on a logistic data set: three blocks of replicates."""
    pop = lossvar.LogisticPopulation(np.array([1.0, -2.0, 0.5]))
    data = pop.sample(300, np.random.default_rng(0))
    opt = lossvar.optim.adam(0.05)
    return lossvar.run_sgd(pop.problem, data, opt, steps=40, batch_size=8, replicates=600,
                           rng=4, record=[0, 10, 40], execution=Execution(**how))


def test_run_sgd_bit_identical_across_workers_and_resumable(tmp_path):
    base = _sgd()
    _same(base, _sgd(workers=2))
    ck = tmp_path / "ck"
    _same(base, _sgd(checkpoint=ck))
    files = sorted(ck.glob("chunk-*.npz"))
    assert len(files) == 3
    files[1].unlink()
    _same(base, _sgd(checkpoint=ck))


def test_population_study_bit_identical_across_workers():
    pop = lossvar.GaussianLinearPopulation(np.array([1.0, -1.0, 0.5]))
    kw = dict(replicates=20_000, rng=3)
    a = lossvar.variance_study(pop.problem, pop, np.zeros(3), [1, 5, 50], **kw,
                               execution=Execution(chunk_size=3000))
    b = lossvar.variance_study(pop.problem, pop, np.zeros(3), [1, 5, 50], **kw,
                               execution=Execution(chunk_size=3000, workers=2))
    _same(a, b)


class _Boom:
    """Fails on block 3."""

    def __call__(self, rng, size):
        if size == 7:
            raise FloatingPointError("boom")
        return rng.random(size)


def test_worker_error_names_condition_and_chunk():
    cond = engine.Condition((5,), 10 * 16 + 7, 16, _Boom(), label="batch_size=5")
    # the last block has 7 replicates and raises
    for workers in (1, 2):
        with pytest.raises(engine.ChunkError, match=r"batch_size=5 failed in chunk 10 .*boom"):
            engine.simulate([cond], np.random.SeedSequence(0),
                            execution=Execution(chunk_size=16, workers=workers))


def test_checkpoint_resume_identical_and_refuses_other_parameters(tmp_path, serial):
    ck = tmp_path / "ck"
    first = _lv(checkpoint=ck)
    _same(serial, first)
    files = sorted(ck.glob("chunk-*.npz"))
    assert len(files) > 10
    # Remove some chunks (as if killed), corrupt one: both are recomputed.
    for f in files[::3]:
        f.unlink()
    victim = files[1]
    raw = bytearray(victim.read_bytes())
    raw[-20] ^= 0xFF
    victim.write_bytes(bytes(raw))
    with pytest.warns(RuntimeWarning, match=f"{victim.name} is corrupted"):
        again = _lv(checkpoint=ck)
    _same(serial, again)
    with pytest.raises(engine.CheckpointMismatch, match="seed: checkpoint has"):
        _lv(rng=7, checkpoint=ck)
    with pytest.raises(engine.CheckpointMismatch, match="batch_sizes"):
        _lv(batch_sizes=[2], checkpoint=ck)
    with pytest.raises(engine.CheckpointMismatch, match="chunk_size"):
        _lv(chunk_size=4000, checkpoint=ck)
    with pytest.raises(engine.CheckpointMismatch, match="data"):
        _lv(LOSSES[:-1], checkpoint=ck)


_KILL_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import lossvar
    losses = np.random.default_rng(5).exponential(size=20_000)
    how = lossvar.Execution(chunk_size=1024, checkpoint=sys.argv[1])
    res = lossvar.loss_variance(losses, [1, 200, 1000], replicates=100_000, rng=11, execution=how)
    res.table.to_csv(sys.argv[2], index=False, float_format="%.17g")
""")


def test_sigkill_then_resume_loses_and_duplicates_nothing(tmp_path):
    ck, out = tmp_path / "ck", tmp_path / "out.csv"
    script = tmp_path / "job.py"
    script.write_text(_KILL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(ck), str(out)])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(ck.glob("chunk-*.npz"))) < 8:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(ck.glob("chunk-*.npz")))
    assert not out.exists() and done >= 8, "the job must be killed part-way"
    losses = np.random.default_rng(5).exponential(size=20_000)
    kw = dict(replicates=100_000, rng=11)
    resumed = lossvar.loss_variance(losses, [1, 200, 1000], **kw,
                                    execution=Execution(chunk_size=1024, checkpoint=ck))
    whole = lossvar.loss_variance(losses, [1, 200, 1000], **kw, execution=Execution(chunk_size=1024))
    _same(whole, resumed)
    assert (resumed.table.replicates == 100_000).all()


def test_target_rel_se_met_and_worker_independent():
    kw = dict(batch_sizes=[1, 16, 256, "full"], replicates=2_000_000, rng=5, target_rel_se=0.02)
    a = lossvar.loss_variance(LOSSES, **kw, execution=Execution(chunk_size=1024))
    b = lossvar.loss_variance(LOSSES, **kw, execution=Execution(chunk_size=1024, workers=2))
    _same(a, b)
    t = a.table
    assert t.target_met.all()
    pos = t[t.variance > 0]
    assert (pos.variance_se / pos.variance <= 0.02).all()
    assert (pos.replicates < 2_000_000).all() and (pos.replicates >= 1000).all()
    capped = lossvar.loss_variance(LOSSES, [1], replicates=3000, rng=5, target_rel_se=0.001)
    assert not capped.table.target_met.iloc[0] and capped.table.replicates.iloc[0] == 3000


def test_plan_replicates_exact_for_normal_kurtosis_and_achieves_target():
    plan = plan_replicates(pd.DataFrame({"batch_size": [1], "kurtosis": [3.0]}), 0.01)
    assert plan.replicates.iloc[0] == 20_001  # 1 + 2 / t^2 under normality
    pilot = lossvar.loss_variance(LOSSES, [1, 32], replicates=20_000, rng=1)
    plan = plan_replicates(pilot, 0.02)
    for b, r in zip(plan.batch_size, plan.replicates, strict=True):
        row = lossvar.loss_variance(LOSSES, [int(b)], replicates=int(r), rng=2).table.iloc[0]
        # The plan rests on a pilot kurtosis; the achieved relative error is
        # within 15% of the target (the kurtosis of exponential means is
        # estimated to a few percent at 20k replicates).
        assert abs(row.variance_se / row.variance / 0.02 - 1) < 0.15


def test_progress_bar_on_request(capsys):
    lossvar.loss_variance(LOSSES, [1, 8], replicates=5000, rng=0,
                          execution=Execution(progress=True, chunk_size=1000))
    drawn = bars(capsys.readouterr().err)
    assert len(drawn) == 1 and drawn[0].startswith("lossvar: 100%|"), drawn
    lossvar.loss_variance(LOSSES, [1, 8], replicates=5000, rng=0)
    assert capsys.readouterr().err == ""


def test_phase_is_one_labelled_bar_over_its_calls():
    out = io.StringIO()
    with engine.phase("three calls", total=3, file=out) as ph:
        for rng in range(3):  # the calls' own progress=True gives way to the phase's bar
            lossvar.loss_variance(LOSSES, [1, 8], replicates=5000, rng=rng,
                                  execution=Execution(chunk_size=1000, progress=True))
    assert ph.n == ph.total == 3
    assert full_bars(out.getvalue()) == ["three calls"]
    with engine.phase("off", total=1, enabled=False, file=out) as ph:
        lossvar.loss_variance(LOSSES, [1], replicates=5000, rng=0, execution=Execution(progress=True))
    assert len(bars(out.getvalue())) == 1 and ph.n == ph.total == 1


class _Normal:
    """Standard normal replicates; records the phase's (n, total) as each block starts."""

    def __init__(self, seen):
        self.seen = seen

    def __call__(self, rng, size):
        ph = self.seen[0]
        self.seen.append((ph.n, ph.total))
        return rng.standard_normal(size)


def test_progress_drops_the_work_a_precision_target_skips():
    # Three conditions capped at 10^6 replicates (977 blocks of 1024, chunks of 64 blocks),
    # each meeting a relative SE of 0.05 at its first judged block (normal values need
    # about 2 / 0.05^2 = 800 replicates; MIN_REPLICATES_FOR_TARGET is 1000). The bar starts
    # planning all 3 * 977 blocks; once the first condition has stopped, the others are
    # planned at the replicates it needed, so the total drops to the work actually done.
    seen: list = []
    conditions = [engine.Condition((k,), 10**6, 1024, _Normal(seen)) for k in range(3)]
    with engine.phase("target", enabled=False) as ph:
        seen.append(ph)
        quiet = engine.simulate(conditions, np.random.SeedSequence(1), target_rel_se=0.05)
    assert all(o.target_met and o.moments.count == 1024 for o in quiet)
    blocks = len(seen) - 1  # whole chunks run (the first of each, and any run ahead)
    assert blocks % 64 == 0 and blocks <= 3 * 2 * 64
    assert seen[1] == (0.0, 1.0)
    assert ph.n == pytest.approx(blocks * 1024 / (3 * 10**6)) and ph.n == ph.total
    first_stop = [i for i, (n, _) in enumerate(seen[1:], 1) if n > 0][0]  # after the first collect
    assert all(total <= ph.total * (1 + 1e-12) for _, total in seen[first_stop:])
    # progress only observes: the same call without it gives the same numbers
    plain = engine.simulate(conditions, np.random.SeedSequence(1), target_rel_se=0.05)
    assert [o.moments for o in plain] == [o.moments for o in quiet]


def test_phase_parts_weigh_their_calls():
    call = dict(batch_sizes=[1, 8], replicates=2000, rng=0)
    with engine.phase("parts", total=7, enabled=False) as ph:
        with ph.part(3):
            lossvar.loss_variance(LOSSES, **call)
        after_first = ph.n
        with ph.part(2, calls=None):  # calls not known beforehand: all of it counted at the end
            lossvar.loss_variance(LOSSES, **call)
            lossvar.loss_variance(LOSSES, **call)
        with ph.part(2, calls=2):  # one of the two announced calls made: the other's share dropped
            lossvar.loss_variance(LOSSES, **call)
    assert after_first == pytest.approx(3)
    assert ph.total == pytest.approx(6) and ph.n == ph.total


def test_bad_target_rel_se():
    with pytest.raises(ValueError, match=r"`target_rel_se` must be .* in \(0.0, 1.0\); got 0"):
        lossvar.loss_variance(LOSSES, [1], replicates=10, target_rel_se=0)


def test_shared_payload_unpickles_to_aligned_private_arrays():
    # dask hands a worker arrays that view its message frames, at any byte
    # offset; the payload must replace them with aligned copies on arrival.
    raw = bytearray(8 * 100 + 1)
    misaligned = np.frombuffer(raw, dtype=np.float64, offset=1)
    assert not misaligned.flags.aligned
    shared = engine.Shipment.__new__(engine.Shipment)
    shared.__setstate__(([{"losses": misaligned}], np.random.SeedSequence(1)))
    arrived = shared.conditions[0]["losses"]
    assert arrived.flags.aligned and arrived.flags.owndata
    np.testing.assert_array_equal(arrived, misaligned)
