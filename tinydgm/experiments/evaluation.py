"""`tinydgm eval RUN` for every model with an importance-weighted bound: test NLL = -L_k over a split
or a shard of it (`--start/--limit`, run in parallel), and `--combine` to merge the shards.

A model's experiment module hands over an `Evaluation`: the model, its run, how to load a split,
the per-image means to report beside the NLL (averaged over shards by n) and the figures that do
not average (computed on the images evaluated, and again on the whole split by `--combine`).
"""
import json
import math
import os
import re
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tinydgm import backend
from tinydgm.errors import UserError
from tinydgm.experiments import options
from tinydgm.metrics import iw_nll


@dataclass
class Evaluation:
    model: object
    run: object
    load: Callable                # split -> NumPy array of images
    per_image: Callable           # (x, seed) -> {name: mean over x}, written as SPLIT_name
    whole: Callable               # (x, seed, shard) -> {name: value} that do not average over shards
    nll_options: Callable = lambda k: {}   # k -> keywords of iw_nll (chunk, batch_size)


def prepare(args, load):
    """Check the options, switch the device, and return `load(RUN, --checkpoint)`: (model, run)."""
    check(args)
    options.use_device(args.device)
    return load(args.run_dir, args.checkpoint)


def check(args):
    """--k, --limit and --start in range, and --combine alone; one line otherwise."""
    for flag, value, least in (("--k", args.k, 1), ("--limit", args.limit, 1), ("--start", args.start, 0)):
        if value is not None and value < least:
            raise UserError(f"{flag}: expected an integer >= {least}, got {value}")
    if args.combine and (args.start or args.limit):
        raise UserError("--combine merges the shards already evaluated: give it no --start or --limit")


def evaluate(ev, args):
    """NLL = -L_k over the split or a shard of it, the model's per-image means, the whole-split figures; writes eval-*.json."""
    if args.combine:
        return combine(ev, args)
    split = ev.load(args.split)
    x = backend.asarray(split[args.start:][:args.limit])
    if len(x) == 0:
        raise UserError(f"--start {args.start}: the {args.split} split has no images from there on")
    shard = bool(args.start or args.limit)
    t0 = time.perf_counter()
    means = {f"{args.split}_{key}": v for key, v in ev.per_image(x, args.seed).items()}
    nll = iw_nll(ev.model, x, args.k, rng=np.random.default_rng(args.seed), progress=not args.quiet,
                 **ev.nll_options(args.k))
    whole = ev.whole(x, args.seed, shard)
    result = {"run": ev.run.dir, "checkpoint": args.checkpoint, "epochs_trained": checkpoint_epochs(ev.run, args.checkpoint),
              "split": args.split, "start": args.start, "n": len(x), "k": args.k, "seed": args.seed, f"{args.split}_nll": nll, **means, **whole,
              "time_s": round(time.perf_counter() - t0, 1)}
    part = f"-from{args.start}" * bool(args.start) + f"-n{len(x)}" * shard
    _write(ev.run, f"{_stem(args)}{part}.json", result)


def _stem(args):
    """One file name per distinct request: split, k, checkpoint and seed (the defaults, best and 0, unnamed)."""
    return (f"eval-{args.split}-k{args.k}" + f"-{args.checkpoint}" * (args.checkpoint != "best")
            + f"-seed{args.seed}" * (args.seed != 0))


