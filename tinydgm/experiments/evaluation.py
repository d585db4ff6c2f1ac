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
    result = {"run": ev.run.dir, "checkpoint": args.checkpoint, "split": args.split, "start": args.start,
              "n": len(x), "k": args.k, "seed": args.seed, f"{args.split}_nll": nll, **means, **whole,
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
            r["start"], r["n"], r[f"{split}_nll"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UserError(f"{run.path(name)}: not a shard written by tinydgm eval ({e}); move it away") from None
        if r.get("checkpoint", "best") == args.checkpoint:
            shards.append((r["start"], name, r))
    if not shards:
        raise UserError(f"{run.dir}: no shards {stem}[-fromS]-nN.json to combine; make them with "
                        f"tinydgm eval {run.dir} --k {k} --split {split} --start S --limit N (same --checkpoint, --seed)")
    shards.sort(key=lambda t: t[:2])
    data = ev.load(split)
    total, at = len(data), 0
    for start, name, r in shards:
        if start != at:
            problem = "an overlap" if start < at else "a gap"
            raise UserError(f"{run.dir}: the {split} shards do not tile the split: {problem} at image {at} "
                            f"({name} starts at {start}); move the extra shard away or fill the gap")
        at += r["n"]
    if at != total:
        raise UserError(f"{run.dir}: the {split} shards cover images 0-{at - 1} of {total}; evaluate the rest with "
                        f"--start {at}")
    keys = [f"{split}_nll"] + [key for key in shards[0][2] if key.startswith(f"{split}_") and key != f"{split}_nll"]
    try:
        mean = {key: sum(r[key] * r["n"] for _, _, r in shards) / total for key in keys}
    except (KeyError, TypeError) as e:
        raise UserError(f"{run.dir}: the shards do not all hold {e}; evaluate them again with this version") from None
    result = {"run": run.dir, "checkpoint": args.checkpoint, "split": split, "n": total, "k": k, "seed": args.seed, **mean,
              **ev.whole(backend.asarray(data), args.seed, False), "shards": len(shards),
              "shard_seconds": round(sum(r.get("time_s", 0) for _, _, r in shards), 1)}
    _write(run, f"{stem}.json", result)


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
