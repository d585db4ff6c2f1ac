"""The discrete estimators work on any model with the interface of `tinydgm.estimators.discrete`, not only on the
Helmholtz machine: here a binary latent layer with a Gaussian observation,

    p(h) = Π_i Bernoulli(h_i; σ(a_i)),  p(x | h) = N(x; h W + b, I),  q(h | x) = Π_i Bernoulli(h_i; σ(x V + c)),

small enough (3 binary units) to enumerate (tinydgm.testing.oracles): each unbiased estimator's mean gradient equals
the exact gradient of the ELBO (or of L_K) by `assert_unbiased` (false-alarm rate 1e-4 for the whole call), and every
registered discrete estimator trains the model."""
import math

import numpy as np
import pytest

import tinydgm as td
from tinydgm import estimators, nn
from tinydgm.estimators import discrete
from tinydgm.testing import StatisticalAssertionError, assert_unbiased, oracles

D, H = 2, 3


class GaussianBinary(nn.Module):
    """One layer of binary latents h (H units) over a Gaussian observation x (D dimensions, unit variance)."""

    def __init__(self, rng, dtype=np.float64):
        self.layers = (D, H)
        self.prior = nn.Parameter(rng.normal(0, 0.5, H).astype(dtype))
        self.generative = [nn.Linear(H, D, rng=rng, dtype=dtype)]
        self.recognition = [nn.Linear(D, H, rng=rng, dtype=dtype)]

    def generative_parameters(self):
        return [self.prior, *self.generative[0].parameters()]

    def recognition_parameters(self):
        return self.recognition[0].parameters()

    def recognition_logits(self, l, below):
        return self.recognition[l](below)

    def prior_logits(self):
        return self.prior

    def generative_logits(self, l, above):
        raise IndexError("one latent layer: no generative layer between latents")

    def log_likelihood(self, x, h1):
        mean = self.generative[0](h1)
        d = td.tensor(x) - mean
        return td.sum(d * d, axis=-1) * -0.5 - 0.5 * D * math.log(2 * math.pi)

    def log_joint_terms(self, x, hs):
        return [self.log_likelihood(x, hs[0]), td.sum(td.bernoulli_log_prob(self.prior, hs[0]), axis=-1)]

    def log_q_terms(self, hs, x):
        return [td.sum(td.bernoulli_log_prob(self.recognition_logits(0, x), hs[0]), axis=-1)]

    def dream(self, n, rng):
        h = discrete.bernoulli_sample(np.broadcast_to(self.prior.data, (n, H)), rng)
        x = h @ self.generative[0].weight.data + self.generative[0].bias.data + rng.standard_normal((n, D))
        return x, [h]


X = np.array([[0.5, -1.0], [1.5, 0.3], [-0.2, 0.8]])


def model(seed=0):
    return GaussianBinary(np.random.default_rng(seed))


def exact_elbo(m, x):
    """mean_n Σ_h q(h|x_n) [log p(x_n, h) − log q(h|x_n)], enumerated (differentiable in θ and λ)."""
    return oracles.elbo(m, x)


def exact_bound(m, x, k):
    """mean_n L_K(x_n), enumerated over the multisets of K states."""
    return oracles.iwae_bound(m, x, k)


def gradient(m, scalar):
    m.zero_grad()
    scalar.backward()
    return np.concatenate([p.grad.ravel() for p in m.parameters()])


def draws(m, estimator, n, seed):
    rng = np.random.default_rng(seed)
    return np.stack([gradient(m, estimator.objective(m, X, rng).surrogate) for _ in range(n)])


@pytest.mark.parametrize("name, exact", [("reinforce", exact_elbo), ("nvil", exact_elbo),
                                         ("vimco", lambda m, x: exact_bound(m, x, 2))])
def test_an_unbiased_estimator_is_unbiased_on_another_model(name, exact):
    """Mean of 2,000 gradient draws = the exact gradient (all 20 coordinates at once: |z| < 4.6, below the 5 SE of
    before; a bias of 25% of ‖exact‖ is caught) (NVIL with its baseline and statistics held fixed, so that the
    estimate it makes is of the plain ELBO gradient)."""
    m = model(1)
    kw = {"k": 2} if name == "vimco" else {}
    estimator = estimators.make(name, m, rng=0, **kw)
    if name == "nvil":
        estimator.steps = 1                                         # c = 0, v = 1: no centring, no scaling
        estimator.objective = lambda mm, x, r, f=estimator.objective: f(mm, x, r, update=False)
    g = draws(m, estimator, 2000, seed=3)
    assert_unbiased(g, gradient(m, exact(m, X)), alpha=1e-4, detect=0.25, what=name)


def test_the_check_catches_a_wrong_sign():
    """The check above can fail: REINFORCE with the learning signal's sign flipped is evidence of a bias."""
    m = model(1)
    est = estimators.Reinforce()
    rng = np.random.default_rng(3)

    def flipped():
        hs, q_terms = discrete.sample_q(m, X, rng)
        log_p, log_q = estimators.total(m.log_joint_terms(X, hs)[::-1]), estimators.total(q_terms)
        return td.mean(log_p) + estimators.score_function_surrogate(-(log_p.data - log_q.data), log_q)
    g = np.stack([gradient(m, flipped()) for _ in range(2000)])
    with pytest.raises(StatisticalAssertionError, match="evidence of a bias"):
        assert_unbiased(g, gradient(m, exact_elbo(m, X)), alpha=1e-4, detect=0.25)
    assert est.claim == "unbiased"


@pytest.mark.parametrize("name", estimators.names("discrete"))
def test_every_discrete_estimator_trains_another_model(name):
    """200 steps of each registered discrete estimator (Adam) on data drawn from a known model raise the exact
    ELBO of a fresh model (-3.32 nats per point) by more than 0.3 (each gains 0.36-0.38 here; zero gradients gain 0)."""
    truth = model(7)
    data, _ = truth.dream(64, np.random.default_rng(8))
    m = model(2)
    before = exact_elbo(m, data).item()
    opts = {"k": 3} if "k" in estimators.options(name) else {}
    est = estimators.make(name, m, rng=0, **opts)
    optimizers = [td.optim.Adam(m.generative_parameters(), lr=0.02), td.optim.Adam(m.recognition_parameters(), lr=0.02)]
    if est.parameters():
        optimizers.append(td.optim.Adam(est.parameters(), lr=0.02))
    rng = np.random.default_rng(9)
    for step in range(200):
        out = est.step(m, data[(step * 16) % 64:][:16], optimizers, rng)
        assert all(np.isfinite(v) for v in out.values()), (name, step, out)
    after = exact_elbo(m, data).item()
    assert after > before + 0.3, (name, before, after)
