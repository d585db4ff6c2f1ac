"""The ELBO on a model where everything is exact: the linear-Gaussian latent variable model.

    p(z) = N(0, I_d),   p(x|z) = N(W z + b, s^2 I_D)
    p(x) = N(x; b, W W^T + s^2 I)                                       exact marginal
    p(z|x) = N(S W^T (x - b) / s^2, S),   S = (I + W^T W / s^2)^-1       exact posterior

    log p(x) = E_q[log p(x|z)] - KL(q(z) || p(z)) + KL(q(z) || p(z|x))     (slide)
             = ELBO(q)                          + (the gap, >= 0)

so ELBO <= log p(x), with equality exactly when q is the posterior.  For a diagonal q = N(m, diag v):

    E_q[log p(x|z)] = -D/2 log(2 pi s^2) - (|x - W m - b|^2 + sum_j |W_j|^2 v_j) / (2 s^2)

W has orthogonal columns here, so the posterior is diagonal too and the tinydgm Normal can be it.
Last, the importance-weighted bound L_k = E[log 1/k sum_j p(x, z_j)/q(z_j)] climbs to log p(x).

Run:  python scripts/derivations/elbo.py
"""
import numpy as np

from tinydgm.distributions import Normal, kl_divergence
from tinydgm.estimators import elbo, iwae_bound, summarize

rng = np.random.default_rng(0)
d, D, s = 2, 4, 0.7
W = np.linalg.qr(rng.standard_normal((D, d)))[0] * np.array([1.5, 0.6])     # orthogonal columns
b = rng.standard_normal(D)
x = W @ rng.standard_normal(d) + b + s * rng.standard_normal(D)             # one observation
S = 20_000

# -- the exact quantities, in NumPy --------------------------------------------------------------
C = W @ W.T + s ** 2 * np.eye(D)
log_px = -0.5 * (D * np.log(2 * np.pi) + np.linalg.slogdet(C)[1] + (x - b) @ np.linalg.solve(C, x - b))
post_var = 1 / (1 + (W ** 2).sum(0) / s ** 2)                               # diag of S
post_mean = post_var * (W.T @ (x - b)) / s ** 2


def elbo_closed_form(m, v):
    expected_log_lik = -0.5 * D * np.log(2 * np.pi * s ** 2) - \
        (np.sum((x - W @ m - b) ** 2) + np.sum((W ** 2).sum(0) * v)) / (2 * s ** 2)
    kl = 0.5 * np.sum(m ** 2 + v - 1 - np.log(v))
    return expected_log_lik - kl


# -- the same with the engine --------------------------------------------------------------------
prior = Normal(np.zeros(d), np.ones(d))


def log_lik(z):                                        # log p(x|z), one value per sample of z
    return Normal(z @ W.T + b, np.full(D, s)).log_prob(x).sum(-1)


def per_sample(q, kl, rng):
    """The S one-sample ELBO estimates whose mean `elbo` returns, drawn the same way (for their SE)."""
    z = q.rsample((S,), rng=rng)
    if kl == "analytic":
        return log_lik(z).data - kl_divergence(q, prior).data.sum()
    return (log_lik(z) + prior.log_prob(z).sum(-1) - q.log_prob(z).sum(-1)).data


print(f"log p(x) exact = {log_px:.6f}\n")
print(f"{'q':<22}{'closed form':>12}   engine: elbo(), {S} samples +- SE     gap: log p(x)-ELBO  vs  KL(q||p(z|x))")
posterior = Normal(post_mean, np.sqrt(post_var))
for i, (name, q) in enumerate([("N(0, I) (the prior)", prior),
                ("N(m, v), a guess", Normal(post_mean + np.array([0.5, -0.3]), np.sqrt(post_var) * np.array([1.6, 0.5]))),
                ("the exact posterior", posterior)]):
    closed = elbo_closed_form(q.loc.data, q.scale.data ** 2)
    gap = kl_divergence(q, posterior).data.sum()
    for kl in ("analytic", "mc"):
        engine = elbo(log_lik, q, prior, n_samples=S, kl=kl, rng=np.random.default_rng(i)).item()
        mc = summarize(per_sample(q, kl, np.random.default_rng(i)))          # the same draws: same mean
        z = (engine - closed) / mc.stderr if mc.stderr > 0 else 0.0
        label = name if kl == "analytic" else "  (KL by sampling)"
        print(f"{label:<22}{closed:12.6f}   {engine:12.6f} +- {mc.stderr:.6f} ({z:+5.2f} SE)"
              f"   {log_px - closed:18.6f}  vs  {gap:.6f}")

print(f"\nimportance-weighted bound L_k with q = the guess above, mean of 400 draws +- SE (log p(x) = {log_px:.4f})")
q = Normal(post_mean + np.array([0.5, -0.3]), np.sqrt(post_var) * np.array([1.6, 0.5]))
for k in (1, 4, 16, 64, 256):
    z = q.sample((k, 400), rng=rng)                                          # k importance samples, 400 draws of L_k
    log_w = (log_lik(z) + prior.log_prob(z).sum(-1) - q.log_prob(z).sum(-1))
    L = summarize(iwae_bound(log_w, axis=0).data)
    print(f"  k = {k:<4} L_k = {L.mean:9.4f} +- {L.stderr:.4f}    log p(x) - L_k = {log_px - L.mean:.4f}")
