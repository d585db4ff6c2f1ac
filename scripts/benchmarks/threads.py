"""BLAS threads: tinydgm's default, one, the BLAS library's own default and all cores, quiet and busy.

    python scripts/bench.py threads [--rounds 5] [--seconds 0.5] [--limit 900]

Three workloads on random binary data (784-200-200-50, as in the commands):
  vae-train   one VAE training step at batch 100 (VAE.elbo, backward, Adam)
  ws-train    one wake-sleep step at batch 25 (HelmholtzMachine, wake_sleep_step)
  vae-eval    VAE.iwae_bound with k = 1000 on 10 images under no_grad (what `tinydgm eval` does)
Each round measures every workload at every fixed thread count (switched at run time with
tinydgm.experiments.runtime.set_threads, the order reversed every other round) and then at tinydgm's
default (runtime.default_threads with the kind of work the command asks for, chosen once for a training
step as `tinydgm train` does, and retuned every step for the evaluation as `tinydgm eval` does; the
0.1 s look at the machine is not in ms/step), first on the machine as it is
("quiet"), then beside one CPU-burning process per core ("busy": a tight Python loop, started for
the round and stopped after it, never alive past --limit seconds).  A measurement runs steps for
--seconds after one untimed step.  Ratios are taken within a round against the fixed count with the
lowest median, then the median over rounds; the last lines check tinydgm's default against the
targets (within 5% of the best on a quiet machine, 1.3x on a busy one).  The machine is shared: "quiet" means no burners of
ours, not an idle machine (the load average is printed).
"""
import json
import multiprocessing
import os
import statistics
import time

import numpy as np

import tinydgm as td
from tinydgm import backend
from tinydgm.experiments import runtime
from tinydgm.backend import device_rng
from tinydgm.errors import UserError
from tinydgm.models.vae import VAE
from tinydgm.models.wake_sleep import HelmholtzMachine, wake_sleep_step

from benchmarks._cli import Parser, first_paragraph, integer, number

KINDS = {"vae-train": "train", "ws-train": "narrow", "vae-eval": "eval"}   # the kind each command asks for
AUTO = "auto"                    # tinydgm's default: chosen for the kind of work (retuned while evaluating)
MARGIN_S = 30                    # no half-round starts this close to --limit


# ---------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------

def vae_train(x, batch=100, seed=0):
    model = VAE(784, (200, 200), 50, rng=np.random.default_rng(seed))
    opt = td.optim.Adam(model.parameters(), lr=1e-3)
    draw, state = device_rng(np.random.default_rng(seed)), {"s": 0}

    def step():
        i = (state["s"] * batch) % (len(x) - batch)
        state["s"] += 1
        loss = -td.mean(model.elbo(x[i:i + batch], rng=draw))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def ws_train(x, batch=25, seed=0):
    model = HelmholtzMachine((784, 200, 200), rng=np.random.default_rng(seed))
    model.init_visible_bias(x)
    opt_p = td.optim.Adam(model.generative_parameters(), lr=1e-3)
    opt_q = td.optim.Adam(model.recognition_parameters(), lr=1e-3)
    draw, state = device_rng(np.random.default_rng(seed)), {"s": 0}

    def step():
        i = (state["s"] * batch) % (len(x) - batch)
        state["s"] += 1
        wake_sleep_step(model, x[i:i + batch], opt_p, opt_q, draw)
    return step


def vae_eval(x, images=10, k=1000, seed=0):
    model = VAE(784, (200, 200), 50, rng=np.random.default_rng(seed))
    draw = device_rng(np.random.default_rng(seed))

    def step():
        with td.no_grad():
            model.iwae_bound(x[:images], k, rng=draw)
    return step


# ---------------------------------------------------------------------------------------------
# Busy cores
# ---------------------------------------------------------------------------------------------

def _burn(stop, deadline):
    x = 0
    while not stop.is_set() and time.time() < deadline:
        for _ in range(20000):
            x += 1


class Burners:
    """One CPU-burning process per core while in the `with` block (each ends by `deadline` anyway)."""

    def __init__(self, n, deadline):
        methods = multiprocessing.get_all_start_methods()
        self.ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self.n, self.deadline = n, deadline

    def __enter__(self):
        self.stop = self.ctx.Event()
        self.procs = [self.ctx.Process(target=_burn, args=(self.stop, self.deadline), daemon=True)
                      for _ in range(self.n)]
        for p in self.procs:
            p.start()
        time.sleep(0.2)                         # let them reach full speed
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for p in self.procs:
            p.join(timeout=2)
            if p.is_alive():
                p.terminate()
                p.join()


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------

