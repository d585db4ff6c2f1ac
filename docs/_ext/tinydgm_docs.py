"""Sphinx directives of tinydgm's documentation.

``{tinydgm-cli}``: every command of ``tinydgm`` and every option, read from the parsers themselves
(`tinydgm.cli.parser`), so the page cannot say what the command line does not do.  `eval` and `sample` take
options that depend on the run's model, so each model's are listed.
"""
import argparse

from docutils import nodes
from sphinx.util.docutils import SphinxDirective


def _inline(text):
    """A paragraph of help text: `quoted` parts as code, the rest as plain text (never parsed as markup)."""
    para = nodes.paragraph()
    for i, part in enumerate(" ".join(str(text).split()).split("`")):
        if part:
            para += nodes.literal(part, part) if i % 2 else nodes.Text(part)
    return para


def _option_rows(parser):
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.option_strings:
            names = ", ".join(action.option_strings)
            if action.nargs != 0:
                metavar = action.metavar or action.dest.upper()
                names += " " + (" ".join(metavar) if isinstance(metavar, tuple) else metavar)
        else:
            names = action.metavar or action.dest
        default = action.default
        shown = "" if default in (None, argparse.SUPPRESS, False) or action.nargs == 0 else repr(default)
        help_text = (action.help % {"default": default}) if action.help else ""
        if action.choices:
            help_text += f" (one of: {', '.join(map(str, action.choices))})"
        rows.append((names, help_text, shown))
    return rows


def _table(rows):
    table = nodes.table(classes=["tinydgm-cli"])
    group = nodes.tgroup(cols=3)
    table += group
    for width in (30, 55, 15):
        group += nodes.colspec(colwidth=width)
    head, body = nodes.thead(), nodes.tbody()
    group += head
    group += body
    for cells, part in [(("option", "what it does", "default"), head)] + [(r, body) for r in rows]:
        row = nodes.row()
        for i, text in enumerate(cells):
            entry = nodes.entry()
            if part is body and i != 1:
                entry += nodes.paragraph("", "", nodes.literal(text, text)) if text else nodes.paragraph()
            else:
                entry += _inline(text)
            row += entry
        part += row
    return table


def _command(title, parser):
    """One command: its name, usage, description and a table of its options."""
    section = nodes.section(ids=[nodes.make_id(title)], names=[nodes.fully_normalize_name(title)])
    section += nodes.title(title, title)
    usage = parser.format_usage().replace("usage: ", "").strip()
    block = nodes.literal_block(usage, usage)
    block["language"] = "text"
    section += block
    if parser.description:
        section += _inline(parser.description)
    rows = _option_rows(parser)
    if rows:
        section += _table(rows)
    return section


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    yield name, sub


class CommandLine(SphinxDirective):
    """Every `tinydgm` command and its options, from `tinydgm.cli.parser()`."""

    def run(self):
        from tinydgm import cli
        sections = []
        top = dict(_subparsers(cli.parser()))
        for kind, sub in _subparsers(top["train"]):
            sections.append(_command(f"tinydgm train {kind}", sub))
        for command, (add, _) in cli.RUN_COMMANDS.items():
            for kind, module in cli.MODELS.items():
                if hasattr(module, add):
                    sub = dict(_subparsers(cli.parser(module)))[command]
                    sections.append(_command(f"tinydgm {command} RUN (a {kind} run)", sub))
        return sections


def setup(app):
    app.add_directive("tinydgm-cli", CommandLine)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
