"""Sphinx configuration of tinydgm's documentation: `python -m sphinx -W --keep-going -b html docs docs/_build/html`.

The pages are MyST markdown; the lecture's pages (`lecture/*.md`) are MyST notebooks, executed on every build
(a failing cell fails the build) and opened as notebooks with jupytext.  Nothing is fetched from a network:
MathJax is served from the build's own `_static/mathjax` (the `sphinx-mathjax-offline` package), and the theme
(furo) uses the reader's system fonts.
"""
import os
import sys

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")   # the pages' kernels inherit it: small matrices, one BLAS thread (no spinning)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_ext"))
sys.path.insert(0, os.path.dirname(HERE))

project = "tinydgm"
author = "the tinydgm developers"
copyright = "2026, the tinydgm developers"

extensions = [
    "myst_nb",                      # MyST markdown and executed notebooks
    "sphinx.ext.autodoc",           # the API reference, from the docstrings
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",       # MathJax 3 copied into the build: no network at reading time
    "tinydgm_docs",                 # docs/_ext: the command-line reference, generated from the parsers
    "tinydgm_api",                  # docs/_ext: the plain-text docstrings, read as such by autodoc
]

source_suffix = {".md": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "README.md"]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

nb_execution_mode = "force"                 # every build runs every notebook page
nb_execution_raise_on_error = True          # a failing cell fails the build
nb_execution_timeout = 600
nb_execution_show_tb = True
nb_merge_streams = True

mathjax_path = "mathjax/tex-chtml.js"       # local (sphinx-mathjax-offline), never a CDN
html_theme = "furo"
html_title = "tinydgm"
html_static_path = ["_static"]
html_css_files = ["tinydgm.css"]

smartquotes = False                         # `--epochs` stays two hyphens, not a dash
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_typehints = "none"
suppress_warnings = ["mystnb.unknown_mime_type"]
