"""Featurized HMM: forward-backward vs enumeration, padding, by hand = engine (the E-step's counts and the direct
gradient as gradients of log p(x)), EM, direct training."""
import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st
from scipy.special import logsumexp

import tinydgm as td
from tinydgm.models.loglinear import by_hand, model
from tinydgm.models.loglinear import hmm as H
from tinydgm.models.loglinear.features import conjoin, word_features


def random_hmm(rng, n_words, n_states, features="basic", scale=1.0):
    if features == "basic":
        F = sp.identity(n_words * n_states, format="csr")
    else:
        g = sp.csr_matrix((rng.random((n_words, 4)) < 0.5).astype(float))
        F = conjoin(sp.hstack([sp.identity(n_words), g], format="csr"), n_states)
    return model.random_hmm(F, n_states, rng, scale)


def sentences(rng, n_words, n, max_len):
    return [rng.integers(0, n_words, rng.integers(1, max_len + 1)) for _ in range(n)]


def brute_force(hmm, x):
    """log p(x), p(z_t | x) and Σ_t p(z_t, z_t+1 | x) by summing over all K^T paths."""
    K, le = hmm.n_states, hmm.log_emission()
    paths = np.array(list(itertools.product(range(K), repeat=len(x))))
    logp = np.log(hmm.start[paths[:, 0]]) + le[x, paths].sum(axis=1)
    for t in range(1, len(x)):
        logp += np.log(hmm.trans[paths[:, t - 1], paths[:, t]])
    loglik = logsumexp(logp)
    post = np.exp(logp - loglik)
    gamma = np.stack([np.bincount(paths[:, t], post, K) for t in range(len(x))])
    xi = np.zeros((K, K))
    for t in range(1, len(x)):
        np.add.at(xi, (paths[:, t - 1], paths[:, t]), post)
    return loglik, gamma, xi


hmms = st.tuples(st.integers(2, 4), st.integers(1, 3), st.integers(0, 2**16))


@settings(max_examples=20)
@given(hmms, st.lists(st.integers(1, 5), min_size=1, max_size=4))
def test_forward_backward_equals_enumeration(sizes, lengths):
    n_words, K, seed = sizes
    rng = np.random.default_rng(seed)
    hmm = random_hmm(rng, n_words, K)
    xs = [rng.integers(0, n_words, n) for n in lengths]
    bk = H.bucket(xs, range(len(xs)), n_words)
    post = H.forward_backward(hmm.start, hmm.trans, H.emission_table(hmm.log_emission()), bk)
    xi_sum = np.zeros((K, K))
    for b, x in enumerate(xs):
        loglik, gamma, xi = brute_force(hmm, x)
        np.testing.assert_allclose(post.loglik[b], loglik, rtol=1e-10)
        np.testing.assert_allclose(post.gamma[:len(x), b], gamma, atol=1e-10)
        assert np.all(post.gamma[len(x):, b] == 0)
        xi_sum += xi
    np.testing.assert_allclose(post.trans, xi_sum, atol=1e-10)


@settings(max_examples=15)
@given(hmms, st.integers(2, 12))
def test_padding_and_bucketing_change_nothing(sizes, n):
    n_words, K, seed = sizes
    rng = np.random.default_rng(seed)
    hmm = random_hmm(rng, n_words, K, "rich")
    xs = sentences(rng, n_words, n, 9)
    def counts_and_states(data):
        states, loglik = H.decode(hmm, data)
        return H.e_step(hmm, data), states, loglik
    together = counts_and_states([H.bucket(xs, range(n), n_words)])
    alone = [counts_and_states([H.bucket([x], [0], n_words)]) for x in xs]
    sorted_buckets = counts_and_states(H.buckets(xs, n_words, max_tokens=12))
    for counts, states, loglik in (together, sorted_buckets):
        np.testing.assert_allclose(counts.loglik, sum(c.loglik for c, _, _ in alone), rtol=1e-12)
        np.testing.assert_allclose(loglik, counts.loglik, rtol=1e-12)
        for field in ("start", "trans", "emit"):
            np.testing.assert_allclose(getattr(counts, field), sum(getattr(c, field) for c, _, _ in alone),
                                       atol=1e-10)
        np.testing.assert_array_equal(states, np.concatenate([s for _, s, _ in alone]))


