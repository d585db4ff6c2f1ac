"""Interrupt check: stop real `tinydgm` processes at random moments, with Ctrl-C (SIGINT) or kill -9 (SIGKILL),
and see that the run folder keeps the promises of "Run folders you can trust".

For each of `train`, `eval` and `eval --combine`, an uninterrupted reference run is made first (its wall time
is the command's typical duration); then each trial starts the same command in a fresh folder, waits a time
drawn uniformly over that duration, and sends the trial's signal (a random first one, then alternating).
After the stop:

  - a Ctrl-C gives exit code 130 (0 if the command had already finished), one line on stderr, no traceback;
    a kill gives -9 (or 0);
  - the folder still loads: config.json is a JSON object, the last and best checkpoints load
    (`tinydgm.checkpoint.load_state`), every other *.json is valid JSON, every *.jsonl line is one JSON
    object; `.tmp-*` files (writes cut short) are skipped, and a result already written equals the reference.

Then the same command is run again to the end (`train ... --resume RUN` once config.json exists) and must
exit 0 with the reference's numbers, bit for bit: train the metrics.jsonl records (loss, lr, valid_elbo),
summary.json and both checkpoints (every array and counter, timings aside), with no leftover `.tmp-*`
file and each checkpoint's .json agreeing with its .npz; eval the eval-test-kK-nN.json numbers, its progress
file removed; combine eval-test-kK.json from shards made beforehand.

    python scripts/interrupt_check.py                        20 trials of each, about 17 minutes on 2 cores
    python scripts/interrupt_check.py --trials 3 --only eval --keep --out /tmp/ic

One process runs at a time.  Prints one line per trial and a summary line; exit status 0 when every check
held, 1 when one failed (the folder is then kept for inspection), 2 for a mistake in an option (one line),
130 when interrupted (the running command is killed, the folder removed unless --keep).
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from tinydgm import checkpoint, files
from tinydgm.errors import UserError
from tinydgm.experiments.evaluation import Progress

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmarks import _cli as cli  # noqa: E402

KINDS = ("train", "eval", "combine")
SIGNALS = {signal.SIGINT: "SIGINT", signal.SIGKILL: "SIGKILL"}
# A train of a few seconds, about half of it in the epochs (the rest: start-up, data, figures): 20 epochs of
# 40 batches of a VAE 784-20-4.
TRAIN = ["train", "vae", "--hidden", "20", "--z-dim", "4", "--limit", "2000", "--batch-size", "50", "--epochs", "20",
         "--threads", "1", "--quiet"]
COMBINE_K = 10                     # the shards' k: the whole test split at k = 10 takes a few seconds
SHARDS = [(0, 4000), (4000, None), (0, 2000)]    # (--start, --limit): the first two tile the split, the third
                                                 # is left out by --combine (it names it in unused_shards)
TIMINGS = {"time_s", "cpu_s", "elapsed_s", "epoch_s"}
LIMIT_S = 600                      # the longest a command may run, interrupted or not
EVAL_KEEPS = 3                     # an eval trial's NLL lasts this many of Progress.EVERY_S (its progress kept
PROBE = 100                        # that often), its --limit timed on PROBE images unless --eval-limit is given


def kinds(text):
    chosen = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in chosen if k not in KINDS]
    if not chosen or bad or len(set(chosen)) < len(chosen):
        raise argparse.ArgumentTypeError(f"expected some of {','.join(KINDS)}, each once, got {text!r}")
    return [k for k in KINDS if k in chosen]


def parser():
    p = cli.Parser(prog="interrupt_check.py", description=__doc__.split("\n\n")[0],
               epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=cli.integer(1), default=20, metavar="N",
                   help="trials of each command (default 20)")
    p.add_argument("--seed", type=cli.integer(0), default=0, help="draws the signals and the moments (default 0)")
    p.add_argument("--only", type=kinds, default=list(KINDS), metavar="LIST",
                   help="comma-separated commands to check, of train,eval,combine (default all three)")
    p.add_argument("--out", metavar="DIR",
                   help="a new or empty folder for the runs (default: a fresh temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the folder at the end (it is kept anyway on a failure)")
    p.add_argument("--eval-k", type=cli.integer(1), default=500, metavar="K",
                   help="importance samples of the eval trials (default 500)")
    p.add_argument("--eval-limit", type=cli.integer(1), metavar="N",
                   help=f"test images of the eval trials (default: as many as take the NLL about "
                        f"{EVAL_KEEPS * Progress.EVERY_S:g} s on this machine, timed on {PROBE}, so that an eval "
                        f"keeps its progress (every {Progress.EVERY_S:g} s) a few times)")
    return p


# ---------------------------------------------------------------- running a command

@dataclass
class Result:
    code: object                  # the exit code (-9: killed), or None when it ran past LIMIT_S
    out: str
    err: str
    seconds: float
    sent: bool = False            # whether the signal was sent (False: the command ended first)


def tinydgm(argv, cwd, stop=None):
    """`python -m tinydgm ARGV` in folder `cwd` to its end, or, with stop=(delay, signal), stopped by the signal
    after `delay` seconds unless it ended first.  Its own session: a Ctrl-C meant for this script does not reach
    it.  (`cwd` is the check's folder, so that `-m` finds the tinydgm this script imports, not one in the
    folder it was started from.)"""
    p = subprocess.Popen([sys.executable, "-m", "tinydgm", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=cwd, start_new_session=True)
    t0, sent = time.perf_counter(), False
    try:
        try:
            if stop is not None:
                try:
                    out, err = p.communicate(timeout=stop[0])
                except subprocess.TimeoutExpired:
                    p.send_signal(stop[1])
                    sent = True
            if stop is None or sent:
                out, err = p.communicate(timeout=LIMIT_S)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            err += f"\n(still running after {LIMIT_S} s: killed)"
            return Result(None, out, err, time.perf_counter() - t0, sent)
        return Result(p.returncode, out, err, time.perf_counter() - t0, sent)
    finally:
        if p.poll() is None:      # this script was interrupted: stop the command it started
            p.kill()
            p.wait()


def where(err):
    """Where a traceback on stderr was raised: in tinydgm.cli.main, or in the start-up before it."""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', err)
    last = f"{os.path.basename(frames[-1][0])}:{frames[-1][1]}" if frames else "?"
    if any(path.endswith(os.path.join("tinydgm", "cli.py")) and fn == "main" for path, _, fn in frames):
        return f"inside tinydgm.cli.main, last frame {last}"
    return f"in the start-up, before tinydgm.cli.main runs (importing; last frame {last})"


# ---------------------------------------------------------------- what a folder must hold

def load_json(path):
    with open(path) as f:
        return json.load(f)


def check_folder(run_dir):
    """Problems with a run folder as a stop may leave it; [] when it still loads."""
    if not os.path.isdir(run_dir):
        return []                                  # killed before it was made
    problems = []
    names = sorted(os.listdir(run_dir))
    for name in names:
        path = os.path.join(run_dir, name)
        if name.startswith(files.TMP_PREFIX) or not os.path.isfile(path):
            continue
        try:
            if name.endswith(".json"):
                value = load_json(path)
                if name == "config.json" and not (isinstance(value, dict) and isinstance(value.get("model"), str)):
                    problems.append("config.json: not a JSON object naming its model")
            elif name.endswith(".jsonl"):
                with open(path) as f:
                    *whole, torn = f.read().split("\n")
                if torn:
                    problems.append(f"{name}: its last line is cut short")
                for i, line in enumerate(whole, 1):
                    if not isinstance(json.loads(line), dict):
                        problems.append(f"{name}, line {i}: not a JSON object")
        except (OSError, ValueError) as e:
            problems.append(f"{name}: not valid JSON ({e})")
    for which in ("last", "best"):
        stem = os.path.join(run_dir, which)
        if checkpoint.exists(stem):
            try:
                checkpoint.load_state(stem)
            except UserError as e:
                problems.append(f"{which}.npz does not load ({e})")
    return problems


def leftovers(run_dir):
    """Files left by writes cut short: `.tmp-*`, and any other dot-file but the lock."""
    if not os.path.isdir(run_dir):
        return []
    return sorted(n for n in os.listdir(run_dir) if n.startswith(".") and n != ".lock")


def strip(value, drop):
    """`value` without the keys in `drop`, at any depth."""
    if isinstance(value, dict):
        return {k: strip(v, drop) for k, v in value.items() if k not in drop}
    if isinstance(value, list):
        return [strip(v, drop) for v in value]
    return value


def difference(a, b, at="state"):
    """Where two checkpoint states differ (arrays bit for bit), or None."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        same = (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and a.tobytes() == b.tobytes())
        return None if same else at
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{at} (keys {sorted(set(a) ^ set(b))})"
        return next((d for k in a for d in [difference(a[k], b[k], f"{at}/{k}")] if d), None)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{at} (length {len(a)} vs {len(b)})"
        return next((d for i, (x, y) in enumerate(zip(a, b)) for d in [difference(x, y, f"{at}/{i}")] if d), None)
    return None if a == b else f"{at} ({a!r} vs {b!r})"


