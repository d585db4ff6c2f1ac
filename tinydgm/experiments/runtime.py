"""The run-time policy of tinydgm's commands and scripts: how many threads BLAS may use, and how glibc's
allocator keeps freed memory.

Nothing here acts when it is imported, and nothing below the experiments layer imports it: importing
tinydgm leaves the process as it found it.  The command line (`tinydgm.cli`) and the scripts apply the
policy when they start: `apply_allocator()`, then a thread count (`experiments.options.use_threads`, or
`set_threads` / `set_auto_threads` here).  threadpoolctl is loaded when first needed.
"""
import ctypes
import numbers
import os
import platform
import time

from tinydgm.errors import BackendError


# ---------------------------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------------------------
# OpenBLAS starts one thread per core and lets idle threads spin.  On a machine shared with other
# jobs they fight over the cores and a small training step runs 7-19x slower than on one thread.
# `set_threads` limits BLAS and OpenMP at run time (threadpoolctl), after NumPy is loaded: BLAS reads
# the environment variables only as it loads.  What is fastest depends on the work and on the machine
# (`python scripts/bench.py threads`, shared 2-core machine): with the other core idle, two threads
# beat one by 7-9% on a VAE step (batch 100) and 7-35% on an IWAE batch (k = 1000), but lose 8% on
# a wake-sleep step (batch 25); beside one busy process per core more threads were 1.4-18x slower
# than one.  So a command asks for a kind of work:
#   "narrow"  small matrices (wake-sleep at batch 25, the HMM): one thread, quiet or busy;
#   "train", "eval"  wide enough to gain from threads: one per core (of those this process may use:
#             its CPU affinity, capped by a cgroup CPU quota) that the rest of the machine leaves
#             idle, measured from /proc/stat over those cores (all CPU time less this process's).
# A count set in the environment at start-up (OPENBLAS_NUM_THREADS, MKL_NUM_THREADS, OMP_NUM_THREADS)
# is the user's choice, kept as a `--threads N` would be (`environment_threads`).
# Float32 matrix products differ in their last bits between thread counts, so training fixes its count
# once per run (and a resumed run reuses it); only an evaluation follows the load as it goes
# (`set_auto_threads` + `retune()`, at least every RETUNE_S seconds), so that a job starting beside
# it takes its core back within a few chunks.
# Where the load cannot be read (no /proc/stat), "train" and "eval" take one thread.

DEFAULT_THREADS = {"train": "idle cores", "eval": "idle cores", "narrow": 1}
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")   # BLAS's own first
RETUNE_S = 2.0
_threads = {"limiter": None, "environ": None}   # the first limit (it remembers the libraries' own counts)
_auto = {"kind": None, "reading": None}          # while `set_auto_threads(kind)` is in force


