"""Wake-sleep: the delta rule = the engine's gradient, each phase moves only its own parameters,
exact log p(x) and KL on a machine small enough to enumerate, and the train/eval/sample commands."""
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinydgm as td
from tinydgm.cli import main
from tinydgm.experiments import wake_sleep as ws_run
from tinydgm.models.wake_sleep import by_hand as ws_hand
from tinydgm.models.wake_sleep import exact
from tinydgm.models.wake_sleep import model as ws
from tinydgm.backend import device_rng


def machine(layers, seed, spread=0.5):
    """A float64 machine with parameters moved away from the init (so that σ is not near 1/2 everywhere)."""
    m = ws.HelmholtzMachine(layers, rng=np.random.default_rng(seed), dtype=np.float64)
    rng = np.random.default_rng(seed + 1)
    for p in m.parameters():
        p.data += td.backend.asarray(spread * rng.standard_normal(p.shape))
    return m


def binary(rng, shape):
    return (rng.random(shape) < 0.4).astype(np.float64)


def grads(model, names):
    return {n: p.grad for n, p in model.named_parameters() if n in names}


layer_sizes = st.lists(st.integers(1, 6), min_size=2, max_size=4)


# ---------------------------------------------------------------- the delta rule = the engine

@settings(max_examples=25)
@given(layers=layer_sizes, batch=st.integers(1, 4), seed=st.integers(0, 2 ** 16))
def test_delta_rule_equals_engine_wake_and_sleep(layers, batch, seed):
    m = machine(layers, seed)
    rng = np.random.default_rng(seed)
    x = binary(rng, (batch, layers[0]))
    hs = [binary(rng, (batch, n)) for n in layers[1:]]          # any binary states, not only q's
    wake = td.mean(m.log_joint(x, hs))
    wake.backward()
    by_hand, value = ws_hand.wake_gradients_by_hand(m.arrays(), x, hs)
    np.testing.assert_allclose(value, wake.item(), rtol=1e-12)
    assert set(by_hand) == {n for n, _ in m.named_parameters() if not n.startswith("recognition")}
    for n, p in m.named_parameters():
        if n in by_hand:
            np.testing.assert_allclose(p.grad, by_hand[n], rtol=1e-10, atol=1e-12, err_msg=n)
        else:
            assert p.grad is None, f"wake objective gave {n} a gradient"
    m.zero_grad()
    sleep = td.mean(m.log_q(hs, x))
    sleep.backward()
    by_hand, value = ws_hand.sleep_gradients_by_hand(m.arrays(), x, hs)
    np.testing.assert_allclose(value, sleep.item(), rtol=1e-12)
    for n, p in m.named_parameters():
        if n in by_hand:
            np.testing.assert_allclose(p.grad, by_hand[n], rtol=1e-10, atol=1e-12, err_msg=n)
        else:
            assert p.grad is None, f"sleep objective gave {n} a gradient"


@settings(max_examples=15)
@given(layers=layer_sizes, batch=st.integers(1, 4), k=st.integers(1, 4), seed=st.integers(0, 2 ** 16))
def test_delta_rule_equals_engine_reweighted(layers, batch, k, seed):
    """RWS p-update and q-wake update: Σ_k ω_k ∇ log p(x, h_k) and Σ_k ω_k ∇ log q(h_k|x), k samples from q."""
    m = machine(layers, seed)
    x = binary(np.random.default_rng(seed), (batch, layers[0]))
    log_p, log_q, omega = m.reweighted_wake(x, np.random.default_rng(seed + 2), k)
    hs = m.sample_q(x, np.random.default_rng(seed + 2), k)      # the same draws
    np.testing.assert_allclose(omega.sum(0), 1, rtol=1e-12)
    p_objective, q_objective = td.sum(log_p * omega) / batch, td.sum(log_q * omega) / batch
    (p_objective + q_objective).backward()
    g_p, p_value = ws_hand.wake_gradients_by_hand(m.arrays(), x, hs, omega)
    g_q, q_value = ws_hand.recognition_gradients_by_hand(m.arrays(), x, hs, omega)
    np.testing.assert_allclose([p_value, q_value], [p_objective.item(), q_objective.item()], rtol=1e-12)
    expected = {**g_p, **g_q}
    for n, p in m.named_parameters():
        np.testing.assert_allclose(p.grad, expected[n], rtol=1e-10, atol=1e-12, err_msg=n)