def same_result(path, reference, drop, what):
    """[] when the JSON result at `path` holds the reference's values (keys in `drop` aside)."""
    try:
        got = strip(load_json(path), drop)
    except (OSError, ValueError) as e:
        return [f"{what}: cannot be read ({e})"]
    if got == reference:
        return []
    keys = sorted(k for k in set(got) | set(reference) if got.get(k) != reference.get(k))
    return [f"{what}: differs from the reference in " + ", ".join(f"{k} {got.get(k)!r} vs {reference.get(k)!r}"
                                                                  for k in keys[:4])]


# ---------------------------------------------------------------- the three commands

class Kind:
    """A command to interrupt: `reference()` once, then per trial `prepare`, `command`, `again`, `compare`."""
    name = ""

    def __init__(self, out, args):
        self.out, self.args, self.duration, self.header = out, args, None, ""

    def run(self, argv, stop=None):
        return tinydgm(argv, self.out, stop)

    def timed(self, argv, what):
        r = self.run(argv)
        if r.code != 0:
            raise UserError(f"the uninterrupted reference {what} failed (exit {r.code}): "
                            + " | ".join(r.err.strip().splitlines()[-3:]))
        return r.seconds

    def written(self, run_dir):
        """[] when what the stopped command already wrote as its result equals the reference."""
        return []

    def notes(self, run_dir, rerun):
        return ""


