"""Every gradient estimator of one model, trained under the same budget (CPU time or epochs) and seeds,
evaluated with the same test NLL, in one table and two figures (issue 16, item 3).

    python scripts/compare_estimators.py --model vae --cpu-minutes 30 --seeds 0,1 --eval-k 5000
    python scripts/compare_estimators.py --model sbn --epochs 20 --seeds 0,1 --eval-k 5000

The budget is one of `--cpu-minutes M` (the same CPU time for every estimator, on this machine) and
`--epochs N` (the same passes over the data, on any machine); the table states each run's epochs and CPU
seconds, so a comparison under either can be repeated elsewhere under the other.  Each run is
`python -m tinydgm train ... --seed S --threads 1 --minutes M --cpu-minutes` (or `--epochs N`)
`--schedule anneal --quiet --grad-variance-every 1 --out DIR/NAME-sS`, then `python -m tinydgm eval
DIR/NAME-sS --k K --threads 1 --quiet`; `--jobs` runs (train, then eval) go at a time, one per core.
DIR defaults to runs/compare-MODEL-30-cpu-minutes or runs/compare-MODEL-20-epochs; a run folder trained
under the other kind of budget is refused, in one line.  The estimators:

    vae  (784-200-200-50)   elbo (reparameterised), score-function, score-function-baseline, iwae-5, iwae-50
    sbn  (layers 200,200)   ws, rws-5, reinforce, nvil, vimco-5, relaxed, straight-through

An estimator the installed `tinydgm train` does not accept (checked against its --help) is skipped with
a message.  Writes DIR/results.json and DIR/results.md (headed by the budget; per run: test NLL = -L_K,
test ELBO, epochs, CPU seconds; and the mean over seeds), DIR/curves.png (the validation bound of
metrics.jsonl against CPU seconds: valid_elbo for the VAE, valid_bound = L_10 for the SBN) and
DIR/grad_variance.png (each run's grad_var_* against CPU seconds, log scale), the figures only where
matplotlib is installed.
A run that already finished (summary.json) is not trained again and a kept evaluation with the same
K and images is reused, so an interrupted comparison continues where it stopped.
`--limit N --epochs-cap E --eval-limit N` make a smoke run of the whole pipeline in seconds; `--train-only`
trains without evaluating (the evaluations, about 40 CPU-minutes each at K = 5000, can come later);
`--report-only` writes the table and figures from what is there, training and evaluating nothing.
"""
import concurrent.futures
import contextlib
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchmarks import _cli as cli  # noqa: E402
from tinydgm import files  # noqa: E402
from tinydgm.errors import UserError  # noqa: E402

MODELS = {
    "vae": (["train", "vae"], "valid_elbo", {
        "elbo": ["--estimator", "elbo"],
        "score-function": ["--estimator", "score-function"],
        "score-function-baseline": ["--estimator", "score-function-baseline"],
        "iwae-5": ["--estimator", "iwae", "--k", "5"],
        "iwae-50": ["--estimator", "iwae", "--k", "50"],
    }),
    "sbn": (["train", "wake-sleep", "--layers", "200,200"], "valid_bound", {
        "ws": ["--estimator", "ws"],
        "rws-5": ["--estimator", "rws", "--k", "5"],
        "reinforce": ["--estimator", "reinforce"],
        "nvil": ["--estimator", "nvil"],
        "vimco-5": ["--estimator", "vimco", "--k", "5"],
        "relaxed": ["--estimator", "relaxed"],
        "straight-through": ["--estimator", "straight-through"],
    }),
}
GRAD_VARIANCE = "--grad-variance-every"


def say(line):
    print(f"compare_estimators.py: {line}", file=sys.stderr, flush=True)


def tinydgm(*args):
    return [sys.executable, "-m", "tinydgm", *args]


def environment():
    """One BLAS/OpenMP thread in every child, whatever the caller's environment says."""
    env = dict(os.environ)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    return env


# ---------------------------------------------------------------- what the installed command accepts

