"""The array backend: which array module (NumPy or CuPy) tinydgm computes with.

NumPy is the default; `use("cupy")` or the environment variable TINYDGM_BACKEND=cupy switches
to the GPU.  CuPy is imported only when asked for, so importing tinydgm never needs it.  Importing
this module changes nothing in the process (BLAS threads and the allocator are the run-time policy of
the commands and scripts: tinydgm.experiments.runtime).
"""
import os

import numpy

from tinydgm.errors import BackendError

_state = {"name": "numpy", "xp": numpy}
default_dtype = numpy.float32      # float32 for training; gradient checks use float64


# ---------------------------------------------------------------------------------------------
# Choosing the backend
# ---------------------------------------------------------------------------------------------

def _import_cupy():
    try:
        import cupy
    except ImportError as e:
        raise BackendError("the cupy backend needs CuPy, which is not installed "
                           "(install it with: pip install 'tinydgm[cuda]', i.e. cupy-cuda12x)") from e
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDA driver missing or broken
        raise BackendError(f"the cupy backend needs an NVIDIA GPU with a working CUDA driver ({e})") from e
    if n == 0:
        raise BackendError("the cupy backend needs an NVIDIA GPU, and none is visible")
    return cupy


def use(name):
    """Compute with `name` ("numpy" or "cupy") from now on; returns the array module."""
    if name == "numpy":
        xp = numpy
    elif name == "cupy":
        xp = _import_cupy()
    else:
        raise ValueError(f"backend must be 'numpy' or 'cupy', not {name!r}")
    _state.update(name=name, xp=xp)
    return xp


def name():
    """The name of the backend in use."""
    return _state["name"]


def xp():
    """The array module in use (numpy or cupy)."""
    return _state["xp"]


_wrappers = ()           # array-holding types (the engine's Tensor): their `.data` is the array


def register_wrapper(cls):
    """Let `get_array_module` and `to_numpy` look inside instances of `cls` (at `.data`); returns cls."""
    global _wrappers
    _wrappers = _wrappers + (cls,)
    return cls


def _array(a):
    return a.data if isinstance(a, _wrappers) else a


def get_array_module(*arrays):
    """The array module that owns `arrays` (cupy if any of them is a CuPy array, else numpy)."""
    for a in arrays:
        a = _array(a)
        if type(a).__module__.startswith("cupy"):
            import cupy
            return cupy
    return numpy


def asarray(a, dtype=None):
    """`a` as an array of the backend in use (moved to the GPU if that is the backend)."""
    return _state["xp"].asarray(a, dtype=dtype)


def to_numpy(a):
    """`a` (a NumPy or CuPy array, or a Tensor) as a NumPy array on the host."""
    a = _array(a)
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return numpy.asarray(a)


def rng(seed=None):
    """A seeded random generator of the backend in use (`numpy.random.Generator` on the CPU)."""
    if _state["name"] == "cupy":
        return _state["xp"].random.default_rng(seed)
    return numpy.random.default_rng(seed)


def device_rng(rng):
    """`rng` itself on the CPU; on the GPU, a view of it whose draws land on the device.

    Training draws from a host NumPy Generator on both backends, so its state can be checkpointed.
    """
    return rng if name() == "numpy" else _DeviceRNG(rng)


class _DeviceRNG:
    def __init__(self, rng):
        self.host = rng

    def standard_normal(self, shape, dtype=numpy.float32):
        return asarray(self.host.standard_normal(shape, dtype=dtype))

    def random(self, shape, dtype=numpy.float32):
        return asarray(self.host.random(shape, dtype=dtype))

    def permutation(self, n):
        return asarray(self.host.permutation(n))


def scatter_add(a, indices, values):
    """a[indices] += values, adding once per occurrence of a repeated index (in place)."""
    if type(a).__module__.startswith("cupy"):
        import cupy
        if hasattr(cupy.add, "at"):                   # ufunc.at: CuPy >= 12 (cupyx.scatter_add is deprecated)
            cupy.add.at(a, indices, values)
        else:
            import cupyx
            cupyx.scatter_add(a, indices, values)
    else:
        numpy.add.at(a, indices, values)
    return a


if os.environ.get("TINYDGM_BACKEND"):
    use(os.environ["TINYDGM_BACKEND"])
