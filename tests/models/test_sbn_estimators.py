"""Each gradient estimator for the sigmoid belief net (tinydgm/estimators/) against the exact
gradient of the objective it claims to estimate, on machines small enough to enumerate (float64).

    REINFORCE, NVIL, straight-through (θ)  ∇ ELBO,  ELBO(x) = Σ_h q(h|x) [log p(x, h) − log q(h|x)] over all h
    VIMCO                                   ∇ E[L_K],  E[L_K] over every K-tuple of joint states
    relaxed                                 ∇ of the relaxed ELBO by tensor-product Gauss-Legendre quadrature over u

The exact ELBO and L_K are tinydgm.testing's oracles (enumeration, differentiated by the engine; checked against
independent sums and central differences in tests/testing); the relaxed objective is written here from the formula.
An estimate is the gradient of one pass, the batch X6 repeated R times (so one pass averages R·3 independent
draws); P independent passes are judged by tinydgm.testing's assertions, each with a false-alarm rate of 1e-5 for
the whole call (all coordinates) and a `detect` it must be able to see, else it refuses to pass.  Seeds are fixed.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinydgm as td
from tinydgm import estimators as est
from tinydgm.estimators import NVIL
from tinydgm.models.wake_sleep import model as ws
from tinydgm.testing import oracles
from tinydgm.testing.stats import (StatisticalAssertionError, assert_consistent, assert_lower_variance,
                                   assert_unbiased)

X6 = np.array([[1, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1], [1, 1, 0, 0, 0, 1]], dtype=np.float64)
X4 = X6[:, :4]
ALPHA = 1e-5


def machine(layers, seed, spread=1.0):
    """A float64 machine with parameters moved away from the init."""
    m = ws.HelmholtzMachine(layers, rng=np.random.default_rng(seed), dtype=np.float64)
    rng = np.random.default_rng(seed + 1)
    for p in m.parameters():
        p.data += spread * rng.standard_normal(p.shape)
    return m


def exact_elbo_gradient(m, x):
    """(∇ mean_b ELBO(x_b) by parameter name, mean ELBO, ELBO per image), by enumeration (tinydgm.testing.oracles)."""
    per_image = np.array([oracles.value(oracles.elbo(m, x[i:i + 1])) for i in range(len(x))])
    return oracles.gradient(m, oracles.elbo(m, x)), float(per_image.mean()), per_image


def draws(m, objective, passes, reps, x=X6, seed=0):
    """The estimator's gradient ({name: (passes, ...)}) and bound (the batch mean, (passes,)) over `passes` passes of
    x repeated `reps` times."""
    rng, xs = np.random.default_rng(seed), np.tile(x, (reps, 1))
    grads, bounds = {}, []
    for _ in range(passes):
        out = objective(xs, rng)
        for n, g in oracles.gradient(m, out.surrogate).items():
            grads.setdefault(n, []).append(g)
        bounds.append(float(np.mean(out.bound)))
    return {n: np.stack(v) for n, v in grads.items()}, np.array(bounds)


def part(grads, group):
    """The θ ("theta") or λ ("lambda") entries of a {name: array} of gradients."""
    return {n: v for n, v in grads.items() if n.startswith("recognition") == (group == "lambda")}


def scaled(grads, scale):
    """grads with parameter n multiplied by scale(n)."""
    return {n: v * scale(n) for n, v in grads.items()}


# =============================================================================================
# REINFORCE and NVIL: unbiased for ∇ ELBO
# =============================================================================================

@settings(max_examples=6)
@given(hidden=st.integers(1, 3), seed=st.integers(0, 1000))
def test_reinforce_is_unbiased_for_the_elbo_gradient(hidden, seed):
    m = machine((6, hidden), seed)
    exact, elbo, _ = exact_elbo_gradient(m, X6)
    grads, bounds = draws(m, lambda x, r: est.Reinforce().objective(m, x, r), 150, 100, seed=seed)
    assert_unbiased(grads, exact, ALPHA, detect=0.2, what="REINFORCE's gradients")
    assert_unbiased(bounds, elbo, ALPHA, detect=0.01, what="REINFORCE's ELBO estimates")


def test_nvil_is_unbiased_for_the_scaled_elbo_gradient_with_layerwise_signals():
    """Two hidden layers (4-2-2, 16 joint states), untrained baselines with weights × 5 (so b(h_{l-1}) varies over
    nats and is far from E[ℓ_l]) and running variances 9 and 4: recognition layer l's mean gradient × max(1, √v_l)
    = ∇λ_l ELBO; θ's = ∇θ ELBO."""
    m = machine((4, 2, 2), 3)
    exact, _, _ = exact_elbo_gradient(m, X4)
    nvil = NVIL((4, 2), hidden=5, rng=1, dtype=np.float64)
    for p in nvil.parameters():
        p.data *= 5
    nvil.hold_statistics(c=[-3.0, 1.0], v=[9.0, 4.0])
    grads, _ = draws(m, lambda x, r: nvil.objective(m, x, r), 200, 100, x=X4)
    grads = scaled(grads, lambda n: {"recognition.0": 3.0, "recognition.1": 2.0}.get(n[:13], 1.0))
    assert_unbiased(grads, exact, ALPHA, detect=0.2, what="NVIL's rescaled gradients")
    assert nvil.steps == 1 and list(nvil.c) == [-3.0, 1.0]


