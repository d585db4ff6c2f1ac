"""The ELBO and the importance-weighted bound on a model with an exact marginal and posterior.

    p(z) = N(0, I_d),  p(x|z) = N(W z + b, s^2 I_D)
    log p(x) = log N(x; b, W W^T + s^2 I),   p(z|x) = N(S W^T (x - b) / s^2, S),  S = (I + W^T W / s^2)^-1
    log p(x) - ELBO(q) = KL(q || p(z|x)) >= 0

For a diagonal q = N(m, diag v) the ELBO has a closed form (computed here with the engine):
    E_q[log p(x|z)] = -D/2 log(2 pi s^2) - (|x - W m - b|^2 + sum_j |W_j|^2 v_j) / (2 s^2)
Monte-Carlo checks by tinydgm.testing: `assert_unbiased` and `assert_bound`, each with a false-alarm rate of 1e-5
for the whole call (|z| < 4.5 for one mean, below the 5 SE of before) and refusing to pass where the draws are too few.
Runs on both backends; hypothesis is derandomised and every sampler is seeded.
"""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import tinydgm as td
from tinydgm.distributions import Normal, kl_divergence
from tinydgm.estimators import elbo, iwae_bound
from tinydgm.testing import assert_bound, assert_unbiased

d, D = 2, 3
S = 4_000                                     # one-sample ELBO estimates per check
ALPHA = 1e-5                                  # false-alarm rate of each statistical assertion


def t64(a):
    return td.tensor(np.asarray(a, dtype=np.float64))


def host(a):
    return td.backend.to_numpy(a.data if isinstance(a, td.Tensor) else a).astype(np.float64)


class LinearGaussian:
    """p(z) = N(0, I_d), p(x|z) = N(W z + b, s^2 I_D), with one observation x drawn from it."""

    def __init__(self, seed, s=0.8, orthogonal=False):
        r = np.random.default_rng(seed)
        W = r.standard_normal((D, d))
        if orthogonal:                        # W^T W diagonal: the exact posterior is a diagonal Normal
            W = np.linalg.qr(W)[0] * r.uniform(0.3, 2.0, d)
        self.W, self.b, self.s = W, r.standard_normal(D), s
        self.x = W @ r.standard_normal(d) + self.b + s * r.standard_normal(D)
        self.Wt, self.bt, self.xt = t64(W), t64(self.b), t64(self.x)
        self.prior = Normal(t64(np.zeros(d)), t64(np.ones(d)))

    # -- exact, in NumPy ----------------------------------------------------------------------
    def log_px(self):
        C = self.W @ self.W.T + self.s ** 2 * np.eye(D)
        r = self.x - self.b
        return -0.5 * (D * np.log(2 * np.pi) + np.linalg.slogdet(C)[1] + r @ np.linalg.solve(C, r))

    def posterior(self):
        """Mean and covariance of p(z|x)."""
        cov = np.linalg.inv(np.eye(d) + self.W.T @ self.W / self.s ** 2)
        return cov @ self.W.T @ (self.x - self.b) / self.s ** 2, cov

    def kl_to_posterior(self, m, v):
        """KL(N(m, diag v) || p(z|x)) for the full-covariance posterior."""
        mu, cov = self.posterior()
        P = np.linalg.inv(cov)
        return 0.5 * (np.trace(P * v) + (mu - m) @ P @ (mu - m) - d + np.linalg.slogdet(cov)[1] - np.log(v).sum())

    # -- with the engine ------------------------------------------------------------------------
    def log_lik(self, z):
        """log p(x|z), one value per latent vector (the last axis of z)."""
        return Normal(z @ self.Wt.T + self.bt, t64(self.s)).log_prob(self.xt).sum(-1)

    def log_joint(self, z):
        return self.log_lik(z) + self.prior.log_prob(z).sum(-1)

    def elbo_closed_form(self, q):
        m, v = q.loc, q.scale * q.scale
        r = self.xt - m @ self.Wt.T - self.bt
        expected = -0.5 * D * np.log(2 * np.pi * self.s ** 2) - \
            ((r * r).sum(-1) + (v * (self.Wt * self.Wt).sum(0)).sum(-1)) / (2 * self.s ** 2)
        return expected - kl_divergence(q, self.prior).sum(-1)


def copies(q, n):
    """n copies of q along a new batch axis: elbo(..., n_samples=1) on them gives n one-sample estimates."""
    return Normal(q.loc + t64(np.zeros((n, d))), q.scale + t64(np.zeros((n, d))))


def unbiased(samples, exact, what):
    """The mean of the one-sample estimates is `exact`; a bias of 0.5 nats or 10% of |exact| is caught."""
    assert_unbiased(host(samples), exact, alpha=ALPHA, detect=0.1, atol=0.5, what=what)


# =============================================================================================

