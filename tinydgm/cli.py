"""The `tinydgm` command: `tinydgm train vae|wake-sleep|loglinear`, `tinydgm eval RUN`, `tinydgm sample RUN`.

Each algorithm lives in a module of `tinydgm.models` that provides
`add_train_arguments(parser)`, `train(args)`, `add_eval_arguments(parser)`, `evaluate(args)` and,
where it makes sense, `add_sample_arguments(parser)` and `sample(args)`.  A run directory's
`config.json` names its model (key "model"), which is how `eval` and `sample` find the module.
"""
import argparse
import importlib
import json
import os
import sys

from tinydgm.checkpoint import CheckpointError
from tinydgm.datasets import DataError
from tinydgm.runs import RunError

MODELS = {"vae": "tinydgm.models.vae",
          "wake-sleep": "tinydgm.models.wake_sleep",
          "loglinear": "tinydgm.models.loglinear"}


class UserError(Exception):
    """A mistake in what the user gave us: printed as one line, no traceback."""


def _module(kind):
    return importlib.import_module(MODELS[kind])


def _run_model(run_dir):
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise UserError(f"{run_dir}: not a run directory (expected {path}, written by `tinydgm train`)")
    try:
        with open(path) as f:
            kind = json.load(f)["model"]
    except (ValueError, KeyError) as e:
        raise UserError(f"{path}: expected JSON with a \"model\" key ({e})") from None
    if kind not in MODELS:
        raise UserError(f"{path}: unknown model {kind!r}; expected one of {', '.join(MODELS)}")
    return _module(kind)


def _parser(argv):
    p = argparse.ArgumentParser(prog="tinydgm", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a model into a run directory")
    kinds = train.add_subparsers(dest="model", required=True)
    for kind in MODELS:
        mod_parser = kinds.add_parser(kind, help=f"train a {kind} model")
        # Only the chosen model's module is imported (its arguments are added lazily below).
        mod_parser.set_defaults(_kind=kind)
    for name in ("eval", "sample"):
        q = sub.add_parser(name, help=f"{name} a trained run",
                           description=f"{name} a trained run; its options depend on the run's model: "
                                       f"`tinydgm {name} RUN --help` lists them")
        q.add_argument("run_dir", metavar="RUN", help="a run directory written by `tinydgm train`")
    return p


def _without_help(argv):
    """argv for the first stage: -h/--help is kept for the second, once the model's options exist."""
    words = [a for a in argv if not a.startswith("-")]
    known = words[:2] in ([["train", m] for m in MODELS]) or (words[:1] in (["eval"], ["sample"]) and len(words) > 1)
    return [a for a in argv if a not in ("-h", "--help")] if known else argv


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        p = _parser(argv)
        # Two-stage parse: find the command and model, then let that model add its own options.
        args, _ = p.parse_known_args(_without_help(argv))
        if args.command == "train":
            mod = _module(args.model)
            sub = p._subparsers._group_actions[0].choices["train"]
            mod.add_train_arguments(sub._subparsers._group_actions[0].choices[args.model])
            return mod.train(p.parse_args(argv)) or 0
        mod = _run_model(args.run_dir)
        sub = p._subparsers._group_actions[0].choices[args.command]
        if not hasattr(mod, args.command if args.command == "sample" else "evaluate"):
            raise UserError(f"{args.run_dir}: this model has no `{args.command}` command")
        if args.command == "eval":
            mod.add_eval_arguments(sub)
            return mod.evaluate(p.parse_args(argv)) or 0
        mod.add_sample_arguments(sub)
        return mod.sample(p.parse_args(argv)) or 0
    except UserError as e:
        print(f"tinydgm: error: {e}", file=sys.stderr)
        return 2
    except (DataError, CheckpointError, RunError) as e:     # a bad data file, checkpoint or run directory
        print(f"tinydgm: error: {e}", file=sys.stderr)
        return 2
