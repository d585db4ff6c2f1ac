"""The log-linear gradients by hand (Berg-Kirkpatrick et al. 2010, section 3): observed minus expected features.

The M-step maximises the expected complete-data log-likelihood

    ℓ(w) = Σ_{x,z} e(x, z) log p(x | z, w) − κ ‖w‖²
    ∇ℓ  = Σ_{x,z} e(x, z) [f(x, z) − Σ_x' p(x' | z, w) f(x', z)] − 2κ w

expected counts times (observed features − expected features), with L-BFGS; with indicator
features only it has a closed form (normalised expected counts).  The direct gradient of log p(x)
has the same form, with the E-step's posterior counts (the Fisher identity).  The engine computes
each as the gradient of a Tensor of `model.py`; `tests/models/test_loglinear.py` and
`tests/models/test_hmm.py` check that by hand = engine.
"""
import numpy as np
import scipy.optimize

from tinydgm.models.loglinear.model import log_conditional


# ---- the M-step ------------------------------------------------------------------------------------

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
                                  method="L-BFGS-B", options={"maxiter": maxiter, "ftol": 1e-12})   # stop on maxiter or a flat gradient, not on a small relative change
    return res.x


def multinomial_m_step(counts):
    """With indicator features only, the M-step has a closed form: normalised expected counts."""
    return counts / counts.sum(axis=0, keepdims=True)


# ---- the direct gradient -----------------------------------------------------------------------------

def log_likelihood_gradient(hmm, counts):
    """∇θ log p(data | θ), θ = (log π, log A, w) with π and A as softmax logits, from the E-step's counts:
    the Fisher identity ∇ log p(x | θ) = E_{p(z|x)}[∇ log p(x, z | θ)], observed minus expected."""
    g_start = counts.start - counts.start.sum() * hmm.start                      # e(z_1) − N π
    g_trans = counts.trans - counts.trans.sum(axis=1, keepdims=True) * hmm.trans  # e(i,j) − e(i) A_ij
    g_w = feature_gradient(counts.emit, hmm.log_emission(), hmm.F)               # observed − expected, posterior counts
    return np.concatenate([g_start, g_trans.ravel(), g_w])
