"""Sphinx directives of tinydgm's documentation.

``{tinydgm-cli}``: every command of ``tinydgm`` and every option, read from the parsers themselves
(`tinydgm.cli.parser`), so the page cannot say what the command line does not do.  `eval` and `sample` take
options that depend on the run's model, so each model's are listed.
"""
import argparse

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective


def _cell(text):
    return " ".join(str(text).split()).replace("|", "\\|") or " "


def _option_rows(parser):
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.option_strings:
            names = ", ".join(f"``{o}``" for o in action.option_strings)
            if action.nargs != 0:
                metavar = action.metavar or action.dest.upper()
                names += f" ``{' '.join(metavar) if isinstance(metavar, tuple) else metavar}``"
        else:
            names = f"``{action.metavar or action.dest}``"
        default = action.default
        shown = "" if default in (None, argparse.SUPPRESS, False) or action.nargs == 0 else f"``{default!r}``"
        choices = f" (one of {', '.join(f'``{c}``' for c in action.choices)})" if action.choices else ""
        help_text = (action.help or "") % {"default": default} if action.help else ""
        rows.append((names, _cell(help_text) + choices, shown))
    return rows


def _table(title, parser, usage):
    lines = [f".. rubric:: {title}", "", "::", ""]
    lines += ["    " + u for u in usage.strip().splitlines()] + [""]
    if parser.description:
        lines += [_cell(parser.description), ""]
    rows = _option_rows(parser)
    if rows:
        lines += [".. list-table::", "   :header-rows: 1", "   :widths: 30 55 15", "",
                  "   * - option", "     - what it does", "     - default"]
        for name, text, default in rows:
            lines += [f"   * - {name}", f"     - {text}", f"     - {default or ' '}"]
        lines.append("")
    return lines


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
        lines = []
        top = dict(_subparsers(cli.parser()))
        for kind, sub in _subparsers(top["train"]):
            lines += _table(f"tinydgm train {kind}", sub, sub.format_usage().replace("usage: ", ""))
        for command in cli.RUN_COMMANDS:
            for kind, module in cli.MODELS.items():
                if not hasattr(module, cli.RUN_COMMANDS[command][0]):
                    continue
                sub = dict(_subparsers(cli.parser(module)))[command]
                lines += _table(f"tinydgm {command} RUN  (a {kind} run)", sub,
                                sub.format_usage().replace("usage: ", ""))
        container = nodes.section()
        container.document = self.state.document
        self.state.nested_parse(StringList(lines, source="tinydgm.cli"), self.content_offset, container)
        return container.children


def setup(app):
    app.add_directive("tinydgm-cli", CommandLine)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