def test_engine_step_equals_step_by_hand(xp, to_numpy):
    """Same init, same seed, on each backend: wake_sleep_step on the engine and by the delta rule give the same
    parameters and report the same wake and sleep objectives."""
    data = td.backend.asarray(binary(np.random.default_rng(0), (60, 12)))
    models, reported = [], []
    for step in (ws.wake_sleep_step, ws_hand.wake_sleep_step_by_hand):
        m = machine((12, 5, 3), 4)
        opt_p, opt_q = td.optim.Adam(m.generative_parameters(), 0.01), td.optim.Adam(m.recognition_parameters(), 0.01)
        rng = device_rng(np.random.default_rng(5))
        reported.append([step(m, data[i:i + 10], opt_p, opt_q, rng) for i in range(0, 60, 10)])
        models.append({n: to_numpy(p) for n, p in m.named_parameters()})
    for engine, hand in zip(*reported):
        np.testing.assert_allclose([engine["wake"], engine["sleep"]], [hand["wake"], hand["sleep"]], rtol=1e-9)
    for n in models[0]:
        np.testing.assert_allclose(models[0][n], models[1][n], rtol=1e-9, atol=1e-12, err_msg=n)


# ---------------------------------------------------------------- each phase moves only its own parameters

def test_wake_moves_only_theta_and_sleep_only_lambda():
    m = machine((10, 4, 3), 0)
    opt_p, opt_q = td.optim.Adam(m.generative_parameters(), 0.1), td.optim.Adam(m.recognition_parameters(), 0.1)
    x = binary(np.random.default_rng(1), (8, 10))
    rng = np.random.default_rng(2)
    theta = lambda: {n: v for n, v in m.state_dict().items() if not n.startswith("recognition")}  # noqa: E731
    lam = lambda: {n: v for n, v in m.state_dict().items() if n.startswith("recognition")}  # noqa: E731
    before_p, before_q = theta(), lam()
    ws._ascend(m.wake_phase(x, rng), opt_p)
    assert all(np.array_equal(before_q[n], v) for n, v in lam().items())
    assert all(not np.array_equal(before_p[n], v) for n, v in theta().items())
    before_p, before_q = theta(), lam()
    ws._ascend(m.sleep_phase(8, rng), opt_q)
    assert all(np.array_equal(before_p[n], v) for n, v in theta().items())
    assert all(not np.array_equal(before_q[n], v) for n, v in lam().items())


@pytest.mark.parametrize("updates,moves", [(("p",), "theta"), (("q-wake",), "lambda"), (("sleep",), "lambda"),
                                           (("p", "q-wake", "sleep"), "both")])
def test_reweighted_updates_move_their_own_parameters(updates, moves):
    m = machine((10, 4, 3), 0)
    opt_p, opt_q = td.optim.Adam(m.generative_parameters(), 0.1), td.optim.Adam(m.recognition_parameters(), 0.1)
    before = m.state_dict()
    out = ws.reweighted_step(m, binary(np.random.default_rng(1), (8, 10)), opt_p, opt_q, np.random.default_rng(2), 3, updates)
    assert np.isfinite(out["bound"])
    for n, v in m.state_dict().items():
        own = "lambda" if n.startswith("recognition") else "theta"
        assert np.array_equal(before[n], v) != (moves in (own, "both")), n


# ---------------------------------------------------------------- exact answers on a tiny machine

def test_exact_log_px_is_normalised():
    m = machine((6, 3), 3, spread=1.5)
    xs = exact.all_states(6)
    assert abs(np.logaddexp.reduce(exact.exact_log_px(m, xs)) - 0) < 1e-10        # Σ_x p(x) = 1
    m2 = machine((4, 2, 3), 3, spread=1.5)                                       # and with two hidden layers
    assert abs(np.logaddexp.reduce(exact.exact_log_px(m2, exact.all_states(4)))) < 1e-10


