"""scripts/compare_estimators.py end to end on a smoke budget (two VAE estimators, one seed, 100 images):
runs trained and evaluated through the command line, a table holding what the runs hold, the figures,
a second call that trains and evaluates nothing again; a budget in epochs, and runs of one kind of budget
never continued under the other; and its checks on what `tinydgm train` accepts."""
import importlib.util
import json
import os
import shutil

import pytest

from tinydgm import cli, plots
from tinydgm.errors import UserError

pytestmark = pytest.mark.slow            # end-to-end runs of the script: CI runs them after the suite

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_script():
    spec = importlib.util.spec_from_file_location("compare_estimators", os.path.join(ROOT, "scripts", "compare_estimators.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compare = load_script()
SMOKE = ["--model", "vae", "--cpu-minutes", "1", "--seeds", "4", "--estimators", "elbo,score-function-baseline",
         "--limit", "100", "--epochs-cap", "2", "--eval-k", "4", "--eval-limit", "20"]
EPOCHS = ["--model", "vae", "--epochs", "2", "--seeds", "4", "--estimators", "elbo", "--limit", "100",
          "--eval-k", "4", "--eval-limit", "20"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    assert compare.main([*SMOKE, "--out", str(out)]) == 0
    with open(out / "results.json") as f:
        return out, json.load(f)


@pytest.fixture(scope="module")
def epochs_smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare-epochs")
    assert compare.main([*EPOCHS, "--out", str(out)]) == 0
    with open(out / "results.json") as f:
        return out, json.load(f)


def test_each_run_is_trained_and_evaluated_by_the_command(smoke):
    out, results = smoke
    assert [(r["estimator"], r["seed"]) for r in results["runs"]] == [("elbo", 4), ("score-function-baseline", 4)]
    for r in results["runs"]:
        run = out / f"{r['estimator']}-s4"
        assert r["run"] == str(run) and r["status"] == "done" and r["epochs"] == 2
        with open(run / "config.json") as f:
            config = json.load(f)
        assert (config["estimator"], config["seed"], config["limit"], config["epochs"], config["minutes"],
                config["cpu_minutes"], config["grad_variance_every"]) == (r["estimator"], 4, 100, 2, 1.0, True, 1)
        with open(run / "eval-test-k4-n20.json") as f:
            evaluation = json.load(f)
        assert (r["test_nll"], r["test_elbo"], r["eval_k"], r["eval_n"]) == (
            evaluation["test_nll"], evaluation["test_elbo"], 4, 20)
        with open(run / "summary.json") as f:
            assert r["cpu_s"] == json.load(f)["cpu_s"]
        records = [json.loads(line) for line in open(run / "metrics.jsonl")]
        assert all("grad_var_encoder" in m and "valid_elbo" in m for m in records)
    # one seed: the mean is the run
    for m, r in zip(results["mean"], results["runs"]):
        assert (m["estimator"], m["seeds"], m["test_nll"], m["epochs"]) == (r["estimator"], 1, r["test_nll"], 2)
        assert m["grad_var_last"] == [json.loads(line) for line in open(r["run"] + "/metrics.jsonl")][-1]["grad_var_encoder"]


def test_table_and_figures(smoke):
    out, results = smoke
    text = (out / "results.md").read_text()
    assert text.startswith("# Estimators compared: vae, 1 CPU-minute each\n")
    assert (results["budget"], results["cpu_minutes"], results["epochs"]) == ("1 CPU-minute each", 1.0, None)
    assert "python scripts/compare_estimators.py " + " ".join(SMOKE) in text
    for r in results["runs"]:
        assert f"| {r['estimator']} | 4 | {r['test_nll']:.2f} | {r['test_elbo']:.2f} | 2 |" in text
        with open(os.path.join(r["run"], "summary.json")) as f:
            assert r["valid_best"] == json.load(f)["valid_elbo"] and f"| {r['valid_best']:.2f} | done |" in text
    if plots.available():
        assert results["figures"] == [str(out / "curves.png"), str(out / "grad_variance.png")]
        assert all(os.path.getsize(f) > 0 for f in results["figures"])


def test_a_budget_in_epochs_is_the_same_passes_for_every_run_and_the_table_says_so(epochs_smoke):
    """--epochs N trains each run N epochs with no time budget (`train vae --estimator E --epochs N`, the
    learning rate annealed over the epochs as over the minutes); the table is headed by the budget and
    states each run's epochs and CPU seconds, as its summary.json has them."""
    out, results = epochs_smoke
    (r,) = results["runs"]
    run = out / "elbo-s4"
    with open(run / "config.json") as f:
        config = json.load(f)
    assert (config["estimator"], config["epochs"], config["minutes"], config["cpu_minutes"], config["schedule"]) == (
        "elbo", 2, None, False, "anneal")
    command = (out / "elbo-s4.log").read_text().splitlines()[0]
    assert " -m tinydgm train vae --estimator elbo " in command and " --epochs 2 " in command
    assert "--minutes" not in command and "--objective" not in command
    with open(run / "summary.json") as f:
        summary = json.load(f)
    assert (r["status"], r["epochs"], r["cpu_s"]) == ("done", 2, summary["cpu_s"]) and r["test_nll"] is not None
    assert (results["budget"], results["epochs"], results["cpu_minutes"]) == ("2 epochs each", 2, None)
    text = (out / "results.md").read_text()
    assert text.startswith("# Estimators compared: vae, 2 epochs each\n")
    assert f"| elbo | 4 | {r['test_nll']:.2f} | {r['test_elbo']:.2f} | 2 | {r['cpu_s']:.1f} |" in text


@pytest.mark.parametrize("budget", [["--cpu-minutes", "1"], ["--epochs", "3"]])
def test_runs_of_the_other_kind_of_budget_are_refused_in_one_line(smoke, epochs_smoke, budget):
    """A folder of runs trained for epochs is not continued (nor reported) under CPU-minutes, nor the other
    way round: one line naming the run and both budgets, nothing trained or written."""
    out, _ = epochs_smoke if budget[0] == "--cpu-minutes" else smoke
    before = {f: (out / f).read_text() for f in os.listdir(out) if f.endswith((".log", ".json", ".md"))}
    rest = [*EPOCHS[4:], "--out", str(out)]
    with pytest.raises(UserError) as refused:
        compare.main(["--model", "vae", *budget, *rest])
    line = str(refused.value)
    assert "\n" not in line and line.startswith(str(out / "elbo-s4") + ": trained under a budget of ")
    assert ("2 epochs, not of CPU-minutes" if budget[0] == "--cpu-minutes" else "1 CPU-minutes, not of epochs") in line
    assert {f: (out / f).read_text() for f in before} == before


def test_the_default_folder_names_the_budget():
    folders = {compare.parse(["--model", "vae", *b]).out for b in (["--cpu-minutes", "30"], ["--epochs", "30"])}
    assert folders == {os.path.join("runs", "compare-vae-30-cpu-minutes"), os.path.join("runs", "compare-vae-30-epochs")}


@pytest.mark.parametrize("budget, line", [
    ([], "one of the arguments --cpu-minutes --epochs is required"),
    (["--cpu-minutes", "1", "--epochs", "2"], "argument --epochs: not allowed with argument --cpu-minutes"),
    (["--epochs", "0"], "argument --epochs: expected an integer >= 1, got '0'"),
])
def test_exactly_one_budget(tmp_path, capsys, budget, line):
    out = tmp_path / "c"
    with pytest.raises(SystemExit) as stop:
        compare.main(["--model", "vae", *budget, "--out", str(out)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err == f"compare_estimators.py: error: {line}\n" and not out.exists()


def test_a_second_call_reuses_the_runs_and_their_evaluations(smoke, capsys):
    out, results = smoke
    logs = {f: (out / f).read_text() for f in os.listdir(out) if f.endswith(".log")}
    assert compare.main([*SMOKE, "--out", str(out)]) == 0
    assert {f: (out / f).read_text() for f in logs} == logs          # nothing trained or evaluated again
    with open(out / "results.json") as f:
        assert json.load(f)["runs"] == results["runs"]


def test_mean_over_seeds(tmp_path):
    records = [{"estimator": "a", "seed": s, "run": str(tmp_path / "none"), "test_nll": v, "test_elbo": -v - 5,
                "epochs": e, "cpu_s": 60.0} for s, v, e in ((0, 100.0, 3), (1, 104.0, 4))]
    records.append({"estimator": "b", "seed": 0, "run": str(tmp_path / "none"), "status": "training failed"})
    (mean_a, mean_b) = compare.summarise(records, "valid_elbo")
    assert mean_a == {"estimator": "a", "seeds": 2, "test_nll": 102.0, "test_nll_sd": pytest.approx(2 ** 1.5),
                      "test_elbo": -107.0, "epochs": 3.5, "cpu_s": 60.0}
    assert mean_b == {"estimator": "b", "seeds": 0}


def test_what_the_installed_command_does_not_accept_is_named(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "vae", "--help"])
    text = capsys.readouterr().out
    assert compare.accepted(text, ["--estimator", "score-function-baseline", "--grad-variance-every", "1"]) == ""
    older = text.replace("score-function,score-function-baseline", "").replace("--grad-variance-every", "")
    assert compare.accepted(older, ["--estimator", "score-function"]) == \
        "--estimator score-function (choices: elbo,iwae,)"
    assert compare.accepted(older, ["--grad-variance-every", "1"]) == "the option --grad-variance-every"
    assert compare.accepted(text, ["--reweighted", "nvil"]) == "the option --reweighted"


@pytest.mark.parametrize("options, line", [
    (["--estimators", "elbo,nvil"], "--estimators: unknown estimator(s) nvil for --model vae; expected some of elbo,"),
    (["--cpu-minutes", "0"], "argument --cpu-minutes: expected a finite number > 0, got '0'"),
    (["--eval-limit", "20", "--eval-shard", "10"],
     "--eval-shard: the shards tile all 10,000 test images; with --eval-limit N"),
])
def test_unknown_estimator_and_bad_options(tmp_path, capsys, options, line):
    """One line naming the option, exit code 2, and no folder made."""
    out = tmp_path / "c"
    with pytest.raises(SystemExit) as stop:
        compare.main(["--model", "vae", "--cpu-minutes", "1", *options, "--out", str(out)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("compare_estimators.py: error: ") and len(err.splitlines()) == 1
    assert line in err and not out.exists()


def test_estimators_the_command_lacks_are_skipped_with_a_message(monkeypatch, capsys, tmp_path):
    """Against a `train wake-sleep --help` from before --estimator and --grad-variance-every: every SBN
    estimator is skipped, each named with what is missing; with them, each run gets its flags."""
    class Done:
        def __init__(self, stdout):
            self.stdout = stdout
    old = "usage: tinydgm train wake-sleep [--layers LAYERS] [--reweighted] [--k K] [--minutes MINUTES] [--cpu-minutes]"
    new = old + " [--estimator {ws,rws,reinforce,nvil,vimco,relaxed,straight-through}] [--grad-variance-every N]"
    args = compare.parse(["--model", "sbn", "--cpu-minutes", "2", "--seeds", "0,1", "--out", str(tmp_path)])
    monkeypatch.setattr(compare.subprocess, "run", lambda *a, **k: Done(old))
    assert compare.plan(args) == []
    err = capsys.readouterr().err
    assert "`tinydgm train wake-sleep` has no --grad-variance-every yet" in err
    assert "skipped vimco-5: the installed `tinydgm train wake-sleep` does not accept the option --estimator" in err
    monkeypatch.setattr(compare.subprocess, "run", lambda *a, **k: Done(new))
    runs = compare.plan(args)
    assert [(name, seed) for name, seed, _ in runs][:3] == [("ws", 0), ("ws", 1), ("rws-5", 0)] and len(runs) == 14
    assert runs[7][2] == ["train", "wake-sleep", "--layers", "200,200", "--estimator", "nvil", "--threads", "1",
                          "--minutes", "2.0", "--cpu-minutes", "--schedule", "anneal", "--quiet",
                          "--grad-variance-every", "1", "--seed", "1"]
    for cap, epochs in ((None, "5"), ("3", "3"), ("9", "5")):          # --epochs-cap stops a run sooner, never later
        args = compare.parse(["--model", "sbn", "--epochs", "5", "--estimators", "nvil", "--seeds", "0",
                              *(["--epochs-cap", cap] if cap else []), "--out", str(tmp_path)])
        assert compare.plan(args)[0][2][6:] == ["--threads", "1", "--epochs", epochs, "--schedule", "anneal", "--quiet",
                                                "--grad-variance-every", "1", "--seed", "0"]


def test_whole_split_evaluated_in_kept_shards_and_combined(tmp_path):
    """Without --eval-limit every test image is evaluated, shard by shard; a shard already kept (an
    interrupted comparison) is not evaluated again, and the table holds the combined result."""
    out = tmp_path / "c"
    smoke = ["--model", "vae", "--cpu-minutes", "1", "--seeds", "0", "--estimators", "elbo", "--limit", "100",
             "--epochs-cap", "1", "--eval-k", "2", "--eval-shard", "6000", "--out", str(out)]
    assert compare.main([*smoke, "--train-only"]) == 0
    run = out / "elbo-s0"
    assert (run / "summary.json").is_file() and not list(run.glob("eval-*"))           # trained, not evaluated
    assert cli.main(["eval", str(run), "--k", "2", "--limit", "6000", "--quiet", "--threads", "1"]) == 0
    assert compare.main(smoke) == 0
    made = [json.loads(line)["file"] for line in open(run / "evals.jsonl")]
    assert made == ["eval-test-k2-n6000.json", "eval-test-k2-from6000-n4000.json", "eval-test-k2.json"]
    shards = [json.load(open(run / name)) for name in made[:2]]
    combined = json.load(open(run / "eval-test-k2.json"))
    assert combined["n"] == 10_000 and combined["shards"] == 2
    assert combined["test_nll"] == pytest.approx((6000 * shards[0]["test_nll"] + 4000 * shards[1]["test_nll"]) / 10_000)
    results = json.load(open(out / "results.json"))
    assert results["runs"][0]["test_nll"] == combined["test_nll"] and results["runs"][0]["eval_n"] == 10_000
    assert compare.main([*smoke, "--train-only"]) == 0                  # the table keeps the kept evaluation
    assert json.load(open(out / "results.json"))["runs"][0]["test_nll"] == combined["test_nll"]


@pytest.mark.parametrize("budget, resumed", [
    (["--cpu-minutes", "1", "--epochs-cap", "1"], "--minutes 1.0 --cpu-minutes --epochs 1"),
    (["--epochs", "1"], "--epochs 1"),
])
def test_an_interrupted_run_is_resumed_with_its_model_word(tmp_path, budget, resumed):
    """A run folder without summary.json (a comparison cut off mid-run) is continued with
    `tinydgm train MODEL --resume RUN` and the comparison's budget, the model read from its config.json."""
    out = tmp_path / "c"
    smoke = ["--model", "vae", *budget, "--seeds", "0", "--estimators", "elbo", "--limit", "100",
             "--train-only", "--out", str(out)]
    assert compare.main(smoke) == 0
    run = out / "elbo-s0"
    (run / "summary.json").unlink()
    assert compare.main(smoke) == 0
    assert (run / "summary.json").is_file()
    assert f"-m tinydgm train vae --resume {run} --threads 1 --quiet {resumed}\n" in (out / "elbo-s0.log").read_text()


def test_a_run_stopped_short_states_what_it_trained(tmp_path):
    """Epochs and CPU seconds of a run that did not finish: from its summary, else its last metrics line."""
    run = tmp_path / "r"
    run.mkdir()
    assert compare.spent(str(run), None) == {}
    (run / "metrics.jsonl").write_text('{"epoch": 0, "cpu_s": 1.5}\n{"event": "resume"}\n{"epoch": 1, "cpu_s": 3.25}\n')
    assert compare.spent(str(run), None) == {"epochs": 2, "cpu_s": 3.25}
    assert compare.spent(str(run), {"status": "interrupted", "epochs": 1, "cpu_s": 1.5}) == {"epochs": 1, "cpu_s": 1.5}


def test_a_run_stopped_by_a_signal_is_continued_and_its_old_shards_not_reused(tmp_path):
    """A run whose summary says "interrupted" (the comparison was killed mid-run) is trained on, not
    evaluated as it is; a shard evaluated before it went on is of an earlier best checkpoint: evaluated again."""
    out = tmp_path / "c"
    smoke = ["--model", "vae", "--cpu-minutes", "1", "--seeds", "0", "--estimators", "elbo", "--limit", "100",
             "--eval-k", "2", "--eval-shard", "6000", "--out", str(out)]
    assert compare.main([*smoke, "--epochs-cap", "1", "--train-only"]) == 0
    run = out / "elbo-s0"
    assert cli.main(["eval", str(run), "--k", "2", "--limit", "6000", "--quiet", "--threads", "1"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    assert compare.main([*smoke, "--epochs-cap", "2"]) == 0
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2
    made = [json.loads(line) for line in open(run / "evals.jsonl")]
    assert [(r["file"], r["epochs_trained"]) for r in made] == [
        ("eval-test-k2-n6000.json", 1), ("eval-test-k2-n6000.json", 2), ("eval-test-k2-from6000-n4000.json", 2),
        ("eval-test-k2.json", 2)]


def test_report_only_trains_and_evaluates_nothing_and_names_the_seeds_not_run(smoke, tmp_path):
    """--report-only writes the table from the runs there are: a seed never trained is named "not trained"
    (no folder, no log made for it) and left out of the mean; a run without its evaluation has no NLL."""
    source, results = smoke
    out = tmp_path / "copy"
    shutil.copytree(source, out)
    (out / "score-function-baseline-s4" / "evals.jsonl").unlink()        # trained, evaluation not kept
    before = sorted(os.listdir(out))
    assert compare.main([*SMOKE[:5], "4,5", *SMOKE[6:], "--out", str(out), "--report-only"]) == 0
    assert sorted(os.listdir(out)) == before
    with open(out / "results.json") as f:
        report = json.load(f)
    status = {(r["estimator"], r["seed"]): (r["status"], r.get("test_nll")) for r in report["runs"]}
    elbo = next(r for r in results["runs"] if r["estimator"] == "elbo")
    assert status == {("elbo", 4): ("done", elbo["test_nll"]), ("elbo", 5): ("not trained", None),
                      ("score-function-baseline", 4): ("done, not evaluated", None), ("score-function-baseline", 5): ("not trained", None)}
    assert [(m["estimator"], m["seeds"], m.get("test_nll")) for m in report["mean"]] == [
        ("elbo", 1, elbo["test_nll"]), ("score-function-baseline", 0, None)]
    assert "| elbo | 5 | – | – | – | – | – | not trained |" in (out / "results.md").read_text()
    with pytest.raises(SystemExit):
        compare.parse([*SMOKE, "--report-only", "--train-only"])