def fit_baseline(m, nvil, steps=300, lr=0.03):
    """Train NVIL's baseline (and running statistics) on X6 repeated 100 times, θ and λ fixed; lr / 10 at the end."""
    opt_b, rng, xs = td.optim.Adam(nvil.parameters(), lr), np.random.default_rng(7), np.tile(X6, (100, 1))
    for i in range(steps):
        if i == steps - 100:
            opt_b.lr = lr / 10
        opt_b.zero_grad()
        nvil.objective(m, xs, rng).loss.backward()
        opt_b.step()
    m.zero_grad()


def test_nvil_baseline_learns_the_elbo_keeps_the_mean_and_lowers_the_variance():
    """After fitting, b(x) + c is each image's ELBO (within 0.15 nats; the ELBOs spread over 9); the
    gradient's mean is REINFORCE's (both within 5 SE of exact) and the variance of λ's estimates is < 1/4 of it,
    and < 0.7 of that with the constant baseline c = the mean ELBO alone (the input-dependent baseline pays:
    measured 0.45; 1.02 when the signal is centred by c alone)."""
    m = machine((6, 3), 5, spread=1.5)
    exact, _, per_image = exact_elbo_gradient(m, X6)
    nvil = NVIL((6,), hidden=8, rng=0, dtype=np.float64)
    fit_baseline(m, nvil)
    predicted = nvil.baseline(0, X6).data + nvil.c[0]
    assert np.ptp(per_image) > 3 and np.all(np.abs(predicted - per_image) < 0.15), (predicted, per_image)
    plain, _ = draws(m, lambda x, r: est.Reinforce().objective(m, x, r), 150, 100, seed=1)
    nvil.hold_statistics()
    nv, _ = draws(m, lambda x, r: nvil.objective(m, x, r), 150, 100, seed=2)
    nv = scaled(nv, lambda n: nvil.scale(0) if n.startswith("recognition") else 1.0)   # λ's: ∇λ ELBO / max(1, √v)
    assert_unbiased(plain, exact, ALPHA, detect=0.2, what="REINFORCE's gradients")
    assert_unbiased(nv, exact, ALPHA, detect=0.2, what="NVIL's rescaled gradients")
    assert_lower_variance(part(nv, "lambda"), part(plain, "lambda"), ALPHA, ratio=0.25, detect=2.0,
                          what=("NVIL's λ", "REINFORCE's λ"))
    constant = NVIL((6,), hidden=8, rng=0, dtype=np.float64)
    for p in constant.parameters():
        p.data[...] = 0                                                  # b(x) = 0
    constant.hold_statistics(c=per_image.mean(), v=nvil.v)
    flat, _ = draws(m, lambda x, r: constant.objective(m, x, r), 150, 100, seed=3)
    assert_lower_variance(part(nv, "lambda"), scaled(part(flat, "lambda"), lambda n: nvil.scale(0)), ALPHA, ratio=0.7,
                          detect=2.0, what=("NVIL's λ", "λ with the constant baseline"))


# =============================================================================================
# VIMCO: unbiased for ∇ E[L_K]
# =============================================================================================

