"""Benchmarks: `python scripts/bench.py NAME [options]`, NAME one of the modules in scripts/benchmarks/.

`--threads N` sets the BLAS (and PyTorch) thread count for every library in the run; on a
shared machine `--threads 1` keeps other processes from making BLAS threads spin.  (tinydgm's
commands do the same at run time with `tinydgm.backend.set_threads`; `bench.py threads` measures
the thread counts against each other and should run without `--threads`.)
Each benchmark measures the things it compares side by side, interleaved in one process, and
prints ratios (this machine is shared and noisy; absolute seconds are reported, not trusted).
"""
import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv):
    names = sorted(f[:-3].replace("_", "-") for f in os.listdir(os.path.join(HERE, "benchmarks"))
                   if f.endswith(".py") and not f.startswith("_"))
    if not argv or argv[0] not in names:
        print(f"usage: python scripts/bench.py {{{'|'.join(names)}}} [--threads N] [options]", file=sys.stderr)
        return 2
    if "--threads" in argv:           # must be set before NumPy (or PyTorch) is first imported
        i = argv.index("--threads")
        n = argv[i + 1]
        del argv[i:i + 2]
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = n
    sys.path.insert(0, HERE)
    mod = importlib.import_module("benchmarks." + argv[0].replace("-", "_"))
    from tinydgm.backend import BackendError
    try:
        return mod.main(argv[1:]) or 0
    except BackendError as e:                 # --device cuda without CuPy or a GPU
        print(f"bench.py {argv[0]}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
