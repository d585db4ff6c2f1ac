"""What a run folder promises: a refused command changes nothing, every write is whole, a run knows its data,
a fault of the machine is one line, and an interrupted evaluation goes on where it stopped."""
import errno
import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
import warnings

import numpy as np
import pytest

from tinydgm import backend, files, plots
from tinydgm.cli import main
from tinydgm.data.mnist import data_root
from tinydgm.experiments import evaluation, runs

TINY = ["--epochs", "2", "--limit", "100", "--hidden", "8", "--z-dim", "2", "--batch-size", "50", "--seed", "1",
        "--quiet", "--threads", "1"]
EVAL = ["--k", "4", "--limit", "60", "--quiet", "--threads", "1"]
LONG_EVAL = ["--k", "1000", "--limit", "60", "--seed", "2", "--quiet", "--threads", "1"]


@pytest.fixture(autouse=True)
def no_figures(monkeypatch):
    monkeypatch.setattr(plots, "available", lambda: False)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A copy of the shipped binarized MNIST, in a folder of its own (so that tests can move or change it)."""
    folder = tmp_path_factory.mktemp("data")
    shutil.copytree(os.path.join(data_root(), "binarized_mnist"), folder / "binarized_mnist")
    return folder


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A TINY VAE run trained on `data` (copy it before changing it)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots, "available", lambda: False)
        assert main(["train", "vae", *TINY, "--data", str(data), "--out", str(out)]) == 0
    return out


@pytest.fixture
def run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def digests(folder):
    """Every file below `folder` (the lock's pid aside) and its SHA-256."""
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            if name != ".lock":
                path = os.path.join(root, name)
                with open(path, "rb") as f:
                    out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


def one_line(capsys, code, argv):
    """Run the command; its exit code must be `code` with one stderr line and no traceback: that line."""
    capsys.readouterr()
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def inject(monkeypatch, code, after=0):
    """Make the write helper fail with OSError(code) from its (after+1)-th write on."""
    calls = {"n": 0}
    real = files._write

    def write(f, data):
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(code, os.strerror(code))
        real(f, data)
    monkeypatch.setattr(files, "_write", write)
    return calls


# ---------------------------------------------------------------- a refused command changes nothing

def cuda_usable():
    try:
        backend.use("cupy")
        return True
    except Exception:
        return False
    finally:
        backend.use("numpy")


REFUSALS = {    # case: (command, what its one line says)
    "bad option value": (lambda run: ["train", "vae", "--resume", str(run), "--epochs", "4", "--lr", "inf"],
                         "--lr: expected a finite number"),
    "negative seed": (lambda run: ["eval", str(run), "--seed", "-1", *EVAL], "--seed: expected an integer >= 0"),
    "option that defines the model": (lambda run: ["train", "vae", "--resume", str(run), "--z-dim", "3"],
                                      "what defines the model cannot change"),
    "sample --n too large": (lambda run: ["sample", str(run), "--n", "20000"], "--n: expected how many samples"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_refused_command_leaves_every_file_as_it_was(run, capsys, case):
    before = digests(run.parent)
    command, says = REFUSALS[case]
    assert says in one_line(capsys, 2, command(run))
    assert digests(run.parent) == before


def test_a_busy_run_is_refused_and_left_alone(run, capsys):
    with runs.Run.open(run).lock():
        before = digests(run)
        line = one_line(capsys, 2, ["train", "vae", "--resume", str(run), "--epochs", "6", "--lr", "5e-4"])
        assert "another process" in line and digests(run) == before


@pytest.mark.skipif(cuda_usable(), reason="a GPU is usable here")
def test_a_missing_device_changes_nothing(run, capsys):
    before = digests(run)
    line = one_line(capsys, 2, ["train", "vae", "--resume", str(run), "--epochs", "5", "--device", "cuda"])
    assert line.startswith("tinydgm: error: --device cuda") and digests(run) == before
    assert main(["train", "vae", "--resume", str(run), "--epochs", "3"]) == 0      # and a plain resume still works


def test_missing_data_changes_nothing(run, data, tmp_path, capsys, monkeypatch):
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    config = json.loads((run / "config.json").read_text())
    config["data"] = str(tmp_path / "gone")
    (run / "config.json").write_text(json.dumps(config))
    (tmp_path / "other").mkdir()
    monkeypatch.setenv("TINYDGM_DATA", str(tmp_path / "other"))       # and the default folder holds no such files
    before = digests(run)
    line = one_line(capsys, 2, ["train", "vae", "--resume", str(run), "--epochs", "3"])
    assert "gone: the data folder" in line and "--data DIR" in line and digests(run) == before
    line = one_line(capsys, 2, ["eval", str(run), *EVAL])
    assert "gone: the data folder" in line and digests(run) == before
    assert main(["eval", str(run), *EVAL, "--data", str(moved)]) == 0            # found where it moved: accepted


def test_a_run_whose_data_folder_is_gone_reads_the_same_files_in_the_default_one(run, data, tmp_path, capsys,
                                                                                  monkeypatch):
    """A kept run copied to a fresh clone: its recorded folder is gone, the shipped data/ holds files with the
    recorded SHA-256 (the same bytes), so it goes on (and evaluates) there, with a note, the move in its history."""
    config = json.loads((run / "config.json").read_text())
    config["data"] = str(tmp_path / "gone")
    (run / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("TINYDGM_DATA", str(data))
    assert main(["eval", str(run), *EVAL]) == 0
    assert capsys.readouterr().err.count(f"{tmp_path / 'gone'}, is gone; {data} holds the same files") == 1
    assert main(["train", "vae", "--resume", str(run), "--epochs", "3", "--quiet", "--threads", "1"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["data"] == str(data)
    assert config["history"][-1]["changes"]["data"] == [str(tmp_path / "gone"), str(data)]
    changed = tmp_path / "changed"                                     # a default folder with other bytes: refused
    shutil.copytree(data, changed)
    with gzip.open(changed / "binarized_mnist" / "binarized_mnist_test.amat.gz", "wt") as f:
        f.write("0 " * 783 + "1\n")
    config["data"] = str(tmp_path / "gone")
    (run / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("TINYDGM_DATA", str(changed))
    assert "gone: the data folder" in one_line(capsys, 2, ["eval", str(run), *EVAL])


def test_unreadable_metrics_change_nothing(run, capsys):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    before = digests(run)
    line = one_line(capsys, 2, ["train", "vae", "--resume", str(run), "--epochs", "4", "--lr", "5e-4"])
    assert "metrics.jsonl, line 2: not a metrics record" in line and digests(run) == before


@pytest.mark.parametrize("config, key", [([1, 2], "a JSON list"), ({"model": "vae"}, "no key"),
                                         ({"model": 3}, "key \"model\""), ("lr", "'lr'")])
@pytest.mark.parametrize("command", ["resume", "eval", "sample"])
def test_a_config_of_the_wrong_shape_is_one_line(run, capsys, config, key, command):
    if config == "lr":
        config = {**json.loads((run / "config.json").read_text()), "lr": "fast"}
    (run / "config.json").write_text(json.dumps(config))
    before = digests(run)
    argv = {"resume": ["train", "vae", "--resume", str(run), "--epochs", "3"], "eval": ["eval", str(run), *EVAL],
            "sample": ["sample", str(run)]}[command]
    line = one_line(capsys, 2, argv)
    assert "config.json" in line and key in line and digests(run) == before


def test_a_torn_last_metrics_line_is_dropped_with_a_note(run, capsys):
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "loss": 12')                 # what a full disk or a crash leaves
    assert main(["train", "vae", "--resume", str(run), "--epochs", "3"]) == 0
    err = capsys.readouterr().err
    assert "cut short" in err and "Traceback" not in err
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "event" not in r] == [0, 1, 2]


# ---------------------------------------------------------------- new runs: nothing made until training can start

@pytest.mark.parametrize("argv, message", [
    (["--seed", "-1"], "--seed: expected an integer >= 0"),
    (["--lr", "inf"], "--lr: expected a finite number"),
    (["--lr", "nan"], "--lr: expected a finite number"),
    (["--minutes", "inf"], "--minutes: expected a finite number"),
    (["--k", "3"], "--k: only --estimator iwae"),
    (["--objective", "iwae", "--k", "100000000"], "needs about"),
])
def test_bad_values_leave_no_folder(tmp_path, capsys, argv, message):
    out = tmp_path / "new"
    line = one_line(capsys, 2, ["train", "vae", *TINY, *argv, "--out", str(out)])
    assert message in line and not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--estimator", "ws", "--temperature", "0.3"], "--temperature: only"),
    (["--estimator", "nvil", "--k", "3"], "--k: only"),
    (["--estimator", "relaxed", "--temperature", "inf"], "--temperature: expected a finite number"),
])
def test_wake_sleep_options_that_do_nothing_are_refused(tmp_path, capsys, argv, message):
    out = tmp_path / "new"
    line = one_line(capsys, 2, ["train", "wake-sleep", "--layers", "4", "--limit", "50", "--epochs", "1",
                                *argv, "--out", str(out)])
    assert message in line and not out.exists()


def test_out_at_a_folder_of_other_files_is_refused(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my thesis")
    line = one_line(capsys, 2, ["train", "vae", *TINY, "--out", str(mine)])
    assert "a folder of other files (notes.txt), not a run" in line
    assert os.listdir(mine) == ["notes.txt"]
    assert "--out: an empty path" in one_line(capsys, 2, ["train", "vae", *TINY, "--out", ""])


def test_a_read_only_out_is_refused_before_the_data_is_read(tmp_path, capsys, monkeypatch):
    real = files.tempfile.mkstemp

    def refuse(*a, dir=None, **k):
        if str(dir).startswith(str(tmp_path)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(*a, dir=dir, **k)
    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    read = []
    monkeypatch.setattr("tinydgm.experiments.options.binarized_mnist", lambda *a: read.append(a))
    line = one_line(capsys, 2, ["train", "vae", *TINY, "--out", str(tmp_path / "r")])
    assert "read-only" in line and read == [] and not (tmp_path / "r").exists()


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left"), (errno.EROFS, "read-only"),
                                         (errno.EACCES, "permission denied")])
def test_a_fault_while_training_is_one_line_and_the_same_command_then_succeeds(tmp_path, capsys, monkeypatch,
                                                                            code, words):
    out = tmp_path / "r"
    argv = ["train", "vae", *TINY, "--out", str(out)]
    inject(monkeypatch, code, after=0)
    line = one_line(capsys, 2, argv)
    assert words in line and str(out) in line
    assert not [n for n in os.listdir(out) if n.startswith(".tmp-")] if out.exists() else True
    monkeypatch.undo()
    monkeypatch.setattr(plots, "available", lambda: False)
    assert main(argv) == 0                                      # the fault is gone: the same command trains


def test_a_fault_after_an_epoch_keeps_the_run_resumable(tmp_path, capsys, monkeypatch):
    straight, out = tmp_path / "straight", tmp_path / "r"
    assert main(["train", "vae", *TINY, "--out", str(straight)]) == 0
    real = runs.checkpoint.save_state

    def save_state(path, state, loop=None):                  # the disk fills up at the end of epoch 2
        if loop and loop["epoch"] == 2:
            inject(monkeypatch, errno.ENOSPC)
        return real(path, state, loop)
    monkeypatch.setattr(runs.checkpoint, "save_state", save_state)
    assert "no space left" in one_line(capsys, 2, ["train", "vae", *TINY, "--out", str(out)])
    monkeypatch.undo()
    monkeypatch.setattr(plots, "available", lambda: False)
    for name in os.listdir(out):
        assert not name.startswith(".tmp-")
        if name.endswith(".json"):
            json.loads((out / name).read_text())
    assert main(["train", "vae", "--resume", str(out)]) == 0

    def metrics(d):
        return [(r["loss"], r["valid_elbo"]) for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())
                if "event" not in r]
    assert metrics(out) == metrics(straight)


def test_every_file_of_a_run_has_the_same_mode(trained):
    modes = {name: stat.S_IMODE(os.stat(trained / name).st_mode) for name in os.listdir(trained) if name != ".lock"}
    assert len(set(modes.values())) == 1, modes


# ---------------------------------------------------------------- a run knows its data

def test_a_run_follows_its_own_data_not_the_environment(run, data, tmp_path, capsys, monkeypatch):
    config = json.loads((run / "config.json").read_text())
    assert config["data"] == str(data) and set(config["data_sha256"]) == {
        f"binarized_mnist/binarized_mnist_{s}.amat.gz" for s in ("train", "valid", "test")}
    other = tmp_path / "other"
    shutil.copytree(data, other)
    with open(other / "binarized_mnist" / "binarized_mnist_test.amat.gz", "ab") as f:
        f.write(b"\0")                                      # another test file (the gzip still reads)
    monkeypatch.setenv("TINYDGM_DATA", str(other))
    assert main(["train", "vae", "--resume", str(run), "--epochs", "3"]) == 0   # trained on its own data
    assert json.loads((run / "config.json").read_text())["data"] == str(data)
    assert main(["eval", str(run), *EVAL]) == 0
    own = json.loads((run / "eval-test-k4-n60.json").read_text())
    line = one_line(capsys, 2, ["eval", str(run), *EVAL, "--data", str(other)])
    assert "binarized_mnist_test.amat.gz: not the file" in line and "--other-data" in line
    assert main(["eval", str(run), *EVAL, "--data", str(other), "--other-data"]) == 0
    kept = [n for n in os.listdir(run) if n.startswith("eval-test-k4-data") and n.endswith("-n60.json")]
    assert len(kept) == 1 and json.loads((run / kept[0]).read_text())["data"] == str(other)
    assert json.loads((run / "eval-test-k4-n60.json").read_text()) == own       # the run's own result untouched


def test_resume_on_changed_data_is_refused(run, data, tmp_path, capsys):
    changed = tmp_path / "changed"
    shutil.copytree(data, changed)
    with open(changed / "binarized_mnist" / "binarized_mnist_train.amat.gz", "ab") as f:
        f.write(b"\0")
    before = digests(run)
    line = one_line(capsys, 2, ["train", "vae", "--resume", str(run), "--epochs", "3", "--data", str(changed)])
    assert "binarized_mnist_train.amat.gz: not the file" in line and digests(run) == before


# ---------------------------------------------------------------- eval: checked first, kept as it goes

def test_eval_checks_it_can_write_before_it_computes(run, capsys, monkeypatch):
    monkeypatch.setattr(files.tempfile, "mkstemp", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EROFS, "ro")))
    computed = []
    monkeypatch.setattr(evaluation, "iw_nll", lambda *a, **k: computed.append(1) or 0.0)
    assert "read-only" in one_line(capsys, 2, ["eval", str(run), *EVAL]) and computed == []


def test_eval_prints_its_result_even_if_it_cannot_write_it(run, capsys, monkeypatch):
    inject(monkeypatch, errno.ENOSPC)
    assert main(["eval", str(run), *EVAL]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out)["test_nll"] > 0 and "no space left" in err and len(err.strip().splitlines()) == 1
    assert not [n for n in os.listdir(run) if n.startswith("eval-test") or n.startswith(".tmp-")]


def test_an_interrupted_eval_goes_on_where_it_stopped(run, capsys, monkeypatch):
    """k = 1000 is drawn in batches of 10 images: the evaluation is interrupted after its 4th batch."""
    assert main(["eval", str(run), *LONG_EVAL]) == 0
    straight = json.loads((run / "eval-test-k1000-seed2-n60.json").read_text())
    os.remove(run / "eval-test-k1000-seed2-n60.json")
    monkeypatch.setattr(evaluation.Progress, "EVERY_S", 0.0)
    real, seen = evaluation.Progress.keep, []

    def keep(self, state):
        real(self, state)
        seen.append(state["done"])
        if state["done"] >= 40 and len(seen) < 10:
            raise KeyboardInterrupt
    monkeypatch.setattr(evaluation.Progress, "keep", keep)
    line = one_line(capsys, 130, ["eval", str(run), *LONG_EVAL])
    assert "run the same command again to continue" in line
    assert os.path.isfile(run / "eval-test-k1000-seed2-n60.progress.json")
    seen.clear()
    seen.extend([0] * 10)                                       # no more interruptions
    assert main(["eval", str(run), *LONG_EVAL]) == 0
    assert "continuing from image" in capsys.readouterr().err
    again = json.loads((run / "eval-test-k1000-seed2-n60.json").read_text())
    assert again["test_nll"] == straight["test_nll"] and again["test_elbo"] == straight["test_elbo"]
    assert not os.path.exists(run / "eval-test-k1000-seed2-n60.progress.json")


def test_sample_out_is_checked_before_drawing(run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert "does not exist" in one_line(capsys, 2, ["sample", str(run), "--out", str(tmp_path / "no" / "x.png")])
    assert "a .jpg file" in one_line(capsys, 2, ["sample", str(run), "--out", str(tmp_path / "x.jpg")])


# ---------------------------------------------------------------- what a user sees

def test_the_progress_rate_counts_from_the_epochs_first_batch(monkeypatch):
    clock = iter([0.0, 1e-9, 1.0, 2.0])
    monkeypatch.setattr(runs.time, "perf_counter", lambda: next(clock))

    class Bar:
        disable, n, shown = False, 0, []

        def set_postfix_str(self, s, refresh=False):
            self.shown.append(s)

        def refresh(self):
            pass
    bar = Bar()
    report = runs._reporter(bar, {"epoch": 0})
    report(50, 1000)                          # the epoch's first batch starts the clock
    report(100, 1000)                         # a nanosecond later: no rate shown yet
    report(150, 1000)                         # 100 images in a second
    assert bar.shown == ["100 images/s"]


def test_a_diverging_run_prints_no_numpy_warning(tmp_path, capsys):
    class Diverging:
        def train_epoch(self, epoch, progress):
            return {"loss": float(np.exp(np.float32(1000.0)))}

        def validate(self):
            return {"valid_loss": 0.0}

        def state(self):
            return {}

        def load_state(self, state):
            pass
    run = runs.Run.create(tmp_path / "r", {"model": "toy"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert runs.fit(run, Diverging(), epochs=2, quiet=True)["status"] == "nonfinite"
    assert [w for w in caught if issubclass(w.category, RuntimeWarning)] == []


# ---------------------------------------------------------------- real faults of the machine (as root)

def mount(*args):
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0 or not mount("-t", "tmpfs", "-o", "size=96k", "tmpfs", str(folder)):
        pytest.skip("needs root and tmpfs mounts")
    yield folder
    subprocess.run(["umount", str(folder)])


@pytest.fixture
def read_only(tmp_path):
    src, folder = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    folder.mkdir()
    if os.geteuid() != 0 or not mount("--bind", str(src), str(folder)):
        pytest.skip("needs root and bind mounts")
    if not mount("-o", "remount,bind,ro", str(folder)):
        subprocess.run(["umount", str(folder)])
        pytest.skip("cannot remount read-only")
    yield src, folder
    subprocess.run(["umount", str(folder)])


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(small_disk, capsys):
    out = small_disk / "r"
    line = one_line(capsys, 2, ["train", "vae", *TINY, "--hidden", "64", "--out", str(out)])
    assert "no space left" in line
    for name in os.listdir(out) if out.exists() else []:
        assert not name.startswith(".tmp-")
        if name.endswith(".json"):
            json.loads((out / name).read_text())


def test_a_read_only_folder_is_one_line(read_only, trained, capsys):
    src, folder = read_only
    assert "read-only" in one_line(capsys, 2, ["train", "vae", *TINY, "--out", str(folder / "r")])
    subprocess.run(["umount", str(folder)])
    shutil.copytree(trained, src / "run")
    assert mount("--bind", str(src), str(folder)) and mount("-o", "remount,bind,ro", str(folder))
    before = digests(folder / "run")
    assert "read-only" in one_line(capsys, 2, ["eval", str(folder / "run"), *EVAL])
    assert "read-only" in one_line(capsys, 2, ["train", "vae", "--resume", str(folder / "run"), "--epochs", "3"])
    assert digests(folder / "run") == before
