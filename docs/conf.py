"""Sphinx configuration: numpydoc API pages, sphinx-gallery for the examples."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "sensitivity"
author = "the sensitivity developers"
copyright = "2026, the sensitivity developers"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
]
autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# no intersphinx: the build must not need the network
html_theme = "alabaster"
exclude_patterns = ["_build"]
nitpicky = False
