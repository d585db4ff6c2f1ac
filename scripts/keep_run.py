"""Copy a run folder whole while its training goes on, so that the copy can be resumed on any machine.

    python scripts/keep_run.py runs/burda-vae-paper-init scripts/results/burda-vae-paper-init

A plain `cp -r` of a folder that a trainer is writing can catch `last.npz` of one epoch beside
`last.json` or `metrics.jsonl` of the next.  This copies each checkpoint's `.npz`, rewrites its `.json`
from the metadata stored inside the `.npz` (so the two agree), keeps only the metrics of the epochs that
`last` holds (as `--resume` would), and copies `config.json`, the figures and the `summary.json` of a
run that is not training (one whose epochs are those of `last`).  If the trainer saved `best` while we
copied (a `best` newer than `last`), it copies again.  The copy is built in a hidden folder beside DEST
and renamed into place at the end: DEST is the old copy or the new one, whole, never a mixture.  It
prints the copy's epoch, best validation value and CPU-hours.
"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchmarks import _cli as cli  # noqa: E402

TRIES = 5


def parse(argv):
    """The options, checked: a mistake is one line naming it, exit code 2, before anything is written."""
    p = cli.Parser(prog="keep_run.py", description=cli.first_paragraph(__doc__))
    p.add_argument("run", metavar="RUN", help="the folder of a run of `tinydgm train` (it may be training now)")
    p.add_argument("dest", metavar="DEST", help="where the copy goes: a new folder, or an earlier copy to replace")
    return p.parse_args(argv)


def copy_once(src, tmp):
    """Copy the run `src` into the empty folder `tmp`; the `loop` records of its `last` and `best` copies."""
    from tinydgm import checkpoint, files
    loops = {}
    for name in ("last", "best"):
        if checkpoint.exists(os.path.join(src, name)):
            shutil.copyfile(os.path.join(src, name + ".npz"), os.path.join(tmp, name + ".npz"))
            meta = checkpoint.load(os.path.join(tmp, name))[1]
            files.write_text(os.path.join(tmp, name + ".json"), checkpoint.meta_text(meta) + "\n")
            loops[name] = meta.get("loop", {})
    for name in sorted(os.listdir(src)):
        if name in ("config.json", "metrics.jsonl") or name.endswith(".png"):
            shutil.copyfile(os.path.join(src, name), os.path.join(tmp, name))
    if "last" in loops and finished_at(src) == loops["last"]["epoch"]:
        shutil.copyfile(os.path.join(src, "summary.json"), os.path.join(tmp, "summary.json"))
    return loops.get("last"), loops.get("best")


def finished_at(src):
    """The epoch count of the run's summary.json (written when a training command ends), or None."""
    try:
        with open(os.path.join(src, "summary.json")) as f:
            return json.load(f).get("epochs")
    except (OSError, ValueError, AttributeError):
        return None


def keep(src, dest):
    """Copy the run `src` to `dest` whole (see the module's text); the `loop` record of the copy's `last`."""
    from tinydgm import checkpoint, files
    from tinydgm.errors import UserError
    from tinydgm.experiments.runs import Run
    run = Run.open(src)                                   # one line unless src holds a run
    if not checkpoint.exists(run.path("last")):
        raise UserError(f"{src}: no `last` checkpoint yet (no epoch finished); nothing to keep")
    dest = os.path.abspath(dest)
    if os.path.commonpath([os.path.realpath(src), os.path.realpath(dest)]) == os.path.realpath(src):
        raise UserError(f"{dest}: the run folder {src} itself or a folder in it; choose a folder outside the run")
    if os.path.exists(dest) and not os.path.isfile(os.path.join(dest, "config.json")):
        raise UserError(f"{dest}: exists and is not a run folder; choose a new folder or an earlier copy")
    parent = os.path.dirname(dest)
    if not os.path.isdir(parent):
        raise UserError(f"{parent}: the folder does not exist; create it or choose another DEST")
    files.check_writable(parent)
    tmp, old = (os.path.join(parent, f".keep-{os.path.basename(dest)}-{what}") for what in ("new", "old"))
    try:
        for _ in range(TRIES):
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            last, best = copy_once(src, tmp)
            if best is None or best["epoch"] <= last["epoch"]:
                break
        else:
            raise UserError(f"{src}: its trainer saved a checkpoint during each of {TRIES} copies; try again")
        Run(tmp, run.config).truncate_metrics(last["epoch"])
        shutil.rmtree(old, ignore_errors=True)
        if os.path.exists(dest):
            os.rename(dest, old)
        try:
            os.rename(tmp, dest)
        except OSError:
            if os.path.exists(old):
                os.rename(old, dest)                      # the earlier copy back in its place
            raise
    except OSError as e:
        raise files.fault(e, dest) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    return last


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)

    def copy():
        loop = keep(args.run, args.dest)
        best = f", best {loop['best']:.4f} at epoch {loop['best_epoch']}" if loop.get("best") is not None else ""
        print(f"{args.dest}: epoch {loop['epoch']}{best}, {loop.get('cpu_s', 0) / 3600:.2f} CPU-hours")

    return cli.run("keep_run.py", copy)


if __name__ == "__main__":
    sys.exit(main())
