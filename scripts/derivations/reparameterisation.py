"""The reparameterisation trick: move the parameters out of the distribution and into a function.

    z = h(eps, l) = mu + sigma * eps,   eps ~ N(0, 1),   l = (mu, sigma)
    d/dl E_q(z|l)[f(z)] = d/dl E_eps[f(h(eps, l))] = E_eps[f'(h(eps, l)) dh/dl]          (slide)
    dh/dmu = 1,   dh/dsigma = eps

Checked on two functions whose expectations have closed forms:

    f(z) = a z^2 + b z + c:   E_q[f] = a (mu^2 + sigma^2) + b mu + c
                              d/dmu = 2 a mu + b,           d/dsigma = 2 a sigma
    f(z) = exp(k z):          E_q[f] = exp(k mu + k^2 sigma^2 / 2)          (the log-normal mean)
                              d/dmu = k E_q[f],             d/dsigma = k^2 sigma E_q[f]

Columns: the closed form; the engine's backward through f(mu + sigma eps), averaged over S draws of
eps, +- its standard error; and the slide's E_eps[f'(h) dh/dl] written by hand on the *same* eps
(it equals the engine's number to rounding: backward computes exactly f'(h) dh/dl).

Run:  python scripts/derivations/reparameterisation.py
"""
import numpy as np

import tinydgm as td
from tinydgm.estimators import gradient_samples, summarize

S = 100_000
mu, sigma = np.float64(0.7), np.float64(1.3)
a, b, c, k = 1.5, -0.5, 3.0, 0.5

functions = {
    "a z^2 + b z + c": (lambda z: a * z * z + b * z + c,                   # f (on Tensors)
                        lambda z: 2 * a * z + b,                            # f' (by hand, NumPy)
                        (2 * a * mu + b, 2 * a * sigma)),                   # closed-form gradient
    "exp(k z), k = 1/2": (lambda z: td.exp(k * z),
                          lambda z: k * np.exp(k * z),
                          (k * np.exp(k * mu + k ** 2 * sigma ** 2 / 2), k ** 2 * sigma * np.exp(k * mu + k ** 2 * sigma ** 2 / 2))),
}

rng = np.random.default_rng(0)
eps = rng.standard_normal(S)
print(f"q = N({mu}, {sigma}^2), {S} draws of eps\n")
hand_header = "hand f'(h) dh/dl, same eps"
print(f"{'f(z)':<20}{'':<10}{'closed form':>12}   {'engine backward +- SE':<30}{hand_header:>27}")
for name, (f, f_prime, closed) in functions.items():
    grads = gradient_samples(lambda m, s: f(m + s * eps), [mu, sigma], S)    # row i: d f(mu + sigma eps_i) / d(mu, sigma)
    h = mu + sigma * eps
    hand = (np.mean(f_prime(h) * 1.0), np.mean(f_prime(h) * eps))           # E_eps[f'(h) dh/dl]
    for label, g, exact, by_hand in zip(("d/dmu", "d/dsigma"), grads, closed, hand):
        e = summarize(g)
        print(f"{name:<20}{label:<10}{exact:12.6f}   {e.mean:10.6f} +- {e.stderr:.6f} ({(e.mean - exact) / e.stderr:+5.2f} SE)"
              f"{by_hand:16.6f}  (|diff| {abs(by_hand - e.mean):.0e})")
        name = ""