def accepted(help_text, words):
    """'' if the `tinydgm train` whose --help is `help_text` accepts `words` (flags, and values of flags
    with choices {a,b,...}), else what it does not accept."""
    for i, word in enumerate(words):
        if not word.startswith("--"):
            continue
        if not re.search(re.escape(word) + r"(?![\w-])", help_text):
            return f"the option {word}"
        choices = re.search(re.escape(word) + r" \{([^}]*)\}", help_text)
        if choices and i + 1 < len(words) and words[i + 1] not in choices.group(1).split(","):
            return f"{word} {words[i + 1]} (choices: {choices.group(1)})"
    return ""


# ---------------------------------------------------------------- the budget: CPU time or epochs

def budget(args):
    """The budget in words: "30 CPU-minutes each" or "20 epochs each"."""
    if args.epochs:
        return f"{args.epochs} epoch{'s' * (args.epochs != 1)} each"
    return f"{args.cpu_minutes:g} CPU-minute{'s' * (args.cpu_minutes != 1)} each"


def budget_words(args):
    """`tinydgm train`'s options for the budget (--epochs-cap stops a run sooner)."""
    if args.epochs:
        return ["--epochs", str(min(args.epochs, args.epochs_cap or args.epochs))]
    cap = ["--epochs", str(args.epochs_cap)] if args.epochs_cap else []
    return ["--minutes", str(args.cpu_minutes), "--cpu-minutes", *cap]


def budget_of(config):
    """The kind of budget a run's config.json holds, and that budget in words."""
    if config.get("minutes") is None:
        return "epochs", f"{config.get('epochs')} epochs"
    if config.get("cpu_minutes"):
        return "cpu-minutes", f"{config['minutes']:g} CPU-minutes"
    return "minutes", f"{config['minutes']:g} wall-clock minutes"


def check_budgets(runs, args):
    """A UserError for the first run folder there is that was trained under another kind of budget: continued,
    or put in the table, it would not compare with the others."""
    kind = "epochs" if args.epochs else "cpu-minutes"
    for name, seed, _ in runs:
        config = read_json(os.path.join(run_folder(args, name, seed), "config.json"))
        if config and budget_of(config)[0] != kind:
            raise UserError(f"{run_folder(args, name, seed)}: trained under a budget of {budget_of(config)[1]}, "
                            f"not of {'epochs' if args.epochs else 'CPU-minutes'}; give another --out for "
                            f"{budget(args)} (the default folder names the budget)")


def run_folder(args, name, seed):
    return os.path.join(args.out, f"{name}-s{seed}")


def plan(args):
    """The runs to make: [(name, seed, train arguments)], after checking them against the installed --help."""
    base, _, table = MODELS[args.model]
    help_text = subprocess.run(tinydgm(*base[:2], "--help"), capture_output=True, text=True,
                               env=environment()).stdout
    common = ["--threads", "1", *budget_words(args), "--schedule", "anneal", "--quiet"]
    if accepted(help_text, [GRAD_VARIANCE]):
        say(f"`tinydgm {' '.join(base[:2])}` has no {GRAD_VARIANCE} yet: no gradient variances recorded")
    else:
        common += [GRAD_VARIANCE, "1"]
    if args.limit:
        common += ["--limit", str(args.limit)]
    runs = []
    for name in args.estimators:
        missing = accepted(help_text, table[name])
        if missing:
            say(f"skipped {name}: the installed `tinydgm {' '.join(base[:2])}` does not accept {missing} "
                f"(see its --help)")
            continue
        runs += [(name, seed, [*base, *table[name], *common, "--seed", str(seed)]) for seed in args.seeds]
    return runs


# ---------------------------------------------------------------- one run: train, then evaluate

def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


TEST_IMAGES = 10_000                     # the binarized MNIST test split


def best_epochs(run_dir):
    """Epochs of training behind the run's best checkpoint (best.json), or None."""
    loop = (read_json(os.path.join(run_dir, "best.json")) or {}).get("loop") or {}
    return loop.get("epoch")


def current(result, epochs):
    """Whether an evaluation result is of the best checkpoint after `epochs` (older results do not say)."""
    return result.get("epochs_trained") in (None, epochs)


