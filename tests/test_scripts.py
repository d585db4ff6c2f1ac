"""The scripts follow the rules of the `tinydgm` command: a mistake in an option is one line on stderr with
exit code 2 and no traceback, found before anything is written; `--help` exits 0 with the whole first
sentence.  Only mistakes and --help are run here: no benchmark, training or mutation."""
import ast
import importlib.util
import json
import os
import signal
import subprocess
import sys

import pytest

from tinydgm.errors import OutputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "scripts")
BENCHMARKS = sorted(f[:-3].replace("_", "-") for f in os.listdir(os.path.join(SCRIPTS, "benchmarks"))
                    if f.endswith(".py") and not f.startswith("_"))
COMPARE = ["--model", "vae", "--cpu-minutes", "1"]


def script(name, *args, env=None, timeout=60):
    """(exit code, stdout, stderr) of `python scripts/NAME ARGS`; on a timeout its process group is stopped."""
    p = subprocess.Popen([sys.executable, os.path.join(SCRIPTS, name), *args], cwd=ROOT, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                         env={**os.environ, **(env or {})})
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGTERM)
        out, err = p.communicate()
        pytest.fail(f"{name} {' '.join(args)}: still running after {timeout} s (the mistake was not caught)")
    return p.returncode, out, err


def one_line_error(result, prog, *words):
    """Exit code 2, nothing on stdout, one stderr line `PROG: error: ...` holding each of `words`."""
    code, out, err = result
    assert "Traceback" not in err
    assert (code, out, len(err.splitlines())) == (2, "", 1), err
    assert err.startswith(f"{prog}: error: ")
    for word in words:
        assert word in err
    return err


def first_paragraph(path):
    """The module docstring's first paragraph, without whitespace (help text is wrapped anew)."""
    with open(path) as f:
        doc = ast.get_docstring(ast.parse(f.read()))
    return "".join(doc.split("\n\n")[0].split())


# ---------------------------------------------------------------- bench.py

@pytest.mark.parametrize("args, prog, words", [
    ([], "bench.py", ["NAME"]),
    (["bogus"], "bench.py", ["bogus", "engine", "wake-sleep"]),
    (["engine", "--threads"], "bench.py", ["--threads", "expected one argument"]),
    (["engine", "--threads", "abc"], "bench.py", ["--threads", "'abc'"]),
    (["engine", "--threads", "0"], "bench.py", ["--threads", "'0'"]),
    (["engine", "--thread", "2"], "bench.py engine", ["--thread"]),
    (["vae", "--rounds", "-1"], "bench.py vae", ["--rounds", "'-1'"]),
    (["engine", "--batch", "100", "0"], "bench.py engine", ["--batch", "'0'"]),
    (["threads", "--seconds", "inf"], "bench.py threads", ["--seconds", "'inf'"]),
    (["threads", "--limit", "nan"], "bench.py threads", ["--limit", "'nan'"]),
    (["threads", "--limit", "20"], "bench.py threads", ["--limit", "> 30", "'20'"]),
    (["wake-sleep", "--layers", "200,x"], "bench.py wake-sleep", ["--layers", "'200,x'"]),
    (["estimators", "--k", "0"], "bench.py estimators", ["--k", "'0'"]),
    (["hmm", "--states", "abc"], "bench.py hmm", ["--states", "'abc'"]),
])
def test_bench_option_mistakes_are_one_line(args, prog, words):
    one_line_error(script("bench.py", *args), prog, *words)


def test_bench_data_missing_is_one_line(tmp_path):
    """A UserError met while running (here the data set is missing) is printed once, exit code 2."""
    result = script("bench.py", "vae", env={"TINYDGM_DATA": str(tmp_path)})
    one_line_error(result, "bench.py vae", str(tmp_path))


def test_bench_help_lists_the_benchmarks():
    code, out, err = script("bench.py", "--help")
    assert (code, err) == (0, "")
    assert first_paragraph(os.path.join(SCRIPTS, "bench.py")) in "".join(out.split())
    assert all(name in out for name in BENCHMARKS)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_each_benchmark_help_has_its_whole_first_sentence(name):
    code, out, err = script("bench.py", name, "--threads", "1", "--help")
    assert (code, err) == (0, "")
    assert out.startswith(f"usage: bench.py {name} ")
    path = os.path.join(SCRIPTS, "benchmarks", name.replace("-", "_") + ".py")
    assert first_paragraph(path) in "".join(out.split())


# ---------------------------------------------------------------- compare_estimators.py

@pytest.mark.parametrize("args, words", [
    (["--estimators", "bogus"], ["--estimators", "bogus", "elbo,score-function,score-function-baseline,iwae-5"]),
    (["--estimators", "elbo,elbo"], ["--estimators", "elbo,elbo"]),
    (["--seeds", "a"], ["--seeds", "'a'"]),
    (["--seeds", "0,0"], ["--seeds", "0,0"]),
    (["--seeds", "-1"], ["--seeds", "'-1'"]),
    (["--jobs", "0"], ["--jobs", "'0'"]),
    (["--eval-k", "-1"], ["--eval-k", "'-1'"]),
    (["--limit", "0"], ["--limit", "'0'"]),
    (["--eval-limit", "20000"], ["--eval-limit", "20000"]),
    (["--epochs-cap", "x"], ["--epochs-cap", "'x'"]),
    (["--cpu-minutes", "inf"], ["--cpu-minutes", "'inf'"]),
    (["--cpu-minutes", "nan"], ["--cpu-minutes", "'nan'"]),
    (["--cpu-minutes"], ["--cpu-minutes", "expected one argument"]),
    (["--estimator", "elbo"], ["--estimator"]),
])
def test_compare_option_mistakes_are_one_line_and_write_nothing(tmp_path, args, words):
    out = tmp_path / "c"
    one_line_error(script("compare_estimators.py", *COMPARE, "--out", str(out), *args), "compare_estimators.py", *words)
    assert not out.exists()


