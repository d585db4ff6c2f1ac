"""Every option an estimator takes does what it says, and the registry passes it on (issue 25, item 5).

    k                   VIMCO, RWS and IWAE draw k samples per image: the bound they report is L̂_k of
                        exactly the draws `sample_q` (or the VAE's `iwae_bound`) makes from the same seed
    temperature,        Relaxed's objective is the formula written here in NumPy, with q̃ at `temperature`,
    prior_temperature,  p̃ (prior and generative layers) at `prior_temperature`, in the `density` asked for,
    density             on a two-layer machine with the same uniforms replayed
    baseline            ScoreFunction(baseline=True) follows the bias-corrected running mean of its signal and
                        its estimate is the VAE's score-function gradient with that baseline
    updates             RWS with one update moves only that update's parameters
    kl, n_samples       estimators.elbo's closed-form and sampled KL are their formulas at the replayed draws,
                        and n_samples=S averages S draws
    the registry        make(name, **{option: value}) builds the estimator that direct construction with that
                        value builds (the same gradient and bound from the same seed), unlike the default

Each check compares with a value that differs when the option is ignored or mixed up with another (two
temperatures that differ, k away from the defaults).  float64, fixed seeds.
"""
import numpy as np
import pytest
import scipy.special

import tinydgm as td
from tinydgm import estimators as est
from tinydgm.estimators import discrete
from tinydgm.distributions import Normal
from tinydgm.estimators.importance import bound_value
from tinydgm.models.vae import VAE
from tinydgm.models.wake_sleep import model as ws

X = np.array([[1, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1], [1, 1, 0, 0, 0, 1], [0, 1, 1, 0, 1, 0]], dtype=np.float64)


def machine(layers=(6, 4, 3), seed=2, spread=1.0):
    """A float64 Helmholtz machine with parameters moved away from the init."""
    m = ws.HelmholtzMachine(layers, rng=np.random.default_rng(seed), dtype=np.float64)
    rng = np.random.default_rng(seed + 1)
    for p in m.parameters():
        p.data += spread * rng.standard_normal(p.shape)
    return m


def vae(seed=0):
    return VAE(x_dim=6, hidden=(5,), z_dim=2, rng=np.random.default_rng(seed), dtype=np.float64)


def flat_grad(m):
    return np.concatenate([(p.grad if p.grad is not None else np.zeros(p.shape)).ravel() for p in m.parameters()])


def run(estimator, m, seed=1):
    """(gradient of the surrogate in the model's parameters, bound per image) of one objective from `seed`."""
    m.zero_grad()
    objective = estimator.objective(m, X, np.random.default_rng(seed))
    objective.surrogate.backward()
    g = flat_grad(m)
    m.zero_grad()
    return g, np.asarray(td.backend.to_numpy(td.tensor(objective.bound).data), dtype=np.float64)


# =============================================================================================
# k: the number of samples per image
# =============================================================================================

@pytest.mark.parametrize("k", [2, 3, 7])
@pytest.mark.parametrize("make", [est.VIMCO, est.ReweightedWakeSleep])
def test_k_sample_estimators_bound_is_l_k_of_k_draws(make, k):
    """VIMCO(k) and ReweightedWakeSleep(k) report L̂_k of the k draws per image that sample_q makes from the same seed."""
    m = machine()
    _, bound = run(make(k), m, seed=5)
    with td.no_grad():
        hs, q_terms = discrete.sample_q(m, X, np.random.default_rng(5), k)
        log_w = m.log_joint(X, hs).data - est.total(q_terms).data
    assert hs[0].shape == (k, len(X), 4)
    np.testing.assert_allclose(bound, bound_value(log_w), rtol=1e-12)


@pytest.mark.parametrize("k", [2, 3])
def test_iwae_bound_is_the_models_l_k(k):
    """IWAE(k)'s bound and gradient are those of the VAE's L_k from the same seed, and not of L_5."""
    m = vae()
    g, bound = run(est.IWAE(k), m, seed=4)
    m.zero_grad()
    values = m.iwae_bound(X, k, rng=np.random.default_rng(4))
    td.mean(values).backward()
    np.testing.assert_allclose(bound, values.data, rtol=1e-12)
    np.testing.assert_allclose(g, flat_grad(m), rtol=1e-12)
    assert not np.allclose(bound, m.iwae_bound(X, 5, rng=np.random.default_rng(4)).data)


