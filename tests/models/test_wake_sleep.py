"""Wake-sleep: the delta rule = the engine's gradient, each phase moves only its own parameters,
exact log p(x), KL and importance weights on a machine small enough to enumerate."""
import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinydgm as td
from tinydgm.models.wake_sleep import by_hand as ws_hand
from tinydgm.models.wake_sleep import exact as ws_exact
from tinydgm.models.wake_sleep import model as ws
from tinydgm.backend import device_rng
from tinydgm.estimators.wake_sleep import reweighted_wake
from tinydgm.testing import assert_bound, assert_consistent, assert_unbiased


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
    log_p, log_q, omega = reweighted_wake(m, x, np.random.default_rng(seed + 2), k)
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


@pytest.mark.parametrize("updates", [("p", "q-wake", "sleep"), ("p", "sleep"), ("q-wake",)])
def test_reweighted_step_by_hand_equals_engine(xp, to_numpy, updates):
    """reweighted_step on the engine and by the delta rule: same draws, same Adam, same parameters after 6 steps,
    the same L_k and sleep values reported (two hidden layers, k = 4)."""
    data = td.backend.asarray(binary(np.random.default_rng(0), (60, 12)))
    models, reported = [], []
    for step in (ws.reweighted_step, ws_hand.reweighted_step_by_hand):
        m = machine((12, 5, 3), 4)
        opt_p, opt_q = td.optim.Adam(m.generative_parameters(), 0.01), td.optim.Adam(m.recognition_parameters(), 0.01)
        rng = device_rng(np.random.default_rng(5))
        reported.append([step(m, data[i:i + 10], opt_p, opt_q, rng, 4, updates) for i in range(0, 60, 10)])
        models.append({n: to_numpy(p) for n, p in m.named_parameters()})
    for engine, hand in zip(*reported):
        assert engine.keys() == hand.keys()
        np.testing.assert_allclose([engine[k] for k in engine], [hand[k] for k in engine], rtol=1e-9)
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
    td.estimators.ascend(m.wake_phase(x, rng), opt_p)
    assert all(np.array_equal(before_q[n], v) for n, v in lam().items())
    assert all(not np.array_equal(before_p[n], v) for n, v in theta().items())
    before_p, before_q = theta(), lam()
    td.estimators.ascend(m.sleep_phase(8, rng), opt_q)
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
    xs = ws_exact.all_states(6)
    assert abs(np.logaddexp.reduce(ws_exact.exact_log_px(m, xs)) - 0) < 1e-10        # Σ_x p(x) = 1
    m2 = machine((4, 2, 3), 3, spread=1.5)                                       # and with two hidden layers
    assert abs(np.logaddexp.reduce(ws_exact.exact_log_px(m2, ws_exact.all_states(4)))) < 1e-10


