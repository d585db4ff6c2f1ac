"""`python -m tinydgm` and the `tinydgm` command: `tinydgm.cli.main`, loaded here so that a Ctrl-C while the
command line's modules load (numerical libraries: a few seconds) is one line and exit code 130 too."""
import sys


def run():
    try:
        from tinydgm.cli import main
    except KeyboardInterrupt:
        print("tinydgm: interrupted", file=sys.stderr)
        return 130
    return main()


if __name__ == "__main__":
    sys.exit(run())
