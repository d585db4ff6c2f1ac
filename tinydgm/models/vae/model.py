"""Variational autoencoder (Kingma & Welling 2013; Rezende et al. 2014) and its IWAE bound (Burda et al. 2016).

    q(z|x) = N(mu(x), sigma(x)^2)        encoder MLP -> [mu, log sigma^2]
    p(z)   = N(0, I),  p(x|z) = Bernoulli(logits(z))   decoder MLP -> logits
    ELBO   = E_q[log p(x|z)] - KL(q(z|x) || p(z))      reparameterised, KL in closed form
    L_k    = E[log 1/k sum_j p(x, z_j) / q(z_j|x)],  z_j ~ q(z|x)

and the same ELBO without the reparameterisation trick (the lecture's "MC estimator is not
differentiable" slide): z ~ q(z|x) is drawn as data and the encoder learns by the score function

    d/dlambda ELBO = E_q[(log p(x, z) - log q(z|x) - b) d/dlambda log q(z|x)]     for any constant b

with `estimators.RunningMean` as the baseline b.  The same gradient derived by hand is in `by_hand.py`;
training runs are in `tinydgm.experiments.vae`.
"""

import tinydgm as td
from tinydgm import backend, estimators, nn
from tinydgm.distributions import Bernoulli, Normal, StandardNormal


class VAE(nn.Module):
    """One stochastic layer of z_dim Gaussian units between two MLPs (`init`: nn.Linear's, "pytorch" or "glorot")."""

    def __init__(self, x_dim=784, hidden=(200, 200), z_dim=50, activation="tanh", rng=None, dtype=None, init="pytorch"):
        rng = estimators.generator(rng)
        self.x_dim, self.hidden, self.z_dim = x_dim, tuple(hidden), z_dim
        self.encoder = nn.MLP([x_dim, *hidden, 2 * z_dim], activation, rng=rng, dtype=dtype, init=init)
        self.decoder = nn.MLP([z_dim, *hidden[::-1], x_dim], activation, rng=rng, dtype=dtype, init=init)

    def init_output_bias(self, x):
        """Set p(x|z)'s output bias to the logit of the pixel means of the training images x (Burda et al.'s
        released code starts there; with the weights at 0, p(x|z) would be the data's pixel marginals)."""
        bias = self.decoder.layers[-1].bias
        bias.data[...] = nn.mean_logits(x, bias.dtype)

    def prior(self, dtype):
        """p(z) = N(0, I)."""
        return StandardNormal(self.z_dim, dtype)

    def encode(self, x):
        """q(z|x): the one place where log sigma^2 becomes a scale."""
        mu, log_var = td.split(self.encoder(x), 2, axis=-1)
        return Normal.from_log_var(mu, log_var)

    def decode(self, z):
        """p(x|z) as Bernoulli logits."""
        return Bernoulli(logits=self.decoder(z), validate_args=False)

    def elbo(self, x, rng=None):
        """Per-example ELBO = log p(x|z) - KL(q(z|x) || N(0, I)), z = mu + sigma * eps (one sample): `estimators.elbo`."""
        q = self.encode(x)
        return estimators.elbo(lambda z: td.sum(self.decode(z).log_prob(x), axis=-1), q, self.prior(q.loc.dtype), rng=rng)

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

    def score_function_elbo(self, x, rng=None, baseline=None):
        """Per-example one-sample ELBO, Monte-Carlo KL, whose gradient is the score-function estimator.

            z ~ q(z|x) without reparameterisation (a constant),  f = log p(x|z) + log p(z) - log q(z|x)
            value       f, an unbiased estimate of the ELBO (KL by sampling, not in closed form)
            d/dtheta    d log p(x|z) / dtheta at that z (the decoder's ordinary gradient)
            d/dlambda   (f - b) d log q(z|x) / dlambda  (Williams 1992; Ranganath et al. 2014, eq. 3),
                        without the term -d log q(z|x)/dlambda of f itself, whose mean is 0
        baseline  b: None (0), a number, or one number per example computed without this z (e.g.
                  `estimators.RunningMean.value`); any such b leaves the mean unchanged.  The encoder's part
        comes from `estimators.score_function_surrogate`, added as s - stop(s) (value 0, Foerster et
        al. 2018's trick) and spread over the batch, so that the mean or sum of the returned values
        has the gradient of the mean or sum of the per-example estimates.
        """
        q = self.encode(x)
        z = q.sample(rng=rng)                                                # no gradient reaches q through z
        log_px = td.sum(self.decode(z).log_prob(x), axis=-1)
        log_pz = td.sum(self.prior(z.dtype).log_prob(z), axis=-1)            # no parameters: a constant
        log_qz = td.sum(q.log_prob(z), axis=-1)
        f = log_px.data + log_pz.data - log_qz.data                          # the learning signal, = the value
        b = None if baseline is None else backend.get_array_module(f).asarray(baseline, dtype=f.dtype)
        s = estimators.score_function_surrogate(f[None], log_qz[None], baseline=b)
        return log_px + td.tensor(log_pz.data - log_qz.data) + (s - s.detach()) / f.size

    def sample(self, n, rng=None):
        """x ~ p(x|z), z ~ N(0, I): n binary images."""
        rng = estimators.generator(rng)
        with td.no_grad():
            return self.decode(self.prior_sample(n, rng)).sample(rng=backend.device_rng(rng))

    def prior_sample(self, n, rng=None):
        """z ~ N(0, I), n rows (drawn on the host, moved to the backend)."""
        rng = estimators.generator(rng)
        return td.tensor(rng.standard_normal((n, self.z_dim), dtype=self.decoder.layers[0].weight.dtype))

    def reconstruct(self, x):
        """The mean of p(x|z) at z = E_q[z|x]."""
        with td.no_grad():
            return self.decode(self.encode(x).loc).probs
