"""Feature-rich log-linear models (Berg-Kirkpatrick, Bouchard-Côté, DeNero & Klein 2010, "Painless
unsupervised learning with features"), each on arrays and on the engine:

    categorical  p(x | z, w) = exp(wᵀ f(x, z)) / Σ_x' exp(wᵀ f(x', z))          (section 2)
    mixture      p(x) = Σ_z p(z) p(x | z, w)                                    (the slides' model)
    HMM          p(x, z) = π(z_1) Π_t A(z_{t-1}, z_t) Π_t p(x_t | z_t, w)       (section 5.1)

over an enumerable X, with sparse features f(x, z) stacked as the rows of F, x-major: row x·|Z| + z.
The engine versions (dense F, small models) are Tensors whose gradients are what `by_hand.py` derives:
∇ log-partition = expected features, ∇ℓ(w) = observed − expected features, ∇ log p(x) = the E-step's
counts.  EM and the direct gradient are in `mixture.py` and `hmm.py`.
"""
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp

import tinydgm as td


# ---- the log-linear categorical -----------------------------------------------------------------

def log_conditional(w, F, n_states):
    """log p(x | z, w) as an (|X|, |Z|) array: scores wᵀf(x, z) normalised over x."""
    s = (F @ w).reshape(-1, n_states)                    # s[x, z] = wᵀ f(x, z)
    return s - logsumexp(s, axis=0, keepdims=True)       # − log Σ_x' exp s[x', z]


def log_partition(w, F_dense, n_states):
    """log Σ_x exp(wᵀf(x, z)) for each z, on the engine: its gradient is E[f(X, z) | z, w]."""
    s = td.reshape(td.tensor(F_dense) @ w, (-1, n_states))
    return td.logsumexp(s, axis=0)


def expected_complete_log_likelihood(w, F_dense, counts, kappa):
    """ℓ(w) = Σ_{x,z} e(x, z) log p(x | z, w) − κ‖w‖², the M-step objective, on the engine."""
    s = td.reshape(td.tensor(F_dense) @ w, (-1, counts.shape[1]))
    log_p = s - td.logsumexp(s, axis=0, keepdims=True)
    return td.sum(td.tensor(counts) * log_p) - kappa * td.sum(w * w)


# ---- the feature-rich mixture -------------------------------------------------------------------

@dataclass
class Mixture:
    """p(z) and the log-linear p(x | z, w) with features F of shape (|X|·|Z|, D)."""
    log_prior: np.ndarray
    w: np.ndarray
    F: sp.csr_matrix

    @property
    def n_states(self):
        return len(self.log_prior)

    def log_joint(self):
        """log p(x, z) = log p(z) + log p(x | z, w), shape (|X|, |Z|)."""
        return self.log_prior + log_conditional(self.w, self.F, self.n_states)


def random_mixture(F, n_states, rng, scale=0.1):
    """Uniform p(z) and small random weights (Berg-Kirkpatrick et al. 2010, section 4)."""
    return Mixture(np.full(n_states, -np.log(n_states)), scale * rng.standard_normal(F.shape[1]), F)


def mixture_log_likelihood(log_prior, w, F_dense, x):
    """Σ_i log Σ_z p(z) p(x_i | z, w) on the engine (log_prior: unnormalised logits)."""
    n_states = log_prior.shape[0]
    s = td.reshape(td.tensor(F_dense) @ w, (-1, n_states))
    log_joint = (log_prior - td.logsumexp(log_prior)) + s - td.logsumexp(s, axis=0, keepdims=True)
    return td.sum(td.logsumexp(log_joint[x], axis=1))


# ---- the featurized HMM ---------------------------------------------------------------------------

@dataclass
class HMM:
    """Initial π (K,), transitions A (K, K), emission weights w over features F (|X|·K, D)."""
    start: np.ndarray
    trans: np.ndarray
    w: np.ndarray
    F: sp.csr_matrix

    @property
    def n_states(self):
        return len(self.start)

    def log_emission(self):
        """log p(x | z, w), shape (|X|, K)."""
        return log_conditional(self.w, self.F, self.n_states)


def random_hmm(F, n_states, rng, scale=0.1):
    """Near-uniform π and A, small random emission weights."""
    def noisy(*shape):
        p = np.exp(scale * rng.standard_normal(shape))
        return p / p.sum(axis=-1, keepdims=True)
    return HMM(noisy(n_states), noisy(n_states, n_states),
               scale * rng.standard_normal(F.shape[1]), F)


def hmm_log_likelihood(log_start, log_trans, log_emit, x):
    """log p(x) of one sentence by the forward algorithm in log space, on the engine, from the log-potentials.

    Its gradients in them are the expected counts: the E-step as a gradient."""
    K = log_start.shape[0]
    alpha = log_start + log_emit[int(x[0])]                       # log α_1 = log π + log b_1
    for t in range(1, len(x)):                    # log α_t(j) = lse_i(log α_{t-1}(i) + log A_ij) + log b_t(j)
        alpha = td.logsumexp(td.reshape(alpha, (K, 1)) + log_trans, axis=0) + log_emit[int(x[t])]
    return td.logsumexp(alpha)
