"""The Helmholtz machine's nets trained on a variational objective: the ELBO (or L_K) ascended in θ and λ
together, one function per gradient estimator for the binary units h (the lecture's estimator story).

    ELBO(x) = E_q(h|x)[ℓ],  ℓ = log p(x, h|θ) − log q(h|x, λ)          L_K(x) = E[log 1/K Σ_k w_k],  w_k = e^ℓ_k
    ∇θ ELBO = E_q[∇θ log p(x, h)]                                       (all but `relaxed`, from h ~ q)
    ∇λ:  reinforce         mean ℓ ∇λ log q(h|x)                         (Williams 1992)
         nvil              layer-wise signals, a learned baseline, running mean and variance  (Mnih & Gregor 2014)
         vimco             ∇ L_K with leave-one-out baselines           (Mnih & Rezende 2016)
         relaxed           the reparameterised gradient of a relaxed ELBO over binary Concrete h   (Maddison et al. 2017)
         straight-through  ℓ at hard h = [y > 1/2], differentiated as if h were y ~ binary Concrete  (Bengio et al. 2013;
                           Jang et al. 2017)

Each `<name>_objective(model, x, rng, ...)` returns Objective(surrogate, bound): a scalar Tensor whose gradient
in θ and λ is the estimator's estimate of the gradient of the mean objective over the batch, and the objective's
per-image estimate (an array); each `<name>_step(model, x, opt_p, opt_q, rng, ...)` ascends it with one step of
each optimiser and returns {"bound": its mean over the batch}, like `reweighted_step`.
"""
import collections

import tinydgm as td
from tinydgm import numerics
from tinydgm.distributions import LogitRelaxedBernoulli
from tinydgm.estimators import local_signals, score_function_surrogate, straight_through, vimco_surrogate
from tinydgm.models.wake_sleep.model import _linear, _xp

Objective = collections.namedtuple("Objective", "surrogate bound")
Objective.__doc__ = "A scalar to ascend (its gradient is the estimate; its value means nothing) and the per-image objective estimate."
NVILObjective = collections.namedtuple("NVILObjective", "surrogate baseline_loss bound")
NVILObjective.__doc__ = "Objective plus the loss NVIL's baselines minimise."

DENSITIES = ("concrete", "bernoulli")


def _total(terms):
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def _ascend(surrogate, *opts, loss=0):
    """One step of each optimiser up the surrogate (and down `loss`: the baselines' own)."""
    for opt in opts:
        opt.zero_grad()
    (loss - surrogate).backward()
    for opt in opts:
        opt.step()


def _out(objective):
    return {"bound": float(objective.bound.mean())}


# =============================================================================================
# Score-function estimators: REINFORCE, NVIL, VIMCO
# =============================================================================================

def reinforce_objective(model, x, rng):
    """REINFORCE on the ELBO, no baseline: mean_n [∇θ log p(x_n, h_n) + ℓ_n ∇λ log q(h_n|x_n)],  h_n ~ q(h|x_n)."""
    hs, q_terms = model.sample_q_with_log_q(x, rng)
    log_p, log_q = model.log_joint(x, hs), _total(q_terms)
    signal = log_p.data - log_q.data                                             # ℓ = log p(x, h) − log q(h|x)
    return Objective(td.mean(log_p) + score_function_surrogate(signal, log_q), signal)


def reinforce_step(model, x, opt_p, opt_q, rng):
    """One step of θ (opt_p) and λ (opt_q) up the ELBO, λ's gradient by REINFORCE; returns {"bound": ELBO estimate}."""
    objective = reinforce_objective(model, x, rng)
    _ascend(objective.surrogate, opt_p, opt_q)
    return _out(objective)