def combine(ev, args):
    """eval-SPLIT-kK.json from one checkpoint's shards eval-SPLIT-kK[-fromS]-nN.json that tile the split, weighted by n."""
    run, split, k, stem, shards = ev.run, args.split, args.k, _stem(args), []
    for name in sorted(os.listdir(run.dir)):
        if not re.fullmatch(re.escape(stem) + r"(-from\d+)?-n\d+\.json", name):
            continue
        try:
            with open(run.path(name)) as f:
                r = json.load(f)
            r[f"{split}_nll"]
            if not all(isinstance(r[key], int) and r[key] >= 0 for key in ("start", "n")):
                raise TypeError("start and n must be image counts")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UserError(f"{run.path(name)}: not a shard written by tinydgm eval ({e}); move it away") from None
        if r.get("checkpoint", "best") == args.checkpoint:
            shards.append((r["start"], name, r))
    epochs = checkpoint_epochs(run, args.checkpoint)       # shards of an earlier `best` (training went on): left out
    stale = sorted(name for _, name, r in shards if r.get("epochs_trained") not in (None, epochs))
    shards = [t for t in shards if t[1] not in stale]
    if not shards:
        raise UserError(f"{run.dir}: no shards {stem}[-fromS]-nN.json to combine"
                        + f" (of its {args.checkpoint} checkpoint after {epochs} epochs)" * bool(stale) + "; make them with "
                        f"tinydgm eval {run.dir} --k {k} --split {split} --start S --limit N (same --checkpoint, --seed)")
    data = ev.load(split)
    total = len(data)
    chain, reach = _chain(shards, total)
    if chain is None and not reach:
        raise UserError(f"{run.dir}: no {split} shard starts at image 0; evaluate one with --limit N")
    if chain is None:
        raise UserError(f"{run.dir}: the {split} shards cover images 0-{reach - 1} of {total} one after another "
                        f"(then a gap); evaluate the rest with --start {reach}")
    unused = sorted(stale + [name for _, name, _ in shards if name not in {name for _, name, _ in chain}])
    keys = [f"{split}_nll"] + [key for key in chain[0][2] if key.startswith(f"{split}_") and key != f"{split}_nll"]
    missing = sorted({key for key in keys for _, _, r in chain if key not in r})
    if missing:
        raise UserError(f"{run.dir}: the shards do not all hold {', '.join(missing)}; evaluate them again with "
                        f"this version")
    mean = {key: math.nan if any(r[key] is None for _, _, r in chain)            # a diverged shard: null
            else sum(r[key] * r["n"] for _, _, r in chain) / total for key in keys}
    result = {"run": run.dir, "checkpoint": args.checkpoint, "epochs_trained": epochs, "split": split, "n": total, "k": k, "seed": args.seed, **mean,
              **ev.whole(backend.asarray(data), args.seed, False), "shards": len(chain),
              "shard_seconds": round(sum(r.get("time_s", 0) for _, _, r in chain), 1),
              **({"unused_shards": unused} if unused else {})}
    _write(run, f"{stem}.json", result)


def checkpoint_epochs(run, which):
    """How many epochs of training are behind RUN's `which` checkpoint (from its .json), or None."""
    try:
        with open(run.path(which) + ".json") as f:
            n = json.load(f)["loop"]["epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return n if isinstance(n, int) else None


def _chain(shards, total):
    """The fewest shards [(start, name, record)] that tile images 0..total, each starting where the one before
    ended (others, such as a stray shard of another size, are left out), as (chain, None); or (None, reach),
    the furthest image a chain from 0 gets to."""
    best = {0: []}                                # image -> the fewest-shard chain from 0 ending there
    for start, name, r in sorted(shards, key=lambda t: t[:2]):
        end = start + r["n"]                      # every shard ending at `start` began before it: best[start] is final
        if start in best and r["n"] >= 1 and (end not in best or len(best[start]) + 1 < len(best[end])):
            best[end] = best[start] + [(start, name, r)]
    return (best[total], None) if best.get(total) else (None, max(best))


def _write(run, name, result):
    """The result as RUN/name and one more line of RUN/evals.jsonl (never overwritten); non-finite numbers
    become null, with a "status" naming them (JSON has no NaN)."""
    bad = [key for key, v in result.items() if isinstance(v, float) and not math.isfinite(v)]
    result = {**{key: None if key in bad else v for key, v in result.items()},
              "status": f"non-finite: {', '.join(bad)} (a diverged model?)" if bad else "ok"}
    text = json.dumps(result, allow_nan=False)
    with open(run.path(name), "w") as f:
        json.dump(result, f, indent=1, allow_nan=False)
    with open(run.path("evals.jsonl"), "a") as f:
        f.write(json.dumps({"file": name, **result}, allow_nan=False) + "\n")
    print(text, flush=True)
