"""tinydgm.testing.stats: each assertion's false-alarm rate, measured over many seeds on correct synthetic estimators,
is at or below the rate it states; each catches a departure of the size it promises; each refuses to pass when its
draws are too few; each failure names the worst coordinate.

A measured count of false alarms in N calls at rate alpha is held to the count that Binomial(N, alpha) exceeds with
probability 1e-6: this module's own false-alarm rate is then below 1e-5 in all.  The synthetic estimator is REINFORCE
for the gradient of E_q[f(z)], q = Π_i Bernoulli(σ(l_i)), 6 logits, f(z) = (w·z − 1)², each draw the mean of 20
samples (skewed: the score function's), its exact gradient by enumeration of the 64 states.
"""
import itertools
import math

import numpy as np
import pytest
import scipy.stats

from tinydgm.testing import stats
from tinydgm.testing.stats import StatisticalAssertionError, UnderpoweredError

L = np.array([-1.0, 0.5, 2.0, -0.3, 0.0, 1.2])
W = np.array([1.5, -2.0, 0.7, 3.0, -0.5, 1.0])
STATES = np.array(list(itertools.product([0.0, 1.0], repeat=6)))
P = 1 / (1 + np.exp(-L))


def f(z):
    return (z @ W - 1) ** 2


def exact_gradient():
    """d/dl Σ_z q(z) f(z) = Σ_z q(z) f(z) (z − σ(l))."""
    q = np.prod(np.where(STATES == 1, P, 1 - P), axis=1)
    return (q * f(STATES)) @ (STATES - P)


EXACT = exact_gradient()


def reinforce(rng, draws=100, samples=20, baseline=0.0):
    """draws × one estimate each: the mean over `samples` of (f(z) − b)(z − σ(l)), z ~ q."""
    z = (rng.random((draws, samples, 6)) < P).astype(float)
    return ((f(z) - baseline)[..., None] * (z - P)).mean(1)


def false_alarms(call, n, alpha):
    """How many of n seeded calls raise StatisticalAssertionError, and the count Binomial(n, alpha) exceeds w.p. 1e-6."""
    count = 0
    for seed in range(n):
        try:
            call(np.random.default_rng(seed), alpha)
        except StatisticalAssertionError:
            count += 1
    return count, scipy.stats.binom.isf(1e-6, n, alpha)


# =============================================================================================
# False-alarm rates
# =============================================================================================

@pytest.mark.parametrize("alpha, n", [(0.05, 500), (1e-3, 500)])
def test_assert_unbiased_false_alarm_rate(alpha, n):
    count, most = false_alarms(lambda r, a: stats.assert_unbiased(reinforce(r), EXACT, a, detect=np.inf), n, alpha)
    assert count <= most, (count, n, alpha)


@pytest.mark.parametrize("alpha, n", [(0.05, 500), (1e-3, 500)])
def test_assert_lower_variance_false_alarm_rate_at_equal_variances(alpha, n):
    """The boundary of the claim: a and b from the same estimator, V_a = V_b."""
    count, most = false_alarms(lambda r, a: stats.assert_lower_variance(reinforce(r), reinforce(r), a, detect=np.inf),
                               n, alpha)
    assert count <= most, (count, n, alpha)


@pytest.mark.parametrize("alpha, n", [(0.05, 500), (1e-3, 500)])
def test_assert_consistent_false_alarm_rate_at_the_boundary(alpha, n):
    """Biases exactly at the claim's edge: equal norms at K = 1 and 4 (non-increasing), and at K = 16 exactly
    shrink × the norm at K = 1; Gaussian noise."""
    u = np.ones(6) / math.sqrt(6)

    def call(r, a):
        noise = lambda: 0.2 * r.standard_normal((100, 6))  # noqa: E731
        draws = {1: EXACT + 0.5 * u + noise(), 4: EXACT + 0.5 * u + noise(), 16: EXACT + 0.25 * u + noise()}
        stats.assert_consistent(draws, EXACT, a, detect=np.inf, shrink=0.5)
    count, most = false_alarms(call, n, alpha)
    assert count <= most, (count, n, alpha)


@pytest.mark.parametrize("alpha, n", [(0.05, 500), (1e-3, 500)])
def test_assert_bound_false_alarm_rate_at_the_boundary(alpha, n):
    """E[L̂_K] = log p(x) at every K (the edge of both claims); skewed draws (a centred exponential)."""
    def call(r, a):
        stats.assert_bound({k: -3.0 + 0.1 * (r.exponential(1, 100) - 1) for k in (1, 4, 16)}, -3.0, a, detect=np.inf)
    count, most = false_alarms(call, n, alpha)
    assert count <= most, (count, n, alpha)