@settings(max_examples=10)
@given(seed=st.integers(0, 10_000), m=st.lists(st.floats(-2, 2), min_size=d, max_size=d),
       log_s=st.lists(st.floats(-1.5, 1), min_size=d, max_size=d))
def test_elbo_is_below_log_px_for_any_gaussian_q(xp, seed, m, log_s):
    model = LinearGaussian(seed)
    q = Normal(t64(m), t64(np.exp(log_s)))
    closed = model.elbo_closed_form(q).item()
    log_px = model.log_px()
    assert closed <= log_px + 1e-9
    # the gap is exactly KL(q || p(z|x))
    gap = model.kl_to_posterior(np.asarray(m), np.exp(2 * np.asarray(log_s)))
    assert abs((log_px - closed) - gap) <= 1e-9 * (1 + abs(closed))
    # the Monte-Carlo ELBO in each of its forms is unbiased for the closed form
    rng = td.backend.rng(seed)
    qs = copies(q, S)
    unbiased(elbo(model.log_lik, qs, model.prior, kl="analytic", rng=rng), closed, "ELBO, analytic KL")
    unbiased(elbo(model.log_lik, qs, model.prior, kl="mc", rng=rng), closed, "ELBO, Monte-Carlo KL")
    unbiased(elbo(model.log_joint, qs, None, kl="analytic", rng=rng), closed, "E[log p(x,z)] + H(q)")
    unbiased(elbo(model.log_joint, qs, None, kl="mc", rng=rng), closed, "E[log p(x,z) - log q(z)]")
    assert elbo(model.log_lik, q, model.prior, n_samples=S, rng=rng).shape == ()


@settings(max_examples=10)
@given(seed=st.integers(0, 10_000), s=st.floats(0.3, 2))
def test_elbo_equals_log_px_at_the_exact_posterior(xp, seed, s):
    model = LinearGaussian(seed, s=s, orthogonal=True)
    mu, cov = model.posterior()
    assert np.allclose(cov, np.diag(np.diag(cov)), atol=1e-12)
    q = Normal(t64(mu), t64(np.sqrt(np.diag(cov))))
    log_px = model.log_px()
    assert abs(model.elbo_closed_form(q).item() - log_px) <= 1e-9 * (1 + abs(log_px))
    # log p(x, z) - log q(z) = log p(x) for every z: the MC-KL form has zero variance
    rng = td.backend.rng(seed)
    np.testing.assert_allclose(host(elbo(model.log_lik, copies(q, 200), model.prior, kl="mc", rng=rng)), log_px,
                               rtol=1e-9)
    unbiased(elbo(model.log_lik, copies(q, S), model.prior, kl="analytic", rng=rng), log_px, "ELBO at p(z|x)")
    # and the posterior maximises the ELBO: its gradient in (m, log s) vanishes there
    g_m, g_log_s = td.grad(lambda m, ls: model.elbo_closed_form(Normal(m, td.exp(ls))), argnums=(0, 1))(
        t64(mu), t64(0.5 * np.log(np.diag(cov))))
    np.testing.assert_allclose(host(g_m), 0, atol=1e-9)
    np.testing.assert_allclose(host(g_log_s), 0, atol=1e-9)


@settings(max_examples=4)
@given(seed=st.integers(0, 10_000))
def test_iwae_bound_increases_with_k_and_approaches_log_px(xp, seed):
    # L_k from R independent draws for each k.  In expectation L_1 = ELBO <= L_2 <= ... <= log p(x)
    # (assert_bound: every pair of k and every k against log p(x)), and the gap at k = 64 is at most a
    # tenth of the ELBO's gap (one-sided: -L_64 is "bounded" by -(log p(x) - gap / 10)).
    model = LinearGaussian(seed, orthogonal=True)
    mu, cov = model.posterior()
    q = Normal(t64(mu + 0.4), t64(1.3 * np.sqrt(np.diag(cov))))            # a deliberately imperfect q
    log_px, closed = model.log_px(), model.elbo_closed_form(q).item()
    R, rng = 2_000, td.backend.rng(seed)
    bounds = {}
    for k in (1, 2, 4, 8, 16, 64):
        z = q.sample((k, R), rng=rng)
        log_w = model.log_joint(z) - q.log_prob(z).sum(-1)                  # (k, R)
        bounds[k] = host(iwae_bound(log_w, axis=0))
    assert_unbiased(bounds[1], closed, alpha=ALPHA, detect=0.1, atol=0.5, what="L_1")
    assert_bound(bounds, log_px, alpha=ALPHA, detect=0.25, what="L_k")
    assert_bound({64: -bounds[64]}, -(log_px - 0.1 * (log_px - closed)), alpha=ALPHA, detect=0.1,
                 what="-L_64 (L_64 within a tenth of the ELBO's gap of log p(x))")
