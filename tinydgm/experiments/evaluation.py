"""`tinydgm eval RUN` for every model with an importance-weighted bound: test NLL = -L_k over a split
or a shard of it (`--start/--limit`, run in parallel), and `--combine` to merge the shards.

A model's experiment module hands over an `Evaluation`: the model, its run, how to load a split,
the per-image means to report beside the NLL (averaged over shards by n) and the figures that do
not average (computed on the images evaluated, and again on the whole split by `--combine`).
"""
import contextlib
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tinydgm import backend, files
from tinydgm.data import binarized_mnist
from tinydgm.errors import DataError, Interrupted, UserError
from tinydgm.experiments import options, runtime
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
    """Check the options, the run folder (writable), its data (`data`), the device; return (model, run, data):
    data(split) -> the images of the run's data set, or of another asked for with --other-data."""
    check(args)
    model, run = load(args.run_dir, args.checkpoint)
    files.check_writable(run.dir)
    folder, recorded = options.recorded_data(run)
    names = list(options.MNIST_FILES.values())
    folder = options.data_folder(args.data) if args.data else options.present_data_folder(folder, names, recorded)
    try:
        found = options.check_data(folder, names, recorded, run.dir)
        args.other = None
    except DataError as e:
        if not args.other_data:
            raise DataError(f"{e}; or add --other-data to evaluate on other data, kept apart from the run's own "
                            f"results") from None
        found = options.check_data(folder, names, {}, run.dir)
        args.other = {"data": folder, "data_sha256": found}
    options.use_device(args.device)
    return model, run, lambda split: binarized_mnist(split, folder)


def check(args):
    """--k, --limit and --start in range, and --combine alone; one line otherwise."""
    for flag, value, least in (("--k", args.k, 1), ("--limit", args.limit, 1), ("--start", args.start, 0)):
        if value is not None and value < least:
            raise UserError(f"{flag}: expected an integer >= {least}, got {value}")
    if args.seed < 0:
        raise UserError(f"--seed: expected an integer >= 0, got {args.seed}")
    if args.combine and (args.start or args.limit):
        raise UserError("--combine merges the shards already evaluated: give it no --start or --limit")
    if args.other_data and not args.data:
        raise UserError("--other-data: give the folder with --data DIR")


def evaluate(ev, args):
    """NLL = -L_k over the split or a shard of it, the model's per-image means, the whole-split figures; writes
    eval-*.json.  The NLL's progress is kept (eval-*.progress.json) as it goes: the same command, run again
    after a Ctrl-C, a kill or a crash, continues where it stopped and ends with the same numbers."""
    if args.combine:
        return combine(ev, args)
    split = ev.load(args.split)
    x = backend.asarray(split[args.start:][:args.limit])
    if len(x) == 0:
        raise UserError(f"--start {args.start}: the {args.split} split has no images from there on")
    shard = bool(args.start or args.limit)
    part = f"-from{args.start}" * bool(args.start) + f"-n{len(x)}" * shard
    name = f"{_stem(args)}{part}"
    epochs = checkpoint_epochs(ev.run, args.checkpoint)
    request = {"checkpoint": args.checkpoint, "epochs_trained": epochs, "split": args.split, "start": args.start,
               "n": len(x), "k": args.k, "seed": args.seed, **(args.other or {})}
    progress = Progress(ev.run.path(f"{name}.progress.json"), request)
    t0 = time.perf_counter()
    try:
        nll = iw_nll(ev.model, x, args.k, rng=np.random.default_rng(args.seed), progress=not args.quiet,
                     resume=progress.start(), keep=progress.keep, each_batch=runtime.retune,   # threads follow the load
                     **ev.nll_options(args.k))
    except KeyboardInterrupt:
        raise Interrupted(progress.stopped()) from None
    means = {f"{args.split}_{key}": v for key, v in ev.per_image(x, args.seed).items()}
    whole = ev.whole(x, args.seed, shard)
    result = {"run": ev.run.dir, **request, f"{args.split}_nll": nll, **means, **whole,
              "time_s": round(time.perf_counter() - t0 + progress.spent, 1)}
    _write(ev.run, f"{name}.json", result)
    progress.done()


class Progress:
    """An evaluation's state, kept whole in `path` every few seconds: what `iw_nll(resume=...)` goes on from."""
    EVERY_S = 5.0

    def __init__(self, path, request):
        self.path, self.request, self.last, self.spent, self.at = path, request, time.perf_counter(), 0.0, None
        self.t0 = time.perf_counter()

    def start(self):
        """The state kept by an earlier try of this same request, or None."""
        try:
            with open(self.path) as f:
                kept = json.load(f)
            if kept.get("request") != json.loads(json.dumps(self.request)):
                return None
            state = kept["state"]
            int(state["done"]), float(state["total"]), dict(state["rng"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        self.spent, self.at = float(kept.get("time_s", 0.0)), state["done"]
        _note(f"continuing from image {state['done']} of {self.request['n']} ({self.path})")
        return state

    def keep(self, state):
        self.at = state["done"]
        now = time.perf_counter()
        if now - self.last < self.EVERY_S or state["done"] >= self.request["n"]:
            return
        self.last = now
        try:
            files.write_json(self.path, {"request": self.request, "state": state,
                                         "time_s": round(self.spent + now - self.t0, 1)})
        except UserError as e:
            _note(f"progress not kept ({e})")

    def stopped(self):
        if self.at and os.path.isfile(self.path):
            return (f"interrupted; the progress (image {self.at} of {self.request['n']}, as kept a few seconds ago) "
                    f"is in {self.path}: run the same command again to continue")
        return "interrupted before any progress was kept"

    def done(self):
        with contextlib.suppress(OSError):
            os.remove(self.path)


def _note(line):
    print(f"tinydgm: note: {line}", file=sys.stderr, flush=True)


def _stem(args):
    """One file name per distinct request: split, k, checkpoint and seed (the defaults, best and 0, unnamed),
    and the data where it is not the run's own (-dataXXXXXXXX, from the split file's SHA-256)."""
    other = getattr(args, "other", None)
    data = f"-data{other['data_sha256'][options.MNIST_FILES[args.split]][:8]}" if other else ""
    return (f"eval-{args.split}-k{args.k}" + f"-{args.checkpoint}" * (args.checkpoint != "best")
            + f"-seed{args.seed}" * (args.seed != 0) + data)


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
    print(json.dumps(result, allow_nan=False), flush=True)          # shown even if it cannot be written
    files.write_json(run.path(name), result)
    files.append_line(run.path("evals.jsonl"), json.dumps({"file": name, **result}, allow_nan=False))
