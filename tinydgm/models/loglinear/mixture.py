"""EM for the slides' feature-rich mixture p(x) = Σ_z p(z) p(x | z, w) (`model.Mixture`;
Berg-Kirkpatrick, Bouchard-Côté, DeNero & Klein 2010, "Painless unsupervised learning with features").

E-step: exact posteriors q(z | x_i) and expected counts e(x, z).  M-step: p(z) ∝ e(z) in closed form,
w by L-BFGS on the expected complete-data log-likelihood (`by_hand.m_step_weights`).
"""
import numpy as np
from scipy.special import logsumexp

from tinydgm.models.loglinear.by_hand import m_step_weights
from tinydgm.models.loglinear.model import Mixture


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
