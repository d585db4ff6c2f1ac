"""The options every `tinydgm train` and `eval` command shares, added and checked in one place.

A command adds the groups that make sense for it (`run_options`, `budget_options`), then its own
options; `config(args, model)` turns the parsed arguments into a run's config, checked, with one
`UserError` line naming the option for anything out of range.
"""
import os
import sys
import time

from tinydgm import backend
from tinydgm.data import binarized_mnist
from tinydgm.errors import BackendError, RunError, UserError
from tinydgm.experiments import runs
from tinydgm.optim import HOLD, SCHEDULES

NOT_CONFIG = ("command", "_kind", "resume", "quiet", "given")   # how to run, not what the run is
# what `--resume RUN` may change: how long and how to optimise, not what the model is (sizes, features, data)
RESUMABLE = ("epochs", "minutes", "cpu_minutes", "lr", "schedule", "eval_every", "device", "batch_size",
             "adam_eps", "valid_k", "iterations", "mstep_iterations", "lbfgs_round", "grad_variance_every",
             "threads")
BUDGET = ("epochs", "minutes", "cpu_minutes")               # one setting: given one, the others follow it


def given(argv, aliases=None):
    """The options written out in `argv` (`--lr 1e-3`, `--lr=1e-3`), as argparse dests."""
    out = set()
    for a in argv:
        if a == "--":
            break
        if a.startswith("--"):
            name = a[2:].split("=", 1)[0].replace("-", "_")
            out.add((aliases or {}).get(name, name))
    return out


def resume_or_configure(args, model, configure):
    """(run, config): for `--resume RUN`, the run, with the options given now applied where they may change
    (each change recorded in its config's history); else (None, configure(args)), a new run's config,
    which the command creates once its data has been read (so that a bad data file leaves no folder)."""
    if not args.resume:
        return None, configure(args)
    asked = getattr(args, "given", set()) - set(NOT_CONFIG)
    if "out" in asked:
        raise UserError("--out: give --resume RUN to continue a run, or --out DIR for a new one, not both")
    run = runs.Run.open(args.resume, model=model)
    if not asked:
        return run, run.config
    fresh = configure(args)                                  # the new values, checked as for a new run
    changes = {}
    for key in sorted(asked | (set(BUDGET) if asked & set(BUDGET) else set())):
        if key not in fresh or fresh[key] == run.config.get(key):
            continue
        if key not in RESUMABLE:
            raise UserError(f"--{key.replace('_', '-')}: {run.dir} was trained with {run.config.get(key)!r}; "
                            f"what defines the model cannot change on resume (train a new run with --out)")
        changes[key] = fresh[key]
    if changes:
        run.update_config(changes, run.epochs_done())
    return run, run.config


# ---------------------------------------------------------------- train

def run_options(p, model, device=True, limit=True, eval_every=1, eval_every_help=None, data_help=None):
    """--data --seed --device --threads --out --resume --eval-every --limit --quiet."""
    p.add_argument("--data", help=data_help or "the data folder, holding binarized_mnist/ (default: $TINYDGM_DATA, "
                   "else the data/ shipped beside the package)")
    p.add_argument("--seed", type=int, default=0)
    if device:
        p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    threads_option(p, "train")
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


THREADS_HELP = {
    "train": "BLAS threads (default: on --resume the run's own count; else $OPENBLAS_NUM_THREADS, "
             "$MKL_NUM_THREADS or $OMP_NUM_THREADS where set; "
             "else one per core that other jobs leave idle when the run starts, or 1 with --cpu-minutes or where "
             "the model's small matrices gain nothing from more; kept for the whole run and reused on --resume, "
             "since float32 sums differ in their last bits between counts; see scripts/bench.py threads)",
    "eval": "BLAS threads (default: $OPENBLAS_NUM_THREADS, $MKL_NUM_THREADS or $OMP_NUM_THREADS where set; "
            "else one per core that other jobs leave idle, looked at again as it goes; see scripts/bench.py threads)"}


def threads_option(p, kind):
    """--threads N: BLAS threads for this command (default: `use_threads`)."""
    p.add_argument("--threads", type=int, help=THREADS_HELP[kind])


def _resumed_config(args):
    """The config of the run `--resume` names, or None (no --resume; or no such run, which
    `resume_or_configure` reports later, in one line)."""
    if not getattr(args, "resume", None):
        return None
    try:
        return runs.Run.open(args.resume).config
    except RunError:
        return None