class Train(Kind):
    name = "train"

    def reference(self):
        self.ref = os.path.join(self.out, "ref-train")
        self.duration = self.timed(TRAIN + ["--out", self.ref], "train")
        self.metrics = self._metrics(self.ref)
        self.summary = strip(load_json(os.path.join(self.ref, "summary.json")), TIMINGS | {"run", "figures"})
        self.states = {w: checkpoint.load_state(os.path.join(self.ref, w)) for w in ("last", "best")}

    @staticmethod
    def _metrics(run_dir):
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            return [strip(json.loads(line), TIMINGS) for line in f if line.strip()]

    def prepare(self, trial_dir):
        return trial_dir                                       # train makes it

    def command(self, run_dir):
        return TRAIN + ["--out", run_dir]

    def again(self, run_dir):
        """--resume once config.json is there; before, the same command again.  Notes which."""
        last = os.path.join(run_dir, "last")
        if not os.path.isfile(os.path.join(run_dir, "config.json")):
            self.how = "no config.json: started again"
            return self.command(run_dir)
        epoch = checkpoint.load_state(last)[1]["epoch"] if checkpoint.exists(last) else 0
        self.how = f"resumed after epoch {epoch}" if epoch else "resumed before epoch 1"
        return ["train", "vae", "--resume", run_dir, "--quiet"]

    def notes(self, run_dir, rerun):
        return self.how

    def compare(self, run_dir):
        problems, ref = [], self.metrics
        try:
            got = self._metrics(run_dir)
        except (OSError, ValueError) as e:
            got, problems = ref, [f"metrics.jsonl: cannot be read ({e})"]
        if got != ref:
            first = next((i for i, (a, b) in enumerate(zip(got, ref)) if a != b), min(len(got), len(ref)))
            problems.append(f"metrics.jsonl differs from the reference's from record {first} "
                            f"({got[first] if first < len(got) else 'missing'} vs "
                            f"{ref[first] if first < len(ref) else 'none'})")
        problems += same_result(os.path.join(run_dir, "summary.json"), self.summary, TIMINGS | {"run", "figures"},
                                "summary.json")
        for which, (state, loop) in self.states.items():
            stem = os.path.join(run_dir, which)
            try:
                got, got_loop = checkpoint.load_state(stem)
                _, meta = checkpoint.load(stem)
            except UserError as e:
                problems.append(f"{which}.npz does not load ({e})")
                continue
            diff = difference(got, state) or difference(strip(got_loop, TIMINGS), strip(loop, TIMINGS), "loop")
            if diff:
                problems.append(f"{which} checkpoint differs from the reference's at {diff}")
            try:
                if load_json(stem + ".json") != meta:
                    problems.append(f"{which}.json disagrees with the metadata in {which}.npz "
                                    f"(epoch {load_json(stem + '.json').get('loop', {}).get('epoch')} vs "
                                    f"{meta.get('loop', {}).get('epoch')})")
            except (OSError, ValueError) as e:
                problems.append(f"{which}.json: cannot be read ({e})")
        left = leftovers(run_dir)
        if left:
            problems.append(f"leftovers not removed by the rerun: {', '.join(left)}")
        return problems