def no_baseline_vimco(m, k):
    """The K-sample score-function estimator without baselines: Σ_k L̂ ∇ log q(h_k|x) + Σ_k w̃_k ∇ log w_k."""
    def objective(x, rng):
        hs, q_terms = est.discrete.sample_q(m, x, rng, k)
        log_q = q_terms[0]
        log_w = m.log_joint(x, hs) - log_q
        bound = td.logsumexp(log_w, axis=0).data - np.log(k)
        w_tilde = np.exp(log_w.data - td.logsumexp(log_w, axis=0).data)
        return est.Objective((td.sum(td.tensor(bound) * log_q) + td.sum(td.tensor(w_tilde) * log_w)) / len(x), bound)
    return objective


@settings(max_examples=4)
@given(k=st.sampled_from([2, 3]), seed=st.integers(0, 1000))
def test_vimco_is_unbiased_for_the_gradient_of_l_k(k, seed):
    m = machine((6, 3), seed)
    l_k = oracles.iwae_bound(m, X6, k)
    grads, bounds = draws(m, lambda x, r: est.VIMCO(k).objective(m, x, r), 150, 60, seed=seed)
    assert_unbiased(grads, oracles.gradient(m, l_k), ALPHA, detect=0.2, what="VIMCO's gradients")
    assert_unbiased(bounds, oracles.value(l_k), ALPHA, detect=0.01, what="VIMCO's L_K estimates")


def test_vimco_baselines_keep_the_mean_and_lower_the_variance():
    """Same mean as the estimator without baselines (both unbiased for the exact ∇ E[L_3]); λ's total variance at
    most 1/3 of it."""
    m, k = machine((6, 3), 5, spread=1.5), 3
    exact = oracles.gradient(m, oracles.iwae_bound(m, X6, k))
    plain, _ = draws(m, no_baseline_vimco(m, k), 150, 60, seed=1)
    vimco, _ = draws(m, lambda x, r: est.VIMCO(k).objective(m, x, r), 150, 60, seed=2)
    assert_unbiased(plain, exact, ALPHA, detect=0.4, what="the gradients without baselines")        # the noisy one
    assert_unbiased(vimco, exact, ALPHA, detect=0.2, what="VIMCO's gradients")
    assert_lower_variance(part(vimco, "lambda"), part(plain, "lambda"), ALPHA, ratio=1 / 3, detect=2.0,
                          what=("VIMCO's λ", "λ without baselines"))


# =============================================================================================
# The relaxed ELBO: its gradient by quadrature; its bias against the discrete ELBO's
# =============================================================================================

def relaxed_by_quadrature(m, x, tau, density, n=40):
    """The relaxed ELBO of a one-hidden-layer machine as a tensor-product Gauss-Legendre sum over u in (0, 1)^H
    (logistic noise log u − log(1 − u)), written from the formula; returns (∇ mean over x, value)."""
    nodes, weights = np.polynomial.legendre.leggauss(n)
    u, w = (nodes + 1) / 2, weights / 2
    H = m.layers[1]
    grid = np.stack(np.meshgrid(*[u] * H, indexing="ij"), -1).reshape(-1, H)
    weight = np.prod(np.stack(np.meshgrid(*[w] * H, indexing="ij"), -1).reshape(-1, H), axis=1)
    noise = (np.log(grid) - np.log1p(-grid))[:, None, :]                      # (G, 1, H)
    a = m.recognition[0](x)                                                     # q's logits (B, H)
    z = (a + noise) / tau                                                       # (G, B, H)
    y = td.sigmoid(z)
    if density == "concrete":        # log τ + l − τ z − 2 softplus(l − τ z), the logit's density, for q and the prior
        def log_density(l):
            return td.sum(np.log(tau) + l - tau * z - 2 * td.softplus(l - tau * z), axis=-1)
    else:                            # Σ y l − softplus(l)
        def log_density(l):
            return td.sum(y * l - td.softplus(l), axis=-1)
    g, b = y.shape[0], y.shape[1]
    logits = td.reshape(m.generative[0](td.reshape(y, (g * b, H))), (g, b, x.shape[1]))
    f = td.sum(td.bernoulli_log_prob(logits, x), axis=-1) + log_density(m.prior) - log_density(a)
    value = td.sum(td.tensor(weight[:, None]) * f) / b
    return oracles.gradient(m, value), value.item()


