"""One version: the command line, the package, the manifest, the docs, CITATION.cff and the
package metadata a build writes all show the same release version; the git commit is
recorded beside it, never inside it.
"""

import ast
import contextlib
import io
import re
import runpy
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import lossvar
from lossvar import cli, results

ROOT = Path(__file__).resolve().parents[1]
#: A release version: MAJOR.MINOR.PATCH, no development or local part (no commit inside).
RELEASE = re.compile(r"\d+\.\d+\.\d+")


def _cli_version() -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    return out.getvalue().strip()


def _citation_version() -> str:
    found = re.findall(r"^version:\s*\"?([^\"\s]+)\"?\s*$", (ROOT / "CITATION.cff").read_text(),
                       flags=re.M)
    assert len(found) == 1, "CITATION.cff has one top-level version"
    return found[0]


def test_every_place_shows_the_same_release_version():
    v = lossvar.__version__
    assert RELEASE.fullmatch(v), f"{v!r} is not a release version MAJOR.MINOR.PATCH"
    assert _cli_version() == f"lossvar {v}"
    assert results.environment()["versions"]["lossvar"] == v
    conf = runpy.run_path(str(ROOT / "docs" / "conf.py"))
    assert conf["release"] == v and conf["version"] == v and v in conf["html_title"]
    assert _citation_version() == v


def test_the_build_reads_the_version_from_the_one_place():
    # setuptools takes the metadata version from a literal assignment in the package's
    # source (pyproject.toml, [tool.setuptools.dynamic]), read without importing it:
    # that literal is lossvar.__version__, and pyproject.toml holds no second copy.
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli",
                                  reason="reads pyproject.toml")
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["dynamic"] == ["version"] and "version" not in meta["project"]
    module, _, name = meta["tool"]["setuptools"]["dynamic"]["version"]["attr"].rpartition(".")
    source = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    literals = [ast.literal_eval(node.value) for node in source.body if isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)]
    assert literals == [lossvar.__version__]


def test_the_commit_is_beside_the_version():
    git = results.environment()["git"]
    assert set(git) == {"commit", "dirty", "source"}
    if git["commit"]:
        assert git["commit"][:7] not in lossvar.__version__
    if (ROOT / ".git").exists():
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        assert git == {"commit": head, "dirty": git["dirty"], "source": "live git checkout"}


# -- what a build of a fresh tree records ----------------------------------------------


def _copy_tree(dest: Path) -> Path:
    """The files of this checkout that git would carry (tracked or untracked, not ignored)."""
    listing = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], capture_output=True, check=True).stdout
    for name in filter(None, listing.decode().split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest / name)
    return dest


def _git(tree: Path, *args: str) -> str:
    cfg = ["-c", "user.name=lossvar tests", "-c", "user.email=tests@lossvar.invalid",
           "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]
    return subprocess.run(["git", *cfg, "-C", str(tree), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def _build(tree: Path, hook: str, out: Path) -> Path:
    """Run one hook of the project's build backend in ``tree`` (what pip runs, without pip).

    In a subprocess: setuptools changes global state, and the backend is the tree's own.
    """
    out.mkdir(parents=True, exist_ok=True)
    code = ("import sys; sys.path.insert(0, 'build_backend'); import lossvar_build; "
            f"print(lossvar_build.{hook}({str(out)!r}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


def _wheel_record(wheel: Path) -> tuple[str, dict | None]:
    """(metadata version, the recorded ``_version.py`` as a dict or None) of a wheel."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        version = re.search(r"^Version: (.+)$", meta, flags=re.M).group(1).strip()
        if "lossvar/_version.py" not in names:
            return version, None
        record: dict = {}
        exec(zf.read("lossvar/_version.py").decode(), record)  # noqa: S102 (our own build's file)
        return version, {k: record[k] for k in ("commit", "dirty")}


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                    reason="copies this git checkout's files: needs git and a source tree with .git")
def test_a_fresh_tree_builds_as_the_release_with_the_commit_beside_it(tmp_path):
    pytest.importorskip("setuptools", reason="the build backend wraps setuptools")
    v = lossvar.__version__
    # A fresh clone: a checkout without tags; the wheel and the sdist record its commit.
    clone = _copy_tree(tmp_path / "clone")
    _git(clone, "init", "-q")
    _git(clone, "add", "-A")
    _git(clone, "commit", "-q", "-m", "a fresh clone")
    head = _git(clone, "rev-parse", "HEAD")
    wheel = _build(clone, "build_wheel", tmp_path / "wheel")
    assert wheel.name == f"lossvar-{v}-py3-none-any.whl"
    assert _wheel_record(wheel) == (v, {"commit": head, "dirty": False})
    # An sdist built from the clone keeps the record: its wheel, built without git, names
    # the clone's commit too.
    sdist = _build(clone, "build_sdist", tmp_path / "sdist")
    assert sdist.name == f"lossvar-{v}.tar.gz"
    with tarfile.open(sdist) as tar:
        # the "data" filter where Python has it (3.12 warns without one)
        tar.extractall(tmp_path / "unpacked", **({"filter": "data"} if hasattr(tarfile, "data_filter")
                                                 else {}))
    unpacked = tmp_path / "unpacked" / f"lossvar-{v}"
    assert _wheel_record(_build(unpacked, "build_wheel", tmp_path / "from_sdist")) == (
        v, {"commit": head, "dirty": False})
    # A tree without git records nothing and has the same version.
    bare = _copy_tree(tmp_path / "bare")
    assert _wheel_record(_build(bare, "build_wheel", tmp_path / "bare_wheel")) == (v, None)
