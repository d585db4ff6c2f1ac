"""Benchmarks: `python scripts/bench.py NAME [options]`, NAME one of the modules in scripts/benchmarks/.

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
        print(f"usage: python scripts/bench.py {{{'|'.join(names)}}} [options]", file=sys.stderr)
        return 2
    sys.path.insert(0, HERE)
    mod = importlib.import_module("benchmarks." + argv[0].replace("-", "_"))
    return mod.main(argv[1:]) or 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
