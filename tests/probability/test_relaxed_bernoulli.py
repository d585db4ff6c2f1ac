"""The relaxed Bernoulli (binary Concrete) and its logit, and the straight-through helper.

Checked against formulas written independently of the code: the CDF P(Y <= y) = σ(τ logit(y) − l)
(from y = σ((l + L)/τ), L standard logistic), its derivative, Maddison et al.'s closed-form density,
numerical integration to 1, and a Kolmogorov-Smirnov test of the samples against the CDF.  Seeds are
fixed; statistical tolerances are 5 standard errors or a KS p-value above 1e-3.  Both backends.
"""
import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

import tinydgm as td
from tinydgm.check import gradcheck
from tinydgm.distributions import LogitRelaxedBernoulli, RelaxedBernoulli
from tinydgm.estimators import straight_through

temperatures = st.floats(0.2, 3)
logits = st.floats(-4, 4)
N = 20_000


def t64(a):
    return td.tensor(np.asarray(a, dtype=np.float64))


def host(a):
    return td.backend.to_numpy(a.data if isinstance(a, td.Tensor) else a).astype(np.float64)


def cdf(y, tau, l):
    """P(Y <= y) = P(l + L <= τ logit y) = σ(τ logit(y) − l)."""
    return scipy.special.expit(tau * scipy.special.logit(y) - l)


@settings(max_examples=20)
@given(tau=temperatures, l=logits, y=st.floats(0.01, 0.99))
def test_log_prob_is_the_cdfs_derivative_and_maddisons_closed_form(xp, tau, l, y):
    got = RelaxedBernoulli(tau, t64(l)).log_prob(t64(y)).item()
    s = scipy.special.expit(tau * scipy.special.logit(y) - l)
    assert got == pytest.approx(np.log(s * (1 - s) * tau / (y * (1 - y))), rel=1e-9, abs=1e-9)   # d/dy of the CDF
    a = np.exp(l)                                                                 # Maddison et al. 2017, binary Concrete
    closed = tau * a * y ** (-tau - 1) * (1 - y) ** (-tau - 1) / (a * y ** -tau + (1 - y) ** -tau) ** 2
    assert got == pytest.approx(np.log(closed), rel=1e-9, abs=1e-9)
    x = scipy.special.logit(y)                                                    # the logit's density: logistic(l/τ, 1/τ)
    assert LogitRelaxedBernoulli(tau, t64(l)).log_prob(t64(x)).item() == pytest.approx(
        scipy.stats.logistic.logpdf(x, loc=l / tau, scale=1 / tau), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("tau,l", [(0.3, -1.0), (0.5, 2.0), (1.0, 0.0), (2.5, -3.0)])
def test_densities_integrate_to_one(tau, l):
    """∫ p(y) dy = 1 over (0, 1), computed as ∫ p(σ(x)) σ'(x) dx (no endpoint singularity) over x in [−30, 30],
    where y = σ(x) is exact in float64, plus the two tails' mass from the CDF."""
    rb, lrb = RelaxedBernoulli(tau, t64(l)), LogitRelaxedBernoulli(tau, t64(l))

    def p_y(x):
        y = scipy.special.expit(x)
        return np.exp(rb.log_prob(t64(y)).item()) * y * (1 - y)

    tails = cdf(scipy.special.expit(-30), tau, l) + 1 - cdf(scipy.special.expit(30), tau, l)
    assert tails < 0.01
    assert scipy.integrate.quad(p_y, -30, 30, limit=200)[0] + tails == pytest.approx(1, abs=1e-7)
    assert scipy.integrate.quad(lambda x: np.exp(lrb.log_prob(t64(x)).item()), -np.inf, np.inf)[0] == pytest.approx(1, abs=1e-7)


@pytest.mark.parametrize("tau,l", [(0.3, -1.0), (1.0, 0.5), (2.5, 2.0)])
def test_samples_follow_the_cdf(xp, tau, l):
    """Kolmogorov-Smirnov on N draws (seeded), y and its logit; P(y > 1/2) = σ(l) within 5 SE."""
    d = RelaxedBernoulli(tau, t64(np.full(N, l)))
    y = host(d.sample(rng=td.backend.rng(0)))
    assert scipy.stats.kstest(y, lambda v: cdf(v, tau, l)).pvalue > 1e-3
    x = host(LogitRelaxedBernoulli(tau, t64(np.full(N, l))).sample(rng=td.backend.rng(1)))
    assert scipy.stats.kstest(x, lambda v: scipy.special.expit(tau * v - l)).pvalue > 1e-3
    p = scipy.special.expit(l)
    assert abs((y > 0.5).mean() - p) <= 5 * np.sqrt(p * (1 - p) / N)


def test_rsample_is_reparameterised(xp):
    """dy/dl = y(1 − y)/τ for the same noise, the logit's dx/dl = 1/τ; both pass gradcheck in the logits."""
    l = td.tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    y = RelaxedBernoulli(0.7, l).rsample(rng=td.backend.rng(3))
    td.sum(y).backward()
    np.testing.assert_allclose(host(l.grad), host(y) * (1 - host(y)) / 0.7, rtol=1e-10)
    assert RelaxedBernoulli.has_rsample and LogitRelaxedBernoulli.has_rsample
    for cls in (RelaxedBernoulli, LogitRelaxedBernoulli):
        assert gradcheck(lambda a: cls(0.7, a).rsample((2,), rng=td.backend.rng(4)), t64([-1.0, 0.5, 3.0]))
        assert gradcheck(lambda a: cls(0.7, a).log_prob(t64([0.2, 0.6, 0.9])), t64([-1.0, 0.5, 3.0]))
    s = RelaxedBernoulli(0.7, l).sample((4,), rng=td.backend.rng(3))
    assert s.shape == (4, 3) and s._ctx is None and not s.requires_grad


def test_float32_draws_stay_finite_even_at_u_zero(xp):
    """A uniform draw of exactly 0 (probability 2^-24 per float32 draw) gives a finite logit and log-density."""
    class Zeros:
        def random(self, shape, dtype):
            return np.zeros(shape, dtype=dtype)
    l = td.tensor(np.zeros(3, dtype=np.float32))
    x = LogitRelaxedBernoulli(0.5, l).rsample(rng=Zeros())
    assert x.dtype == np.float32 and np.all(np.isfinite(host(x)))
    assert np.all(np.isfinite(host(LogitRelaxedBernoulli(0.5, l).log_prob(x))))


def test_validation(xp):
    with pytest.raises(ValueError, match="temperature must be positive"):
        RelaxedBernoulli(0.0, t64([0.0]))
    with pytest.raises(ValueError, match=r"value must lie in \(0, 1\)"):
        RelaxedBernoulli(1.0, t64([0.0])).log_prob(t64([1.0]))


@settings(max_examples=10)
@given(y=st.lists(st.floats(0, 1), min_size=1, max_size=6))
def test_straight_through_is_hard_forward_and_soft_backward(xp, y):
    """Forward exactly [y > 1/2]; backward the gradient of y itself: d/dy Σ c_i st(y)_i = c."""
    y = td.tensor(np.asarray(y), requires_grad=True)
    h = straight_through(y)
    np.testing.assert_array_equal(host(h), (host(y) > 0.5).astype(np.float64))
    c = np.arange(1.0, len(host(y)) + 1)
    td.sum(h * t64(c)).backward()
    np.testing.assert_array_equal(host(y.grad), c)
