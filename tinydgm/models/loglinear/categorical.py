"""The log-linear categorical of Berg-Kirkpatrick et al. 2010 (section 2), the building block of every model here:

    p(x | z, w) = exp(wᵀ f(x, z)) / Σ_x' exp(wᵀ f(x', z))

over an enumerable X, with sparse features f(x, z) stacked as the rows of F, x-major: row x·|Z| + z.
Below it, the same quantities on the engine (dense F, small models), whose gradients the tests
compare with the closed forms of `by_hand.py`.
"""
from scipy.special import logsumexp

import tinydgm as td


def log_conditional(w, F, n_states):
    """log p(x | z, w) as an (|X|, |Z|) array: scores wᵀf(x, z) normalised over x."""
    s = (F @ w).reshape(-1, n_states)                    # s[x, z] = wᵀ f(x, z)
    return s - logsumexp(s, axis=0, keepdims=True)       # − log Σ_x' exp s[x', z]


# ---- on the engine ------------------------------------------------------------------------------

def log_partition_engine(w, F_dense, n_states):
    """log Σ_x exp(wᵀf(x, z)) for each z, as a Tensor: its gradient is E[f(X, z) | z, w]."""
    s = td.reshape(td.tensor(F_dense) @ w, (-1, n_states))
    return td.logsumexp(s, axis=0)


def m_step_objective_engine(w, F_dense, counts, kappa):
    """ℓ(w), the M-step objective, as a Tensor."""
    s = td.reshape(td.tensor(F_dense) @ w, (-1, counts.shape[1]))
    log_p = s - td.logsumexp(s, axis=0, keepdims=True)
    return td.sum(td.tensor(counts) * log_p) - kappa * td.sum(w * w)
