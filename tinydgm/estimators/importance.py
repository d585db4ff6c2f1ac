"""Importance weights, the one home of ω: log-mean-exp, the importance-weighted bound and the self-normalised weights.

    L_k(x) = log 1/k Σ_j w_j,   w_j = p(x, z_j) / q(z_j|x),  z_j ~ q          (Burda et al. 2016, eq. 8)
    ω_j    = w_j / Σ_i w_i                                                    (self-normalised importance weights)

Samples lie along axis 0.  `numerics.log_mean_exp` is the array formula; `log_mean_exp` here is the same
formula on the engine (differentiable), built from `ops.logsumexp`.
"""
import math

from tinydgm import backend, numerics, ops
from tinydgm.tensor import Tensor, unwrap


def log_mean_exp(x, axis=0, keepdims=False):
    """log (1/n) Σ_i exp(x_i) along `axis` = logsumexp(x) − log n, on the engine: stable and differentiable."""
    x = x if isinstance(x, Tensor) else Tensor(x)
    return ops.logsumexp(x, axis=axis, keepdims=keepdims) - math.log(x.shape[axis])


def iwae_bound(log_weights, axis=0):
    """The importance-weighted bound log 1/k Σ_j w_j from log w_j = log p(x, z_j) − log q(z_j), samples along `axis`.

    One draw of L_k (Burda et al. 2016, eq. 8): E[L_k] <= E[L_{k+1}] <= log p(x), and L_1 is the ELBO.
    """
    return log_mean_exp(log_weights, axis=axis)


def normalized_weights(log_w, axis=0):
    """ω_j = w_j / Σ_i w_i from log w (an array or a Tensor's data), along `axis`: an array, no gradient."""
    log_w = unwrap(log_w)
    xp = backend.get_array_module(log_w)
    omega = xp.exp(log_w - log_w.max(axis, keepdims=True))
    omega /= omega.sum(axis, keepdims=True)
    return omega


def bound_value(log_w, axis=0):
    """L_k's value per example from log w (an array, no graph): log 1/k Σ_j w_j."""
    log_w = unwrap(log_w)
    return numerics.log_mean_exp(backend.get_array_module(log_w), log_w, axis=axis)
