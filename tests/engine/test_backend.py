"""The array backend: choosing it, clear errors without CuPy or a GPU, transfers, seeds, scatter-add, threads."""
import importlib.util
import os
import subprocess
import sys
import types

import numpy as np
import pytest
from threadpoolctl import threadpool_info

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


# ---------------------------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------------------------

def _blas_threads():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.fixture
def restore_threads():
    yield
    td.backend.restore_threads()


def test_set_threads_limits_blas_at_run_time(restore_threads):
    assert "numpy" in sys.modules                      # after NumPy is loaded: environment variables no longer act
    assert td.backend.set_threads(1) == 1
    assert td.backend.threads() == 1
    assert all(n == 1 for n in _blas_threads())
    for var in td.backend.THREAD_VARIABLES:            # libraries loaded later and child processes follow it
        assert os.environ[var] == "1"
    a = np.ones((300, 300), dtype=np.float32)
    np.testing.assert_allclose(a @ a, 300)            # BLAS still works on one thread
    assert td.backend.threads() == 1                   # and the limit stays in force


@pytest.mark.parametrize("n", [0, -2, 1.5, "2", True, None])
def test_set_threads_refuses_what_is_not_a_count(restore_threads, n):
    before = td.backend.threads()
    with pytest.raises(BackendError, match=rf"number of threads must be a whole number of at least 1, not {n!r}"):
        td.backend.set_threads(n)
    assert td.backend.threads() == before              # a refused count changes nothing


def test_restore_threads_brings_back_the_libraries_counts(restore_threads):
    before, environ = _blas_threads(), {var: os.environ.get(var) for var in td.backend.THREAD_VARIABLES}
    td.backend.set_threads(1)
    assert td.backend.set_threads(max(before)) == max(before)   # a second call replaces the first
    td.backend.set_threads(1)
    assert td.backend.restore_threads() == max(before)
    assert _blas_threads() == before
    assert {var: os.environ.get(var) for var in td.backend.THREAD_VARIABLES} == environ


def test_set_threads_back_to_the_count_before(restore_threads):
    before = td.backend.threads()
    td.backend.set_threads(1)
    assert td.backend.set_threads(before) == before


def test_set_threads_reaches_a_blas_loaded_afterwards():
    code = ("import tinydgm, threadpoolctl; tinydgm.backend.set_threads(1); import scipy.linalg; "
            "print(sorted({l['num_threads'] for l in threadpoolctl.threadpool_info() if l['user_api'] == 'blas'}))")
    r = _python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[1]"


def test_importing_tinydgm_does_not_import_threadpoolctl():
    r = _python("import sys, tinydgm; print('threadpoolctl' in sys.modules)")
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


def test_threads_for_follows_the_cores_others_leave_idle():
    threads_for = td.backend.threads_for
    for kind in ("train", "eval"):
        assert threads_for(kind, 0.0, cores=2) == 2          # a quiet machine: every core
        assert threads_for(kind, 0.3, cores=2) == 2          # light background noise is not a job
        assert threads_for(kind, 1.0, cores=2) == 1          # one busy process beside us: its core is its own
        assert threads_for(kind, 2.0, cores=2) == 1          # every core busy: never fewer than one
        assert threads_for(kind, 5.0, cores=8) == 3
        assert threads_for(kind, None, cores=8) == 1         # load unknown: the safe count
    assert threads_for("narrow", 0.0, cores=8) == 1          # small matrices: one thread, quiet or busy
    assert threads_for("eval", 5.0, cores=2, span=8) == 2      # a quota of 2 on 8 cores, 5 busy: 3 idle, 2 allowed
    assert threads_for("eval", 6.6, cores=2, span=8) == 1
    with pytest.raises(ValueError, match="'eval', 'narrow', 'train'.*'sample'"):
        threads_for("sample", 0.0)


def test_other_load_leaves_out_this_process():
    # (machine busy CPU s, this process's CPU s, seconds): over 2 s the machine was busy 3 CPU-s, 1 of them ours
    assert td.backend.other_load((10.0, 4.0, 100.0), (13.0, 5.0, 102.0)) == pytest.approx(1.0)
    assert td.backend.other_load((10.0, 4.0, 100.0), (10.0, 4.5, 101.0)) == 0.0     # clock ticks: never below 0
    assert td.backend.other_load(None, (1.0, 1.0, 1.0)) is None
    assert td.backend.other_load((1.0, 1.0, 1.0), (1.0, 1.0, 1.0)) is None           # no time between them


