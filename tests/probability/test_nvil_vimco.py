"""NVIL's and VIMCO's estimators on given arrays: each gradient is the paper's formula, computed here
independently (plain NumPy loops); the running statistics follow their recurrence; NVIL's state survives
a state_dict round trip.  Their unbiasedness on a model is tested in tests/models/test_sbn_estimators.py."""
import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st

import tinydgm as td
from tinydgm.errors import CheckpointError
from tinydgm.estimators import NVIL, local_signals, vimco_surrogate


def t64(a, grad=False):
    return td.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def host(a):
    return td.backend.to_numpy(a.data if isinstance(a, td.Tensor) else a).astype(np.float64)


# =============================================================================================
# VIMCO
# =============================================================================================

def vimco_signals_by_loops(log_w):
    """L̂ − L̂_{-k} for each k (one column), from the definition: w_k replaced by the geometric mean of the others."""
    k = len(log_w)
    w = np.exp(log_w)
    bound = np.log(w.mean())
    out = np.empty(k)
    for j in range(k):
        others = [i for i in range(k) if i != j]
        geometric = np.exp(np.mean(log_w[others]))
        out[j] = bound - np.log((w[others].sum() + geometric) / k)
    return out


@settings(max_examples=25)
@given(k=st.integers(2, 7), batch=st.integers(1, 3), seed=st.integers(0, 1000), spread=st.sampled_from([0.1, 3.0, 20.0]))
def test_vimco_gradient_is_the_leave_one_out_formula(xp, k, batch, seed, spread):
    """d surrogate / d log q_k = L̂ − L̂_{-k} and d surrogate / d log w_k = w̃_k (Mnih & Rezende 2016, eq. 10)."""
    log_w = np.random.default_rng(seed).standard_normal((k, batch)) * spread - 50
    lw, lq = t64(log_w, grad=True), t64(np.zeros((k, batch)), grad=True)
    out = vimco_surrogate(lw, lq)
    assert out.shape == ()
    out.backward()
    for b in range(batch):
        np.testing.assert_allclose(host(lq.grad)[:, b], vimco_signals_by_loops(log_w[:, b]), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(host(lw.grad)[:, b], scipy.special.softmax(log_w[:, b]), rtol=1e-10, atol=1e-14)


def test_vimco_signals_are_finite_for_far_apart_weights(xp):
    log_w = t64([[-1e4], [0.0], [-3.0]])
    lq = t64(np.zeros((3, 1)), grad=True)
    vimco_surrogate(log_w, lq).backward()
    assert np.all(np.isfinite(host(lq.grad)))
    assert host(lq.grad)[1, 0] > 1                   # the dominant sample's signal: its removal costs the bound much


def test_vimco_needs_two_samples(xp):
    with pytest.raises(ValueError, match="K >= 2"):
        vimco_surrogate(t64(np.zeros((1, 3))), t64(np.zeros((1, 3))))


# =============================================================================================
# NVIL
# =============================================================================================

def test_local_signals_drop_the_terms_below_each_layer():
    """ℓ_l = log p(h_{l-1}, ..., h_L) − log q(h_l, ..., h_L | h_{l-1}) (Mnih & Gregor 2014, §3.3), for L = 1, 2, 3."""
    rng = np.random.default_rng(0)
    for L in (1, 2, 3):
        p = [rng.standard_normal(4) for _ in range(L + 1)]       # log p(h_0|h_1), ..., log p(h_{L-1}|h_L), log p(h_L)
        q = [rng.standard_normal(4) for _ in range(L)]           # log q(h_1|h_0), ..., log q(h_L|h_{L-1})
        got = local_signals(p, q)
        assert len(got) == L
        for l in range(1, L + 1):
            expected = sum(p[j] for j in range(l - 1, L + 1)) - sum(q[j - 1] for j in range(l, L + 1))
            np.testing.assert_allclose(got[l - 1], expected, rtol=1e-12)
        np.testing.assert_allclose(got[0], sum(p) - sum(q), rtol=1e-12)
    with pytest.raises(ValueError, match="one more p-term"):
        local_signals(p, p)


def nvil_case(seed=0, layers=(5, 3), batch=6):
    rng = np.random.default_rng(seed)
    nvil = NVIL(layers, hidden=4, rng=seed, dtype=np.float64)
    signals = [rng.standard_normal(batch) * 5 - 30 for _ in layers]
    inputs = [(rng.random((batch, n)) < 0.5).astype(np.float64) for n in layers]
    return nvil, signals, inputs


def test_nvil_surrogate_gradient_is_the_centred_scaled_signal(xp):
    """d surrogate / d log q_l = ℓ̂_l / B, ℓ̂_l = (ℓ_l − b_l(h_{l-1}) − c_l) / max(1, √v_l); the baselines' loss is
    mean (ℓ_l − c_l − b_l)² / (2 max(1, √v_l)); with update=False nothing changes."""
    nvil, signals, inputs = nvil_case()
    nvil.c[:], nvil.v[:] = [-28.0, -31.0], [9.0, 0.25]          # scales 3 and 1
    log_q = [t64(np.zeros(6), grad=True) for _ in signals]
    terms = nvil.surrogate(signals, log_q, inputs, update=False)
    terms.surrogate.backward()
    expected_loss = 0
    for l, (s, h, lq) in enumerate(zip(signals, inputs, log_q)):
        b = host(nvil.baselines[l](t64(h)))[:, 0]
        scale = max(1.0, np.sqrt(nvil.v[l]))
        np.testing.assert_allclose(host(lq.grad), (s - b - nvil.c[l]) / scale / 6, rtol=1e-10)
        expected_loss += np.mean((s - nvil.c[l] - b) ** 2) / (2 * scale)
    assert terms.baseline_loss.item() == pytest.approx(expected_loss, rel=1e-12)
    assert nvil.steps == 0 and list(nvil.c) == [-28.0, -31.0] and list(nvil.v) == [9.0, 0.25]
    # the baselines' gradient: −mean ℓ̂_l ∇ψ b_l  (Alg. 1), here on the output bias of each baseline: −mean ℓ̂_l
    terms.baseline_loss.backward()
    for l, (s, h) in enumerate(zip(signals, inputs)):
        b = host(nvil.baselines[l](t64(h)))[:, 0]
        hat = (s - b - nvil.c[l]) / max(1.0, np.sqrt(nvil.v[l]))
        np.testing.assert_allclose(host(nvil.baselines[l].layers[-1].bias.grad), [-hat.mean()], rtol=1e-10)


def test_nvil_running_statistics_follow_their_recurrence(xp):
    """The first batch starts c, v at its own mean and variance of ℓ − b; later batches are used with the statistics
    before them, then folded in: c <- α c + (1 − α) mean, v <- α v + (1 − α) var."""
    nvil, signals, inputs = nvil_case()
    residual = lambda sig: [s - host(nvil.baselines[l](t64(h)))[:, 0] for l, (s, h) in enumerate(zip(sig, inputs))]  # noqa: E731
    r0 = residual(signals)
    log_q = [t64(np.zeros(6), grad=True) for _ in signals]
    nvil.surrogate(signals, log_q, inputs).surrogate.backward()
    c0 = [0.8 * r.mean() + 0.2 * r.mean() for r in r0]
    v0 = [r.var() for r in r0]
    np.testing.assert_allclose(nvil.c, c0, rtol=1e-12)
    np.testing.assert_allclose(nvil.v, v0, rtol=1e-12)
    np.testing.assert_allclose(host(log_q[0].grad), (r0[0] - r0[0].mean()) / max(1, np.sqrt(v0[0])) / 6, rtol=1e-9)
    shifted = [s + 10 for s in signals]
    r1 = residual(shifted)
    log_q = [t64(np.zeros(6), grad=True) for _ in signals]
    nvil.surrogate(shifted, log_q, inputs).surrogate.backward()
    np.testing.assert_allclose(host(log_q[1].grad), (r1[1] - c0[1]) / max(1, np.sqrt(v0[1])) / 6, rtol=1e-9)
    np.testing.assert_allclose(nvil.c, [0.8 * c + 0.2 * r.mean() for c, r in zip(c0, r1)], rtol=1e-12)
    np.testing.assert_allclose(nvil.v, [0.8 * v + 0.2 * r.var() for v, r in zip(v0, r1)], rtol=1e-12)
    assert nvil.steps == 2


def test_nvil_state_dict_round_trip_and_mismatch(xp):
    nvil, signals, inputs = nvil_case()
    for _ in range(3):
        nvil.surrogate(signals, [t64(np.zeros(6)) for _ in signals], inputs)
    state = nvil.state_dict()
    assert {"c", "v", "steps"} <= set(state) and state["steps"] == 3 and state["c"].shape == (2,)
    other = NVIL((5, 3), hidden=4, rng=9, dtype=np.float64)
    other.load_state_dict(state)
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v, state[k], err_msg=k)
    wrong = NVIL((5,), hidden=4, rng=9, dtype=np.float64)
    before = wrong.state_dict()
    with pytest.raises(CheckpointError, match="c: checkpoint"):
        wrong.load_state_dict(state)
    for k, v in wrong.state_dict().items():                      # nothing half loaded
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(ValueError, match="2 layers, got 1 signals"):
        nvil.surrogate(signals[:1], [t64(np.zeros(6))], inputs[:1])


def test_nvil_alpha_and_hidden_are_used(xp):
    """NVIL(alpha=0.5) folds a batch in as c <- 0.5 c + 0.5 mean, v <- 0.5 v + 0.5 var (not at the default 0.8), and
    its baselines have `hidden` units."""
    rng = np.random.default_rng(1)
    nvil = NVIL((5,), hidden=3, alpha=0.5, rng=0, dtype=np.float64)
    assert nvil.baselines[0].layers[0].weight.shape == (5, 3) and nvil.alpha == 0.5
    inputs = [(rng.random((6, 5)) < 0.5).astype(np.float64)]
    b = host(nvil.baselines[0](t64(inputs[0])))[:, 0]
    first, second = [rng.standard_normal(6) * 3 - 10], [rng.standard_normal(6) * 2 + 4]
    nvil.surrogate(first, [t64(np.zeros(6))], inputs)
    c, v = nvil.c[0], nvil.v[0]
    nvil.surrogate(second, [t64(np.zeros(6))], inputs)
    r = second[0] - b
    np.testing.assert_allclose(nvil.c, [0.5 * c + 0.5 * r.mean()], rtol=1e-12)
    np.testing.assert_allclose(nvil.v, [0.5 * v + 0.5 * r.var()], rtol=1e-12)
