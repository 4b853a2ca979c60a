"""lossvar.theory as a whole: it stands on the moments kernel and the input checks alone.

The theory is what the engines are tested against, so it must not depend on
them: no module of lossvar.theory imports the engine, the sampling, the
problems, the statistics or anything else above lossvar.moments (read from
the source, imports inside functions included).
"""

import ast
from pathlib import Path

import pytest

import lossvar

PKG = Path(lossvar.__file__).parent
#: What the theory may import: itself, and the bottom of the package.
ALLOWED = {"theory", "moments", "scratch", "_threads", "_validate", "_result", "typing", "streams"}


def _lossvar_imports(path: Path) -> set:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                out.add("theory")  # a sibling in the subpackage
            elif node.level == 2:
                out.update(node.module.split(".")[:1] if node.module else
                           [alias.name for alias in node.names])
            elif node.module and node.module.split(".")[0] == "lossvar":
                out.add(node.module.split(".")[1] if "." in node.module else "")
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("lossvar."))
    return out


@pytest.mark.parametrize("path", sorted((PKG / "theory").glob("*.py")), ids=lambda p: p.name)
def test_theory_imports_nothing_above_the_moments(path):
    above = _lossvar_imports(path) - ALLOWED
    assert not above, f"lossvar/theory/{path.name} imports {sorted(above)}"