def base_run(kind):
    """The trained run that eval and combine evaluate: the train reference, made here if train is not checked."""
    base = os.path.join(kind.out, "ref-train")
    if not os.path.isdir(base):
        kind.timed(TRAIN + ["--out", base], "train")
    return base


def copy_run(source, target):
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.png", ".lock"))


class Eval(Kind):
    name = "eval"

    def reference(self):
        self.base = base_run(self)                                     # the run every eval trial copies
        self.limit = self.args.eval_limit or self.calibrated()
        ref = os.path.join(self.out, "ref-eval")
        copy_run(self.base, ref)
        self.duration = self.timed(self.command(ref), "eval")
        self.file = f"eval-test-k{self.args.eval_k}-n{self.limit}.json"
        self.result = strip(load_json(os.path.join(ref, self.file)), {"run", "time_s"})
        nll_s = load_json(os.path.join(ref, self.file))["time_s"]
        self.header = f"--k {self.args.eval_k} --limit {self.limit}: NLL {nll_s} s, kept every {Progress.EVERY_S:g} s"

    def calibrated(self):
        """The --limit that takes the NLL about EVAL_KEEPS * Progress.EVERY_S seconds, timed on PROBE images."""
        probe = os.path.join(self.out, "ref-timing")
        copy_run(self.base, probe)
        self.timed(["eval", probe, "--k", str(self.args.eval_k), "--limit", str(PROBE), "--threads", "1", "--quiet"],
                   "eval (timing)")
        seconds = load_json(os.path.join(probe, f"eval-test-k{self.args.eval_k}-n{PROBE}.json"))["time_s"]
        return int(min(10000, max(PROBE, round(PROBE * EVAL_KEEPS * Progress.EVERY_S / max(seconds, 0.1)))))

    def prepare(self, trial_dir):
        copy_run(self.base, trial_dir)
        return trial_dir

    def command(self, run_dir):
        return ["eval", run_dir, "--k", str(self.args.eval_k), "--limit", str(self.limit),
                "--threads", "1", "--quiet"]

    def again(self, run_dir):
        return self.command(run_dir)

    def written(self, run_dir):
        path = os.path.join(run_dir, self.file)
        return same_result(path, self.result, {"run", "time_s"}, self.file + " (before the rerun)") \
            if os.path.isfile(path) else []

    def notes(self, run_dir, rerun):
        m = re.search(r"continuing from image (\d+)", rerun.err)
        return f"continued from image {m.group(1)}" if m else "from the start"

    def compare(self, run_dir):
        problems = same_result(os.path.join(run_dir, self.file), self.result, {"run", "time_s"}, self.file)
        progress = [n for n in os.listdir(run_dir) if n.endswith(".progress.json")]
        if progress:
            problems.append(f"progress left after the evaluation ended: {', '.join(progress)}")
        return problems