class OtherJobs:
    """Cores used by the rest of the machine (all CPU time in /proc/stat less ours) while in the block."""

    def __enter__(self):
        self.start = self._read()
        return self

    def __exit__(self, *exc):
        end = self._read()
        self.cores = None if None in (self.start, end) else \
            max(0.0, ((end[0] - self.start[0]) - (end[1] - self.start[1])) / (end[2] - self.start[2]))

    @staticmethod
    def _read():
        try:
            with open("/proc/stat") as f:
                v = [int(a) for a in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        own = os.times()
        return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK"), own.user + own.system, time.monotonic()


def ms_per_step(step, n, seconds, kind):
    """Milliseconds per step at `n` threads, or (n = AUTO) at the count tinydgm's commands choose, as they do:
    measured on the machine at the start, and for an evaluation retuned as it goes."""
    t0 = time.perf_counter()
    if n == AUTO and kind == "eval":
        runtime.set_auto_threads(kind)
    elif n == AUTO:
        runtime.set_threads(runtime.default_threads(kind))
    else:
        runtime.set_threads(n)
    step()                                      # untimed: the thread pool settles after the switch
    setup, t0, steps = time.perf_counter() - t0, time.perf_counter(), 0
    while True:
        runtime.retune()
        step()
        steps += 1
        t = time.perf_counter() - t0
        if t >= seconds:
            return 1e3 * t / steps, runtime.threads(), setup


def label(n, default, cores, chosen=()):
    if n == AUTO:
        return f"tinydgm default ({'/'.join(map(str, sorted(set(chosen))))})"
    names = [name for name, m in (("BLAS's own", default), ("all cores", cores)) if m == n]
    return f"{n} ({', '.join(names)})" if names else str(n)


def main(argv):
    p = Parser(prog="bench.py threads", description=first_paragraph(__doc__))
    p.add_argument("--rounds", type=integer(1), default=5)
    p.add_argument("--seconds", type=number(0), default=0.5, help="timed seconds per measurement (default 0.5)")
    p.add_argument("--limit", type=number(MARGIN_S), default=900,
                   help=f"burners stop after this many seconds at most (default 900; no half-round starts in the "
                        f"last {MARGIN_S})")
    args = p.parse_args(argv)
    if backend.name() != "numpy":
        raise UserError("measures CPU threads; run it on the numpy backend")
    default, cores = runtime.threads(), os.cpu_count()    # before anything limits them
    settings = sorted({1, default, cores}) + [AUTO]
    load = [round(v, 2) for v in os.getloadavg()]
    env = {var: os.environ.get(var, "unset") for var in runtime.THREAD_VARIABLES}
    print(f"cpus {cores}, BLAS threads at startup {default}, load average {load}, {env}", flush=True)

    x = (np.random.default_rng(1).random((2000, 784)) < 0.5).astype(np.float32)
    steps = {"vae-train": vae_train(x), "ws-train": ws_train(x), "vae-eval": vae_eval(x)}
    times = {(c, w, n): [] for c in ("quiet", "busy") for w in steps for n in settings}
    chosen = {(c, w): [] for c in ("quiet", "busy") for w in steps}      # the counts AUTO ended on
    deadline, others = time.time() + args.limit, []
    for r in range(args.rounds):
        order = settings if r % 2 == 0 else settings[-2::-1] + [AUTO]   # auto last: it measures the machine
        for condition in ("quiet", "busy"):
            if time.time() > deadline - MARGIN_S:
                break
            with Burners(cores, deadline) if condition == "busy" else OtherJobs() as watch:
                for w, step in steps.items():
                    for n in order:
                        ms, n_used, _ = ms_per_step(step, n, args.seconds, KINDS[w])
                        times[condition, w, n].append(ms)
                        if n == AUTO:
                            chosen[condition, w].append(n_used)
            if condition == "quiet" and watch.cores is not None:
                others.append(watch.cores)
        print(f"round {r + 1}/{args.rounds} done" +
              (f"; other jobs used {others[-1]:.2f} of {cores} cores in the quiet half" if others else ""), flush=True)
    runtime.restore_threads()

    rows = []
    print(f"\n{'condition':9} {'workload':10} {'threads':22} {'ms/step':>9} {'ratio to best':>14}   rounds' range")
    for condition in ("quiet", "busy"):
        for w in steps:
            if not times[condition, w, AUTO]:           # --limit came before this half was measured
                continue
            med = {n: statistics.median(times[condition, w, n]) for n in settings}
            best = min(settings[:-1], key=med.get)      # the best fixed count
            for n in settings:
                ratios = [a / b for a, b in zip(times[condition, w, n], times[condition, w, best])]
                ratio = statistics.median(ratios)
                rows.append({"condition": condition, "workload": w, "threads": n, "ms_per_step": round(med[n], 2),
                             "ratio_to_best": round(ratio, 3), "ratios": [round(v, 3) for v in ratios],
                             **({"chosen": chosen[condition, w]} if n == AUTO else {})})
                print(f"{condition:9} {w:10} {label(n, default, cores, chosen[condition, w]):22} {med[n]:9.2f} {ratio:14.3f}"
                      f"   {min(ratios):.2f}-{max(ratios):.2f}")
    print()
    worst = {}
    for row in rows:
        if row["threads"] == AUTO:
            key = (row["workload"], row["condition"])
            worst[key] = row["ratio_to_best"]
    for w in steps:
        print(f"tinydgm default for {w} ({KINDS[w]!r}): ratio to the best fixed count, quiet "
              f"{worst.get((w, 'quiet'), 'n/a')}, busy {worst.get((w, 'busy'), 'n/a')} (targets: quiet <= 1.05, busy <= 1.3)")
    if others:
        print(f"other jobs on the machine during the quiet rounds: median {statistics.median(others):.2f} "
              f"of {cores} cores, max {max(others):.2f}")
    print(json.dumps({"bench": "threads", "cpus": cores, "startup_threads": default, "load_average": load,
                      "other_jobs_cores_quiet": [round(c, 2) for c in others],
                      "seconds": args.seconds, "rounds": args.rounds, "results": rows,
                      "kinds": KINDS, "policy": runtime.DEFAULT_THREADS,
                      "ratio_of_default": {f"{w}/{c}": v for (w, c), v in worst.items()}}), flush=True)
