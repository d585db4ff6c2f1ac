"""The score-function identity (REINFORCE), its variance against reparameterisation, and baselines.

    d/dl E_q(z|l)[f(z)] = sum_z f(z) d/dl q(z|l) = sum_z q(z|l) f(z) d/dl log q(z|l)
                        = E_q[f(z) d/dl log q(z|l)]                                         (slide)
                        = E_q[(f(z) - b) d/dl log q(z|l)]   for any constant b, as E_q[d/dl log q] = 0

It needs only log q, so it works where z = h(eps, l) does not exist: discrete latent variables
("discrete latent variables are difficult").  The price is variance.  For q = N(mu, sigma^2):

    d/dmu log q = (z - mu) / sigma^2,       d/dsigma log q = ((z - mu)^2 - sigma^2) / sigma^3

and with f(z) = a z^2 + b z + c written as A + B eps + C eps^2 (z = mu + sigma eps;
A = a mu^2 + b mu + c, B = (2 a mu + b) sigma, C = a sigma^2), one sample's d/dmu estimate has

    score, no baseline:   Var = ((A + 3C)^2 + 2B^2 + 6C^2) / sigma^2
    score, b = E_q[f]:    Var = (2B^2 + 10C^2) / sigma^2
    reparameterised:      Var = 4 a^2 sigma^2        (f'(z) = 2 a z + b)

Each estimate below averages M samples; its variance is the one-sample variance / M.

Run:  python scripts/derivations/score_function.py
"""
import numpy as np

import tinydgm as td
from tinydgm.distributions import Categorical, Normal
from tinydgm.estimators import gradient_samples, score_function_surrogate, summarize

S, M = 40_000, 4                       # S gradient estimates, each from M samples
mu, sigma = np.float64(0.7), np.float64(1.3)
a, b, c = 1.5, -0.5, 3.0
rng = np.random.default_rng(0)


def f(z):
    return a * z * z + b * z + c


A, B, C = a * mu ** 2 + b * mu + c, (2 * a * mu + b) * sigma, a * sigma ** 2
exact = (2 * a * mu + b, 2 * a * sigma)                                          # d/dmu, d/dsigma of E_q[f]
var_mu = {"score, no baseline": ((A + 3 * C) ** 2 + 2 * B ** 2 + 6 * C ** 2) / sigma ** 2,
          "score, b = E_q[f]": (2 * B ** 2 + 10 * C ** 2) / sigma ** 2,
          "score, leave-one-out b": None,
          "reparameterised": 4 * a ** 2 * sigma ** 2}


def score(baseline):
    def objective(m, s):                             # m, s: S copies of (mu, sigma)
        q = Normal(m, s)
        z = q.sample((M,), rng=rng)                  # (M, S), no gradient through z
        return score_function_surrogate(f(z.data), q.log_prob(z), baseline=baseline)
    return objective


def reparameterised(m, s):
    z = Normal(m, s).rsample((M,), rng=rng)          # z = m + s eps
    return f(z).mean(axis=0)


print(f"q = N({mu}, {sigma}^2), f(z) = {a} z^2 + {b} z + {c}; {S} estimates of {M} samples each")
print(f"closed form: d/dmu = {exact[0]:.6f}, d/dsigma = {exact[1]:.6f}\n")
print(f"{'estimator':<24}{'d/dmu +- SE':>35}{'Var':>10}{'Var (closed form)':>19}{'d/dsigma +- SE':>35}{'Var':>10}")
objectives = {"score, no baseline": score(None), "score, b = E_q[f]": score(A + C),
              "score, leave-one-out b": score("loo"), "reparameterised": reparameterised}
for name, objective in objectives.items():
    g_mu, g_sigma = (summarize(g) for g in gradient_samples(objective, [mu, sigma], S))
    closed = "" if var_mu[name] is None else f"{var_mu[name] / M:.4f}"
    print(f"{name:<24}" + "".join(f"{e.mean:12.6f} +- {e.stderr:.6f} ({(e.mean - x) / e.stderr:+5.2f} SE)"
                                  + (f"{e.variance:10.4f}{closed:>19}" if x is exact[0] else f"{e.variance:10.4f}")
                                  for e, x in zip((g_mu, g_sigma), exact)))

print("\nthe engine's d/dmu log q against the hand-written score (z - mu)/sigma^2, on the same z:")
z = Normal(mu, sigma).sample(rng=rng)
engine = td.grad(lambda m: Normal(m, sigma).log_prob(z))(mu)
print(f"  engine {float(engine):.12f}   hand {float((z.data - mu) / sigma ** 2):.12f}")

# ---------------------------------------------------------------------------------------------
# A discrete latent: q = Categorical(softmax(l)), no reparameterisation.
#   d/dl_j E_q[f] = p_j (f_j - E_q[f])                                           (closed form)
# ---------------------------------------------------------------------------------------------
print("\nq = Categorical(softmax(l)), f = (3, -1, 0.5, 8): no reparameterisation exists")
logits, table = np.array([0.2, -0.5, 1.0, 0.1]), np.array([3.0, -1.0, 0.5, 8.0])
try:
    Categorical(logits=logits).rsample()
except NotImplementedError as e:
    print(f"  Categorical.rsample -> NotImplementedError: {e}")
p = np.exp(logits - np.log(np.exp(logits).sum()))
exact = p * (table - p @ table)


def categorical_score(baseline):
    def objective(l):                                # l: S copies of the logits, shape (S, 4)
        q = Categorical(logits=l)
        k = q.sample((M,), rng=rng)                  # (M, S) integers
        return score_function_surrogate(table[k], q.log_prob(k), baseline=baseline)
    return objective


print(f"  {'':<24}" + "".join(f"{'d/dl_' + str(j):>22}" for j in range(4)) + f"{'total Var':>12}")
print(f"  {'closed form':<24}" + "".join(f"{x:22.6f}" for x in exact))
for name, baseline in [("score, no baseline", None), ("score, leave-one-out b", "loo")]:
    e = summarize(gradient_samples(categorical_score(baseline), [logits], S)[0])
    print(f"  {name:<24}" + "".join(f"{m:11.6f} +- {s:.6f}" for m, s in zip(e.mean, e.stderr)) + f"{e.variance.sum():12.4f}")
