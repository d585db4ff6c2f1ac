"""The options every `tinydgm train` and `eval` command shares, added and checked in one place.

A command adds the groups that make sense for it (`run_options`, `budget_options`), then its own
options; `config(args, model)` turns the parsed arguments into a run's config, checked, with one
`UserError` line naming the option for anything out of range.
"""
import os
import time

from tinydgm import backend
from tinydgm.errors import UserError
from tinydgm.optim import HOLD, SCHEDULES

NOT_CONFIG = ("command", "_kind", "resume", "quiet")          # how to run, not what the run is


# ---------------------------------------------------------------- train

def run_options(p, model, device=True, limit=True, eval_every=1, eval_every_help=None):
    """--seed --device --out --resume --eval-every --limit --quiet."""
    p.add_argument("--seed", type=int, default=0)
    if device:
        p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--eval-every", type=int, default=eval_every,
                   help=eval_every_help or f"validate every N epochs (default {eval_every})")
    p.add_argument("--out", help=f"run directory (default runs/{model}-DATE-TIME)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run (its config is reused)")
    if limit:
        p.add_argument("--limit", type=int, help="train and validate on the first N images only (quick trials)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def budget_options(p, epochs_help, lr=1e-3, schedules=SCHEDULES, schedule=None, schedule_help=""):
    """--epochs --minutes --cpu-minutes --lr --schedule: how long to train and at what step size."""
    p.add_argument("--epochs", type=int, help=epochs_help)
    p.add_argument("--minutes", type=float, help="time budget: train for this long, annealing the "
                   "learning rate to fit (e.g. --minutes 30)")
    p.add_argument("--cpu-minutes", action="store_true", help="count --minutes in this process's "
                   "CPU time, not wall time (a fair budget on a shared machine)")
    p.add_argument("--lr", type=float, default=lr, help=f"Adam step size (default {lr:g})")
    p.add_argument("--schedule", choices=schedules, default=schedule,
                   help=f"anneal: hold lr {HOLD * 100:.0f}%% of the budget, then decay it 100-fold; "
                        f"constant{schedule_help}")


def config(args, model):
    """The run's config from parsed arguments: every option but how to run, plus the model's name."""
    cfg = {k: v for k, v in vars(args).items() if k not in NOT_CONFIG}
    cfg["model"] = model
    cfg["out"] = cfg.get("out") or os.path.join("runs", time.strftime(f"{model}-%Y%m%d-%H%M%S"))
    return cfg


def sizes(text, option, example="200,200"):
    """Layer sizes like "200,200" as a list of positive integers, or a UserError naming the option."""
    try:
        out = [int(h) for h in str(text).split(",") if h.strip()]
    except ValueError:
        raise UserError(f"{option}: expected sizes like {example}, got {text!r}") from None
    if not out or min(out) < 1:
        raise UserError(f"{option}: expected positive sizes like {example}, got {out}")
    return out


def positive(cfg, *keys):
    """Each cfg[key] that is set must be an integer >= 1."""
    for key in keys:
        if cfg.get(key) is not None and cfg[key] < 1:
            raise UserError(f"--{key.replace('_', '-')}: expected a positive integer, got {cfg[key]}")


def use_device(device):
    """Switch the backend for `--device cpu|cuda` (a missing CuPy or GPU is a BackendError, one line)."""
    backend.use("cupy" if device == "cuda" else "numpy")


# ---------------------------------------------------------------- eval

def eval_options(p, k=5000, shards=True, device=True):
    """--k --split --checkpoint --limit [--start --combine] --seed --device --quiet."""
    p.add_argument("--k", type=int, default=k, help=f"importance samples for L_k (default {k})")
    p.add_argument("--split", choices=("test", "valid"), default="test")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--limit", type=int, help="evaluate only the first N images (a quick look, not a result)")
    if shards:
        p.add_argument("--start", type=int, default=0, help="skip the first N images (with --limit: one shard "
                       "of the split, so that shards can run in parallel; their NLLs average, weighted by n)")
        p.add_argument("--combine", action="store_true", help="evaluate nothing: merge the shards "
                       "(--start/--limit) of this split and --k found in RUN into one result, checking that "
                       "they cover the split once")
    p.add_argument("--seed", type=int, default=0)
    if device:
        p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--quiet", action="store_true")
