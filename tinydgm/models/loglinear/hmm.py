"""The featurized HMM's inference and training (`model.HMM`; Berg-Kirkpatrick et al. 2010, section 5.1).

    p(x, z) = π(z_1) Π_t A(z_{t-1}, z_t) Π_t p(x_t | z_t, w),   p(x | z, w) log-linear in f(x, z)

Transitions are multinomial. With indicator features only (F = identity) the emissions are the
plain multinomial HMM, whose M-step has a closed form. Two ways to train:
  em      E-step (forward-backward), then M-step: closed form for π and A, L-BFGS for w;
  direct  L-BFGS on the marginal log-likelihood itself; its gradient has the same form,
          observed minus expected features, with the posterior counts of the E-step (section 3).

The E-step runs over buckets of sentences of similar length, padded to a common length and held
time-major, (T, B): one loop over time steps per bucket, each step a (B, K) @ (K, K) product.
"""
from collections import namedtuple

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp

from tinydgm.models.loglinear.by_hand import log_likelihood_gradient, m_step_weights, multinomial_m_step
from tinydgm.models.loglinear.lbfgs import LBFGS
from tinydgm.models.loglinear.model import HMM


# ---- data: sentences in buckets of similar length -------------------------------------------

Bucket = namedtuple("Bucket", ["words", "mask", "index", "tokens"])
# words, mask: (T, B) word ids and 1 where a word is, 0 on padding; index: the sentences' positions
# in the corpus; tokens: sparse (|X|, T·B) with a 1 at (x_t, t·B + b), so tokens @ γ counts words.


def bucket(sentences, index, n_words):
    """One padded, time-major bucket of integer sentences."""
    T, B = max(len(s) for s in sentences), len(sentences)
    words, mask = np.zeros((T, B), dtype=np.int64), np.zeros((T, B))
    for b, s in enumerate(sentences):
        words[:len(s), b], mask[:len(s), b] = s, 1
    where = np.flatnonzero(mask.ravel())
    tokens = sp.csr_matrix((np.ones(len(where)), (words.ravel()[where], where)),
                           shape=(n_words, T * B))
    return Bucket(words, mask, np.asarray(index), tokens)


def buckets(sentences, n_words, max_tokens=16384):
    """Sort sentences by length and cut them into buckets of at most ~max_tokens padded tokens."""
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    out, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end - start + 1) * len(sentences[order[end]]) <= max_tokens:
            end += 1
        idx = order[start:end]
        out.append(bucket([sentences[i] for i in idx], idx, n_words))
        start = end
    return out


# ---- E-step: forward-backward with scaling (Rabiner 1989, section V.A) -----------------------

Posteriors = namedtuple("Posteriors", ["loglik", "gamma", "start", "trans"])
# loglik (B,) log p(x); gamma (T, B, K) p(z_t | x), 0 on padding; start (K,) Σ_b γ_1;
# trans (K, K) Σ_{b,t} p(z_t = i, z_{t+1} = j | x).


def emission_table(log_emit):
    """b(x, z) = p(x | z) / max_z p(x | z), and s(x) = log max_z p(x | z): scaled once per word."""
    shift = log_emit.max(axis=1, keepdims=True)
    return np.exp(log_emit - shift), shift[:, 0]


def forward_backward(start, trans, emit, bk):
    """Posterior marginals of one bucket by the scaled forward-backward recursions.

    emit = emission_table(log p(x | z)): b_t = b(x_t, ·) is p(x_t | ·) up to the factor exp s(x_t)."""
    T, B = bk.words.shape
    m = bk.mask[..., None]
    table, shift = emit
    b = table[bk.words]                                           # (T, B, K) b_t(z) ∝ p(x_t | z)
    alpha, beta, c = np.empty_like(b), np.empty_like(b), np.ones((T, B, 1))
    a = start * b[0]
    c[0] = a.sum(axis=1, keepdims=True)
    alpha[0] = a / c[0]
    for t in range(1, T):
        a = (alpha[t - 1] @ trans) * b[t]                         # α_t ∝ (α_{t-1} A) ⊙ b_t
        c[t] = np.where(m[t], a.sum(axis=1, keepdims=True), 1.0)  # c_t = p(x_t | x_<t)
        alpha[t] = np.where(m[t], a / c[t], alpha[t - 1])         # padding: keep α
    nxt = b * m / c                                               # b_t / c_t, 0 on padding
    beta[T - 1] = 1.0
    for t in range(T - 2, -1, -1):                                # β_t = A (b_{t+1} ⊙ β_{t+1}) / c_{t+1}
        beta[t] = np.where(m[t + 1], (nxt[t + 1] * beta[t + 1]) @ trans.T, 1.0)
    gamma = alpha * beta * m                                      # γ_t = α_t ⊙ β_t
    loglik = np.log(c)[..., 0].sum(axis=0) + (shift[bk.words] * bk.mask).sum(axis=0)  # Σ_t log c_t + s(x_t)
    K = len(start)                                                # ξ = A ⊙ Σ_t α_tᵀ (b ⊙ β)_{t+1} / c_{t+1}
    xi = trans * (alpha[:-1].reshape(-1, K).T @ (nxt[1:] * beta[1:]).reshape(-1, K))
    return Posteriors(loglik, gamma, gamma[0].sum(axis=0), xi)