# =============================================================================================
# Relaxed: temperature, prior_temperature and density, against the formula in NumPy
# =============================================================================================

def softplus(a):
    return np.logaddexp(0, a)


def relaxed_by_hand(m, x, tau, tau_p, density, seed):
    """The relaxed objective per image of a machine with two hidden layers, written from the formula:
    z_l = (a_l + log u − log(1 − u)) / τ, y_l = σ(z_l), a_l the logits of q given y_{l−1} (y_0 = x);
    log q̃ = Σ_l d(a_l, l, τ);  log p̃ = d(prior, 2, τ_p) + d(W_1 y_2 + b_1, 1, τ_p) + log Bernoulli(x; W_0 y_1 + b_0),
    d(a, l, t) = Σ_i log t + a − t z_l − 2 softplus(a − t z_l)  (concrete)  or  Σ_i y_l a − softplus(a)  (bernoulli)."""
    rng, s, zs, ys, logits = np.random.default_rng(seed), x, [], [], []
    for layer in m.recognition:
        a = s @ layer.weight.data + layer.bias.data
        u = np.maximum(rng.random(a.shape), np.finfo(np.float64).tiny)
        z = (a + np.log(u) - np.log1p(-u)) / tau
        s = scipy.special.expit(z)
        logits.append(a), zs.append(z), ys.append(s)

    def d(a, l, t):
        if density == "bernoulli":
            return np.sum(ys[l] * a - softplus(a), axis=-1)
        return np.sum(np.log(t) + a - t * zs[l] - 2 * softplus(a - t * zs[l]), axis=-1)

    gen = [(g.weight.data, g.bias.data) for g in m.generative]
    log_q = d(logits[0], 0, tau) + d(logits[1], 1, tau)
    log_p = d(m.prior.data, 1, tau_p) + d(ys[1] @ gen[1][0] + gen[1][1], 0, tau_p)
    x_logits = ys[0] @ gen[0][0] + gen[0][1]
    log_p = log_p + np.sum(x * x_logits - softplus(x_logits), axis=-1)
    return log_p - log_q


@pytest.mark.parametrize("density", ["concrete", "bernoulli"])
@pytest.mark.parametrize("tau, tau_p", [(0.5, 2.0), (1.5, 0.4), (0.7, None)])
def test_relaxed_objective_is_the_formula_at_its_temperatures_and_density(density, tau, tau_p):
    m = machine()
    _, bound = run(est.Relaxed(tau, prior_temperature=tau_p, density=density), m, seed=3)
    want = relaxed_by_hand(m, X, tau, tau if tau_p is None else tau_p, density, seed=3)
    np.testing.assert_allclose(bound, want, rtol=1e-10, atol=1e-10)


def test_relaxed_options_change_the_objective():
    """The check above can tell the options apart: each changes the objective on this machine."""
    m = machine()
    values = {opts: run(est.Relaxed(*opts[:2], density=opts[2]), m, seed=3)[1]
              for opts in [(0.5, None, "concrete"), (0.5, 2.0, "concrete"), (2.0, 0.5, "concrete"),
                           (0.5, None, "bernoulli"), (1.0, None, "concrete")]}
    for a in values:
        for b in values:
            assert a == b or not np.allclose(values[a], values[b]), (a, b)


# =============================================================================================
# ScoreFunction's baseline
# =============================================================================================

def sf_gradient(m, seed, baseline):
    m.zero_grad()
    td.mean(m.score_function_elbo(X, rng=np.random.default_rng(seed), baseline=baseline)).backward()
    g = flat_grad(m)
    m.zero_grad()
    return g


