"""Wake-sleep (Hinton, Dayan, Frey & Neal 1995) and reweighted wake-sleep (Bornschein & Bengio 2015).

    wake:    h ~ q(h|x) held fixed;            ascend log p(x, h|θ) in θ only
    sleep:   (h̃, x̃) ~ p(x, h|θ) (a dream);     ascend log q(h̃|x̃, λ) in λ only
    RWS:     h_1..h_K ~ q(h|x),  ω_k = w_k / Σ_j w_j,  w_k = p(x, h_k) / q(h_k|x)         (importance.normalized_weights)
             p-update Σ_k ω_k ∇θ log p(x, h_k);  q-wake update Σ_k ω_k ∇λ log q(h_k|x);  sleep update as above

Neither ascends one objective in θ and λ: θ's update is consistent for ∇θ log p(x) as K grows (RWS; wake-sleep's
is the K = 1 case, biased), λ's follows its own objective.  Model interface: `tinydgm.estimators.discrete`
(with `dream` and `log_q_terms`); `step` takes the optimisers of θ and λ, in that order.
"""
import contextlib

from tinydgm import ops
from tinydgm.estimators import discrete
from tinydgm.estimators.base import Estimator, Objective, ascend, total
from tinydgm.estimators.importance import bound_value, normalized_weights
from tinydgm.tensor import no_grad

UPDATES = ("p", "q-wake", "sleep")


def wake_terms(model, x, rng):
    """Wake: h ~ q(h|x) held fixed; log p(x, h|θ) per image, a function of θ only."""
    with no_grad():
        hs, _ = discrete.sample_q(model, x, rng)
    return total(model.log_joint_terms(x, hs)[::-1])


def wake_phase(model, x, rng):
    """Wake: the batch's mean of `wake_terms`, the objective θ ascends."""
    return ops.mean(wake_terms(model, x, rng))


def sleep_phase(model, n, rng):
    """Sleep: dream (x̃, h̃) ~ p; returns mean log q(h̃|x̃, λ), a function of λ only."""
    x, hs = model.dream(n, rng)
    return ops.mean(total(model.log_q_terms(hs, x)))


def reweighted_wake(model, x, rng, k, q_grad=True):
    """RWS wake (Bornschein & Bengio 2015, eqs. 10-11): k samples from q, their log p, log q (k, B) and the
    normalised importance weights ω (k, B, an array: no gradient through the weights)."""
    with contextlib.nullcontext() if q_grad else no_grad():
        hs, q_terms = discrete.sample_q(model, x, rng, k)              # one pass up q: samples and log q
    log_q = total(q_terms)
    log_p = total(model.log_joint_terms(x, hs)[::-1])
    return log_p, log_q, normalized_weights(log_p.data - log_q.data)


class WakeSleep(Estimator):
    """Hinton et al. 1995: a wake update of θ, then a sleep update of λ on len(x) dreams of the updated p."""
    name, target, claim = "ws", "log p(x)", "biased"

    def objective(self, model, x, rng):
        """The two phases' objectives from the same θ: wake (θ) + sleep (λ); bound: log p(x, h) per image."""
        wake = wake_terms(model, x, rng)
        return Objective(ops.mean(wake) + sleep_phase(model, len(x), rng), wake.data)

    def step(self, model, x, optimizers, rng):
        opt_p, opt_q = optimizers
        wake = wake_phase(model, x, rng)
        ascend(wake, opt_p)
        sleep = sleep_phase(model, len(x), rng)
        ascend(sleep, opt_q)
        return {"wake": wake.item(), "sleep": sleep.item()}


class ReweightedWakeSleep(Estimator):
    """Reweighted wake-sleep (Bornschein & Bengio 2015): the chosen updates from one set of k samples per image
    (p: θ; q-wake and sleep: λ), one backward pass, then a step of each optimiser.  θ's update is consistent
    for ∇θ log p(x) (self-normalised importance sampling: biased at finite K).  bound: L̂_K per image."""
    name, target, claim = "rws", "log p(x)", "consistent"

    def __init__(self, k=5, updates=UPDATES):
        bad = set(updates) - set(UPDATES)
        if bad or not updates:
            raise ValueError(f"ReweightedWakeSleep: updates must be among {UPDATES}, got {tuple(updates)}")
        if k < 1:
            raise ValueError(f"ReweightedWakeSleep: k must be >= 1, got {k}")
        self.k, self.updates = k, tuple(updates)

    def objective(self, model, x, rng):
        surrogate, bound, _ = self._terms(model, x, rng)
        return Objective(surrogate, bound)

    def step(self, model, x, optimizers, rng):
        surrogate, bound, sleep = self._terms(model, x, rng)
        ascend(surrogate, *optimizers)
        out = {} if sleep is None else {"sleep": sleep.item()}
        out["bound"] = float(bound.mean())                          # L_k of this batch, for free
        return out

    def _terms(self, model, x, rng):
        """(surrogate, L̂_K per image, the sleep objective or None)."""
        log_p, log_q, omega = reweighted_wake(model, x, rng, self.k, q_grad="q-wake" in self.updates)
        n, surrogate, sleep = len(x), 0, None
        if "p" in self.updates:
            surrogate = surrogate + ops.sum(log_p * omega) / n                   # Σ_k ω_k log p(x, h_k)
        if "q-wake" in self.updates:
            surrogate = surrogate + ops.sum(log_q * omega) / n                   # Σ_k ω_k log q(h_k|x)
        if "sleep" in self.updates:
            sleep = sleep_phase(model, n, rng)
            surrogate = surrogate + sleep
        return surrogate, bound_value(log_p.data - log_q.data), sleep