@settings(max_examples=10)
@given(hmms, st.integers(1, 6))
def test_expected_counts_by_hand_equal_the_engine_gradient_of_log_likelihood(sizes, length):
    # log p(x) is the log-partition of p(z | x); its gradient in the log-potentials is the E-step.
    n_words, K, seed = sizes
    rng = np.random.default_rng(seed)
    hmm = random_hmm(rng, n_words, K)
    x = rng.integers(0, n_words, length)
    counts = H.e_step(hmm, [H.bucket([x], [0], n_words)])
    potentials = (np.log(hmm.start), np.log(hmm.trans), hmm.log_emission())
    g_start, g_trans, g_emit = td.grad(model.hmm_log_likelihood, argnums=(0, 1, 2))(*potentials, x)
    np.testing.assert_allclose(g_start, counts.start, atol=1e-10)
    np.testing.assert_allclose(g_trans, counts.trans, atol=1e-10)
    np.testing.assert_allclose(g_emit, counts.emit, atol=1e-10)
    np.testing.assert_allclose(model.hmm_log_likelihood(*map(td.tensor, potentials), x).data, counts.loglik)


@settings(max_examples=10)
@given(hmms, st.lists(st.integers(1, 5), min_size=1, max_size=3))
def test_direct_gradient_by_hand_equals_engine(sizes, lengths):
    # ∇θ Σ log p(x), θ = (log π, log A, w) as softmax logits and weights: the Fisher identity by hand = backprop
    n_words, K, seed = sizes
    rng = np.random.default_rng(seed)
    hmm = random_hmm(rng, n_words, K, "rich")
    xs = [rng.integers(0, n_words, n) for n in lengths]
    counts = H.e_step(hmm, [H.bucket(xs, range(len(xs)), n_words)])
    F_dense = hmm.F.toarray()

    def log_likelihood(theta):
        s, a, w = theta[:K], td.reshape(theta[K:K + K * K], (K, K)), theta[K + K * K:]
        e = td.reshape(td.tensor(F_dense) @ w, (-1, K))
        potentials = (s - td.logsumexp(s), a - td.logsumexp(a, axis=1, keepdims=True),
                      e - td.logsumexp(e, axis=0, keepdims=True))
        return sum(model.hmm_log_likelihood(*potentials, x) for x in xs)
    engine = td.grad(log_likelihood)(H.pack(hmm))
    np.testing.assert_allclose(by_hand.log_likelihood_gradient(hmm, counts), engine, rtol=1e-8, atol=1e-10)


@settings(max_examples=10)
@given(hmms, st.sampled_from([0.0, 0.3]))
def test_direct_gradient_equals_finite_differences(sizes, kappa):
    n_words, K, seed = sizes
    rng = np.random.default_rng(seed)
    hmm = random_hmm(rng, n_words, K, "rich")
    data = H.buckets(sentences(rng, n_words, 5, 4), n_words)
    theta = H.pack(hmm)
    f = lambda th: H.direct_objective(th, hmm.F, K, data, kappa)            # noqa: E731
    _, grad = f(theta)
    u = rng.normal(size=theta.shape)                                        # directional check
    eps = 1e-6
    numeric = (f(theta + eps * u)[0] - f(theta - eps * u)[0]) / (2 * eps)
    np.testing.assert_allclose(grad @ u, numeric, rtol=1e-5, atol=1e-7)


