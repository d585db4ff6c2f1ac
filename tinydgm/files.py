"""Every file tinydgm writes, written whole: the one helper behind checkpoints, run records, results and figures.

    with files.writing("runs/x/best.npz") as f: np.savez(f, ...)   # a temporary file in the same folder,
    files.write_json("runs/x/config.json", config)                 # flushed and synced, then renamed over
    files.append_line("runs/x/metrics.jsonl", json.dumps(record))  # one whole line, or nothing

A reader never sees half a file: until the rename the old file (or none) is there, and a process killed
midway leaves only a `.tmp-*` file, which `remove_leftovers` clears.  Every file gets the same mode
(0666 less the umask, as `open` gives).  A fault of the machine (a full disk, a read-only or missing
folder, no permission) is an `OutputError`: one line naming the path and what to do.
"""
import contextlib
import errno
import json
import os
import tempfile

from tinydgm.errors import OutputError

TMP_PREFIX = ".tmp-"            # the temporary files of `writing`, renamed once complete

_ADVICE = {
    errno.ENOSPC: "no space left on the device; free some space, then run the same command again",
    errno.EDQUOT: "the disk quota is exhausted; free some space, then run the same command again",
    errno.EROFS: "the file system is read-only; make it writable or choose another folder",
    errno.EACCES: "permission denied; make the folder writable or choose another folder",
    errno.EPERM: "permission denied; make the folder writable or choose another folder",
    errno.ENOENT: "the folder does not exist; create it or choose another folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EISDIR: "a folder is in the way; choose another path",
}


def fault(e, path):
    """The one-line OutputError for an OSError met while writing `path`."""
    advice = _ADVICE.get(e.errno, f"cannot write it ({e.strerror or e}); fix that, then run the same command again")
    return OutputError(f"{os.fspath(path)}: {advice}")


def _mode():
    """0666 less the process's umask: what `open(path, "w")` gives a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _write(f, data):
    """The one place bytes reach a file (tests inject faults of the machine here)."""
    f.write(data)


@contextlib.contextmanager
def writing(path, text=False):
    """A file object for `path` that becomes `path` only once the block ends without an error."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX, suffix=os.path.basename(path))
    except OSError as e:
        raise fault(e, path) from None
    try:
        with os.fdopen(fd, "w" if text else "wb") as f:
            yield _Sink(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode())
        os.replace(tmp, path)
    except OSError as e:
        _discard(tmp)
        raise fault(e, path) from None
    except BaseException:
        _discard(tmp)
        raise


class _Sink:
    """A file that writes through `_write` (so that a fault can be injected), for code that takes a file."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        _write(self._f, data)
        return len(data)

    def __getattr__(self, name):               # seek, tell, flush, fileno: what np.savez and savefig need
        return getattr(self._f, name)


def _discard(tmp):
    with contextlib.suppress(OSError):
        os.remove(tmp)


def write_bytes(path, data):
    with writing(path) as f:
        f.write(data)
    return os.fspath(path)


def write_text(path, text):
    return write_bytes(path, text.encode())


def write_json(path, obj, indent=1):
    """`obj` as JSON (no NaN or infinity: JSON has none), whole, ending with a newline."""
    return write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


def append_line(path, line):
    """Append `line` and a newline as one write; on a fault the file is cut back to its old length."""
    data = (line.rstrip("\n") + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _mode())
    except OSError as e:
        raise fault(e, path) from None
    try:
        size = os.fstat(fd).st_size
        try:
            with os.fdopen(os.dup(fd), "ab", buffering=0) as f:
                _write(f, data)
            os.fsync(fd)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)         # no torn line left behind
            raise fault(e, path) from None
    finally:
        os.close(fd)
    return os.fspath(path)


def check_writable(folder):
    """Raise OutputError unless a file can be created in `folder` (or, if it does not exist yet, in the
    nearest folder above it that does): checked before hours of work, not after."""
    folder = os.path.abspath(os.fspath(folder))
    probe = folder
    while not os.path.isdir(probe):
        if os.path.exists(probe):
            raise OutputError(f"{probe}: a file, not a folder; choose another path")
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=TMP_PREFIX)
        os.close(fd)
        os.remove(tmp)
    except OSError as e:
        raise fault(e, folder) from None


def remove_leftovers(folder):
    """Remove the `.tmp-*` files that writes killed midway left in `folder`; returns their paths.

    Call it when no other process is writing into `folder` (e.g. as a run starts or resumes, holding its lock).
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith(TMP_PREFIX) and os.path.isfile(path) and not os.path.islink(path):
            with contextlib.suppress(OSError):
                os.remove(path)
                removed.append(path)
    return removed
