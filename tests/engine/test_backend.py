"""The array backend: choosing it, clear errors without CuPy or a GPU, transfers, seeds, scatter-add
(BLAS threads and the allocator: tests/experiments/test_runtime.py)."""
import importlib.util
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import tinydgm as td
from tinydgm.backend import BackendError

HAS_CUPY = importlib.util.find_spec("cupy") is not None


@pytest.fixture
def restore_backend():
    before = td.backend.name()
    yield
    td.backend.use(before)


def test_use_numpy(restore_backend):
    assert td.backend.use("numpy") is np
    assert td.backend.name() == "numpy" and td.backend.xp() is np
    assert isinstance(td.tensor([1.0]).data, np.ndarray)


def test_use_unknown_backend(restore_backend):
    with pytest.raises(ValueError, match="'numpy' or 'cupy'.*'jax'"):
        td.backend.use("jax")


@pytest.mark.skipif(HAS_CUPY, reason="CuPy is installed here")
def test_use_cupy_without_cupy_names_what_is_missing(restore_backend):
    before = td.backend.name()
    with pytest.raises(BackendError, match=r"needs CuPy, which is not installed.*pip install"):
        td.backend.use("cupy")
    assert td.backend.name() == before                  # a failed switch changes nothing


def test_use_cupy_when_the_import_fails(restore_backend, monkeypatch):
    td.backend.use("numpy")
    monkeypatch.setitem(sys.modules, "cupy", None)      # makes `import cupy` raise ImportError
    with pytest.raises(BackendError, match=r"CuPy.*not installed.*cupy-cuda12x"):
        td.backend.use("cupy")
    assert td.backend.name() != "cupy"


@pytest.mark.parametrize("count, message", [(0, "none is visible"), (RuntimeError("no CUDA driver"), "no CUDA driver")])
def test_use_cupy_without_a_gpu(restore_backend, monkeypatch, count, message):
    def device_count():
        if isinstance(count, Exception):
            raise count
        return count
    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=device_count))
    td.backend.use("numpy")
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(BackendError, match=f"GPU.*{message}"):
        td.backend.use("cupy")
    assert td.backend.name() != "cupy"


def _python(code, **env):
    environ = {k: v for k, v in os.environ.items() if k != "TINYDGM_BACKEND"}
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=60)


def test_importing_tinydgm_does_not_import_cupy():
    r = _python("import sys, tinydgm; print('cupy' in sys.modules, tinydgm.backend.name())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "numpy"]


def test_environment_variable_chooses_the_backend():
    r = _python("import tinydgm; print(tinydgm.backend.name())", TINYDGM_BACKEND="numpy")
    assert r.returncode == 0 and r.stdout.strip() == "numpy", r.stderr
    if not HAS_CUPY:
        r = _python("import tinydgm", TINYDGM_BACKEND="cupy")
        assert r.returncode != 0 and "needs CuPy" in r.stderr


def test_get_array_module(xp):
    a = xp.ones(3)
    assert td.backend.get_array_module(a) is xp
    assert td.backend.get_array_module(td.tensor(a)) is xp
    assert td.backend.get_array_module(np.ones(2), a) is xp
    assert td.backend.get_array_module(np.ones(2)) is np
    assert td.backend.get_array_module(1.0, [2.0]) is np


def test_to_numpy(xp):
    a = xp.arange(3.0)
    for thing in (a, td.tensor(a), [0.0, 1.0, 2.0]):
        out = td.backend.to_numpy(thing)
        assert type(out) is np.ndarray
        np.testing.assert_array_equal(out, [0, 1, 2])
    assert td.tensor(a).numpy().tolist() == [0, 1, 2]


def test_asarray_and_tensors_live_on_the_backend(xp):
    assert isinstance(td.backend.asarray([1.0, 2.0]), xp.ndarray)
    assert isinstance(td.tensor(np.ones(2)).data, xp.ndarray)
    assert td.backend.default_dtype == np.float32


def test_rng_is_reproducible(xp):
    a = td.backend.rng(123).standard_normal((4, 3))
    b = td.backend.rng(123).standard_normal((4, 3))
    c = td.backend.rng(124).standard_normal((4, 3))
    assert isinstance(a, xp.ndarray)
    np.testing.assert_array_equal(td.backend.to_numpy(a), td.backend.to_numpy(b))
    assert not np.array_equal(td.backend.to_numpy(a), td.backend.to_numpy(c))
    u1 = td.backend.to_numpy(td.backend.rng(5).random(100))
    u2 = td.backend.to_numpy(td.backend.rng(5).random(100))
    np.testing.assert_array_equal(u1, u2)
    assert np.all((u1 >= 0) & (u1 < 1))


def test_scatter_add_counts_repeated_indices(xp):
    a = xp.zeros(5)
    out = td.backend.scatter_add(a, xp.asarray([0, 0, 3, 0]), xp.asarray([1.0, 2.0, 3.0, 4.0]))
    assert out is a                                    # in place
    np.testing.assert_array_equal(td.backend.to_numpy(a), [7, 0, 0, 3, 0])
    m = xp.zeros((2, 3))
    td.backend.scatter_add(m, (xp.asarray([1, 1, 0]), xp.asarray([2, 2, 0])), xp.asarray([1.0, 1.0, 5.0]))
    np.testing.assert_array_equal(td.backend.to_numpy(m), [[5, 0, 0], [0, 0, 2]])
    rows = xp.zeros((3, 2))
    td.backend.scatter_add(rows, xp.asarray([2, 2]), xp.ones((2, 2)))
    np.testing.assert_array_equal(td.backend.to_numpy(rows), [[0, 0], [0, 0], [2, 2]])