@settings(max_examples=10)
@given(hmms, st.sampled_from(["basic", "rich"]))
def test_em_never_decreases_the_marginal_likelihood(sizes, features):
    n_words, K, seed = sizes
    rng = np.random.default_rng(seed)
    hmm = random_hmm(rng, n_words, K, features)
    data = H.buckets(sentences(rng, n_words, 8, 6), n_words)
    history = []
    for _ in range(6):
        counts = H.e_step(hmm, data)
        history.append(counts.loglik)
        hmm = H.m_step(hmm, counts, kappa=0.0, multinomial=features == "basic")
    history.append(H.marginal_log_likelihood(hmm, data))
    assert np.all(np.diff(history) >= -1e-8 * np.abs(history).max()), history
    assert history[1] > history[0], history                 # a random start is no fixed point: EM moves


def test_direct_training_increases_the_objective():
    rng = np.random.default_rng(0)
    hmm = random_hmm(rng, 5, 2, "rich", scale=0.1)
    data = H.buckets(sentences(rng, 5, 20, 6), 5)
    before = -H.direct_objective(H.pack(hmm), hmm.F, 2, data, 0.1)[0]
    _, after = H.direct(hmm, data, 0.1, 20)
    assert after > before


def test_rich_features_are_one_line_templates():
    g, names = word_features(["Dogs", "ran", "x-1"], ["word", "suffix1", "suffix3", "capital",
                                                      "digit", "hyphen"])
    fired = {n for n, on in zip(names, np.asarray(g[2].todense()).ravel()) if on}
    assert fired == {"word=x-1", "suffix1=1", "hyphen", "digit"}
    assert "capital" in {n for n, on in zip(names, np.asarray(g[0].todense()).ravel()) if on}
    F = conjoin(g, 3)
    assert F.shape == (9, 3 * len(names)) and F.nnz == 3 * g.nnz


# ---- the M-step against closed forms built from enumerated posteriors --------------------------

def multinomial_hmm(rng, n_words, K):
    """A plain HMM with Dirichlet(1) π, rows of A and emission columns B[:, z] = p(x | z)."""
    B = rng.dirichlet(np.ones(n_words), size=K).T                          # (|X|, K), columns sum to 1
    F = sp.identity(n_words * K, format="csr")                             # w = log B, x-major
    return model.HMM(rng.dirichlet(np.ones(K)), rng.dirichlet(np.ones(K), size=K), np.log(B).ravel(), F), B


def enumerated_counts(start, trans, B, xs):
    """Expected counts of π, A and B under p(z | x), each p(z | x) summed over all K^T paths z."""
    K = len(start)
    e_start, e_trans, e_emit = np.zeros(K), np.zeros((K, K)), np.zeros((B.shape[0], K))
    for x in xs:
        paths = list(itertools.product(range(K), repeat=len(x)))
        joint = np.array([start[z[0]] * np.prod([trans[z[t - 1], z[t]] for t in range(1, len(x))])
                          * np.prod([B[x[t], z[t]] for t in range(len(x))]) for z in paths])
        post = joint / joint.sum()                                         # p(z | x)
        for z, p in zip(paths, post):
            e_start[z[0]] += p
            for t in range(len(x)):
                e_emit[x[t], z[t]] += p
            for t in range(1, len(x)):
                e_trans[z[t - 1], z[t]] += p
    return e_start, e_trans, e_emit


def tiny_corpus(rng, n_words):
    """2 to 4 sentences of length 1 to 4, at least one of length 4 (so every state has transitions)."""
    xs = sentences(rng, n_words, int(rng.integers(1, 4)), 4)
    return xs + [rng.integers(0, n_words, 4)]


@pytest.mark.parametrize("seed", range(6))
def test_multinomial_m_step_is_normalised_enumerated_counts(seed):
    rng = np.random.default_rng(seed)
    n_words, K = 3 + seed % 2, 2 + seed % 2
    hmm, B = multinomial_hmm(rng, n_words, K)
    xs = tiny_corpus(rng, n_words)
    e_start, e_trans, e_emit = enumerated_counts(hmm.start, hmm.trans, B, xs)
    new = H.m_step(hmm, H.e_step(hmm, H.buckets(xs, n_words)), multinomial=True)
    np.testing.assert_allclose(new.start, e_start / e_start.sum(), atol=1e-10)         # π ∝ Σ γ_1
    np.testing.assert_allclose(new.trans, e_trans / e_trans.sum(axis=1)[:, None], atol=1e-10)  # A ∝ Σ ξ
    np.testing.assert_allclose(np.exp(new.log_emission()), e_emit / e_emit.sum(axis=0), atol=1e-10)


