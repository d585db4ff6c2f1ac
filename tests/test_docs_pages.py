"""The lecture's pages are notebooks that show the package's own code: checked without building the site.

Each page listed in docs/lecture/index.md exists, opens as a notebook (jupytext, the `[docs]` extra; that part
is skipped without it) with Python code cells, shows at least one figure, and includes code from the package
with `literalinclude`, each of whose `:pyobject:` names a function or class that the file defines, so that a
renamed function fails here as it would fail the strict build.  (CI builds the site, executing every page.)
"""
import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LECTURE = os.path.join(ROOT, "docs", "lecture")
INCLUDE = re.compile(r"```\{literalinclude\}\s+(\S+)\n((?::\w[\w-]*:[^\n]*\n)*)")


def lecture_pages():
    with open(os.path.join(LECTURE, "index.md"), encoding="utf-8") as f:
        toc = f.read().split("{toctree}", 1)[1].split("```", 1)[0]
    return [line.strip() for line in toc.splitlines() if line.strip() and not line.startswith(":")]


def defined_names(path):
    """Every `name` and `Class.method` that the module at `path` defines at its top level or in its classes."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            if isinstance(node, ast.ClassDef):
                names |= {f"{node.name}.{m.name}" for m in node.body
                          if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    return names


PAGES = lecture_pages()


def test_the_lecture_has_its_ten_pages_in_order():
    assert PAGES == ["loglinear", "em", "wake-sleep", "reweighted-wake-sleep", "elbo", "reparameterisation",
                     "score-function", "iwae", "nvil-vimco", "concrete"]


@pytest.mark.parametrize("page", PAGES)
def test_each_page_shows_the_package_code_it_explains(page):
    with open(os.path.join(LECTURE, page + ".md"), encoding="utf-8") as f:
        text = f.read()
    includes = INCLUDE.findall(text)
    assert includes, f"{page}.md includes no code from the package"
    for target, options in includes:
        path = os.path.normpath(os.path.join(LECTURE, target))
        assert path.startswith(os.path.join(ROOT, "tinydgm") + os.sep), f"{page}.md: {target} is not the package's"
        assert os.path.isfile(path), f"{page}.md: {target} does not exist"
        obj = re.search(r":pyobject:\s*(\S+)", options)
        assert obj, f"{page}.md: include of {target} without :pyobject: (the page would drift from the code)"
        assert obj.group(1) in defined_names(path), f"{page}.md: {target} defines no {obj.group(1)}"
    assert "```{code-cell}" in text and "plt.show()" in text and "assert " in text


@pytest.mark.parametrize("page", PAGES)
def test_each_page_opens_as_a_notebook(page):
    jupytext = pytest.importorskip("jupytext", reason="jupytext comes with pip install -e '.[docs]'")
    nb = jupytext.read(os.path.join(LECTURE, page + ".md"))
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert nb.metadata["kernelspec"]["name"] == "python3" and len(code) >= 2
    for cell in code:
        compile(cell.source, f"{page}.md", "exec")
