"""The API reference's docstrings, read as the plain text they are written in.

tinydgm's docstrings are written for a terminal: `backticks` around code, formulas and tables aligned in indented
columns, no reStructuredText.  Before autodoc parses a docstring, this turns it into reStructuredText that shows
the same thing: `quoted` parts as code, every other character of a prose line as itself (escaped, never markup),
and every indented block (with the line that introduces it, when that line is flush left) as a preformatted block,
its columns kept.
"""
import re

_QUOTED = re.compile(r"`([^`\n]+)`")
_SPECIAL = re.compile(r"([\\*|_`\[\]<>])")
_LIST_START = re.compile(r"^(\s*)([-+*•]\s|\(?[0-9A-Za-z#]{1,3}[.)]\s)")


def _indent(line):
    return len(line) - len(line.lstrip(" "))


def _escape(text):
    """One prose line as reStructuredText that reads as the same characters; `x` becomes code."""
    out, last = [], 0
    for m in _QUOTED.finditer(text):
        out.append(_SPECIAL.sub(r"\\\1", text[last:m.start()]))
        code = m.group(1)
        if code.strip() == code:
            out.append("\\ ``" + code + "``\\ ")
        else:
            out.append(_SPECIAL.sub(r"\\\1", m.group(0)))
        last = m.end()
    out.append(_SPECIAL.sub(r"\\\1", text[last:]))
    line = "".join(out).replace("::", ":\\:")
    # what would start a construct at the beginning of a line (a list, a field, a comment, a title line,
    # an option or a doctest) starts with an escaped character instead
    if line[:1] and line[0] in "-+:.=~^'\"#>!$%&,;?@/" or _LIST_START.match(line):
        line = "\\" + line
    return line


def to_rst(lines):
    """Plain-text docstring lines (already dedented by autodoc) -> reStructuredText lines."""
    n = len(lines)
    kinds = []
    for i, line in enumerate(lines):
        if not line.strip():
            kinds.append("blank")
        elif _indent(line) > 0 or (i + 1 < n and lines[i + 1].strip() and _indent(lines[i + 1]) > 0):
            kinds.append("pre")
        else:
            kinds.append("prose")
    # a blank line between two preformatted lines belongs to their block
    for i in range(n):
        if kinds[i] == "blank":
            before = next((kinds[j] for j in range(i - 1, -1, -1) if kinds[j] != "blank"), None)
            after = next((kinds[j] for j in range(i + 1, n) if kinds[j] != "blank"), None)
            if before == after == "pre":
                kinds[i] = "pre-blank"
    out, i = [], 0
    while i < n:
        kind = kinds[i]
        if kind == "blank":
            out.append("")
            i += 1
        elif kind == "prose":
            if out and out[-1]:
                out.append("")
            while i < n and kinds[i] == "prose":
                if _LIST_START.match(lines[i]) and out and out[-1]:
                    out.append("")          # a list item reads as a paragraph of its own
                out.append(_escape(lines[i]))
                i += 1
            out.append("")
        else:
            block = []
            while i < n and kinds[i] in ("pre", "pre-blank"):
                block.append(lines[i] if kinds[i] == "pre" else "")
                i += 1
            margin = min(_indent(b) for b in block if b.strip())
            if out and out[-1]:
                out.append("")
            out += [".. code-block:: text", ""]
            out += ["   " + b[margin:] if b.strip() else "" for b in block]
            out.append("")
    while out and not out[-1]:
        out.pop()
    return out


def _process(app, what, name, obj, options, lines):
    lines[:] = to_rst(list(lines))


def setup(app):
    app.connect("autodoc-process-docstring", _process)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
