"""The options every `tinydgm train` and `eval` command shares, added and checked in one place.

A command adds the groups that make sense for it (`run_options`, `budget_options`), then its own
options; `config(args, model)` turns the parsed arguments into a run's config, checked, with one
`UserError` line naming the option for anything out of range.
"""
import hashlib
import math
import os
import sys
import time

from tinydgm import backend, files
from tinydgm.data import binarized_mnist
from tinydgm.data.mnist import data_root
from tinydgm.errors import BackendError, DataError, RunError, UserError
from tinydgm.experiments import runs, runtime
from tinydgm.optim import HOLD, SCHEDULES

NOT_CONFIG = ("command", "_kind", "resume", "quiet", "given")   # how to run, not what the run is
# what `--resume RUN` may change: how long and how to optimise, not what the model is (sizes, features, data)
RESUMABLE = ("epochs", "minutes", "cpu_minutes", "lr", "schedule", "eval_every", "device", "batch_size",
             "adam_eps", "valid_k", "iterations", "mstep_iterations", "lbfgs_round", "grad_variance_every",
             "threads", "data")                                 # data: the same files (SHA-256) found elsewhere
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
    """(run, config): for `--resume RUN`, the run, with the options given now applied where they may change;
    else (None, configure(args)), a new run's config, which the command creates once its data has been read
    (so that a bad data file leaves no folder).  Nothing is written here: a resumed run's changes wait in
    `run.pending` until `runs.fit` holds the run (after the device, the data and the lock were checked), and
    are then recorded in its config's history."""
    if not args.resume:
        return None, configure(args)
    asked = getattr(args, "given", set()) - set(NOT_CONFIG)
    if "out" in asked:
        raise UserError("--out: give --resume RUN to continue a run, or --out DIR for a new one, not both")
    run = runs.Run.open(args.resume, model=model)
    pid = run.busy()
    if pid:
        raise RunError(f"{run.dir}: another process (pid {pid}) is training this run; wait for it to end")
    run.metrics()                                            # readable (a torn last line is only noted)
    fresh = configure(args)                                  # the new values, checked as for a new run
    check_config(run, fresh)
    changes = {}
    for key in sorted(asked | (set(BUDGET) if asked & set(BUDGET) else set())):
        if key not in fresh or fresh[key] == run.config.get(key):
            continue
        if key not in RESUMABLE:
            raise UserError(f"--{key.replace('_', '-')}: {run.dir} was trained with {run.config.get(key)!r}; "
                            f"what defines the model cannot change on resume (train a new run with --out)")
        changes[key] = fresh[key]
    run.pending = changes
    run.config = {**run.config, **changes}
    return run, run.config


def check_config(run, expected):
    """RunError naming the first key of the run's config.json whose value is not of the kind a fresh config
    of the same command holds (`expected`): a config edited by hand, or of another version."""
    file = run.path("config.json")
    for key, want in expected.items():
        if key in ("out", "history") or want is None:
            continue
        if key not in run.config:
            if key in ("data", "threads", "data_sha256", "estimator"):
                continue                                     # found or recorded when the run goes on
            if key in BEFORE_THE_OPTION:                     # a run from before the option: what it began with
                run.config[key] = BEFORE_THE_OPTION[key]
                continue
            if key in RESUMABLE:                             # how to optimise: a config without it takes the default
                run.config[key] = want
                continue
            raise RunError(f"{file}: no key {key!r}; expected the config tinydgm train wrote")
        have = run.config[key]
        if have is None and key in OPTIONAL:
            continue
        if not _same_kind(have, want):
            raise RunError(f"{file}: key {key!r} is {have!r}; expected {_kind_name(want)} (e.g. {want!r})")


BEFORE_THE_OPTION = {"init": "pytorch"}          # config keys added later -> what every run before them did
OPTIONAL = ("epochs", "minutes", "limit", "temperature", "threads", "data", "estimator")


