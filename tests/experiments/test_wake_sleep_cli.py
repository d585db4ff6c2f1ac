"""`tinydgm train wake-sleep`, `eval` (shards, --combine) and `sample`: recomputed numbers, resume, errors."""
import json
import os

import numpy as np
import pytest

import tinydgm as td
from tinydgm import estimators
from tinydgm.cli import main
from tinydgm.data.mnist import binarized_mnist
from tinydgm.metrics import iw_nll
from tinydgm.experiments import wake_sleep as ws_run


def test_train_eval_sample_resume(tmp_path, capsys):
    out = str(tmp_path / "run")
    args = ["train", "wake-sleep", "--layers", "8,4", "--epochs", "1", "--limit", "100", "--batch-size", "20",
            "--out", out, "--quiet"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "done" and summary["epochs"] == 1 and np.isfinite(summary["valid_bound"])
    assert main(["train", "wake-sleep", "--resume", out, "--quiet"]) == 0     # already done: nothing to do
    capsys.readouterr()
    assert main(["eval", out, "--k", "10", "--limit", "20", "--seed", "3", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["k"] == 10 and result["n"] == 20 and result["train_elbo"] is None      # a shard: no train L_1
    # what it reports, recomputed from the best checkpoint with the same seed: -L_10 by iw_nll (k = 10 drawn in
    # one chunk of 10, 100 images a batch) and L_1 by mean_bound, on the first 20 test images
    model, _ = ws_run.load(out, "best")
    x = td.backend.asarray(binarized_mnist("test")[:20])
    nll = iw_nll(model, x, 10, rng=np.random.default_rng(3), chunk=10, batch_size=100, progress=False)
    np.testing.assert_allclose(result["test_nll"], nll, rtol=1e-9)
    np.testing.assert_allclose(result["test_elbo"], ws_run.mean_iwae_bound(model, x, 1, np.random.default_rng(3)), rtol=1e-9)
    assert main(["sample", out, "--n", "10"]) == 0
    assert os.path.isfile(json.loads(capsys.readouterr().out)["dreams"])


def test_reweighted_training_moves_theta_and_lambda_and_raises_the_valid_bound(tmp_path, capsys):
    """`train wake-sleep --reweighted`: every parameter of the saved checkpoint left its init, and the validation
    bound L_10, recomputed from the init and from the checkpoint, rose each epoch and overall."""
    out = str(tmp_path / "rws")
    assert main(["train", "wake-sleep", "--layers", "6", "--reweighted", "--k", "3", "--updates", "p,q-wake",
                 "--epochs", "3", "--limit", "60", "--batch-size", "10", "--lr", "0.03", "--schedule", "constant",
                 "--out", out, "--quiet"]) == 0
    capsys.readouterr()
    model, run = ws_run.load(out, "last")
    init, _, _ = ws_run.build(run.config)
    init.init_visible_bias(binarized_mnist("train")[:60])
    moved = {n: not np.allclose(v, model.state_dict()[n], rtol=0, atol=1e-4) for n, v in init.state_dict().items()}
    assert all(moved.values()), moved
    valid = binarized_mnist("valid")[:60]
    bounds = [r["valid_bound"] for r in run.metrics()]
    np.testing.assert_allclose(bounds[-1], ws_run.mean_iwae_bound(model, valid, 10, np.random.default_rng(0)), rtol=1e-9)
    start = ws_run.mean_iwae_bound(init, valid, 10, np.random.default_rng(0))
    assert len(bounds) == 3 and start < bounds[0] < bounds[1] < bounds[2], (start, bounds)


def test_eval_shards_combine_into_the_whole_split(tmp_path, capsys):
    """Shards made with --start/--limit merge (weighted by n) into one result; a gap is a one-line error."""
    out = str(tmp_path / "run")
    assert main(["train", "wake-sleep", "--layers", "8,4", "--epochs", "1", "--limit", "100", "--out", out,
                 "--quiet"]) == 0
    shards = [["--limit", "3000"], ["--start", "3000", "--limit", "4000"], ["--start", "7000"]]
    capsys.readouterr()
    for shard in shards:
        assert main(["eval", out, "--k", "2", *shard, "--quiet"]) == 0
    parts = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["n"] for r in parts] == [3000, 4000, 3000]
    assert main(["eval", out, "--k", "2", "--combine"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert whole["n"] == 10000 and whole["shards"] == 3
    np.testing.assert_allclose(whole["test_nll"], sum(r["test_nll"] * r["n"] for r in parts) / 10000, rtol=1e-12)
    assert whole["train_elbo"] is not None and all(r["train_elbo"] is None for r in parts)
    os.remove(os.path.join(out, "eval-test-k2-from3000-n4000.json"))
    assert main(["eval", out, "--k", "2", "--combine"]) == 2
    err = capsys.readouterr().err
    assert "cover images 0-2999 of 10000 one after another (then a gap); evaluate the rest with --start 3000" in err
    assert "Traceback" not in err
    with open(os.path.join(out, "eval-test-k2-from3000-n4000.json"), "w") as f:
        f.write('{"start": 3000, "n"')                                          # a truncated shard
    assert main(["eval", out, "--k", "2", "--combine"]) == 2
    err = capsys.readouterr().err
    assert "eval-test-k2-from3000-n4000.json: not a shard" in err and "Traceback" not in err
    assert main(["eval", out, "--k", "2", "--combine", "--limit", "5"]) == 2
    assert "give it no --start or --limit" in capsys.readouterr().err


@pytest.mark.slow
def test_combine_takes_the_shards_that_tile_the_split_and_leaves_strays(tmp_path, capsys):
    """A shard of another size (an earlier trial with --limit) overlaps the tiling: it is left out (and named),
    never a reason to refuse; of two tilings the one with fewer shards; a diverged shard makes the NLL null."""
    out = str(tmp_path / "run")
    assert main(["train", "wake-sleep", "--layers", "8,4", "--epochs", "1", "--limit", "100", "--out", out,
                 "--quiet"]) == 0
    for shard in (["--limit", "1000"], ["--limit", "6000"], ["--start", "2000", "--limit", "500"],
                  ["--start", "6000"], ["--start", "1000", "--limit", "5000"]):
        assert main(["eval", out, "--k", "2", *shard, "--quiet"]) == 0
    capsys.readouterr()
    parts = {r["file"]: r for r in map(json.loads, open(os.path.join(out, "evals.jsonl")))}
    assert main(["eval", out, "--k", "2", "--combine"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert whole["shards"] == 2 and whole["unused_shards"] == [
        "eval-test-k2-from1000-n5000.json", "eval-test-k2-from2000-n500.json", "eval-test-k2-n1000.json"]
    used = [parts["eval-test-k2-n6000.json"], parts["eval-test-k2-from6000-n4000.json"]]
    np.testing.assert_allclose(whole["test_nll"], sum(r["test_nll"] * r["n"] for r in used) / 10000, rtol=1e-12)
    path = os.path.join(out, "eval-test-k2-from6000-n4000.json")
    with open(path) as f:
        diverged = {**json.load(f), "test_nll": None, "status": "non-finite: test_nll (a diverged model?)"}
    with open(path, "w") as f:
        json.dump(diverged, f)
    assert main(["eval", out, "--k", "2", "--combine"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert whole["test_nll"] is None and whole["status"].startswith("non-finite: test_nll")


@pytest.mark.parametrize("bad,message", [(["--layers", "a,b"], "--layers"), (["--layers", "0"], "--layers"),
                                         (["--updates", "p,dream"], "--updates"), (["--k", "0"], "--k"),
                                         (["--estimator", "vimco", "--k", "1"], "--k: VIMCO needs K >= 2")])
def test_bad_options_are_one_line_errors(tmp_path, capsys, bad, message):
    assert main(["train", "wake-sleep", *bad, "--out", str(tmp_path / "x"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinydgm: error:") and message in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()                                 # a refused run leaves nothing behind


def test_resume_gives_the_numbers_of_an_uninterrupted_run(tmp_path, capsys):
    """The trainer's state (θ, λ, both Adams, the generator) is complete: 1 epoch + resume = 2 epochs."""
    common = ["--layers", "6,3", "--reweighted", "--k", "2", "--limit", "60", "--batch-size", "20", "--quiet"]
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    assert main(["train", "wake-sleep", *common, "--epochs", "2", "--out", straight]) == 0
    assert main(["train", "wake-sleep", *common, "--epochs", "1", "--out", split]) == 0
    with open(os.path.join(split, "config.json")) as f:
        cfg = json.load(f)
    cfg["epochs"] = 2
    with open(os.path.join(split, "config.json"), "w") as f:
        json.dump(cfg, f)
    assert main(["train", "wake-sleep", "--resume", split, "--quiet"]) == 0
    capsys.readouterr()
    records = []
    for run in (straight, split):
        with open(os.path.join(run, "metrics.jsonl")) as f:
            records.append([{k: v for k, v in json.loads(line).items() if k not in ("time_s", "cpu_s")} for line in f])
    assert records[0] == records[1] and len(records[0]) == 2


@pytest.mark.parametrize("model", ["vae", "wake-sleep"])
def test_train_help_states_the_hold_the_schedule_uses(capsys, model):
    from tinydgm.optim import HOLD, learning_rate
    with pytest.raises(SystemExit, match="^0$"):                 # --help exits with status 0
        main(["train", model, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"hold lr {HOLD * 100:.0f}% of the budget" in help_text
    assert learning_rate("anneal", 1.0, 0, HOLD - 1e-9) == 1.0 > learning_rate("anneal", 1.0, 0, HOLD + 1e-3)


@pytest.mark.parametrize("estimator", [e if e in ("ws", "nvil") else pytest.param(e, marks=pytest.mark.slow)
                                       for e in ws_run.ESTIMATORS])     # the rest in CI, after the suite
def test_every_estimator_trains_and_resumes_bit_for_bit(tmp_path, capsys, estimator):
    """Each --estimator trains the same nets; its whole state (NVIL's baselines and running statistics too)
    is in the checkpoint, so 1 epoch + `--resume --epochs 2` logs exactly what 2 epochs straight do,
    gradient-variance measurements included (they do not disturb the training draws)."""
    common = ["--layers", "6,3", "--estimator", estimator, *(["--k", "2"] if "k" in estimators.options(estimator) else []),
              "--limit", "60", "--batch-size", "20", "--grad-variance-every", "1", "--quiet"]
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    assert main(["train", "wake-sleep", *common, "--epochs", "2", "--out", straight]) == 0
    assert main(["train", "wake-sleep", *common, "--epochs", "1", "--out", split]) == 0
    assert main(["train", "wake-sleep", "--resume", split, "--epochs", "2", "--quiet"]) == 0
    capsys.readouterr()
    records = []
    for run in (straight, split):
        with open(os.path.join(run, "metrics.jsonl")) as f:
            records.append([{k: v for k, v in json.loads(line).items() if k not in ("time_s", "cpu_s", "grad_var_s")}
                            for line in f if '"event"' not in line])
    assert records[0] == records[1] and len(records[0]) == 2
    assert all(r["grad_var_recognition"] > 0 for r in records[0])


def test_reinforce_has_far_more_gradient_variance_than_nvil(tmp_path, capsys):
    """The lecture's point, on the same nets and data: the plain score function is noisy; NVIL's baselines tame it."""
    variances = {}
    for estimator in ("reinforce", "nvil"):
        out = str(tmp_path / estimator)
        assert main(["train", "wake-sleep", "--layers", "20,10", "--estimator", estimator, "--epochs", "1",
                     "--limit", "200", "--grad-variance-every", "1", "--out", out, "--quiet"]) == 0
        variances[estimator] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["last"]["grad_var_recognition"]
    assert variances["reinforce"] > 100 * variances["nvil"]


def test_reweighted_goes_only_with_rws(tmp_path, capsys):
    assert main(["train", "wake-sleep", "--reweighted", "--estimator", "vimco", "--out", str(tmp_path / "r")]) == 2
    assert "--reweighted is --estimator rws" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_combine_leaves_out_shards_of_an_earlier_best_checkpoint(tmp_path, capsys):
    """Training went on after a shard was evaluated: that shard is of another model, and --combine says so
    rather than mixing it in."""
    out = str(tmp_path / "run")
    train = ["train", "wake-sleep", "--layers", "8,4", "--limit", "100", "--quiet"]
    assert main([*train, "--epochs", "1", "--out", out]) == 0
    assert main(["eval", out, "--k", "2", "--limit", "4000", "--quiet"]) == 0
    assert main([*train[:2], "--resume", out, "--epochs", "2", "--quiet"]) == 0
    assert main(["eval", out, "--k", "2", "--start", "4000", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", out, "--k", "2", "--combine"]) == 2
    assert "no test shard starts at image 0" in capsys.readouterr().err
    assert main(["eval", out, "--k", "2", "--limit", "4000", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", out, "--k", "2", "--combine"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert whole["epochs_trained"] == 2 and whole["shards"] == 2
