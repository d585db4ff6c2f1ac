"""The reparameterised ELBO and the importance-weighted bound, for continuous latents (Kingma & Welling 2013;
Rezende et al. 2014; Burda et al. 2016).

    ELBO(x) = E_q[log p(x|z)] − KL(q(z|x) || p(z))                      (KL in closed form)
            = E_q[log p(x|z) + log p(z) − log q(z|x)]                   (KL by sampling)
    ∇λ E_q[f(z)] = E_ε[∇λ f(h(ε, λ))],  z = h(ε, λ) = μ + σ ⊙ ε         (the reparameterisation trick)
    L_k(x)  = E[log 1/k Σ_j w_j],  w_j = p(x, z_j) / q(z_j|x)            (importance.iwae_bound)

Model interface (continuous latents, e.g. `tinydgm.models.vae.VAE`):
    model.elbo(x, rng)          per-example one-sample ELBO, reparameterised (written with `elbo` below)
    model.iwae_bound(x, k, rng) per-example L_k, reparameterised
"""
from tinydgm import ops
from tinydgm.distributions import kl_divergence
from tinydgm.estimators.base import Estimator, Objective


def _event_sum(t, event_ndim):
    """Sum the last `event_ndim` axes: elementwise log densities -> one per latent vector."""
    return ops.sum(t, axis=tuple(range(-event_ndim, 0))) if event_ndim else t


def elbo(log_lik, q, prior=None, n_samples=None, kl="analytic", event_ndim=1, rng=None):
    """A Monte-Carlo ELBO from draws z ~ q (reparameterised where q.has_rsample).

    log_lik(z)   log p(x|z), one value per latent vector; with prior=None it is the log joint log p(x, z).
    q, prior     distributions over z: latent vectors are the last `event_ndim` axes of their batch.
    n_samples    None: one draw, no sample axis (z has q's shape); S: S draws along a new axis 0, averaged.
    kl           "analytic": E_q[log p(x|z)] − KL(q || p), the KL in closed form (kl_divergence); without a
                 prior, E_q[log p(x, z)] + H(q), the entropy in closed form.
                 "mc": E_q[log p(x|z) + log p(z) − log q(z)], everything by sampling.
    Returns a Tensor of shape q.batch_shape[:-event_ndim].  Gradients reach q's parameters through the samples
    only when q.has_rsample; for a discrete q add `score_function.score_function_surrogate`.
    """
    if kl not in ("analytic", "mc"):
        raise ValueError(f"elbo: kl must be 'analytic' or 'mc', not {kl!r}")
    shape = () if n_samples is None else (n_samples,)
    z = q.rsample(shape, rng=rng) if q.has_rsample else q.sample(shape, rng=rng)
    expected = log_lik(z) if n_samples is None else ops.mean(log_lik(z), axis=0)         # E_q[log p(x|z)]
    if kl == "analytic":
        if prior is None:
            return expected + _event_sum(q.entropy(), event_ndim)                         # + H(q)
        return expected - _event_sum(kl_divergence(q, prior), event_ndim)                # − KL(q || p)
    log_ratio = -_event_sum(q.log_prob(z), event_ndim)                                    # − log q(z)
    if prior is not None:
        log_ratio = log_ratio + _event_sum(prior.log_prob(z), event_ndim)                 # + log p(z)
    return expected + (log_ratio if n_samples is None else ops.mean(log_ratio, axis=0))


class _Continuous(Estimator):
    """The VAE family: the surrogate is the batch mean of the per-example objective, so its value is the bound's mean."""

    def report(self, objective):
        return {"bound": objective.surrogate.item()}


class ELBO(_Continuous):
    """The reparameterised ELBO with the KL in closed form (Kingma & Welling 2013, eq. 10): unbiased for ∇ ELBO."""
    name, target, claim = "elbo", "elbo", "unbiased"

    def objective(self, model, x, rng):
        values = model.elbo(x, rng=rng)
        return Objective(ops.mean(values), values.data)


class IWAE(_Continuous):
    """The importance-weighted bound L_k, reparameterised (Burda et al. 2016): unbiased for ∇ L_k."""
    name, target, claim = "iwae", "L_K", "unbiased"

    def __init__(self, k=5):
        if k < 1:
            raise ValueError(f"IWAE: k must be >= 1, got {k}")
        self.k = k

    def objective(self, model, x, rng):
        values = model.iwae_bound(x, self.k, rng=rng)
        return Objective(ops.mean(values), values.data)
