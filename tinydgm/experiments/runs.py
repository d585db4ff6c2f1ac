"""Run directories and the one training loop shared by every `tinydgm train` command.

A run directory holds

    config.json       {"model": kind, ...every option}      (`eval`/`sample` find the model here)
    metrics.jsonl     one JSON line per epoch: train metrics, plus validation ones when evaluated
    last.npz, .json   checkpoint at the end of the latest finished epoch (what `--resume` reads)
    best.npz, .json   checkpoint of the epoch with the best monitored validation value
    summary.json      the one-line JSON summary printed at the end;  *.png figures

To plug a model in, give `fit` an object with four methods (an EM iteration is an epoch):

    train_epoch(epoch, progress) -> dict   one pass over the data; must hold "loss"; progress in
                                           [0, 1) is how far through the epochs/time budget we are
    validate() -> dict                     validation metrics, holding the monitored key
    state() -> dict                        everything needed to resume bit for bit: arrays (params,
                                           optimiser moments) and JSON-able values (step counts,
                                           `rng_state(rng)`), nested in dicts and lists as you like
    load_state(state)                      the inverse (arrays come back as NumPy arrays)

    run = Run.create(out, {"model": "vae", **options})    # or Run.open(resume_dir)
    summary = fit(run, trainer, epochs=10, monitor="valid_elbo", mode="max")
    return run.finish(summary)                            # prints one JSON line; the exit code

`tinydgm.optim.learning_rate(schedule, lr, epoch, progress)` turns `progress` into an epoch's step size.

`fit` resumes from `last` if the run has one, and holds a lock on the folder meanwhile.  Ctrl-C,
SIGTERM or a non-finite loss (return it, or raise `NonFinite` mid-epoch) stops cleanly, keeping
the last good checkpoint.  With the same seed and the same BLAS thread count (the command line
records the count in the run's config and reuses it on resume) an epoch-budgeted run resumed any
number of times gives the numbers of an uninterrupted one, as long as every random draw comes from
generators saved in `state()`.  A `minutes` budget (wall
time, or this process's CPU time with clock="cpu") makes `progress` depend on the clock, so such
runs are not bit-reproducible.
"""
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
import warnings

from tqdm import tqdm

from tinydgm import checkpoint, files
from tinydgm.errors import RunError, UserError


class NonFinite(Exception):
    """Raised by a trainer when its loss stops being finite."""


# ---------------------------------------------------------------- run directory

