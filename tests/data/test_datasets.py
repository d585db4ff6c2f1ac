"""Binarized MNIST loader: shapes of the shipped split, and clear errors for bad files."""
import gzip
import os

import numpy as np
import pytest

from tinydgm.data.mnist import DataError, binarized_mnist


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
