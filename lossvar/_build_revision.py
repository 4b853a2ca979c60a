"""The version of lossvar, and the source revision recorded when it was built.

``version`` below is the one place the release version is written: setuptools
reads it for the package metadata (pyproject.toml), and ``lossvar --version``,
``lossvar.__version__``, every manifest and the documentation show it.

The git commit is kept beside the version, never inside it: the build backend
(``build_backend/lossvar_build.py``) writes ``_version.py`` with the commit
and the dirty flag of the checkout it builds. Without that file (a tree
without git, or never built) no revision is recorded here; a live checkout is
asked directly (:func:`lossvar.results.environment`).
"""

import importlib

version = "0.3.0"


def _recorded() -> tuple[str | None, bool | None]:
    """(commit, dirty) from ``_version.py``, or (None, None) where the build recorded none."""
    try:
        record = importlib.import_module(f"{__package__}._version")
    except ImportError:  # a tree without git, never built here
        return None, None
    commit = getattr(record, "commit", None)
    # A record written by an older build (a version string, no commit) records nothing.
    return (None, None) if commit is None else (commit, getattr(record, "dirty", None))


#: The commit the package was built from (full hash), or None; and whether its tree was dirty.
commit, dirty = _recorded()

__all__ = ["commit", "dirty", "version"]