class Combine(Eval):
    name = "combine"

    def reference(self):
        self.base = base_run(self)
        self.shards = os.path.join(self.out, "ref-shards")            # the run and its shards, copied per trial
        copy_run(self.base, self.shards)
        for start, limit in SHARDS:
            self.timed(["eval", self.shards, "--k", str(COMBINE_K), "--start", str(start), "--threads", "1", "--quiet"]
                       + (["--limit", str(limit)] if limit else []), f"shard eval --start {start}")
        ref = os.path.join(self.out, "ref-combine")
        copy_run(self.shards, ref)
        self.duration = self.timed(self.command(ref), "eval --combine")
        self.file = f"eval-test-k{COMBINE_K}.json"
        self.result = strip(load_json(os.path.join(ref, self.file)), {"run"})
        shards = ", ".join(f"{start}+{limit or 'rest'}" for start, limit in SHARDS)
        self.header = f"--k {COMBINE_K}, shards {shards}"
        if self.result.get("unused_shards") is None:
            raise UserError(f"{ref}: the reference --combine left no shard unused; expected one of {SHARDS}")

    def prepare(self, trial_dir):
        copy_run(self.shards, trial_dir)
        return trial_dir

    def command(self, run_dir):
        return ["eval", run_dir, "--k", str(COMBINE_K), "--combine", "--threads", "1", "--quiet"]

    def written(self, run_dir):
        path = os.path.join(run_dir, self.file)
        return same_result(path, self.result, {"run"}, self.file + " (before the rerun)") \
            if os.path.isfile(path) else []

    def notes(self, run_dir, rerun):
        return ""

    def compare(self, run_dir):
        return same_result(os.path.join(run_dir, self.file), self.result, {"run"}, self.file)


# ---------------------------------------------------------------- a trial

@dataclass
class Trial:
    kind: str
    index: int
    signal: int
    delay: float
    code: object = None
    sent: bool = False
    rerun: object = None
    notes: str = ""
    problems: list = field(default_factory=list)
    startup: bool = False         # a Ctrl-C that met the start-up (imports), before tinydgm.cli.main


def stopped_well(t, r):
    """Problems with how the command took its signal."""
    if r.code is None:
        return [f"did not end after {SIGNALS[t.signal]}: {r.err.strip().splitlines()[-1]}"]
    problems = []
    expected = (130, 0) if t.signal == signal.SIGINT else (-signal.SIGKILL, 0)
    if r.code not in expected:
        killed = " (killed by SIGINT: a shell shows 130)" if r.code == -signal.SIGINT else ""
        problems.append(f"exit code {r.code}{killed}, expected {' or '.join(map(str, expected))}")
    if t.signal == signal.SIGINT and "Traceback" in r.err:
        t.startup = "in the start-up" in where(r.err)
        problems.append(f"stderr has a traceback, raised {where(r.err)}: "
                        f"{r.err.strip().splitlines()[-1].strip()}")
    elif t.signal == signal.SIGINT and r.code == 130:
        lines = [line for line in r.err.splitlines() if line.strip()]
        if len(lines) != 1 or not lines[0].startswith("tinydgm: "):
            problems.append(f"stderr is not one 'tinydgm: ...' line: {r.err.strip()!r}")
    return problems


