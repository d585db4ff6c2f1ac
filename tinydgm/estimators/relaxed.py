"""Relaxed binary latents: the binary Concrete relaxation (Maddison et al. 2017; Jang et al. 2017) and the
straight-through estimator (Bengio et al. 2013).

    y = σ(z),  z = (a + log u − log(1 − u)) / τ,  u ~ U(0, 1)       a binary Concrete sample: y -> Bernoulli(σ(a)) as τ -> 0
    relaxed           the reparameterised gradient of a relaxed ELBO over y: biased for the discrete ELBO
    straight-through  forward the hard h = [y > 1/2] (an exact Bernoulli draw), backward as if h were y: biased

Model interface: `tinydgm.estimators.discrete`, with its `prior_logits`, `generative_logits` and `log_likelihood`.
"""
from tinydgm import ops
from tinydgm.distributions import LogitRelaxedBernoulli
from tinydgm.estimators.base import Estimator, Objective, total
from tinydgm.tensor import Tensor, unwrap

DENSITIES = ("concrete", "bernoulli")


def straight_through(y):
    """Forward the hard threshold [y > 1/2], backward the gradient of y (Bengio et al. 2013; with a relaxed
    Bernoulli y, "straight-through Gumbel", Jang et al. 2017): y + (hard − y) with (hard − y) a constant.

    The forward value is exactly 0 or 1: y − y = 0, and 1 − y is exact for y in (1/2, 1] (Sterbenz)."""
    y = y if isinstance(y, Tensor) else Tensor(y)
    hard = (y.data > 0.5).astype(y.dtype)
    return y + Tensor(hard - y.data)


def _soft_bernoulli_log_prob(logits, s):
    """Σ_i s_i a_i − softplus(a_i): the Bernoulli log-probability's formula, differentiable in s too (s in [0, 1])."""
    return ops.sum(s * logits - ops.softplus(logits), axis=-1)


def _relaxed_sample(model, x, rng, temperature):
    """Up the recognition net with relaxed units: per layer the logits a_l of q, the logit z_l = (a_l + logistic
    noise)/τ of a binary Concrete sample and y_l = σ(z_l), which the layer above sees."""
    s, out = unwrap(x), []
    for l in range(len(model.layers) - 1):
        a = model.recognition_logits(l, s)
        z = LogitRelaxedBernoulli(temperature, a, validate_args=False).rsample(rng=rng)
        s = ops.sigmoid(z)
        out.append((a, z, s))
    return out


class Relaxed(Estimator):
    """The relaxed ELBO of a binary Concrete relaxation (Maddison et al. 2017, §3.3, App. C), reparameterised:
    one sample y ~ q̃_τ(y|x) per image, y_l = σ(z_l), z_l = (a_l + log u − log(1 − u)) / τ, and the gradient of

        log p(x | y_1) + Σ_l [log p̃(y_l | y_{l+1}) − log q̃(y_l | y_{l-1})]          (y_{L+1}: none, the prior)

    log p(x | y_1): the model's log-likelihood with continuous y_1 as input.
    density="concrete" (Maddison et al.'s recommendation): p̃ and q̃ are binary Concrete densities, prior and
        generative layers at `prior_temperature` (default τ), evaluated on the logits z (`LogitRelaxedBernoulli`):
        the Jacobians cancel, so this is the ELBO of the relaxed model.  With equal temperatures the log-ratio's
        mean is the KL of two logistics, which does not depend on τ and is not the Bernoulli KL at any τ.
    density="bernoulli": p̃ and q̃ are the Bernoulli formulas Σ y a − softplus(a) at continuous y (as f(σ(z/τ))
        in Tucker et al. 2017, §2): the discrete ELBO's integrand at the relaxed sample, -> ELBO as τ -> 0.
    bound: the relaxed objective's per-image estimate.  Biased for the discrete ELBO's gradient.
    """
    name, target, claim = "relaxed", "relaxed elbo", "biased"

    def __init__(self, temperature=0.5, prior_temperature=None, density="concrete"):
        if density not in DENSITIES:
            raise ValueError(f"Relaxed: density must be one of {DENSITIES}, not {density!r}")
        if not temperature > 0 or not (prior_temperature is None or prior_temperature > 0):
            raise ValueError(f"Relaxed: temperatures must be > 0, got {temperature!r} and {prior_temperature!r}")
        self.temperature, self.prior_temperature, self.density = temperature, prior_temperature, density

    def objective(self, model, x, rng):
        tau = self.temperature
        tau_p = tau if self.prior_temperature is None else self.prior_temperature
        layers = _relaxed_sample(model, x, rng, tau)
        ys = [y for _, _, y in layers]

        def log_density(logits, l, t):                 # log p̃ or log q̃ of layer l's relaxed units, per image
            _, z, y = layers[l]
            if self.density == "bernoulli":
                return _soft_bernoulli_log_prob(logits, y)
            return ops.sum(LogitRelaxedBernoulli(t, logits, validate_args=False).log_prob(z), axis=-1)

        log_q = total([log_density(a, l, tau) for l, (a, _, _) in enumerate(layers)])
        log_p = log_density(model.prior_logits(), len(layers) - 1, tau_p)                          # log p̃(y_L)
        for l in reversed(range(1, len(layers))):
            log_p = log_p + log_density(model.generative_logits(l, ys[l]), l - 1, tau_p)          # log p̃(y_l | y_{l+1})
        log_p = log_p + model.log_likelihood(x, ys[0])
        elbo = log_p - log_q
        return Objective(ops.mean(elbo), elbo.data)


class StraightThrough(Estimator):
    """Straight-through Gumbel on the ELBO (Bengio et al. 2013; Jang et al. 2017): h_l = [y_l > 1/2] with
    y_l ~ binary Concrete(a_l, τ), an exact draw from Bernoulli(σ(a_l)); forward ℓ = log p(x, h) − log q(h|x)
    at the hard h, backward as if h were y (`straight_through`).  Biased for λ; θ's gradient is REINFORCE's.
    bound: ℓ, the ELBO's estimate."""
    name, target, claim = "straight-through", "elbo", "biased"

    def __init__(self, temperature=1.0):
        if not temperature > 0:
            raise ValueError(f"StraightThrough: the temperature must be > 0, got {temperature!r}")
        self.temperature = temperature

    def objective(self, model, x, rng):
        s, hs, log_q = unwrap(x), [], 0
        for l in range(len(model.layers) - 1):
            a = model.recognition_logits(l, s)
            z = LogitRelaxedBernoulli(self.temperature, a, validate_args=False).rsample(rng=rng)
            s = straight_through(ops.sigmoid(z))
            hs.append(s)
            log_q = log_q + _soft_bernoulli_log_prob(a, s)                                     # log q(h_l | h_{l-1})
        log_p = _soft_bernoulli_log_prob(model.prior_logits(), hs[-1])                        # log p(h_L)
        for l in reversed(range(1, len(hs))):
            log_p = log_p + _soft_bernoulli_log_prob(model.generative_logits(l, hs[l]), hs[l - 1])
        log_p = log_p + model.log_likelihood(x, hs[0])
        elbo = log_p - log_q
        return Objective(ops.mean(elbo), elbo.data)