class Run:
    """A folder with a run's config, metrics, checkpoints and figures."""

    def __init__(self, path, config):
        self.dir, self.config = os.fspath(path), config
        self.pending = {}                     # option changes asked on resume, written once training can start

    @classmethod
    def create(cls, path, config):
        """A new run folder holding `config.json`, created exclusively: of two starts on one folder, one fails.

        A folder that holds files but no run is refused; a folder left by a start that never finished an
        epoch (config.json alone, the same config) is taken again, so the same command succeeds once a fault
        of the machine is gone.  If config.json cannot be written, a folder made here is removed again."""
        path = os.fspath(path)
        if os.path.exists(path) and not os.path.isdir(path):
            raise RunError(f"--out {path}: a file, not a folder; expected a new or empty run folder")
        made = not os.path.exists(path)
        config = {k: v for k, v in config.items() if _jsonable(v)}
        file = os.path.join(path, "config.json")
        if not made:
            stranger = sorted(n for n in os.listdir(path) if not n.startswith("."))
            if stranger and "config.json" not in stranger:
                raise RunError(f"--out {path}: a folder of other files ({', '.join(stranger[:3])}"
                               f"{', ...' if len(stranger) > 3 else ''}), not a run; choose a new or empty folder")
            run = cls(path, config)
            if _unstarted(path, config) and not run.busy():
                return run
        try:
            os.makedirs(path, exist_ok=True)
            with files.writing(os.path.join(path, f".config-{os.getpid()}.json")) as f:
                f.write((json.dumps(config, indent=1) + "\n").encode())
            tmp = os.path.join(path, f".config-{os.getpid()}.json")
            try:
                os.link(tmp, file)                # atomic and exclusive: fails if a run is already there
            finally:
                os.remove(tmp)
        except FileExistsError:
            raise RunError(f"{path}: already holds a run; continue it with --resume {path} "
                           f"or choose another --out") from None
        except (OSError, UserError) as e:
            if made:
                shutil.rmtree(path, ignore_errors=True)
            raise e if isinstance(e, UserError) else files.fault(e, file) from None
        return cls(path, config)

    @classmethod
    def open(cls, path, model=None):
        """The run in `path`; RunError (one line) unless its config.json is a JSON object naming its model."""
        path = os.fspath(path)
        config = read_config(path)
        if model is not None and config["model"] != model:
            raise RunError(f"{os.path.join(path, 'config.json')}: a {config['model']!r} run; expected a {model!r} run")
        return cls(path, config)

    def path(self, name):
        return os.path.join(self.dir, name)

    def epochs_done(self):
        """How many epochs the `last` checkpoint holds (0 before the first)."""
        return checkpoint.load_state(self.path("last"))[1]["epoch"] if checkpoint.exists(self.path("last")) else 0

    def commit_changes(self, epoch):
        """Write the option changes asked on resume (`pending`): config.json takes the new values and a `history`
        entry {"epoch": E, "changes": {option: [old, new]}}; metrics.jsonl gets the same entry."""
        if not self.pending:
            return
        old = read_config(self.dir)
        entry = {"epoch": epoch, "changes": {k: [old.get(k), v] for k, v in self.pending.items()}}
        self.config = {**old, **self.pending, "history": old.get("history", []) + [entry]}
        files.write_json(self.path("config.json"), self.config)
        self.log({"event": "resume", **entry})
        self.pending = {}

    def log(self, record):
        files.append_line(self.path("metrics.jsonl"), json.dumps(record))

    def metrics(self):
        """The records of metrics.jsonl; a last line cut short (a crash, a full disk) is left out with a note,
        any other unreadable line is a RunError naming it."""
        file = self.path("metrics.jsonl")
        try:
            with open(file, "rb") as f:
                lines = f.read().decode(errors="replace").split("\n")
        except FileNotFoundError:
            return []
        except OSError as e:
            raise RunError(f"{file}: cannot be read ({e.strerror}); expected the run's metrics log") from None
        records = []
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
                    raise ValueError("not a record with an integer \"epoch\"")
            except ValueError as e:
                if i == len(lines) and not self._torn_noted:       # no newline after it: a write cut short
                    _say(f"note: {file}, line {i}: cut short (a crash or a full disk?); left out")
                    self._torn_noted = True
                if i == len(lines):
                    continue
                raise RunError(f"{file}, line {i}: not a metrics record ({e}); expected one JSON object "
                               f"per line, as tinydgm train writes") from None
            records.append(record)
        return records

    _torn_noted = False

    @contextlib.contextmanager
    def lock(self):
        """Hold the run for one process: a second `fit` on the same folder stops with RunError."""
        try:
            import fcntl
        except ImportError:                              # not on POSIX: no lock
            yield
            return
        try:
            f = open(self.path(".lock"), "a+")
        except OSError as e:
            raise files.fault(e, self.path(".lock")) from None
        with f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.seek(0)
                raise RunError(f"{self.dir}: another process (pid {f.read().strip() or '?'}) is "
                               f"training this run") from None
            f.truncate(0)
            f.write(str(os.getpid()))
            f.flush()
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def busy(self):
        """The pid (or "?") of another process training this run, else None; takes no lock."""
        try:
            import fcntl
        except ImportError:
            return None
        if not os.path.isfile(self.path(".lock")):
            return None
        with open(self.path(".lock")) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return f.read().strip() or "?"
            fcntl.flock(f, fcntl.LOCK_UN)
        return None

    def truncate_metrics(self, epochs):
        """Forget records of epochs >= `epochs` (written after the checkpoint we resume from), and a torn last line."""
        kept = [r for r in self.metrics() if r["epoch"] < epochs or ("event" in r and r["epoch"] == epochs)]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        try:
            with open(self.path("metrics.jsonl"), "rb") as f:
                same = f.read() == text.encode()
        except FileNotFoundError:
            same = not kept
        if not same:
            files.write_text(self.path("metrics.jsonl"), text)

    def finish(self, summary):
        """Print the summary as one JSON line, write summary.json, return the exit code."""
        print(json.dumps(summary), flush=True)
        files.write_json(self.path("summary.json"), summary)
        return {"done": 0, "nonfinite": 1, "interrupted": 130}.get(summary.get("status"), 0)


def read_config(path):
    """The config.json of run folder `path`, checked to be a JSON object with a "model" name (RunError otherwise)."""
    file = os.path.join(os.fspath(path), "config.json")
    if not os.path.isfile(file):
        raise RunError(f"{path}: not a run directory (expected {file}, written by `tinydgm train`)")
    try:
        with open(file) as f:
            config = json.load(f)
    except ValueError as e:
        raise RunError(f"{file}: not valid JSON ({e})") from None
    except OSError as e:
        raise RunError(f"{file}: cannot be read ({e.strerror})") from None
    if not isinstance(config, dict):
        raise RunError(f"{file}: a JSON {type(config).__name__}; expected an object of the run's options")
    if not isinstance(config.get("model"), str):
        raise RunError(f"{file}: key \"model\" is {config.get('model')!r}; expected the model's name")
    return config