@pytest.mark.parametrize("features", ["basic", "rich"])
@pytest.mark.parametrize("seed", range(4))
def test_every_m_step_gives_distributions(features, seed):
    rng = np.random.default_rng(seed)
    n_words, K = 4, 2 + seed % 2
    hmm = random_hmm(rng, n_words, K, features)
    data = H.buckets(sentences(rng, n_words, 6, 5) + [rng.integers(0, n_words, 3)], n_words)
    for _ in range(2):
        hmm = H.m_step(hmm, H.e_step(hmm, data), kappa=0.1 * (features == "rich"),
                       multinomial=features == "basic")
        assert np.all(hmm.start >= 0) and np.all(hmm.trans >= 0)
        np.testing.assert_allclose(hmm.start.sum(), 1, atol=1e-12)
        np.testing.assert_allclose(hmm.trans.sum(axis=1), np.ones(K), atol=1e-12)
        np.testing.assert_allclose(np.exp(hmm.log_emission()).sum(axis=0), np.ones(K), atol=1e-12)


@pytest.mark.parametrize("features", ["basic", "rich"])
@pytest.mark.parametrize("T", [1, 2, 3])
def test_probabilities_of_all_sequences_of_one_length_sum_to_one(features, T):
    rng = np.random.default_rng(T)
    n_words, K = 3, 3
    hmm = random_hmm(rng, n_words, K, features)
    xs = [np.array(x) for x in itertools.product(range(n_words), repeat=T)]     # all |X|^T sequences
    one_by_one = [H.marginal_log_likelihood(hmm, [H.bucket([x], [0], n_words)]) for x in xs]
    np.testing.assert_allclose(np.exp(one_by_one).sum(), 1, atol=1e-10)
    together = H.forward_backward(hmm.start, hmm.trans, H.emission_table(hmm.log_emission()),
                                  H.bucket(xs, range(len(xs)), n_words))
    np.testing.assert_allclose(np.exp(together.loglik).sum(), 1, atol=1e-10)


def expected_complete_loglik(w, F, counts, kappa):
    """ℓ(w) = Σ_{x,z} e(x, z) log p(x | z, w) − κ‖w‖², p(x | z, w) ∝ exp(wᵀf(x, z)) over x."""
    s = (F @ w).reshape(counts.shape)
    return (counts * (s - logsumexp(s, axis=0))).sum() - kappa * w @ w


@pytest.mark.parametrize("kappa", [0.05, 0.5])
@pytest.mark.parametrize("seed", range(3))
def test_featurized_m_step_reaches_its_optimum(seed, kappa):
    rng = np.random.default_rng(seed)
    n_words, K = 5, 3
    hmm = random_hmm(rng, n_words, K, "rich")
    counts = H.e_step(hmm, H.buckets(sentences(rng, n_words, 8, 5), n_words))
    new = H.m_step(hmm, counts, kappa=kappa, maxiter=1000)
    # ∇ℓ = Σ_{x,z} e(x,z) f(x,z) − Σ_z e(z) Σ_x p(x|z,w) f(x,z) − 2κw, written out here
    p = np.exp(new.log_emission())
    F = hmm.F.toarray().reshape(n_words, K, -1)
    observed = np.einsum("xz,xzd->d", counts.emit, F)
    expected = np.einsum("z,xz,xzd->d", counts.emit.sum(axis=0), p, F)
    grad = observed - expected - 2 * kappa * new.w
    assert np.abs(grad).max() < 1e-4 * np.abs(observed).max(), grad
    before = expected_complete_loglik(hmm.w, hmm.F, counts.emit, kappa)
    after = expected_complete_loglik(new.w, hmm.F, counts.emit, kappa)
    assert after > before + 1e-3, (before, after)