def test_score_function_baseline_is_the_running_mean_of_its_signal():
    """After steps on batches with signals f_1, f_2 (the steps' bounds; lr = 0 keeps the model), the baseline is
    the bias-corrected running mean (0.09 mean f_1 + 0.1 mean f_2) / (1 − 0.9²), and the estimator's gradient is
    the VAE's score-function gradient with that baseline, not the one without."""
    m = vae()
    sf = est.ScoreFunction(baseline=True)
    opt = td.optim.SGD(m.parameters(), lr=0.0)
    assert sf.baseline.value is None
    np.testing.assert_allclose(run(sf, m, seed=6)[0], sf_gradient(m, 6, None), rtol=1e-12)    # no baseline yet
    f1 = sf.step(m, X, [opt], np.random.default_rng(1))["bound"]
    assert sf.baseline.value == pytest.approx(f1, rel=1e-12)
    f2 = sf.step(m, X, [opt], np.random.default_rng(2))["bound"]
    b = (0.9 * 0.1 * f1 + 0.1 * f2) / (1 - 0.9 ** 2)
    assert sf.baseline.value == pytest.approx(b, rel=1e-12)
    assert sf.state_dict()["baseline"]["steps"] == 2
    g = run(sf, m, seed=6)[0]
    np.testing.assert_allclose(g, sf_gradient(m, 6, b), rtol=1e-10, atol=1e-12)
    assert not np.allclose(g, sf_gradient(m, 6, None))


def test_score_function_without_baseline_keeps_none():
    m = vae()
    sf = est.ScoreFunction(baseline=False)
    sf.step(m, X, [td.optim.SGD(m.parameters(), lr=0.0)], np.random.default_rng(1))
    assert sf.baseline is None and sf.state_dict() == {}
    np.testing.assert_allclose(run(sf, m, seed=6)[0], sf_gradient(m, 6, None), rtol=1e-12)


# =============================================================================================
# estimators.elbo: kl and n_samples
# =============================================================================================

LOC, SCALE, PRIOR_LOC, C = [[0.3, -1.2], [1.5, 0.4]], [[0.7, 1.3], [0.5, 2.0]], [0.2, -0.5], [1.0, -2.0]