def _unstarted(path, config):
    """Whether `path` holds only the config.json of this same config, left by a start that never trained."""
    names = {n for n in os.listdir(path) if not n.startswith(".")}
    if names != {"config.json"}:
        return False
    try:
        return read_config(path) == json.loads(json.dumps(config))
    except UserError:
        return False


def _jsonable(v):
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def load_checkpoint(run_dir, model, which="best"):
    """(run, state) of a `model` run directory's `best` or `last` checkpoint."""
    run = Run.open(run_dir, model=model)
    state, _ = checkpoint.load_state(run.path(which))
    return run, state


def load_model(run_dir, model, build, which="best"):
    """(module, run): `build(config)` holding the parameters of a run's `best` or `last` checkpoint."""
    run, state = load_checkpoint(run_dir, model, which)
    module = build(run.config)
    with fitting(run, which):
        module.load_state_dict(state["params"])
    return module, run


@contextlib.contextmanager
def fitting(run, which):
    """A checkpoint that does not fit the run's model (another model, size or feature set) as one line naming it."""
    try:
        yield
    except (checkpoint.CheckpointError, KeyError) as e:
        what = getattr(e, "differs", None) or (f"no {e}" if isinstance(e, KeyError) else str(e))
        raise checkpoint.CheckpointError(f"{run.path(which)}.npz: not a checkpoint of this {run.config.get('model')} "
                                         f"run's model ({what}); was it copied from another run?") from None


# ---------------------------------------------------------------- generators in a checkpoint

def rng_state(rng):
    """A NumPy Generator's full state, as JSON-able values."""
    return rng.bit_generator.state


def set_rng_state(rng, state):
    rng.bit_generator.state = state


# ---------------------------------------------------------------- the training loop

def _finite(v):
    return v is None or math.isfinite(v)