def kept_evaluation(run_dir, k, n):
    """The last result in RUN/evals.jsonl of the test split from image 0 with this k and n images, of the best
    checkpoint as it is now, else None."""
    found, n, epochs = None, n or TEST_IMAGES, best_epochs(run_dir)
    try:
        with open(os.path.join(run_dir, "evals.jsonl")) as f:
            for line in f:
                r = json.loads(line)
                if (r.get("split"), r.get("k"), r.get("start", 0), r.get("checkpoint"), r.get("seed")) == \
                        ("test", k, 0, "best", 0) and r.get("n") == n and current(r, epochs):
                    found = r
    except (OSError, ValueError):
        pass
    return found


def spent(run_dir, summary):
    """The epochs and CPU seconds a run stopped short has trained: from its summary, else its last metrics line."""
    if summary is None:
        try:
            last = metrics(run_dir)[-1:]
        except (OSError, ValueError):
            last = []
        summary = {"epochs": last[0]["epoch"] + 1, "cpu_s": last[0].get("cpu_s")} if last else {}
    return {k: summary[k] for k in ("epochs", "cpu_s") if summary.get(k) is not None}


def one_run(name, seed, train_args, args):
    """Train (or continue) DIR/NAME-sS, evaluate its best checkpoint; a result record."""
    run_dir = run_folder(args, name, seed)
    log = os.path.join(args.out, f"{name}-s{seed}.log")
    record = {"estimator": name, "seed": seed, "run": run_dir}
    summary = read_json(os.path.join(run_dir, "summary.json"))
    unfinished = summary is None or summary.get("status") == "interrupted"     # never trained, or cut off
    if unfinished and args.report_only:
        return {**record, **spent(run_dir, summary),
                "status": "not trained" if summary is None else "interrupted (not continued)"}
    if unfinished:                                                         # continue it, with this call's budget
        config = read_json(os.path.join(run_dir, "config.json"))
        command = tinydgm("train", config.get("model", train_args[1]), "--resume", run_dir, "--threads", "1",
                          "--quiet", *budget_words(args)) if config else tinydgm(*train_args, "--out", run_dir)
        done = logged(command, log)
        summary = read_json(os.path.join(run_dir, "summary.json"))
        if summary is None or summary.get("status") == "interrupted":
            return {**record, **spent(run_dir, summary),
                    "status": f"training failed (exit {done.returncode}; see {log})"}
    record.update(status=summary.get("status"), epochs=summary.get("epochs"), cpu_s=summary.get("cpu_s"),
                  time_s=summary.get("time_s"), best_epoch=summary.get("best_epoch"),
                  valid_best=summary.get(MODELS[args.model][1]))
    if not summary.get("epochs"):
        return record
    result = kept_evaluation(run_dir, args.eval_k, args.eval_limit)          # (--train-only: the table keeps it)
    if result is None and (args.train_only or args.report_only):
        return {**record, "status": f"{record['status']}, not evaluated"}
    if result is None:
        result = evaluate(run_dir, args, log)
        if isinstance(result, str):
            return {**record, "status": result}
    record.update(test_nll=result.get("test_nll"), test_elbo=result.get("test_elbo"), eval_n=result.get("n"),
                  eval_k=result.get("k"))
    if "active_units" in result:
        record["active_units"] = result["active_units"]
    return record


@contextlib.contextmanager
def opened(log):
    """The run's log, open for appending, for a child's output; a fault of the machine is an OutputError."""
    try:
        f = open(log, "ab")
    except OSError as e:
        raise files.fault(e, log) from None
    with f:
        yield f


def logged(command, log):
    """Run `command` and append it to `log`: a `$ command` line, its stderr as it comes, then its stdout."""
    files.append_line(log, f"$ {' '.join(command)}")
    with opened(log) as out:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=out, text=True, env=environment())
    if done.stdout:
        files.append_line(log, done.stdout)
    return done


