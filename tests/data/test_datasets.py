"""Binarized MNIST loader: shapes of the shipped split, and clear errors for bad files."""
import gzip
import os

import numpy as np
import pytest

from tinydgm.data import mnist
from tinydgm.data.mnist import DataError, binarized_mnist, check_files


def write(root, split, text, compress=True):
    folder = os.path.join(root, "binarized_mnist")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"binarized_mnist_{split}.amat.gz")
    data = text.encode()
    with open(path, "wb") as f:
        f.write(gzip.compress(data, compresslevel=1) if compress else data)
    return path


def rows(n, dim=784, seed=0):
    """n random rows as .amat text (digits and separators laid out with NumPy: fast)."""
    x = np.random.default_rng(seed).integers(0, 2, size=(n, dim))
    grid = np.full((n, 2 * dim), ord(" "), dtype=np.uint8)
    grid[:, 0::2], grid[:, -1] = x + ord("0"), ord("\n")
    return grid.tobytes().decode(), x


def test_shipped_split():
    x = binarized_mnist("valid")
    assert x.shape == (10000, 784) and x.dtype == np.float32
    assert set(np.unique(x)) <= {0.0, 1.0}


def test_root_and_env(tmp_path, monkeypatch):
    text, x = rows(10000)
    write(tmp_path, "test", text)
    np.testing.assert_array_equal(binarized_mnist("test", root=tmp_path), x)
    monkeypatch.setenv("TINYDGM_DATA", str(tmp_path))
    np.testing.assert_array_equal(binarized_mnist("test"), x)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="binarized_mnist_valid.amat.gz: file not found"):
        binarized_mnist("valid", root=tmp_path)


def test_truncated_gzip(tmp_path):
    text, _ = rows(50)
    path = write(tmp_path, "valid", text)
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="truncated"):
        binarized_mnist("valid", root=tmp_path)


def test_not_gzip(tmp_path):
    write(tmp_path, "valid", "hello\n", compress=False)
    with pytest.raises(DataError, match="gzip"):
        binarized_mnist("valid", root=tmp_path)


@pytest.mark.parametrize("bad, expect", [("0 1 " * 391 + "0", "line 3: 783 values; expected 784"),
                                         ("2" + " 0" * 783, "line 3: value '2'"),
                                         ("0.5" + " 0" * 783, "line 3: value '0.5'")])
def test_malformed_row(tmp_path, bad, expect):
    text, _ = rows(5)
    lines = text.splitlines(keepends=True)
    lines[2] = bad + "\n"
    write(tmp_path, "valid", "".join(lines))
    with pytest.raises(DataError, match=expect):
        binarized_mnist("valid", root=tmp_path)


def test_too_few_rows(tmp_path):
    write(tmp_path, "valid", rows(5)[0])
    with pytest.raises(DataError, match="5 rows; expected 10000"):
        binarized_mnist("valid", root=tmp_path)


def test_unknown_split():
    with pytest.raises(DataError, match="unknown split"):
        binarized_mnist("dev")


# ---------------------------------------------------------------- checking all the files a command needs

@pytest.fixture
def small_splits(tmp_path, monkeypatch):
    """A data folder with 5-row train, valid and test files (the expected sizes patched to match)."""
    for i, split in enumerate(["train", "valid", "test"]):
        monkeypatch.setitem(mnist.MNIST_SPLITS, split, 5)
        write(tmp_path, split, rows(5, seed=i)[0])
    return tmp_path


def test_check_files_accepts_the_shipped_data():
    assert check_files() is None


def test_check_files_accepts_complete_files(small_splits):
    assert check_files(small_splits) is None


def test_check_files_names_a_missing_test_split(small_splits):
    os.remove(small_splits / "binarized_mnist" / "binarized_mnist_test.amat.gz")
    with pytest.raises(DataError, match="binarized_mnist_test.amat.gz: file not found"):
        check_files(small_splits)
    assert check_files(small_splits, splits=("train", "valid")) is None


def test_check_files_reports_a_missing_file_before_reading_any(small_splits, monkeypatch):
    os.remove(small_splits / "binarized_mnist" / "binarized_mnist_test.amat.gz")
    monkeypatch.setattr(mnist, "read_gzip", lambda path: pytest.fail(f"read {path}"))
    with pytest.raises(DataError, match="binarized_mnist_test.amat.gz: file not found"):
        check_files(small_splits)


def test_check_files_names_a_truncated_file(small_splits):
    path = small_splits / "binarized_mnist" / "binarized_mnist_test.amat.gz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"binarized_mnist_test\.amat\.gz: .*truncated"):
        check_files(small_splits)


def test_check_files_refuses_an_unknown_split(small_splits):
    with pytest.raises(DataError, match="unknown split 'dev'"):
        check_files(small_splits, splits=("train", "dev"))
