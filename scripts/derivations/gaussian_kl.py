"""The Gaussian KL in closed form: by hand, by the engine, and by Monte Carlo.

    KL(N(m1, s1^2) || N(m2, s2^2)) = log s2/s1 + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2          (slide)
    KL(N(mu, s^2) || N(0, 1))      = 1/2 (mu^2 + s^2 - 1 - log s^2)        (the VAE's, Kingma & Welling App. B)
    KL(p || q)                     = E_p[log p(z) - log q(z)]             (the definition, sampled)

and its gradient, derived by hand from the closed form:

    d KL / d m1 = (m1 - m2) / s2^2          d KL / d s1 = -1/s1 + s1 / s2^2
    d KL / d m2 = -(m1 - m2) / s2^2         d KL / d s2 = 1/s2 - (s1^2 + (m1 - m2)^2) / s2^3

Run:  python scripts/derivations/gaussian_kl.py
"""
import numpy as np

import tinydgm as td
from tinydgm.distributions import Normal, kl_divergence, kl_standard_normal
from tinydgm.estimators import summarize

S = 200_000                       # Monte-Carlo samples
rng = np.random.default_rng(0)


def closed_form(m1, s1, m2, s2):
    return np.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5


def hand_gradient(m1, s1, m2, s2):
    d = m1 - m2
    return np.array([d / s2 ** 2, -1 / s1 + s1 / s2 ** 2, -d / s2 ** 2, 1 / s2 - (s1 ** 2 + d ** 2) / s2 ** 3])


def row(name, closed, engine, mc=None):
    mc = "" if mc is None else f"{mc.mean:12.6f} +- {mc.stderr:.6f}   ({(mc.mean - closed) / mc.stderr:+.2f} SE)"
    print(f"  {name:<32}{closed:12.6f}{engine:12.6f}   {mc}")


print(f"{'':<34}{'closed form':>12}{'engine':>12}   Monte Carlo ({S} samples) +- standard error")
for m1, s1, m2, s2 in [(0.5, 0.8, -0.3, 1.5), (2.0, 0.3, 0.0, 1.0), (-1.0, 2.0, 1.0, 0.5)]:
    args = [np.float64(v) for v in (m1, s1, m2, s2)]
    p, q = Normal(args[0], args[1]), Normal(args[2], args[3])
    z = p.sample((S,), rng=rng)
    mc = summarize(p.log_prob(z).data - q.log_prob(z).data)          # log p(z) - log q(z), z ~ p
    row(f"KL(N({m1},{s1}^2)||N({m2},{s2}^2))", closed_form(*args), kl_divergence(p, q).item(), mc)

print("\n  the VAE's form, against N(0, 1), summed over 3 latent units")
mu, s = np.array([0.3, -1.2, 0.0]), np.array([0.5, 1.1, 2.0])
q = Normal.from_log_var(mu, np.log(s ** 2))
z = q.sample((S,), rng=rng)
mc = summarize((q.log_prob(z) - Normal(np.zeros(3), np.ones(3)).log_prob(z)).data.sum(-1))
row("1/2 sum(mu^2+s^2-1-log s^2)", 0.5 * np.sum(mu ** 2 + s ** 2 - 1 - np.log(s ** 2)),
    kl_standard_normal(q).sum().item(), mc)

print("\n  gradient of the closed form: hand-derived vs the engine's backward")
args = [np.float64(v) for v in (0.5, 0.8, -0.3, 1.5)]
engine = td.grad(lambda m1, s1, m2, s2: kl_divergence(Normal(m1, s1), Normal(m2, s2)), argnums=(0, 1, 2, 3))(*args)
for name, h, e in zip(["dKL/dm1", "dKL/ds1", "dKL/dm2", "dKL/ds2"], hand_gradient(*args), engine):
    print(f"  {name:<32}{h:12.6f}{float(e):12.6f}   |diff| {abs(h - float(e)):.1e}")
