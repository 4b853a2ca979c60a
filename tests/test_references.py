"""Everything the project says stands in the project: no shipped file names a
document or a docs/ path that is not in the repository."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Files that lossvar writes into a results folder, named in its documentation.
WRITTEN = {"summary.md", "manifest.json"}
#: Build outputs (the documentation site), named where the docs say how to build them.
GENERATED = ("docs/_build",)
#: Placeholders of a path pattern (docs/gallery/NAME, docs/NAME-FIGURE.png): such a
#: reference stands when at least one file matches it.
PLACEHOLDER = re.compile(r"\b(?:NAME|FIGURE)\b")
DOC = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.(?:md|rst|cff|toml))\b")
DOCS_PATH = re.compile(r"(?<![\w/.-])(docs/[\w./-]*[\w-])")


def _shipped() -> list[Path]:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True,
                             check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    keep = (".py", ".md", ".toml", ".cff", ".txt", ".cfg", ".rst")
    return [ROOT / f for f in out if f.endswith(keep) or f.startswith(".ci/")]


def _exists(ref: str, where: Path) -> bool:
    ref = ref.rstrip(".")
    if PLACEHOLDER.search(ref):
        pattern = PLACEHOLDER.sub("*", ref)
        return any(ROOT.glob(pattern)) or any(where.parent.glob(pattern))
    return ((ROOT / ref).exists() or (where.parent / ref).exists() or ref in WRITTEN
            or ref.startswith(GENERATED))


def test_no_file_names_a_missing_file():
    missing = []
    for path in _shipped():
        text = path.read_text(encoding="utf-8", errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            for ref in sorted(set(DOC.findall(line) + DOCS_PATH.findall(line))):
                if not _exists(ref, path):
                    missing.append(f"{path.relative_to(ROOT)}:{n}: {ref}")
    assert not missing, "files named but not in the repository:\n" + "\n".join(missing)
