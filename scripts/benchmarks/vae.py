"""One VAE training step: the VAE class on the engine vs the hand-derived NumPy step (tinydgm.models.vae.by_hand).

    python scripts/bench.py vae [--batch 100 1000] [--steps 50] [--rounds 7] [--device cpu|cuda]

Rounds alternate the two steps in one process on the same batches of binarized MNIST; the ratio
is the median over rounds of (engine seconds / hand seconds).  On --device cuda only the engine
runs (the hand step is NumPy) and steps/s are printed.
"""
import json
import statistics
import time

import numpy as np

import tinydgm as td
from tinydgm import backend
from tinydgm.data.mnist import binarized_mnist
from tinydgm.models.vae import by_hand as hand
from tinydgm.models.vae import VAE
from tinydgm.backend import device_rng

from benchmarks._cli import Parser, first_paragraph, integer


def engine_stepper(x_all, batch, seed):
    model = VAE(rng=np.random.default_rng(seed))
    opt = td.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    draw = device_rng(rng)

    def run(steps, start):
        for s in range(start, start + steps):
            x = x_all[(s * batch) % len(x_all):][:batch]
            loss = -td.mean(model.elbo(x, rng=draw))
            opt.zero_grad()
            loss.backward()
            opt.step()
        return loss.item()
    return run


def hand_stepper(x_all, batch, seed):
    params = hand.init_params(np.random.default_rng(seed))
    opt, work, grads = hand.adam(params, lr=1e-3), {}, {}
    grads.update({n: np.empty_like(p) for n, p in params.items()})
    rng = np.random.default_rng(seed)

    def run(steps, start):
        for s in range(start, start + steps):
            x = x_all[(s * batch) % len(x_all):][:batch]
            eps = rng.standard_normal((len(x), 50), dtype=np.float32)
            loss = hand.train_step(params, opt, x, eps, grads, work)
        return loss
    return run


def timed(run, steps, start):
    t = time.perf_counter()
    loss = run(steps, start)
    if backend.name() == "cupy":
        backend.xp().cuda.Device().synchronize()
    return time.perf_counter() - t, loss


def main(argv):
    p = Parser(prog="bench.py vae", description=first_paragraph(__doc__))
    p.add_argument("--batch", type=integer(1), nargs="+", default=[100, 1000])
    p.add_argument("--steps", type=integer(1), default=50, help="steps per round (default 50)")
    p.add_argument("--rounds", type=integer(1), default=7)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = p.parse_args(argv)
    x_np = binarized_mnist("train")[:20000]
    if args.device == "cuda":
        backend.use("cupy")
    x = backend.asarray(x_np)
    for batch in args.batch:
        steps = max(5, args.steps * 100 // batch) if batch > 100 else args.steps
        eng = engine_stepper(x, batch, 0)
        eng(3, 0)                                        # warm up (allocator, BLAS)
        if args.device == "cuda":
            times = [timed(eng, steps, r * steps)[0] for r in range(args.rounds)]
            med = statistics.median(times)
            print(json.dumps({"bench": "vae", "device": "cuda", "batch": batch,
                              "engine_steps_per_s": round(steps / med, 1),
                              "engine_images_per_s": round(steps * batch / med)}), flush=True)
            continue
        hnd = hand_stepper(x_np, batch, 0)
        hnd(3, 0)
        ratios, te, th = [], [], []
        for r in range(args.rounds):
            a, b = (eng, hnd) if r % 2 == 0 else (hnd, eng)    # alternate who goes first
            ta, _ = timed(a, steps, r * steps)
            tb, _ = timed(b, steps, r * steps)
            t_eng, t_hand = (ta, tb) if a is eng else (tb, ta)
            te.append(t_eng / steps)
            th.append(t_hand / steps)
            ratios.append(t_eng / t_hand)
        print(json.dumps({"bench": "vae", "device": "cpu", "batch": batch, "steps_per_round": steps,
                          "rounds": args.rounds, "ratio_engine_over_hand": round(statistics.median(ratios), 3),
                          "engine_ms_per_step": round(1e3 * statistics.median(te), 2),
                          "hand_ms_per_step": round(1e3 * statistics.median(th), 2),
                          "engine_s_per_epoch": round(50000 / batch * statistics.median(te), 2),
                          "ratios": [round(v, 3) for v in ratios]}), flush=True)
