"""The shared training loop: resume = uninterrupted, Ctrl-C and non-finite losses stop cleanly."""
import json

import numpy as np
import pytest

from tinydgm import checkpoint
from tinydgm.experiments import runs


class Toy:
    """A 'model' whose epochs consume random numbers: a noisy walk towards zero."""

    def __init__(self, seed=0, fail_at=None, nan_at=None):
        self.w = np.full(3, 5.0)
        self.opt = {"m": np.zeros(3), "t": 0}
        self.rng = np.random.default_rng(seed)
        self.fail_at, self.nan_at = fail_at, nan_at

    def train_epoch(self, epoch, progress):
        if epoch == self.fail_at:
            self.w += 100.0                                  # half-done work that must not be kept
            raise KeyboardInterrupt
        self.opt["t"] += 1
        self.opt["m"] = 0.9 * self.opt["m"] + self.w
        self.w = self.w - 0.1 * self.opt["m"] + 0.1 * self.rng.standard_normal(3)
        loss = float("nan") if epoch == self.nan_at else float((self.w ** 2).sum())
        return {"loss": loss, "progress": progress}

    def validate(self):
        return {"valid_loss": float(np.abs(self.w).sum())}

    def state(self):
        return {"w": self.w, "opt": self.opt, "rng": runs.rng_state(self.rng)}

    def load_state(self, state):
        self.w = state["w"]
        self.opt = {"m": state["opt"]["m"], "t": state["opt"]["t"]}
        runs.set_rng_state(self.rng, state["rng"])


def records(run):
    return [{k: v for k, v in r.items() if k not in ("time_s", "cpu_s")} for r in run.metrics()]


def test_resume_is_bit_for_bit(tmp_path):
    full = runs.Run.create(tmp_path / "full", {"model": "toy"})
    s = runs.fit(full, Toy(), epochs=6, quiet=True)
    assert s["status"] == "done" and s["epochs"] == 6

    part = runs.Run.create(tmp_path / "part", {"model": "toy"})
    s = runs.fit(part, Toy(fail_at=2), epochs=6, quiet=True)
    assert s["status"] == "interrupted" and s["epochs"] == 2
    s = runs.fit(runs.Run.open(part.dir), Toy(seed=99, fail_at=4), epochs=6, quiet=True)
    assert s["epochs"] == 4
    part.log({"epoch": 4, "loss": 0.0})                     # a record written after the checkpoint
    s = runs.fit(runs.Run.open(part.dir), Toy(seed=123), epochs=6, quiet=True)
    assert s["status"] == "done" and s["epochs"] == 6
    assert records(part) == records(full)
    a, _ = checkpoint.load_state(full.path("last"))
    b, _ = checkpoint.load_state(part.path("last"))
    np.testing.assert_array_equal(a["w"], b["w"])
    assert a["rng"] == b["rng"]


def test_best_checkpoint_and_eval_every(tmp_path):
    run = runs.Run.create(tmp_path / "r", {"model": "toy"})
    s = runs.fit(run, Toy(), epochs=5, eval_every=2, quiet=True)
    evaluated = [r["epoch"] for r in run.metrics() if "valid_loss" in r]
    assert evaluated == [1, 3, 4]                           # every 2nd epoch, and the last
    best = min((r["valid_loss"], r["epoch"]) for r in run.metrics() if "valid_loss" in r)
    assert (s["valid_loss"], s["best_epoch"]) == best
    _, loop = checkpoint.load_state(run.path("best"))
    assert loop["best_epoch"] == best[1] and loop["epoch"] == best[1] + 1


