"""Every gradient estimator's training step on the same sigmoid belief net, against the wake-sleep step at the same K
(the estimators of tinydgm/estimators/, each made by name from its registry), and reweighted wake-sleep on the engine
vs by hand (tinydgm/models/wake_sleep/by_hand.py).

    python scripts/bench.py estimators [--threads 1] [--layers 200,200] [--batch 25] [--k 5] [--images 2500] [--rounds 5]
                                       [--device cpu|cuda]

K = 1: wake-sleep (the reference), REINFORCE, NVIL, relaxed (Concrete densities), straight-through.
K = k: reweighted wake-sleep (the reference, all three updates), VIMCO; and reweighted wake-sleep by hand.
Each contender has its own nets (784-layers) and Adam optimisers, built from the same seed, and steps through the
same batches of binarized MNIST.  In each round every contender runs `images` images, in an order that rotates
from round to round, in one process; a ratio is the median over rounds of (contender's seconds / reference's
seconds) in the same round: time per image relative to the reference (target: <= 1.2 for the estimators, <= 1.15
for reweighted wake-sleep on the engine against by hand).  Absolute images/s are reported, not trusted.
"""
import json
import statistics

import tinydgm as td
from tinydgm import backend
from tinydgm.data.mnist import binarized_mnist
from tinydgm import estimators
from tinydgm.models.wake_sleep import by_hand
from tinydgm.models.wake_sleep import model as ws

from benchmarks._cli import Parser, first_paragraph, integer, integers
from benchmarks.wake_sleep import stepper, timed      # the same nets, optimisers and batches as that bench


def contenders(layers, x, batch, k):
    """(group, name, run): the first of each group is its reference."""
    def make(step, **kw):
        return stepper(step, layers, x, batch, 0, **kw)

    def estimator(name, **opts):
        """A step of the registry's estimator `name` (its own optimiser for NVIL's baselines, made on first use)."""
        state = {}

        def step(model, xb, opt_p, opt_q, rng):
            if not state:
                state["est"] = estimators.make(name, model, rng=0, **opts)
                own = state["est"].parameters()
                state["opts"] = (td.optim.Adam(own, lr=1e-3),) if own else ()
            return state["est"].step(model, xb, (opt_p, opt_q) + state["opts"], rng)
        return make(step)
    return [("K=1", "wake-sleep", estimator("ws")),
            ("K=1", "reinforce", estimator("reinforce")),
            ("K=1", "nvil", estimator("nvil")),
            ("K=1", "relaxed", estimator("relaxed", temperature=0.5)),
            ("K=1", "straight-through", estimator("straight-through", temperature=1.0)),
            (f"K={k}", "reweighted", estimator("rws", k=k)),
            (f"K={k}", "vimco", estimator("vimco", k=k)),
            ("by hand", "reweighted by hand", make(by_hand.reweighted_step_by_hand, k=k)),
            ("by hand", "reweighted (engine)", make(ws.reweighted_step, k=k))]


def main(argv):
    p = Parser(prog="bench.py estimators", description=first_paragraph(__doc__))
    p.add_argument("--layers", type=integers(1, "200,200"), default="200,200", help="hidden sizes (default 200,200)")
    p.add_argument("--batch", type=integer(1), default=25)
    p.add_argument("--k", type=integer(1), default=5, help="samples per image for reweighted wake-sleep and VIMCO (default 5)")
    p.add_argument("--images", type=integer(1), default=2500, help="images per round and contender (default 2500)")
    p.add_argument("--rounds", type=integer(1), default=5)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = p.parse_args(argv)
    if args.device == "cuda":
        backend.use("cupy")
    x = backend.asarray(binarized_mnist("train")[:20000])
    steps = max(1, args.images // args.batch)
    runs = contenders(args.layers, x, args.batch, args.k)
    for _, _, run in runs:
        run(3, 0)                                                  # warm up (allocator, BLAS)
    seconds = {name: [] for _, name, _ in runs}
    for r in range(args.rounds):
        order = runs[r % len(runs):] + runs[:r % len(runs)]
        for _, name, run in order:
            seconds[name].append(timed(run, steps, r * steps))
    images = steps * args.batch
    rows, reference = [], {}
    for group, name, _ in runs:
        reference.setdefault(group, name)
        ref = reference[group]
        ratios = [t / t_ref for t, t_ref in zip(seconds[name], seconds[ref])]
        rows.append({"group": group, "step": name, "images_per_s": round(images / statistics.median(seconds[name])),
                     "time_per_image_vs": ref, "ratio": round(statistics.median(ratios), 3),
                     "ratios": [round(v, 3) for v in ratios]})
    print(json.dumps({"bench": "estimators", "device": args.device, "layers": [784, *args.layers], "batch": args.batch,
                      "k": args.k, "images_per_round": images, "rounds": args.rounds, "steps": rows}), flush=True)
    print(f"\n| group | step | images/s | time per image vs | ratio (median of {args.rounds}) |\n|---|---|---:|---|---:|")
    for row in rows:
        print(f"| {row['group']} | {row['step']} | {row['images_per_s']:,} | {row['time_per_image_vs']} | {row['ratio']:.2f} |")
