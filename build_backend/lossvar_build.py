"""The build backend of lossvar: setuptools, plus a record of the git commit.

The version is static (``lossvar/_build_revision.py``, read by setuptools
without importing the package; see pyproject.toml). What git knows is only
recorded beside it: before setuptools builds a wheel, an editable install or
an sdist, this writes ``lossvar/_version.py`` (not in git) with the commit of
the checkout being built and whether its tree was dirty, so that a package
installed from a git checkout names its source in every manifest
(``lossvar.results.environment()["git"]``).

A tree without git (an unpacked sdist, a copy) keeps the record it came
with, or has none: the version is the same either way.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403  (every hook not wrapped below)

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "lossvar" / "_version.py"


def _git(*args: str) -> str:
    return subprocess.run(["git", "--no-optional-locks", "-C", str(ROOT), *args], capture_output=True,
                          text=True, timeout=30, check=True).stdout.strip()


def _revision() -> tuple[str, bool] | None:
    """(commit, dirty) of the checkout at ROOT, or None when ROOT is not the top of one
    (no git, no .git here, or a tree that merely lies inside another repository)."""
    if not (ROOT / ".git").exists():
        return None
    try:
        if Path(_git("rev-parse", "--show-toplevel")).resolve() != ROOT:
            return None
        return _git("rev-parse", "HEAD"), bool(_git("status", "--porcelain"))
    except (OSError, subprocess.SubprocessError):
        return None


def record_revision() -> None:
    """Write ``lossvar/_version.py`` from git; leave it as it is where git cannot say."""
    found = _revision()
    if found is None:
        return
    commit, dirty = found
    RECORD.write_text("# Written by build_backend/lossvar_build.py when lossvar is built from a git\n"
                      "# checkout: the commit built, beside the static version. Not in git.\n"
                      f"commit = {commit!r}\ndirty = {dirty!r}\n", encoding="utf-8")


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    record_revision()
    return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    record_revision()
    return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory, config_settings=None):
    record_revision()
    return _setuptools.build_sdist(sdist_directory, config_settings)
