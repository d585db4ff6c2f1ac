"""The rules the scripts share with the `tinydgm` command: a mistake in an option is one line on stderr
with exit code 2, as is a `UserError` met later; Ctrl-C is one line with exit code 130.

Imports neither NumPy nor tinydgm until a script runs (`bench.py --threads` must be set before NumPy loads).
"""
import argparse
import math
import sys

HELP_FLAGS = ("-h", "--help")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that takes no abbreviations and reports a mistake as `PROG: error: message`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def first_paragraph(doc):
    """A docstring's first paragraph on one line: the whole first sentence, for --help."""
    return " ".join(doc.strip().split("\n\n")[0].split())


def integer(low):
    """An argparse type: an integer >= `low`."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value
    return parse


def number(above):
    """An argparse type: a finite number > `above`."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > above):
            raise argparse.ArgumentTypeError(f"expected a finite number > {above:g}, got {text!r}")
        return value
    return parse


def integers(low, example):
    """An argparse type: comma-separated integers >= `low`, at least one, like `example`."""
    def parse(text):
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            values = []
        if not values or min(values) < low:
            raise argparse.ArgumentTypeError(f"expected integers >= {low} like {example}, got {text!r}")
        return values
    return parse


def run(prog, call, interrupted="interrupted"):
    """`call()`'s exit code; a UserError is printed once as `PROG: error: message` (exit code 2), Ctrl-C as
    `PROG: <interrupted>` (exit code 130)."""
    from tinydgm.errors import UserError
    try:
        return call() or 0
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return 130
