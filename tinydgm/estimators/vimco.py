"""VIMCO: the score function for the K-sample bound with leave-one-out baselines (Mnih & Rezende 2016).

Model interface: the layered discrete model of `tinydgm.estimators.discrete`.
"""
from tinydgm import backend, numerics, ops
from tinydgm.estimators import discrete
from tinydgm.estimators.base import Estimator, Objective, total
from tinydgm.estimators.importance import bound_value, normalized_weights
from tinydgm.tensor import Tensor, unwrap


def vimco_surrogate(log_w, log_q):
    """A scalar whose gradient is VIMCO's estimate of ∇ L_K (Mnih & Rezende 2016, eqs. 8-10).

    log_w  log w_k = log p(x, h_k) − log q(h_k|x) for K >= 2 samples h_k ~ q(h|x) along axis 0, a Tensor
           differentiable in θ (through log p) and λ (through log q);
    log_q  log q(h_k|x), the same shape, differentiable in λ.

        L̂      = log 1/K Σ_k w_k                                              (the bound, eq. 2)
        L̂_{-k} = log 1/K (Σ_{j≠k} w_j + ŵ_{-k}),  ŵ_{-k} = exp(1/(K−1) Σ_{j≠k} log w_j)   (eq. 9: w_k replaced by
                                                                                the geometric mean of the others)
        ∇ L_K  ≈ Σ_k (L̂ − L̂_{-k}) ∇ log q(h_k|x) + Σ_k w̃_k ∇ log w_k,  w̃_k = w_k / Σ_j w_j   (eq. 10)

    L̂_{-k} does not depend on h_k, so each baseline leaves the estimate unbiased.  The learning signals and
    w̃ are constants (no gradient flows through them).  Further axes (a batch) are summed; the value means nothing.
    """
    lw = unwrap(log_w)
    xp = backend.get_array_module(lw)
    k = lw.shape[0]
    if k < 2:
        raise ValueError("vimco_surrogate: needs K >= 2 samples along axis 0 (the baselines leave one out)")
    bound = numerics.log_mean_exp(xp, lw, axis=0)                               # L̂
    geometric = (lw.sum(axis=0, keepdims=True) - lw) / (k - 1)                   # log ŵ_{-k}
    others = xp.broadcast_to(lw, (k,) + lw.shape).copy()                         # row k: all K log w ...
    i = xp.arange(k)
    others[i, i] = geometric                                                     # ... with log w_k replaced
    signal = bound - numerics.log_mean_exp(xp, others, axis=1)                   # L̂ − L̂_{-k}
    w_tilde = normalized_weights(lw)                                             # w̃_k = w_k / Σ_j w_j
    return ops.sum(Tensor(signal) * log_q) + ops.sum(Tensor(w_tilde) * log_w)


class VIMCO(Estimator):
    """VIMCO on L_K (`vimco_surrogate`): K samples per image from one pass up q, leave-one-out baselines;
    unbiased for ∇ L_K.  bound: L̂_K per image."""
    name, target, claim = "vimco", "L_K", "unbiased"

    def __init__(self, k=5):
        if k < 2:
            raise ValueError(f"VIMCO: needs K >= 2 samples per image (each one's baseline leaves it out), got {k}")
        self.k = k

    def objective(self, model, x, rng):
        hs, q_terms = discrete.sample_q(model, x, rng, self.k)
        log_q = total(q_terms)
        log_w = total(model.log_joint_terms(x, hs)[::-1]) - log_q                      # (K, B)
        return Objective(vimco_surrogate(log_w, log_q) / len(x), bound_value(log_w))
