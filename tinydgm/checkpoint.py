"""Safe checkpoints: arrays in an .npz (read with allow_pickle=False) plus JSON metadata.

`save("runs/x/last", arrays, meta)` writes `last.npz` and a readable copy of `meta` in `last.json`.
Each file is written whole by `tinydgm.files` (a temporary file in the same folder, renamed over the
old one), so a crash leaves the previous checkpoint whole.  The metadata is also
stored inside the .npz (as a string array), so the two files can never disagree on load.
`save_state`/`load_state` store a nested state (dicts and lists of arrays and JSON values) that way.
A process killed mid-write (kill -9) leaves a `.tmp-*` file behind; `remove_leftovers` clears them.
`describe_mismatch` says in one line how a checkpoint's arrays differ from a model's (or an optimiser's),
and `mismatch_error` is the CheckpointError that `load_state_dict` raises with it.
"""
import json
import os
import zipfile

import numpy as np

from tinydgm import files
from tinydgm.errors import CheckpointError

__all__ = ["save", "load", "meta_text", "exists", "save_state", "load_state", "remove_leftovers",
           "describe_mismatch", "mismatch_error"]

META_KEY = "__meta__"
remove_leftovers = files.remove_leftovers


def _stem(path):
    path = os.fspath(path)
    return path[:-4] if path.endswith(".npz") else path


def _host(a):
    """A NumPy array from a NumPy or CuPy array."""
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


def save(path, arrays, meta=None):
    """Write `arrays` (name -> array) and JSON-able `meta` as `path`.npz + `path`.json, atomically."""
    stem, meta = _stem(path), dict(meta or {})
    if META_KEY in arrays:
        raise ValueError(f"checkpoint.save: array name {META_KEY!r} is reserved")
    text = meta_text(meta)
    host = {name: _host(a) for name, a in arrays.items()}
    for name, a in host.items():
        if a.dtype.hasobject:
            raise ValueError(f"checkpoint.save: array {name!r} holds Python objects; only numeric "
                             f"arrays can be saved without pickle")
    host[META_KEY] = np.array(text)
    with files.writing(stem + ".npz") as f:
        np.savez(f, **host)
    files.write_text(stem + ".json", text + "\n")
    return stem + ".npz"


def meta_text(meta):
    """`meta` as the JSON text that `save` stores in the .npz and writes to the .json (without its newline)."""
    return json.dumps(meta, indent=1, sort_keys=True)


def load(path):
    """Read a checkpoint written by `save`: returns (arrays: dict of NumPy arrays, meta: dict)."""
    file = _stem(path) + ".npz"
    if not os.path.isfile(file):
        raise CheckpointError(f"{file}: checkpoint not found")
    try:
        with np.load(file, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        meta = json.loads(str(arrays.pop(META_KEY)))
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{file}: not a readable tinydgm checkpoint ({type(e).__name__}: {e}); "
                              f"expected an .npz written by tinydgm.checkpoint.save") from None
    return arrays, meta


def exists(path):
    return os.path.isfile(_stem(path) + ".npz")


# ---------------------------------------------------------------- a trainer's nested state

def _is_array(x):
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, np.generic)


def _split(tree, prefix, arrays):
    """Arrays out into `arrays` (by path), the rest kept as a JSON skeleton."""
    if _is_array(tree):
        arrays[prefix] = tree
        return {"__array__": prefix}
    if isinstance(tree, dict):
        return {str(k): _split(v, f"{prefix}/{k}", arrays) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_split(v, f"{prefix}/{i}", arrays) for i, v in enumerate(tree)]
    return tree.item() if isinstance(tree, np.generic) else tree


def _join(skel, arrays):
    if isinstance(skel, dict):
        if set(skel) == {"__array__"}:
            return arrays[skel["__array__"]]
        return {k: _join(v, arrays) for k, v in skel.items()}
    if isinstance(skel, list):
        return [_join(v, arrays) for v in skel]
    return skel


def save_state(path, state, loop=None):
    """Write a trainer's `state` (arrays and JSON-able values, nested) and the loop's counters as one checkpoint."""
    arrays = {}
    skel = _split(state, "", arrays)
    return save(path, arrays, {"state": skel, "loop": loop or {}})


def load_state(path):
    """(state, loop) from a checkpoint written by `save_state`."""
    arrays, meta = load(path)
    if "state" not in meta:
        raise CheckpointError(f"{path}.npz: no trainer state in its metadata")
    return _join(meta["state"], arrays), meta.get("loop", {})


# ---------------------------------------------------------------- a state that does not fit

def mismatch_error(owner, differs):
    """The CheckpointError for a state that does not fit `owner`; `.differs` holds just what differs."""
    err = CheckpointError(f"load_state_dict: the state does not fit this {type(owner).__name__} ({differs})")
    err.differs = differs
    return err


def describe_mismatch(expected, found, most=3):
    """What differs between two {name: shape} dicts, as one short line ("" when they agree).

    "missing a, b; unexpected c; w: checkpoint (200, 784) vs model (16, 784)": `expected` is what the
    model (or optimiser) holds, `found` what the checkpoint holds; each list shows `most` names.
    """
    def names(keys):
        return ", ".join(keys[:most]) + (f" (+{len(keys) - most} more)" if len(keys) > most else "")

    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    shapes = [f"{k}: checkpoint {tuple(found[k])} vs model {tuple(expected[k])}"
              for k in expected if k in found and tuple(found[k]) != tuple(expected[k])]
    parts = ([f"missing {names(missing)}"] if missing else []) + \
            ([f"unexpected {names(extra)}"] if extra else []) + shapes[:most]
    if len(shapes) > most:
        parts.append(f"(+{len(shapes) - most} more of another shape)")
    return "; ".join(parts)
