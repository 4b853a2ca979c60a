"""The documentation's executable recipes run as shown (docs/recipes.md)."""

import runpy
from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parent.parent / "docs" / "recipes"


def test_sklearn_recipe_runs(capsys):
    pytest.importorskip("sklearn")
    runpy.run_path(str(RECIPES / "sklearn_losses.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "per-sample log losses" in out and "full" in out


def test_gradient_noise_recipe_runs_and_agrees_with_exact(capsys):
    """The two-batch estimate of tr(Sigma) is within 4.5 standard errors of the exact value.

    The estimate is an average over 2000 independent batch pairs, so it is close to normal:
    a new seed would fail this check with probability 2 (1 - Phi(4.5)) = 6.8e-6. The seed is fixed.
    """
    pytest.importorskip("sklearn")
    ns = runpy.run_path(str(RECIPES / "gradient_noise_numpy.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "B_simple" in out and "two-batch estimate" in out
    exact, est = ns["exact"], ns["est"]
    assert est.n_pairs == 2000 and est.sampling == "without_replacement"
    assert abs(est.trace_cov - exact.trace_cov) <= 4.5 * est.trace_cov_se