def _cgroup_quota(root="/sys/fs/cgroup"):
    """The cores a cgroup CPU quota allows (quota / period, rounded up), or None where there is none."""
    for quota_file, period_file in (("cpu.max", None), ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us"),
                                    ("cpu,cpuacct/cpu.cfs_quota_us", "cpu,cpuacct/cpu.cfs_period_us")):
        try:
            with open(os.path.join(root, quota_file)) as f:
                fields = f.read().split()
            if period_file:
                with open(os.path.join(root, period_file)) as f:
                    fields += f.read().split()
            quota, period = fields[0], fields[1]
            if quota in ("max", "-1"):
                return None
            return max(1, -(-int(quota) // int(period)))
        except (OSError, ValueError, IndexError, ZeroDivisionError):
            continue
    return None


def _affinity():
    """The CPUs this process may run on (their numbers), or None where the system does not say."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def available_cores():
    """How many cores this process can use: its CPU affinity, capped by a cgroup CPU quota (a container)."""
    cpus = _affinity()
    n = len(cpus) if cpus else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    return min(n, quota) if quota else n


def environment_threads(environ=None):
    """The BLAS thread count the environment asked for at start-up (the first of THREAD_VARIABLES set), or
    None; a value that is not a count is a BackendError naming the variable."""
    environ = _threads["environ"] if environ is None and _threads["environ"] is not None else environ
    environ = os.environ if environ is None else environ
    for var in THREAD_VARIABLES:
        value = environ.get(var)
        if value is None or not value.strip():
            continue
        try:
            n = int(value.split(",")[0])        # OpenMP's nested form "4,2": the outer level
        except ValueError:
            n = 0
        if n < 1:
            raise BackendError(f"{var}={value!r}: expected a whole number of threads >= 1 (or unset it)")
        return n
    return None


def _cpu_reading(stat="/proc/stat"):
    """(busy CPU seconds of the cores this process may use, this process's CPU seconds, monotonic time),
    or None."""
    cpus = _affinity()
    try:
        with open(stat) as f:
            lines = [line.split() for line in f if line.startswith("cpu")]
        tick = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    mine = [f for f in lines if cpus and f[0][3:].isdigit() and int(f[0][3:]) in cpus]
    rows = mine or [f for f in lines if f[0] == "cpu"]        # no per-core lines: the machine's total
    try:
        jiffies = [[int(v) for v in f[1:9]] for f in rows]
    except ValueError:
        return None
    if not jiffies or any(len(j) < 5 for j in jiffies):
        return None
    own = os.times()
    return sum(sum(j) - j[3] - j[4] for j in jiffies) / tick, own.user + own.system, time.monotonic()


def other_load(before, after):
    """Cores the rest of the machine kept busy between two `_cpu_reading()`s (None if either is None)."""
    if before is None or after is None or after[2] <= before[2]:
        return None
    return max(0.0, ((after[0] - before[0]) - (after[1] - before[1])) / (after[2] - before[2]))


def threads_for(kind, others, cores=None, span=None):
    """Threads for work of `kind` with `others` cores busy elsewhere (None: unknown): the policy above.
    `span`: the cores the load was read over (our affinity; default `cores`), `cores`: how many we may use
    (`available_cores()`: a quota may allow fewer than the span holds)."""
    if kind not in DEFAULT_THREADS:
        raise ValueError(f"kind must be one of {sorted(DEFAULT_THREADS)}, not {kind!r}")
    if DEFAULT_THREADS[kind] == 1 or others is None:
        return 1
    if cores is None:
        cores, span = available_cores(), span or len(_affinity() or ()) or None
    span = span or cores
    return max(1, min(cores, int(span - others + 0.5)))


def default_threads(kind, window=0.1):
    """The BLAS thread count for work of `kind` ("train", "eval" or "narrow") on the machine as it is now,
    its load measured over `window` seconds."""
    if kind not in DEFAULT_THREADS:
        raise ValueError(f"kind must be one of {sorted(DEFAULT_THREADS)}, not {kind!r}")
    if DEFAULT_THREADS[kind] == 1:
        return 1
    before = _cpu_reading()
    time.sleep(window if before is not None else 0)
    return threads_for(kind, other_load(before, _cpu_reading()))


def set_auto_threads(kind, window=0.1):
    """`set_threads(default_threads(kind))`, kept up to date by `retune()` (for evaluation: training fixes
    its count, `set_threads(default_threads(kind))`); returns the count in force."""
    n = set_threads(default_threads(kind, window))
    _auto.update(kind=kind, reading=_cpu_reading())
    return n


def retune():
    """Under `set_auto_threads`, at most every RETUNE_S seconds: the thread count for the load since the last
    look (others' CPU time only).  Cheap to call per batch; a no-op after a plain `set_threads`."""
    if _auto["kind"] is None or _auto["reading"] is None or time.monotonic() - _auto["reading"][2] < RETUNE_S:
        return None                               # (the clock first: /proc/stat is read once per RETUNE_S)
    now = _cpu_reading()
    if now is None:
        return None
    n = threads_for(_auto["kind"], other_load(_auto["reading"], now))
    _auto["reading"] = now
    if n != threads():
        set_threads(n, keep_auto=True)
    return n


def set_threads(n, keep_auto=False):
    """Let BLAS and OpenMP use at most `n` threads for the rest of the process; returns the BLAS count in force."""
    if not keep_auto:
        _auto.update(kind=None, reading=None)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise BackendError(f"the number of threads must be a whole number of at least 1, not {n!r}")
    from threadpoolctl import threadpool_limits
    if _threads["environ"] is None:
        _threads["environ"] = {var: os.environ.get(var) for var in THREAD_VARIABLES}
    for var in THREAD_VARIABLES:            # libraries loaded later (SciPy's own OpenBLAS), child processes
        os.environ[var] = str(int(n))
    limiter = threadpool_limits(limits=int(n))          # libraries loaded now
    if _threads["limiter"] is None:
        _threads["limiter"] = limiter
    return threads()


def restore_threads():
    """Undo `set_threads`: the thread counts and environment from before its first call; returns the BLAS count."""
    if _threads["limiter"] is not None:
        _threads["limiter"].restore_original_limits()
        for var, value in _threads["environ"].items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        _threads.update(limiter=None, environ=None)
    _auto.update(kind=None, reading=None)
    return threads()


def threads_limited():
    """Whether `set_threads` is in force (not yet undone by `restore_threads`)."""
    return _threads["limiter"] is not None


def save_threads():
    """What `put_back_threads` restores: the limit in force now (if any) and whether it follows the load."""
    return (threads() if threads_limited() else None), dict(_auto)


def put_back_threads(saved):
    """The thread limit as `save_threads()` found it: none (restore_threads), or the count and its retuning."""
    n, auto = saved
    if n is None:
        restore_threads()
    else:
        set_threads(n)
        _auto.update(auto)


def threads():
    """The number of threads BLAS may use now (the most over the BLAS libraries loaded; 1 if none is found)."""
    from threadpoolctl import threadpool_info
    return max((lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"), default=1)


# ---------------------------------------------------------------------------------------------
# The allocator policy (the one place where it is set)
# ---------------------------------------------------------------------------------------------
# A training step allocates the same large temporaries (activations, their gradients) every
# step.  glibc's malloc hands blocks above 128 KiB to mmap and trims the heap top as soon as it is
# free, so each step re-faults the same pages from the OS: about 40% of a NumPy VAE step on this
# workload.  We keep freed memory in the process instead (what MALLOC_TOP_PAD_/MALLOC_MMAP_THRESHOLD_
# do from the environment): `apply_allocator()`, called by the command line and the scripts when they
# start, never on import.  Set TINYDGM_MALLOC=0 to leave the allocator alone.

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3


def tune_allocator(top_pad=64 << 20, mmap_threshold=32 << 20, trim_threshold=512 << 20):
    """Ask glibc to keep freed memory for reuse; returns True where it applied."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    ok = libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)
    ok &= libc.mallopt(M_TRIM_THRESHOLD, trim_threshold)
    ok &= libc.mallopt(M_TOP_PAD, top_pad)
    return bool(ok)


_allocator = {"tuned": False}


def apply_allocator():
    """The allocator policy for the rest of the process (once; not with TINYDGM_MALLOC=0); returns whether it
    is in force."""
    if not _allocator["tuned"] and os.environ.get("TINYDGM_MALLOC", "1") != "0":
        _allocator["tuned"] = tune_allocator()
    return _allocator["tuned"]


def allocator_tuned():
    """Whether `apply_allocator` has tuned glibc's allocator in this process."""
    return _allocator["tuned"]
