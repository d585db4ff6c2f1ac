"""The errors a user can cause, each printed by `tinydgm` as one line with exit code 2 (imports nothing).

`UserError` is the base: a mistake in what the user gave us (a file, an option, a run folder, a
machine without a GPU), with a message that names the input and what was expected.  The command
line catches it once; library callers may catch the specific kinds below.
"""


class UserError(Exception):
    """A mistake in what the user gave us: printed as one line, no traceback, exit code 2."""
    exit_code = 2


class DataError(UserError, ValueError):
    """A data file is missing or not in the expected format."""


class ConlluError(DataError):
    """A line of a CoNLL-U file that does not follow the format: names the file and line."""


class CheckpointError(UserError, ValueError):
    """A checkpoint is missing or unreadable."""


class RunError(UserError, ValueError):
    """A run directory is missing, or is not what the command expects."""


class BackendError(UserError, RuntimeError):
    """The requested backend cannot be used on this machine."""


class OutputError(UserError, OSError):
    """A file cannot be written (a full disk, a read-only or missing folder, no permission): names the path."""


class Interrupted(UserError):
    """Ctrl-C (or SIGTERM) stopped a command: one line saying what was kept, exit code 130."""
    exit_code = 130