@pytest.mark.parametrize("tau", [1.0, 0.5])
@pytest.mark.parametrize("density", ["concrete", "bernoulli"])
def test_relaxed_step_is_unbiased_for_the_relaxed_objectives_gradient(tau, density):
    m = machine((6, 3), 5)
    exact, value = relaxed_by_quadrature(m, X6, tau, density)
    coarse, _ = relaxed_by_quadrature(m, X6, tau, density, n=28)
    assert max(np.abs(coarse[n] - exact[n]).max() for n in exact) < 1e-4          # the quadrature has converged
    grads, bounds = draws(m, lambda x, r: est.Relaxed(tau, density=density).objective(m, x, r), 100, 100)
    assert_unbiased(grads, exact, ALPHA, detect=0.2, what="the relaxed gradients")
    assert_unbiased(bounds, value, ALPHA, detect=0.01, what="the relaxed objective's estimates")


def test_relaxed_bias_against_the_discrete_elbo_shrinks_with_the_temperature():
    """‖E[relaxed gradient] − ∇ ELBO‖ over τ = 2, 1, 0.5, 0.2 (keyed by 1/τ, assert_consistent's K).
    density="bernoulli" (the ELBO's integrand at the relaxed sample): the bias falls with 1/τ, to at most 15% of its
    value at τ = 2 (assert_consistent); and it falls at each step, with evidence: the claim that it does not fall
    (i.e. grows in τ) is rejected at rate 1e-5 for each pair.  density="concrete" with one temperature: the relaxed KL
    is that of two logistics, whatever τ, so the bias stays above half its value at τ = 2, with evidence (the claim
    that it falls to half is rejected; measured 1.16, 1.12, 1.06, 1.01 on this machine)."""
    m = machine((6, 3), 5)
    exact, _, _ = exact_elbo_gradient(m, X6)
    for density in ("bernoulli", "concrete"):
        by_inverse_tau = {1 / tau: draws(m, lambda x, r: est.Relaxed(tau, density=density).objective(m, x, r),
                                         80, 300, seed=3)[0] for tau in (2.0, 1.0, 0.5, 0.2)}
        keys = sorted(by_inverse_tau)
        if density == "bernoulli":
            assert_consistent(by_inverse_tau, exact, ALPHA, detect=0.2, shrink=0.15,
                              what="the relaxed (bernoulli) gradients against ∇ ELBO")
            for hot, cold in zip(keys, keys[1:]):
                with pytest.raises(StatisticalAssertionError, match="grows"):
                    assert_consistent({1: by_inverse_tau[cold], 2: by_inverse_tau[hot]}, exact, ALPHA, detect=np.inf)
        else:
            with pytest.raises(StatisticalAssertionError, match="does not fall"):
                assert_consistent({1: by_inverse_tau[keys[0]], 2: by_inverse_tau[keys[-1]]}, exact, ALPHA,
                                  detect=np.inf, shrink=0.5)


# =============================================================================================
# Straight-through: the forward pass is the discrete ELBO's; θ's gradient is unbiased, λ's is not
# =============================================================================================

def test_straight_through_value_and_theta_gradient_are_the_elbos():
    m = machine((6, 3), 5)
    exact, elbo, _ = exact_elbo_gradient(m, X6)
    grads, bounds = draws(m, lambda x, r: est.StraightThrough(1.0).objective(m, x, r), 150, 100)
    assert_unbiased(bounds, elbo, ALPHA, detect=0.01, what="straight-through's ELBO estimates")
    assert_unbiased(part(grads, "theta"), part(exact, "theta"), ALPHA, detect=0.2, what="straight-through's θ")
    with pytest.raises(StatisticalAssertionError, match=r"Worst recognition"):   # λ: biased, and visibly so
        assert_unbiased(part(grads, "lambda"), part(exact, "lambda"), 1e-12, detect=np.inf)