def _same_kind(have, want):
    if isinstance(want, bool):
        return isinstance(have, bool)
    if isinstance(want, int):
        return isinstance(have, int) and not isinstance(have, bool)
    if isinstance(want, float):
        return isinstance(have, (int, float)) and not isinstance(have, bool) and math.isfinite(have)
    if isinstance(want, (list, tuple)):
        return isinstance(have, list) and all(_same_kind(h, want[0]) for h in have) if want else isinstance(have, list)
    return isinstance(have, type(want))


def _kind_name(want):
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
            tuple: "a list", dict: "an object"}.get(type(want), type(want).__name__)


# ---------------------------------------------------------------- the data a run was trained on

def data_folder(path):
    """--data as an absolute folder, checked to exist; None: $TINYDGM_DATA, else the shipped data/."""
    if path is None:
        return os.path.abspath(data_root())
    if not os.path.isdir(path):
        raise UserError(f"--data {path}: not a folder; expected the folder that holds the data sets")
    return os.path.abspath(path)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_data(folder, names, recorded, whose):
    """The SHA-256 of each data file `names` (relative to `folder`), checked against `recorded` (the run's
    record, name -> digest): DataError naming the first file that is missing or differs."""
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: the data folder {whose} was trained on is not there (moved?); give --data DIR "
                        f"where its files are now (they are checked against the run's record)")
    found = {}
    for name in names:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise DataError(f"{path}: file not found (expected the data {whose} was trained on; give --data DIR "
                            f"with the folder that holds it)")
        found[name] = sha256(path)
        if recorded.get(name, found[name]) != found[name]:
            raise DataError(f"{path}: not the file {whose} was trained on (its SHA-256 {found[name][:12]}... "
                            f"differs from the recorded {str(recorded[name])[:12]}...); give --data DIR with the run's own data")
    return found


def recorded_data(run):
    """(folder, name -> SHA-256) that a run recorded of its data (a run without a folder: the default one)."""
    cfg = run.config
    recorded = cfg.get("data_sha256") or {}
    if not isinstance(recorded, dict) or not all(isinstance(v, str) for v in recorded.values()):
        raise RunError(f"{run.path('config.json')}: key 'data_sha256' is {recorded!r}; expected file -> SHA-256")
    return cfg.get("data") or os.path.abspath(data_root()), recorded


def present_data_folder(folder, names, recorded):
    """`folder`, the run's recorded data folder; where it is gone, the default one (`data_root`) if that holds
    files `names` with the SHA-256 the run recorded of each (the same bytes: a kept run copied to a fresh clone),
    said in a note.  Else `folder` as it is (check_data then names what is missing)."""
    default = os.path.abspath(data_root())
    if os.path.isdir(folder) or default == folder or not all(name in recorded for name in names):
        return folder
    try:
        check_data(default, names, recorded, "the run")
    except DataError:
        return folder
    _note(f"the data folder the run was trained on, {folder}, is gone; {default} holds the same files (their "
          f"SHA-256 match the run's record), and the run now reads them there")
    return default


def identify_data(run, cfg, names):
    """Check that the data files `names` (relative to cfg["data"]) are there and, where the run recorded their
    SHA-256, are the ones it was trained on.  A new run (run None) records them in cfg; a resumed run records
    those it lacks (and a folder they moved to) when it goes on."""
    if run is None:
        found = check_data(cfg["data"], names, {}, "the run")
        cfg["data_sha256"] = {**(cfg.get("data_sha256") or {}), **found}
        return found
    folder, recorded = recorded_data(run)
    folder = cfg.get("data") or folder
    if "data" not in run.pending:                                  # no --data given: gone, then the default?
        folder = present_data_folder(folder, names, recorded)
    found = check_data(folder, names, recorded, run.dir)
    if set(found) - set(recorded) or run.config.get("data") != folder:
        run.pending.update({"data": folder, "data_sha256": {**recorded, **found}})
        run.config.update(run.pending)
        cfg.update(run.pending)
    return found


