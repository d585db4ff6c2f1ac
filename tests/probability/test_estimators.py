"""Property tests of the gradient estimators, log_mean_exp and the summary helpers.

The family: q = N(mu, sigma^2) and f(z) = a z^2 + b z + c, for which
    E_q[f] = a (mu^2 + sigma^2) + b mu + c,   d/dmu = 2 a mu + b,   d/dsigma = 2 a sigma.
Writing f = A + B eps + C eps^2 (z = mu + sigma eps; A = a mu^2 + b mu + c, B = (2 a mu + b) sigma,
C = a sigma^2), one sample's estimates of d/dmu have variances (derived in
scripts/derivations/score_function.py)
    reparameterised 4 C^2 / sigma^2,   score ((A + 3C)^2 + 2B^2 + 6C^2) / sigma^2,
    score with b = E_q[f]  (2B^2 + 10C^2) / sigma^2,
and of d/dsigma: reparameterised (B^2 + 8C^2) / sigma^2, score (2(A + 5C)^2 + 24C^2 + 10B^2) / sigma^2,
score with b = E_q[f]  (10B^2 + 56C^2) / sigma^2.
Tolerances from tinydgm.testing: `assert_unbiased` (false-alarm rate 1e-5 for the whole call, |z| < 4.6 on
two coordinates, below the 5 SE of before) and `assert_lower_variance` (1e-5), each refusing to pass where its
draws are too few.  Every test runs on both backends; seeds are fixed and hypothesis is derandomised.
"""
import numpy as np
import pytest
import scipy.special
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import tinydgm as td
from tinydgm.distributions import Categorical, Normal
from tinydgm.estimators import (draw, gradient_samples, iwae_bound, log_mean_exp, score_function_surrogate,
                                summarize)
from tinydgm.testing import assert_lower_variance, assert_unbiased

S = 10_000                                          # gradient estimates per check
ALPHA = 1e-5                                        # false-alarm rate of each statistical assertion
ATOL = 1.0                                          # the bias norm each unbiasedness check must see, where 20% of the
                                                    # exact gradient's norm is less
coefficients = st.floats(-2, 2)
nonzero = st.floats(0.2, 2) | st.floats(-2, -0.2)
locs, scales = st.floats(-2, 2), st.floats(0.3, 2)


def t64(a):
    return td.tensor(np.asarray(a, dtype=np.float64))


def host(a):
    return td.backend.to_numpy(a.data if isinstance(a, td.Tensor) else a).astype(np.float64)


def quadratic(a, b, c):
    return lambda z: a * z * z + b * z + c


def reparameterised(f, m_samples=1, seed=0):
    """Objective for gradient_samples: the mean of f(mu + sigma eps) over m_samples draws per copy."""
    rng = td.backend.rng(seed)
    return lambda m, s: f(Normal(m, s).rsample((m_samples,), rng=rng)).mean(axis=0)


def score(f, baseline=None, m_samples=1, seed=0):
    """Objective for gradient_samples: the score-function surrogate over m_samples draws per copy."""
    rng = td.backend.rng(seed)

    def objective(m, s):
        q = Normal(m, s)
        z = q.sample((m_samples,), rng=rng)
        return score_function_surrogate(f(z.data), q.log_prob(z), baseline=baseline)
    return objective


def estimates(objective, mu, sigma):
    """S one-sample estimates of (d/dmu, d/dsigma): an array (S, 2)."""
    return np.stack([host(g) for g in gradient_samples(objective, [np.float64(mu), np.float64(sigma)], S)], axis=1)


def unbiased(draws, exact, what):
    assert_unbiased(draws, np.asarray(exact), alpha=ALPHA, detect=0.2, atol=ATOL, what=what)


# =============================================================================================
# Reparameterisation and score function on the quadratic family
# =============================================================================================

@settings(max_examples=12)
@given(a=coefficients, b=coefficients, c=st.floats(-5, 5), mu=locs, sigma=scales)
def test_both_estimators_are_unbiased(xp, a, b, c, mu, sigma):
    f, exact = quadratic(a, b, c), (2 * a * mu + b, 2 * a * sigma)
    unbiased(estimates(reparameterised(f), mu, sigma), exact, "reparameterised")
    unbiased(estimates(score(f), mu, sigma), exact, "score function")


@settings(max_examples=12)
@given(a=nonzero, b=coefficients, c=st.floats(-5, 5), mu=locs, sigma=scales)
def test_reparameterised_variance_is_lower(xp, a, b, c, mu, sigma):
    # by the formulas above the score estimator's variance is >= 1.5x (d/dmu) and >= 3x (d/dsigma)
    # the reparameterised one's whenever a != 0: assert those ratios (4/3, resp. 7/6, is caught w.p. >= 1/2)
    f = quadratic(a, b, c)
    rep, sf = estimates(reparameterised(f), mu, sigma), estimates(score(f), mu, sigma)
    for i, ratio, detect in ((0, 1 / 1.5, 1.0), (1, 1 / 3, 2.5)):
        assert_lower_variance(rep[:, i], sf[:, i], alpha=ALPHA, ratio=ratio, detect=detect,
                              what=("reparameterised", "score function"))


