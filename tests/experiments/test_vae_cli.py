"""`tinydgm train vae` end to end on a slice of the data: resume = uninterrupted, clean stops, clear errors."""
import gzip
import hashlib
import json
import os
import shutil
import time

import numpy as np
import pytest

import tinydgm as td
from tinydgm import checkpoint, plots
from tinydgm.experiments import runs, runtime
from tinydgm.cli import main
from tinydgm.data.mnist import binarized_mnist
from tinydgm.metrics import iw_nll
from tinydgm.experiments import vae
from tinydgm.estimators import RunningMean

TINY = ["--epochs", "3", "--limit", "200", "--hidden", "16", "--z-dim", "4", "--batch-size", "50",
        "--seed", "3", "--quiet"]


@pytest.fixture(autouse=True)
def no_figures(monkeypatch):
    monkeypatch.setattr(plots, "available", lambda: False)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One TINY run, trained once for the tests that only read it, with the CPU and wall time around it."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots, "available", lambda: False)
        c0, t0 = time.process_time(), time.perf_counter()
        assert main(["train", "vae", *TINY, "--out", str(out)]) == 0
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    with open(out / "summary.json") as f:
        summary = json.load(f)
    return {"dir": out, "summary": summary, "cpu": cpu, "wall": wall}


def numpy_elbo(model, x, rng):
    """Per-image one-sample ELBO written out: log p(x|z) - KL(q || N(0, I)) in float64 from the encoder's
    mu and sigma, z = mu + sigma * eps with eps the generator's (n, z_dim) float32 normals (as VAE.elbo draws)."""
    with td.no_grad():
        q = model.encode(x)
        eps = rng.standard_normal(q.loc.shape, dtype=np.float32)
        logits = model.decoder(td.tensor(q.loc.data + q.scale.data * eps)).data.astype(np.float64)
    mu, sigma = q.loc.data.astype(np.float64), q.scale.data.astype(np.float64)
    log_px = (x * logits - np.logaddexp(0, logits)).sum(-1)
    kl = 0.5 * (mu ** 2 + sigma ** 2 - 1 - 2 * np.log(sigma)).sum(-1)
    return log_px - kl, kl, mu


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def trained(run_dir):
    state, loop = checkpoint.load_state(f"{run_dir}/last")
    metrics = [{k: v for k, v in r.items() if k not in ("time_s", "cpu_s", "grad_var_s")}       # clocks differ
               for r in runs.Run.open(run_dir).metrics()]
    return state, loop, metrics


