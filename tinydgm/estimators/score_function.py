"""The score-function (REINFORCE) estimator and its variance reductions: baselines and NVIL.

    ∇λ E_q[f(z)] = E_q[f(z) ∇λ log q(z|λ)]                          (Williams 1992; "REINFORCE")
                 = E_q[(f(z) − b) ∇λ log q(z|λ)]                    for any b that does not depend on z
    NVIL         layer-wise signals, a learned input-dependent baseline, a running mean and variance
                 normalisation (Mnih & Gregor 2014)

Model interfaces: discrete latents (`Reinforce`, `NVIL`) use the layered model of `tinydgm.estimators.discrete`;
the continuous `ScoreFunction` uses `model.score_function_elbo(x, rng, baseline)` (e.g. the VAE's).
"""
import collections
import math

import numpy

from tinydgm import backend, nn, ops
from tinydgm.checkpoint import describe_mismatch, mismatch_error
from tinydgm.estimators import discrete
from tinydgm.estimators.base import Estimator, Objective, generator, total
from tinydgm.tensor import Tensor, unwrap


# =============================================================================================
# The score function, and a running-mean baseline
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




class RunningMean:
    """The baseline b = exponential moving average of the learning signal's batch means, bias-corrected
    as Adam's moments (Kingma & Ba 2015, alg. 1): b_t = m_t / (1 - decay^t),  m_t = decay m_(t-1) + (1 - decay) f_t.

    `value` is None before the first `update` (no baseline); `state()`/`load_state()` go in a checkpoint.
    """

    def __init__(self, decay=0.9):
        self.decay, self.mean, self.steps = decay, 0.0, 0

    @property
    def value(self):
        return self.mean / (1 - self.decay ** self.steps) if self.steps else None

    def start_at(self, value):
        """Set b = `value`, as after one batch whose signal averaged `value`."""
        self.mean, self.steps = value * (1 - self.decay), 1

    def update(self, signal):
        """Fold in one batch's learning signal (an array or Tensor: its mean is used)."""
        f = float(backend.to_numpy(unwrap(signal)).astype(numpy.float64).mean())
        self.mean = self.decay * self.mean + (1 - self.decay) * f
        self.steps += 1

    def state(self):
        return {"decay": self.decay, "mean": self.mean, "steps": self.steps}

    def load_state(self, state):
        self.decay, self.mean, self.steps = float(state["decay"]), float(state["mean"]), int(state["steps"])


class ScoreFunction(Estimator):
    """The VAE's ELBO with the encoder's gradient by the score function (`model.score_function_elbo`), without
    a baseline or with a `RunningMean` of the learning signal: unbiased for ∇ ELBO either way."""
    target, claim = "elbo", "unbiased"

    def __init__(self, baseline=False):
        self.baseline = RunningMean() if baseline else None
        self.name = "score-function-baseline" if baseline else "score-function"

    def objective(self, model, x, rng):
        values = model.score_function_elbo(x, rng=rng, baseline=None if self.baseline is None else self.baseline.value)
        return Objective(ops.mean(values), values.data)

    def hold_statistics(self, baseline=None):
        """Hold the running baseline where it is, or at b = `baseline` (a number), until `release_statistics`: fresh,
        it has none, so hold it at a value to see the estimator with its baseline at work.  Returns self."""
        if baseline is not None:
            if self.baseline is None:
                raise TypeError(f"{self!r}.hold_statistics: it has no running baseline to set")
            self.baseline.start_at(float(baseline))
        return super().hold_statistics()

    def update(self, objective):
        if self.baseline is not None and not self.held:
            self.baseline.update(objective.bound)                # the value is the learning signal f

    def report(self, objective):
        return {"bound": objective.surrogate.item()}             # the batch mean of the one-sample ELBO

    def state_dict(self):
        return {} if self.baseline is None else {"baseline": self.baseline.state()}

    def load_state_dict(self, state):
        if self.baseline is not None and "baseline" in state:
            self.baseline.load_state(state["baseline"])