def evaluate(run_dir, args, log):
    """-L_K of the best checkpoint on the test images: in shards of --eval-shard images (each kept in the run
    as it finishes, so an interrupted evaluation loses one shard at most), then `tinydgm eval --combine`.
    The last result record, or a line saying what failed."""
    n = args.eval_limit or TEST_IMAGES
    size = n if args.eval_limit else min(args.eval_shard, n)           # --combine tiles the whole split
    base = ["eval", run_dir, "--k", str(args.eval_k), "--threads", "1", "--quiet"]
    steps = [] if size < n else [[*base, *(["--limit", str(args.eval_limit)] if args.eval_limit else [])]]
    epochs = best_epochs(run_dir)
    for start in range(0, n, size) if size < n else ():
        limit = min(size, n - start)
        name = f"eval-test-k{args.eval_k}" + f"-from{start}" * bool(start) + f"-n{limit}.json"
        kept = read_json(os.path.join(run_dir, name))
        if kept is None or not current(kept, epochs):                 # none, or of an earlier best checkpoint
            steps.append([*base, "--start", str(start), "--limit", str(limit)])
    if size < n:
        steps.append([*base, "--combine"])
    result = None
    for words in steps:
        done = logged(tinydgm(*words), log)
        lines = done.stdout.strip().splitlines()
        result = json.loads(lines[-1]) if done.returncode == 0 and lines else None
        if result is None:
            return f"evaluation failed (exit {done.returncode}; see {log})"
    return result


# ---------------------------------------------------------------- table and figures

def metrics(run_dir):
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [r for r in (json.loads(line) for line in f if line.strip()) if "event" not in r]


def variance_key(record):
    return next((k for k in record if k.startswith("grad_var_") and k != "grad_var_s"), None)


def summarise(records, monitor):
    """Mean (and sd) over seeds per estimator, in the order the estimators were run."""
    out = []
    for name in dict.fromkeys(r["estimator"] for r in records):
        rows = [r for r in records if r["estimator"] == name and r.get("test_nll") is not None]
        row = {"estimator": name, "seeds": len(rows)}
        for key in ("test_nll", "test_elbo", "epochs", "cpu_s", "active_units"):
            values = [r[key] for r in rows if r.get(key) is not None]
            if values:
                row[key] = statistics.fmean(values)
                if key == "test_nll" and len(values) > 1:
                    row["test_nll_sd"] = statistics.stdev(values)
        variances = []
        for r in rows:
            last = [m for m in metrics(r["run"]) if variance_key(m)]
            if last:
                variances.append(last[-1][variance_key(last[-1])])
        if variances:
            row["grad_var_last"] = statistics.fmean(variances)
        out.append(row)
    return out


