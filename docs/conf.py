"""Sphinx configuration: numpydoc API pages, sphinx-gallery for the examples.

The gallery renders ``examples/geophysics/<name>/<name>.py``. By default the examples are
run in their ``--quick`` mode (``python -m sphinx -b html docs docs/_build/html``); the test
suite builds with ``-D plot_gallery=0``, which renders the code without running it.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # gallery_argv

project = "sensitivity"
author = "the sensitivity developers"
copyright = "2026, the sensitivity developers"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# no intersphinx: the build must not need the network
html_theme = "alabaster"
exclude_patterns = ["_build", "_generated", "auto_examples/**/*.ipynb"]
nitpicky = False

# figures of the benchmark page, from the saved benchmark output
import benchmark_plots  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
benchmark_plots.make(os.path.join(_HERE, "..", "benchmarks", "results"),
                     os.path.join(_HERE, "_generated"))  # fmt: skip

# the examples' main scripts; their helper modules (analytic solutions, data readers) are
# shown through the scripts, not as examples of their own
EXAMPLES = ("pumping_test", "fwi_camembert", "magnetotelluric_1d", "rate_and_state")


sphinx_gallery_conf = {
    "examples_dirs": ["../examples/geophysics"],
    "gallery_dirs": ["auto_examples"],
    # every main script is run (when plot_gallery is on), helper modules are not rendered
    "filename_pattern": r".*",
    "ignore_pattern": r"^(?!(" + "|".join(EXAMPLES) + r")\.py$)",
    "reset_argv": "gallery_argv.quick",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "plot_gallery": "True",
}