MNIST_FILES = {split: f"binarized_mnist/binarized_mnist_{split}.amat.gz" for split in ("train", "valid", "test")}


def mnist_data(run, cfg, splits=("train", "valid", "test")):
    """The run's binarized MNIST splits, checked against its record (`identify_data`): split -> images."""
    out = {}
    for split in splits:                                   # each file checked, then read: the first bad one is named
        identify_data(run, cfg, [MNIST_FILES[split]])
        out[split] = binarized_mnist(split, cfg["data"])
    return out


# ---------------------------------------------------------------- memory

def available_memory():
    """Bytes of memory this machine can give now (MemAvailable), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(need, what, k=None):
    """UserError before allocating when `need` bytes (an estimate) do not fit in the memory available, saying
    which smaller --k (when the estimate grows with k, as `need` does for the k given) or --batch-size would fit."""
    free = available_memory()
    if free is None or need <= 0.8 * free:
        return
    smaller = f"a smaller --k (about {max(1, int(k * 0.8 * free / need))}) or --batch-size" if k else "a smaller --batch-size"
    raise UserError(f"{what}: needs about {need / 2 ** 30:.1f} GiB of memory, {free / 2 ** 30:.1f} GiB is "
                    f"available; {smaller} would fit")


# ---------------------------------------------------------------- train

def device_option(p):
    """--device cpu|cuda, the same for training and evaluation."""
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu (NumPy) or cuda (CuPy, with pip install 'tinydgm[cuda]')")


def run_options(p, model, device=True, limit=True, eval_every=1, eval_every_help=None, data_help=None):
    """--data --seed --device --threads --out --resume --eval-every --limit --quiet."""
    p.add_argument("--data", help=data_help or "the data folder, holding binarized_mnist/ (default: $TINYDGM_DATA, "
                   "else the data/ shipped beside the package)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights, the batches and the samples "
                   "(default 0)")
    if device:
        device_option(p)
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


MAX_SAMPLES = 10000      # one PNG grid of 10 columns: 1,000 rows of 60 pixels (matplotlib draws at most 65,536)


def check_run_command(args):
    """The options of `eval`/`sample` that every model shares, in range (--n: how many samples, --out: a PNG
    in a folder that exists and can be written)."""
    n = getattr(args, "n", None)
    if n is not None and not 1 <= n <= MAX_SAMPLES:
        raise UserError(f"--n: expected how many samples, an integer from 1 to {MAX_SAMPLES} (one PNG grid), got {n}")
    if getattr(args, "seed", 0) < 0:
        raise UserError(f"--seed: expected an integer >= 0, got {args.seed}")
    if args.command == "sample":
        if args.out is None:
            files.check_writable(args.run_dir)
        else:
            args.out = png_path(args.out)


def png_path(path):
    """`path` as the PNG file to write (".png" added where it has no extension), in a folder that is there."""
    if not path:
        raise UserError("--out: an empty path; give a PNG file (or leave --out out)")
    ext = os.path.splitext(path)[1]
    if not ext:
        path += ".png"
    elif ext.lower() != ".png":
        raise UserError(f"--out {path}: a {ext} file; tinydgm writes its figures as PNG (name it NAME.png)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"--out {path}: the folder {folder} does not exist; create it or choose another")
    if os.path.isdir(path):
        raise UserError(f"--out {path}: a folder; expected a PNG file name")
    files.check_writable(folder)
    return path


def use_threads(args, kind, recorded=None, follow=False):
    """Set the BLAS thread count for the rest of the process; returns (count in force, where it came from):
    "option" (--threads N), "run" (`recorded`, the count a resumed run was trained with: its bits depend on
    it), "environment" (a count set at start-up: runtime.environment_threads), else "machine": chosen for
    work of `kind` ("train", "eval", "narrow": runtime.DEFAULT_THREADS) on the machine as it is now, and with
    `follow` (evaluation) chosen again as the load changes (runtime.retune)."""
    n = getattr(args, "threads", None)
    if n is not None and n < 1:
        raise UserError(f"--threads: expected an integer >= 1, got {n}")
    if n:
        return runtime.set_threads(n), "option"
    if recorded:
        return runtime.set_threads(recorded), "run"
    try:
        n = runtime.environment_threads()
    except BackendError as e:
        raise UserError(str(e)) from None
    if n:
        return runtime.set_threads(n), "environment"
    if follow:
        return runtime.set_auto_threads(kind), "machine"
    return runtime.set_threads(runtime.default_threads(kind)), "machine"


def use_train_threads(args, kind):
    """`use_threads` for `tinydgm train`: one count for the whole run, recorded in its config as `threads`
    (a change, by --threads on --resume, goes into the config's history like any other; a run whose config
    records no count gets one recorded on its first resume).  With --cpu-minutes a second thread
    would spend the CPU budget twice as fast, so the machine's choice is then one thread."""
    resumed = _resumed_config(args)
    recorded = resumed.get("threads") if resumed else None
    if isinstance(recorded, bool) or not isinstance(recorded, int) or recorded < 1:
        recorded = None                                     # the config records no count
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
        cores = runtime.available_cores()
        if n > cores:
            _note(f"{args.resume} was trained with {n} BLAS threads, more than the {cores} "
                  f"core(s) here: expect it to run slowly (--threads N changes the run's count)")
    return n