def test_importance_sampled_log_px_converges_and_is_a_lower_bound():
    """On 6 visible, 3 hidden units (all 2^9 states enumerable): E[L_4] <= E[L_200] <= E[L_2000] <= log p(x)
    (assert_bound per image: an excess or a fall of 0.5 nats is caught), and L_k -> log p(x): E[L_2000] is within
    0.4 nats of it (assert_bound on -L_2000) and the bias falls with k, to at most a tenth of L_4's at k = 2000
    (assert_consistent); each call with a false-alarm rate of 1e-4."""
    m = machine((6, 3), 7, spread=1.5)
    x = np.array([[1, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=np.float64)
    log_px = ws_exact.exact_log_px(m, x)
    rng = np.random.default_rng(0)
    with td.no_grad():
        l4 = m.iwae_bound(np.tile(x, (4000, 1)), 4, rng).data.reshape(4000, len(x))        # 4000 L_4 per image
        log_w = m.log_weights(x, m.sample_q(x, rng, 200000))                               # 200,000 weights per image
    bounds = {4: l4, **{k: np.logaddexp.reduce(log_w.reshape(-1, k, len(x)), axis=1) - np.log(k) for k in (200, 2000)}}
    for i in range(len(x)):
        assert_bound({k: l[:, i] for k, l in bounds.items()}, log_px[i], alpha=1e-4, detect=0.5,
                     what=f"L_k of image {i}")
        assert_bound({2000: -bounds[2000][:, i]}, -(log_px[i] - 0.4), alpha=1e-4, detect=0.4,
                     what=f"-L_2000 (L_2000 within 0.4 nats of log p(x)), image {i}")
    assert np.all(l4.mean(0) < log_px)                          # q is not the posterior: a strict gap here
    assert_consistent(bounds, log_px, alpha=1e-4, detect=0.15, shrink=0.1, what="L_k")


def test_sleep_phase_lowers_exact_kl_on_a_fixed_p():
    """Sleep minimises E_p(x) KL(p(h|x) ‖ q(h|x)) + const: measure it exactly before and after, θ fixed."""
    m = machine((6, 3), 11, spread=2.0)
    xs = ws_exact.all_states(6)

    def expected_kl():
        return float((np.exp(ws_exact.exact_log_px(m, xs)) * ws_exact.exact_kl_posterior(m, xs)).sum())

    theta = {n: v for n, v in m.state_dict().items() if not n.startswith("recognition")}
    before = expected_kl()
    opt_q, rng = td.optim.Adam(m.recognition_parameters(), 0.05), np.random.default_rng(0)
    for _ in range(300):
        td.estimators.ascend(m.sleep_phase(50, rng), opt_q)
    after = expected_kl()
    assert after < 0.6 * before, (before, after)
    assert all(np.array_equal(theta[n], v) for n, v in m.state_dict().items() if n in theta)


def test_log_weights_on_arrays_equal_the_engine():
    m = machine((20, 6, 4), 2, spread=3.0)
    x = binary(np.random.default_rng(0), (5, 20))
    hs = m.sample_q(x, np.random.default_rng(1), 7)
    engine = (m.log_joint(x, hs) - m.log_q(hs, x)).data
    np.testing.assert_allclose(m.log_weights(x, hs), engine, rtol=1e-6)       # x shared by the k samples: fast path
    tiled = np.broadcast_to(x, (7, 5, 20)).copy()                              # one x per sample: the general path
    np.testing.assert_allclose(m.log_weights(tiled, hs), m.log_weights(x, hs), rtol=1e-10)
    np.testing.assert_allclose(m.log_weights(x, hs, m.log_q(hs, x).data), engine, rtol=1e-6)   # log q given
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


# ---------------------------------------------------------------- reweighted wake-sleep against enumeration
# On 6 visible and 3 hidden units every hidden state can be listed, so the importance weights, the step and the
# gradient RWS estimates are all recomputed here from exact tables of log p(x, h) and log q(h|x), written in
# plain NumPy (not through the code under test), for the same draws h_k the code made.

X6 = np.array([[1, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1], [1, 1, 0, 0, 0, 1]], dtype=np.float64)


def exact_tables(m, x):
    """log p(x_b, h) and log q(h|x_b) for every state h of a one-hidden-layer machine: (2^n, B), row Σ_j h_j 2^j."""
    a, states = m.arrays(), ws_exact.all_states(m.layers[1])

    def log_bernoulli(logits, s):                               # Σ_i s_i log σ(a_i) + (1 − s_i) log σ(−a_i)
        return (-s * np.logaddexp(0, -logits) - (1 - s) * np.logaddexp(0, logits)).sum(-1)

    log_prior = log_bernoulli(a["prior"], states)[:, None]
    log_px_h = log_bernoulli((states @ a["generative.0.weight"] + a["generative.0.bias"])[:, None, :], x)
    log_q = log_bernoulli(x @ a["recognition.0.weight"] + a["recognition.0.bias"], states[:, None, :])
    return log_prior + log_px_h, log_q


def state_index(h):
    """Each binary state's row in the tables: Σ_j h_j 2^j."""
    return (h @ 2 ** np.arange(h.shape[-1])).astype(int)


def exact_log_weights(m, x, hs):
    """log p(x, h_k) − log q(h_k|x) for the draws hs = [h_1] (k, B, n), looked up in the exact tables."""
    log_p, log_q = exact_tables(m, x)
    i, b = state_index(hs[0]), np.arange(len(x))
    return log_p[i, b] - log_q[i, b]


def softmax0(log_w):
    w = np.exp(log_w - log_w.max(0))
    return w / w.sum(0)


def test_exact_tables_are_the_models_densities():
    """The NumPy tables agree with exact_log_joint_table, and p(x, ·) and q(·|x) are normalised."""
    m = machine((6, 3), 5, spread=1.0)
    log_p, log_q = exact_tables(m, X6)
    table, _ = ws_exact.exact_log_joint_table(m, X6)
    np.testing.assert_allclose(log_p, table, rtol=1e-12)
    np.testing.assert_allclose(np.logaddexp.reduce(log_q, axis=0), 0, atol=1e-12)          # Σ_h q(h|x) = 1
    all_x = ws_exact.all_states(6)
    assert abs(np.logaddexp.reduce(exact_tables(m, all_x)[0], axis=None)) < 1e-12         # Σ_x Σ_h p(x, h) = 1


def test_reweighted_wake_weights_are_p_over_q_from_the_exact_tables():
    """ω_k = w_k / Σ_j w_j, w_k = p(x, h_k) / q(h_k|x) (Bornschein & Bengio 2015, eq. 11), for the code's own draws;
    log p and log q it returns are the table entries, and L_k (iwae_bound, same draws) = log 1/k Σ_k w_k."""
    m, k = machine((6, 3), 5, spread=1.0), 7
    log_p, log_q, omega = reweighted_wake(m, X6, np.random.default_rng(3), k)
    hs = m.sample_q(X6, np.random.default_rng(3), k)                    # replay: the same draws h_1..h_k
    tab_p, tab_q = exact_tables(m, X6)
    i, b = state_index(hs[0]), np.arange(len(X6))
    np.testing.assert_allclose(log_p.data, tab_p[i, b], rtol=1e-12)
    np.testing.assert_allclose(log_q.data, tab_q[i, b], rtol=1e-12)
    log_w = tab_p[i, b] - tab_q[i, b]
    assert np.ptp(log_w, axis=0).min() > 0.5                           # the weights differ: ω is not uniform
    np.testing.assert_allclose(omega, softmax0(log_w), rtol=1e-12, atol=1e-14)
    l_k = np.logaddexp.reduce(log_w, axis=0) - np.log(k)
    for mode in (contextlib.nullcontext, td.no_grad):                 # the engine's path and the array path
        with mode():
            np.testing.assert_allclose(m.iwae_bound(X6, k, np.random.default_rng(3)).data, l_k, rtol=1e-12)


@pytest.mark.parametrize("updates", [("p", "q-wake", "sleep"), ("p", "sleep")])
def test_reweighted_step_moves_by_the_exact_weighted_delta_rule(updates):
    """One reweighted_step with SGD(lr=1) on θ and on λ moves each parameter by the delta rule's gradients for the
    same draws (the step draws h_1..h_k ~ q first, then the dream): the p-update and q-wake update weighted by ω
    from the exact tables, plus the sleep update; and it reports L_k of those draws."""
    m, k, seed = machine((6, 3), 5, spread=1.0), 4, 8
    params = {n: v.copy() for n, v in m.arrays().items()}
    replay = np.random.default_rng(seed)
    hs = m.sample_q(X6, replay, k)
    x_dream, hs_dream = m.dream(len(X6), replay)
    log_w = exact_log_weights(m, X6, hs)
    omega = softmax0(log_w)
    expected, _ = ws_hand.wake_gradients_by_hand(params, X6, hs, omega)
    sleep, _ = ws_hand.sleep_gradients_by_hand(params, x_dream, hs_dream)
    if "q-wake" in updates:
        q_wake, _ = ws_hand.recognition_gradients_by_hand(params, X6, hs, omega)
        sleep = {n: g + q_wake[n] for n, g in sleep.items()}
    expected.update(sleep)
    opt_p, opt_q = td.optim.SGD(m.generative_parameters(), lr=1.0), td.optim.SGD(m.recognition_parameters(), lr=1.0)
    out = ws.reweighted_step(m, X6, opt_p, opt_q, np.random.default_rng(seed), k, updates)
    for n, v in m.arrays().items():
        np.testing.assert_allclose(v - params[n], expected[n], rtol=1e-10, atol=1e-12, err_msg=n)
    np.testing.assert_allclose(out["bound"], (np.logaddexp.reduce(log_w, axis=0) - np.log(k)).mean(), rtol=1e-12)


def test_reweighted_step_ascends_its_objectives_on_a_fixed_batch():
    """At a small step size the θ-step raises Σ_k ω_k log p(x, h_k) and the λ-step raises mean log q(h̃|x̃), both
    for the step's own samples and weights (replayed), measured in the exact tables and on the engine."""
    m, k, seed, lr = machine((6, 3), 5, spread=1.0), 4, 8, 1e-3
    replay = np.random.default_rng(seed)
    hs = m.sample_q(X6, replay, k)
    x_dream, hs_dream = m.dream(len(X6), replay)
    omega = softmax0(exact_log_weights(m, X6, hs))
    i, b = state_index(hs[0]), np.arange(len(X6))

    def objectives():
        with td.no_grad():
            sleep = float(td.mean(m.log_q(hs_dream, x_dream)).data)
        return (omega * exact_tables(m, X6)[0][i, b]).sum() / len(X6), sleep

    before = objectives()
    opt_p, opt_q = td.optim.SGD(m.generative_parameters(), lr=lr), td.optim.SGD(m.recognition_parameters(), lr=lr)
    ws.reweighted_step(m, X6, opt_p, opt_q, np.random.default_rng(seed), k, ("p", "sleep"))
    after = objectives()
    assert after[0] > before[0] + 1e-6 and after[1] > before[1] + 1e-6, (before, after)


def test_rws_p_update_tends_to_the_exact_gradient_of_log_px():
    """The p-update Σ_k ω_k ∇θ log p(x, h_k) (one reweighted_step, updates=p, SGD lr=1: Δθ) estimates
    ∇θ log p(x) = Σ_h p(h|x) ∇θ log p(x, h), here by the engine through logsumexp of the exact table.
    At k = 1000 the mean over 40 seeds is that gradient (assert_unbiased, false-alarm rate 1e-4; the O(1/k) bias of
    self-normalised weights is far below its SE; a bias of 25% of ‖exact‖ is caught), the bias falls from k = 2 to
    k = 1000 (assert_consistent: with 40 seeds only a bias of 150% of ‖exact‖ that does not fall is sure to be
    seen), and the squared error at k = 1000 is under a tenth of that at k = 2 (averaged over the seeds)."""
    m = machine((6, 3), 5, spread=1.0)
    theta = [n for n, _ in m.named_parameters() if not n.startswith("recognition")]
    td.mean(td.logsumexp(m.log_joint(X6, [ws_exact.all_states(3)[:, None, :]]), axis=0)).backward()
    exact = np.concatenate([p.grad.ravel() for n, p in m.named_parameters() if n in theta])
    m.zero_grad()
    init = m.state_dict()

    def p_update(k, seed):
        m.load_state_dict(init)
        opt_p, opt_q = td.optim.SGD(m.generative_parameters(), lr=1.0), td.optim.SGD(m.recognition_parameters(), lr=1.0)
        ws.reweighted_step(m, X6, opt_p, opt_q, np.random.default_rng(seed), k, ("p",))
        return np.concatenate([(m.state_dict()[n] - init[n]).ravel() for n in theta])

    est = {k: np.stack([p_update(k, seed) for seed in range(40)]) for k in (2, 1000)}
    err = {k: ((e - exact) ** 2).sum(1).mean() for k, e in est.items()}
    assert_unbiased(est[1000], exact, alpha=1e-4, detect=0.25, what="the p-update at k = 1000")
    assert_consistent(est, exact, alpha=1e-4, detect=1.5, shrink=0.9, what="the p-update")
    assert err[1000] < 0.1 * err[2], err


# ---------------------------------------------------------------- the commands
