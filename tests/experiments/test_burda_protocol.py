"""`tinydgm train vae --schedule burda` is the protocol of Burda, Grosse & Salakhutdinov 2016, §5.1 and App. D, as
the paper states it: Adam (β1 = 0.9, β2 = 0.999, ε = 1e-4), minibatches of 20, 3^i epochs at learning rate
0.001·10^(−i/7) for i = 0..7 (3,280 epochs), and no early stopping (the `last` checkpoint is the model)."""
import json

import pytest

from tinydgm import plots
from tinydgm.cli import main
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


def test_the_protocol_is_one_option_with_the_papers_defaults(tmp_path):
    from tinydgm.cli import parser
    args = parser().parse_args(["train", "vae", "--schedule", "burda", "--out", str(tmp_path / "r")])
    args.given = {"schedule", "out"}
    config = vae.configure(args)
    assert (config["epochs"], config["batch_size"], config["adam_eps"], config["lr"]) == (3280, 20, 1e-4, 1e-3)