def nvil_objective(model, x, rng, nvil, update=True):
    """NVIL on the ELBO (`estimators.NVIL`): layer l's local signal, centred by its baseline b_l(h_{l-1}) and running
    mean, divided by max(1, √v_l), times ∇λ log q(h_l | h_{l-1}); θ as REINFORCE.  `update`: fold the batch into
    NVIL's running statistics (tests hold them fixed)."""
    hs, q_terms = model.sample_q_with_log_q(x, rng)
    p_terms = model.log_joint_terms(x, hs)
    signals = local_signals([t.data for t in p_terms], [t.data for t in q_terms])   # signals[0] = ℓ
    terms = nvil.surrogate(signals, q_terms, [td.tensor(x).data, *hs[:-1]], update=update)
    log_p = _total(p_terms[::-1])                                                     # log p(h_L) + ... + log p(x | h_1)
    return NVILObjective(td.mean(log_p) + terms.surrogate, terms.baseline_loss, signals[0])


def nvil_step(model, x, opt_p, opt_q, rng, nvil, opt_b):
    """One step of θ (opt_p), λ (opt_q) and NVIL's baselines (opt_b, over nvil.parameters()); {"bound": ELBO estimate}."""
    objective = nvil_objective(model, x, rng, nvil)
    _ascend(objective.surrogate, opt_p, opt_q, opt_b, loss=objective.baseline_loss)
    return _out(objective)


def vimco_objective(model, x, rng, k=5):
    """VIMCO on L_k (`estimators.vimco_surrogate`): k samples per image, leave-one-out baselines; bound: L̂_k per image."""
    hs, q_terms = model.sample_q_with_log_q(x, rng, k)
    log_q = _total(q_terms)
    log_w = model.log_joint(x, hs) - log_q                                        # (k, B)
    bound = numerics.log_mean_exp(_xp(log_w.data), log_w.data, axis=0)
    return Objective(vimco_surrogate(log_w, log_q) / len(x), bound)


def vimco_step(model, x, opt_p, opt_q, rng, k=5):
    """One step of θ and λ up L_k by VIMCO; returns {"bound": L̂_k of the batch}."""
    objective = vimco_objective(model, x, rng, k)
    _ascend(objective.surrogate, opt_p, opt_q)
    return _out(objective)


# =============================================================================================
# Relaxed h: the binary Concrete relaxation and straight-through
# =============================================================================================

def _soft_bernoulli_log_prob(logits, s):
    """Σ_i s_i a_i − softplus(a_i): the Bernoulli log-probability's formula, differentiable in s too (s in [0, 1])."""
    return td.sum(s * logits - td.softplus(logits), axis=-1)


def _relaxed_sample(model, x, rng, temperature):
    """Up the recognition net with relaxed units: per layer the logits a_l of q, the logit z_l = (a_l + logistic
    noise)/τ of a binary Concrete sample and y_l = σ(z_l), which the layer above sees."""
    s, out = td.tensor(x).data, []
    for layer in model.recognition:
        a = _linear(layer, s)
        z = LogitRelaxedBernoulli(temperature, a, validate_args=False).rsample(rng=rng)
        s = td.sigmoid(z)
        out.append((a, z, s))
    return out