def check_run_command(args):
    """The options of `eval`/`sample` that every model shares, in range (--n: how many samples)."""
    if getattr(args, "n", None) is not None and args.n < 1:
        raise UserError(f"--n: expected how many samples, an integer >= 1, got {args.n}")


def use_threads(args, kind, recorded=None, follow=False):
    """Set the BLAS thread count for the rest of the process; returns (count in force, where it came from):
    "option" (--threads N), "run" (`recorded`, the count a resumed run was trained with: its bits depend on
    it), "environment" (a count set at start-up: backend.environment_threads), else "machine": chosen for
    work of `kind` ("train", "eval", "narrow": backend.DEFAULT_THREADS) on the machine as it is now, and with
    `follow` (evaluation) chosen again as the load changes (backend.retune)."""
    n = getattr(args, "threads", None)
    if n is not None and n < 1:
        raise UserError(f"--threads: expected an integer >= 1, got {n}")
    if n:
        return backend.set_threads(n), "option"
    if recorded:
        return backend.set_threads(recorded), "run"
    try:
        n = backend.environment_threads()
    except BackendError as e:
        raise UserError(str(e)) from None
    if n:
        return backend.set_threads(n), "environment"
    if follow:
        return backend.set_auto_threads(kind), "machine"
    return backend.set_threads(backend.default_threads(kind)), "machine"


def use_train_threads(args, kind):
    """`use_threads` for `tinydgm train`: one count for the whole run, recorded in its config as `threads`
    (a change, by --threads on --resume, goes into the config's history like any other; a run from before
    counts were recorded gets its count recorded on its first resume).  With --cpu-minutes a second thread
    would spend the CPU budget twice as fast, so the machine's choice is then one thread."""
    resumed = _resumed_config(args)
    recorded = resumed.get("threads") if resumed else None
    if isinstance(recorded, bool) or not isinstance(recorded, int) or recorded < 1:
        recorded = None                                     # a run from before counts were recorded
    cpu_budget = getattr(args, "cpu_minutes", False) or bool(resumed and resumed.get("cpu_minutes"))
    n, source = use_threads(args, "narrow" if cpu_budget else kind, recorded)
    args.threads = n
    if source in ("option", "environment") or (resumed and recorded is None):
        args.given = getattr(args, "given", set()) | {"threads"}
    if source == "run":
        asked = _environment_count()
        if asked and asked != n:
            _note(f"{args.resume} was trained with {n} BLAS thread(s) and keeps them, so that it resumes bit for "
                  f"bit (the environment asks for {asked}; give --threads N to change the run's count)")
        cores = backend.available_cores()
        if n > cores:
            _note(f"{args.resume} was trained with {n} BLAS threads, more than the {cores} "
                  f"core(s) here: expect it to run slowly (--threads N changes the run's count)")
    return n


def _environment_count():
    try:
        return backend.environment_threads()
    except BackendError:
        return None


def _note(line):
    print(f"tinydgm: note: {line}", file=sys.stderr, flush=True)


def config(args, model):
    """The run's config from parsed arguments: every option but how to run, plus the model's name."""
    cfg = {k: v for k, v in vars(args).items() if k not in NOT_CONFIG}
    positive(cfg, "epochs", "limit", "eval_every")
    for key in ("minutes", "lr"):
        if cfg.get(key) is not None and not cfg[key] > 0:
            raise UserError(f"--{key}: expected a number > 0, got {cfg[key]}")
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


def data_folder(path):
    """--data as an absolute folder (None: $TINYDGM_DATA, else the shipped data/), checked to exist."""
    if path is None:
        return None
    if not os.path.isdir(path):
        raise UserError(f"--data {path}: not a folder; expected the folder that holds the data sets")
    return os.path.abspath(path)


def mnist(cfg):
    """split -> the binarized MNIST images of the run's data folder."""
    return lambda split: binarized_mnist(split, cfg.get("data"))


def use_device(device):
    """Switch the backend for `--device cpu|cuda` (a missing CuPy or GPU is a BackendError, one line)."""
    try:
        backend.use("cupy" if device == "cuda" else "numpy")
    except BackendError as e:
        raise BackendError(f"--device {device}: {e}") from None


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
    threads_option(p, "eval")
    p.add_argument("--quiet", action="store_true")