def test_nonfinite_stops_cleanly(tmp_path, capsys):
    run = runs.Run.create(tmp_path / "r", {"model": "toy"})
    s = runs.fit(run, Toy(nan_at=3), epochs=6, quiet=True)
    assert s["status"] == "nonfinite" and s["epochs"] == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "non-finite loss (nan) in epoch 4" in err[0] and "last.npz" in err[0]
    state, loop = checkpoint.load_state(run.path("last"))
    assert loop["epoch"] == 3 and np.isfinite(state["w"]).all()
    assert run.finish(s) == 1
    assert json.loads(capsys.readouterr().out)["status"] == "nonfinite"


def test_time_budget(tmp_path):
    run = runs.Run.create(tmp_path / "r", {"model": "toy"})
    s = runs.fit(run, Toy(), minutes=1e-9, quiet=True)
    assert s["status"] == "done" and s["epochs"] == 1 and "valid_loss" in run.metrics()[-1]


class Clock:
    """A fake time module for runs: every clock reads `now`, which a SlowToy's epochs advance."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now

    process_time = perf_counter


class SlowToy(Toy):
    def __init__(self, clock, epoch_s):
        super().__init__()
        self.clock, self.epoch_s = clock, epoch_s

    def train_epoch(self, epoch, progress):
        self.clock.now += self.epoch_s
        return super().train_epoch(epoch, progress)


@pytest.mark.parametrize("clock_kind", ["wall", "cpu"])
@pytest.mark.parametrize("epoch_s, epochs", [(25.0, 2), (20.0, 3), (35.0, 2), (70.0, 1), (11.0, 5)])
def test_a_budget_ends_at_the_epoch_boundary_nearest_to_it(tmp_path, monkeypatch, clock_kind, epoch_s, epochs):
    """One minute of 25-second epochs is 2 epochs (50 s, 10 under) rather than 3 (75 s, 15 over); the last
    epoch is validated; an epoch longer than the budget still runs once."""
    clock = Clock()
    monkeypatch.setattr(runs, "time", clock)
    run = runs.Run.create(tmp_path / "r", {"model": "toy"})
    s = runs.fit(run, SlowToy(clock, epoch_s), minutes=1, clock=clock_kind, quiet=True)
    assert s["epochs"] == epochs and abs(epochs * epoch_s - 60) <= max(epoch_s / 2, epoch_s - 60)
    assert "valid_loss" in run.metrics()[-1]


def test_run_directory_errors(tmp_path):
    runs.Run.create(tmp_path / "r", {"model": "toy", "f": print})   # unserialisable options dropped
    with pytest.raises(runs.RunError, match="already holds a run"):
        runs.Run.create(tmp_path / "r", {"model": "toy", "lr": 0.1})
    with pytest.raises(runs.RunError, match="not a run directory"):
        runs.Run.open(tmp_path / "nothing")
    with pytest.raises(runs.RunError, match="a 'toy' run; expected a 'vae' run"):
        runs.Run.open(tmp_path / "r", model="vae")


def test_cpu_budget(tmp_path):
    run = runs.Run.create(tmp_path / "r", {"model": "toy"})
    s = runs.fit(run, Toy(), minutes=1e-9, clock="cpu", quiet=True)
    assert s["epochs"] == 1 and s["cpu_s"] >= 0


def test_one_process_per_run(tmp_path):
    run = runs.Run.create(tmp_path / "r", {"model": "toy"})
    with run.lock():
        with pytest.raises(runs.RunError, match="another process .* is training this run"):
            runs.fit(runs.Run.open(run.dir), Toy(), epochs=1, quiet=True)
    assert runs.fit(run, Toy(), epochs=1, quiet=True)["status"] == "done"


def test_sigterm_stops_cleanly(tmp_path):
    import os
    import signal

    class Killed(Toy):
        def train_epoch(self, epoch, progress):
            if epoch == 2:
                os.kill(os.getpid(), signal.SIGTERM)
            return super().train_epoch(epoch, progress)
    run = runs.Run.create(tmp_path / "r", {"model": "toy"})
    s = runs.fit(run, Killed(), epochs=5, quiet=True)
    assert s["status"] == "interrupted" and s["epochs"] == 2