def test_variances_match_their_closed_forms(xp):
    # one fixed case against the formulas in the module docstring: every estimator is unbiased, so the
    # squared deviations (g - exact)^2 of its S estimates have mean its variance (assert_unbiased)
    a, b, c, mu, sigma = 1.5, -0.5, 3.0, 0.7, 1.3
    exact = np.array([2 * a * mu + b, 2 * a * sigma])
    A, B, C = a * mu ** 2 + b * mu + c, (2 * a * mu + b) * sigma, a * sigma ** 2
    f = quadratic(a, b, c)
    expected = {"reparameterised": (4 * C ** 2, B ** 2 + 8 * C ** 2),
                "score": ((A + 3 * C) ** 2 + 2 * B ** 2 + 6 * C ** 2, 2 * (A + 5 * C) ** 2 + 24 * C ** 2 + 10 * B ** 2),
                "baseline": (2 * B ** 2 + 10 * C ** 2, 10 * B ** 2 + 56 * C ** 2)}
    objectives = {"reparameterised": reparameterised(f), "score": score(f), "baseline": score(f, baseline=A + C)}
    for name, objective in objectives.items():
        g = estimates(objective, mu, sigma)
        assert_unbiased((g - exact) ** 2, np.asarray(expected[name]) / sigma ** 2, alpha=ALPHA, detect=0.4,
                        what=f"squared deviations, {name}")


@settings(max_examples=12)
@given(a=coefficients, b=coefficients, c=st.floats(-10, 10), mu=locs, sigma=scales)
def test_baseline_lowers_score_function_variance(xp, a, b, c, mu, sigma):
    # A baseline b ~ E_q[f] helps where f's offset dominates its variation.  We test where the
    # closed forms say b = E_q[f] at least halves both variances, with the leave-one-out baseline
    # (4 samples per estimate; unbiased: each sample's baseline uses the other three only) and
    # with the constant b = E_q[f]; both stay unbiased.  The constant halves the variance (closed forms; a ratio of
    # 1 is caught w.p. >= 1/2); the leave-one-out baseline lowers it (a ratio of 2 is caught w.p. >= 1/2).
    A, B, C = a * mu ** 2 + b * mu + c, (2 * a * mu + b) * sigma, a * sigma ** 2
    assume((A + 3 * C) ** 2 + 2 * B ** 2 + 6 * C ** 2 > 2 * (2 * B ** 2 + 10 * C ** 2))
    assume(2 * (A + 5 * C) ** 2 + 24 * C ** 2 + 10 * B ** 2 > 2 * (10 * B ** 2 + 56 * C ** 2))
    f, exact = quadratic(a, b, c), (2 * a * mu + b, 2 * a * sigma)
    plain = estimates(score(f, m_samples=4), mu, sigma)
    for baseline, ratio, detect in (("loo", 1.0, 1.0), (A + C, 0.5, 1.0)):
        reduced = estimates(score(f, baseline=baseline, m_samples=4, seed=1), mu, sigma)
        unbiased(reduced, exact, f"baseline {baseline}")
        for i in range(2):
            assert_lower_variance(reduced[:, i], plain[:, i], alpha=ALPHA, ratio=ratio, detect=detect,
                                  what=(f"baseline {baseline}", "no baseline"))


@settings(max_examples=10)
@given(alpha=st.lists(st.floats(-3, 3), min_size=4, max_size=4), table=st.lists(st.floats(-5, 5), min_size=4, max_size=4))
def test_score_function_on_a_discrete_latent(xp, alpha, table):
    # q = Categorical(softmax(l)), no reparameterisation:  d/dl_j E_q[f] = p_j (f_j - E_q[f])
    alpha, table = np.asarray(alpha), np.asarray(table)
    p = scipy.special.softmax(alpha)
    exact = p * (table - p @ table)
    values = xp.asarray(table)
    rng = td.backend.rng(2)
    for baseline in (None, "loo"):
        def objective(l):
            q = Categorical(logits=l)
            k = q.sample((2,), rng=rng)
            return score_function_surrogate(values[k], q.log_prob(k), baseline=baseline)
        unbiased(host(gradient_samples(objective, [alpha], S)[0]), exact, f"baseline {baseline}")