def trial(kind, t, trial_dir):
    run_dir = kind.prepare(trial_dir)
    r = kind.run(kind.command(run_dir), stop=(t.delay, t.signal))
    t.code, t.sent = r.code, r.sent
    t.problems += stopped_well(t, r)
    t.problems += [f"after the stop: {p}" for p in check_folder(run_dir) + kind.written(run_dir)]
    again = kind.run(kind.again(run_dir))
    t.rerun, t.notes = again.code, kind.notes(run_dir, again)
    if again.code != 0:
        tail = " | ".join(again.err.strip().splitlines()[-3:])
        t.problems.append(f"the rerun exited {again.code}: {tail}")
        return t
    if "Traceback" in again.err:
        t.problems.append(f"the rerun's stderr has a traceback: {again.err.strip().splitlines()[-1]}")
    t.problems += [f"after the rerun: {p}" for p in check_folder(run_dir)]
    t.problems += kind.compare(run_dir)
    return t


def line(t, duration):
    sig = SIGNALS[t.signal]
    when = f"at {t.delay:5.2f} s of {duration:4.1f}" if t.sent else f"{t.delay:5.2f} s: ended first"
    verdict = "ok" if not t.problems else "FAIL: " + "; ".join(t.problems)
    return (f"{t.kind:<8} {t.index:>3}  {sig:<7}  {when}  exit {str(t.code):>4}  rerun exit {t.rerun}"
            f"{'  ' + t.notes if t.notes else ''}  {verdict}")


# ---------------------------------------------------------------- the whole check

def make_out(out):
    """The folder for the runs: a fresh temporary one, or --out, new or empty (UserError otherwise)."""
    if out is None:
        return tempfile.mkdtemp(prefix="interrupt-check-")
    out = os.path.abspath(out)
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise UserError(f"--out {out}: not a new or empty folder; choose another")
    files.check_writable(out)
    os.makedirs(out, exist_ok=True)
    return out


def check(args, out):
    classes = {"train": Train, "eval": Eval, "combine": Combine}
    t0, failed, summary, extra = time.perf_counter(), False, [], []
    for name in args.only:
        kind = classes[name](out, args)
        kind.reference()
        print(f"{name}: reference run {kind.duration:.1f} s{kind.header and f' ({kind.header})'}; "
              f"{args.trials} trials", flush=True)
        draw = random.Random(f"{args.seed}:{name}")
        first = draw.choice(list(SIGNALS))
        trials = []
        for i in range(args.trials):
            sig = first if i % 2 == 0 else next(s for s in SIGNALS if s != first)
            t = trial(kind, Trial(name, i + 1, sig, draw.uniform(0, kind.duration)),
                      os.path.join(out, f"{name}-{i + 1:02d}"))
            print(line(t, kind.duration), flush=True)
            trials.append(t)
        ok = sum(not t.problems for t in trials)
        failed |= ok < len(trials)
        summary.append(f"{name}: {len(trials)} trials, {ok} ok")
        detail = f"{name}: {sum(t.sent for t in trials)} of {len(trials)} stopped before they ended"
        if any(t.startup for t in trials):
            detail += f", {sum(t.startup for t in trials)} Ctrl-C in the start-up (a traceback)"
        if name == "eval":
            detail += f", {sum(t.notes.startswith('continued') for t in trials)} reruns continued from kept progress"
        if name == "train":
            detail += f", {sum(t.notes.startswith('resumed after') for t in trials)} resumed from a checkpoint"
        extra.append(detail)
    for detail in extra:
        print(detail)
    print(f"total wall time {time.perf_counter() - t0:.0f} s")
    print("; ".join(summary), flush=True)
    return 1 if failed else 0


def main(argv=None):
    args = parser().parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)      # also when started where SIGINT is ignored:
    signal.signal(signal.SIGTERM, signal.default_int_handler)     # the commands get it back at its default
    out, code = None, 2
    try:
        out = make_out(args.out)
        code = check(args, out)
    except UserError as e:
        print(f"interrupt_check.py: error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupt_check.py: interrupted; the command running was killed", file=sys.stderr)
        code = 130
    finally:
        if out is not None:
            if args.keep or code in (1, 2):                       # 2: a reference run failed
                print(f"the runs are in {out}", file=sys.stderr if code else sys.stdout)
            else:
                shutil.rmtree(out, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
