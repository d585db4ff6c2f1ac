"""Monte-Carlo objectives and gradient estimators: ELBO, importance-weighted bound, REINFORCE, NVIL,
VIMCO, straight-through.

    ELBO      L(x)   = E_q[log p(x|z)] - KL(q(z) || p(z))              (analytic KL)
                     = E_q[log p(x|z) + log p(z) - log q(z)]           (Monte-Carlo KL)
    IWAE      L_k(x) = E[log 1/k sum_j w_j],  w_j = p(x, z_j) / q(z_j),  z_j ~ q   (Burda et al. 2016, eq. 8)
    score     d/dl E_q[f(z)] = E_q[f(z) d/dl log q(z|l)]               (Williams 1992; "REINFORCE")
    NVIL      the score function with a learned baseline, running mean and variance normalisation and
              layer-wise signals (Mnih & Gregor 2014)
    VIMCO     the score function for L_k with leave-one-out baselines (Mnih & Rezende 2016)
    reparam.  d/dl E_q[f(z)] = E_eps[f'(h(eps, l)) dh/dl],  z = h(eps, l)  (Kingma & Welling 2013)
    straight-through  forward a hard threshold, backward the gradient of its soft input (Bengio et al. 2013)

Samples always lie along axis 0.  The helpers at the bottom draw S gradient estimates and report
their mean, variance and standard error, the numbers every statistical test here is built on.
"""
import collections
import math

import numpy

from tinydgm import backend, nn, numerics, ops
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
# NVIL: the score function with baselines and normalisation (Mnih & Gregor 2014)
# =============================================================================================

def local_signals(log_p_terms, log_q_terms):
    """The layer-wise learning signals of Mnih & Gregor 2014, §3.3, from per-layer log-densities (arrays).

    For p(x, h) = p(h_L) Π_l p(h_{l-1} | h_l) and q(h|x) = Π_l q(h_l | h_{l-1}), h_0 = x:
        log_p_terms  [log p(h_0 | h_1), ..., log p(h_{L-1} | h_L), log p(h_L)]   (L + 1 arrays)
        log_q_terms  [log q(h_1 | h_0), ..., log q(h_L | h_{L-1})]              (L arrays)
    layer l's signal  ℓ_l = log p(h_{l-1}, ..., h_L) − log q(h_l, ..., h_L | h_{l-1}):
    the terms that do not depend on h_l, ..., h_L once h_{l-1} is given are dropped (their product with
    ∇ log q(h_l | h_{l-1}) has mean zero), so ℓ_1 is the whole log p(x, h) − log q(h|x).
    """
    if len(log_p_terms) != len(log_q_terms) + 1:
        raise ValueError(f"local_signals: need one more p-term than q-terms (the prior), "
                         f"got {len(log_p_terms)} and {len(log_q_terms)}")
    signals, acc = [], log_p_terms[-1]
    for p, q in zip(reversed(log_p_terms[:-1]), reversed(log_q_terms)):     # from the top layer down
        acc = acc + p - q
        signals.append(acc)
    return signals[::-1]


NVILTerms = collections.namedtuple("NVILTerms", "surrogate baseline_loss")
NVILTerms.__doc__ = "NVIL.surrogate's result: a scalar to ascend for λ, and a loss to minimise for the baselines ψ."


