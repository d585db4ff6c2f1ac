"""Checkpoints: round trip, no pickle, atomic replacement, clear errors naming the file, what differs between a
state and a model in one line, leftovers of interrupted writes."""
import os

import numpy as np
import pytest

from tinydgm import checkpoint
from tinydgm.checkpoint import CheckpointError


def test_round_trip(tmp_path):
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "t": np.array([3.0])}
    meta = {"epoch": 4, "rng": {"state": 2 ** 100 + 7, "inc": 3}}
    path = checkpoint.save(tmp_path / "last", arrays, meta)
    assert path.endswith("last.npz") and os.path.isfile(tmp_path / "last.json")
    got, got_meta = checkpoint.load(tmp_path / "last")
    assert got_meta == meta and set(got) == set(arrays)
    for k in arrays:
        assert got[k].dtype == arrays[k].dtype
        np.testing.assert_array_equal(got[k], arrays[k])


def test_replaces_atomically_and_leaves_no_temporaries(tmp_path):
    checkpoint.save(tmp_path / "c", {"a": np.zeros(3)}, {"v": 1})
    checkpoint.save(tmp_path / "c", {"a": np.ones(3)}, {"v": 2})
    assert sorted(os.listdir(tmp_path)) == ["c.json", "c.npz"]
    arrays, meta = checkpoint.load(tmp_path / "c.npz")
    assert meta == {"v": 2} and arrays["a"].sum() == 3


def test_failed_write_keeps_old(tmp_path, monkeypatch):
    checkpoint.save(tmp_path / "c", {"a": np.zeros(3)}, {"v": 1})

    def boom(f, **kw):
        f.write(b"partial")
        raise KeyboardInterrupt
    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(KeyboardInterrupt, match="^$"):          # boom's own interrupt, passed on
        checkpoint.save(tmp_path / "c", {"a": np.ones(3)}, {"v": 2})
    assert sorted(os.listdir(tmp_path)) == ["c.json", "c.npz"]
    assert checkpoint.load(tmp_path / "c")[1] == {"v": 1}


def test_refuses_objects(tmp_path):
    with pytest.raises(ValueError, match="Python objects"):
        checkpoint.save(tmp_path / "c", {"a": np.array([{}, 1], dtype=object)})


def test_missing(tmp_path):
    with pytest.raises(CheckpointError, match="nothere.npz: checkpoint not found"):
        checkpoint.load(tmp_path / "nothere")


@pytest.mark.parametrize("content", [b"", b"not a zip file", b"PK\x03\x04garbage"])
def test_corrupt(tmp_path, content):
    (tmp_path / "c.npz").write_bytes(content)
    with pytest.raises(CheckpointError, match=r"c\.npz: not a readable tinydgm checkpoint"):
        checkpoint.load(tmp_path / "c")


def test_truncated(tmp_path):
    checkpoint.save(tmp_path / "c", {"a": np.arange(1000.0)}, {"v": 1})
    raw = (tmp_path / "c.npz").read_bytes()
    (tmp_path / "c.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="c.npz"):
        checkpoint.load(tmp_path / "c")


# ---------------------------------------------------------------- what differs between a checkpoint and a model

def test_describe_mismatch_lists_missing_unexpected_and_shapes():
    expected = {"enc.weight": (784, 16), "enc.bias": (16,), "dec.weight": (16, 784)}
    found = {"enc.weight": (784, 200), "enc.bias": (16,), "prior.loc": (16,)}
    assert checkpoint.describe_mismatch(expected, found) == (
        "missing dec.weight; unexpected prior.loc; enc.weight: checkpoint (784, 200) vs model (784, 16)")
    assert checkpoint.describe_mismatch(expected, dict(expected)) == ""


def test_describe_mismatch_is_one_short_line():
    expected = {f"layers.{i}.weight": (16, 784) for i in range(200)}
    found = {f"other.{i}": (200, 784) for i in range(200)}
    text = checkpoint.describe_mismatch(expected, found)
    assert "\n" not in text and len(text) < 300, text
    assert text.startswith("missing layers.0.weight, layers.1.weight") and "(+197 more)" in text
    assert "unexpected other.0, other.1" in text


# ---------------------------------------------------------------- leftovers of interrupted writes

def test_remove_leftovers_removes_only_our_temporaries(tmp_path):
    checkpoint.save(tmp_path / "last", {"a": np.zeros(3)}, {"v": 1})
    leftover = tmp_path / ".tmp-x1y2last.npz"
    leftover.write_bytes(b"half a zip")
    for keep in [".tmpfile", "tmp-last.npz", ".tmp", "notes.txt"]:
        (tmp_path / keep).write_text("mine")
    (tmp_path / ".tmp-folder").mkdir()
    removed = checkpoint.remove_leftovers(tmp_path)
    assert removed == [os.path.join(tmp_path, ".tmp-x1y2last.npz")]
    assert sorted(os.listdir(tmp_path)) == [".tmp", ".tmp-folder", ".tmpfile", "last.json", "last.npz",
                                            "notes.txt", "tmp-last.npz"]
    assert checkpoint.remove_leftovers(tmp_path) == []
    assert checkpoint.remove_leftovers(tmp_path / "absent") == []


def test_remove_leftovers_after_a_write_killed_midway(tmp_path, monkeypatch):
    checkpoint.save(tmp_path / "c", {"a": np.zeros(3)}, {"v": 1})

    def killed(f, **kw):                    # kill -9 mid-write: no exception handler runs, the file stays
        f.write(b"partial")
        f.flush()
        raise SystemExit("killed")
    monkeypatch.setattr(np, "savez", killed)
    monkeypatch.setattr(os, "remove", lambda path: None)           # as if the process died right here
    with pytest.raises(SystemExit):
        checkpoint.save(tmp_path / "c", {"a": np.ones(3)}, {"v": 2})
    monkeypatch.undo()
    left = [n for n in os.listdir(tmp_path) if n not in ("c.npz", "c.json")]
    assert len(left) == 1 and left[0].startswith(".tmp-")
    assert checkpoint.remove_leftovers(tmp_path) == [os.path.join(tmp_path, left[0])]
    assert sorted(os.listdir(tmp_path)) == ["c.json", "c.npz"]
    assert checkpoint.load(tmp_path / "c")[1] == {"v": 1}