@pytest.mark.parametrize("alpha, n", [(0.05, 500), (1e-3, 500)])
def test_assert_same_mean_false_alarm_rate(alpha, n):
    """Two correct estimators of one gradient: REINFORCE with and without a baseline, 100 and 150 draws."""
    count, most = false_alarms(lambda r, a: stats.assert_same_mean(reinforce(r), reinforce(r, 150, baseline=3.0), a,
                                                                   detect=np.inf), n, alpha)
    assert count <= most, (count, n, alpha)


@pytest.mark.parametrize("alpha, n", [(0.05, 500), (1e-3, 500)])
def test_assert_mean_at_most_and_at_least_false_alarm_rates_at_the_boundary(alpha, n):
    """E[draw] = limit exactly (the edge of both one-sided claims)."""
    for check in (stats.assert_mean_at_most, stats.assert_mean_at_least):
        count, most = false_alarms(lambda r, a: check(reinforce(r), EXACT, a, detect=np.inf), n, alpha)
        assert count <= most, (check.__name__, count, n, alpha)


# =============================================================================================
# What each catches, and refusals
# =============================================================================================

def test_assert_unbiased_catches_a_bias_of_its_stated_resolution():
    """Resolution ρ: a bias of norm ρ ‖exact‖ on the noisiest coordinate is caught in >= 1/2 of seeds (the promise),
    one of 2ρ in nearly all; the message names the coordinate with its estimate, exact value, SE and z."""
    out = stats.assert_unbiased(reinforce(np.random.default_rng(0)), EXACT, detect=0.5)
    rho = out.resolution
    assert 0 < rho < 0.5
    worst = int(np.argmax(reinforce(np.random.default_rng(0)).std(0)))
    caught = {1: 0, 2: 0}
    for seed in range(200):
        for times in caught:
            bias = np.zeros(6)
            bias[worst] = times * rho * np.linalg.norm(EXACT)
            try:
                stats.assert_unbiased(reinforce(np.random.default_rng(seed)) + bias, EXACT, detect=np.inf)
            except StatisticalAssertionError:
                caught[times] += 1
    assert caught[1] >= 0.4 * 200 and caught[2] >= 0.95 * 200, (rho, caught)
    with pytest.raises(StatisticalAssertionError, match=rf"Worst w\[{worst}\]: estimate .* exact .* SE .* z = "):
        stats.assert_unbiased({"w": reinforce(np.random.default_rng(1)) + 3 * bias}, {"w": EXACT}, detect=np.inf)


def test_assert_unbiased_refuses_too_few_draws():
    draws = reinforce(np.random.default_rng(0), draws=30, samples=1)
    with pytest.raises(UnderpoweredError, match=r"refuses to pass.*could go unseen.*about \d+ draws would do"):
        stats.assert_unbiased(draws, EXACT, detect=0.05)


def test_assert_unbiased_on_dicts_of_parameter_groups_and_exact_draws():
    """Named groups flatten in the exact value's order; draws with no spread pass where they equal the exact value."""
    g = {"a": np.tile([[1.0, 2.0]], (50, 1)), "b": np.tile([[[3.0]]], (50, 1, 1))}
    stats.assert_unbiased(g, {"b": np.array([[3.0]]), "a": np.array([1.0, 2.0])})
    with pytest.raises(StatisticalAssertionError, match=r"Worst b\[0, 0\]"):
        stats.assert_unbiased(g, {"a": np.array([1.0, 2.0]), "b": np.array([[3.1]])})
    with pytest.raises(ValueError, match="different parameters"):
        stats.assert_unbiased(g, {"a": np.array([1.0, 2.0])})


def test_assert_lower_variance_catches_a_higher_variance_and_passes_a_lower_one():
    """A baseline b = E[f] lowers REINFORCE's variance (measured ratio about 0.4): the claim "with <= without"
    passes and "without <= with" fails, naming a coordinate; too few draws refuse."""
    rng = np.random.default_rng(0)
    mean_f = float(np.prod(np.where(STATES == 1, P, 1 - P), axis=1) @ f(STATES))
    with_b, without = reinforce(rng, 400, baseline=mean_f), reinforce(rng, 400)
    out = stats.assert_lower_variance(with_b, without)
    assert out.statistic < 0.7
    with pytest.raises(StatisticalAssertionError, match=r"total variance is above 1 ×.*largest excess: \[\d\]"):
        stats.assert_lower_variance(without, with_b)
    with pytest.raises(UnderpoweredError, match="refuses to pass"):
        stats.assert_lower_variance(with_b[:30], without[:30], detect=0.1)


