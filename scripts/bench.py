"""Benchmarks: `python scripts/bench.py NAME [--threads N] [options]`, NAME one of the modules in scripts/benchmarks/.

`--threads N` sets the BLAS (and PyTorch) thread count for every library in the run; on a
shared machine `--threads 1` keeps other processes from making BLAS threads spin.  (tinydgm's
commands do the same at run time with `tinydgm.experiments.runtime.set_threads`; `bench.py threads` measures
the thread counts against each other and should run without `--threads`.)
Each benchmark measures the things it compares side by side, interleaved in one process, and
prints ratios (this machine is shared and noisy; absolute seconds are reported, not trusted).
`python scripts/bench.py NAME --help` lists a benchmark's own options.
"""
import argparse
import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from benchmarks._cli import HELP_FLAGS, Parser, integer, run  # noqa: E402  (after the path to benchmarks/)

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
BENCHMARKS = sorted(f[:-3].replace("_", "-") for f in os.listdir(os.path.join(HERE, "benchmarks"))
                    if f.endswith(".py") and not f.startswith("_"))


def parse(argv):
    """(NAME and --threads, the benchmark's own options); a mistake in the first two is one line, exit code 2."""
    p = Parser(prog="bench.py", usage="%(prog)s NAME [--threads N] [NAME's options]", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME", choices=BENCHMARKS, help=f"one of {', '.join(BENCHMARKS)}")
    p.add_argument("--threads", metavar="N", type=integer(1), help="BLAS (and PyTorch) threads for the whole run")
    named = any(a in BENCHMARKS for a in argv)          # then --help is the benchmark's
    args, rest = p.parse_known_args([a for a in argv if not (named and a in HELP_FLAGS)])
    return args, [a for a in argv if named and a in HELP_FLAGS] + rest


def main(argv):
    args, rest = parse(argv)
    if args.threads:                  # must be set before NumPy (or PyTorch) is first imported
        for var in THREAD_VARIABLES:
            os.environ[var] = str(args.threads)
    from tinydgm.experiments import runtime    # (after the thread variables: it loads NumPy)
    runtime.apply_allocator()                  # tinydgm's run-time policy, as the command line applies it
    module = "benchmarks." + args.name.replace("-", "_")
    return run(f"bench.py {args.name}", lambda: importlib.import_module(module).main(rest))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
