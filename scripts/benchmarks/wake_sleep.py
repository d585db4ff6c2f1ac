"""One wake+sleep step of a Helmholtz machine: the engine (`wake_sleep_step`) vs the delta rule by hand
(`wake_sleep_step_by_hand`, plain NumPy), from tinydgm/models/wake_sleep/model.py and by_hand.py.

    python scripts/bench.py wake-sleep [--threads 1] [--layers 200,200] [--batch 25 100] [--images 5000] [--rounds 7]
                                       [--device cpu|cuda]

Both steps share the sampler, the draws and the Adam optimisers, and both compute the same objective
values (wake log p(x, h), sleep log q(h~|x~)) that a training loop reports, so the ratio measures the
engine's forward and backward passes against the hand-written ones.  Rounds alternate who goes first, in one process, on the same batches of binarized
MNIST; the ratio is the median over rounds of (engine seconds / hand seconds).  The reweighted step
(K = 5, all three updates) is timed on the engine alone, for reference.  On `--device cuda` both steps
run on CuPy (the delta rule is written over the array module) and each round ends with a synchronisation.
"""
import json
import statistics
import time

import numpy as np

import tinydgm as td
from tinydgm import backend
from tinydgm.data.mnist import binarized_mnist
from tinydgm.models.wake_sleep import by_hand
from tinydgm.models.wake_sleep import model as ws
from tinydgm.backend import device_rng

from benchmarks._cli import Parser, first_paragraph, integer, integers


def stepper(step, layers, x_all, batch, seed, **kw):
    model = ws.HelmholtzMachine([784, *layers], rng=np.random.default_rng(seed))
    model.init_visible_bias(x_all)
    opt_p = td.optim.Adam(model.generative_parameters(), lr=1e-3)
    opt_q = td.optim.Adam(model.recognition_parameters(), lr=1e-3)
    rng = device_rng(np.random.default_rng(seed))

    def run(steps, start):
        for s in range(start, start + steps):
            i = (s * batch) % (len(x_all) - batch)
            step(model, x_all[i:i + batch], opt_p, opt_q, rng, **kw)
    return run


def timed(run, steps, start):
    t = time.perf_counter()
    run(steps, start)
    if backend.name() == "cupy":
        backend.xp().cuda.Device().synchronize()
    return time.perf_counter() - t


def main(argv):
    p = Parser(prog="bench.py wake-sleep", description=first_paragraph(__doc__))
    p.add_argument("--layers", type=integers(1, "200,200"), default="200,200", help="hidden sizes (default 200,200)")
    p.add_argument("--batch", type=integer(1), nargs="+", default=[25, 100])
    p.add_argument("--images", type=integer(1), default=5000, help="images per round and contender (default 5000)")
    p.add_argument("--rounds", type=integer(1), default=7)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = p.parse_args(argv)
    if args.device == "cuda":
        backend.use("cupy")
    x = backend.asarray(binarized_mnist("train")[:20000])
    for batch in args.batch:
        steps = max(1, args.images // batch)
        eng = stepper(ws.wake_sleep_step, args.layers, x, batch, 0)
        hnd = stepper(by_hand.wake_sleep_step_by_hand, args.layers, x, batch, 0)
        rws = stepper(ws.reweighted_step, args.layers, x, batch, 0, k=5)
        for run in (eng, hnd, rws):
            run(3, 0)                                          # warm up (allocator, BLAS)
        ratios, te, th, tr = [], [], [], []
        for r in range(args.rounds):
            order = [("e", eng), ("h", hnd)][:: 1 if r % 2 == 0 else -1]
            t = {name: timed(run, steps, r * steps) for name, run in order}
            te.append(t["e"])
            th.append(t["h"])
            ratios.append(t["e"] / t["h"])
            tr.append(timed(rws, steps, r * steps))
        images = steps * batch
        print(json.dumps({"bench": "wake-sleep", "device": args.device, "layers": [784, *args.layers], "batch": batch, "images_per_round": images,
                          "rounds": args.rounds, "ratio_engine_over_hand": round(statistics.median(ratios), 3),
                          "engine_images_per_s": round(images / statistics.median(te)),
                          "hand_images_per_s": round(images / statistics.median(th)),
                          "rws_k5_engine_images_per_s": round(images / statistics.median(tr)),
                          "ratios": [round(v, 3) for v in ratios]}), flush=True)