class Reinforce(Estimator):
    """REINFORCE on the ELBO, no baseline: mean_n [∇θ log p(x_n, h_n) + ℓ_n ∇λ log q(h_n|x_n)],  h_n ~ q(h|x_n),
    ℓ = log p(x, h) − log q(h|x): unbiased for ∇ ELBO."""
    name, target, claim = "reinforce", "elbo", "unbiased"

    def objective(self, model, x, rng):
        hs, q_terms = discrete.sample_q(model, x, rng)
        log_p, log_q = total(model.log_joint_terms(x, hs)[::-1]), total(q_terms)
        signal = log_p.data - log_q.data                                             # ℓ
        return Objective(ops.mean(log_p) + score_function_surrogate(signal, log_q), signal)


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


class NVIL(nn.Module, Estimator):
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
    The running statistics are part of `state_dict` ("c", "v", "steps"), with the baselines' parameters;
    `hold_statistics(c, v)` holds them fixed (held at v_l <= 1 the estimate is unbiased for ∇ ELBO itself).

    As an estimator (`objective`, `step`) it trains a layered discrete model (`tinydgm.estimators.discrete`) on
    the ELBO, θ's gradient as REINFORCE's: unbiased for the scaled gradient above; its own parameters, the
    baselines, need an optimiser of their own (pass it last to `step`).
    """
    name, target, claim = "nvil", "elbo", "unbiased"
    STATS = ("c", "v", "steps")

    def __init__(self, input_sizes, hidden=100, alpha=0.8, rng=None, dtype=None):
        if not 0 <= alpha < 1:
            raise ValueError(f"NVIL: alpha must lie in [0, 1), got {alpha!r}")
        rng = generator(rng)
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

    def hold_statistics(self, c=None, v=None):
        """Hold the running mean c and variance v where they are, or at `c`, `v` (numbers or arrays (L,)), until
        `release_statistics`: meanwhile `objective` folds no batch into them, and the estimate is unbiased for
        Σ_l ∇λ_l ELBO / max(1, √v_l) (∇ ELBO where every v_l <= 1).  Returns self."""
        def per_layer(value, now):
            return numpy.broadcast_to(numpy.asarray(now if value is None else value, dtype=numpy.float64),
                                      (len(self.baselines),)).copy()
        if c is not None or v is not None:
            self.c, self.v = per_layer(c, self.c), per_layer(v, self.v)
            self.steps = max(self.steps, 1)                 # set, as if past the first batch
        return super().hold_statistics()

    def state_dict(self):
        """The baselines' parameters by name, and the running statistics c, v (arrays (L,)) and steps."""
        return {**super().state_dict(), "c": self.c.copy(), "v": self.v.copy(), "steps": numpy.array(self.steps)}

    def load_state_dict(self, state):
        """Copy a `state_dict` back; names and shapes must match exactly (else nothing is loaded)."""
        L = len(self.baselines)
        differs = describe_mismatch({"c": (L,), "v": (L,), "steps": ()},
                                       {k: numpy.shape(state[k]) for k in self.STATS if k in state})
        if differs:
            raise mismatch_error(self, differs)
        super().load_state_dict({k: v for k, v in state.items() if k not in self.STATS})
        self.c = numpy.array(state["c"], dtype=numpy.float64)
        self.v = numpy.array(state["v"], dtype=numpy.float64)
        self.steps = int(state["steps"])

    def objective(self, model, x, rng, update=None):
        """NVIL on the ELBO: layer l's local signal, centred by its baseline b_l(h_{l-1}) and running mean, divided
        by max(1, √v_l), times ∇λ log q(h_l | h_{l-1}); θ as REINFORCE.  `update`: fold the batch into the running
        statistics (default: unless they are held, `hold_statistics`).  bound: ℓ, the ELBO's estimate."""
        update = not self.held if update is None else update
        hs, q_terms = discrete.sample_q(model, x, rng)
        p_terms = model.log_joint_terms(x, hs)
        signals = local_signals([t.data for t in p_terms], [t.data for t in q_terms])   # signals[0] = ℓ
        terms = self.surrogate(signals, q_terms, [unwrap(x), *hs[:-1]], update=update)
        return Objective(ops.mean(total(p_terms[::-1])) + terms.surrogate, signals[0], terms.baseline_loss)


def nvil_for(model, hidden=100, rng=None):
    """NVIL with one baseline per layer of a layered model (`model.layers` = visible, h_1, ..., h_L)."""
    return NVIL(model.layers[:-1], hidden=hidden, rng=rng)
