"""Binarized MNIST, as shipped in `data/binarized_mnist/`, and where the data folder is.

`binarized_mnist(split)` reads the statically binarized MNIST of Larochelle & Murray (2011),
split 50,000 / 10,000 / 10,000, as float32 arrays of shape (N, 784) with values in {0, 1}.
The data folder is `root=`, else `$TINYDGM_DATA`, else `data/` next to the `tinydgm` package.
A missing, truncated or malformed file raises `DataError` naming the file, the line and what was
expected; `check_files()` checks every split a command will need before it starts.
"""
import gzip
import os
import zlib

import numpy as np

from tinydgm.errors import DataError

MNIST_SPLITS = {"train": 50000, "valid": 10000, "test": 10000}
MNIST_DIM = 784


def data_root(root=None):
    """The folder that holds the shipped data sets."""
    if root is not None:
        return os.fspath(root)
    if os.environ.get("TINYDGM_DATA"):
        return os.environ["TINYDGM_DATA"]
    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "data")


def not_found(path):
    """The DataError for a data file that is not there."""
    return DataError(f"{path}: file not found (expected the shipped data set; set TINYDGM_DATA "
                     f"or root= to the folder that holds it)")


def read_gzip(path):
    """The decompressed bytes of a .gz file, or DataError naming it."""
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise not_found(path) from None
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a readable gzip file ({e}); expected a complete .gz "
                        f"(truncated download?)") from None


# ---------------------------------------------------------------- binarized MNIST

def mnist_path(split, root=None):
    """The file of a binarized MNIST split; DataError for an unknown split."""
    if split not in MNIST_SPLITS:
        raise DataError(f"binarized_mnist: unknown split {split!r}; expected one of "
                        f"{', '.join(MNIST_SPLITS)}")
    return os.path.join(data_root(root), "binarized_mnist", f"binarized_mnist_{split}.amat.gz")


def binarized_mnist(split, root=None):
    """Statically binarized MNIST `split` ("train" | "valid" | "test") as float32 (N, 784)."""
    path = mnist_path(split, root)
    x = parse_amat(read_gzip(path), path, MNIST_DIM)
    if len(x) != MNIST_SPLITS[split]:
        raise DataError(f"{path}: {len(x)} rows; expected {MNIST_SPLITS[split]} "
                        f"(truncated or wrong file?)")
    return x


def check_files(root=None, splits=("train", "valid", "test")):
    """Check that each split's file is there and reads whole (DataError naming the first that does not).

    A command calls it before training, so that a missing test file stops it at the start, not at the end.
    """
    paths = [mnist_path(split, root) for split in splits]
    for path in paths:                                  # all there? (cheap, before reading any)
        if not os.path.isfile(path):
            raise not_found(path)
    for split in splits:
        binarized_mnist(split, root)


def parse_amat(raw, path, dim):
    """Rows of `dim` space-separated 0/1 values, one per line, as float32 (N, dim)."""
    if not raw.endswith(b"\n"):
        raw += b"\n"
    width = 2 * dim                                     # "v v ... v\n": dim digits, dim separators
    if len(raw) % width == 0:                           # fast path: a regular grid of bytes
        grid = np.frombuffer(raw, np.uint8).reshape(-1, width)
        digits, seps = grid[:, 0::2], grid[:, 1::2]
        if (seps[:, :-1] == ord(" ")).all() and (seps[:, -1] == ord("\n")).all() \
                and ((digits == ord("0")) | (digits == ord("1"))).all():
            return (digits == ord("1")).astype(np.float32)
    return parse_amat_slow(raw, path, dim)


def parse_amat_slow(raw, path, dim):
    """The general parser: tolerant of spacing, and names the first bad line."""
    rows = []
    for lineno, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != dim:
            raise DataError(f"{path}, line {lineno}: {len(fields)} values; expected {dim} values "
                            f"in {{0, 1}}")
        bad = [v for v in fields if v not in (b"0", b"1", b"0.0", b"1.0")]
        if bad:
            raise DataError(f"{path}, line {lineno}: value {bad[0].decode(errors='replace')!r}; "
                            f"expected {dim} values in {{0, 1}}")
        rows.append([v[:1] == b"1" for v in fields])
    if not rows:
        raise DataError(f"{path}: no data rows; expected lines of {dim} values in {{0, 1}}")
    return np.array(rows, dtype=np.float32)
