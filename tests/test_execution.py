"""One object for how to run: every Monte Carlo entry point treats every option the same way."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import lossvar
from lossvar import optim

LOSSES = np.random.default_rng(0).exponential(size=200)
DATA = lossvar.Dataset(np.random.default_rng(1).normal(size=(60, 2)),
                       np.random.default_rng(2).normal(size=60), task="regression")
PROBLEM = lossvar.LinearRegression()


def _calls():
    """Each entry point, as a function of its run options."""
    yield "loss_variance", lambda **kw: lossvar.loss_variance(LOSSES, [1, 4], replicates=64, rng=1, **kw)
    yield "variance_study", lambda **kw: lossvar.variance_study(PROBLEM, DATA, np.zeros(2), [1, 4],
                                                                replicates=64, rng=1, **kw)
    yield "run_sgd", lambda **kw: lossvar.run_sgd(PROBLEM, DATA, optim.sgd(0.05), steps=5, batch_size=4,
                                                  replicates=8, rng=1, **kw)
    yield "gradient_variance", lambda **kw: lossvar.gradient_variance(PROBLEM, DATA, np.zeros(2), [1, 4],
                                                                      replicates=64, rng=1, **kw)


CALLS = dict(_calls())
pytestmark = pytest.mark.filterwarnings("ignore::lossvar.stats.UnreliableIntervalWarning")


def _frame(result):
    return result.table if hasattr(result, "table") else result.summary


@pytest.mark.parametrize("name", CALLS)
def test_workers_and_executor_together_are_refused_the_same_way(name):
    with ThreadPoolExecutor(2) as ex, pytest.raises(ValueError, match=r"give `workers` or `executor`, "
                                                                      r"not both; got workers=2"):
        CALLS[name](workers=2, executor=ex)


@pytest.mark.parametrize("name", CALLS)
@pytest.mark.parametrize("bad, match", [(dict(workers=0), "`workers` must be"),
                                        (dict(chunk_size=0), "`chunk_size` must be an integer"),
                                        (dict(progress="yes"), "`progress` must be True or False"),
                                        (dict(executor="pool"), "`executor` must be a concurrent")])
def test_bad_options_name_the_parameter(name, bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        CALLS[name](**bad)


@pytest.mark.reproducibility
@pytest.mark.parametrize("name", CALLS)
def test_execution_object_equals_keywords_and_gives_the_same_bits(name, tmp_path):
    plain = _frame(CALLS[name]())
    how = lossvar.Execution(workers=2, chunk_size=16, checkpoint=str(tmp_path / "ckpt"))
    assert _frame(CALLS[name](execution=how)).equals(plain)
    with ThreadPoolExecutor(2) as ex:
        assert _frame(CALLS[name](execution=lossvar.Execution(executor=ex))).equals(plain)
    with pytest.raises(ValueError, match="give `execution` or the keywords `workers`, not both"):
        CALLS[name](execution=how, workers=2)
