"""The version and source revision recorded when lossvar was built.

setuptools-scm writes ``_version.py`` at build time from git (see
pyproject.toml). Without it (a source tree on ``sys.path`` that was never
built) the version is ``0+unknown`` and no revision is known.
"""

version: str
node: str | None
dirty: bool | None
try:
    from ._version import dirty, node, version
except ImportError:  # never built: a bare source tree
    version, node, dirty = "0+unknown", None, None

#: The commit the package was built from (short hash), or None.
commit = node[1:] if isinstance(node, str) and node.startswith("g") else node
__all__ = ["commit", "dirty", "version"]
