"""The VAE's bounds against references built from other parts: the IWAE bound from the
distributions' own log_probs and `estimators.iwae_bound` on the same draws, L_1 = the ELBO in
expectation, and L_k -> log p(x) by quadrature for a one-dimensional z; the score-function ELBO
against its formula on the same draws, and its gradient's mean and variance against the
reparameterised one's.  All in float64."""
import json

import numpy as np
import pytest
import scipy.special
import scipy.stats

import tinydgm as td
from tinydgm.distributions import Bernoulli, Normal
from tinydgm.estimators import iwae_bound, summarize
from tinydgm.estimators import RunningMean
from tinydgm.models.vae import VAE
from tinydgm.testing import assert_bound, assert_lower_variance, assert_unbiased


def perturbed_model(seed, x_dim=12, hidden=(8,), z_dim=3, decoder_scale=1.0):
    """A small float64 VAE moved away from its init, so q(z|x) is neither N(0, I) nor the posterior."""
    rng = np.random.default_rng(100 + seed)
    model = VAE(x_dim=x_dim, hidden=hidden, z_dim=z_dim, rng=np.random.default_rng(seed), dtype=np.float64)
    for p in model.encoder.parameters():
        p.data += 0.3 * rng.standard_normal(p.shape)
    for p in model.decoder.parameters():
        p.data *= decoder_scale
    return model


def binary(seed, n, d):
    return (np.random.default_rng(seed).random((n, d)) < 0.4).astype(np.float64)


def reference_log_weights(model, x, eps):
    """log w_j = log p(x|z_j) + log N(z_j; 0, I) - log q(z_j|x),  z_j = mu + sigma * eps_j."""
    q = model.encode(x)
    z = q.loc + q.scale * eps                                                  # (k, B, z_dim)
    prior = Normal(np.zeros(model.z_dim), np.ones(model.z_dim))
    log_px = Bernoulli(logits=model.decoder(z)).log_prob(np.broadcast_to(x, z.shape[:-1] + x.shape[-1:]))
    return td.sum(log_px, axis=-1) + td.sum(prior.log_prob(z), axis=-1) - td.sum(q.log_prob(z), axis=-1)


@pytest.mark.parametrize("k", [1, 7])
def test_iwae_bound_equals_the_reference_on_the_same_draws(k):
    """VAE.iwae_bound = estimators.iwae_bound(log w) with w from Normal/Bernoulli.log_prob, value and
    gradient, to 1e-10: the draws are z = mu + sigma * eps, eps = the generator's (k, B, z_dim) normals."""
    model = perturbed_model(0)
    x = binary(1, 5, 12)
    bound = model.iwae_bound(x, k, rng=np.random.default_rng(2))
    eps = np.random.default_rng(2).standard_normal((k, 5, 3))
    reference = iwae_bound(reference_log_weights(model, x, eps), axis=0)
    assert bound.shape == reference.shape == (5,)
    np.testing.assert_allclose(bound.data, reference.data, rtol=1e-10, atol=1e-10)

    params = model.parameters()
    td.sum(bound).backward()
    ours = [p.grad.copy() for p in params]
    model.zero_grad()
    td.sum(reference).backward()
    for p, g in zip(params, ours):
        np.testing.assert_allclose(g, p.grad, rtol=1e-10, atol=1e-12)


def test_iwae_bound_by_hand_for_one_image():
    """The same bound written out with scipy.stats for a single image and k = 3 (no engine on the reference side)."""
    model = perturbed_model(1)
    x = binary(3, 1, 12)
    eps = np.random.default_rng(4).standard_normal((3, 1, 3))
    with td.no_grad():
        q = model.encode(x)
        mu, sigma = q.loc.data[0], q.scale.data[0]
        z = mu + sigma * eps[:, 0]                                                   # (3, z_dim)
        logits = model.decoder(td.tensor(z)).data
        bound = model.iwae_bound(x, 3, rng=np.random.default_rng(4)).data[0]
    log_w = (scipy.stats.bernoulli.logpmf(x[0], scipy.special.expit(logits)).sum(-1)
             + scipy.stats.norm.logpdf(z).sum(-1) - scipy.stats.norm.logpdf(z, mu, sigma).sum(-1))
    assert bound == pytest.approx(scipy.special.logsumexp(log_w) - np.log(3), rel=1e-10)


