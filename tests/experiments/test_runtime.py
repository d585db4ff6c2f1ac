"""The run-time policy of the commands and scripts (tinydgm.experiments.runtime): BLAS threads chosen for the
machine, glibc's allocator told to keep freed memory; and importing tinydgm, which applies neither."""
import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from tinydgm.cli import main
from tinydgm.errors import BackendError
from tinydgm.experiments import runtime
from tinydgm.metrics import iw_nll
from tinydgm.models.vae import VAE

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _python(code, **env):
    environ = {k: v for k, v in os.environ.items() if k not in ("TINYDGM_BACKEND", "TINYDGM_MALLOC")}
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=120)


# ---------------------------------------------------------------------------------------------
# Importing changes nothing; the command line and the scripts apply the policy
# ---------------------------------------------------------------------------------------------
# A mallopt call goes through ctypes, which raises the audit event "ctypes.dlsym" when it looks the
# function up: an audit hook set before any import sees it, whoever makes it.
WATCH = """
import importlib, json, os, pkgutil, sys
mallopt = []
def watch(event, args):
    if event.startswith("ctypes.dlsym") and "mallopt" in repr(args):
        mallopt.append(event)
sys.addaudithook(watch)
import numpy, threadpoolctl
def blas():
    return {lib["filepath"]: lib["num_threads"] for lib in threadpoolctl.threadpool_info()}
def report(**extra):
    print(json.dumps({"mallopt": len(mallopt), **extra}))
"""


