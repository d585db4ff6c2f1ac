"""tinydgm.testing's exact oracles: each against an independent computation, and its gradient against central
differences (`check_gradient`, which itself must catch a wrong gradient)."""
import itertools
import math

import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings

import tinydgm as td
from tinydgm.models.loglinear import by_hand, hmm, mixture
from tinydgm.models.loglinear import model as ll_model
from tinydgm.testing import oracles, strategies
from tinydgm.testing.models import feature_hmm, linear_gaussian, sigmoid_belief_net

X = np.array([[1, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0]], dtype=np.float64)


def table(model, x, states=None):
    """log p(x_b, h) and log q(h|x_b) by a loop over the states (`states`: rows of joint states, in that order;
    default: itertools.product's), one state at a time (the definition, written apart)."""
    sizes, rows_p, rows_q = model.layers[1:], [], []
    for bits in itertools.product([0.0, 1.0], repeat=sum(sizes)) if states is None else states:
        hs = np.split(np.array(bits), np.cumsum(sizes)[:-1])
        with td.no_grad():
            rows_p.append(model.log_joint(x, [np.broadcast_to(h, (len(x), len(h))) for h in hs]).data)
            rows_q.append(model.log_q([np.broadcast_to(h, (len(x), len(h))) for h in hs], x).data)
    return np.array(rows_p), np.array(rows_q)


@settings(max_examples=8)
@given(case=strategies.sbn_cases(max_latent=4))
def test_elbo_log_px_and_posterior_are_the_sums_over_states(case):
    model, x = case
    states, log_post = oracles.posterior(model, x)
    log_p, log_q = table(model, x, np.concatenate(states, axis=1))
    assert oracles.value(oracles.elbo(model, x)) == pytest.approx((np.exp(log_q) * (log_p - log_q)).sum(0).mean(), rel=1e-12)
    assert oracles.value(oracles.log_px(model, x)) == pytest.approx(scipy.special.logsumexp(log_p, axis=0).mean(), rel=1e-12)
    np.testing.assert_allclose(np.exp(log_post.data).sum(0), 1, rtol=1e-12)
    np.testing.assert_allclose(log_post.data, log_p - scipy.special.logsumexp(log_p, axis=0), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_iwae_bound_by_multisets_is_the_sum_over_ordered_tuples(k):
    """L_K by multisets (the oracle) = the sum over all 8^K ordered K-tuples of Π q · log mean w; L_1 = ELBO;
    ELBO <= L_2 <= L_3 <= log p(x)."""
    model = sigmoid_belief_net((4, 3), scale=1.5, seed=2)
    log_p, log_q = table(model, X)
    log_w = log_p - log_q
    want = 0.0
    for tup in itertools.product(range(8), repeat=k):
        idx = list(tup)
        want = want + np.exp(log_q[idx].sum(0)) * (scipy.special.logsumexp(log_w[idx], axis=0) - math.log(k))
    got = oracles.value(oracles.iwae_bound(model, X, k))
    assert got == pytest.approx(want.mean(), rel=1e-12)
    if k == 1:
        assert got == pytest.approx(oracles.value(oracles.elbo(model, X)), rel=1e-12)
    values = [oracles.value(oracles.iwae_bound(model, X, j)) for j in (1, 2, 3)] + [oracles.value(oracles.log_px(model, X))]
    assert values == sorted(values)


def test_multisets_count_every_ordering_once():
    rows, log_orderings = oracles.multisets(5, 3)
    assert len(rows) == math.comb(7, 3)
    assert np.exp(log_orderings).sum() == pytest.approx(5 ** 3)


@pytest.mark.parametrize("name, oracle", [
    ("elbo", lambda m: oracles.elbo(m, X[:2])),
    ("L_2", lambda m: oracles.iwae_bound(m, X[:2], 2)),
    ("log p(x)", lambda m: oracles.log_px(m, X[:2])),
])
def test_each_oracles_gradient_is_the_central_differences(name, oracle):
    """Two hidden layers (4-2-1): every coordinate of θ and λ, against (f(θ + ε) − f(θ − ε)) / 2ε."""
    model = sigmoid_belief_net((4, 2, 1), scale=2.0, seed=5)
    assert oracles.check_gradient(model, oracle) < 1e-7
    g = oracles.gradient(model, oracle(model))
    assert set(g) == {n for n, _ in model.named_parameters()}
    if name == "log p(x)":                                   # λ does not enter log p(x)
        assert all(np.all(g[n] == 0) for n in g if n.startswith("recognition"))


def test_check_gradient_catches_a_wrong_gradient():
    """An ELBO whose q-weights are cut from the graph (a constant copy of q(h|x)): the λ gradient is wrong and the
    check names a recognition parameter."""
    model = sigmoid_belief_net((4, 2), scale=1.5, seed=1)

    def wrong(m):
        log_p, log_q = oracles.log_tables(m, X)
        return td.mean(td.sum(td.tensor(np.exp(log_q.data)) * (log_p - log_q), axis=0))
    with pytest.raises(oracles.OracleGradientError, match=r"recognition\.0\.(weight|bias)\[.*central differences"):
        oracles.check_gradient(model, wrong)


def test_the_oracles_refuse_an_enumeration_too_large():
    model = sigmoid_belief_net((2, 3, 3), seed=0)
    with pytest.raises(ValueError, match="MAX_TERMS"):
        oracles.iwae_bound(model, X[:1, :2], 5)


# =============================================================================================
# The linear-Gaussian model
# =============================================================================================

@settings(max_examples=10)
@given(case=strategies.linear_gaussian_cases())
def test_linear_gaussian_closed_forms(case):
    """log p(x) by the envelope form = the marginal density N(x; b, Wᵀ W + s² I); ELBO <= log p(x), with equality
    when q is the exact posterior (here: q's mean map and scale set to the posterior's, W rows orthogonal)."""
    model, x = case
    assert oracles.value(oracles.log_px(model, x)) == pytest.approx(model.log_px(x).mean(), rel=1e-10, abs=1e-10)
    assert oracles.value(oracles.elbo(model, x)) <= oracles.value(oracles.log_px(model, x)) + 1e-10


def test_linear_gaussian_elbo_is_log_px_at_the_posterior_and_gradients_match_differences():
    model = linear_gaussian(latent=2, observed=3, scale=1.0, seed=4)
    W = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 2)))[0].T * [[1.5], [0.7]]    # W Wᵀ diagonal
    model.W.data[...] = W
    x = np.random.default_rng(1).standard_normal((4, 3))
    s2 = math.exp(2 * float(model.log_s.data))
    cov = np.linalg.inv(np.eye(2) + W @ W.T / s2)                                   # diagonal
    model.A.data[...] = W.T @ cov / s2
    model.c.data[...] = -model.b.data @ W.T @ cov / s2
    model.log_sigma.data[...] = 0.5 * np.log(np.diag(cov))
    assert oracles.value(oracles.elbo(model, x)) == pytest.approx(oracles.value(oracles.log_px(model, x)), rel=1e-12)
    assert oracles.check_gradient(model, lambda m: oracles.elbo(m, x)) < 1e-7
    assert oracles.check_gradient(model, lambda m: oracles.log_px(m, x), groups=("theta",)) < 1e-7
    mean, _ = model.posterior(x)
    np.testing.assert_allclose(mean, x @ model.A.data + model.c.data, rtol=1e-10, atol=1e-12)
    with pytest.raises(NotImplementedError, match="one latent dimension only"):
        oracles.iwae_bound(model, x, 2)


