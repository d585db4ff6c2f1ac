"""Property tests of Normal, Bernoulli, Categorical and their closed-form KL divergences.

Every test runs on both backends (the `xp` fixture).  Statistical tests are seeded (hypothesis is
derandomised in conftest.py, samplers get fixed seeds) and use tinydgm.testing's `assert_unbiased`
(false-alarm rate 1e-5 for the whole call, |z| < 4.6 for a mean or two, below the 5 SE of before),
which refuses to pass where its draws are too few.  All parameters are float64.
"""
import numpy as np
import pytest
import scipy.special
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

import tinydgm as td
from tinydgm.check import gradcheck
from tinydgm.distributions import (Bernoulli, Categorical, Distribution, Normal, kl_divergence,
                                   kl_standard_normal, register_kl)
from tinydgm.testing import assert_unbiased

N_MC = 20_000                                      # Monte-Carlo samples per statistical check
ALPHA = 1e-5                                       # false-alarm rate of each statistical assertion
KL_ATOL = 0.2                                      # nats: the bias a KL check must catch where 10% of the KL is less
locs = st.floats(-3, 3)
scales = st.floats(0.2, 3)
logits = st.floats(-6, 6)


def t64(a):
    """A float64 Tensor on the backend in use."""
    return td.tensor(np.asarray(a, dtype=np.float64))


def host(a):
    return td.backend.to_numpy(a.data if isinstance(a, td.Tensor) else a).astype(np.float64)


def rng(seed=0):
    return td.backend.rng(seed)


def prob_vectors(k):
    """Probability vectors of length k with strictly positive entries (through softmax of bounded logits)."""
    return st.lists(logits, min_size=k, max_size=k).map(lambda l: np.asarray(l, dtype=np.float64))


# =============================================================================================
# KL: closed form = Monte Carlo, KL >= 0, KL(p||p) = 0, gradient = hand-derived
# =============================================================================================

@settings(max_examples=15)
@given(m1=locs, s1=scales, m2=locs, s2=scales)
def test_normal_kl_matches_monte_carlo(xp, m1, s1, m2, s2):
    # log p(z) - log q(z), z ~ p, is unbiased for KL(p || q)
    p, q = Normal(t64(m1), t64(s1)), Normal(t64(m2), t64(s2))
    z = p.sample((N_MC,), rng=rng(1))
    r = host(p.log_prob(z)) - host(q.log_prob(z))
    kl_unbiased(r, kl_divergence(p, q).item())


def kl_unbiased(draws, kl):
    """The draws' mean is the closed-form KL; a bias of 10% of it (or KL_ATOL nats) is caught."""
    assert_unbiased(draws, kl, alpha=ALPHA, detect=0.1, atol=KL_ATOL, what="log p - log q")


@settings(max_examples=15)
@given(a=logits, b=logits)
def test_bernoulli_kl_matches_monte_carlo(xp, a, b):
    p, q = Bernoulli(logits=t64(a)), Bernoulli(logits=t64(b))
    x = p.sample((N_MC,), rng=rng(2))
    r = host(p.log_prob(x)) - host(q.log_prob(x))
    kl_unbiased(r, kl_divergence(p, q).item())


@settings(max_examples=15)
@given(alpha=prob_vectors(4), beta=prob_vectors(4))
def test_categorical_kl_matches_monte_carlo(xp, alpha, beta):
    p, q = Categorical(logits=t64(alpha)), Categorical(logits=t64(beta))
    k = p.sample((N_MC,), rng=rng(3))
    r = host(p.log_prob(k)) - host(q.log_prob(k))
    kl_unbiased(r, kl_divergence(p, q).item())


@settings(max_examples=30)
@given(m=st.lists(locs, min_size=3, max_size=3), s=st.lists(scales, min_size=3, max_size=3),
       a=st.lists(st.floats(-30, 30), min_size=3, max_size=3), alpha=prob_vectors(5), beta=prob_vectors(5))
