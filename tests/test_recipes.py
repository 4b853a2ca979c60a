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
