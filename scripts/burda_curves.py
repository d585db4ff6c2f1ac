"""Runs of Burda et al.'s protocol side by side: each run's −(validation ELBO) against epochs, on a log
scale with the epoch at which each learning rate starts marked, in one PNG.

    python scripts/burda_curves.py scripts/results/burda-vae-paper-init scripts/results/burda-vae \
        --out scripts/results/burda-curves.png

Each RUN is the folder of a `tinydgm train vae` run (its config.json and metrics.jsonl are read, nothing
is written there); its line is labelled with the folder's name, its --init and its estimator.  The
protocol's stages are 3^i epochs at 1e-3·10^(−i/7), i = 0..7; a run of another schedule is drawn the same
way.  Needs matplotlib (pip install -e '.[plot]').
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchmarks import _cli as cli  # noqa: E402

STAGE_STARTS = [(3 ** i - 1) // 2 for i in range(8)]       # 0, 1, 4, 13, 40, 121, 364, 1093 (0-based epochs)


def parse(argv):
    """The options, checked: a mistake is one line naming it, exit code 2, before anything is written."""
    p = cli.Parser(prog="burda_curves.py", description=cli.first_paragraph(__doc__))
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders of tinydgm train vae")
    p.add_argument("--out", default="burda-curves.png", help="the PNG to write (default burda-curves.png)")
    return p.parse_args(argv)


def label(run):
    """The run's folder name, its --init and its estimator (as `tinydgm train vae` reads them from its config)."""
    from tinydgm.experiments import vae
    estimator = vae.estimator_name(run.config)
    k = f", k = {run.config['k']}" if estimator == "iwae" else ""
    return f"{os.path.basename(os.path.normpath(run.dir))} (init {vae.init_name(run.config)}, {estimator}{k})"


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)

    def draw():
        from tinydgm import files, plots
        from tinydgm.errors import UserError
        from tinydgm.experiments import runs
        plots.require("burda_curves.py")
        curves = []
        for folder in args.runs:
            run = runs.Run.open(folder, model="vae")
            points = [(r["epoch"] + 1, -r["valid_elbo"]) for r in run.metrics() if "valid_elbo" in r]
            if not points:
                raise UserError(f"{folder}: no validation ELBO in its metrics.jsonl yet (no epoch finished)")
            curves.append((label(run), points))
        files.check_writable(os.path.dirname(os.path.abspath(args.out)))
        marks = [(start + 1, f"i={i}") for i, start in enumerate(STAGE_STARTS)]
        print(plots.curves(curves, args.out, "epoch (log scale; dotted: where learning rate i starts)",
                           "−(validation ELBO), nats per image", log_x=True, marks=marks, span=12))

    return cli.run("burda_curves.py", draw)


if __name__ == "__main__":
    sys.exit(main())
