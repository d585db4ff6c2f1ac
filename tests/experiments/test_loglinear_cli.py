"""`tinydgm train loglinear|pos-hmm` and `eval` on a tiny corpus: scores recomputed independently, resume, errors."""
import gzip
import json
import os
import re

import numpy as np
import pytest
from scipy.special import logsumexp

from tinydgm import cli, plots
from tinydgm.models.loglinear.features import FEATURE_SETS, conjoin, word_features
from tinydgm.checkpoint import load_state

@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ewt")
    from tinydgm.data.ewt import ewt_dir
    with gzip.open(os.path.join(ewt_dir(), "en_ewt-ud-dev.conllu.gz"), "rt", encoding="utf-8") as f:
        text = "\n\n".join(f.read().split("\n\n")[:60]) + "\n\n"
    (folder / "tiny.conllu").write_text(text, encoding="utf-8")
    return str(folder)


def gold_sentences(folder):
    """(forms, UPOS, XPOS) of each sentence of a folder's .conllu files, read here, not by tinydgm."""
    out, words = [], []
    for name in sorted(os.listdir(folder)):
        for line in open(os.path.join(folder, name), encoding="utf-8").read().splitlines() + [""]:
            if not line.strip():
                if words:
                    out.append(tuple(map(list, zip(*words))))
                words = []
            elif not line.startswith("#"):
                cols = line.split("\t")
                if "-" not in cols[0] and "." not in cols[0]:          # skip multiword tokens, empty nodes
                    words.append((cols[1], cols[3], cols[4]))
    return out


def decode(checkpoint_path, cfg, sentences):
    """Posterior-argmax state of every token under a saved HMM, by forward-backward in log space here."""
    state, _ = load_state(checkpoint_path)
    K = cfg["states"]
    vocab = list(dict.fromkeys(w for forms, _, _ in sentences for w in forms))   # first-seen order
    g, _ = word_features(vocab, FEATURE_SETS[cfg["features"]])
    s = (conjoin(g, K) @ state["w"]).reshape(len(vocab), K)
    log_b = s - logsumexp(s, axis=0)                                            # log p(x | z)
    log_pi, log_a, index = np.log(state["start"]), np.log(state["trans"]), {w: i for i, w in enumerate(vocab)}
    pred = []
    for forms, _, _ in sentences:
        e = log_b[[index[w] for w in forms]]
        alpha, beta = [log_pi + e[0]], [np.zeros(K)]
        for t in range(1, len(forms)):
            alpha.append(logsumexp(alpha[-1][:, None] + log_a, axis=0) + e[t])
            beta.insert(0, logsumexp(log_a + (e[len(forms) - t] + beta[0])[None, :], axis=1))
        pred.extend(np.argmax(np.array(alpha) + np.array(beta), axis=1))
    return pred


def many_to_one_by_hand(pred, gold):
    """Label each state with its most frequent gold tag; the share of tokens labelled right."""
    by_state = {}
    for s, g in zip(pred, gold):
        by_state.setdefault(s, []).append(g)
    return sum(max(tags.count(t) for t in set(tags)) for tags in by_state.values()) / len(gold)


def assert_scores_recomputed(scores, run_dir, checkpoint, folder):
    """m1_xpos and m1_upos reported by a command = many-to-one of the checkpoint's decoded states."""
    cfg = json.load(open(os.path.join(run_dir, "config.json")))
    sentences = gold_sentences(folder)
    pred = decode(os.path.join(run_dir, checkpoint), cfg, sentences)
    for name, col in (("upos", 1), ("xpos", 2)):
        gold = [t for sent in sentences for t in sent[col]]
        assert len(gold) == len(pred)
        assert scores[f"m1_{name}"] == pytest.approx(many_to_one_by_hand(pred, gold), abs=6e-5)  # 4 decimals


