"""Feature-rich log-linear generative models trained with EM.

Berg-Kirkpatrick, Bouchard-Côté, DeNero & Klein 2010, "Painless unsupervised learning with
features" (NAACL). Each multinomial of a generative model becomes a small log-linear model,

    p(x | z, w) = exp(wᵀ f(x, z)) / Σ_x' exp(wᵀ f(x', z))              (section 2)

over an enumerable X, with sparse features f(x, z) stacked as the rows of F, x-major: row x·|Z| + z.
The E-step is unchanged; the M-step maximises the expected complete-data log-likelihood

    ℓ(w) = Σ_{x,z} e(x, z) log p(x | z, w) − κ ‖w‖²                      (M-step objective)
    ∇ℓ  = Σ_{x,z} e(x, z) [f(x, z) − Σ_x' p(x' | z, w) f(x', z)] − 2κ w  (its gradient)

expected counts times (observed features − expected features), with L-BFGS.

This module holds the log-linear categorical and the slides' model, a mixture p(x) = Σ_z p(z) p(x|z, w);
the featurized HMM lives in `tinydgm.models.hmm`, part-of-speech induction in `tinydgm.models.pos`.
The `tinydgm train loglinear` / `tinydgm eval RUN` commands are at the end of this file.
"""
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from scipy.special import logsumexp

import tinydgm as td


# ---- the log-linear categorical p(x | z, w) -------------------------------------------------

def log_conditional(w, F, n_states):
    """log p(x | z, w) as an (|X|, |Z|) array: scores wᵀf(x, z) normalised over x."""
    s = (F @ w).reshape(-1, n_states)                    # s[x, z] = wᵀ f(x, z)
    return s - logsumexp(s, axis=0, keepdims=True)       # − log Σ_x' exp s[x', z]


def expected_features(w, F, n_states):
    """E[f(X, z) | z, w] for each z: the gradient of log Σ_x exp(wᵀf(x, z)), shape (|Z|, D)."""
    p = np.exp(log_conditional(w, F, n_states))
    n_x = p.shape[0]
    rows = [F[z::n_states].T @ p[:, z] for z in range(n_states)]   # Σ_x p(x|z) f(x, z)
    return np.stack(rows) if n_x else np.zeros((n_states, F.shape[1]))


def feature_gradient(counts, log_p, F):
    """Σ_{x,z} e(x, z) [f(x, z) − E_p(·|z) f(·, z)]: observed minus expected features."""
    return F.T @ (counts - np.exp(log_p) * counts.sum(axis=0)).ravel()


def m_step_objective(w, F, counts, kappa):
    """−ℓ(w) and −∇ℓ(w), the M-step objective and its gradient, for a minimiser."""
    log_p = log_conditional(w, F, counts.shape[1])
    value = (counts * np.where(counts > 0, log_p, 0)).sum() - kappa * w @ w
    grad = feature_gradient(counts, log_p, F) - 2 * kappa * w
    return -value, -grad


def m_step_weights(w, F, counts, kappa, maxiter=50):
    """argmax_w ℓ(w) by L-BFGS, warm-started at w."""
    res = scipy.optimize.minimize(m_step_objective, w, args=(F, counts, kappa), jac=True,
                                  method="L-BFGS-B", options={"maxiter": maxiter})
    return res.x


def multinomial_m_step(counts):
    """With indicator features only, the M-step has a closed form: normalised expected counts."""
    return counts / counts.sum(axis=0, keepdims=True)


# ---- the slides' model: a mixture p(x) = Σ_z p(z) p(x | z, w) --------------------------------

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


# ---- the same objectives for the engine (dense F, small models) -------------------------------
# The closed forms above are checked against reverse mode on these (tests/test_loglinear.py).

def log_partition_engine(w, F_dense, n_states):
    """log Σ_x exp(wᵀf(x, z)) for each z, as a Tensor: its gradient is E[f(X, z) | z, w]."""
    s = td.reshape(td.tensor(F_dense) @ w, (-1, n_states))
    return td.logsumexp(s, axis=0)


def m_step_objective_engine(w, F_dense, counts, kappa):
    """ℓ(w), the M-step objective, as a Tensor."""
    s = td.reshape(td.tensor(F_dense) @ w, (-1, counts.shape[1]))
    log_p = s - td.logsumexp(s, axis=0, keepdims=True)
    return td.sum(td.tensor(counts) * log_p) - kappa * td.sum(w * w)


def marginal_log_likelihood_engine(log_prior, w, F_dense, x):
    """Σ_i log Σ_z p(z) p(x_i | z, w) as a Tensor (log_prior: unnormalised logits)."""
    n_states = log_prior.shape[0]
    s = td.reshape(td.tensor(F_dense) @ w, (-1, n_states))
    log_joint = (log_prior - td.logsumexp(log_prior)) + s - td.logsumexp(s, axis=0, keepdims=True)
    return td.sum(td.logsumexp(log_joint[x], axis=1))


# ---- command line: `tinydgm train loglinear`, `tinydgm eval RUN` ------------------------------

def add_train_arguments(parser):
    from tinydgm.models import pos
    pos.add_train_arguments(parser)


def train(args):
    from tinydgm.models import pos
    return pos.train(args)


def add_eval_arguments(parser):
    from tinydgm.models import pos
    pos.add_eval_arguments(parser)


def evaluate(args):
    from tinydgm.models import pos
    return pos.evaluate(args)
