"""The public API is typed, and the Problem protocol is all an engine needs of a model.

A problem class written outside lossvar (tests/protocol_problems.py: one that does
LogisticRegression's arithmetic with numpy, one that delegates to it) gives run_sgd,
variance_study and gradient_variance the built-in's bits: the engines use the
protocol and nothing else. (Their speed: benchmarks/bench_protocol.py.)
"""

import inspect
import sys
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.special

import lossvar
from lossvar import optim

sys.path.insert(0, str(Path(__file__).parent))
from protocol_problems import Delegating, NumpyLogistic  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::lossvar.stats.UnreliableIntervalWarning")


def _public_functions():
    for name in lossvar.__all__:
        obj = getattr(lossvar, name)
        if inspect.isfunction(obj):
            yield name, obj


def test_every_public_function_is_annotated():
    missing = []
    for name, fn in _public_functions():
        sig = inspect.signature(fn)
        bare = [p for p, v in sig.parameters.items() if v.annotation is inspect.Parameter.empty]
        if bare or sig.return_annotation is inspect.Signature.empty:
            missing.append(f"{name}: {bare or 'return'}")
    assert not missing, "unannotated: " + "; ".join(missing)


def test_py_typed_marker_ships():
    assert (Path(lossvar.__file__).parent / "py.typed").is_file()


# -- the Problem protocol -------------------------------------------------------------------


def test_the_protocol_names_what_the_builtins_have():
    required = {n for n, v in vars(lossvar.typing.Problem).items()
                if callable(v) and not n.startswith("_")}
    assert required == {"n_params", "check_params", "loss", "grad", "mean_loss", "mean_grad"}
    for problem in (lossvar.LinearRegression(), lossvar.LogisticRegression(),
                    lossvar.SoftmaxRegression(3), lossvar.NoisyQuadratic([1.0, 2.0]),
                    lossvar.MLP((2, 3, 2)), NumpyLogistic(), Delegating(lossvar.LinearRegression())):
        for name in required:
            got = inspect.signature(getattr(problem, name))
            want = inspect.signature(getattr(lossvar.typing.Problem, name))
            assert list(got.parameters)[:len(want.parameters) - 1] == list(want.parameters)[1:], \
                (problem, name)
        assert "out" in inspect.signature(problem.mean_grad).parameters
    assert typing.get_type_hints(lossvar.run_sgd)["problem"] is lossvar.typing.Problem


def _data(n=600, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = (rng.random(n) < scipy.special.expit(X @ np.array([1.0, -0.5, 0.25, 0.0]))).astype(np.int64)
    return lossvar.Dataset(X, y, name="t", task="classification")


def _bits(a):
    a = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
    b = a.view(np.int64).copy()
    b[np.isnan(a)] = 0x7FF8000000000000
    return b


def _assert_same_bits(a, b):
    np.testing.assert_array_equal(_bits(a), _bits(b))


@pytest.mark.reproducibility
@pytest.mark.parametrize("l2", [0.0, 0.05])
def test_a_problem_from_elsewhere_gives_run_sgd_the_builtin_bits(l2):
    data = _data()
    builtin = lossvar.LogisticRegression(l2=l2)
    for sampling in ("with_replacement", "reshuffle", "full"):
        kw = dict(steps=40, batch_size=None if sampling == "full" else 8, replicates=300,
                  sampling=sampling, rng=3, record=[0, 7, 40], w0=np.full(4, 0.1))
        want = lossvar.run_sgd(builtin, data, optim.adam(0.05), **kw)
        wrapped = lossvar.run_sgd(Delegating(builtin), data, optim.adam(0.05), **kw)
        pd.testing.assert_frame_equal(wrapped.table, want.table, check_exact=True)
        _assert_same_bits(wrapped.final_params, want.final_params)
        copied = lossvar.run_sgd(NumpyLogistic(l2), data, optim.adam(0.05), **kw)
        _assert_same_bits(copied.final_params, want.final_params)
        _assert_same_bits(copied.table.loss, want.table.loss)
        assert copied.table.dist2.isna().all()  # no minimize: no w*, no distance
        assert len(copied.diverged) == 0


@pytest.mark.reproducibility
def test_a_problem_from_elsewhere_gives_the_other_engines_the_builtin_bits():
    data = _data(seed=1)
    w = np.array([0.3, -0.2, 0.1, 0.0])
    builtin = lossvar.LogisticRegression(l2=0.01)
    for problem in (NumpyLogistic(0.01), Delegating(builtin)):
        a = lossvar.variance_study(problem, data, w, [1, 8, 64], replicates=2000, rng=4)
        b = lossvar.variance_study(builtin, data, w, [1, 8, 64], replicates=2000, rng=4)
        pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)
        a = lossvar.gradient_variance(problem, data, w, [1, 8, 64], replicates=500, rng=5)
        b = lossvar.gradient_variance(builtin, data, w, [1, 8, 64], replicates=500, rng=5)
        pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)


def test_run_sgd_names_what_a_problem_lacks():
    class Half:
        def n_params(self, d):
            return d

    with pytest.raises(TypeError, match="`problem` must meet lossvar.typing.Problem; got .*"
                                        "without check_params, mean_loss, mean_grad"):
        lossvar.run_sgd(Half(), _data(), optim.sgd(0.1), steps=1, batch_size=1, replicates=1)