def test_l1_is_the_elbo_in_expectation():
    """E[L_1] = ELBO = E_q[log p(x|z)] - KL(q || N(0, I)), per image (assert_unbiased, false-alarm rate 1e-4).

    Both are drawn on the same z (the same seed): their difference log p(z) - log q(z) + KL has mean 0.
    A density constant dropped from either side moves the mean by hundreds of SEs; the call refuses
    unless a difference of norm 0.2 nats over the 4 images is caught."""
    model = perturbed_model(2)
    n, b = 4000, 4
    x = np.tile(binary(5, b, 12), (n, 1))                                           # N draws per image
    with td.no_grad():
        l1 = model.iwae_bound(x, 1, rng=np.random.default_rng(6)).data.reshape(n, b)
        elbo = model.elbo(x, rng=np.random.default_rng(6)).data.reshape(n, b)
    d = l1 - elbo
    assert np.all(d.std(axis=0) > 0)                                                # two estimates, not one
    assert_unbiased(d, np.zeros(b), alpha=1e-4, atol=0.2, what="L_1 - ELBO")


# ---------------------------------------------------------------- L_k -> log p(x), z_dim = 1

def log_marginal_by_quadrature(model, x, lo=-12.0, hi=12.0, n=24001):
    """log p(x) = log integral of p(x|z) N(z; 0, 1) dz by the trapezoid rule on a grid (z_dim = 1)."""
    z = np.linspace(lo, hi, n)
    with td.no_grad():
        logits = model.decoder(td.tensor(z[:, None])).data                          # (n, x_dim)
    log_px = (x[None] * logits[:, None] - np.logaddexp(0, logits[:, None])).sum(-1)  # (n, B)
    w = np.full(n, z[1] - z[0])
    w[[0, -1]] /= 2
    return scipy.special.logsumexp(log_px + scipy.stats.norm.logpdf(z)[:, None] + np.log(w)[:, None], axis=0)


def test_iwae_bound_approaches_log_px_from_below():
    """Burda et al. 2016, Thm. 1: E[L_1] <= E[L_10] <= E[L_100] <= E[L_1000] <= log p(x), and L_k -> log p(x).

    log p(x) by quadrature over z (z_dim = 1; decoder weights tripled so the posterior is narrow
    and off q).  R draws of L_k per image; per image, assert_bound (false-alarm rate 1e-4) for the chain
    (catching 0.3 nats), and for E[L_1000] >= log p(x) - 0.005 (one-sided: -L_1000 "bounded" by
    -(log p(x) - 0.005), catching 0.05 nats)."""
    model = perturbed_model(0, x_dim=20, hidden=(8,), z_dim=1, decoder_scale=3.0)
    x = binary(1, 3, 20)
    log_px = log_marginal_by_quadrature(model, x)
    np.testing.assert_allclose(log_marginal_by_quadrature(model, x, -14, 14, 14001), log_px, atol=1e-9)
    rng = np.random.default_rng(0)
    lk = {}
    for k, reps in [(1, 2000), (10, 1000), (100, 300), (1000, 300)]:
        with td.no_grad():
            lk[k] = model.iwae_bound(np.tile(x, (reps, 1)), k, rng=rng).data.reshape(reps, 3)
    assert np.all(lk[1].mean(axis=0) < log_px - 0.5)                                 # the gap is real at k = 1
    for i in range(3):
        assert_bound({k: l[:, i] for k, l in lk.items()}, log_px[i], alpha=1e-4, detect=0.3, what=f"L_k, image {i}")
        assert_bound({1000: -lk[1000][:, i]}, -(log_px[i] - 0.005), alpha=1e-4, detect=0.05,
                     what=f"-L_1000 (L_1000 within 0.005 nats of log p(x)), image {i}")


# ---------------------------------------------------------------- the score-function ELBO