def test_kl_nonnegative_and_zero_against_itself(xp, m, s, a, alpha, beta):
    normal, other = Normal(t64(m), t64(s)), Normal(t64(m[::-1]), t64(s[::-1]))
    bern, bern2 = Bernoulli(logits=t64(a)), Bernoulli(logits=t64(a[::-1]))
    cat, cat2 = Categorical(logits=t64(alpha)), Categorical(logits=t64(beta))
    for p, q in [(normal, other), (bern, bern2), (cat, cat2)]:
        assert (host(kl_divergence(p, q)) >= -1e-12).all()
        np.testing.assert_allclose(host(kl_divergence(p, p)), 0, atol=1e-12)
    assert (host(kl_standard_normal(normal)) >= -1e-12).all()
    np.testing.assert_allclose(host(kl_standard_normal(Normal(t64(np.zeros(3)), t64(np.ones(3))))), 0, atol=1e-15)


def test_kl_standard_normal_is_the_registered_kl_against_n01(xp):
    q = Normal.from_log_var(t64([0.3, -1.0, 2.0]), t64([0.1, -2.0, 1.5]))
    np.testing.assert_allclose(host(kl_standard_normal(q)),
                               host(kl_divergence(q, Normal(t64(np.zeros(3)), t64(np.ones(3))))), rtol=1e-12)


def _engine_grad(f, *args):
    return [host(g) for g in td.grad(f, argnums=tuple(range(len(args))))(*[t64(a) for a in args])]


@settings(max_examples=20)
@given(m1=locs, s1=scales, m2=locs, s2=scales)
def test_normal_kl_gradient_is_the_hand_derived_one(xp, m1, s1, m2, s2):
    # KL = log s2/s1 + (s1^2 + d^2) / 2 s2^2 - 1/2,  d = m1 - m2
    d = m1 - m2
    hand = [d / s2 ** 2, -1 / s1 + s1 / s2 ** 2, -d / s2 ** 2, 1 / s2 - (s1 ** 2 + d ** 2) / s2 ** 3]
    engine = _engine_grad(lambda a, b, c, e: kl_divergence(Normal(a, b), Normal(c, e)), m1, s1, m2, s2)
    np.testing.assert_allclose(engine, hand, rtol=1e-10, atol=1e-12)
    # KL(N(mu, s^2) || N(0, 1)) = 1/2 (mu^2 + s^2 - 1 - log s^2):  d/dmu = mu,  d/ds = s - 1/s
    engine = _engine_grad(lambda a, b: kl_standard_normal(Normal(a, b)), m1, s1)
    np.testing.assert_allclose(engine, [m1, s1 - 1 / s1], rtol=1e-10, atol=1e-12)


@settings(max_examples=20)
@given(a=logits, b=logits)
def test_bernoulli_kl_gradient_is_the_hand_derived_one(xp, a, b):
    # KL = s(a)(a - b) - softplus(a) + softplus(b):  d/da = s(a)(1 - s(a))(a - b),  d/db = s(b) - s(a)
    sa, sb = scipy.special.expit(a), scipy.special.expit(b)
    engine = _engine_grad(lambda x, y: kl_divergence(Bernoulli(logits=x), Bernoulli(logits=y)), a, b)
    np.testing.assert_allclose(engine, [sa * (1 - sa) * (a - b), sb - sa], rtol=1e-9, atol=1e-12)


