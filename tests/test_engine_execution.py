"""lossvar.Execution: one object for how to run, validated once, taken alike by every entry point."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import lossvar
from lossvar import Execution, engine, optim

LOSSES = np.random.default_rng(0).exponential(size=200)
DATA = lossvar.Dataset(np.random.default_rng(1).normal(size=(60, 2)),
                       np.random.default_rng(2).normal(size=60), task="regression")
PROBLEM = lossvar.LinearRegression()


def _calls():
    """Each entry point, as a function of its ``execution``."""
    yield "loss_variance", lambda how: lossvar.loss_variance(LOSSES, [1, 4], replicates=64, rng=1,
                                                             execution=how)
    yield "variance_study", lambda how: lossvar.variance_study(PROBLEM, DATA, np.zeros(2), [1, 4],
                                                               replicates=64, rng=1, execution=how)
    yield "run_sgd", lambda how: lossvar.run_sgd(PROBLEM, DATA, optim.sgd(0.05), steps=5, batch_size=4,
                                                 replicates=8, rng=1, execution=how)
    yield "gradient_variance", lambda how: lossvar.gradient_variance(PROBLEM, DATA, np.zeros(2), [1, 4],
                                                                     replicates=64, rng=1, execution=how)
    yield "simulate", lambda how: engine.simulate(
        [engine.Condition((0,), 300, 16, _Uniform())], np.random.SeedSequence(1), execution=how)[0]


class _Uniform:
    def __call__(self, rng, size):
        return rng.random(size)


CALLS = dict(_calls())
pytestmark = pytest.mark.filterwarnings("ignore::lossvar.stats.UnreliableIntervalWarning")


def _frame(result):
    if isinstance(result, engine.Output):
        return result.moments
    return result.to_frame()


def _equal(a, b):
    return a == b if isinstance(a, lossvar.moments.Moments) else a.equals(b)


@pytest.mark.parametrize("bad, error, match", [
    (dict(workers=0), ValueError, r"`workers` must be a positive integer or -1 \(all cores\); got 0"),
    (dict(workers=1.5), TypeError, r"`workers` must be an integer >= -1; got 1.5"),
    (dict(chunk_size=0), ValueError, r"`chunk_size` must be an integer >= 1; got 0"),
    (dict(progress="yes"), TypeError, r"`progress` must be True or False; got 'yes'"),
    (dict(executor="pool"), TypeError, r"`executor` must be a concurrent.futures.Executor"),
    (dict(checkpoint=3), TypeError, r"`checkpoint` must be a folder path or None; got 3"),
])
def test_bad_options_are_refused_when_made_naming_the_parameter(bad, error, match):
    with pytest.raises(error, match=match):
        Execution(**bad)


def test_workers_and_executor_together_are_refused():
    with ThreadPoolExecutor(2) as ex, pytest.raises(ValueError, match=r"give `workers` or `executor`, "
                                                                      r"not both; got workers=2"):
        Execution(workers=2, executor=ex)


def test_in_process_only_with_one_worker_and_no_executor():
    assert Execution().in_process and Execution(workers=1, chunk_size=10).in_process
    assert not Execution(workers=2).in_process
    with ThreadPoolExecutor(1) as ex:
        assert not Execution(executor=ex).in_process


@pytest.mark.parametrize("name", CALLS)
def test_anything_but_an_execution_is_refused_by_every_entry_point(name):
    match = r"`execution` must be a lossvar.Execution or None; got \{'workers': 2\}"
    with pytest.raises(TypeError, match=match):
        CALLS[name]({"workers": 2})


@pytest.mark.reproducibility
@pytest.mark.parametrize("name", CALLS)
def test_every_execution_gives_the_same_bits(name, tmp_path):
    plain = _frame(CALLS[name](None))
    assert _equal(_frame(CALLS[name](Execution())), plain)
    how = Execution(workers=2, chunk_size=16, checkpoint=str(tmp_path / "ckpt"))
    assert _equal(_frame(CALLS[name](how)), plain)
    assert _equal(_frame(CALLS[name](how)), plain)  # resumed from the checkpoint
    with ThreadPoolExecutor(2) as ex:
        assert _equal(_frame(CALLS[name](Execution(executor=ex, chunk_size=32))), plain)