def brute_force_l2(model, x, n=2001, radius=12.0):
    """L_2 by the 2-D trapezoid rule over (ε_1, ε_2) on a dense grid, in NumPy: the definition, written apart."""
    e = np.linspace(-radius, radius, n)
    omega = np.exp(-e ** 2 / 2)
    omega /= omega.sum()
    q = model.encode(x)
    z = q.loc.data + q.scale.data * e[:, None, None]                                   # (n, B, 1)
    with td.no_grad():
        log_w = (model.log_likelihood(x, td.tensor(z)).data - 0.5 * z[..., 0] ** 2
                 + 0.5 * e[:, None] ** 2 + np.log(q.scale.data[:, 0]))                 # log p(x|z) + log p(z) − log q(z)
    pair = np.logaddexp(log_w[:, None, :], log_w[None, :, :]) - math.log(2)
    return float((omega[:, None, None] * omega[None, :, None] * pair).sum((0, 1)).mean())


@settings(max_examples=3, deadline=None)
@given(case=strategies.linear_gaussian_cases(latent=(1, 1)))
def test_linear_gaussian_l_k_by_quadrature(case):
    """L_1 = the closed-form ELBO; L_2 = a brute-force 2-D sum; ELBO <= L_2 <= L_5 <= L_50 <= log p(x); a grid twice as
    fine moves L_5 by less than 1e-6 of it."""
    model, x = case
    values = [oracles.value(oracles.iwae_bound(model, x, k)) for k in (1, 2, 5, 50)]
    assert values[0] == pytest.approx(oracles.value(oracles.elbo(model, x)), rel=1e-10, abs=1e-10)
    assert values[1] == pytest.approx(brute_force_l2(model, x), rel=1e-9)
    chain = values + [oracles.value(oracles.log_px(model, x))]
    assert chain == sorted(chain)
    finer = oracles.value(oracles.quadrature_iwae_bound(model, x, 5, grid=2 * oracles.GRID - 1))
    assert finer == pytest.approx(values[2], rel=1e-6)