@settings(max_examples=20)
@given(alpha=prob_vectors(4), beta=prob_vectors(4))
def test_categorical_kl_gradient_is_the_hand_derived_one(xp, alpha, beta):
    # KL = sum_k p_k (log p_k - log q_k):  d/dalpha_j = p_j (log p_j - log q_j - KL),  d/dbeta_j = q_j - p_j
    lp, lq = alpha - scipy.special.logsumexp(alpha), beta - scipy.special.logsumexp(beta)
    p, q = np.exp(lp), np.exp(lq)
    kl = np.sum(p * (lp - lq))
    engine = _engine_grad(lambda x, y: kl_divergence(Categorical(logits=x), Categorical(logits=y)), alpha, beta)
    np.testing.assert_allclose(engine[0], p * (lp - lq - kl), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(engine[1], q - p, rtol=1e-9, atol=1e-12)


def test_unregistered_kl_pair_names_both_types(xp):
    with pytest.raises(NotImplementedError, match="Normal.*Bernoulli"):
        kl_divergence(Normal(t64(0.0), t64(1.0)), Bernoulli(logits=t64(0.0)))
    with pytest.raises(NotImplementedError, match="Categorical.*Normal"):
        kl_divergence(Categorical(logits=t64([0.0, 1.0])), Normal(t64(0.0), t64(1.0)))


def test_register_kl_returns_the_function_and_dispatches_on_subclasses(xp):
    class Point(Distribution):
        def __init__(self):
            super().__init__(())

    def kl_point_point(p, q):
        return t64(0.0)
    assert register_kl(Point, Point)(kl_point_point) is kl_point_point
    assert kl_divergence(Point(), Point()).item() == 0.0

    class MyNormal(Normal):                       # a subclass finds its parent's closed form
        pass
    p, q = MyNormal(t64(1.0), t64(2.0)), Normal(t64(0.0), t64(1.0))
    assert kl_divergence(p, q).item() == pytest.approx(kl_divergence(Normal(t64(1.0), t64(2.0)), q).item())


# =============================================================================================
# log_prob against scipy.stats; Categorical normalised; entropy
# =============================================================================================

@settings(max_examples=25)
@given(loc=st.lists(locs, min_size=4, max_size=4), scale=st.lists(scales, min_size=4, max_size=4),
       value=st.lists(st.floats(-8, 8), min_size=4, max_size=4))
def test_normal_log_prob_and_entropy_match_scipy(xp, loc, scale, value):
    d = Normal(t64(loc), t64(scale))
    np.testing.assert_allclose(host(d.log_prob(t64(value))), scipy.stats.norm.logpdf(value, loc, scale), rtol=1e-12)
    np.testing.assert_allclose(host(d.entropy()), scipy.stats.norm.entropy(loc, scale), rtol=1e-12)
    log_var = np.log(np.square(scale))
    np.testing.assert_allclose(host(Normal.from_log_var(t64(loc), t64(log_var)).log_prob(t64(value))),
                               scipy.stats.norm.logpdf(value, loc, scale), rtol=1e-12)


@settings(max_examples=25)
@given(loc=locs, scale=scales, value=st.floats(-8, 8))
def test_normal_log_prob_is_differentiable_in_the_value(xp, loc, scale, value):
    # d/dx log N(x; mu, s^2) = -(x - mu) / s^2
    g = td.grad(lambda x: Normal(t64(loc), t64(scale)).log_prob(x))(t64(value))
    assert float(g) == pytest.approx(-(value - loc) / scale ** 2, rel=1e-10, abs=1e-12)


@settings(max_examples=25)
@given(l=st.lists(st.floats(-15, 15), min_size=6, max_size=6))
def test_bernoulli_log_prob_and_entropy_match_scipy(xp, l):
    l = np.asarray(l)
    x = (np.arange(6) % 2).astype(np.float64)
    p = scipy.special.expit(l)
    for d in (Bernoulli(logits=t64(l)), Bernoulli(probs=t64(p))):
        np.testing.assert_allclose(host(d.log_prob(t64(x))), scipy.stats.bernoulli.logpmf(x, p), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(host(d.entropy()), scipy.stats.bernoulli.entropy(p), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(host(d.mean), p, rtol=1e-6)
        np.testing.assert_allclose(host(d.variance), p * (1 - p), rtol=1e-6, atol=1e-12)


def test_bernoulli_log_prob_exact_at_logit_1000(xp):
    # x l - softplus(l) at l = +-1000: log p = 0 or -1000 exactly (no overflow, no clipping)
    l = t64([1000.0, 1000.0, -1000.0, -1000.0])
    x = t64([1.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(host(Bernoulli(logits=l).log_prob(x)), [0.0, -1000.0, -1000.0, 0.0])
    # d/dl = x - sigmoid(l) = 0, -1, 1, 0 exactly
    g = td.grad(lambda lg: Bernoulli(logits=lg).log_prob(x).sum())(l)
    np.testing.assert_array_equal(host(g), [0.0, -1.0, 1.0, 0.0])
    assert np.isfinite(host(Bernoulli(logits=l).entropy())).all()
    l32 = td.tensor(np.array([1000.0, -1000.0], dtype=np.float32))
    out = Bernoulli(logits=l32).log_prob(td.tensor(np.array([0.0, 1.0], dtype=np.float32)))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(host(out), [-1000.0, -1000.0])


@settings(max_examples=25)
@given(alpha=st.lists(prob_vectors(5), min_size=3, max_size=3), zero=st.integers(0, 4))
def test_categorical_sums_to_one_over_the_support(xp, alpha, zero):
    alpha = np.stack(alpha)                                     # batch of 3 distributions over 5 categories
    for d in (Categorical(logits=t64(alpha)),
              Categorical(probs=t64(scipy.special.softmax(alpha, -1) * (np.arange(5) != zero) /
                                    (1 - scipy.special.softmax(alpha, -1)[:, zero:zero + 1])))):
        lp = np.stack([host(d.log_prob(xp.full(3, k))) for k in range(5)], -1)
        assert not np.isnan(lp).any()
        np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0, rtol=1e-12)
        np.testing.assert_allclose(host(d.entropy()), scipy.stats.entropy(np.exp(lp), axis=-1), rtol=1e-9, atol=1e-12)
        k = np.arange(5)
        np.testing.assert_allclose(host(d.mean), np.exp(lp) @ k, rtol=1e-10)
        np.testing.assert_allclose(host(d.variance), np.exp(lp) @ k ** 2 - (np.exp(lp) @ k) ** 2, rtol=1e-9, atol=1e-12)


# =============================================================================================
# Samples: shapes, gradients, moments within standard errors
# =============================================================================================

def _assert_moments(samples, mean, var):
    """E[x] = mean and E[(x - mean)^2] = var, every coordinate (a bias of 20% of the norm, or 0.1, is caught)."""
    assert_unbiased(samples, mean, alpha=ALPHA, detect=0.2, atol=0.1, what="the samples")
    assert_unbiased((samples - mean) ** 2, var, alpha=ALPHA, detect=0.2, atol=0.1, what="the squared deviations")


@settings(max_examples=10)
@given(loc=st.lists(locs, min_size=2, max_size=2), scale=st.lists(scales, min_size=2, max_size=2),
       a=st.lists(logits, min_size=2, max_size=2), alpha=prob_vectors(4))
def test_sample_mean_and_variance_within_standard_errors(xp, loc, scale, a, alpha):
    loc, scale, a = np.asarray(loc), np.asarray(scale), np.asarray(a)
    normal = Normal(t64(loc), t64(scale))
    for draw in (normal.sample, normal.rsample):
        _assert_moments(host(draw((N_MC,), rng=rng(4))), loc, scale ** 2)
    p = scipy.special.expit(a)
    _assert_moments(host(Bernoulli(logits=t64(a)).sample((N_MC,), rng=rng(5))), p, p * (1 - p))
    probs, k = scipy.special.softmax(alpha), np.arange(4)       # Categorical: moments of the index
    m = probs @ k
    _assert_moments(host(Categorical(logits=t64(alpha)).sample((N_MC,), rng=rng(6))), m, probs @ (k - m) ** 2)


def test_sample_shapes_and_gradients(xp):
    loc = td.tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True)
    scale = td.tensor(np.array([1.0, 0.5, 2.0]), requires_grad=True)
    d = Normal(loc, scale)
    assert d.batch_shape == (3,) and d.has_rsample and not Bernoulli(logits=t64(0.0)).has_rsample
    assert d.sample().shape == (3,) and d.sample(5).shape == (5, 3) and d.sample((2, 4)).shape == (2, 4, 3)
    assert not d.sample((2,)).requires_grad
    z = d.rsample((7,), rng=rng(7))
    assert z.shape == (7, 3) and z.requires_grad
    z.sum().backward()                                          # dz/dloc = 1, dz/dscale = eps
    np.testing.assert_allclose(host(loc.grad), 7.0)
    eps = (host(z) - host(loc)) / host(scale)
    np.testing.assert_allclose(host(scale.grad), eps.sum(0), rtol=1e-10)
    b = Bernoulli(logits=t64(np.zeros((2, 3))))
    assert b.batch_shape == (2, 3) and b.sample((4,)).shape == (4, 2, 3)
    c = Categorical(logits=t64(np.zeros((2, 5))))
    assert c.batch_shape == (2,) and c.sample((4,)).shape == (4, 2) and c.num_categories == 5
    for dist in (b, c):
        with pytest.raises(NotImplementedError, match="score-function"):
            dist.rsample()


def test_samples_are_seeded(xp):
    d = Normal(t64([0.0, 1.0]), t64([1.0, 2.0]))
    np.testing.assert_array_equal(host(d.sample((5,), rng=rng(11))), host(d.sample((5,), rng=rng(11))))


def test_samples_follow_the_parameters_dtype(xp):
    d = Normal(td.tensor(np.zeros(2, dtype=np.float32)), td.tensor(np.ones(2, dtype=np.float32)))
    assert d.rsample((3,)).dtype == np.float32 and Normal(t64(0.0), t64(1.0)).sample((3,)).dtype == np.float64


# =============================================================================================
# Numerics at the edges: any finite log-variance, probabilities 0 and 1
# =============================================================================================

# log sigma^2 far past where sigma = e^(log sigma^2 / 2) under- or overflows, per dtype
EXTREME_LOG_VARS = {np.float32: [-250.0, 250.0, -1e30, 1e30, -3e38, 3e38],
                    np.float64: [-250.0, 250.0, -1500.0, 1500.0, -1e300, 1e300]}


def _tensor_of(xp, values, dtype):
    return td.tensor(xp.asarray(values, dtype=dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normal_from_log_var_is_finite_for_any_finite_log_var(xp, dtype):
    """log_prob at x = mu, entropy, KL(q || q) and KL(N(0, 1) || q) where it fits are finite, and
    their gradients finite and right, even where sigma is 0 or inf in the dtype."""
    for lv in EXTREME_LOG_VARS[dtype]:
        mu, log_var = _tensor_of(xp, [0.5, -2.0], dtype), _tensor_of(xp, [lv, lv], dtype)

        def at(f):
            return [host(g) for g in td.grad(f, argnums=(0, 1))(mu, log_var)]
        q = Normal.from_log_var(mu, log_var)
        half = np.float64(np.asarray(lv, dtype)) / 2
        lp = q.log_prob(mu)                                       # log N(mu; mu, s^2) = -log s - log(2 pi)/2
        assert lp.dtype == dtype
        np.testing.assert_allclose(host(lp), -half - 0.5 * np.log(2 * np.pi), rtol=1e-6)
        g_mu, g_lv = at(lambda m, v: Normal.from_log_var(m, v).log_prob(m.detach()).sum())
        np.testing.assert_allclose(g_mu, 0.0, atol=1e-6)         # d/dmu = (x - mu) / s^2 = 0
        np.testing.assert_allclose(g_lv, -0.5, rtol=1e-6)        # d/dlog s^2 = ((x - mu)^2 / s^2 - 1) / 2
        np.testing.assert_allclose(host(q.entropy()), half + 0.5 * (1 + np.log(2 * np.pi)), rtol=1e-6)
        np.testing.assert_allclose(at(lambda m, v: Normal.from_log_var(m, v).entropy().sum())[1], 0.5)
        np.testing.assert_allclose(host(kl_divergence(q, q)), 0.0, atol=1e-6)
        for g in at(lambda m, v: kl_divergence(Normal.from_log_var(m, v), Normal.from_log_var(m.detach(), v.detach())).sum()):
            np.testing.assert_allclose(g, 0.0, atol=1e-6)
        if lv < 0:    # KL(q || N(0, 1)) = (mu^2 + s^2 - 1 - log s^2) / 2, s^2 = 0 in the dtype
            np.testing.assert_allclose(host(kl_standard_normal(q)), 0.5 * (host(mu) ** 2 - 1) - half, rtol=1e-6)
            g_mu, g_lv = at(lambda m, v: kl_standard_normal(Normal.from_log_var(m, v)).sum())
            np.testing.assert_allclose(g_mu, host(mu), rtol=1e-6)
            np.testing.assert_allclose(g_lv, -0.5, rtol=1e-6)
        else:         # KL(N(0, 1) || q) = log s + (1 + mu^2) / 2 s^2 - 1/2, 1/s^2 = 0 in the dtype
            p = Normal(_tensor_of(xp, [0.0, 0.0], dtype), _tensor_of(xp, [1.0, 1.0], dtype))
            np.testing.assert_allclose(host(kl_divergence(p, q)), half - 0.5, rtol=1e-6)
            g_mu, g_lv = at(lambda m, v: kl_divergence(p, Normal.from_log_var(m, v)).sum())
            np.testing.assert_allclose(g_mu, 0.0, atol=1e-6)
            np.testing.assert_allclose(g_lv, 0.5, rtol=1e-6)
        z = Normal.from_log_var(mu, _tensor_of(xp, [-abs(lv)] * 2, dtype)).rsample((3,), rng=rng(0))
        np.testing.assert_array_equal(host(z), np.broadcast_to(host(mu), (3, 2)))     # s = 0: z = mu


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normal_log_prob_off_the_mean_at_extreme_log_vars(xp, dtype):
    """Away from mu, log_prob is its true value rounded to the dtype: -inf where a vanishing sigma
    puts it below the dtype's range (never nan), finite with a finite gradient for a huge sigma."""
    for lv in EXTREME_LOG_VARS[dtype]:
        mu, x = _tensor_of(xp, [0.5, -2.0], dtype), _tensor_of(xp, [1.5, 3.0], dtype)
        lv = np.float64(np.asarray(lv, dtype))
        with np.errstate(over="ignore"):       # -(x - mu)^2 e^(-log s^2) / 2 - log s^2 / 2 - log(2 pi) / 2, in float64
            exact = -0.5 * (host(x) - host(mu)) ** 2 * np.exp(-lv) - lv / 2 - 0.5 * np.log(2 * np.pi)
            exact = exact.astype(dtype)
        with np.errstate(over="ignore"):
            lp = host(Normal.from_log_var(mu, _tensor_of(xp, [lv, lv], dtype)).log_prob(x))
        np.testing.assert_allclose(lp, exact, rtol=1e-6)
        if lv > 0:
            g = td.grad(lambda m, v: Normal.from_log_var(m, v).log_prob(x).sum(), argnums=(0, 1))(
                mu, _tensor_of(xp, [lv, lv], dtype))
            np.testing.assert_allclose(host(g[1]), -0.5, rtol=1e-6)
            assert np.isfinite(host(g[0])).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bernoulli_probs_zero_and_one_are_clamped_into_finite_logits(xp, dtype):
    """As PyTorch: probs become logits after clamping to [eps, 1 - eps], eps = finfo(dtype).eps, so
    log_prob, entropy, KL and their gradients are finite at p = 0 and 1 (log p(x) = log eps where
    x has probability 0); probs, mean and samples stay exactly p."""
    eps = np.finfo(dtype).eps
    p, x = _tensor_of(xp, [0.0, 0.0, 1.0, 1.0], dtype), _tensor_of(xp, [0.0, 1.0, 1.0, 0.0], dtype)
    q = Bernoulli(probs=_tensor_of(xp, [0.5, 0.0, 0.5, 1.0], dtype))
    d = Bernoulli(probs=p)
    lp = d.log_prob(x)
    assert lp.dtype == dtype
    np.testing.assert_allclose(host(lp), [0.0, np.log(eps), 0.0, np.log(eps)], rtol=1e-6, atol=2 * eps)
    np.testing.assert_allclose(host(d.entropy()), 0.0, atol=50 * eps)
    np.testing.assert_allclose(host(kl_divergence(d, q)), [np.log(2), 0.0, np.log(2), 0.0], atol=50 * eps)
    for f in (lambda p: Bernoulli(probs=p).log_prob(x), lambda p: Bernoulli(probs=p).entropy(),
              lambda p: kl_divergence(Bernoulli(probs=p), q), lambda p: kl_divergence(q, Bernoulli(probs=p))):
        g = host(td.grad(lambda p: f(p).sum())(p))
        assert np.isfinite(g).all(), g
    np.testing.assert_array_equal(host(d.probs), host(p))
    np.testing.assert_array_equal(host(d.mean), host(p))
    np.testing.assert_array_equal(host(d.sample((50,), rng=rng(0))), np.broadcast_to(host(p), (50, 4)))


def test_bernoulli_float32_at_logit_minus_100_has_no_inf(xp):
    """sigmoid(-100) is 0 in float32: through probs (clamped) and through logits (exact), nothing is infinite."""
    l = td.tensor(xp.asarray([-100.0, 100.0], dtype=np.float32))
    x = td.tensor(xp.asarray([1.0, 0.0], dtype=np.float32))
    half = Bernoulli(probs=td.tensor(xp.asarray([0.5, 0.5], dtype=np.float32)))
    for make in (lambda l: Bernoulli(probs=td.sigmoid(l)), lambda l: Bernoulli(logits=l)):
        for f in (lambda l: make(l).log_prob(x), lambda l: make(l).entropy(),
                  lambda l: kl_divergence(make(l), half), lambda l: kl_divergence(half, make(l))):
            value, g = f(l), td.grad(lambda l: f(l).sum())(l)
            assert value.dtype == np.float32 and g.dtype == np.float32
            assert np.isfinite(host(value)).all() and np.isfinite(host(g)).all(), (host(value), host(g))
    np.testing.assert_array_equal(host(Bernoulli(logits=l).log_prob(x)), [-100.0, -100.0])     # logits: exact


@settings(max_examples=25)
@given(p=st.lists(st.floats(0.01, 0.99), min_size=4, max_size=4), p2=st.lists(st.floats(0.01, 0.99), min_size=4, max_size=4))
def test_bernoulli_probs_gradients_pass_gradcheck(xp, p, p2):
    x = xp.asarray([0.0, 1.0, 1.0, 0.0])
    args = [xp.asarray(a, dtype=np.float64) for a in (p, p2)]
    for f in (lambda p, p2: Bernoulli(probs=p).log_prob(x), lambda p, p2: Bernoulli(probs=p).entropy(),
              lambda p, p2: kl_divergence(Bernoulli(probs=p), Bernoulli(probs=p2))):
        assert gradcheck(f, *args, atol=1e-6)


@settings(max_examples=25)
@given(loc=st.lists(locs, min_size=3, max_size=3), log_var=st.lists(st.floats(-3, 3), min_size=3, max_size=3),
       value=st.lists(st.floats(-8, 8), min_size=3, max_size=3),
       loc2=st.lists(locs, min_size=3, max_size=3), log_var2=st.lists(st.floats(-3, 3), min_size=3, max_size=3))
def test_normal_from_log_var_gradients_pass_gradcheck(xp, loc, log_var, value, loc2, log_var2):
    # atol: central differences of values up to ~e^6 lose ~1e-7 to rounding
    args = [xp.asarray(a, dtype=np.float64) for a in (loc, log_var, value, loc2, log_var2)]
    for f in (lambda m, v, x, m2, v2: Normal.from_log_var(m, v).log_prob(x),
              lambda m, v, x, m2, v2: Normal.from_log_var(m, v).entropy(),
              lambda m, v, x, m2, v2: kl_standard_normal(Normal.from_log_var(m, v)),
              lambda m, v, x, m2, v2: kl_divergence(Normal.from_log_var(m, v), Normal.from_log_var(m2, v2)),
              lambda m, v, x, m2, v2: Normal(m, td.exp(0.5 * v)).log_prob(x),
              lambda m, v, x, m2, v2: kl_divergence(Normal(m, td.exp(0.5 * v)), Normal(m2, td.exp(0.5 * v2)))):
        assert gradcheck(f, *args, atol=1e-6)


# =============================================================================================
# Validation: clear errors, and a switch to turn them off
# =============================================================================================

def test_validation_errors_are_clear(xp):
    with pytest.raises(ValueError, match=r"Normal: scale must be positive, got min -1\.0"):
        Normal(t64([0.0, 0.0]), t64([1.0, -1.0]))
    with pytest.raises(ValueError, match="scale must be positive"):
        Normal(t64(0.0), t64(0.0))
    with pytest.raises(ValueError, match=r"Bernoulli: probs must lie in \[0, 1\], got values in \[-0\.1, 1\.0\]"):
        Bernoulli(probs=t64([-0.1, 1.0]))
    with pytest.raises(ValueError, match="Bernoulli: value must be 0 or 1"):
        Bernoulli(logits=t64([0.0, 0.0])).log_prob(t64([1.0, 0.5]))
    with pytest.raises(ValueError, match="exactly one of logits= or probs="):
        Bernoulli(logits=t64(0.0), probs=t64(0.5))
    with pytest.raises(ValueError, match="exactly one of logits= or probs="):
        Categorical()
    with pytest.raises(ValueError, match="Categorical: probs must be non-negative and sum to 1"):
        Categorical(probs=t64([0.5, 0.6]))
    c = Categorical(logits=t64([0.0, 0.0, 0.0]))
    for bad in (3, -1, 1.5):
        with pytest.raises(ValueError, match=r"Categorical: value must be an integer in \[0, 3\)"):
            c.log_prob(xp.asarray(bad))


def test_validation_can_be_switched_off(xp):
    with np.errstate(invalid="ignore"):
        assert np.isnan(host(Normal(t64(0.0), t64(-1.0), validate_args=False).log_prob(t64(0.0))))
        # x l - softplus(l) as it is, at x = 0.5, l = 0.3: 0.15 - log(1 + e^0.3)
        lp = Bernoulli(logits=t64([0.3]), validate_args=False).log_prob(t64([0.5]))
        np.testing.assert_allclose(host(lp), [0.15 - np.log1p(np.exp(0.3))], rtol=1e-14)
        before = Distribution.validate_args
        try:
            Distribution.set_default_validate_args(False)
            Normal(t64(0.0), t64(-1.0))
            Bernoulli(probs=t64([2.0]))
            with pytest.raises(ValueError, match="scale must be positive"):
                Normal(t64(0.0), t64(-1.0), validate_args=True)                   # an explicit True still checks
        finally:
            Distribution.set_default_validate_args(before)
    with pytest.raises(ValueError, match=r"Normal: scale must be positive, got min -1\.0"):
        Normal(t64(0.0), t64(-1.0))                                                # the default is restored