def test_a_job_beside_us_takes_a_thread_back(restore_threads, monkeypatch):
    """Readings (machine busy CPU s, our CPU s, time) on a fake clock: others' load since the last look decides."""
    import types
    cores, now = td.backend.available_cores(), {"t": 0.0, "busy": 0.0, "reads": 0}

    def reading():
        now["reads"] += 1
        return now["busy"], 0.0, now["t"]

    def sleep(s):
        now["t"] += s
    monkeypatch.setattr(td.backend, "_cpu_reading", reading)
    monkeypatch.setattr(td.backend, "time", types.SimpleNamespace(monotonic=lambda: now["t"], sleep=sleep))
    assert td.backend.set_auto_threads("eval") == cores                   # a quiet machine: every core
    now["t"] += 1.0
    reads = now["reads"]
    assert td.backend.retune() is None and now["reads"] == reads          # under RETUNE_S: not even a look
    now["t"] += 2.0
    now["busy"] += 3.0 * cores                                            # others kept every core busy
    assert td.backend.retune() == 1 and td.backend.threads() == 1
    now["t"] += 3.0                                                       # and then went away
    assert td.backend.retune() == cores and td.backend.threads() == cores
    td.backend.set_threads(1)                                             # a count asked for stays
    now["t"] += 3.0
    now["busy"] += 0.0
    assert td.backend.retune() is None and td.backend.threads() == 1


def test_the_load_is_read_where_the_system_tells_it():
    r = td.backend._cpu_reading()
    if not os.path.isfile("/proc/stat"):
        assert r is None
        assert td.backend.default_threads("eval") == 1
    else:
        busy, own, t = r
        assert busy >= 0 and own > 0 and t > 0


def test_default_threads():
    for kind in ("train", "eval", "narrow"):
        n = td.backend.default_threads(kind)
        assert isinstance(n, int) and 1 <= n <= td.backend.available_cores()
    assert td.backend.default_threads("narrow") == 1
    with pytest.raises(ValueError, match="'eval', 'narrow', 'train'.*'sample'"):
        td.backend.default_threads("sample")


def test_cores_are_those_this_process_may_use(monkeypatch, tmp_path):
    """Its CPU affinity, capped by a cgroup quota (v2 cpu.max, v1 cfs quota/period); no quota: the affinity."""
    monkeypatch.setattr(td.backend, "_affinity", lambda: [0, 3, 5, 6])
    monkeypatch.setattr(td.backend, "_cgroup_quota", lambda: None)
    assert td.backend.available_cores() == 4
    monkeypatch.setattr(td.backend, "_cgroup_quota", lambda: 2)
    assert td.backend.available_cores() == 2
    assert td.backend.threads_for("eval", 0.0) == 2
    monkeypatch.undo()
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert td.backend._cgroup_quota(str(tmp_path)) == 2                 # 1.5 cores: a second thread has work
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert td.backend._cgroup_quota(str(tmp_path)) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert td.backend._cgroup_quota(str(tmp_path)) == 3
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert td.backend._cgroup_quota(str(tmp_path)) is None
    assert td.backend._cgroup_quota(str(tmp_path / "nowhere")) is None


def test_the_load_is_read_on_our_own_cores(monkeypatch, tmp_path):
    """Busy time (all but idle and iowait) summed over the cores in our affinity only: a busy core we may
    not run on is no reason to take fewer threads."""
    stat = tmp_path / "stat"
    stat.write_text("cpu  900 0 100 1000 0 0 0 0 0 0\n"
                    "cpu0 800 0 100 100 0 0 0 0 0 0\n"          # busy, but not ours
                    "cpu1 100 0 0 900 0 0 0 0 0 0\n"
                    "intr 1 2 3\n")
    tick = os.sysconf("SC_CLK_TCK")
    monkeypatch.setattr(td.backend, "_affinity", lambda: [1])
    assert td.backend._cpu_reading(str(stat))[0] == pytest.approx(100 / tick)
    monkeypatch.setattr(td.backend, "_affinity", lambda: [0, 1])
    assert td.backend._cpu_reading(str(stat))[0] == pytest.approx(1000 / tick)
    monkeypatch.setattr(td.backend, "_affinity", lambda: None)          # the system does not say: the total
    assert td.backend._cpu_reading(str(stat))[0] == pytest.approx(1000 / tick)
    stat.write_text("cpu  x y\n")
    assert td.backend._cpu_reading(str(stat)) is None


def test_environment_threads():
    e = td.backend.environment_threads
    assert e({}) is None and e({"OMP_NUM_THREADS": " "}) is None
    assert e({"OMP_NUM_THREADS": "3"}) == 3
    assert e({"OMP_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "1"}) == 1      # BLAS's own variable first
    assert e({"OMP_NUM_THREADS": "4,2"}) == 4                                  # OpenMP's nested form: the outer level
    for bad in ("0", "-2", "two", "1.5"):
        with pytest.raises(td.backend.BackendError, match=f"MKL_NUM_THREADS='{bad}': expected a whole number"):
            e({"MKL_NUM_THREADS": bad})