def test_compare_refuses_an_out_it_cannot_write_before_training(tmp_path):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "c"
    one_line_error(script("compare_estimators.py", *COMPARE, "--out", str(out)), "compare_estimators.py",
                   str(tmp_path / "file"))
    assert os.listdir(tmp_path) == ["file"]


def test_compare_help_has_its_whole_first_sentence():
    code, out, err = script("compare_estimators.py", "--help")
    assert (code, err) == (0, "")
    assert first_paragraph(os.path.join(SCRIPTS, "compare_estimators.py")) in "".join(out.split())


# ---------------------------------------------------------------- mutate.py

@pytest.mark.parametrize("args, words", [
    (["--jobs"], ["--jobs", "expected one argument"]),
    (["--jobs", "0", "--only", "bogus"], ["--jobs", "'0'"]),
    (["--timeout", "nan", "--only", "bogus"], ["--timeout", "'nan'"]),
    (["--only", "bogus"], ["--only", "bogus"]),
])
def test_mutate_option_mistakes_are_one_line(args, words):
    one_line_error(script("mutate.py", *args), "mutate.py", *words)


def test_mutate_refuses_a_report_it_cannot_write_before_copying(tmp_path):
    report = tmp_path / "missing" / "r.md"
    result = script("mutate.py", "--only", "ops-add-dy", "--timeout", "1", "--out", str(report))
    one_line_error(result, "mutate.py", "--out", str(tmp_path / "missing"))


# ---------------------------------------------------------------- burda_curves.py

def fake_run(folder, init, losses):
    """A run folder as `tinydgm train vae` leaves it, as far as burda_curves.py reads it (no training here)."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model": "vae", "init": init, "estimator": "elbo"}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "loss": v, "valid_elbo": -v}) + "\n"
                                                  for e, v in enumerate(losses)))
    return str(folder)


@pytest.mark.parametrize("args, words", [
    ([], ["RUN"]),
    (["/nonexistent/run"], ["/nonexistent/run", "not a run directory"]),
    (["--out"], ["--out", "expected one argument"]),
])
def test_burda_curves_mistakes_are_one_line(args, words):
    one_line_error(script("burda_curves.py", *args), "burda_curves.py", *words)


def test_burda_curves_checks_every_run_and_the_out_folder_before_writing(tmp_path):
    a = fake_run(tmp_path / "a", "burda", [100, 98, 97])
    empty = fake_run(tmp_path / "empty", "burda", [])
    out = tmp_path / "c.png"
    one_line_error(script("burda_curves.py", a, empty, "--out", str(out)), "burda_curves.py", empty, "no validation ELBO")
    one_line_error(script("burda_curves.py", a, "--out", str(tmp_path / "missing" / "c.png")), "burda_curves.py",
                   str(tmp_path / "missing"))
    assert sorted(os.listdir(tmp_path)) == ["a", "empty"]


def test_burda_curves_draws_each_run_labelled_with_its_init(tmp_path):
    pytest.importorskip("matplotlib")
    old = fake_run(tmp_path / "old", None, [104, 100, 99])
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    del config["init"]                                       # a run from before --init: it began as pytorch
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    runs = [fake_run(tmp_path / "new", "burda", [101, 98, 96.5]), old]
    code, out, err = script("burda_curves.py", *runs, "--out", str(tmp_path / "c.png"))
    assert (code, err, out) == (0, "", f"{tmp_path / 'c.png'}\n")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    spec = importlib.util.spec_from_file_location("burda_curves", os.path.join(SCRIPTS, "burda_curves.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from tinydgm.experiments.runs import Run
    assert [module.label(Run.open(r)) for r in runs] == ["new (init burda, elbo)", "old (init pytorch, elbo)"]


def test_burda_curves_help_has_its_whole_first_sentence():
    code, out, err = script("burda_curves.py", "--help")
    assert (code, err) == (0, "")
    assert first_paragraph(os.path.join(SCRIPTS, "burda_curves.py")) in "".join(out.split())


# ---------------------------------------------------------------- the shared rules

def load_cli():
    spec = importlib.util.spec_from_file_location("scripts_cli", os.path.join(SCRIPTS, "benchmarks", "_cli.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_user_error_is_one_line_and_ctrl_c_exits_130(capsys):
    cli = load_cli()

    def fails():
        raise OutputError("/full/results.json: no space left on the device")

    def interrupted():
        raise KeyboardInterrupt
    assert cli.run("x.py", fails) == 2
    assert capsys.readouterr().err == "x.py: error: /full/results.json: no space left on the device\n"
    assert cli.run("x.py", interrupted, "interrupted; run it again") == 130
    assert capsys.readouterr().err == "x.py: interrupted; run it again\n"
    assert cli.run("x.py", lambda: None) == 0