def _environment_count():
    try:
        return runtime.environment_threads()
    except BackendError:
        return None


def _note(line):
    print(f"tinydgm: note: {line}", file=sys.stderr, flush=True)


def config(args, model):
    """The run's config from parsed arguments: every option but how to run, plus the model's name."""
    cfg = {k: v for k, v in vars(args).items() if k not in NOT_CONFIG}
    for key, v in cfg.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise UserError(f"--{key.replace('_', '-')}: expected a finite number, got {v}")
    if cfg.get("seed") is not None and cfg["seed"] < 0:
        raise UserError(f"--seed: expected an integer >= 0, got {cfg['seed']}")
    if cfg.get("out") == "":
        raise UserError("--out: an empty path; give the folder for the new run (or leave --out out for runs/NAME-DATE)")
    positive(cfg, "epochs", "limit", "eval_every")
    for key in ("minutes", "lr"):
        if cfg.get(key) is not None and not cfg[key] > 0:
            raise UserError(f"--{key}: expected a number > 0, got {cfg[key]}")
    cfg["model"] = model
    cfg["out"] = cfg.get("out") or os.path.join("runs", time.strftime(f"{model}-%Y%m%d-%H%M%S"))
    if not getattr(args, "resume", None):
        files.check_writable(cfg["out"])
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
            raise UserError(f"--{key.replace('_', '-')}: expected an integer >= 1, got {cfg[key]}")


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
    p.add_argument("--split", choices=("test", "valid"), default="test", help="the data split to evaluate")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="the checkpoint with the best validation bound, or the last one")
    p.add_argument("--limit", type=int, help="evaluate only the first N images (a quick look, not a result)")
    if shards:
        p.add_argument("--start", type=int, default=0, help="skip the first N images (with --limit: one shard "
                       "of the split, so that shards can run in parallel; their NLLs average, weighted by n)")
        p.add_argument("--combine", action="store_true", help="evaluate nothing: merge the shards "
                       "(--start/--limit) of this split and --k found in RUN into one result, checking that "
                       "they cover the split once")
    p.add_argument("--seed", type=int, default=0, help="seed of the importance samples (default 0)")
    p.add_argument("--data", help="the data folder (default: the run's own, as recorded in its config.json); "
                   "its files must be the ones the run was trained on (SHA-256), unless --other-data")
    p.add_argument("--other-data", action="store_true", help="evaluate on the other data of --data: the result "
                   "is kept apart (eval-...-dataXXXXXXXX.json, the first digits of its SHA-256) and says so")
    if device:
        device_option(p)
    threads_option(p, "eval")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
