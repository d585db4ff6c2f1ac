"""Shared test set-up: seeded hypothesis, and an `xp` fixture that runs a test once per backend.

Use it as `def test_something(xp): x = td.tensor(xp.ones(3)) ...`: the test runs with NumPy and
with CuPy (skipped cleanly where CuPy or a GPU is missing), and the backend in use before the
test is restored after it.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings

import tinydgm as td

# Deterministic hypothesis runs (same examples every time, no example database), no deadlines
# on 2 shared cores.  `xp` is function-scoped but only switches the backend, so it is safe to
# share between the examples of one @given test.
settings.register_profile("tinydgm", derandomize=True, database=None, deadline=None, print_blob=False,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile("tinydgm")
# `pytest --hypothesis-profile=quick`: 10 examples a test and no shrinking, for a first pass on a
# machine lent for minutes (scripts/gpu_check.sh); a failure is still reported with its example.
settings.register_profile("quick", parent=settings.get_profile("tinydgm"), max_examples=10,
                          phases=(Phase.explicit, Phase.reuse, Phase.generate))


@pytest.fixture(params=["numpy", "cupy"])
def xp(request):
    """The array module of the backend under test (numpy, or cupy where a GPU is usable)."""
    before = td.backend.name()
    try:
        module = td.backend.use(request.param)
    except td.backend.BackendError as e:
        pytest.skip(f"cupy backend unavailable: {e}")
    try:
        yield module
    finally:
        td.backend.use(before)


@pytest.fixture
def to_numpy():
    """Arrays and Tensors of either backend as NumPy arrays on the host."""
    return td.backend.to_numpy


@pytest.fixture
def np_rng():
    """A NumPy generator with a fixed seed (for data the test draws itself)."""
    return np.random.default_rng(0)