def number(v, digits=2):
    if v is None:
        return "–"
    if isinstance(v, float) and (abs(v) >= 1e5 or 0 < abs(v) < 1e-2):
        return f"{v:.3g}"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def write_markdown(path, args, records, means, command):
    capped = args.epochs_cap and args.epochs_cap < (args.epochs or math.inf)
    cap = f", stopped at {args.epochs_cap} epochs by --epochs-cap" if capped else ""
    lines = [f"# Estimators compared: {args.model}, {budget(args)}", "",
             f"Command: `{command}`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
             f"{time.strftime('%Y-%m-%d')}. Budget: {budget(args)} (one BLAS thread, {args.jobs} runs at a time"
             f"{cap}); test NLL = -L_{args.eval_k} on {args.eval_limit or 'all 10,000'} test images, the model's "
             f"own q as proposal.", "",
             "Each run's epochs and CPU seconds are in the tables: on another machine `--epochs N` repeats "
             "the passes over the data, `--cpu-minutes M` the CPU time.", "",
             "## Mean over seeds", "",
             "| estimator | seeds | test NLL | sd | test ELBO | epochs | CPU s | active units | last grad var (recognition) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in means:
        lines.append(f"| {m['estimator']} | {m['seeds']} | {number(m.get('test_nll'))} | {number(m.get('test_nll_sd'))} | "
                     f"{number(m.get('test_elbo'))} | {number(m.get('epochs'), 1)} | {number(m.get('cpu_s'), 1)} | "
                     f"{number(m.get('active_units'), 1)} | {number(m.get('grad_var_last'))} |")
    lines += ["", "## Each run", "",
              f"| estimator | seed | test NLL | test ELBO | epochs | CPU s | best {MODELS[args.model][1]} | status | run |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['estimator']} | {r['seed']} | {number(r.get('test_nll'))} | {number(r.get('test_elbo'))} | "
                     f"{number(r.get('epochs'))} | {number(r.get('cpu_s'), 1)} | {number(r.get('valid_best'))} | "
                     f"{r.get('status')} | `{r['run']}` |")
    files.write_text(path, "\n".join(lines) + "\n")


def figures(args, records, monitor):
    """curves.png and grad_variance.png, or [] without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("matplotlib is not installed: no figures (pip install -e '.[plot]')")
        return []
    names = list(dict.fromkeys(r["estimator"] for r in records))
    colours = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(names)}
    styles = ["-", "--", ":", "-."]
    seeds = sorted({r["seed"] for r in records})
    out = []
    for file, ylabel, pick, log in (
            ("curves.png", f"validation bound ({monitor}, nats)", lambda m: m.get(monitor), False),
            ("grad_variance.png", "total variance of the recognition gradient",
             lambda m: m.get(variance_key(m)) if variance_key(m) else None, True)):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        bests, lowest, named = [], math.inf, set()
        for r in records:
            points = [(m["cpu_s"], pick(m)) for m in metrics(r["run"]) if pick(m) is not None and "cpu_s" in m]
            points = [(x, y) for x, y in points if isinstance(y, (int, float)) and math.isfinite(y) and (y > 0 or not log)]
            if not points:
                continue
            xs, ys = zip(*points)
            ax.plot(xs, ys, styles[seeds.index(r["seed"]) % len(styles)], marker=".", markersize=3,
                    color=colours[r["estimator"]], label="_" if r["estimator"] in named else r["estimator"])
            named.add(r["estimator"])                # one legend entry per estimator (colour), one per seed (line)
            bests.append(max(ys))
            lowest = min(lowest, min(ys))
        if not bests:
            plt.close(fig)
            continue
        if log:
            ax.set_yscale("log")
        else:                             # every run's best in view; a diverging run's fall is cut off
            top, bottom = max(bests), min(bests)
            floor = bottom - max(0.5 * (top - bottom), 5.0)
            if lowest < floor:
                ax.set_ylim(floor, top + 0.05 * (top - floor))
                ax.text(0.01, 0.01, "lower points cut off", transform=ax.transAxes, fontsize=7, color="grey")
        ax.set_xlabel("CPU seconds of training")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{args.model}: {budget(args)}")
        for i, seed in enumerate(seeds if len(seeds) > 1 else []):
            ax.plot([], [], styles[i % len(styles)], color="grey", label=f"seed {seed}")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))      # beside the plot, over no curve
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = os.path.join(args.out, file)
        try:
            with files.writing(path) as f:
                fig.savefig(f, format="png", dpi=120)
        finally:
            plt.close(fig)
        out.append(path)
    return out


# ---------------------------------------------------------------- main

def parse(argv):
    """The options, every one checked: a mistake is one line naming it, exit code 2, before anything is written."""
    p = cli.Parser(prog="compare_estimators.py", description=cli.first_paragraph(__doc__))
    p.add_argument("--model", choices=sorted(MODELS), required=True)
    budgets = p.add_mutually_exclusive_group(required=True)
    budgets.add_argument("--cpu-minutes", type=cli.number(0), help="the budget: each training run's CPU time")
    budgets.add_argument("--epochs", type=cli.integer(1), help="the budget: each training run's passes over the data")
    p.add_argument("--seeds", type=cli.integers(0, "0,1"), default="0,1",
                   help="comma-separated seeds, the same for every estimator (default 0,1)")
    p.add_argument("--eval-k", type=cli.integer(1), default=5000, help="importance samples of the test NLL (default 5000)")
    p.add_argument("--eval-limit", type=cli.integer(1), help="evaluate only the first N test images (default all 10,000)")
    p.add_argument("--eval-shard", type=cli.integer(1),
                   help="evaluate all test images in shards of this many, each kept as it finishes (default 2000; "
                        "not with --eval-limit)")
    p.add_argument("--jobs", type=cli.integer(1), default=2, help="runs at a time, one per core (default 2)")
    p.add_argument("--out", help="folder for the runs and results (default runs/compare-MODEL-M-cpu-minutes "
                   "or runs/compare-MODEL-N-epochs)")
    p.add_argument("--estimators", help="comma-separated subset (default all of the model's)")
    p.add_argument("--limit", type=cli.integer(1), help="train and validate on the first N images (a smoke run)")
    p.add_argument("--epochs-cap", type=cli.integer(1), help="stop each run after this many epochs even within the budget")
    p.add_argument("--train-only", action="store_true", help="train (or continue) the runs, evaluate none of them "
                   "(a later call without it evaluates them; the table then fills in)")
    p.add_argument("--report-only", action="store_true", help="train and evaluate nothing: write the table and "
                   "figures from the runs and kept evaluations there are (a seed not run is named in the table "
                   "and left out of the means)")
    args = p.parse_args(argv)
    table = MODELS[args.model][2]
    args.estimators = [n for n in args.estimators.split(",") if n.strip()] if args.estimators else list(table)
    unknown = [n for n in args.estimators if n not in table]
    if unknown or not args.estimators:
        p.error(f"--estimators: unknown estimator(s) {', '.join(unknown) or repr('')} for --model {args.model}; "
                f"expected some of {','.join(table)}")
    for flag, values in (("--estimators", args.estimators), ("--seeds", args.seeds)):
        if len(set(values)) < len(values):
            p.error(f"{flag}: each one once (they name the run folders), got {','.join(map(str, values))}")
    if args.eval_limit and args.eval_limit > TEST_IMAGES:
        p.error(f"--eval-limit: expected at most {TEST_IMAGES:,} (the test images), got {args.eval_limit}")
    if args.train_only and args.report_only:
        p.error("--report-only: trains nothing, so not with --train-only")
    if args.eval_shard and args.eval_limit:
        p.error("--eval-shard: the shards tile all 10,000 test images; with --eval-limit N there is one shard")
    args.eval_shard = args.eval_shard or 2000
    kind = f"{args.epochs}-epochs" if args.epochs else f"{args.cpu_minutes:g}-cpu-minutes"
    args.out = args.out or os.path.join("runs", f"compare-{args.model}-{kind}")
    return args


def finite(value):
    """`value` with each NaN or infinity made null: JSON has none."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def run_all(runs, args):
    """Each run's record, `--jobs` at a time; on Ctrl-C or an error no further run is started."""
    records = [None] * len(runs)
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(one_run, name, seed, train_args, args): i
                   for i, (name, seed, train_args) in enumerate(runs)}
        try:
            for future in concurrent.futures.as_completed(futures):
                r = records[futures[future]] = future.result()
                say(f"{r['estimator']} seed {r['seed']}: {r.get('status')}, test NLL {number(r.get('test_nll'))}, "
                    f"{r.get('epochs')} epochs, {r.get('cpu_s')} CPU s")
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)     # the runs under way stop on their own Ctrl-C
            raise
    return records


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    files.check_writable(args.out)
    runs = plan(args)
    check_budgets(runs, args)
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        raise files.fault(e, args.out) from None
    monitor = MODELS[args.model][1]
    say(f"{len(runs)} runs, {args.jobs} at a time, {budget(args)}, into {args.out}")
    records = run_all(runs, args)
    means = summarise(records, monitor)
    command = " ".join(["python", "scripts/compare_estimators.py", *argv])
    result = {"model": args.model, "command": command, "budget": budget(args), "cpu_minutes": args.cpu_minutes,
              "epochs": args.epochs, "epochs_cap": args.epochs_cap, "seeds": args.seeds,
              "eval_k": args.eval_k, "eval_limit": args.eval_limit, "runs": records, "mean": means}
    result["figures"] = figures(args, records, monitor)
    files.write_json(os.path.join(args.out, "results.json"), finite(result))
    write_markdown(os.path.join(args.out, "results.md"), args, records, means, command)
    print(json.dumps({"out": args.out, "results": os.path.join(args.out, "results.md"), "figures": result["figures"],
                      "mean": {m["estimator"]: m.get("test_nll") for m in means}}))
    if args.report_only:
        return 0 if any(r.get("test_nll") is not None for r in records) else 1
    if args.train_only:
        return 0 if all(r.get("epochs") for r in records) else 1
    return 0 if all(r.get("test_nll") is not None for r in records) else 1


if __name__ == "__main__":
    sys.exit(cli.run("compare_estimators.py", main,
                     interrupted="interrupted; the same command continues where it stopped"))
