"""scripts/keep_run.py: a copy of a run that a trainer is writing is whole and resumable; mistakes are one line
and leave everything as it was.  One tiny run of 2 epochs (under a second) is trained in this process."""
import json
import os
import shutil

import pytest
from test_scripts import SCRIPTS, first_paragraph, one_line_error as script_error, script

from tinydgm import checkpoint, plots
from tinydgm.cli import main
from tinydgm.experiments.runs import Run

TINY = ["--limit", "100", "--hidden", "8", "--z-dim", "2", "--batch-size", "50", "--quiet", "--threads", "1"]


def keep(*args):
    return script("keep_run.py", *map(str, args), timeout=120)


def one_line_error(result, *words):
    script_error(result, "keep_run.py", *words)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 2-epoch VAE run, caught as a trainer may leave it mid-save: metrics of a third epoch written,
    last.json stale (the .npz holds the truth)."""
    before = plots.available
    plots.available = lambda: False
    try:
        out = tmp_path_factory.mktemp("live") / "run"
        assert main(["train", "vae", *TINY, "--epochs", "2", "--out", str(out)]) == 0
    finally:
        plots.available = before
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 2, "loss": 1.0}) + "\n")
    (out / "last.json").write_text("{}\n")
    return out


def test_the_copy_holds_what_last_holds_and_resumes(trained, tmp_path, capsys):
    dest = tmp_path / "kept"
    code, out, err = keep(trained, dest)
    assert (code, err) == (0, "") and out.startswith(f"{dest}: epoch 2, best ")
    assert sorted(os.listdir(dest)) == ["best.json", "best.npz", "config.json", "last.json", "last.npz",
                                        "metrics.jsonl", "summary.json"]
    meta = checkpoint.load(dest / "last")[1]
    assert json.loads((dest / "last.json").read_text()) == meta and meta["loop"]["epoch"] == 2
    assert [r["epoch"] for r in Run.open(dest).metrics()] == [0, 1]
    assert sorted(os.listdir(tmp_path)) == ["kept"]                  # no hidden folder left behind
    assert main(["train", "vae", "--resume", str(dest), "--epochs", "3", "--quiet"]) == 0
    assert [r["epoch"] for r in Run.open(dest).metrics() if "event" not in r] == [0, 1, 2]


def test_the_summary_of_an_earlier_stop_is_left_behind(trained, tmp_path):
    """A run resumed after Ctrl-C still holds the summary.json of that stop until it ends again."""
    live = tmp_path / "live"
    shutil.copytree(trained, live)
    summary = json.loads((live / "summary.json").read_text())
    (live / "summary.json").write_text(json.dumps({**summary, "status": "interrupted", "epochs": 1}))
    assert keep(live, tmp_path / "kept")[0] == 0
    assert "summary.json" not in os.listdir(tmp_path / "kept")


def test_an_earlier_copy_is_replaced_whole(trained, tmp_path):
    dest = tmp_path / "kept"
    assert keep(trained, dest)[0] == 0
    (dest / "stray.txt").write_text("from the earlier copy")
    assert keep(trained, dest)[0] == 0
    assert "stray.txt" not in os.listdir(dest) and sorted(os.listdir(tmp_path)) == ["kept"]


def test_mistakes_are_one_line_and_change_nothing(trained, tmp_path):
    one_line_error(keep(tmp_path / "nothing", tmp_path / "kept"), str(tmp_path / "nothing"), "not a run directory")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    one_line_error(keep(trained, other), str(other), "not a run folder")
    assert os.listdir(other) == ["notes.txt"]
    one_line_error(keep(trained, tmp_path / "a" / "b" / "kept"), "folder does not exist")
    unstarted = tmp_path / "unstarted"
    unstarted.mkdir()
    (unstarted / "config.json").write_text(json.dumps({"model": "vae"}))
    one_line_error(keep(unstarted, tmp_path / "kept"), "no `last` checkpoint")
    assert sorted(os.listdir(tmp_path)) == ["other", "unstarted"]
    one_line_error(keep(trained, trained), str(trained), "outside the run")
    one_line_error(keep(trained, trained / "copy"), "outside the run")
    assert "copy" not in os.listdir(trained)
    one_line_error(keep(trained), "DEST")


def test_help_has_the_whole_first_sentence():
    code, out, err = keep("--help")
    assert (code, err) == (0, "")
    assert first_paragraph(os.path.join(SCRIPTS, "keep_run.py")) in "".join(out.split())