class NVIL(nn.Module):
    """Neural variational inference and learning (Mnih & Gregor 2014): the score-function gradient of the
    ELBO for a recognition net q(h|x) = Π_l q(h_l | h_{l-1}) with the paper's variance reductions (§3, Alg. 1).

    For layer l, with its learning signal ℓ_l (`local_signals`, §3.3), an input-dependent baseline
    b_l(h_{l-1}) (an MLP n-hidden-1 with tanh, §3.1), and running mean c_l and variance v_l of ℓ_l − b_l (§3.2):

        ℓ̂_l = (ℓ_l − b_l(h_{l-1}) − c_l) / max(1, √v_l)
        ∇λ  ≈ mean_n Σ_l ℓ̂_l ∇λ log q(h_l | h_{l-1})          an unbiased estimate of Σ_l ∇λ_l ELBO / max(1, √v_l)
        ψ   minimises mean_n (ℓ_l − b_l − c_l)² / (2 max(1, √v_l)),  gradient −mean_n ℓ̂_l ∇ψ b_l   (Alg. 1)
        c_l <- α c_l + (1 − α) mean_n(ℓ_l − b_l),   v_l <- α v_l + (1 − α) var_n(ℓ_l − b_l),   α = 0.8

    (λ_l: the parameters of layer l's q; a net whose layers share parameters gets the sum.)  Alg. 1 folds
    the current batch into c and v before using them, which couples them to the samples (the mean shrinks by
    1 − (1 − α)/B); here each batch is centred and scaled by the statistics of the batches before it, so the
    estimate is unbiased for the scaled gradient.  The first batch starts c and v at its own mean and variance.
    The running statistics are part of `state_dict` ("c", "v", "steps"), with the baselines' parameters.
    """

    STATS = ("c", "v", "steps")

    def __init__(self, input_sizes, hidden=100, alpha=0.8, rng=None, dtype=None):
        if not 0 <= alpha < 1:
            raise ValueError(f"NVIL: alpha must lie in [0, 1), got {alpha!r}")
        rng = numpy.random.default_rng(rng) if rng is None or isinstance(rng, int) else rng
        self.baselines = [nn.MLP((int(n), hidden, 1), "tanh", rng=rng, dtype=dtype) for n in input_sizes]
        self.alpha = float(alpha)
        self.c = numpy.zeros(len(self.baselines))          # host floats: per-layer running mean ...
        self.v = numpy.ones(len(self.baselines))           # ... and variance of ℓ_l − b_l
        self.steps = 0

    def baseline(self, l, inputs):
        """b_l(h_{l-1}) for each row of `inputs`: a Tensor of shape inputs.shape[:-1]."""
        out = self.baselines[l](inputs)
        return ops.reshape(out, out.shape[:-1])

    def scale(self, l):
        """max(1, √v_l): what layer l's centred signal is divided by."""
        return max(1.0, math.sqrt(self.v[l]))

    def surrogate(self, signals, log_q, inputs, update=True):
        """NVILTerms(surrogate, baseline_loss) for one batch; then (if `update`) fold it into c and v.

        signals  ℓ_l per layer (arrays of shape (B,)), e.g. from `local_signals`;
        log_q    log q(h_l | h_{l-1}) per layer (Tensors (B,), differentiable in λ);
        inputs   h_{l-1} per layer (arrays (B, n_{l-1})), what each baseline sees.
        The surrogate's gradient is the NVIL estimate (above); its value means nothing."""
        if not len(signals) == len(log_q) == len(inputs) == len(self.baselines):
            raise ValueError(f"NVIL.surrogate: {len(self.baselines)} layers, got {len(signals)} signals, "
                             f"{len(log_q)} log q terms and {len(inputs)} inputs")
        residuals, surrogates, losses = [], [], []
        for l, (signal, lq, h) in enumerate(zip(signals, log_q, inputs)):
            signal = unwrap(signal)[..., None]                               # a column, as the baseline's output
            b = self.baselines[l](h)                                         # b_l(h_{l-1})
            r = signal - b.data                                              # ℓ_l − b_l
            residuals.append(r)
            if update and self.steps == 0:
                self.c[l], self.v[l] = float(r.mean()), float(r.var())
            c, s = float(self.c[l]), self.scale(l)
            surrogates.append(score_function_surrogate(((r - c) / s)[..., 0], lq))   # mean ℓ̂_l ∇ log q_l
            err = signal - c - b                                             # ℓ_l − c_l − b_l, a Tensor in ψ
            losses.append(ops.sum(err * err) * (0.5 / (s * err.size)))      # mean err² / (2 max(1, √v_l))
        surrogate, loss = surrogates[0], losses[0]
        for a, e in zip(surrogates[1:], losses[1:]):
            surrogate, loss = surrogate + a, loss + e
        if update:
            for l, r in enumerate(residuals):
                self.c[l] = self.alpha * self.c[l] + (1 - self.alpha) * float(r.mean())
                self.v[l] = self.alpha * self.v[l] + (1 - self.alpha) * float(r.var())
            self.steps += 1
        return NVILTerms(surrogate, loss)

    def state_dict(self):
        """The baselines' parameters by name, and the running statistics c, v (arrays (L,)) and steps."""
        return {**super().state_dict(), "c": self.c.copy(), "v": self.v.copy(), "steps": numpy.array(self.steps)}

    def load_state_dict(self, state):
        """Copy a `state_dict` back; names and shapes must match exactly (else nothing is loaded)."""
        L = len(self.baselines)
        differs = nn.describe_mismatch({"c": (L,), "v": (L,), "steps": ()},
                                       {k: numpy.shape(state[k]) for k in self.STATS if k in state})
        if differs:
            raise nn.mismatch_error(self, differs)
        super().load_state_dict({k: v for k, v in state.items() if k not in self.STATS})
        self.c = numpy.array(state["c"], dtype=numpy.float64)
        self.v = numpy.array(state["v"], dtype=numpy.float64)
        self.steps = int(state["steps"])


# =============================================================================================
# VIMCO: the score function for the k-sample bound with leave-one-out baselines (Mnih & Rezende 2016)
# =============================================================================================

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
    w_tilde = xp.exp(lw - bound) / k                                             # w_k / Σ_j w_j
    return ops.sum(Tensor(signal) * log_q) + ops.sum(Tensor(w_tilde) * log_w)


# =============================================================================================
# The straight-through estimator
# =============================================================================================

def straight_through(y):
    """Forward the hard threshold [y > 1/2], backward the gradient of y (Bengio et al. 2013; with a relaxed
    Bernoulli y, "straight-through Gumbel", Jang et al. 2017): y + (hard − y) with (hard − y) a constant.

    The forward value is exactly 0 or 1: y − y = 0, and 1 − y is exact for y in (1/2, 1] (Sterbenz)."""
    y = _tensor(y)
    hard = (y.data > 0.5).astype(y.dtype)
    return y + Tensor(hard - y.data)


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
