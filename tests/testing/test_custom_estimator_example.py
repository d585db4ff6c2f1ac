"""examples/custom_estimator.py, the worked example of the user guide: a VIMCO written by a user with an
arithmetic-mean leave-one-out baseline passes check_estimator; the same with a baseline that sees its own sample
fails, and the message names a parameter and the size of the bias."""
import importlib.util
import pathlib
import re

import numpy as np
import pytest

from tinydgm.testing import draw_estimates, oracles, sigmoid_belief_net, stats

PATH = pathlib.Path(__file__).resolve().parents[2] / "examples" / "custom_estimator.py"
spec = importlib.util.spec_from_file_location("custom_estimator", PATH)
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)


def test_the_baselines_leave_out_their_own_sample():
    """Row k of the arithmetic baseline is log 1/(K−1) Σ_{j≠k} w_j; the self-seeing one moves when w_k moves."""
    log_w = np.log(np.array([[1.0], [2.0], [4.0]]))
    good = example.ArithmeticVIMCO(3).baselines(log_w)
    np.testing.assert_allclose(np.exp(good[:, 0]), [3.0, 2.5, 1.5])
    moved = log_w.copy()
    moved[0] += 1.0
    assert example.ArithmeticVIMCO(3).baselines(moved)[0] == pytest.approx(good[0])
    assert example.SelfSeeingVIMCO(3).baselines(moved)[0] != pytest.approx(example.SelfSeeingVIMCO(3).baselines(log_w)[0])


def test_the_arithmetic_vimco_passes_and_the_self_seeing_one_fails_naming_the_bias(capsys):
    """main() is what `python examples/custom_estimator.py` runs."""
    report, error = example.main()
    assert report.claim == "unbiased" and len(report.examples) == 3
    assert isinstance(error, stats.StatisticalAssertionError)
    assert re.search(r"vimco-self-seeing's gradients on sigmoid_belief_net.*Worst recognition\.\d\.(weight|bias)"
                     r"\[[\d, ]+\]: estimate .* exact .* SE .* z = .*\(bias .*\)\..*% of ‖exact‖", str(error)), str(error)
    out = capsys.readouterr().out
    assert out.count("passes on") == 3 and "fails, as it should" in out
    assert 'if __name__ == "__main__":\n    main()' in PATH.read_text()


def test_the_self_seeing_bias_is_real():
    """Against the exact gradient of L_3 on one machine, the self-seeing estimator's λ is off by tens of SEs."""
    model, x = sigmoid_belief_net((3, 1, 2), scale=2.0, seed=3), np.array([[1.0, 0.0, 1.0]])
    exact = oracles.gradient(model, oracles.iwae_bound(model, x, 3))
    grads, _ = draw_estimates(example.SelfSeeingVIMCO(3), model, np.tile(x, (100, 1)), 60, np.random.default_rng(0))
    with pytest.raises(stats.StatisticalAssertionError, match="recognition"):
        stats.assert_unbiased(grads, exact)
