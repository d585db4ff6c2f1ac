"""The command line behaves the same everywhere: options checked before any folder exists, runs created
atomically, resumed with new settings (recorded), evaluation results kept, progress within an epoch."""
import json
import math
import os

import numpy as np
import pytest

from tinydgm import cli, plots
from tinydgm.cli import main, parser
from tinydgm.errors import RunError
from tinydgm.experiments import evaluation, runs, vae

TINY = ["--limit", "100", "--hidden", "8", "--z-dim", "2", "--batch-size", "50", "--quiet"]


@pytest.fixture(autouse=True)
def no_figures(monkeypatch):
    monkeypatch.setattr(plots, "available", lambda: False)


def summary(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith("tinydgm: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def epoch_records(run_dir):
    return [r for r in runs.Run.open(run_dir).metrics() if "event" not in r]


# ---------------------------------------------------------------- options checked before any folder exists

@pytest.mark.parametrize("bad, option", [(["--epochs", "0"], "--epochs"), (["--limit", "0"], "--limit"),
                                         (["--minutes", "-1"], "--minutes"), (["--lr", "0"], "--lr"),
                                         (["--eval-every", "0"], "--eval-every"),
                                         (["--data", "/nonexistent/folder"], "--data")])
def test_a_refused_run_leaves_nothing(tmp_path, capsys, bad, option):
    out = tmp_path / "run"
    assert main(["train", "vae", *TINY, *bad, "--out", str(out)]) == 2
    assert one_line_error(capsys).startswith(f"tinydgm: error: {option}")
    assert not out.exists()


def test_train_and_eval_say_the_same_of_a_count_below_one(tmp_path, capsys):
    """One wording for an integer option below 1, whichever command refuses it; a 0 given is refused, never taken
    for "the default"."""
    assert main(["train", "vae", *TINY, "--batch-size", "0", "--out", str(tmp_path / "run")]) == 2
    assert one_line_error(capsys) == "tinydgm: error: --batch-size: expected an integer >= 1, got 0"
    assert main(["train", "vae", *TINY, "--adam-eps", "0", "--out", str(tmp_path / "run")]) == 2   # not the default
    assert one_line_error(capsys) == "tinydgm: error: --adam-eps: expected a number > 0, got 0.0"
    assert not (tmp_path / "run").exists()
    assert main(["train", "vae", *TINY, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    assert main(["eval", str(tmp_path / "run"), "--k", "0"]) == 2
    assert one_line_error(capsys) == "tinydgm: error: --k: expected an integer >= 1, got 0"


def test_out_naming_a_file_is_one_line_and_the_file_is_kept(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    assert main(["train", "vae", *TINY, "--epochs", "1", "--out", str(f)]) == 2
    assert "a file, not a folder" in one_line_error(capsys)
    assert f.read_text() == "mine"


def test_run_creation_is_exclusive(tmp_path, monkeypatch):
    """Another process writing config.json between our check and our write: we refuse, it keeps its run."""
    path = tmp_path / "r"
    makedirs = os.makedirs

    def racing(p, exist_ok=False):
        makedirs(p, exist_ok=exist_ok)
        (path / "config.json").write_text('{"model": "other"}')
    monkeypatch.setattr(os, "makedirs", racing)
    with pytest.raises(RunError, match="already holds a run"):
        runs.Run.create(path, {"model": "vae"})
    assert json.loads((path / "config.json").read_text()) == {"model": "other"}
    assert sorted(os.listdir(path)) == ["config.json"]


# ---------------------------------------------------------------- resume with new settings

def test_resume_extends_a_finished_run_and_records_new_settings(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["train", "vae", *TINY, "--epochs", "1", "--out", out]) == 0
    capsys.readouterr()
    assert main(["train", "vae", "--resume", out, "--epochs", "3", "--lr", "5e-4", "--quiet"]) == 0
    s = summary(capsys)
    assert s["status"] == "done" and s["epochs"] == 3
    records = epoch_records(out)
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert records[0]["lr"] == 1e-3 and records[1]["lr"] == records[2]["lr"] == 5e-4
    config = runs.Run.open(out).config
    assert config["epochs"] == 3 and config["lr"] == 5e-4
    assert config["history"] == [{"epoch": 1, "changes": {"epochs": [1, 3], "lr": [1e-3, 5e-4]}}]
    events = [r for r in runs.Run.open(out).metrics() if r.get("event") == "resume"]
    assert events == [{"event": "resume", **config["history"][0]}]


def test_resume_may_start_measuring_gradient_variance(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["train", "vae", *TINY, "--epochs", "1", "--out", out, "--quiet"]) == 0
    assert main(["train", "vae", "--resume", out, "--epochs", "2", "--grad-variance-every", "1", "--quiet"]) == 0
    records = epoch_records(out)
    assert "grad_var_encoder" not in records[0] and records[1]["grad_var_encoder"] > 0
    assert runs.Run.open(out).config["history"][-1]["changes"]["grad_variance_every"] == [0, 1]
    capsys.readouterr()


def test_resume_refuses_to_change_the_model(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["train", "vae", *TINY, "--epochs", "1", "--out", out]) == 0
    before = (tmp_path / "r" / "config.json").read_text()
    capsys.readouterr()
    assert main(["train", "vae", "--resume", out, "--hidden", "16", "--quiet"]) == 2
    err = one_line_error(capsys)
    assert "--hidden" in err and "cannot change on resume" in err and "[8]" in err
    assert (tmp_path / "r" / "config.json").read_text() == before
    assert main(["train", "vae", "--resume", out, "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "not both" in one_line_error(capsys)


def test_loglinear_takes_epochs_and_wake_sleep_cpu_minutes():
    args = parser().parse_args(["train", "loglinear", "--epochs", "7"])
    assert args.iterations == 7
    assert parser().parse_args(["train", "pos-hmm", "--iterations", "4"]).iterations == 4
    assert parser().parse_args(["train", "wake-sleep", "--cpu-minutes", "--minutes", "2"]).cpu_minutes is True
    with pytest.raises(SystemExit, match="^2$"):                  # no abbreviations: --epo is not --epochs
        parser().parse_args(["train", "vae", "--epo", "3"])


# ---------------------------------------------------------------- evaluation results are kept

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("cl") / "run")
    plots_available = plots.available
    plots.available = lambda: False
    try:
        assert main(["train", "vae", *TINY, "--epochs", "1", "--out", out]) == 0
    finally:
        plots.available = plots_available
    return out


def test_each_evaluation_request_keeps_its_own_result(tiny_run, capsys):
    requests = [["--limit", "20"], ["--limit", "20", "--seed", "1"], ["--limit", "20", "--checkpoint", "last"],
                ["--limit", "10"]]
    for extra in requests:
        assert main(["eval", tiny_run, "--k", "3", "--quiet", *extra]) == 0
    capsys.readouterr()
    files = sorted(f for f in os.listdir(tiny_run) if f.startswith("eval-"))
    assert files == ["eval-test-k3-last-n20.json", "eval-test-k3-n10.json", "eval-test-k3-n20.json",
                     "eval-test-k3-seed1-n20.json"]
    with open(os.path.join(tiny_run, "eval-test-k3-n20.json")) as f:
        assert json.load(f)["n"] == 20                         # not overwritten by the later --limit 10
    with open(os.path.join(tiny_run, "evals.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    assert [line["file"] for line in lines[-4:]] == ["eval-test-k3-n20.json", "eval-test-k3-seed1-n20.json",
                                                     "eval-test-k3-last-n20.json", "eval-test-k3-n10.json"]


@pytest.mark.parametrize("bad, option", [(["--k", "0"], "--k"), (["--limit", "0"], "--limit"),
                                         (["--limit", "-5"], "--limit"), (["--start", "-1"], "--start")])
def test_eval_options_out_of_range_are_one_line(tiny_run, capsys, bad, option):
    before = sorted(os.listdir(tiny_run))
    assert main(["eval", tiny_run, "--quiet", *bad]) == 2
    assert one_line_error(capsys).startswith(f"tinydgm: error: {option}")
    assert sorted(os.listdir(tiny_run)) == before


def test_a_nonfinite_result_is_written_as_null_with_a_status(tiny_run, capsys, monkeypatch):
    monkeypatch.setattr(evaluation, "iw_nll", lambda *a, **kw: float("nan"))
    assert main(["eval", tiny_run, "--k", "2", "--limit", "5", "--quiet"]) == 0
    printed = capsys.readouterr().out

    def refuse(constant):
        raise AssertionError(f"{constant} in JSON")
    result = json.loads(printed, parse_constant=refuse)
    with open(os.path.join(tiny_run, "eval-test-k2-n5.json")) as f:
        assert json.load(f, parse_constant=refuse) == result
    assert result["test_nll"] is None and result["status"].startswith("non-finite: test_nll")
    assert math.isfinite(result["test_elbo"])


def test_eval_help_works_with_or_without_a_run(tiny_run, capsys):
    for argv in (["eval", "--help"], ["eval", "RUN", "--help"], ["eval", tiny_run, "--help"]):
        with pytest.raises(SystemExit, match="^0$"):
            main(argv)
        assert "usage: tinydgm eval" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="^0$"):
        main(["eval", tiny_run, "--help"])
    assert "--combine" in capsys.readouterr().out                 # the run's model's options


# ---------------------------------------------------------------- progress within an epoch, readable curves

def test_the_progress_bar_moves_within_an_epoch(tmp_path):
    cfg = vae.configure(parser().parse_args(["train", "vae", *TINY, "--epochs", "1", "--out", str(tmp_path / "r")]))
    model, opt = vae.build(cfg)
    x = (np.random.default_rng(0).random((120, 784)) < 0.3).astype(np.float32)
    trainer = vae.VAETrainer(model, opt, x, x[:10], cfg, np.random.default_rng(1))
    seen = []
    trainer.report = lambda done, total: seen.append((done, total))
    trainer.train_epoch(0, 0.0)
    assert seen == [(50, 120), (100, 120), (120, 120)]


def test_curves_after_one_epoch_show_a_point(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda plt, fig, path: drawn.append(fig) or path)
    plots.learning_curves([{"epoch": 0, "loss": 200.0, "valid_elbo": -190.0}], str(tmp_path / "c.png"))
    lines = drawn[0].axes[0].lines
    assert lines and all(line.get_marker() not in (None, "None", "") for line in lines)


# ---------------------------------------------------------------- data and checkpoints that don't fit

def test_a_damaged_test_file_stops_training_before_it_starts(tmp_path, capsys):
    data = tmp_path / "data" / "binarized_mnist"
    data.mkdir(parents=True)
    shipped = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           "data", "binarized_mnist")
    for split in ("train", "valid"):
        os.symlink(os.path.join(shipped, f"binarized_mnist_{split}.amat.gz"), data / f"binarized_mnist_{split}.amat.gz")
    (data / "binarized_mnist_test.amat.gz").write_bytes(b"\x1f\x8b not really gzip")
    out = tmp_path / "run"
    assert main(["train", "vae", *TINY, "--epochs", "1", "--data", str(tmp_path / "data"), "--out", str(out)]) == 2
    assert "binarized_mnist_test.amat.gz" in one_line_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize("other", [["--hidden", "16"], ["--z-dim", "3"]])
def test_a_checkpoint_of_another_size_is_one_line_naming_the_file(tmp_path, capsys, other):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert main(["train", "vae", *TINY, "--epochs", "1", "--out", a]) == 0
    assert main(["train", "vae", *TINY, *other, "--epochs", "1", "--out", b]) == 0
    for name in ("best.npz", "best.json", "last.npz", "last.json"):
        os.replace(os.path.join(b, name), os.path.join(a, name))
    capsys.readouterr()
    assert main(["eval", a, "--k", "2", "--limit", "5", "--quiet"]) == 2
    err = one_line_error(capsys)
    assert f"{a}/best.npz: not a checkpoint of this vae run's model" in err and "checkpoint (" in err
    assert main(["train", "vae", "--resume", a, "--epochs", "2", "--quiet"]) == 2
    assert f"{a}/last.npz: not a checkpoint of this vae run's model" in one_line_error(capsys)


def test_leftovers_of_an_interrupted_write_go_when_the_run_is_next_opened(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "vae", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    (out / ".tmp-abc123last.npz").write_bytes(b"half a checkpoint")
    assert main(["train", "vae", "--resume", str(out), "--epochs", "2", "--quiet"]) == 0
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]


# ---------------------------------------------------------------- threads chosen for the user

@pytest.fixture
def in_force(monkeypatch):
    """The BLAS thread count (and whether it follows the load) while a command's work runs; the
    environment's thread variables unset, as on a machine where nobody set them."""
    from tinydgm.experiments import runtime
    from tinydgm.experiments import vae
    for var in runtime.THREAD_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    seen = []
    for name in ("evaluate", "train"):
        def spy(args, _original=getattr(vae, name)):
            seen.append((runtime.threads(), runtime._auto["kind"]))
            return _original(args)
        monkeypatch.setattr(vae, name, spy)
    return seen


def test_every_command_limits_blas_threads(tiny_run, capsys, in_force, monkeypatch):
    from tinydgm.experiments import runtime
    before = runtime.threads()
    monkeypatch.setattr(runtime, "default_threads", lambda kind, window=0.1: 2)      # a quiet 2-core machine
    assert main(["eval", tiny_run, "--k", "2", "--limit", "5", "--quiet", "--threads", "1"]) == 0
    assert main(["eval", tiny_run, "--k", "2", "--limit", "5", "--quiet"]) == 0
    assert in_force == [(1, None),                    # a count asked for is kept, not retuned
                        (2, "eval")]                  # chosen for the machine, and followed as the load changes
    assert runtime.threads() == before and not runtime.threads_limited()      # and undone when the command ends
    runtime.set_threads(1)                           # a notebook that limited BLAS itself keeps its limit
    try:
        assert main(["eval", tiny_run, "--k", "2", "--limit", "5", "--quiet"]) == 0
        assert in_force[-1] == (2, "eval") and runtime.threads() == 1 and runtime._auto["kind"] is None
    finally:
        runtime.restore_threads()
    assert main(["eval", tiny_run, "--k", "2", "--limit", "5", "--quiet", "--threads", "0"]) == 2
    assert one_line_error(capsys).startswith("tinydgm: error: --threads")


def test_a_count_set_in_the_environment_is_the_users_choice(tiny_run, capsys, in_force, monkeypatch):
    from tinydgm.experiments import runtime
    monkeypatch.setattr(runtime, "default_threads", lambda kind, window=0.1: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")        # BLAS's own variable first
    assert main(["eval", tiny_run, "--k", "2", "--limit", "5", "--quiet"]) == 0
    assert in_force == [(1, None)]
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1" and os.environ["OMP_NUM_THREADS"] == "2"   # left as found
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "four")
    assert main(["eval", tiny_run, "--k", "2", "--limit", "5", "--quiet"]) == 2
    assert one_line_error(capsys) == ("tinydgm: error: OPENBLAS_NUM_THREADS='four': expected a whole number of "
                                      "threads >= 1 (or unset it)")


def test_training_fixes_its_count_and_records_it(tmp_path, in_force, monkeypatch, capsys):
    """The machine's choice is made once (no retune during training) and kept in config.json; with
    --cpu-minutes a second thread would spend the CPU budget twice as fast: one thread."""
    from tinydgm.experiments import runtime
    asked = []
    monkeypatch.setattr(runtime, "default_threads", lambda kind, window=0.1: asked.append(kind) or (1 if kind == "narrow" else 2))
    assert main(["train", "vae", *TINY, "--epochs", "1", "--out", str(tmp_path / "a")]) == 0
    assert main(["train", "vae", *TINY, "--minutes", "1", "--cpu-minutes", "--epochs", "1",
                 "--out", str(tmp_path / "b")]) == 0
    assert asked == ["train", "narrow"] and in_force == [(2, None), (1, None)]
    assert [runs.Run.open(str(tmp_path / r)).config["threads"] for r in "ab"] == [2, 1]
    # a run from before counts were recorded gets its count recorded on its first resume; a CPU-time budget
    # read from its config, not from the command line
    for r in "ab":
        path = tmp_path / r / "config.json"
        cfg = json.loads(path.read_text())
        del cfg["threads"]
        path.write_text(json.dumps(cfg))
        assert main(["train", "vae", "--resume", str(tmp_path / r), "--epochs", "2", "--quiet"]) == 0
    assert asked == ["train", "narrow", "train", "narrow"]
    for r, n in zip("ab", (2, 1)):
        config = runs.Run.open(str(tmp_path / r)).config
        assert config["threads"] == n and config["history"][-1]["changes"]["threads"] == [None, n]


def test_each_train_command_asks_for_its_kind_of_work(monkeypatch):
    from tinydgm.experiments import runtime
    asked = []

    def record(args, kind, recorded=None, follow=False):
        asked.append((kind, follow))
        raise cli.UserError("stop here")                      # before any run folder or data is touched
    monkeypatch.setattr(cli.options, "use_threads", record)
    for model in ("vae", "wake-sleep", "loglinear"):
        assert main(["train", model, "--quiet"]) == 2
    assert main(["train", "vae", "--minutes", "5", "--cpu-minutes", "--quiet"]) == 2
    assert asked == [("train", False), ("narrow", False), ("narrow", False),   # small-batch steps lose with a second thread
                     ("narrow", False)]                                       # a CPU-time budget: one thread
    assert runtime.DEFAULT_THREADS["narrow"] == 1


@pytest.mark.parametrize("n", ["0", "-3"])
def test_sample_n_out_of_range_is_one_line(tiny_run, capsys, n):
    assert main(["sample", tiny_run, "--n", n]) == 2
    assert one_line_error(capsys).startswith("tinydgm: error: --n: expected how many samples")


def test_device_cuda_without_a_gpu_names_the_option(tmp_path, capsys, monkeypatch):
    from tinydgm import backend
    from tinydgm.errors import BackendError

    def no_gpu(name):
        raise BackendError("the cupy backend needs CuPy, which is not installed")
    monkeypatch.setattr(backend, "use", no_gpu)
    out = tmp_path / "r"
    assert main(["train", "vae", *TINY, "--epochs", "1", "--device", "cuda", "--out", str(out)]) == 2
    assert one_line_error(capsys).startswith("tinydgm: error: --device cuda: the cupy backend needs CuPy")
    assert not out.exists()


def test_a_ctrl_c_while_the_command_line_loads_is_one_line(monkeypatch, capsys):
    """`tinydgm` (tinydgm.__main__.run) loads tinydgm.cli itself: a Ctrl-C during that import is one line, exit 130."""
    import sys

    import tinydgm.__main__ as entry

    class Interrupting:
        def find_spec(self, name, path=None, target=None):
            if name == "tinydgm.cli":
                raise KeyboardInterrupt
            return None
    monkeypatch.delitem(sys.modules, "tinydgm.cli")
    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    assert entry.run() == 130
    assert capsys.readouterr().err == "tinydgm: interrupted\n"