@contextlib.contextmanager
def stop_signals():
    """SIGINT and SIGTERM raise KeyboardInterrupt (also in a background job, where SIGINT is ignored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt
    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def fit(run, trainer, epochs=None, minutes=None, eval_every=1, monitor="valid_loss", mode="min",
        quiet=False, clock="wall"):
    """Train until `epochs` or `minutes` run out; checkpoint, log and resume. Returns the summary.

    `clock="cpu"` counts `minutes` in this process's CPU time (a fair budget on a shared machine).  Epochs are
    never cut: a time budget ends at the epoch boundary nearest to it (the last epoch's cost decides whether
    one more would overrun by more than it leaves unused), so runs of slow and fast epochs spend alike.
    """
    if epochs is None and minutes is None:
        raise ValueError("fit: give epochs, minutes or both")
    with run.lock(), stop_signals(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # overflow on the way to a non-finite loss: reported below
        return _fit(run, trainer, epochs, minutes, eval_every, monitor, mode, quiet, clock)


def _fit(run, trainer, epochs, minutes, eval_every, monitor, mode, quiet, clock):
    better = (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b)
    loop = {"epoch": 0, "elapsed_s": 0.0, "cpu_s": 0.0, "best": None, "best_epoch": None}
    checkpoint.remove_leftovers(run.dir)                # of writes a kill interrupted (we hold the lock)
    if checkpoint.exists(run.path("last")):
        state, loop = checkpoint.load_state(run.path("last"))
        with fitting(run, "last"):
            trainer.load_state(state)
        run.truncate_metrics(loop["epoch"])
    run.commit_changes(loop["epoch"])                  # what --resume asked, now that the run is ours
    budget = None if minutes is None else 60.0 * minutes
    spent = "cpu_s" if clock == "cpu" else "elapsed_s"               # which clock the budget counts
    epochs_done = [r for r in run.metrics() if "event" not in r]
    status, last, saved = "done", epochs_done[-1] if epochs_done else {}, loop["epoch"]
    bar = tqdm(total=epochs, initial=loop["epoch"], unit="epoch", disable=quiet, dynamic_ncols=True,
               desc=os.path.basename(run.dir.rstrip("/")),
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.2f}/{total_fmt} epochs [{elapsed}<{remaining}{postfix}]"
               if epochs else "{desc}: {n:.2f} epochs [{elapsed}{postfix}]")
    if hasattr(trainer, "report"):                 # within an epoch: the bar moves per batch, with images/s
        trainer.report = _reporter(bar, loop)

    def out_of_budget(done, elapsed, epoch_s):
        """Out of epochs, or of time: another epoch costing `epoch_s` would overrun the budget by more than
        it left unused (so a run ends at the epoch boundary nearest its budget, over or under by half an
        epoch at most, whatever an epoch costs: the same budget for fast and slow estimators)."""
        return (epochs is not None and done >= epochs) or (budget is not None and elapsed + epoch_s / 2 >= budget)

    def since(t0, c0):
        return time.process_time() - c0 if clock == "cpu" else time.perf_counter() - t0

    try:
        while not out_of_budget(loop["epoch"], loop.get(spent, 0.0), loop.get("epoch_s", 0.0)):
            epoch, t0, c0 = loop["epoch"], time.perf_counter(), time.process_time()
            progress = max(epoch / epochs if epochs else 0.0,
                           loop.get(spent, 0.0) / budget if budget else 0.0)
            record = {"epoch": epoch, **trainer.train_epoch(epoch, progress)}
            if not _finite(record.get("loss")):
                raise NonFinite(record["loss"])
            cost = since(t0, c0)
            if (epoch + 1) % eval_every == 0 or out_of_budget(epoch + 1, loop.get(spent, 0.0) + cost, cost):
                record.update(trainer.validate())
                if not _finite(record[monitor]):
                    raise NonFinite(f"validation {monitor} = {record[monitor]}")
            loop["epoch_s"] = since(t0, c0)              # this epoch's cost on the budget's clock
            loop["elapsed_s"] += time.perf_counter() - t0
            loop["cpu_s"] = loop.get("cpu_s", 0.0) + time.process_time() - c0
            loop["epoch"] = epoch + 1
            record["time_s"], record["cpu_s"] = round(loop["elapsed_s"], 3), round(loop["cpu_s"], 3)
            if monitor in record and (loop["best"] is None or better(record[monitor], loop["best"])):
                loop["best"], loop["best_epoch"] = record[monitor], epoch
                checkpoint.save_state(run.path("best"), trainer.state(), loop)
            run.log(record)
            checkpoint.save_state(run.path("last"), trainer.state(), loop)
            saved, last = loop["epoch"], record
            bar.n = loop["epoch"]
            bar.refresh()
            bar.set_postfix({k: f"{v:.4g}" for k, v in record.items()
                             if k in ("loss", monitor) and isinstance(v, float)})
    except KeyboardInterrupt:
        status = "interrupted"
        _say(f"interrupted in epoch {saved + 1}; {_kept(run, saved)}; continue with "
             f"--resume {run.dir}")
    except NonFinite as e:
        status = "nonfinite"
        _say(f"stopped: non-finite loss ({e}) in epoch {saved + 1}; {_kept(run, saved)}")
    finally:
        bar.close()
    return {"run": run.dir, "model": run.config.get("model"), "status": status,
            "epochs": saved, "time_s": round(loop["elapsed_s"], 1), "cpu_s": round(loop.get("cpu_s", 0.0), 1),
            "best_epoch": loop["best_epoch"], monitor: loop["best"],
            "last": {k: v for k, v in last.items() if k != "epoch"}}


def _reporter(bar, loop):
    """report(done, total): `done` of `total` images of the current epoch are through."""
    state = {"t0": None, "first": 0, "done": 0, "shown": 0.0}

    def report(done, total):
        now = time.perf_counter()
        if state["t0"] is None or done < state["done"]:      # a new epoch: the rate counts from its first batch
            state.update(t0=now, first=done, done=done)
            return
        state["done"] = done
        if bar.disable or now - state["shown"] < 0.2 or now - state["t0"] < 0.5:
            return
        state["shown"] = now
        bar.n = loop["epoch"] + done / total
        bar.set_postfix_str(f"{(done - state['first']) / (now - state['t0']):,.0f} images/s", refresh=False)
        bar.refresh()
    return report


def fit_and_finish(run, trainer, cfg, monitor, quiet, figures):
    """`fit` with the run's budget options (--epochs, --minutes, --cpu-minutes, --eval-every), then `figures(run, cfg)`
    where an epoch ran, and `run.finish`: the command's exit code."""
    summary = fit(run, trainer, epochs=cfg["epochs"], minutes=cfg.get("minutes"), eval_every=cfg["eval_every"],
                  monitor=monitor, mode="max", quiet=quiet, clock="cpu" if cfg.get("cpu_minutes") else "wall")
    if summary["epochs"] > 0:
        summary["figures"] = figures(run, cfg)
    return run.finish(summary)


def _kept(run, saved):
    if not checkpoint.exists(run.path("last")):
        return "no checkpoint was written yet"
    return f"kept the last good checkpoint (after epoch {saved}) in {run.path('last.npz')}"


def _say(line):
    print(f"tinydgm: {line}", file=sys.stderr, flush=True)
