"""`tinydgm train loglinear|pos-hmm` and `eval` on a tiny corpus: scores recomputed independently, resume, errors."""
import gzip
import json
import os

import numpy as np
import pytest
from scipy.special import logsumexp

from tinydgm import cli
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
    config["iterations"] = 3                                   # one more epoch on resume
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
