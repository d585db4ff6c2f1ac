"""Small models with exact answers: sigmoid belief nets small enough to enumerate, and a linear-Gaussian model
whose posterior, log p(x) and ELBO have closed forms.

    sigmoid belief net   p(x, h) = p(h_L) Π_l p(h_l | h_{l+1}) p(x | h_1), binary units       (Neal 1992)
                         a `HelmholtzMachine` (with its recognition net q(h|x)), parameters drawn U(−scale, scale)
    linear Gaussian      p(z) = N(0, I_d),  p(x|z) = N(z W + b, s² I_D),  q(z|x) = N(x A + c, diag σ²)
                         (factor analysis with isotropic noise: Tipping & Bishop 1999)
                         log p(x) = log N(x; b, Wᵀ W + s² I),  p(z|x) = N((x − b) Wᵀ S / s², S),
                         S = (I + W Wᵀ / s²)⁻¹
    feature-rich mixture p(x) = Σ_z p(z) p(x | z, w),  p(x | z, w) ∝ exp(wᵀ f(x, z))          (Berg-Kirkpatrick et al.
    featurized HMM       p(x, z) = π(z_1) Π_t A(z_{t-1}, z_t) Π_t p(x_t | z_t, w)               2010), the package's
                         f(x, z) = g(x) ⊗ e_z, g(x) = [word identity, `features` random bits]    `models.loglinear`
"""
import math

import numpy as np
import scipy.sparse as sp

import tinydgm as td
from tinydgm import backend, estimators, nn
from tinydgm.distributions import Normal, StandardNormal
from tinydgm.models.loglinear import HMM, Mixture
from tinydgm.models.loglinear.features import conjoin
from tinydgm.models.wake_sleep import HelmholtzMachine

LOG_2PI = math.log(2 * math.pi)


# =============================================================================================
# Sigmoid belief nets
# =============================================================================================

class SigmoidBeliefNet(HelmholtzMachine):
    """A HelmholtzMachine built by `sigmoid_belief_net`, whose repr is the call that rebuilds it."""

    def __repr__(self):
        return f"sigmoid_belief_net(layers={self.layers}, scale={self.scale!r}, seed={self.seed})"


def sigmoid_belief_net(layers, scale=1.0, seed=0, dtype=np.float64):
    """A Helmholtz machine (p and q) with `layers` = (visible, h_1, ..., h_L), every parameter U(−scale, scale)."""
    model = SigmoidBeliefNet(layers, rng=np.random.default_rng(seed), dtype=dtype)
    model.scale, model.seed = float(scale), int(seed)
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data[...] = backend.asarray(rng.uniform(-scale, scale, p.shape), dtype=dtype)
    return model


# =============================================================================================
# The linear-Gaussian model: the VAE's interface with closed forms
# =============================================================================================