def relaxed_objective(model, x, rng, temperature=0.5, prior_temperature=None, density="concrete"):
    """The relaxed ELBO of a binary Concrete relaxation (Maddison et al. 2017, §3.3, App. C), reparameterised:
    one sample y ~ q̃_τ(y|x) per image, y_l = σ(z_l), z_l = (a_l + log u − log(1 − u)) / τ, and the gradient of

        log p(x | y_1) + Σ_l [log p̃(y_l | y_{l+1}) − log q̃(y_l | y_{l-1})]          (y_{L+1}: none, the prior)

    log p(x | y_1): the Bernoulli-logits log-likelihood of the binary image with continuous y_1 as input.
    density="concrete" (Maddison et al.'s recommendation): p̃ and q̃ are binary Concrete densities, prior and
        generative layers at `prior_temperature` (default τ), evaluated on the logits z (`LogitRelaxedBernoulli`):
        the Jacobians cancel, so this is the ELBO of the relaxed model.  With equal temperatures the log-ratio's
        mean is the KL of two logistics, which does not depend on τ and is not the Bernoulli KL at any τ.
    density="bernoulli": p̃ and q̃ are the Bernoulli formulas Σ y a − softplus(a) at continuous y (as f(σ(z/τ))
        in Tucker et al. 2017, §2): the discrete ELBO's integrand at the relaxed sample, -> ELBO as τ -> 0.
    bound: the relaxed objective's per-image estimate.
    """
    if density not in DENSITIES:
        raise ValueError(f"relaxed_objective: density must be one of {DENSITIES}, not {density!r}")
    tau_p = temperature if prior_temperature is None else prior_temperature
    layers = _relaxed_sample(model, x, rng, temperature)
    ys = [y for _, _, y in layers]

    def log_density(logits, l, tau):                # log p̃ or log q̃ of layer l's relaxed units, per image
        _, z, y = layers[l]
        if density == "bernoulli":
            return _soft_bernoulli_log_prob(logits, y)
        return td.sum(LogitRelaxedBernoulli(tau, logits, validate_args=False).log_prob(z), axis=-1)

    log_q = _total([log_density(a, l, temperature) for l, (a, _, _) in enumerate(layers)])
    log_p = log_density(model.prior, len(layers) - 1, tau_p)                                 # log p̃(y_L)
    for l in reversed(range(1, len(layers))):
        log_p = log_p + log_density(_linear(model.generative[l], ys[l]), l - 1, tau_p)    # log p̃(y_l | y_{l+1})
    log_p = log_p + td.sum(td.bernoulli_log_prob(_linear(model.generative[0], ys[0]), td.tensor(x).data), axis=-1)
    elbo = log_p - log_q
    return Objective(td.mean(elbo), elbo.data)


def relaxed_step(model, x, opt_p, opt_q, rng, temperature=0.5, prior_temperature=None, density="concrete"):
    """One step of θ and λ up the relaxed ELBO (`relaxed_objective`); returns {"bound": its estimate}."""
    objective = relaxed_objective(model, x, rng, temperature, prior_temperature, density)
    _ascend(objective.surrogate, opt_p, opt_q)
    return _out(objective)


def straight_through_objective(model, x, rng, temperature=1.0):
    """Straight-through Gumbel on the ELBO (Bengio et al. 2013; Jang et al. 2017): h_l = [y_l > 1/2] with
    y_l ~ binary Concrete(a_l, τ), an exact draw from Bernoulli(σ(a_l)); forward ℓ = log p(x, h) − log q(h|x)
    at the hard h, backward as if h were y (`estimators.straight_through`).  Biased for λ; θ's gradient is
    REINFORCE's.  bound: ℓ, the ELBO's estimate."""
    s, hs, log_q = td.tensor(x).data, [], 0
    for layer in model.recognition:
        a = _linear(layer, s)
        z = LogitRelaxedBernoulli(temperature, a, validate_args=False).rsample(rng=rng)
        s = straight_through(td.sigmoid(z))
        hs.append(s)
        log_q = log_q + _soft_bernoulli_log_prob(a, s)                                      # log q(h_l | h_{l-1})
    log_p = _soft_bernoulli_log_prob(model.prior, hs[-1])                                 # log p(h_L)
    for l in reversed(range(1, len(hs))):
        log_p = log_p + _soft_bernoulli_log_prob(_linear(model.generative[l], hs[l]), hs[l - 1])
    log_p = log_p + td.sum(td.bernoulli_log_prob(_linear(model.generative[0], hs[0]), td.tensor(x).data), axis=-1)
    elbo = log_p - log_q
    return Objective(td.mean(elbo), elbo.data)


def straight_through_step(model, x, opt_p, opt_q, rng, temperature=1.0):
    """One step of θ and λ by the straight-through estimator; returns {"bound": the ELBO's estimate}."""
    objective = straight_through_objective(model, x, rng, temperature)
    _ascend(objective.surrogate, opt_p, opt_q)
    return _out(objective)
