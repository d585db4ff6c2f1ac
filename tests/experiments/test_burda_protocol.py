"""`tinydgm train vae --schedule burda` is the protocol of Burda, Grosse & Salakhutdinov 2016, §5.1 and App. D, as
the paper states it: Glorot & Bengio's initialisation, Adam (β1 = 0.9, β2 = 0.999, ε = 1e-4), minibatches of 20,
3^i epochs at learning rate 0.001·10^(−i/7) for i = 0..7 (3,280 epochs), and no early stopping (the `last`
checkpoint is the model); and, as their released code, the decoder's output bias starts at the data's logit."""
import json
import math

import numpy as np

import pytest

from tinydgm import nn, plots
from tinydgm.cli import main
from tinydgm.data import binarized_mnist
from tinydgm.experiments import vae
from tinydgm.optim import learning_rate

STARTS = [(3 ** i - 1) // 2 for i in range(8)]          # the epoch at which rate i starts: 0, 1, 4, 13, 40, 121, 364, 1093


@pytest.mark.parametrize("i, start", list(enumerate(STARTS)))
def test_each_rate_starts_at_its_epoch_and_lasts_3_to_the_i(i, start):
    assert learning_rate("burda", 1e-3, start, 0) == pytest.approx(1e-3 * 10 ** (-i / 7), rel=1e-12)
    last = start + 3 ** i - 1                            # the rate's last epoch
    assert learning_rate("burda", 1e-3, last, 0) == pytest.approx(1e-3 * 10 ** (-i / 7), rel=1e-12)
    if i:
        assert learning_rate("burda", 1e-3, start - 1, 0) == pytest.approx(1e-3 * 10 ** (-(i - 1) / 7), rel=1e-12)
    assert STARTS[-1] + 3 ** 7 == 3280


def test_a_shortened_protocol_run_uses_the_papers_settings(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(plots, "available", lambda: False)
    out = tmp_path / "r"
    assert main(["train", "vae", "--schedule", "burda", "--epochs", "5", "--limit", "60", "--hidden", "8",
                 "--z-dim", "2", "--quiet", "--threads", "1", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["batch_size"], config["adam_eps"], config["epochs"]) == (20, 1e-4, 5)
    model, opt = vae.build(config)
    assert opt.betas == (0.9, 0.999) and opt.eps == 1e-4
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in records] == pytest.approx([1e-3, *[1e-3 * 10 ** (-1 / 7)] * 3, 1e-3 * 10 ** (-2 / 7)])
    last = json.loads((out / "last.json").read_text())["loop"]
    assert last["epoch"] == 5                              # every epoch trained: nothing stops it early
    assert json.loads((out / "summary.json").read_text())["status"] == "done"


def test_the_protocol_starts_as_the_paper_and_the_released_code(tmp_path, monkeypatch):
    """Glorot & Bengio's U(±sqrt(6/(n_in + n_out))) weights and zero biases, but the decoder's output bias at
    logit(mean of the training images), in the run's first checkpoint-to-be (zero epochs trained)."""
    monkeypatch.setattr(plots, "available", lambda: False)
    seen = {}
    monkeypatch.setattr(vae.runs, "fit_and_finish", lambda run, trainer, *a: seen.setdefault("model", trainer.model) and 0)
    assert main(["train", "vae", "--schedule", "burda", "--limit", "60", "--quiet", "--threads", "1",
                 "--out", str(tmp_path / "r")]) == 0
    params = seen["model"].state_dict()
    assert json.loads((tmp_path / "r" / "config.json").read_text())["init"] == "burda"
    for net, sizes in (("encoder", [784, 200, 200, 100]), ("decoder", [50, 200, 200, 784])):
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
            w = params[f"{net}.layers.{i}.weight"]
            assert np.abs(w).max() <= math.sqrt(6 / (n_in + n_out)) < 1.1 * np.abs(w).max()
            if (net, i) != ("decoder", 2):
                assert np.all(params[f"{net}.layers.{i}.bias"] == 0)
    logits = nn.mean_logits(binarized_mnist("train")[:60], np.float32)
    np.testing.assert_array_equal(params["decoder.layers.2.bias"], logits)
    assert len(np.unique(logits)) > 10


def test_a_run_from_before_init_was_an_option_resumes(tmp_path, monkeypatch, capsys):
    """A protocol run started before --init existed (its config has no "init": it began as pytorch) goes on."""
    monkeypatch.setattr(plots, "available", lambda: False)
    base = ["train", "vae", "--limit", "40", "--hidden", "8", "--z-dim", "2", "--quiet", "--threads", "1"]
    assert main([*base, "--schedule", "burda", "--epochs", "2", "--out", str(tmp_path / "r")]) == 0
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    del config["init"]
    (tmp_path / "r" / "config.json").write_text(json.dumps(config))
    assert main(["train", "vae", "--resume", str(tmp_path / "r"), "--init", "burda", "--epochs", "3"]) == 2
    assert "was trained with 'pytorch'" in capsys.readouterr().err   # not as the paper
    assert main(["train", "vae", "--resume", str(tmp_path / "r"), "--epochs", "3", "--quiet", "--threads", "1"]) == 0
    assert json.loads((tmp_path / "r" / "last.json").read_text())["loop"]["epoch"] == 3
    model, run = vae.load(tmp_path / "r", "last")                     # and it loads for tinydgm eval
    assert run.config.get("init", "pytorch") == "pytorch" and model.z_dim == 2


def test_the_protocol_is_one_option_with_the_papers_defaults(tmp_path):
    from tinydgm.cli import parser
    args = parser().parse_args(["train", "vae", "--schedule", "burda", "--out", str(tmp_path / "r")])
    args.given = {"schedule", "out"}
    config = vae.configure(args)
    assert (config["epochs"], config["batch_size"], config["adam_eps"], config["lr"]) == (3280, 20, 1e-4, 1e-3)
    assert config["init"] == "burda"