@pytest.mark.parametrize("mode, features", [("em", "basic"), ("em", "rich"), ("direct", "rich")])
def test_train_resume_and_eval(tiny_corpus, tmp_path, capsys, mode, features):
    out = str(tmp_path / "run")
    base = ["train", "loglinear", "--data", tiny_corpus, "--states", "5", "--mode", mode,
            "--features", features, "--out", out, "--quiet", "--eval-every", "1"]
    assert cli.main(base + ["--iterations", "2", "--lbfgs-round", "1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "done" and summary["epochs"] == 2
    assert_scores_recomputed(summary["final"], out, "last", tiny_corpus)
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["model"] == "loglinear"
    config["epochs"] = 3                                       # one more epoch on resume
    json.dump(config, open(os.path.join(out, "config.json"), "w"))
    assert cli.main(["train", "loglinear", "--resume", out, "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs"] == 3
    assert [r["epoch"] for r in map(json.loads, open(os.path.join(out, "metrics.jsonl")))] == [0, 1, 2]
    assert_scores_recomputed(summary["final"], out, "last", tiny_corpus)
    assert cli.main(["eval", out]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert_scores_recomputed(scores, out, "last", tiny_corpus)
    assert os.path.isfile(os.path.join(out, "top_words.json"))


def test_data_takes_a_data_folder_as_the_other_commands_do(tiny_corpus, tmp_path, capsys):
    """--data ROOT with ROOT/ud_english_ewt/*.conllu is the same corpus as --data ROOT/ud_english_ewt."""
    import shutil
    root = tmp_path / "root"
    shutil.copytree(tiny_corpus, root / "ud_english_ewt")
    for data, out in ((root, "a"), (root / "ud_english_ewt", "b")):
        assert cli.main(["train", "loglinear", "--data", str(data), "--features", "basic", "--mode", "em",
                         "--states", "3", "--epochs", "1", "--quiet", "--out", str(tmp_path / out)]) == 0
    a, b = (json.loads(line) for line in capsys.readouterr().out.strip().splitlines()[-2:])
    assert a["last"]["loglik"] == b["last"]["loglik"]


def test_user_mistakes_are_one_line_errors(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "b.conllu").write_text("1\tonly\tthree\n", encoding="utf-8")
    assert cli.main(["train", "loglinear", "--data", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "b.conllu, line 1" in err and "Traceback" not in err
    assert cli.main(["train", "loglinear", "--data", str(tmp_path / "nowhere")]) == 2
    assert "no .conllu" in capsys.readouterr().err
    assert cli.main(["train", "loglinear", "--features", "basic", "--mode", "em", "--kappa", "1"]) == 2
    assert "--kappa" in capsys.readouterr().err


def test_direct_mode_resumes_bit_for_bit_with_its_lbfgs_memory(tiny_corpus, tmp_path, capsys):
    """Two L-BFGS rounds straight, or one round, a stop, and `--resume --epochs 4` (iterations): the same θ."""
    common = ["--data", tiny_corpus, "--states", "3", "--features", "rich", "--mode", "direct", "--lbfgs-round", "2",
              "--quiet"]
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    assert cli.main(["train", "loglinear", *common, "--iterations", "4", "--out", straight]) == 0
    assert cli.main(["train", "loglinear", *common, "--iterations", "2", "--out", split]) == 0
    assert cli.main(["train", "loglinear", "--resume", split, "--epochs", "4", "--quiet"]) == 0
    a, _ = load_state(os.path.join(straight, "last"))
    b, _ = load_state(os.path.join(split, "last"))
    for key in ("start", "trans", "w"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    np.testing.assert_array_equal(a["lbfgs"]["s"], b["lbfgs"]["s"])


def test_eval_on_another_corpus_is_one_line_naming_the_checkpoint(tiny_corpus, tmp_path, capsys):
    """The run's emission weights do not fit the features of another corpus: one line, no traceback."""
    out = str(tmp_path / "r")
    assert cli.main(["train", "loglinear", "--data", tiny_corpus, "--states", "2", "--features", "basic",
                     "--mode", "em", "--epochs", "1", "--out", out, "--quiet"]) == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "o.conllu").write_text("1\tZebra\tzebra\tNOUN\tNN\t_\t0\troot\t_\t_\n\n", encoding="utf-8")
    capsys.readouterr()
    assert cli.main(["eval", out, "--data", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{out}/last.npz: not a checkpoint of this loglinear run's model" in err
    assert "emission weights" in err


# ---- the shared rules: budgets, --limit, exact L-BFGS iterations, values checked, eval keeps its result ----

def count_lbfgs_steps(monkeypatch):
    """A list that grows by one at every L-BFGS iteration (direct mode) from now on."""
    from tinydgm.models.loglinear.lbfgs import LBFGS
    steps, step = [], LBFGS.step

    def counted(self, *a, **k):
        steps.append(1)
        return step(self, *a, **k)
    monkeypatch.setattr(LBFGS, "step", counted)
    return steps


def metrics(run_dir):
    """The epochs' records of a run's metrics.jsonl (not the resume events)."""
    return [r for r in map(json.loads, open(os.path.join(run_dir, "metrics.jsonl"))) if "event" not in r]


DIRECT = ["--states", "3", "--features", "rich", "--mode", "direct", "--quiet"]


@pytest.mark.parametrize("iterations, round_, rounds", [(5, 20, [5]), (5, 2, [2, 2, 1])])
def test_direct_mode_runs_exactly_the_iterations_asked(tiny_corpus, tmp_path, capsys, monkeypatch,
                                                       iterations, round_, rounds):
    """--epochs N is N L-BFGS iterations: full rounds of --lbfgs-round, then only the remainder."""
    steps = count_lbfgs_steps(monkeypatch)
    out = str(tmp_path / "r")
    assert cli.main(["train", "loglinear", "--data", tiny_corpus, *DIRECT, "--epochs", str(iterations),
                     "--lbfgs-round", str(round_), "--out", out]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(steps) == iterations and summary["epochs"] == len(rounds)
    done = [r["lbfgs_iterations"] for r in metrics(out)]
    assert done == list(np.cumsum(rounds))


def test_direct_mode_remainder_resumes_bit_for_bit(tiny_corpus, tmp_path, capsys, monkeypatch):
    """5 iterations in rounds of 2 (2, 2, 1) = 3 (2, 1), then `--resume --epochs 5` (2): the same θ, 5 steps in all."""
    steps = count_lbfgs_steps(monkeypatch)
    common = ["--data", tiny_corpus, *DIRECT, "--lbfgs-round", "2"]
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    assert cli.main(["train", "loglinear", *common, "--iterations", "5", "--out", straight]) == 0
    assert len(steps) == 5
    assert cli.main(["train", "loglinear", *common, "--iterations", "3", "--out", split]) == 0
    assert cli.main(["train", "loglinear", "--resume", split, "--epochs", "5", "--quiet"]) == 0
    assert len(steps) == 10
    assert [r["lbfgs_iterations"] for r in metrics(split)] == [2, 3, 5]
    a, _ = load_state(os.path.join(straight, "last"))
    b, _ = load_state(os.path.join(split, "last"))
    for key in ("start", "trans", "w"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_minutes_and_cpu_minutes_budget_a_run(tiny_corpus, tmp_path, capsys, monkeypatch, clock):
    """--minutes M [--cpu-minutes] ends at the epoch boundary nearest M (here: after one epoch); --resume
    --epochs N then trades the time budget for N epochs in all."""
    from tinydgm.experiments import runs
    calls, fit = [], runs.fit
    monkeypatch.setattr(runs, "fit", lambda *a, **k: calls.append(k) or fit(*a, **k))
    out = str(tmp_path / "r")
    budget = ["--minutes", "1e-6"] + ["--cpu-minutes"] * (clock == "cpu")
    assert cli.main(["train", "loglinear", "--data", tiny_corpus, "--states", "2", "--features", "rich",
                     "--mode", "em", "--out", out, "--quiet", *budget]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "done" and summary["epochs"] == 1
    assert calls[-1]["minutes"] == 1e-6 and calls[-1]["clock"] == clock
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["minutes"] == 1e-6 and config["cpu_minutes"] == (clock == "cpu") and config["epochs"] is None
    assert cli.main(["train", "loglinear", "--resume", out, "--epochs", "3", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs"] == 3 and calls[-1]["minutes"] is None
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["minutes"] is None and config["epochs"] == 3 and not config["cpu_minutes"]


def test_limit_trains_on_the_first_sentences(tiny_corpus, tmp_path, capsys):
    """--limit 20 is the run a folder of the first 20 sentences gives: the same scores, recomputed here; eval too."""
    first = tmp_path / "first"
    first.mkdir()
    text = open(os.path.join(tiny_corpus, "tiny.conllu"), encoding="utf-8").read()
    (first / "first.conllu").write_text("\n\n".join(text.split("\n\n")[:20]) + "\n\n", encoding="utf-8")
    out = str(tmp_path / "r")
    assert cli.main(["train", "loglinear", "--data", tiny_corpus, "--limit", "20", "--states", "3",
                     "--features", "rich", "--mode", "em", "--epochs", "2", "--out", out, "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert_scores_recomputed(summary["final"], out, "last", str(first))
    assert json.load(open(os.path.join(out, "config.json")))["limit"] == 20
    assert cli.main(["eval", out]) == 0                      # on the run's own corpus: its first 20 sentences
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["sentences"] == 20
    assert_scores_recomputed(result, out, "last", str(first))


@pytest.mark.parametrize("bad, option", [
    (["--kappa", "inf"], "--kappa"), (["--kappa", "nan"], "--kappa"), (["--init-scale", "nan"], "--init-scale"),
    (["--init-scale", "inf"], "--init-scale"), (["--init-scale", "0"], "--init-scale"),
    (["--minutes", "inf"], "--minutes"), (["--minutes", "nan"], "--minutes"), (["--minutes", "0"], "--minutes"),
    (["--seed", "-1"], "--seed"), (["--limit", "0"], "--limit"), (["--states", "0"], "--states"),
    (["--epochs", "0"], "--epochs"), (["--iterations", "-2"], "--epochs"), (["--lbfgs-round", "0"], "--lbfgs-round")])
def test_values_out_of_range_are_one_line_and_leave_no_folder(tiny_corpus, tmp_path, capsys, bad, option):
    out = tmp_path / "r"
    assert cli.main(["train", "loglinear", "--data", tiny_corpus, "--states", "2", "--epochs", "1",
                     "--out", str(out), "--quiet", *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"tinydgm: error: {option}") and not out.exists()


def snapshot(folder):
    """name -> (bytes, inode, mtime) of every file in `folder`."""
    out = {}
    for name in os.listdir(folder):
        path, st = os.path.join(folder, name), os.stat(os.path.join(folder, name))
        out[name] = (open(path, "rb").read(), st.st_ino, st.st_mtime_ns)
    return out


def test_eval_keeps_its_result_and_leaves_the_training_files_alone(tiny_corpus, tmp_path, capsys, monkeypatch):
    """Each eval request gets a file of its own and a line of evals.jsonl; training's files stay as they were.
    A copy of the run's corpus elsewhere is the run's corpus; other sentences (here one more) are kept apart."""
    import shutil
    out = str(tmp_path / "r")
    assert cli.main(["train", "loglinear", "--data", tiny_corpus, "--states", "3", "--features", "basic",
                     "--mode", "em", "--epochs", "2", "--out", out, "--quiet"]) == 0
    trained = snapshot(out)
    assert "top_words.json" in trained and "summary.json" in trained
    capsys.readouterr()
    copy, other = tmp_path / "copy", tmp_path / "other"
    shutil.copytree(tiny_corpus, copy)
    shutil.copytree(tiny_corpus, other)
    text = (other / "tiny.conllu").read_text(encoding="utf-8")
    (other / "tiny.conllu").write_text(text + text.split("\n\n")[0] + "\n\n", encoding="utf-8")  # the same words
    requests = [([], "eval-corpus-last.json"), (["--checkpoint", "best"], "eval-corpus.json"),
                (["--data", tiny_corpus], "eval-corpus-last.json"), (["--data", str(copy)], "eval-corpus-last.json"),
                (["--data", str(other)], None)]
    figures = plots.available()
    for extra, name in requests:
        assert cli.main(["eval", out, *extra]) == 0
        monkeypatch.setattr(plots, "available", lambda: False)  # figures once (they take the time)
        printed = capsys.readouterr().out.strip().splitlines()
        assert len(printed) == 1
        result = json.loads(printed[0])
        lines = [json.loads(line) for line in open(os.path.join(out, "evals.jsonl"))]
        file = lines[-1]["file"]
        assert name is None or file == name
        assert json.load(open(os.path.join(out, file))) == result == {k: v for k, v in lines[-1].items() if k != "file"}
        assert result["checkpoint"] == (extra[1] if extra[:1] == ["--checkpoint"] else "last")
        assert result["status"] == "ok" and result["epochs_trained"] == 2
        data = extra[1] if extra[:1] == ["--data"] else tiny_corpus
        assert_scores_recomputed(result, out, result["checkpoint"], data)
        assert {k: v for k, v in snapshot(out).items() if k in trained} == trained
        assert all(os.path.isfile(os.path.join(out, f)) and f not in trained for f in result["files"])
    assert len(lines) == 5 and lines[-1]["data"] == str(other) and lines[-1]["sentences"] == 61
    assert lines[0]["files"] == ["eval-corpus-last-top_words.json"] + ["eval-corpus-last-confusion_xpos.png",
                                                                      "eval-corpus-last-confusion_upos.png"] * figures
    assert re.fullmatch(r"eval-corpus-last-data[0-9a-f]{8}\.json", lines[-1]["file"])
    assert lines[-1]["files"][0] == lines[-1]["file"][:-5] + "-top_words.json"


def test_eval_checks_the_run_folder_is_writable_first(tiny_corpus, tmp_path, capsys, monkeypatch):
    import errno
    from tinydgm import files
    from tinydgm.experiments import loglinear
    out = str(tmp_path / "r")
    assert cli.main(["train", "loglinear", "--data", tiny_corpus, "--states", "2", "--features", "basic",
                     "--mode", "em", "--epochs", "1", "--out", out, "--quiet"]) == 0
    capsys.readouterr()

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(files.tempfile, "mkstemp", read_only)
    monkeypatch.setattr(loglinear, "load_corpus", lambda *a: pytest.fail("computed before checking the folder"))
    assert cli.main(["eval", out]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and out in err and "read-only" in err
    assert not os.path.exists(os.path.join(out, "evals.jsonl"))


def test_resume_takes_the_same_corpus_found_elsewhere_and_no_other(tiny_corpus, tmp_path, capsys):
    import shutil
    out, copy, other = str(tmp_path / "r"), tmp_path / "copy", tmp_path / "other"
    assert cli.main(["train", "loglinear", "--data", tiny_corpus, "--states", "2", "--features", "basic",
                     "--mode", "em", "--epochs", "1", "--out", out, "--quiet"]) == 0
    shutil.copytree(tiny_corpus, copy)
    shutil.copytree(tiny_corpus, other)
    text = (other / "tiny.conllu").read_text(encoding="utf-8")
    (other / "tiny.conllu").write_text(text + text.split("\n\n")[0] + "\n\n", encoding="utf-8")  # the same words
    capsys.readouterr()
    assert cli.main(["train", "loglinear", "--resume", out, "--data", str(other), "--epochs", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not the corpus" in err and len(metrics(out)) == 1
    assert cli.main(["train", "loglinear", "--resume", out, "--data", str(copy), "--epochs", "2", "--quiet"]) == 0
    assert len(metrics(out)) == 2 and json.load(open(os.path.join(out, "config.json")))["data"] == str(copy)


def test_a_run_from_before_the_budget_options_resumes_and_evaluates(tiny_corpus, tmp_path, capsys):
    """A config.json with "iterations" and without the newer keys: --resume trains to its iterations, eval works."""
    out = str(tmp_path / "r")
    assert cli.main(["train", "loglinear", "--data", tiny_corpus, "--states", "2", "--features", "basic",
                     "--mode", "em", "--epochs", "1", "--out", out, "--quiet"]) == 0
    config = json.load(open(os.path.join(out, "config.json")))
    for key in ("epochs", "minutes", "cpu_minutes", "limit", "corpus_sha256"):
        del config[key]
    json.dump({**config, "iterations": 2}, open(os.path.join(out, "config.json"), "w"))
    assert cli.main(["train", "loglinear", "--resume", out, "--quiet"]) == 0
    assert len(metrics(out)) == 2
    assert cli.main(["eval", out]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["status"] == "ok"
