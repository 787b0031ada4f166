"""Sphinx configuration of fastsoftmax's documentation (built by .ci/docs).

The API reference is generated from the docstrings of the *installed* package (autodoc
imports ``fastsoftmax``; the source tree has no compiled extension), so install
fastsoftmax first, then ``pip install -r docs/requirements.txt`` and
``sphinx-build -W --keep-going -n docs <output dir>``.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import fastsoftmax
from sphinx.util import logging

# numpydoc reports a docstring it cannot parse (an unknown section, say) with a Python
# warning, which sphinx-build -W does not see: make it an error.
warnings.filterwarnings("error", category=UserWarning, module=r"numpydoc(\..*)?$")

project = "fastsoftmax"
author = "fastsoftmax developers"
copyright = "fastsoftmax developers, MIT licensed"
release = fastsoftmax.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
templates_path: list[str] = []

# Every warning fails the build (sphinx-build -W -n). Cross-references are checked
# (nitpicky); those into other projects' documentation cannot be (no intersphinx: the
# build must not need the network) and stay plain text.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|numpy|scipy|dask|jax|ml_dtypes|multiprocessing|os)(\..*)?"),
]

# Markdown pages (MyST): anchors for their headings, so that pages can link to sections.
myst_heading_anchors = 3

# The API reference: signatures without type hints (the numpydoc sections give the
# types), members listed explicitly on each page.
autodoc_typehints = "none"
autosummary_generate = False
numpydoc_show_class_members = False
# Every documented function and class has a docstring with an Examples section
# (they run as doctests in .ci/docs).
numpydoc_validation_checks = {"EX01", "GL08"}

html_theme = "pydata_sphinx_theme"
html_title = f"fastsoftmax {release}"
html_theme_options = {"show_toc_level": 2}
# (the pages without sub-pages: no navigation sidebar)
html_sidebars = {"index": [], "installation": [], "benchmarks": [], "changelog": []}
html_copy_source = False

# ---------------------------------------------------------------------------------------
# The API reference covers the whole public API: every name of fastsoftmax.__all__,
# fastsoftmax.torch.__all__ and fastsoftmax.dask.__all__ must be documented somewhere.

_PUBLIC_MODULES = ("fastsoftmax", "fastsoftmax.torch", "fastsoftmax.dask")


def _check_api_coverage(app: Any, env: Any) -> None:
    logger = logging.getLogger(__name__)
    documented = set(env.get_domain("py").objects)
    for module_name in _PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if f"{module_name}.{name}" not in documented:
                logger.warning(
                    "%s.%s is public (in __all__) but not in the API reference (docs/api/)",
                    module_name,
                    name,
                )


def setup(app: Any) -> dict[str, Any]:
    app.connect("env-check-consistency", _check_api_coverage)
    return {"parallel_read_safe": True}
