"""scripts/interrupt_check.py: one trial of each command end to end, its folder checks on folders made here, and
its option mistakes.

The end-to-end run takes one trial of each command, not two: two take about 80 s on 2 shared cores (each trial
starts two processes of 2-3 s start-up), one about 50 s.  Its --seed (3933) draws a Ctrl-C at 82% of a train
and at 90% of an eval, past the start-up (or after the end: exit 0), and a kill -9 for --combine.  A Ctrl-C
that meets the start-up (the imports, before `tinydgm.cli.main` catches it) ends in a traceback today, which
the full check reports as a failure of the package, not of this script; a second trial of --combine (1.5 s,
mostly start-up) would meet it almost surely."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tinydgm import checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "interrupt_check.py")


def script(*args, timeout=150):
    p = subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def ic():
    spec = importlib.util.spec_from_file_location("interrupt_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_one_trial_of_each_command_keeps_the_promises(tmp_path):
    out = tmp_path / "ic"
    code, stdout, stderr = script("--trials", "1", "--seed", "3933", "--eval-k", "200", "--eval-limit", "300",
                                  "--out", str(out))
    assert code == 0, stdout + stderr
    lines = stdout.splitlines()
    assert lines[-1] == "train: 1 trials, 1 ok; eval: 1 trials, 1 ok; combine: 1 trials, 1 ok"
    trials = [line for line in lines if line.split()[:2] in (["train", "1"], ["eval", "1"], ["combine", "1"])]
    assert [t.split()[2] for t in trials] == ["SIGINT", "SIGINT", "SIGKILL"]
    assert all(t.endswith("ok") for t in trials)
    assert "Traceback" not in stderr
    assert not out.exists()                        # removed without --keep


def test_a_folder_that_still_loads_passes(ic, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model": "vae"}))
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 0, "loss": 1.5}\n')
    (tmp_path / ".tmp-abcbest.json").write_text('{"cut sh')          # a write cut short: not a result
    (tmp_path / ".tmp-xyzlast.npz").write_bytes(b"PK\x03")
    checkpoint.save_state(tmp_path / "last", {"w": np.ones(3, np.float32)}, {"epoch": 1})
    assert ic.check_folder(str(tmp_path)) == []
    assert ic.check_folder(str(tmp_path / "never-made")) == []
    assert ic.leftovers(str(tmp_path)) == [".tmp-abcbest.json", ".tmp-xyzlast.npz"]


def test_a_folder_with_half_written_files_is_reported(ic, tmp_path):
    (tmp_path / "config.json").write_text("[1, 2]")
    (tmp_path / "eval-test-k5.json").write_text('{"test_nll": 9')
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 0}\n{"epoch": 1, "lo')
    (tmp_path / "best.npz").write_bytes(b"PK\x03\x04 not a zip")
    problems = ic.check_folder(str(tmp_path))
    assert len(problems) == 4, problems
    for name in ("config.json", "eval-test-k5.json", "metrics.jsonl", "best.npz"):
        assert any(p.startswith(name) for p in problems), (name, problems)


def test_checkpoint_states_are_compared_bit_for_bit(ic):
    a = {"params": [np.array([1.0, 2.0], np.float32)], "step": 3}
    b = {"params": [np.array([1.0, np.nextafter(np.float32(2), np.float32(3))], np.float32)], "step": 3}
    assert ic.difference(a, a) is None
    assert ic.difference(a, b) == "state/params/0"
    assert ic.difference(a, {**a, "step": 4}) == "state/step (3 vs 4)"
    assert ic.strip({"a": 1, "time_s": 2, "last": {"cpu_s": 3, "loss": 4}}, ic.TIMINGS) == {"a": 1, "last": {"loss": 4}}


@pytest.mark.parametrize("args, words", [
    (["--trials", "0"], ["--trials", "'0'"]),
    (["--only", "train,bogus"], ["--only", "train,bogus"]),
    (["--only", "eval,eval"], ["--only", "eval,eval"]),
    (["--trial", "3"], ["--trial"]),
])
def test_option_mistakes_are_one_line_and_make_nothing(tmp_path, args, words):
    code, stdout, stderr = script(*args, "--out", str(tmp_path / "ic"), timeout=60)
    assert (code, stdout, len(stderr.splitlines())) == (2, "", 1), stderr
    assert stderr.startswith("interrupt_check.py: error: ")
    assert all(word in stderr for word in words)
    assert not (tmp_path / "ic").exists()


def test_an_out_folder_of_other_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    code, stdout, stderr = script("--out", str(tmp_path), timeout=60)
    assert (code, stdout) == (2, "")
    assert stderr == f"interrupt_check.py: error: --out {tmp_path}: not a new or empty folder; choose another\n"
    assert os.listdir(tmp_path) == ["notes.txt"]
