"""Layered models of binary latents, as the discrete estimators see them, and the one pass up q that samples and scores.

    p(x, h|θ) = p(h_L) Π_l p(h_l | h_{l+1}) p(x | h_1)      q(h|x, λ) = q(h_1 | x) Π_l q(h_{l+1} | h_l)
    q's layers: factorised Bernoulli, q(s | t) = Π_i Bernoulli(s_i; σ(a_i)),  a = the layer's logits of t

A model offers (`tinydgm.models.wake_sleep.HelmholtzMachine` does; `tests/probability/test_estimator_models.py`
has one with a Gaussian observation):

    model.layers                        (visible, h_1, ..., h_L): sizes
    model.recognition_logits(l, below)  logits of q(h_{l+1} | below) on the engine, below = x for l = 0 (any
                                        leading sample axes)
    model.log_joint_terms(x, hs)        [log p(x | h_1), log p(h_1 | h_2), ..., log p(h_L)] per example, Tensors
    model.log_q_terms(hs, x)            [log q(h_1 | x), ..., log q(h_L | h_{L-1})] per example      (sleep)
    model.dream(n, rng)                 (x̃, [h̃_1, ..., h̃_L]) ~ p(x, h|θ)                            (sleep)
    model.generative_parameters(), model.recognition_parameters()        θ and λ
and, for the relaxed and straight-through estimators, which feed continuous h to p:
    model.prior_logits()                logits of p(h_L)
    model.generative_logits(l, above)   logits of p(h_l | h_{l+1}) for l = 1..L-1, on the engine
    model.log_likelihood(x, h_1)        log p(x | h_1) per example, h_1 in [0, 1] (continuous) allowed
Binary states are 0/1 arrays, never part of a graph.
"""
from tinydgm import backend, numerics, ops
from tinydgm.tensor import unwrap


def bernoulli_sample(logits, rng, shape=None):
    """Binary units s = [u < σ(logits)], u ~ U(0, 1), as 0/1 arrays of logits' dtype (`shape`: with sample axes)."""
    u = rng.random(shape or logits.shape, dtype=logits.dtype)
    return (u < numerics.sigmoid(backend.get_array_module(logits), logits)).astype(logits.dtype)


def sample_q(model, x, rng, k=None):
    """h ~ q(h|x) and log q: ([h_1, ..., h_L], [log q(h_1 | x), ..., log q(h_L | h_{L-1})]) in one pass up q,
    each layer's logits computed once for the draw and the density (k: that many samples per image, axis 0)."""
    s, hs, terms = unwrap(x), [], []
    for l in range(len(model.layers) - 1):
        logits = model.recognition_logits(l, s)
        s = bernoulli_sample(logits.data, rng, (k,) + logits.shape if k and l == 0 else None)
        hs.append(s)
        terms.append(ops.sum(ops.bernoulli_log_prob(logits, s), axis=-1))
    return hs, terms