def test_score_function_elbo_on_the_same_draws():
    """VAE.score_function_elbo, value and gradient, against the estimator written out on the same z
    (z = mu + sigma * eps, eps the generator's normals, as elbo draws them), float64, to 1e-10:
    value = log p(x|z) + log p(z) - log q(z|x); decoder gradient = that of the reparameterised ELBO
    (the KL has no decoder parameters); encoder gradient = 1/B sum_i (f_i - b_i) d log q(z_i|x_i)."""
    model = perturbed_model(3)
    x, b = binary(7, 6, 12), np.linspace(-9, -6, 6)
    value = model.score_function_elbo(x, rng=np.random.default_rng(8), baseline=b)
    td.mean(value).backward()
    ours = {name: p.grad.copy() for name, p in model.named_parameters()}
    model.zero_grad()

    eps = np.random.default_rng(8).standard_normal((6, 3))
    q = model.encode(x)
    z = td.tensor(q.loc.data + q.scale.data * eps)                                  # a constant
    log_px = td.sum(Bernoulli(logits=model.decoder(z)).log_prob(x), axis=-1)
    log_qz = td.sum(q.log_prob(z), axis=-1)
    f = log_px.data + scipy.stats.norm.logpdf(z.data).sum(-1) - log_qz.data
    np.testing.assert_allclose(value.data, f, rtol=1e-12)
    td.mean(log_px + td.tensor(f - b) * log_qz).backward()
    for name, p in model.named_parameters():
        np.testing.assert_allclose(ours[name], p.grad, rtol=1e-10, atol=1e-13, err_msg=name)
    model.zero_grad()
    td.mean(model.elbo(x, rng=np.random.default_rng(8))).backward()
    for name, p in model.decoder.named_parameters("decoder"):
        np.testing.assert_allclose(ours[name], p.grad, rtol=1e-10, atol=1e-13, err_msg=name)


def encoder_output_gradients(model, x, objective, n, seed):
    """n one-sample estimates of d objective / d (mu, log sigma^2) for one image x: the image is
    repeated n times and the encoder's output made a leaf, so row i of its gradient is estimate i."""
    with td.no_grad():
        h = model.encoder(x[None]).data
    leaf = td.tensor(np.repeat(h, n, axis=0), requires_grad=True)
    encoder, model.encoder = model.encoder, lambda _: leaf
    try:
        td.sum(objective(np.repeat(x[None], n, axis=0), np.random.default_rng(seed))).backward()
    finally:
        model.encoder = encoder
    return leaf.grad


@pytest.mark.parametrize("seed", [0, 1])
def test_score_function_gradient_is_unbiased_and_noisier(seed):
    """For one image, the score-function gradient w.r.t. the encoder's output (mu, log sigma^2) has the
    mean of the reparameterised one (both are unbiased for the ELBO's gradient): the differences of
    independent draws, N = 20,000, have mean 0 (assert_unbiased, false-alarm rate 1e-4).  Its total
    variance (summed over coordinates) is over 100x larger (measured: 1.5e4x for seed 0, 2.3e5x for
    seed 1), and a constant baseline b = E_q[f] (from independent draws) keeps the mean and cuts the
    variance over 5x (measured: 20x and 21x less) (assert_lower_variance, 1e-4)."""
    model = perturbed_model(seed)
    x = binary(10 + seed, 1, 12)[0]
    n = 20_000
    with td.no_grad():
        b = float(model.score_function_elbo(np.repeat(x[None], n, axis=0), rng=np.random.default_rng(99)).data.mean())
    rep = encoder_output_gradients(model, x, lambda xs, r: model.elbo(xs, rng=r), n, 1)
    sf = encoder_output_gradients(model, x, lambda xs, r: model.score_function_elbo(xs, rng=r), n, 2)
    sfb = encoder_output_gradients(model, x, lambda xs, r: model.score_function_elbo(xs, rng=r, baseline=b), n, 3)
    s = summarize(rep)
    assert np.all(np.abs(s.mean) > 10 * s.stderr)                                   # a gradient worth comparing
    # a difference of norm 1 (score function) or 0.25 (with the baseline) must be caught
    for e, atol, name in ((sf, 1.0, "score function - reparameterised"),
                          (sfb, 0.25, "with baseline - reparameterised")):
        assert_unbiased(e - rep, np.zeros(rep.shape[1]), alpha=1e-4, atol=atol, what=name)
    assert_lower_variance(rep, sf, alpha=1e-4, ratio=1 / 100, detect=0.25, what=("reparameterised", "score function"))
    assert_lower_variance(sfb, sf, alpha=1e-4, ratio=1 / 5, detect=0.25, what=("with baseline", "score function"))


def test_running_mean_baseline():
    """b_t = m_t / (1 - decay^t): the mean of the first batch after one update, checkpointed as JSON values."""
    baseline = RunningMean(decay=0.8)
    assert baseline.value is None
    baseline.update(np.array([-100.0, -110.0]))
    assert baseline.value == pytest.approx(-105.0, rel=1e-15)
    baseline.update(td.tensor(np.array([-90.0])))
    assert baseline.value == pytest.approx((0.8 * 0.2 * -105 + 0.2 * -90) / (1 - 0.8 ** 2), rel=1e-15)
    again = RunningMean()
    again.load_state(json.loads(json.dumps(baseline.state())))
    assert (again.value, again.state()) == (baseline.value, baseline.state())