def test_linear_gaussian_l_k_gradient_is_the_central_differences():
    model, x = linear_gaussian(latent=1, observed=1, scale=1.0, seed=3), np.array([[0.5], [2.0]])
    assert oracles.check_gradient(model, lambda m: oracles.iwae_bound(m, x, 3)) < 1e-7


# =============================================================================================
# The log-linear models: brute force against the package's forward-backward and EM
# =============================================================================================

@settings(max_examples=15, deadline=None)
@given(case=strategies.mixture_cases())
def test_mixture_posterior_by_brute_force_is_the_e_step(case):
    """p(z|x_i) and Σ log p(x_i) by summing over classes = loglinear.mixture's e_step and marginal likelihood, and the
    engine's mixture_log_likelihood."""
    model, x = case
    log_px, post = oracles.mixture_posterior(model, x)
    q, counts = mixture.e_step(model, x)
    np.testing.assert_allclose(post, q, rtol=1e-10, atol=1e-14)
    assert log_px.sum() == pytest.approx(mixture.marginal_log_likelihood(model, x), rel=1e-12)
    engine = ll_model.mixture_log_likelihood(td.tensor(model.log_prior), td.tensor(model.w), model.F.toarray(), x)
    assert log_px.sum() == pytest.approx(engine.item(), rel=1e-12)
    assert counts.sum() == pytest.approx(len(x))


@settings(max_examples=15, deadline=None)
@given(case=strategies.hmm_cases())
def test_hmm_posterior_by_brute_force_is_forward_backward(case):
    """log p(x), p(z_t|x) and the transition counts by summing over every path = forward-backward's (bucketed, scaled)
    and the engine's forward algorithm; the E-step's counts are their sums."""
    model, sentences = case
    n_words = model.F.shape[0] // model.n_states
    brute = [oracles.hmm_posterior(model, s) for s in sentences]
    for bk, post in hmm.posteriors(model, hmm.buckets(sentences, n_words)):
        for b, i in enumerate(bk.index):
            log_px, gamma, _ = brute[i]
            assert post.loglik[b] == pytest.approx(log_px, rel=1e-10)
            np.testing.assert_allclose(post.gamma[:len(sentences[i]), b], gamma, rtol=1e-9, atol=1e-12)
    counts = hmm.e_step(model, hmm.buckets(sentences, n_words))
    assert counts.loglik == pytest.approx(sum(b[0] for b in brute), rel=1e-10)
    np.testing.assert_allclose(counts.trans, sum(b[2] for b in brute), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(counts.start, sum(b[1][0] for b in brute), rtol=1e-9, atol=1e-12)
    for s, (log_px, _, _) in zip(sentences, brute):
        engine = ll_model.hmm_log_likelihood(td.tensor(np.log(model.start)), td.tensor(np.log(model.trans)),
                                             td.tensor(model.log_emission()), s)
        assert engine.item() == pytest.approx(log_px, rel=1e-10)


def test_hmm_direct_gradient_is_the_central_differences_of_brute_force_log_px():
    """by_hand.log_likelihood_gradient (the Fisher identity from forward-backward's counts) = the central differences of
    Σ log p(x) summed over every path, in θ = (log π, log A, w)."""
    model = feature_hmm(states=2, vocabulary=3, features=2, scale=1.5, seed=4)
    sentences = [np.array([0, 2, 1]), np.array([1, 1]), np.array([2])]
    data = hmm.buckets(sentences, 3)
    grad = by_hand.log_likelihood_gradient(model, hmm.e_step(model, data))
    theta = hmm.pack(model)

    def f(th):
        m = hmm.unpack(th, model.F, model.n_states)
        return sum(oracles.hmm_posterior(m, s)[0] for s in sentences)
    eps = 1e-6
    numeric = np.array([(f(theta + eps * e) - f(theta - eps * e)) / (2 * eps) for e in np.eye(len(theta))])
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