@pytest.mark.parametrize("objective", ["elbo", "score-function-baseline"])
def test_resume_equals_uninterrupted(tmp_path, monkeypatch, capsys, objective):
    """Interrupted after epoch 2 and resumed = uninterrupted, bit for bit: parameters, generator, every
    logged number (gradient variances included), and the running-mean baseline of the score function."""
    tiny = [*TINY, "--objective", objective, "--grad-variance-every", "2"]
    assert main(["train", "vae", *tiny, "--out", str(tmp_path / "full")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "done" and summary["epochs"] == 3

    original = vae.VAETrainer.train_epoch
    monkeypatch.setattr(vae.VAETrainer, "train_epoch", lambda self, e, p: _interrupt_at(original, self, e, p, 1))
    assert main(["train", "vae", *tiny, "--out", str(tmp_path / "part")]) == 130
    assert "interrupted in epoch 2" in capsys.readouterr().err
    monkeypatch.setattr(vae.VAETrainer, "train_epoch", original)
    assert main(["train", "vae", "--resume", str(tmp_path / "part"), "--quiet"]) == 0

    a, b = trained(tmp_path / "full"), trained(tmp_path / "part")
    assert a[2] == b[2]                                  # every logged number
    assert [("grad_var_encoder" in r) for r in a[2]] == [True, False, True]
    for name in a[0]["params"]:
        np.testing.assert_array_equal(a[0]["params"][name], b[0]["params"][name])
    assert a[0]["rng"] == b[0]["rng"]
    assert a[0].get("baseline") == b[0].get("baseline")
    assert ("baseline" in a[0]) == (objective == "score-function-baseline")
    if "baseline" in a[0]:                      # updated once a step (3 epochs of 4 batches), near -loss
        baseline = RunningMean()
        baseline.load_state(a[0]["baseline"])
        assert baseline.steps == 12 and abs(baseline.value + a[2][-1]["loss"]) < 10, (baseline.state(), a[2])


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


def test_logged_numbers_are_what_they_claim(tiny_run):
    """valid_elbo in metrics.jsonl is the mean one-sample ELBO of the best checkpoint on the first 200
    validation images with seed 0 (recomputed from the checkpoint); the summary reports the best epoch;
    cpu_s accumulates over epochs and never exceeds the CPU time this process spent training."""
    run_dir, summary = tiny_run["dir"], tiny_run["summary"]
    records = runs.Run.open(run_dir).metrics()
    assert [r["epoch"] for r in records] == [0, 1, 2]
    best = max(records, key=lambda r: r["valid_elbo"])
    assert summary["status"] == "done" and summary["epochs"] == 3
    assert summary["best_epoch"] == best["epoch"] and summary["valid_elbo"] == best["valid_elbo"]
    assert summary["last"] == {k: v for k, v in records[-1].items() if k != "epoch"}

    model, _ = vae.load(run_dir, "best")
    valid = binarized_mnist("valid")[:200]
    elbo, _, _ = numpy_elbo(model, valid, np.random.default_rng(0))
    assert best["valid_elbo"] == pytest.approx(elbo.mean(), rel=1e-6)   # float32 model, float64 sums
    assert best["epoch"] == 2                                            # so best = last, byte for byte
    last, _ = vae.load(run_dir, "last")
    for name, p in model.state_dict().items():
        np.testing.assert_array_equal(p, last.state_dict()[name])

    cpu = [r["cpu_s"] for r in records]
    wall = [r["time_s"] for r in records]
    assert all(b > a for a, b in zip([0.0] + cpu, cpu)), cpu          # cumulative, each epoch adds some
    assert all(b > a for a, b in zip([0.0] + wall, wall)), wall
    assert cpu[-1] <= tiny_run["cpu"] + 1e-3 and wall[-1] <= tiny_run["wall"] + 1e-3
    assert cpu[-1] <= (wall[-1] + 1e-3) * os.cpu_count()
    # the summary rounds the unrounded totals to 0.1 s, the records to 1 ms: within 0.05 s of each other
    assert abs(summary["cpu_s"] - cpu[-1]) <= 0.0505 and abs(summary["time_s"] - wall[-1]) <= 0.0505


def test_eval_reports_what_it_computes(tiny_run, capsys):
    """Every number `tinydgm eval` prints is recomputed from the best checkpoint: test_nll = iw_nll with
    the command's k and seed (exactly), ELBO and KL written out with NumPy, active units counted by hand."""
    run_dir = tiny_run["dir"]
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--k", "20", "--limit", "30", "--seed", "5", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    with open(run_dir / "eval-test-k20-seed5-n30.json") as f:
        assert json.load(f) == result
    assert (result["n"], result["k"], result["split"], result["checkpoint"]) == (30, 20, "test", "best")

    model, _ = vae.load(run_dir, "best")
    x = binarized_mnist("test")[:30]
    assert abs(result["test_nll"] - iw_nll(model, x, 20, rng=np.random.default_rng(5), progress=False)) < 1e-9
    elbo, kl, mu = numpy_elbo(model, x, np.random.default_rng(5))
    assert result["test_elbo"] == pytest.approx(elbo.mean(), rel=1e-6)
    assert result["test_kl"] == pytest.approx(kl.mean(), rel=1e-6)
    # active units (Burda et al. 2016, sec. 5.2): Var over images of E_q[z_i|x] above 0.01
    assert result["active_units"] == int(np.sum(mu.var(axis=0) > 0.01))
    # E[L_20] >= ELBO per image; the gap of the means exceeds 2 SE of the per-image gaps (3.4 SE here)
    with td.no_grad():
        l20 = model.iwae_bound(x, 20, rng=np.random.default_rng(5)).data.astype(np.float64)
    se = (l20 - elbo).std(ddof=1) / np.sqrt(len(x))
    assert -result["test_nll"] - result["test_elbo"] > 2 * se > 0


def test_sample(tiny_run, capsys, monkeypatch):
    monkeypatch.setattr(plots, "available", lambda: True)
    capsys.readouterr()
    assert main(["sample", str(tiny_run["dir"]), "--n", "20"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"run": str(tiny_run["dir"]), "samples": str(tiny_run["dir"] / "samples-0.png"), "n": 20}
    assert (tiny_run["dir"] / "samples-0.png").stat().st_size > 0


RUN_FILES = ["last.npz", "last.json", "best.npz", "best.json", "metrics.jsonl", "config.json"]


@pytest.fixture(scope="module")
def resumed_finished(tiny_run, tmp_path_factory):
    """A copy of the finished TINY run, resumed once: (its folder, the digests before, the summary after)."""
    run_dir = tmp_path_factory.mktemp("resumed") / "r"
    shutil.copytree(tiny_run["dir"], run_dir)
    before = {f: digest(run_dir / f) for f in RUN_FILES}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots, "available", lambda: False)
        assert main(["train", "vae", "--resume", str(run_dir), "--quiet"]) == 0
    with open(run_dir / "summary.json") as f:
        return run_dir, before, json.load(f)


def test_resuming_a_finished_run_changes_nothing(tiny_run, resumed_finished):
    """--resume on a run that already did its epochs trains nothing: status done, 3 epochs, the same
    best epoch and value, and the same checkpoints and metrics byte for byte."""
    run_dir, before, summary = resumed_finished
    assert summary["status"] == "done" and summary["epochs"] == 3
    assert (summary["best_epoch"], summary["valid_elbo"]) == (tiny_run["summary"]["best_epoch"],
                                                              tiny_run["summary"]["valid_elbo"])
    assert {f: digest(run_dir / f) for f in RUN_FILES} == before


def test_resuming_a_finished_run_keeps_its_summary(tiny_run, resumed_finished):
    assert resumed_finished[2]["last"] == tiny_run["summary"]["last"]


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
    assert capsys.readouterr().err.strip() == "tinydgm: error: --hidden: expected sizes like 200,200, got '20,x'"
    assert not (tmp_path / "r").exists()                    # refused before a run folder was made
    assert main(["eval", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{tmp_path / 'nothing'}: not a run directory" in err[0]


def test_eval_help_points_to_the_run_and_lists_its_options(tmp_path, capsys):
    with pytest.raises(SystemExit, match="^0$") as stop:
        main(["eval", "--help"])
    assert stop.value.code == 0
    assert "tinydgm eval RUN --help" in capsys.readouterr().out.replace("\n", " ")
    assert main(["train", "vae", *TINY, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit, match="^0$") as stop:
        main(["eval", str(tmp_path / "run"), "--help"])
    assert stop.value.code == 0
    assert "--k K" in capsys.readouterr().out


# ---------------------------------------------------------------- objectives and gradient variance

@pytest.mark.parametrize("objective, loss_is", [
    ("iwae", "-L_k"), ("score-function", "-ELBO"), ("score-function-baseline", "-ELBO")])
def test_each_objective_trains(tmp_path, capsys, objective, loss_is):
    """A tiny run of each objective: done, finite, and the logged loss is minus the mean objective the
    step used (the score function's value is the one-sample ELBO, its surrogate adds exactly 0)."""
    assert main(["train", "vae", *TINY, "--epochs", "2", "--objective", objective, "--out", str(tmp_path / "r")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    records = runs.Run.open(tmp_path / "r").metrics()
    assert summary["status"] == "done" and len(records) == 2
    assert all(np.isfinite([r["loss"], r["valid_elbo"]]).all() for r in records)
    assert all("grad_var_encoder" not in r for r in records)           # off by default
    with open(tmp_path / "r" / "config.json") as f:
        assert json.load(f)["estimator"] == objective           # --objective is --estimator, recorded under that name
    # the loss of epoch 1 over all 200 training images lies near -valid ELBO of a model this young
    assert 0 < records[-1]["loss"] < 800, (loss_is, records)


@pytest.mark.parametrize("objective, baseline", [("score-function", None), ("score-function-baseline", -500.0)])
def test_the_trainer_steps_on_the_objective_it_names(objective, baseline):
    """The trainer's objective is VAE.score_function_elbo with the running mean's current value as b
    (and none without the baseline): the same gradient on the same draws, exactly."""
    cfg = {"hidden": [16], "z_dim": 4, "activation": "tanh", "seed": 3, "lr": 1e-3, "adam_eps": 1e-8,
           "estimator": objective, "k": 5}
    x = binarized_mnist("valid")[:20]
    model, opt = vae.build(cfg)
    trainer = vae.VAETrainer(model, opt, x, x, cfg, np.random.default_rng(0))
    if baseline is not None:
        trainer.estimator.baseline.load_state({"decay": 0.9, "mean": 0.1 * baseline, "steps": 1})
    trainer.estimator.objective(model, x, np.random.default_rng(1)).surrogate.backward()
    ours = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    td.mean(model.score_function_elbo(x, rng=np.random.default_rng(1), baseline=baseline)).backward()
    for g, p in zip(ours, model.parameters()):
        np.testing.assert_array_equal(g, p.grad)


def test_gradient_variance_is_what_it_claims(tmp_path):
    """grad_var_encoder = the summed elementwise sample variance (ddof 1) of 20 gradients of the training
    loss -mean ELBO w.r.t. the encoder, on the first 100 validation images, drawn from the generator
    seeded (seed, 2, validations before): recomputed here from the last checkpoint, draw by draw."""
    out = tmp_path / "r"
    assert main(["train", "vae", *TINY, "--grad-variance-every", "2", "--out", str(out)]) == 0
    records = runs.Run.open(out).metrics()
    assert [("grad_var_encoder" in r) for r in records] == [True, False, True] and records[2]["grad_var_s"] >= 0
    model, _ = vae.load(out, "last")
    x = binarized_mnist("valid")[:100]
    rng = np.random.default_rng([3, 2, 2])                              # --seed 3, the third validation
    grads = []
    runtime.set_threads(runs.Run.open(out).config["threads"])       # float32 sums: the run's BLAS thread count
    try:
        for _ in range(20):
            model.zero_grad()
            (-td.mean(model.elbo(x, rng=rng))).backward()
            grads.append(np.concatenate([p.grad.ravel() for p in model.encoder.parameters()]))
    finally:
        runtime.restore_threads()
    grads = np.asarray(grads, dtype=np.float64)
    expected = (((grads - grads.mean(0)) ** 2).sum(0) / 19).sum()
    assert records[2]["grad_var_encoder"] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("objective", ["score-function-baseline", "iwae"])
def test_measuring_the_variance_leaves_training_alone(tmp_path, objective):
    """The same run with and without --grad-variance-every 1 logs the same losses and ELBOs and ends with
    the same parameters and baseline: the measurement draws from its own generator and updates nothing."""
    for name, extra in (("plain", []), ("measured", ["--grad-variance-every", "1"])):
        assert main(["train", "vae", *TINY, "--objective", objective, *extra, "--out", str(tmp_path / name)]) == 0
    a, b = trained(tmp_path / "plain"), trained(tmp_path / "measured")
    assert all("grad_var_encoder" in r for r in b[2])
    assert a[2] == [{k: v for k, v in r.items() if k != "grad_var_encoder"} for r in b[2]]
    for name in a[0]["params"]:
        np.testing.assert_array_equal(a[0]["params"][name], b[0]["params"][name])
    assert a[0].get("baseline") == b[0].get("baseline")


def test_score_function_gradient_is_noisier_in_the_log(tmp_path):
    """On the same tiny model after one epoch, the logged encoder-gradient variance of the score function
    exceeds the reparameterised ELBO's by orders of magnitude (measured: 6.1e5 vs 9.5, 6.4e4x)."""
    var = {}
    for objective in ("elbo", "score-function"):
        out = tmp_path / objective
        assert main(["train", "vae", *TINY, "--epochs", "1", "--objective", objective,
                     "--grad-variance-every", "1", "--out", str(out)]) == 0
        var[objective] = runs.Run.open(out).metrics()[0]["grad_var_encoder"]
    assert var["score-function"] > 100 * var["elbo"], var


def test_bad_gradient_variance_option(tmp_path, capsys):
    assert main(["train", "vae", *TINY, "--grad-variance-every", "-1", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == ("tinydgm: error: --grad-variance-every: expected an integer >= 0 "
                                               "(0: never), got -1")
    assert not (tmp_path / "r").exists()


def test_resume_keeps_the_thread_count_the_run_was_trained_with(tmp_path, monkeypatch, capsys):
    """Float32 products differ in their last bits between 1 and 2 BLAS threads (at hidden 64, 784 inputs),
    so a run records its count and a resumed run reuses it, whatever the machine's load says now:
    interrupted and resumed beside a busy core = uninterrupted on a quiet machine, bit for bit."""
    for var in runtime.THREAD_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    tiny = [*TINY, "--hidden", "64"]
    machine = {"threads": 2}
    monkeypatch.setattr(runtime, "default_threads", lambda kind, window=0.1: machine["threads"])
    assert main(["train", "vae", *tiny, "--out", str(tmp_path / "full")]) == 0
    original = vae.VAETrainer.train_epoch
    monkeypatch.setattr(vae.VAETrainer, "train_epoch", lambda self, e, p: _interrupt_at(original, self, e, p, 1))
    assert main(["train", "vae", *tiny, "--out", str(tmp_path / "part")]) == 130
    monkeypatch.setattr(vae.VAETrainer, "train_epoch", original)
    machine["threads"] = 1                               # the other core is busy now
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")      # and the user asks for one thread
    capsys.readouterr()
    assert main(["train", "vae", "--resume", str(tmp_path / "part"), "--quiet"]) == 0
    assert "was trained with 2 BLAS thread(s) and keeps them, so that it resumes bit for bit (the environment " \
           "asks for 1" in capsys.readouterr().err
    assert runs.Run.open(str(tmp_path / "part")).config["threads"] == 2
    a, b = trained(tmp_path / "full"), trained(tmp_path / "part")
    assert a[2] == b[2]
    for name in a[0]["params"]:
        np.testing.assert_array_equal(a[0]["params"][name], b[0]["params"][name])
    # --threads on resume is a change like any other: recorded in the history, then kept
    assert main(["train", "vae", "--resume", str(tmp_path / "part"), "--epochs", "4", "--threads", "1",
                 "--quiet"]) == 0
    config = runs.Run.open(str(tmp_path / "part")).config
    assert config["threads"] == 1 and config["history"][-1] == {
        "epoch": 3, "changes": {"epochs": [3, 4], "threads": [2, 1]}}