class LinearGaussian(nn.Module):
    """p(z) = N(0, I_d), p(x|z) = N(z W + b, s² I_D) (θ = W, b, log s) with q(z|x) = N(x A + c, diag σ²)
    (λ = A, c, log σ).  It offers the VAE's `elbo`, `iwae_bound`, `score_function_elbo` (so the continuous
    estimators train it) and the closed forms `closed_form_elbo`, `closed_form_log_px`, `posterior`."""

    def __init__(self, latent=2, observed=3, scale=1.0, seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.latent, self.observed, self.scale, self.seed = int(latent), int(observed), float(scale), int(seed)

        def param(shape):
            return nn.Parameter(backend.asarray(rng.uniform(-scale, scale, shape), dtype=dtype))
        self.W, self.b, self.log_s = param((latent, observed)), param((observed,)), param(())
        self.A, self.c, self.log_sigma = param((observed, latent)), param((latent,)), param((latent,))

    def __repr__(self):
        return f"LinearGaussian(latent={self.latent}, observed={self.observed}, scale={self.scale!r}, seed={self.seed})"

    def generative_parameters(self):
        """θ: W, b, log s."""
        return [self.W, self.b, self.log_s]

    def recognition_parameters(self):
        """λ: A, c, log σ."""
        return [self.A, self.c, self.log_sigma]

    # -- densities on the engine -------------------------------------------------------------------
    def prior(self, dtype):
        """p(z) = N(0, I_d)."""
        return StandardNormal(self.latent, dtype)

    def encode(self, x):
        """q(z|x) = N(x A + c, diag σ²), one row per example."""
        loc = td.tensor(x) @ self.A + self.c
        return Normal(loc, 0 * loc + td.exp(self.log_sigma), validate_args=False)

    def log_likelihood(self, x, z):
        """log p(x|z) per latent vector (z's leading axes broadcast against x)."""
        r = td.tensor(x) - (z @ self.W + self.b)
        s2 = td.exp(2 * self.log_s)
        return -0.5 * td.sum(r * r, axis=-1) / s2 - self.observed * (self.log_s + 0.5 * LOG_2PI)

    # -- the VAE's interface (tinydgm.estimators.reparam, .score_function) -------------------------
    def elbo(self, x, rng=None):
        """Per-example one-sample ELBO, z = μ + σ ε reparameterised, KL(q ‖ p(z)) in closed form."""
        q = self.encode(x)
        return estimators.elbo(lambda z: self.log_likelihood(x, z), q, self.prior(q.loc.dtype), rng=rng)

    def iwae_bound(self, x, k, rng=None):
        """Per-example L_k from k reparameterised draws z_j ~ q(z|x) (Burda et al. 2016, eq. 8)."""
        q = self.encode(x)
        z = q.rsample((k,), rng=rng)
        log_pz, log_qz = td.sum(self.prior(z.dtype).log_prob(z), axis=-1), td.sum(q.log_prob(z), axis=-1)
        log_w = self.log_likelihood(x, z) + log_pz - log_qz
        return estimators.iwae_bound(log_w, axis=0)

    def score_function_elbo(self, x, rng=None, baseline=None):
        """Per-example one-sample ELBO whose gradient in λ is the score function's (as `VAE.score_function_elbo`)."""
        q = self.encode(x)
        z = q.sample(rng=rng)
        log_lik = self.log_likelihood(x, z)
        log_pz = td.sum(self.prior(z.dtype).log_prob(z), axis=-1)
        log_qz = td.sum(q.log_prob(z), axis=-1)
        f = log_lik.data + log_pz.data - log_qz.data
        b = None if baseline is None else backend.get_array_module(f).asarray(baseline, dtype=f.dtype)
        s = estimators.score_function_surrogate(f[None], log_qz[None], baseline=b)
        return log_lik + td.tensor(log_pz.data - log_qz.data) + (s - s.detach()) / f.size

    # -- closed forms --------------------------------------------------------------------------------
    def closed_form_elbo(self, x):
        """mean over x of ELBO(q(z|x)), on the engine (differentiable in θ and λ):
            E_q[log p(x|z)] = −D/2 log 2π − D log s − (‖x − m W − b‖² + Σ_j σ_j² ‖W_j‖²) / 2s²
            KL(q ‖ N(0, I)) = ½ Σ_j (σ_j² + m_j² − 1 − 2 log σ_j)."""
        m = td.tensor(x) @ self.A + self.c
        var = td.exp(2 * self.log_sigma)
        r = td.tensor(x) - (m @ self.W + self.b)
        spread = td.sum(var * td.sum(self.W * self.W, axis=1))                     # Σ_j σ_j² ‖W_j‖²
        expected = -(td.sum(r * r, axis=-1) + spread) / (2 * td.exp(2 * self.log_s)) \
            - self.observed * (self.log_s + 0.5 * LOG_2PI)
        kl = 0.5 * td.sum(var + m * m - 1 - 2 * self.log_sigma, axis=-1)
        return td.mean(expected - kl)

    def _host(self):
        """W, b and s² as NumPy float64 (no graph)."""
        W, b = (np.asarray(backend.to_numpy(p.data), dtype=np.float64) for p in (self.W, self.b))
        return W, b, math.exp(2 * float(backend.to_numpy(self.log_s.data)))

    def posterior(self, x):
        """(mean (B, d), covariance S (d, d)) of p(z|x) in NumPy float64: S = (I + W Wᵀ/s²)⁻¹, mean (x − b) Wᵀ S/s²."""
        W, b, s2 = self._host()
        cov = np.linalg.inv(np.eye(self.latent) + W @ W.T / s2)
        return (np.asarray(backend.to_numpy(td.tensor(x).data), dtype=np.float64) - b) @ W.T @ cov / s2, cov

    def closed_form_log_px(self, x):
        """mean over x of log p(x), on the engine, as the ELBO of the exact posterior q* = N(μ*, S) held fixed:
        log p(x) = max_q ELBO(q, θ) is attained at q*, so its value is log p(x) and, by the envelope theorem,
        its gradient in θ is ∇θ log p(x); λ does not enter it.  For full-covariance q = N(μ, S):
            E_q[log p(x|z)] = −D/2 log 2π − D log s − (‖x − μ W − b‖² + tr(Wᵀ S W)) / 2s²
            KL(q ‖ N(0, I)) = ½ (tr S + ‖μ‖² − d − log det S)."""
        mu, cov = self.posterior(x)
        xp = backend.get_array_module(self.W.data)
        mu_t, cov_t = td.tensor(xp.asarray(mu)), td.tensor(xp.asarray(cov))
        r = td.tensor(x) - (mu_t @ self.W + self.b)
        spread = td.sum(cov_t * (self.W @ td.transpose(self.W)))                  # tr(Wᵀ S W) = Σ_jk S_jk (W Wᵀ)_jk
        expected = -(td.sum(r * r, axis=-1) + spread) / (2 * td.exp(2 * self.log_s)) \
            - self.observed * (self.log_s + 0.5 * LOG_2PI)
        kl = 0.5 * (np.trace(cov) + (mu * mu).sum(-1) - self.latent - np.linalg.slogdet(cov)[1])
        return td.mean(expected - td.tensor(xp.asarray(kl)))

    def log_px(self, x):
        """log p(x) per example in NumPy float64, from the marginal N(x; b, Wᵀ W + s² I) directly (a cross-check)."""
        W, b, s2 = self._host()
        C = W.T @ W + s2 * np.eye(self.observed)
        r = np.asarray(backend.to_numpy(td.tensor(x).data), dtype=np.float64) - b
        quad = np.einsum("bi,ij,bj->b", r, np.linalg.inv(C), r)
        return -0.5 * (self.observed * LOG_2PI + np.linalg.slogdet(C)[1] + quad)


def linear_gaussian(latent=2, observed=3, scale=1.0, seed=0, dtype=np.float64):
    """A LinearGaussian with every parameter U(−scale, scale) from `seed`."""
    return LinearGaussian(latent, observed, scale, seed, dtype)


# =============================================================================================
# Feature-rich log-linear models: the mixture and the HMM of `tinydgm.models.loglinear`
# =============================================================================================

def word_features(outcomes, features, n_states, rng):
    """f(x, z) = g(x) ⊗ e_z (sparse, rows x-major as the package's), g(x) = [e_x, `features` random 0/1 bits]."""
    g = np.concatenate([np.eye(outcomes), rng.integers(0, 2, (outcomes, features))], axis=1)
    return conjoin(sp.csr_matrix(g), n_states)


class _Rebuilt:
    """A model whose repr is the call that rebuilds it (`self.call`, set by the function that built it)."""

    def __repr__(self):
        return self.call


class FeatureMixture(_Rebuilt, Mixture):
    """A Mixture built by `feature_mixture`, whose repr is the call that rebuilds it."""


def feature_mixture(states=2, outcomes=3, features=1, scale=1.0, seed=0):
    """A feature-rich mixture over `outcomes` values and `states` classes: log p(z) and w ~ U(−scale, scale)."""
    rng = np.random.default_rng(seed)
    F = word_features(outcomes, features, states, rng)
    logits = rng.uniform(-scale, scale, states)
    model = FeatureMixture(logits - np.logaddexp.reduce(logits), rng.uniform(-scale, scale, F.shape[1]), F)
    model.call = (f"feature_mixture(states={states}, outcomes={outcomes}, features={features}, scale={scale!r}, "
                  f"seed={seed})")
    return model


class FeatureHMM(_Rebuilt, HMM):
    """An HMM built by `feature_hmm`, whose repr is the call that rebuilds it."""


def feature_hmm(states=2, vocabulary=3, features=1, scale=1.0, seed=0):
    """A featurized HMM: π and each row of A a softmax of U(−scale, scale) logits, w ~ U(−scale, scale)."""
    rng = np.random.default_rng(seed)
    F = word_features(vocabulary, features, states, rng)

    def softmax(*shape):
        a = rng.uniform(-scale, scale, shape)
        return np.exp(a) / np.exp(a).sum(-1, keepdims=True)
    model = FeatureHMM(softmax(states), softmax(states, states), rng.uniform(-scale, scale, F.shape[1]), F)
    model.call = (f"feature_hmm(states={states}, vocabulary={vocabulary}, features={features}, scale={scale!r}, "
                  f"seed={seed})")
    return model
