"""`tinydgm train vae` end to end on a slice of the data: resume = uninterrupted, clean stops, clear errors."""
import gzip
import json

import numpy as np
import pytest

from tinydgm import checkpoint, plots
from tinydgm.experiments import runs
from tinydgm.cli import main
from tinydgm.experiments import vae

TINY = ["--epochs", "3", "--limit", "200", "--hidden", "16", "--z-dim", "4", "--batch-size", "50",
        "--seed", "3", "--quiet"]


@pytest.fixture(autouse=True)
def no_figures(monkeypatch):
    monkeypatch.setattr(plots, "available", lambda: False)


def trained(run_dir):
    state, loop = checkpoint.load_state(f"{run_dir}/last")
    metrics = [{k: v for k, v in r.items() if k not in ("time_s", "cpu_s")} for r in runs.Run.open(run_dir).metrics()]
    return state, loop, metrics


def test_resume_equals_uninterrupted(tmp_path, monkeypatch, capsys):
    assert main(["train", "vae", *TINY, "--out", str(tmp_path / "full")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "done" and summary["epochs"] == 3

    original = vae.VAETrainer.train_epoch
    monkeypatch.setattr(vae.VAETrainer, "train_epoch", lambda self, e, p: _interrupt_at(original, self, e, p, 1))
    assert main(["train", "vae", *TINY, "--out", str(tmp_path / "part")]) == 130
    assert "interrupted in epoch 2" in capsys.readouterr().err
    monkeypatch.setattr(vae.VAETrainer, "train_epoch", original)
    assert main(["train", "vae", "--resume", str(tmp_path / "part"), "--quiet"]) == 0

    a, b = trained(tmp_path / "full"), trained(tmp_path / "part")
    assert a[2] == b[2]                                  # every logged number
    for name in a[0]["params"]:
        np.testing.assert_array_equal(a[0]["params"][name], b[0]["params"][name])
    assert a[0]["rng"] == b[0]["rng"]


def _interrupt_at(original, self, epoch, progress, at):
    out = original(self, epoch, progress)
    if epoch == at:
        raise KeyboardInterrupt
    return out


def test_nonfinite_loss_stops_cleanly(tmp_path, monkeypatch, capsys):
    original = vae.VAETrainer.train_epoch

    def poisoned(self, epoch, progress):
        if epoch == 1:
            self.model.decoder.layers[-1].bias.data[:] = np.nan
        return original(self, epoch, progress)
    monkeypatch.setattr(vae.VAETrainer, "train_epoch", poisoned)
    assert main(["train", "vae", *TINY, "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "non-finite loss (nan) in epoch 2" in err[0]
    state, loop, _ = trained(tmp_path / "r")
    assert loop["epoch"] == 1
    assert all(np.isfinite(v).all() for v in state["params"].values())


def test_eval_and_sample(tmp_path, capsys, monkeypatch):
    assert main(["train", "vae", *TINY, "--out", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "r"), "--k", "20", "--limit", "30", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 30 and result["k"] == 20 and 0 <= result["active_units"] <= 4
    assert result["test_nll"] <= -result["test_elbo"] + 5     # L_20 is (much) tighter than one-sample ELBO
    monkeypatch.setattr(plots, "available", lambda: True)
    assert main(["sample", str(tmp_path / "r"), "--n", "20"]) == 0
    assert (tmp_path / "r" / "samples-0.png").is_file()


def test_bad_data_file_is_one_line(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "binarized_mnist"
    folder.mkdir()
    with gzip.open(folder / "binarized_mnist_train.amat.gz", "wt") as f:
        f.write(" ".join(["0"] * 784) + "\n" + " ".join(["0"] * 783) + " 7\n")
    monkeypatch.setenv("TINYDGM_DATA", str(tmp_path))
    assert main(["train", "vae", *TINY, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "binarized_mnist_train.amat.gz, line 2: value '7'" in err[0]


def test_bad_options(tmp_path, capsys):
    assert main(["train", "vae", "--hidden", "20,x", "--out", str(tmp_path / "r")]) == 2
    assert "--hidden" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nothing")]) == 2


def test_eval_help_points_to_the_run_and_lists_its_options(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["eval", "--help"])
    assert stop.value.code == 0
    assert "tinydgm eval RUN --help" in capsys.readouterr().out.replace("\n", " ")
    assert main(["train", "vae", *TINY, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main(["eval", str(tmp_path / "run"), "--help"])
    assert stop.value.code == 0
    assert "--k K" in capsys.readouterr().out