def test_score_function_surrogate_gradient_is_exactly_the_reinforce_sum(xp):
    # d/dmu surrogate = 1/S sum_s (f_s - b) (z_s - mu) / sigma^2, to rounding, for the same z_s
    mu = td.tensor(np.float64(0.3), requires_grad=True)
    q = Normal(mu, t64(1.5))
    z = q.sample((6,), rng=td.backend.rng(3))
    f = host(z) ** 2
    for baseline, b in ((None, 0.0), (2.0, 2.0), ("loo", (f.sum() - f) / 5)):
        mu.grad = None
        score_function_surrogate(xp.asarray(f), q.log_prob(z), baseline=baseline).backward()
        assert float(mu.grad) == pytest.approx(np.mean((f - b) * (host(z) - 0.3) / 1.5 ** 2), rel=1e-12)


def test_score_function_surrogate_treats_f_as_a_constant(xp):
    mu = td.tensor(np.float64(0.0), requires_grad=True)
    f = mu * t64([3.0, 1.0]) + 1                               # a Tensor in the graph: no gradient through it
    out = score_function_surrogate(f, t64([0.5, 2.0]) + 0 * mu)
    out.backward()
    assert float(mu.grad) == 0.0 and out.shape == ()


def test_score_function_surrogate_errors(xp):
    with pytest.raises(ValueError, match="'loo'"):
        score_function_surrogate(xp.ones(3), t64(np.zeros(3)), baseline="mean")
    with pytest.raises(ValueError, match="at least 2 samples"):
        score_function_surrogate(xp.ones(1), t64(np.zeros(1)), baseline="loo")


# =============================================================================================
# log_mean_exp, iwae_bound, summaries
# =============================================================================================

@settings(max_examples=25)
@given(x=st.lists(st.floats(-50, 50), min_size=1, max_size=8), shift=st.sampled_from([0.0, 1000.0, -1000.0]))
def test_log_mean_exp(xp, x, shift):
    x = np.asarray(x) + shift
    exact = scipy.special.logsumexp(x) - np.log(len(x))
    assert log_mean_exp(t64(x)).item() == pytest.approx(exact, rel=1e-12, abs=1e-12)
    assert iwae_bound(t64(x)).item() == pytest.approx(exact, rel=1e-12, abs=1e-12)
    # d/dx_i log mean exp(x) = softmax(x)_i: the importance weights, normalised
    g = td.grad(lambda v: log_mean_exp(v))(t64(x))
    np.testing.assert_allclose(host(g), scipy.special.softmax(x), rtol=1e-10, atol=1e-15)


def test_log_mean_exp_axes(xp):
    x = np.arange(24.0).reshape(2, 3, 4) / 7
    for axis in (0, 1, -1):
        np.testing.assert_allclose(host(log_mean_exp(t64(x), axis=axis)),
                                   scipy.special.logsumexp(x, axis=axis) - np.log(x.shape[axis]), rtol=1e-12)
    assert log_mean_exp(t64(x), axis=1, keepdims=True).shape == (2, 1, 4)
    assert iwae_bound(t64(x), axis=2).shape == (2, 3)


def test_summarize_and_draw(xp):
    a = np.random.default_rng(0).standard_normal((50, 3))
    s = summarize(xp.asarray(a))
    np.testing.assert_allclose(s.mean, a.mean(0))
    np.testing.assert_allclose(s.variance, a.var(0, ddof=1))
    np.testing.assert_allclose(s.stderr, a.std(0, ddof=1) / np.sqrt(50))
    assert s.n == 50
    counter = iter(range(5))
    np.testing.assert_array_equal(draw(lambda: t64([next(counter), 1.0]), 5), [[k, 1.0] for k in range(5)])


def test_gradient_samples_rows_are_one_sample_estimates(xp):
    # row i is f'(mu + sigma eps_i) * (1, eps_i): the reparameterised estimate from draw i alone
    eps = np.random.default_rng(1).standard_normal(7)
    g_mu, g_sigma = gradient_samples(lambda m, s: (m + s * xp.asarray(eps)) ** 2, [np.float64(0.5), np.float64(2.0)], 7)
    assert g_mu.shape == (7,) and g_sigma.shape == (7,)
    np.testing.assert_allclose(host(g_mu), 2 * (0.5 + 2 * eps), rtol=1e-12)
    np.testing.assert_allclose(host(g_sigma), 2 * (0.5 + 2 * eps) * eps, rtol=1e-12)
    (g_w,) = gradient_samples(lambda w: (w * 2.0).sum(-1), [np.ones(3)], 4)
    assert g_w.shape == (4, 3) and np.all(host(g_w) == 2.0)


def test_gradient_samples_takes_a_number_for_a_float_parameter():
    """A parameter given as the integer 0 is a float parameter at 0 (the engine refuses int tensors with gradients)."""
    (g,) = gradient_samples(lambda m: Normal(m, 1.0).log_prob(0.5), [0], 3)
    np.testing.assert_allclose(td.backend.to_numpy(g), [0.5, 0.5, 0.5])          # d/dm log N(0.5; m, 1) = 0.5 - m