def test_importance_sampled_log_px_converges_and_is_a_lower_bound():
    """On 6 visible, 3 hidden units (all 2^9 states enumerable): E[L_k] <= log p(x), and L_k -> log p(x)."""
    m = machine((6, 3), 7, spread=1.5)
    x = np.array([[1, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=np.float64)
    log_px = exact.exact_log_px(m, x)
    rng = np.random.default_rng(0)
    with td.no_grad():
        # 4000 independent L_4 per image: their mean is below log p(x) by more than its standard error allows
        l4 = np.stack([m.iwae_bound(x, 4, rng).data for _ in range(4000)])
        # one L_k with k = 200,000: within 4 standard errors (delta method: sd(w) / (sqrt(k) mean(w))) of log p(x)
        hs = m.sample_q(x, rng, 200000)
        log_w = m.log_weights(x, hs)
    se4 = l4.std(0) / np.sqrt(len(l4))
    assert np.all(l4.mean(0) <= log_px + 3 * se4)
    assert np.all(l4.mean(0) < log_px)                          # q is not the posterior: a strict gap here
    w = np.exp(log_w - log_px)
    l_big = np.log(w.mean(0)) + log_px
    se_big = w.std(0) / (np.sqrt(len(w)) * w.mean(0))
    assert np.all(np.abs(l_big - log_px) <= 4 * se_big + 1e-9), (l_big, log_px, se_big)
    assert np.all(se_big < 0.1)                                 # and that is close: it converges


def test_sleep_phase_lowers_exact_kl_on_a_fixed_p():
    """Sleep minimises E_p(x) KL(p(h|x) ‖ q(h|x)) + const: measure it exactly before and after, θ fixed."""
    m = machine((6, 3), 11, spread=2.0)
    xs = exact.all_states(6)

    def expected_kl():
        return float((np.exp(exact.exact_log_px(m, xs)) * exact.exact_kl_posterior(m, xs)).sum())

    theta = {n: v for n, v in m.state_dict().items() if not n.startswith("recognition")}
    before = expected_kl()
    opt_q, rng = td.optim.Adam(m.recognition_parameters(), 0.05), np.random.default_rng(0)
    for _ in range(300):
        ws._ascend(m.sleep_phase(50, rng), opt_q)
    after = expected_kl()
    assert after < 0.6 * before, (before, after)
    assert all(np.array_equal(theta[n], v) for n, v in m.state_dict().items() if n in theta)


def test_log_weights_on_arrays_equal_the_engine():
    m = machine((20, 6, 4), 2, spread=3.0)
    x = binary(np.random.default_rng(0), (5, 20))
    hs = m.sample_q(x, np.random.default_rng(1), 7)
    engine = (m.log_joint(x, hs) - m.log_q(hs, x)).data
    np.testing.assert_allclose(m.log_weights(x, hs), engine, rtol=1e-6)
    big = np.array([[100.0, -100, 3, -3]])                      # the overflow guard
    for s in ([[1.0, 0, 1, 0]], [[0.0, 1, 0, 1]]):
        np.testing.assert_allclose(ws.log_bernoulli_sum(big, np.array(s)),
                                   td.sum(td.bernoulli_log_prob(big, np.array(s)), axis=-1).data, rtol=1e-12)


def test_float32_samples_are_binary_and_fixed():
    m = ws.HelmholtzMachine((784, 20, 10), rng=0)
    x = (np.random.default_rng(0).random((3, 784)) < 0.3).astype(np.float32)
    hs = m.sample_q(x, np.random.default_rng(1), k=5)
    xd, hd = m.dream(4, np.random.default_rng(2))
    for h in (*hs, xd, *hd):
        assert h.dtype == np.float32 and set(np.unique(h)) <= {0.0, 1.0}
        assert not isinstance(h, td.Tensor)
    assert [h.shape for h in hs] == [(5, 3, 20), (5, 3, 10)] and xd.shape == (4, 784)


# ---------------------------------------------------------------- the commands

def test_train_eval_sample_resume(tmp_path, capsys):
    out = str(tmp_path / "run")
    args = ["train", "wake-sleep", "--layers", "8,4", "--epochs", "1", "--limit", "100", "--batch-size", "20",
            "--out", out, "--quiet"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "done" and summary["epochs"] == 1 and np.isfinite(summary["valid_bound"])
    assert main(["train", "wake-sleep", "--resume", out, "--quiet"]) == 0     # already done: nothing to do
    capsys.readouterr()
    assert main(["eval", out, "--k", "10", "--limit", "20", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["k"] == 10 and result["n"] == 20 and result["test_nll"] <= -result["test_elbo"] + 1.0
    assert main(["sample", out, "--n", "10"]) == 0
    assert os.path.isfile(json.loads(capsys.readouterr().out)["dreams"])
    out2 = str(tmp_path / "rws")
    assert main(["train", "wake-sleep", "--layers", "6", "--reweighted", "--k", "3", "--updates", "p,q-wake",
                 "--epochs", "1", "--limit", "60", "--out", out2, "--quiet"]) == 0


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
    assert "a gap at image 3000 (eval-test-k2-from7000-n3000.json starts at 7000)" in err and "Traceback" not in err
    with open(os.path.join(out, "eval-test-k2-from3000-n4000.json"), "w") as f:
        f.write('{"start": 3000, "n"')                                          # a truncated shard
    assert main(["eval", out, "--k", "2", "--combine"]) == 2
    err = capsys.readouterr().err
    assert "eval-test-k2-from3000-n4000.json: not a shard" in err and "Traceback" not in err
    assert main(["eval", out, "--k", "2", "--combine", "--limit", "5"]) == 2
    assert "give it no --start or --limit" in capsys.readouterr().err


@pytest.mark.parametrize("bad,message", [(["--layers", "a,b"], "--layers"), (["--layers", "0"], "--layers"),
                                         (["--updates", "p,dream"], "--updates"), (["--k", "0"], "--k")])
def test_bad_options_are_one_line_errors(tmp_path, capsys, bad, message):
    assert main(["train", "wake-sleep", *bad, "--out", str(tmp_path / "x"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinydgm: error:") and message in err and "Traceback" not in err


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
    with pytest.raises(SystemExit):
        main(["train", model, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"hold lr {HOLD * 100:.0f}% of the budget" in help_text
    assert learning_rate("anneal", 1.0, 0, HOLD - 1e-9) == 1.0 > learning_rate("anneal", 1.0, 0, HOLD + 1e-3)
