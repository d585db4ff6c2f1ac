"""Monte-Carlo objectives and gradient estimators: ELBO, importance-weighted bound, REINFORCE.

    ELBO      L(x)   = E_q[log p(x|z)] - KL(q(z) || p(z))              (analytic KL)
                     = E_q[log p(x|z) + log p(z) - log q(z)]           (Monte-Carlo KL)
    IWAE      L_k(x) = E[log 1/k sum_j w_j],  w_j = p(x, z_j) / q(z_j),  z_j ~ q   (Burda et al. 2016, eq. 8)
    score     d/dl E_q[f(z)] = E_q[f(z) d/dl log q(z|l)]               (Williams 1992; "REINFORCE")
    reparam.  d/dl E_q[f(z)] = E_eps[f'(h(eps, l)) dh/dl],  z = h(eps, l)  (Kingma & Welling 2013)

Samples always lie along axis 0.  The helpers at the bottom draw S gradient estimates and report
their mean, variance and standard error, the numbers every statistical test here is built on.
"""
import collections
import math

import numpy

from tinydgm import backend, ops
from tinydgm.distributions import kl_divergence
from tinydgm.tensor import Tensor, unwrap


def _tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _event_sum(t, event_ndim):
    """Sum the last `event_ndim` axes: elementwise log densities -> one per latent vector."""
    return ops.sum(t, axis=tuple(range(-event_ndim, 0))) if event_ndim else t


# =============================================================================================
# Bounds on log p(x)
# =============================================================================================

def log_mean_exp(x, axis=0, keepdims=False):
    """log (1/n) sum_i exp(x_i) along `axis` = logsumexp(x) - log n: stable and differentiable."""
    x = _tensor(x)
    n = x.shape[axis]
    return ops.logsumexp(x, axis=axis, keepdims=keepdims) - math.log(n)


def iwae_bound(log_weights, axis=0):
    """The importance-weighted bound log 1/k sum_j w_j from log w_j = log p(x, z_j) - log q(z_j), samples along `axis`.

    One draw of L_k (Burda et al. 2016, eq. 8): E[L_k] <= E[L_{k+1}] <= log p(x), and L_1 is the ELBO.
    """
    return log_mean_exp(log_weights, axis=axis)


def elbo(log_lik, q, prior=None, n_samples=1, kl="analytic", event_ndim=1, rng=None):
    """A Monte-Carlo ELBO from `n_samples` draws z ~ q (reparameterised where q.has_rsample).

    log_lik(z)   log p(x|z) for z of shape (n_samples,) + q.batch_shape, one value per latent vector;
                 with prior=None it is the log joint log p(x, z) instead.
    q, prior     distributions over z: latent vectors are the last `event_ndim` axes of their batch.
    kl           "analytic": E_q[log p(x|z)] - KL(q || p), the KL in closed form (kl_divergence);
                 without a prior, E_q[log p(x, z)] + H(q), the entropy in closed form.
                 "mc": E_q[log p(x|z) + log p(z) - log q(z)], everything by sampling.
    Returns the mean over the samples: a Tensor of shape q.batch_shape[:-event_ndim].
    Gradients reach q's parameters through the samples only when q.has_rsample; for a discrete q
    add `score_function_surrogate`.
    """
    if kl not in ("analytic", "mc"):
        raise ValueError(f"elbo: kl must be 'analytic' or 'mc', not {kl!r}")
    z = q.rsample((n_samples,), rng=rng) if q.has_rsample else q.sample((n_samples,), rng=rng)
    expected = ops.mean(log_lik(z), axis=0)                                  # E_q[log p(x|z)]
    if kl == "analytic":
        if prior is None:
            return expected + _event_sum(q.entropy(), event_ndim)                   # + H(q)
        return expected - _event_sum(kl_divergence(q, prior), event_ndim)          # - KL(q || p)
    log_ratio = -_event_sum(q.log_prob(z), event_ndim)                               # - log q(z)
    if prior is not None:
        log_ratio = log_ratio + _event_sum(prior.log_prob(z), event_ndim)            # + log p(z)
    return expected + ops.mean(log_ratio, axis=0)


# =============================================================================================
# The score-function (REINFORCE) estimator
# =============================================================================================

def score_function_surrogate(f_values, log_q, baseline=None):
    """A scalar whose gradient is the score-function estimate 1/S sum_s (f(z_s) - b) d/dl log q(z_s|l).

    f_values  f(z_s) for samples z_s ~ q along axis 0 (treated as constants: no gradient flows
              through them; add E_q[d f/dl] separately if f depends on l itself).
    log_q     log q(z_s | l), the same shape, differentiable in l (z_s themselves carry no gradient).
    baseline  None; a constant b (number or array broadcasting against f_values); or "loo", the
              mean of the *other* samples' f (leave-one-out), which keeps the estimate unbiased.
    Further axes (a batch) are summed.  The value itself means nothing; only its gradient does.
    """
    f = unwrap(f_values)
    if isinstance(baseline, str):
        if baseline != "loo":
            raise ValueError(f"score_function_surrogate: baseline must be None, a number, an array or 'loo', not {baseline!r}")
        s = f.shape[0]
        if s < 2:
            raise ValueError("score_function_surrogate: the 'loo' baseline needs at least 2 samples along axis 0")
        baseline = (f.sum(axis=0, keepdims=True) - f) / (s - 1)
    centred = f if baseline is None else f - unwrap(baseline)
    return ops.sum(ops.mean(Tensor(centred) * log_q, axis=0))     # d/dl = mean_s (f_s - b) d log q_s / dl


# =============================================================================================
# Drawing many gradient estimates and summarising them
# =============================================================================================

Summary = collections.namedtuple("Summary", "mean variance stderr n")
Summary.__doc__ = "Mean, sample variance (ddof=1), standard error of the mean and count of S estimates (float64, host)."


def summarize(estimates, axis=0):
    """Summary(mean, variance, stderr, n) of estimates stacked along `axis`, as float64 NumPy arrays."""
    a = backend.to_numpy(unwrap(estimates)).astype(numpy.float64)
    n = a.shape[axis]
    var = a.var(axis=axis, ddof=1) if n > 1 else numpy.full(numpy.delete(a.shape, axis), numpy.nan)
    return Summary(a.mean(axis=axis), var, numpy.sqrt(var / n), n)


def draw(estimate, n):
    """Call `estimate()` n times (each one a fresh Monte-Carlo estimate) and stack the results on axis 0."""
    return numpy.stack([backend.to_numpy(unwrap(estimate())) for _ in range(n)])


def gradient_samples(objective, params, n):
    """n independent gradient estimates of d objective / d params, from one backward pass.

    Each parameter (an array or Tensor) is copied n times along a new axis 0, and
    `objective(*copies)` must build n independent estimates, estimate i from copy i alone (e.g. a
    Normal whose loc has shape (n,)); it may return them (shape (n,)) or their sum (a scalar, as
    `score_function_surrogate` does).  The gradient of the sum then holds estimate i in row i.
    Returns a list with one array of shape (n,) + param.shape per parameter.
    """
    leaves = []
    for p in params:
        a = unwrap(p)
        xp = backend.get_array_module(a)
        a = xp.asarray(a)
        if a.dtype.kind not in "fc":                 # a number like 0 stands for a float parameter
            a = a.astype(backend.default_dtype)
        leaves.append(Tensor(xp.broadcast_to(a, (n,) + a.shape).copy(), requires_grad=True))
    ops.sum(objective(*leaves)).backward()
    return [leaf.grad if leaf.grad is not None else backend.get_array_module(leaf.data).zeros_like(leaf.data)
            for leaf in leaves]
