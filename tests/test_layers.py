"""The package's layers: data flows one way, and a module never imports a higher one.

problems -> data -> sampling -> engine -> statistics and theory -> the Monte Carlo
entry points -> results -> plots -> the command line, the studies and the package face.
The graph is read from the source (every import, including those inside functions).
"""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "lossvar"

#: Lowest first; a module may import its own layer or lower ones.
LAYERS = [
    {"_version", "_build_revision", "_result", "streams", "typing", "scratch", "moments", "_validate",
     "_threads"},
    {"problems"},
    {"data", "datasets"},
    {"sampling"},
    {"engine"},
    {"stats", "theory", "schedules", "optim"},
    {"variance", "sgd", "rates", "critical", "noise", "torch"},
    {"results"},
    {"plots"},
    {"", "cli", "__main__", "studies"},
]


def _name(path: Path) -> str:
    parts = path.relative_to(PKG).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__")


def _layer(module: str) -> int:
    top = module.split(".")[0]
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i
    raise AssertionError(f"lossvar.{module} is in no layer of tests/test_layers.py: add it")


def _imports(path: Path) -> set:
    """The lossvar modules (and private names) a module imports."""
    here = _name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = set()
    modules = {}  # local name -> imported lossvar module, to see ``module._private`` uses
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1] if node.level > 1 else package
                target = ".".join([*base, node.module] if node.module else base)
            elif node.module and node.module.split(".")[0] == "lossvar":
                target = node.module[len("lossvar."):] if "." in node.module else ""
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}".strip(".")
                if (PKG / sub.replace(".", "/")).with_suffix(".py").exists() or (
                        PKG / sub.replace(".", "/")).is_dir():
                    out.add((sub, None))
                    modules[alias.asname or alias.name] = sub
                else:
                    out.add((target, alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "lossvar":
                    out.add((alias.name[len("lossvar."):] if "." in alias.name else "", None))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in modules):
            out.add((modules[node.value.id], node.attr))
    return out


MODULES = {_name(p): _imports(p) for p in sorted(PKG.rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_runs_back_up(module):
    mine = _layer(module)
    upward = sorted(t for t, _ in MODULES[module] if t != module and _layer(t) > mine)
    assert not upward, f"lossvar.{module} (layer {mine}) imports higher layers: {upward}"


def test_no_circles():
    graph = {m: {t for t, _ in deps if t in MODULES and t != m} for m, deps in MODULES.items()}
    state = {}

    def visit(m, stack):
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                raise AssertionError("import circle: " + " -> ".join([*stack[stack.index(t):], t]))
            if t not in state:
                visit(t, [*stack, t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_no_private_names_across_modules():
    # Private helpers (leading underscore) stay in their module; the private
    # modules below are the package's own plumbing, shared on purpose.
    shared = {"_validate", "_threads", "_build_revision", "_version"}
    leaks = sorted(f"{m} uses {t}.{n}" for m, deps in MODULES.items() for t, n in deps
                   if n and n.startswith("_") and not n.endswith("__") and t != m and t not in shared)
    assert not leaks, "\n".join(leaks)


def _outside_uses(path: Path) -> set:
    """``module.name`` pairs of lossvar that a test, benchmark or script imports or reads."""
    out, modules = set(), {}
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module \
                and node.module.split(".")[0] == "lossvar":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if (PKG.parent / sub.replace(".", "/")).with_suffix(".py").exists() or (
                        PKG.parent / sub.replace(".", "/")).is_dir():
                    modules[alias.asname or alias.name] = sub
                    out.add((sub, None))
                else:
                    out.add((node.module, alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "lossvar":
                    modules[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in modules:
            out.add((modules[node.value.id], node.attr))
    return out


OUTSIDE = sorted(p for folder in ("tests", "benchmarks", "studies")
                 for p in (PKG.parent / folder).glob("*.py"))


def test_tests_benchmarks_and_scripts_use_only_public_names():
    # They exercise the package as users do: no private module or name of lossvar.
    leaks = sorted(f"{p.parent.name}/{p.name} uses {m}" + (f".{n}" if n else "")
                   for p in OUTSIDE for m, n in _outside_uses(p)
                   if any(part.startswith("_") and not part.endswith("__")
                          for part in [*m.split("."), *([n] if n else [])]))
    assert not leaks, "\n".join(leaks)