def _run(code, **env):
    r = _python(WATCH + code, **env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_importing_tinydgm_changes_nothing_in_the_process():
    """Every module of the package imported (the command line and the run-time policy included): the
    environment, BLAS's thread counts and glibc's allocator (no mallopt call) are as they were."""
    out = _run("""
environ, threads = dict(os.environ), blas()
import tinydgm, tinydgm.models.vae, tinydgm.estimators
names = [m.name for m in pkgutil.walk_packages(tinydgm.__path__, "tinydgm.") if m.name != "tinydgm.__main__"]
for name in names:
    importlib.import_module(name)
after, changed = blas(), set(os.environ.items()) ^ set(environ.items())
runtime = sys.modules["tinydgm.experiments.runtime"]
report(modules=names, environ=sorted(changed), threads=[threads, {f: after[f] for f in threads}],
       tuned=runtime.allocator_tuned(), limited=runtime.threads_limited())
""")
    assert {"tinydgm.backend", "tinydgm.cli", "tinydgm.experiments.runtime", "tinydgm.metrics"} <= set(out["modules"])
    assert out["environ"] == []                                    # no variable set, changed or removed
    assert out["threads"][0] == out["threads"][1]                 # the BLAS loaded before: its count as it was
    assert out["mallopt"] == 0 and not out["tuned"] and not out["limited"]


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_the_allocator_policy_is_applied_when_asked_once_and_not_with_tinydgm_malloc_0():
    code = """
from tinydgm.experiments import runtime
first = runtime.apply_allocator()
report(first=first, second=runtime.apply_allocator(), tuned=runtime.allocator_tuned())
"""
    assert _run(code) == {"mallopt": 1, "first": True, "second": True, "tuned": True}   # looked up once: applied once
    assert _run(code, TINYDGM_MALLOC="0") == {"mallopt": 0, "first": False, "second": False, "tuned": False}


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_the_command_line_applies_the_allocator_policy():
    out = _run("""
from tinydgm.cli import main
from tinydgm.experiments import runtime
before = runtime.allocator_tuned()
report(code=main(["eval", "/nonexistent/run"]), before=before, after=runtime.allocator_tuned())
""")
    assert out == {"mallopt": 1, "code": 2, "before": False, "after": True}   # even a command that stops at once


def test_eval_follows_the_load_between_batches(tmp_path, monkeypatch):
    """`tinydgm eval` hands iw_nll a hook called before each batch: the retuning of its thread count."""
    for var in runtime.THREAD_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(runtime, "default_threads", lambda kind, window=0.1: 1)
    run = str(tmp_path / "r")
    assert main(["train", "vae", "--limit", "100", "--hidden", "8", "--z-dim", "2", "--batch-size", "50",
                 "--epochs", "1", "--quiet", "--out", run]) == 0
    calls = []
    monkeypatch.setattr(runtime, "retune", lambda: calls.append(runtime._auto["kind"]))
    assert main(["eval", run, "--k", "2", "--limit", "5", "--quiet"]) == 0
    assert calls and set(calls) == {"eval"}                   # under set_auto_threads("eval")
    model = VAE(784, (8,), 2, rng=np.random.default_rng(0))
    x = (np.random.default_rng(1).random((7, 784)) < 0.5).astype(np.float32)
    batches = []
    iw_nll(model, x, k=4, chunk=2, batch_size=3, progress=False, each_batch=lambda: batches.append(1))
    assert len(batches) == 3                                   # 7 images in batches of 3


# ---------------------------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------------------------

def _blas_threads():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.fixture
def restore_threads():
    yield
    runtime.restore_threads()


def test_set_threads_limits_blas_at_run_time(restore_threads):
    assert "numpy" in sys.modules                      # after NumPy is loaded: environment variables no longer act
    assert runtime.set_threads(1) == 1
    assert runtime.threads() == 1
    assert all(n == 1 for n in _blas_threads())
    for var in runtime.THREAD_VARIABLES:            # libraries loaded later and child processes follow it
        assert os.environ[var] == "1"
    a = np.ones((300, 300), dtype=np.float32)
    np.testing.assert_allclose(a @ a, 300)            # BLAS still works on one thread
    assert runtime.threads() == 1                   # and the limit stays in force


@pytest.mark.parametrize("n", [0, -2, 1.5, "2", True, None])
def test_set_threads_refuses_what_is_not_a_count(restore_threads, n):
    before = runtime.threads()
    with pytest.raises(BackendError, match=rf"number of threads must be a whole number of at least 1, not {n!r}"):
        runtime.set_threads(n)
    assert runtime.threads() == before              # a refused count changes nothing


def test_restore_threads_brings_back_the_libraries_counts(restore_threads):
    before, environ = _blas_threads(), {var: os.environ.get(var) for var in runtime.THREAD_VARIABLES}
    runtime.set_threads(1)
    assert runtime.set_threads(max(before)) == max(before)   # a second call replaces the first
    runtime.set_threads(1)
    assert runtime.restore_threads() == max(before)
    assert _blas_threads() == before
    assert {var: os.environ.get(var) for var in runtime.THREAD_VARIABLES} == environ


def test_set_threads_back_to_the_count_before(restore_threads):
    before = runtime.threads()
    runtime.set_threads(1)
    assert runtime.set_threads(before) == before


def test_set_threads_reaches_a_blas_loaded_afterwards():
    code = ("import threadpoolctl; from tinydgm.experiments import runtime; runtime.set_threads(1); import scipy.linalg; "
            "print(sorted({l['num_threads'] for l in threadpoolctl.threadpool_info() if l['user_api'] == 'blas'}))")
    r = _python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[1]"


def test_importing_tinydgm_does_not_import_threadpoolctl():
    r = _python("import sys, tinydgm; print('threadpoolctl' in sys.modules)")
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


def test_threads_for_follows_the_cores_others_leave_idle():
    threads_for = runtime.threads_for
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
    assert runtime.other_load((10.0, 4.0, 100.0), (13.0, 5.0, 102.0)) == pytest.approx(1.0)
    assert runtime.other_load((10.0, 4.0, 100.0), (10.0, 4.5, 101.0)) == 0.0     # clock ticks: never below 0
    assert runtime.other_load(None, (1.0, 1.0, 1.0)) is None
    assert runtime.other_load((1.0, 1.0, 1.0), (1.0, 1.0, 1.0)) is None           # no time between them


def test_a_job_beside_us_takes_a_thread_back(restore_threads, monkeypatch):
    """Readings (machine busy CPU s, our CPU s, time) on a fake clock: others' load since the last look decides."""
    import types
    cores, now = runtime.available_cores(), {"t": 0.0, "busy": 0.0, "reads": 0}

    def reading():
        now["reads"] += 1
        return now["busy"], 0.0, now["t"]

    def sleep(s):
        now["t"] += s
    monkeypatch.setattr(runtime, "_cpu_reading", reading)
    monkeypatch.setattr(runtime, "time", types.SimpleNamespace(monotonic=lambda: now["t"], sleep=sleep))
    assert runtime.set_auto_threads("eval") == cores                   # a quiet machine: every core
    now["t"] += 1.0
    reads = now["reads"]
    assert runtime.retune() is None and now["reads"] == reads          # under RETUNE_S: not even a look
    now["t"] += 2.0
    now["busy"] += 3.0 * cores                                            # others kept every core busy
    assert runtime.retune() == 1 and runtime.threads() == 1
    now["t"] += 3.0                                                       # and then went away
    assert runtime.retune() == cores and runtime.threads() == cores
    runtime.set_threads(1)                                             # a count asked for stays
    now["t"] += 3.0
    now["busy"] += 0.0
    assert runtime.retune() is None and runtime.threads() == 1


def test_the_load_is_read_where_the_system_tells_it():
    r = runtime._cpu_reading()
    if not os.path.isfile("/proc/stat"):
        assert r is None
        assert runtime.default_threads("eval") == 1
    else:
        busy, own, t = r
        assert busy >= 0 and own > 0 and t > 0


def test_default_threads():
    for kind in ("train", "eval", "narrow"):
        n = runtime.default_threads(kind)
        assert isinstance(n, int) and 1 <= n <= runtime.available_cores()
    assert runtime.default_threads("narrow") == 1
    with pytest.raises(ValueError, match="'eval', 'narrow', 'train'.*'sample'"):
        runtime.default_threads("sample")


def test_cores_are_those_this_process_may_use(monkeypatch, tmp_path):
    """Its CPU affinity, capped by a cgroup quota (v2 cpu.max, v1 cfs quota/period); no quota: the affinity."""
    monkeypatch.setattr(runtime, "_affinity", lambda: [0, 3, 5, 6])
    monkeypatch.setattr(runtime, "_cgroup_quota", lambda: None)
    assert runtime.available_cores() == 4
    monkeypatch.setattr(runtime, "_cgroup_quota", lambda: 2)
    assert runtime.available_cores() == 2
    assert runtime.threads_for("eval", 0.0) == 2
    monkeypatch.undo()
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert runtime._cgroup_quota(str(tmp_path)) == 2                 # 1.5 cores: a second thread has work
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert runtime._cgroup_quota(str(tmp_path)) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert runtime._cgroup_quota(str(tmp_path)) == 3
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert runtime._cgroup_quota(str(tmp_path)) is None
    assert runtime._cgroup_quota(str(tmp_path / "nowhere")) is None


def test_the_load_is_read_on_our_own_cores(monkeypatch, tmp_path):
    """Busy time (all but idle and iowait) summed over the cores in our affinity only: a busy core we may
    not run on is no reason to take fewer threads."""
    stat = tmp_path / "stat"
    stat.write_text("cpu  900 0 100 1000 0 0 0 0 0 0\n"
                    "cpu0 800 0 100 100 0 0 0 0 0 0\n"          # busy, but not ours
                    "cpu1 100 0 0 900 0 0 0 0 0 0\n"
                    "intr 1 2 3\n")
    tick = os.sysconf("SC_CLK_TCK")
    monkeypatch.setattr(runtime, "_affinity", lambda: [1])
    assert runtime._cpu_reading(str(stat))[0] == pytest.approx(100 / tick)
    monkeypatch.setattr(runtime, "_affinity", lambda: [0, 1])
    assert runtime._cpu_reading(str(stat))[0] == pytest.approx(1000 / tick)
    monkeypatch.setattr(runtime, "_affinity", lambda: None)          # the system does not say: the total
    assert runtime._cpu_reading(str(stat))[0] == pytest.approx(1000 / tick)
    stat.write_text("cpu  x y\n")
    assert runtime._cpu_reading(str(stat)) is None


def test_environment_threads():
    e = runtime.environment_threads
    assert e({}) is None and e({"OMP_NUM_THREADS": " "}) is None
    assert e({"OMP_NUM_THREADS": "3"}) == 3
    assert e({"OMP_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "1"}) == 1      # BLAS's own variable first
    assert e({"OMP_NUM_THREADS": "4,2"}) == 4                                  # OpenMP's nested form: the outer level
    for bad in ("0", "-2", "two", "1.5"):
        with pytest.raises(BackendError, match=f"MKL_NUM_THREADS='{bad}': expected a whole number"):
            e({"MKL_NUM_THREADS": bad})
