"""Sphinx configuration of the lossvar documentation.

Build (from the top of a checkout, with ``pip install -e ".[docs]"``)::

    python -m sphinx -W --keep-going -b html docs <output folder>

The pages are MyST Markdown; the API reference is generated from the numpydoc
docstrings of the installed package. Everything works offline: no
intersphinx inventories are fetched.
"""

from __future__ import annotations

import importlib.util

import lossvar

# -- Project -----------------------------------------------------------------

project = "lossvar"
author = "The lossvar developers"
copyright = "The lossvar developers"
# The release version, written once in lossvar/_build_revision.py (the git commit
# is recorded beside it, never inside it).
release = lossvar.__version__
version = release

# -- General -----------------------------------------------------------------

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
]

source_suffix = {".md": "markdown"}
root_doc = "index"

# The gallery images (*.png) sit beside the pages in docs/: figures, never
# sources; so are the gallery's study folders (gallery/NAME/: manifests, tables,
# summaries that studies/make_gallery.py checks). The recipe scripts
# (recipes/*.py) are included by the pages with literalinclude, not built as pages.
exclude_patterns = ["_build", "*.png", "**/*.png", "gallery/**", "recipes/*.py"]

nitpicky = False

# -- MyST --------------------------------------------------------------------

# dollarmath: $...$ and $$...$$ (docs/theory.md); amsmath: bare \begin{align}...
myst_enable_extensions = ["dollarmath", "amsmath"]
# Anchors for "## headings", so that pages can link to [x](theory.md#9-...).
myst_heading_anchors = 3

# -- autodoc / autosummary / numpydoc ------------------------------------------

# Every automodule/autoclass of docs/api.md documents its public members (the
# members listed in a module's __all__, or else those defined in the module).
autodoc_default_options = {"members": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the numpydoc "Parameters" sections say the types
autosummary_generate = False  # docs/api.md documents every object itself: no stub files
# lossvar.torch is documented from its source where torch (an optional extra) is absent.
autodoc_mock_imports = [] if importlib.util.find_spec("torch") else ["torch"]

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# -- HTML --------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"lossvar {version}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 7,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "gallery": []}
html_show_sourcelink = False
