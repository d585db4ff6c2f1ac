"""Variational autoencoder (Kingma & Welling 2013; Rezende et al. 2014) and its IWAE bound (Burda et al. 2016).

    q(z|x) = N(mu(x), sigma(x)^2)        encoder MLP -> [mu, log sigma^2]
    p(z)   = N(0, I),  p(x|z) = Bernoulli(logits(z))   decoder MLP -> logits
    ELBO   = E_q[log p(x|z)] - KL(q(z|x) || p(z))      reparameterised, KL in closed form
    L_k    = E[log 1/k sum_j p(x, z_j) / q(z_j|x)],  z_j ~ q(z|x)

The same gradient derived by hand is in `by_hand.py`; training runs are in `tinydgm.experiments.vae`.
"""
import numpy as np

import tinydgm as td
from tinydgm import backend, estimators, nn
from tinydgm.distributions import Bernoulli, Normal, kl_standard_normal


class VAE(nn.Module):
    """One stochastic layer of z_dim Gaussian units between two MLPs."""

    def __init__(self, x_dim=784, hidden=(200, 200), z_dim=50, activation="tanh", rng=None, dtype=None):
        rng = np.random.default_rng(rng) if rng is None or isinstance(rng, int) else rng
        self.x_dim, self.hidden, self.z_dim = x_dim, tuple(hidden), z_dim
        self.encoder = nn.MLP([x_dim, *hidden, 2 * z_dim], activation, rng=rng, dtype=dtype)
        self.decoder = nn.MLP([z_dim, *hidden[::-1], x_dim], activation, rng=rng, dtype=dtype)

    def prior(self, dtype):
        """p(z) = N(0, I)."""
        xp = backend.xp()
        return Normal(xp.zeros(self.z_dim, dtype), xp.ones(self.z_dim, dtype), validate_args=False)

    def encode(self, x):
        """q(z|x): the one place where log sigma^2 becomes a scale."""
        mu, log_var = td.split(self.encoder(x), 2, axis=-1)
        return Normal.from_log_var(mu, log_var)

    def decode(self, z):
        """p(x|z) as Bernoulli logits."""
        return Bernoulli(logits=self.decoder(z), validate_args=False)

    def elbo(self, x, rng=None):
        """Per-example ELBO = log p(x|z) - KL(q(z|x) || N(0, I)), z = mu + sigma * eps (one sample)."""
        q = self.encode(x)
        z = q.rsample(rng=rng)
        log_px = td.sum(self.decode(z).log_prob(x), axis=-1)
        return log_px - td.sum(kl_standard_normal(q), axis=-1)

    def iwae_bound(self, x, k, rng=None):
        """Per-example L_k = logsumexp_j log w_j - log k, w_j = p(x, z_j) / q(z_j|x).

        Burda et al. 2016, eq. 8; z_j ~ q(z|x) reparameterised, so it trains an IWAE too.
        """
        q = self.encode(x)
        z = q.rsample((k,), rng=rng)                                        # (k, B, z_dim)
        log_px = td.sum(self.decode(z).log_prob(x), axis=-1)
        log_pz = td.sum(self.prior(z.dtype).log_prob(z), axis=-1)
        log_qz = td.sum(q.log_prob(z), axis=-1)
        return estimators.iwae_bound(log_px + log_pz - log_qz, axis=0)

    def sample(self, n, rng=None):
        """x ~ p(x|z), z ~ N(0, I): n binary images."""
        rng = np.random.default_rng() if rng is None else rng
        with td.no_grad():
            return self.decode(self.prior_sample(n, rng)).sample(rng=backend.device_rng(rng))

    def prior_sample(self, n, rng=None):
        """z ~ N(0, I), n rows (drawn on the host, moved to the backend)."""
        rng = np.random.default_rng() if rng is None else rng
        return td.tensor(rng.standard_normal((n, self.z_dim), dtype=self.decoder.layers[0].weight.dtype))

    def reconstruct(self, x):
        """The mean of p(x|z) at z = E_q[z|x]."""
        with td.no_grad():
            return self.decode(self.encode(x).loc).probs