def log_normal(z, loc, scale):
    return -0.5 * ((z - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi)


def log_lik(z):
    """log p(x|z) = −|z − c|² / 2, one value per latent vector."""
    d = z - td.tensor(np.array(C))
    return td.sum(d * d, axis=-1) * -0.5


def test_elbo_kl_is_the_closed_form_or_the_sampled_log_ratio():
    """kl="analytic": log p(x|z) − KL(q || p) at z = μ + σε; kl="mc": log p(x|z) + log p(z) − log q(z) at the same z."""
    q = Normal(np.array(LOC), np.array(SCALE))
    prior = Normal(np.array(PRIOR_LOC), np.ones(2))
    z = np.array(LOC) + np.array(SCALE) * np.random.default_rng(8).standard_normal((2, 2))
    lik = -0.5 * np.sum((z - C) ** 2, axis=-1)
    kl = np.sum(-np.log(SCALE) + 0.5 * (np.square(SCALE) + np.square(np.array(LOC) - PRIOR_LOC)) - 0.5, axis=-1)
    mc = np.sum(log_normal(z, np.array(PRIOR_LOC), 1.0) - log_normal(z, np.array(LOC), np.array(SCALE)), axis=-1)
    analytic = est.elbo(log_lik, q, prior, kl="analytic", rng=np.random.default_rng(8)).data
    sampled = est.elbo(log_lik, q, prior, kl="mc", rng=np.random.default_rng(8)).data
    np.testing.assert_allclose(analytic, lik - kl, rtol=1e-12)
    np.testing.assert_allclose(sampled, lik + mc, rtol=1e-12)
    assert not np.allclose(analytic, sampled)


@pytest.mark.parametrize("kl", ["analytic", "mc"])
def test_elbo_n_samples_averages_that_many_draws(kl):
    """elbo(q, n_samples=S) is the mean of the S one-sample estimates on S copies of q, drawn from the same stream."""
    S = 6
    q = Normal(np.array(LOC), np.array(SCALE))
    copies = Normal(np.array(LOC) + np.zeros((S, 2, 2)), np.array(SCALE) + np.zeros((S, 2, 2)))
    prior = Normal(np.array(PRIOR_LOC), np.ones(2))
    many = est.elbo(log_lik, q, prior, n_samples=S, kl=kl, rng=np.random.default_rng(9)).data
    ones = est.elbo(log_lik, copies, prior, kl=kl, rng=np.random.default_rng(9)).data
    assert many.shape == (2,) and ones.shape == (S, 2)
    np.testing.assert_allclose(many, ones.mean(0), rtol=1e-12)
    assert not np.allclose(many, ones[0])


# =============================================================================================
# RWS's updates
# =============================================================================================

@pytest.mark.parametrize("updates", [("p",), ("q-wake",), ("sleep",), ("p", "sleep"), ("q-wake", "sleep")])
def test_rws_updates_move_only_their_parameters(updates):
    """θ gets a gradient iff "p" is among the updates; λ iff "q-wake" or "sleep" is; the sleep objective is
    reported iff "sleep" is."""
    m = machine()
    g, _ = run(est.ReweightedWakeSleep(3, updates), m)
    theta = np.concatenate([np.full(p.size, not n.startswith("recognition")) for n, p in m.named_parameters()])
    assert np.any(g[theta] != 0) == ("p" in updates)
    assert np.any(g[~theta] != 0) == bool({"q-wake", "sleep"} & set(updates))
    opt_p, opt_q = td.optim.SGD(m.generative_parameters(), lr=0.0), td.optim.SGD(m.recognition_parameters(), lr=0.0)
    out = est.ReweightedWakeSleep(3, updates).step(m, X, [opt_p, opt_q], np.random.default_rng(1))
    assert ("sleep" in out) == ("sleep" in updates)


# =============================================================================================
# The registry
# =============================================================================================

def test_the_registry_builds_the_estimator_it_names():
    m = machine()
    for name in est.names():
        built = est.make(name, m if name in est.names("discrete") else vae(), rng=0)
        assert built.name == name, (name, built)
    assert est.make("score-function-baseline").baseline is not None
    assert est.make("score-function").baseline is None


def test_the_registry_passes_its_generator_to_nvil():
    """make("nvil", model, rng=seed) draws NVIL's baselines from that seed: those of NVIL(..., rng=seed)."""
    m = machine()
    built = est.make("nvil", m, rng=4).state_dict()
    for n, v in est.NVIL(m.layers[:-1], rng=4).state_dict().items():
        np.testing.assert_array_equal(built[n], v, err_msg=n)
    other = est.make("nvil", m, rng=5).state_dict()
    assert not np.array_equal(built["baselines.0.layers.0.weight"], other["baselines.0.layers.0.weight"])


CASES = [
    # name, option, a value other than the default, direct construction with it, the model
    ("iwae", "k", 3, lambda v: est.IWAE(v), vae),
    ("vimco", "k", 3, lambda v: est.VIMCO(v), machine),
    ("rws", "k", 3, lambda v: est.ReweightedWakeSleep(v), machine),
    ("rws", "updates", ("p",), lambda v: est.ReweightedWakeSleep(updates=v), machine),
    ("rws", "updates", ("q-wake", "sleep"), lambda v: est.ReweightedWakeSleep(updates=v), machine),
    ("relaxed", "temperature", 0.3, lambda v: est.Relaxed(v), machine),
    ("straight-through", "temperature", 0.3, lambda v: est.StraightThrough(v), machine),
]


@pytest.mark.parametrize("name, option, value, direct, model", CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
def test_the_registry_passes_each_option(name, option, value, direct, model):
    """make(name, option=value) gives the gradient and bound of direct construction with that value from the same
    seed, and not those of make(name) at its default."""
    assert option in est.options(name)
    m = model()
    g, bound = run(est.make(name, m, rng=0, **{option: value}), m)
    g_direct, bound_direct = run(direct(value), m)
    np.testing.assert_array_equal(g, g_direct)
    np.testing.assert_array_equal(bound, bound_direct)
    g_default, bound_default = run(est.make(name, m, rng=0), m)
    assert not (np.allclose(g, g_default) and np.allclose(bound, bound_default))


def test_every_option_of_the_registry_is_checked():
    """Each (estimator, option) of the registry has a case above: a new option needs one."""
    assert {(n, o) for n in est.names() for o in est.options(n)} == {(c[0], c[1]) for c in CASES}


@pytest.mark.parametrize("name", est.names())
def test_every_registered_estimator_reports_its_bound_per_image(name):
    """Objective.bound is one estimate per image (what `report` averages and a user may look at image by image),
    for every estimator of the registry on its kind of model; the surrogate is a scalar."""
    m = vae() if name in est.names("continuous") else machine()
    objective = est.make(name, m, rng=0).objective(m, X, np.random.default_rng(1))
    bound = np.asarray(td.backend.to_numpy(td.tensor(objective.bound).data))
    assert bound.shape == (len(X),) and np.all(np.isfinite(bound))
    assert objective.surrogate.shape == ()
