"""docs/recipes/jax_noise_scale.py runs as shown, when JAX is installed (it is optional).

The two-batch estimate of tr(Sigma) averages 400 independent batch pairs, so it is close to
normal: it is within 4.5 standard errors of the exact value but with probability
2 (1 - Phi(4.5)) = 6.8e-6 for a fresh seed (the seed is fixed). The recipe itself asserts that
its per-example gradients equal lossvar.MLP's on the same weights.
"""

import runpy
from pathlib import Path

import pytest

pytest.importorskip("jax", reason="JAX is optional: the JAX recipe runs only where it is installed")
pytest.importorskip("sklearn")

RECIPE = Path(__file__).resolve().parent.parent / "docs" / "recipes" / "jax_noise_scale.py"


def test_jax_recipe_estimate_agrees_with_its_exact_values(capsys):
    ns = runpy.run_path(str(RECIPE), run_name="__main__")
    assert "two-batch estimate" in capsys.readouterr().out
    exact, est = ns["exact"], ns["est"]
    assert est.n_pairs == 400 and est.sampling == "without_replacement"
    assert abs(est.trace_cov - exact.trace_cov) <= 4.5 * est.trace_cov_se