Counts = namedtuple("Counts", ["loglik", "start", "trans", "emit"])


def posteriors(hmm, data):
    """(bucket, Posteriors) for each bucket of `data`, by forward-backward."""
    emit = emission_table(hmm.log_emission())
    return ((bk, forward_backward(hmm.start, hmm.trans, emit, bk)) for bk in data)


def e_step(hmm, data):
    """Expected counts over all buckets: start (K,), trans (K, K), emit (|X|, K), and log p(data)."""
    K, n_words = hmm.n_states, hmm.F.shape[0] // hmm.n_states
    counts = Counts(0.0, np.zeros(K), np.zeros((K, K)), np.zeros((n_words, K)))
    for bk, post in posteriors(hmm, data):
        counts = Counts(counts.loglik + post.loglik.sum(), counts.start + post.start,
                        counts.trans + post.trans,
                        counts.emit + bk.tokens @ post.gamma.reshape(-1, K))
    return counts


def decode(hmm, data):
    """Each token's posterior-argmax state, the sentences in corpus order, and log p(data)."""
    states, loglik = {}, 0.0
    for bk, post in posteriors(hmm, data):
        loglik += post.loglik.sum()
        best = post.gamma.argmax(axis=2)
        for b, i in enumerate(bk.index):
            states[i] = best[:int(bk.mask[:, b].sum()), b]
    return np.concatenate([states[i] for i in sorted(states)]), loglik


def marginal_log_likelihood(hmm, data):
    """log p(data) = Σ_sentences log Σ_z p(x, z)."""
    return e_step(hmm, data).loglik


# ---- M-step ------------------------------------------------------------------------------------

def m_step(hmm, counts, kappa=0.0, maxiter=50, multinomial=False):
    """π and A: normalised expected counts. Emissions: closed form if multinomial, else L-BFGS."""
    start = counts.start / counts.start.sum()
    trans = counts.trans / counts.trans.sum(axis=1, keepdims=True)
    if multinomial:                            # F = identity, so w = log p(x | z)
        with np.errstate(divide="ignore"):
            w = np.log(multinomial_m_step(counts.emit)).ravel()
    else:
        w = m_step_weights(hmm.w, hmm.F, counts.emit, kappa, maxiter)
    return HMM(start, trans, w, hmm.F)


# ---- the direct gradient: L-BFGS on the marginal log-likelihood (section 3) -----------------

def pack(hmm):
    """θ = (log π, log A, w) as one vector: π and A as softmax logits."""
    return np.concatenate([np.log(hmm.start), np.log(hmm.trans).ravel(), hmm.w])


def unpack(theta, F, K):
    """The HMM whose parameters θ are: softmax of the logits, and w."""
    s, a, w = theta[:K], theta[K:K + K * K].reshape(K, K), theta[K + K * K:]
    return HMM(np.exp(s - logsumexp(s)), np.exp(a - logsumexp(a, axis=1, keepdims=True)), w, F)


def direct_objective(theta, F, K, data, kappa):
    """−[log p(data | θ) − κ‖θ‖²] and its gradient: the E-step's counts in `by_hand.log_likelihood_gradient`
    (the Fisher identity, observed minus expected with posterior counts)."""
    hmm = unpack(theta, F, K)
    counts = e_step(hmm, data)
    grad = log_likelihood_gradient(hmm, counts) - 2 * kappa * theta
    return -(counts.loglik - kappa * theta @ theta), -grad


def direct_optimizer(hmm, data, kappa, m=10, state=None):
    """An L-BFGS on −direct_objective, started at the HMM's θ, or going on from an earlier `state()`
    (its memory too, so a resumed run is bit for bit an uninterrupted one); `.run(n)` goes on where it stopped."""
    K, F = hmm.n_states, hmm.F

    def fun(theta):
        return direct_objective(theta, F, K, data, kappa)
    return LBFGS(fun, pack(hmm), m) if state is None else LBFGS.from_state(fun, state)


def direct(hmm, data, kappa, iterations):
    """Maximise log p(data | θ) − κ‖θ‖² by L-BFGS: the HMM and the objective it reaches."""
    opt = direct_optimizer(hmm, data, kappa)
    theta, value = opt.run(iterations)
    return unpack(theta, hmm.F, hmm.n_states), -value
