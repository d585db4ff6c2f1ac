"""The `tinydgm` command: `tinydgm train vae|wake-sleep|pos-hmm`, `tinydgm eval RUN`, `tinydgm sample RUN`.

Each command is a module of `tinydgm.experiments` with `add_train_arguments(parser)`, `train(args)`,
`add_eval_arguments(parser)`, `evaluate(args)` and, where it makes sense, `add_sample_arguments` and
`sample`.  A run directory's `config.json` names its model (key "model"), which is how `eval` and
`sample` find the module.  A `UserError` (bad data, option, checkpoint, run folder or device) is
printed here, once, as one line with exit code 2.
"""
import argparse
import json
import os
import sys

from tinydgm import backend
from tinydgm.errors import RunError, UserError
from tinydgm.experiments import options, pos_hmm, vae, wake_sleep

MODELS = {"vae": vae, "wake-sleep": wake_sleep, "loglinear": pos_hmm}
ALIASES = {"pos-hmm": "loglinear"}          # `train pos-hmm` is `train loglinear`: the POS-induction HMM
HELP = {"vae": "a variational autoencoder on binarized MNIST",
        "wake-sleep": "a Helmholtz machine by (reweighted) wake-sleep on binarized MNIST",
        "loglinear": "a (featurized) HMM for part-of-speech induction on UD English EWT (alias: pos-hmm)"}
RUN_COMMANDS = {"eval": ("add_eval_arguments", "evaluate"), "sample": ("add_sample_arguments", "sample")}


def run_model(run_dir):
    """The experiment module of a run directory, from its config.json."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise RunError(f"{run_dir}: not a run directory (expected {path}, written by `tinydgm train`)")
    try:
        with open(path) as f:
            kind = json.load(f)["model"]
    except (ValueError, KeyError) as e:
        raise RunError(f"{path}: expected JSON with a \"model\" key ({e})") from None
    if kind not in MODELS:
        raise RunError(f"{path}: unknown model {kind!r}; expected one of {', '.join(MODELS)}")
    return MODELS[kind]


def parser(run_module=None):
    """The whole command line; `eval` and `sample` get the options of `run_module` (the RUN's model)."""
    p = argparse.ArgumentParser(prog="tinydgm", description=__doc__.splitlines()[0], allow_abbrev=False)
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
    saved = backend.save_threads()
    try:
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
            options.check_run_command(args)
            options.use_threads(args, getattr(mod, "EVAL_THREADS", "eval"), follow=True)
            return getattr(mod, run)(args) or 0
        args = parser().parse_args(argv)
        kind = ALIASES.get(args.model, args.model)
        args.given = options.given(argv, getattr(MODELS[kind], "OPTION_ALIASES", None))
        options.use_train_threads(args, getattr(MODELS[kind], "TRAIN_THREADS", "train"))
        return MODELS[kind].train(args) or 0
    except UserError as e:
        print(f"tinydgm: error: {e}", file=sys.stderr)
        return e.exit_code
    finally:                           # called in a longer process (a test, a notebook): leave BLAS as it was
        backend.put_back_threads(saved)
