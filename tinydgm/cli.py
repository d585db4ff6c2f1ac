"""The `tinydgm` command: `tinydgm train vae|wake-sleep|loglinear`, `tinydgm eval RUN`, `tinydgm sample RUN`.

Each command is a module of `tinydgm.experiments` with `add_train_arguments(parser)`, `train(args)`,
`add_eval_arguments(parser)`, `evaluate(args)` and, where it makes sense, `add_sample_arguments` and
`sample`.  A run directory's `config.json` names its model (key "model"), which is how `eval` and
`sample` find the module.  A `UserError` (bad data, option, checkpoint, run folder or device) is
printed here, once, as one line with exit code 2.
"""
import argparse
import os
import sys

from tinydgm.errors import RunError, UserError
from tinydgm.experiments import loglinear, options, runs, runtime, vae, wake_sleep

MODELS = {"vae": vae, "wake-sleep": wake_sleep, "loglinear": loglinear}
ALIASES = {"pos-hmm": "loglinear"}          # `train pos-hmm` is `train loglinear`: the POS-induction HMM
HELP = {"vae": "a variational autoencoder on binarized MNIST",
        "wake-sleep": "a Helmholtz machine by (reweighted) wake-sleep on binarized MNIST",
        "loglinear": "a (featurized) HMM for part-of-speech induction on UD English EWT (alias: pos-hmm)"}
RUN_COMMANDS = {"eval": ("add_eval_arguments", "evaluate"), "sample": ("add_sample_arguments", "sample")}


def run_model(run_dir):
    """The experiment module of a run directory, from its config.json."""
    kind = runs.read_config(run_dir)["model"]
    if kind not in MODELS:
        raise RunError(f"{os.path.join(run_dir, 'config.json')}: unknown model {kind!r}; expected one of {', '.join(MODELS)}")
    return MODELS[kind]


def check_run_config(run_dir, kind):
    """RunError naming the key of RUN's config.json that a `kind` run cannot have (options.check_config)."""
    name = next(k for k, mod in MODELS.items() if mod is kind)
    fresh = parser().parse_args(["train", name])
    fresh.given, fresh.resume = set(), run_dir                # a config to compare with, checking no --out
    options.check_config(runs.Run.open(run_dir), kind.configure(fresh))


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose mistakes are one line, `tinydgm ...: error: message`, with exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parser(run_module=None):
    """The whole command line; `eval` and `sample` get the options of `run_module` (the RUN's model)."""
    p = Parser(prog="tinydgm", description=__doc__.splitlines()[0], allow_abbrev=False)
    sub = p.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a model into a run directory")
    kinds = train.add_subparsers(dest="model", required=True)
    for kind, mod in MODELS.items():
        aliases = [a for a, k in ALIASES.items() if k == kind]
        mod.add_train_arguments(kinds.add_parser(kind, aliases=aliases, help=f"train {HELP[kind]}",
                                                 allow_abbrev=False))
    for name, (add, _) in RUN_COMMANDS.items():
        q = sub.add_parser(name, help=f"{name} a trained run", allow_abbrev=False,
                           description=f"{name} a trained run; its options depend on the run's model: "
                                       f"`tinydgm {name} RUN --help` lists them")
        q.add_argument("run_dir", metavar="RUN", help="a run directory written by `tinydgm train`")
        if run_module is not None and hasattr(run_module, add):
            getattr(run_module, add)(q)
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    saved = runtime.save_threads()
    runtime.apply_allocator()          # the run-time policy: glibc keeps freed memory; threads: `options.use_threads`
    try:
        with runs.stop_signals():                 # SIGTERM (and SIGINT in a background job) as Ctrl-C
            return _main(argv)
    except UserError as e:
        print(f"tinydgm: error: {e}" if e.exit_code == 2 else f"tinydgm: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("tinydgm: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("tinydgm: error: out of memory; try a smaller --batch-size, --k or --n", file=sys.stderr)
        return 2
    finally:                           # called in a longer process (a test, a notebook): leave BLAS as it was
        runtime.put_back_threads(saved)


def _main(argv):
    words = [a for a in argv if not a.startswith("-")]
    asks_help = "-h" in argv or "--help" in argv
    if words[:1] in (["eval"], ["sample"]) and len(words) > 1:
        # two stages: find RUN's model, then parse again with that model's options
        first, _ = parser().parse_known_args([a for a in argv if a not in ("-h", "--help")])
        if asks_help and not os.path.isfile(os.path.join(first.run_dir, "config.json")):
            parser().parse_args([first.command, "--help"])          # `eval RUN --help` before any run exists
        mod = run_model(first.run_dir)
        add, run = RUN_COMMANDS[first.command]
        if not hasattr(mod, run):
            raise UserError(f"{first.run_dir}: this model has no `{first.command}` command")
        args = parser(mod).parse_args(argv)
        check_run_config(first.run_dir, mod)
        options.check_run_command(args)
        options.use_threads(args, getattr(mod, "EVAL_THREADS", "eval"), follow=True)
        return getattr(mod, run)(args) or 0
    args = parser().parse_args(argv)
    kind = ALIASES.get(args.model, args.model)
    args.given = options.given(argv, getattr(MODELS[kind], "OPTION_ALIASES", None))
    options.use_train_threads(args, getattr(MODELS[kind], "TRAIN_THREADS", "train"))
    return MODELS[kind].train(args) or 0