def test_straight_through_gradient_by_hand():
    """For the same draws, λ's straight-through gradient is the chain rule through y with h held at [y > 1/2]:
    f = mean_n [log p(h) + log p(x|h) − log q(h|x)], g = ∂f/∂h at the hard h (the engine, h a leaf),
    ∂f/∂a at fixed h = −(h − σ(a))/B, dy/da = y(1 − y)/τ:  δ = g y(1 − y)/τ − (h − σ(a))/B, ∇W = xᵀ δ, ∇b = Σ_n δ."""
    m, tau = machine((6, 3), 5), 0.7
    m.zero_grad()
    est.StraightThrough(tau).objective(m, X6, np.random.default_rng(4)).surrogate.backward()
    got = {n: p.grad.copy() for n, p in m.named_parameters() if n.startswith("recognition")}
    m.zero_grad()
    a = X6 @ m.recognition[0].weight.data + m.recognition[0].bias.data
    u = np.random.default_rng(4).random(a.shape)                                  # the step's uniforms, replayed
    y = 1 / (1 + np.exp(-(a + np.log(u) - np.log1p(-u)) / tau))
    h = td.tensor((y > 0.5).astype(np.float64), requires_grad=True)
    prior, w, b = (td.tensor(p.data) for p in (m.prior, m.generative[0].weight, m.generative[0].bias))
    log_p = td.sum(h * prior - td.softplus(prior), axis=-1) + td.sum(td.bernoulli_log_prob(h @ w + b, X6), axis=-1)
    log_q = td.sum(h * td.tensor(a) - td.softplus(td.tensor(a)), axis=-1)
    td.mean(log_p - log_q).backward()
    delta = h.grad * y * (1 - y) / tau - (h.data - 1 / (1 + np.exp(-a))) / len(X6)
    np.testing.assert_allclose(got["recognition.0.weight"], X6.T @ delta, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got["recognition.0.bias"], delta.sum(0), rtol=1e-9, atol=1e-12)


# =============================================================================================
# The steps: one optimiser step along each objective's surrogate gradient
# =============================================================================================

STEPS = {
    "reinforce": lambda: est.Reinforce(),
    "vimco": lambda: est.VIMCO(3),
    "relaxed": lambda: est.Relaxed(0.5),
    "relaxed-bernoulli": lambda: est.Relaxed(0.5, density="bernoulli"),
    "straight-through": lambda: est.StraightThrough(1.0),
}


@pytest.mark.parametrize("name", [*STEPS, "nvil"])
def test_each_step_moves_theta_and_lambda_along_its_objectives_gradient(name):
    """With SGD(lr=1) and the same draws, the step moves every parameter by its objective's gradient, and it
    returns the objective's batch mean as "bound"; NVIL's step also moves its baselines down their loss."""
    x = X6
    m = machine((6, 4, 3), 2)
    init = m.state_dict()
    if name == "nvil":
        nvil = NVIL((6, 4), hidden=5, rng=0, dtype=np.float64)
        nvil.c[:], nvil.v[:], nvil.steps = [-20.0, -5.0], [4.0, 2.0], 3        # past the first batch
        b_init = nvil.state_dict()
        objective = nvil.objective(m, x, np.random.default_rng(1), update=False)
        (objective.surrogate - objective.loss).backward()
        b_grads = {n: p.grad.copy() for n, p in nvil.named_parameters()}
    else:
        estimator = STEPS[name]()
        objective = estimator.objective(m, x, np.random.default_rng(1))
        objective.surrogate.backward()
    grads = {n: p.grad.copy() for n, p in m.named_parameters()}
    m.load_state_dict(init)
    m.zero_grad()
    opt_p, opt_q = td.optim.SGD(m.generative_parameters(), lr=1.0), td.optim.SGD(m.recognition_parameters(), lr=1.0)
    if name == "nvil":
        opt_b = td.optim.SGD(nvil.parameters(), lr=1.0)
        out = nvil.step(m, x, [opt_p, opt_q, opt_b], np.random.default_rng(1))
        for n, v in nvil.state_dict().items():
            if n not in NVIL.STATS:
                np.testing.assert_allclose(v - b_init[n], b_grads[n], rtol=1e-10, atol=1e-12, err_msg=n)
        assert nvil.steps == 4
    else:
        out = estimator.step(m, x, [opt_p, opt_q], np.random.default_rng(1))
    for n, v in m.state_dict().items():
        assert np.any(grads[n] != 0), n
        np.testing.assert_allclose(v - init[n], grads[n], rtol=1e-10, atol=1e-12, err_msg=n)
    assert out["bound"] == pytest.approx(float(objective.bound.mean()), rel=1e-12)
