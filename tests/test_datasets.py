"""scikit-learn's bundled data sets: loading, standardization, natural models."""

import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from lossvar import datasets
from lossvar.data import Dataset
from lossvar.problems import LinearRegression, LogisticRegression, SoftmaxRegression

pytest.importorskip("sklearn")

SHAPES = {  # name: (n, d, task, n_classes)
    "breast_cancer": (569, 30, "classification", 2),
    "diabetes": (442, 10, "regression", None),
    "digits": (1797, 64, "classification", 10),
    "iris": (150, 4, "classification", 3),
    "wine": (178, 13, "classification", 3),
}


@pytest.fixture(scope="module")
def loaded():
    return {name: datasets.load(name) for name in datasets.NAMES}


def test_names():
    assert datasets.NAMES == tuple(SHAPES)


@pytest.mark.parametrize("name", SHAPES)
def test_load_is_standardized_with_the_right_task(loaded, name):
    ds = loaded[name]
    n, d, task, n_classes = SHAPES[name]
    assert isinstance(ds, Dataset)
    assert (ds.n, ds.d, ds.name, ds.task, ds.n_classes) == (n, d, name, task, n_classes)
    # Centering leaves a rounding residue of order eps * max|x| per mean.
    assert_allclose(ds.X.mean(axis=0), 0.0, atol=1e-13)
    sd = ds.X.std(axis=0)
    constant = sd == 0
    assert_allclose(sd[~constant], 1.0, rtol=1e-13)
    assert_array_equal(ds.X[:, constant], 0.0)
    if task == "regression":
        assert_allclose([ds.y.mean(), ds.y.std()], [0.0, 1.0], atol=1e-13)
    else:
        assert ds.y.dtype == np.int64
        assert_array_equal(np.unique(ds.y), np.arange(n_classes))


def test_digits_has_constant_pixels_left_at_zero(loaded):
    assert (loaded["digits"].X.std(axis=0) == 0).any()


def test_load_is_deterministic(loaded):
    assert datasets.load("iris").fingerprint() == loaded["iris"].fingerprint()


def test_unknown_name():
    message = ("The value for `name` must be one of 'breast_cancer', 'diabetes', 'digits', "
               "'iris', 'wine', but 'x' was passed.")
    with pytest.raises(ValueError, match=message):
        datasets.load("x")


def test_missing_scikit_learn(monkeypatch):
    # A None entry in sys.modules makes `import sklearn.datasets` raise ImportError.
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"lossvar.datasets needs scikit-learn: "
                                          r"pip install 'lossvar\[datasets\]'"):
        datasets.load("iris")


@pytest.mark.parametrize("name, kind", [
    ("breast_cancer", LogisticRegression), ("diabetes", LinearRegression),
    ("digits", SoftmaxRegression), ("iris", SoftmaxRegression), ("wine", SoftmaxRegression),
])
def test_problem_for(loaded, name, kind):
    problem = datasets.problem_for(loaded[name])
    assert type(problem) is kind
    assert problem.l2 == datasets.REFERENCE_L2 == 1e-2
    if kind is SoftmaxRegression:
        assert problem.n_classes == SHAPES[name][3]


def test_problem_for_needs_a_task():
    with pytest.raises(ValueError, match="`dataset` must have task 'regression' or"):
        datasets.problem_for(Dataset(np.zeros((2, 1))))


@pytest.mark.parametrize("name", SHAPES)
def test_reference_params_are_the_minimizer(loaded, name):
    ds = loaded[name]
    problem = datasets.problem_for(ds)
    w = datasets.reference_params(ds)
    assert w.shape == (problem.n_params(ds.d),)
    assert np.linalg.norm(problem.mean_grad(w, ds.X, ds.y)) <= 1e-12
    assert_array_equal(datasets.reference_params(ds, problem), w)  # deterministic