def test_assert_consistent_passes_self_normalised_importance_sampling_and_catches_a_bias_that_stays():
    """Self-normalised importance sampling of E_p[z] = 1, p = N(1, 1), from q = N(0, 1.5²), K samples (consistent:
    bias O(1/K)) passes; draws with the same bias at every K fail "does not fall", a bias rising with K "grows"."""
    def snis(rng, k, draws=300):
        z = rng.normal(0, 1.5, (draws, 200, k))
        log_w = -0.5 * (z - 1) ** 2 + 0.5 * (z / 1.5) ** 2
        w = np.exp(log_w - log_w.max(-1, keepdims=True))
        return ((w * z).sum(-1) / w.sum(-1)).mean(1)[:, None]          # each draw: a mean over 200 estimates
    rng = np.random.default_rng(0)
    draws = {k: snis(rng, k) for k in (1, 4, 16)}
    out = stats.assert_consistent(draws, np.array([1.0]), detect=0.5)
    assert out.statistic < 0.5
    stuck = {k: v - v.mean() + 1.3 for k, v in draws.items()}                # a bias of 0.3 at every K
    with pytest.raises(StatisticalAssertionError, match=r"does not fall with K.*worst coordinate at K = 16: \[0\]"):
        stats.assert_consistent(stuck, np.array([1.0]))
    growing = {1: draws[16], 4: draws[4], 16: draws[1]}
    with pytest.raises(StatisticalAssertionError, match="grows from K"):
        stats.assert_consistent(growing, np.array([1.0]))


def test_assert_bound_catches_an_excess_and_a_fall():
    rng = np.random.default_rng(0)
    good = {1: -3.5 + 0.1 * rng.standard_normal(200), 4: -3.2 + 0.1 * rng.standard_normal(200),
            16: -3.05 + 0.1 * rng.standard_normal(200)}
    out = stats.assert_bound(good, -3.0)
    with pytest.raises(StatisticalAssertionError, match=r"at K = 16 is above log p\(x\)"):
        stats.assert_bound({**good, 16: good[16] + 2 * out.resolution + 0.05}, -3.0)
    with pytest.raises(StatisticalAssertionError, match="falls from K = 4 to K = 16"):
        stats.assert_bound({**good, 16: good[16] - 0.3}, -3.0)
    with pytest.raises(UnderpoweredError, match="refuses to pass"):
        stats.assert_bound({k: v[:25] for k, v in good.items()}, -3.0, detect=0.01)


def test_assert_same_mean_and_one_sided_catch_a_shift_of_their_resolution():
    """A shift of twice the stated resolution on the noisiest coordinate is caught in nearly all of 100 seeds; the
    messages name the coordinate; too few draws refuse."""
    out = stats.assert_same_mean(reinforce(np.random.default_rng(0)), reinforce(np.random.default_rng(1)), detect=1)
    worst = int(np.argmax(reinforce(np.random.default_rng(0)).std(0)))
    shift = np.zeros(6)
    shift[worst] = 2 * out.resolution * np.linalg.norm(EXACT)
    caught = {"same": 0, "at_most": 0, "at_least": 0}
    for seed in range(100):
        r = np.random.default_rng(seed)
        for name, call in (("same", lambda: stats.assert_same_mean(reinforce(r) + shift, reinforce(r), detect=np.inf)),
                           ("at_most", lambda: stats.assert_mean_at_most(reinforce(r) + shift, EXACT, detect=np.inf)),
                           ("at_least", lambda: stats.assert_mean_at_least(reinforce(r) - shift, EXACT,
                                                                           detect=np.inf))):
            try:
                call()
            except StatisticalAssertionError:
                caught[name] += 1
    assert min(caught.values()) >= 90, (out.resolution, caught)
    with pytest.raises(StatisticalAssertionError, match=rf"different means.*Worst \[{worst}\]"):
        stats.assert_same_mean(reinforce(np.random.default_rng(2)) + 2 * shift, reinforce(np.random.default_rng(3)))
    with pytest.raises(StatisticalAssertionError, match=rf"assert_mean_at_least: .*below the limit.*Worst \[{worst}\]"):
        stats.assert_mean_at_least(reinforce(np.random.default_rng(2)) - 2 * shift, EXACT)
    with pytest.raises(UnderpoweredError, match="refuses to pass"):
        stats.assert_mean_at_most(reinforce(np.random.default_rng(0), draws=20, samples=1), EXACT, detect=0.05)
