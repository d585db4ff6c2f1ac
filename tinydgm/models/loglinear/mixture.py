"""The slides' feature-rich model, a mixture p(x) = Σ_z p(z) p(x | z, w), trained with EM
(Berg-Kirkpatrick, Bouchard-Côté, DeNero & Klein 2010, "Painless unsupervised learning with features").

E-step: exact posteriors q(z | x_i) and expected counts e(x, z).  M-step: p(z) ∝ e(z) in closed form,
w by L-BFGS on the expected complete-data log-likelihood (`by_hand.m_step_weights`).
"""
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp

import tinydgm as td
from tinydgm.models.loglinear.by_hand import m_step_weights
from tinydgm.models.loglinear.categorical import log_conditional


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


def marginal_log_likelihood(model, x):
    """Σ_i log p(x_i) = Σ_i log Σ_z p(z) p(x_i | z, w)."""
    return logsumexp(model.log_joint()[x], axis=1).sum()


def e_step(model, x):
    """Posteriors q(z | x_i) and expected counts e(x, z) = Σ_i q(z | x_i) [x_i = x]."""
    lj = model.log_joint()[x]                                     # (N, |Z|)
    q = np.exp(lj - logsumexp(lj, axis=1, keepdims=True))         # q(z|x) = p(x,z) / p(x)
    counts = np.zeros((model.F.shape[0] // model.n_states, model.n_states))
    np.add.at(counts, x, q)
    return q, counts


def m_step(model, counts, kappa=0.0, maxiter=50):
    """p(z) ∝ e(z) in closed form; w by L-BFGS on the expected complete-data log-likelihood."""
    e_z = counts.sum(axis=0)
    w = m_step_weights(model.w, model.F, counts, kappa, maxiter)
    return Mixture(np.log(e_z / e_z.sum()), w, model.F)


def em(model, x, iterations, kappa=0.0):
    """EM: alternate e_step and m_step; returns the model and the marginal log-likelihoods seen."""
    history = []
    for _ in range(iterations):
        history.append(marginal_log_likelihood(model, x))
        _, counts = e_step(model, x)
        model = m_step(model, counts, kappa)
    history.append(marginal_log_likelihood(model, x))
    return model, history


# ---- on the engine ------------------------------------------------------------------------------

def marginal_log_likelihood_engine(log_prior, w, F_dense, x):
    """Σ_i log Σ_z p(z) p(x_i | z, w) as a Tensor (log_prior: unnormalised logits)."""
    n_states = log_prior.shape[0]
    s = td.reshape(td.tensor(F_dense) @ w, (-1, n_states))
    log_joint = (log_prior - td.logsumexp(log_prior)) + s - td.logsumexp(s, axis=0, keepdims=True)
    return td.sum(td.logsumexp(log_joint[x], axis=1))
