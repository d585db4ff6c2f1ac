"""The figures behind tinydgm.testing's promises: each assertion's false-alarm rate measured on correct estimators over
many seeds, and the smallest departure it catches at the default number of draws (not run by the test suite).

    python scripts/testing_power.py [--seeds 2000]

The correct estimator is REINFORCE for ∇ E_q[f(z)], q = Π_i Bernoulli(σ(l_i)) over 6 units, f(z) = (w·z − 1)², each
draw the mean of 20 samples (skewed, as score-function draws are), 100 draws per call; its exact gradient by
enumeration of the 64 states (tests/testing/test_toolkit_stats.py uses the same).  For each assertion: false alarms
in `--seeds` calls at alpha = 0.05 and 1e-3 (with the count Binomial(seeds, alpha) exceeds with probability 1e-6), and
at alpha = 1e-3 the resolution it states (the departure it is sure to catch with probability >= 1/2), with the rate
at which it caught a departure of that size, and of twice it, on the noisiest coordinate.
"""
import itertools
import math
import os
import sys

import numpy as np
import scipy.stats

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchmarks import _cli as cli  # noqa: E402
from tinydgm.testing import stats  # noqa: E402
from tinydgm.testing.stats import StatisticalAssertionError  # noqa: E402

L = np.array([-1.0, 0.5, 2.0, -0.3, 0.0, 1.2])
W = np.array([1.5, -2.0, 0.7, 3.0, -0.5, 1.0])
STATES = np.array(list(itertools.product([0.0, 1.0], repeat=6)))
P = 1 / (1 + np.exp(-L))
Q = np.prod(np.where(STATES == 1, P, 1 - P), axis=1)
EXACT = (Q * (STATES @ W - 1) ** 2) @ (STATES - P)
U = np.ones(6) / math.sqrt(6)


def reinforce(rng, draws=100, samples=20, baseline=0.0):
    """draws × one estimate each: the mean over `samples` of (f(z) − b)(z − σ(l)), z ~ q."""
    z = (rng.random((draws, samples, 6)) < P).astype(float)
    return (((z @ W - 1) ** 2 - baseline)[..., None] * (z - P)).mean(1)


def raises(call):
    try:
        call()
    except StatisticalAssertionError:
        return 1
    return 0


# each: (name, call(rng, alpha) at the edge of its claim, call(rng, size) with a departure of `size`, the resolution)
def cases():
    worst = int(np.argmax(reinforce(np.random.default_rng(0)).std(0)))
    e = np.zeros(6)
    e[worst] = np.linalg.norm(EXACT)                         # a departure on the noisiest coordinate, ‖exact‖ per unit

    def bound_draws(rng, excess=0.0):
        return {k: -3.0 + 0.1 * (rng.exponential(1, 100) - 1) + (excess if k == 16 else 0.0) for k in (1, 4, 16)}

    def edge_consistent(rng, a):
        noise = lambda: 0.2 * rng.standard_normal((100, 6))  # noqa: E731
        draws = {1: EXACT + 0.5 * U + noise(), 4: EXACT + 0.5 * U + noise(), 16: EXACT + 0.25 * U + noise()}
        stats.assert_consistent(draws, EXACT, a, detect=np.inf, shrink=0.5)

    def stuck_consistent(rng, size):
        """A bias of `size` × ‖exact‖ at every K (it does not fall), Gaussian noise as at the edge."""
        noise = lambda: 0.2 * rng.standard_normal((100, 6))  # noqa: E731
        stats.assert_consistent({k: EXACT + size * np.linalg.norm(EXACT) * U + noise() for k in (1, 4, 16)}, EXACT,
                                1e-3, detect=np.inf, shrink=0.5)

    def resolution_consistent():
        noise = 0.2 * np.random.default_rng(0).standard_normal((3, 100, 6))
        draws = {k: EXACT + b * U + n for k, b, n in zip((1, 4, 16), (0.5, 0.5, 0.25), noise)}
        return stats.assert_consistent(draws, EXACT, 1e-3, detect=np.inf, shrink=0.5).resolution

    r0 = np.random.default_rng(0)
    return [
        ("assert_unbiased", lambda r, a: stats.assert_unbiased(reinforce(r), EXACT, a, detect=np.inf),
         lambda r, s: stats.assert_unbiased(reinforce(r) + s * e, EXACT, detect=np.inf),
         stats.assert_unbiased(reinforce(r0), EXACT, detect=np.inf).resolution, "of ‖exact‖"),
        ("assert_same_mean", lambda r, a: stats.assert_same_mean(reinforce(r), reinforce(r, 150, baseline=3.0), a,
                                                                 detect=np.inf),
         lambda r, s: stats.assert_same_mean(reinforce(r) + s * e, reinforce(r), detect=np.inf),
         stats.assert_same_mean(reinforce(r0), reinforce(r0), detect=np.inf).resolution, "of ‖mean‖"),
        ("assert_mean_at_most", lambda r, a: stats.assert_mean_at_most(reinforce(r), EXACT, a, detect=np.inf),
         lambda r, s: stats.assert_mean_at_most(reinforce(r) + s * e, EXACT, detect=np.inf),
         stats.assert_mean_at_most(reinforce(r0), EXACT, detect=np.inf).resolution, "of ‖limit‖"),
        ("assert_mean_at_least", lambda r, a: stats.assert_mean_at_least(reinforce(r), EXACT, a, detect=np.inf),
         lambda r, s: stats.assert_mean_at_least(reinforce(r) - s * e, EXACT, detect=np.inf),
         stats.assert_mean_at_least(reinforce(r0), EXACT, detect=np.inf).resolution, "of ‖limit‖"),
        ("assert_lower_variance", lambda r, a: stats.assert_lower_variance(reinforce(r), reinforce(r), a,
                                                                           detect=np.inf),
         lambda r, s: stats.assert_lower_variance(EXACT + (reinforce(r) - EXACT) * math.sqrt(1 + s), reinforce(r),
                                                  detect=np.inf),
         stats.assert_lower_variance(reinforce(r0), reinforce(r0), detect=np.inf).resolution,
         "excess variance ratio"),
        ("assert_consistent", edge_consistent, stuck_consistent, resolution_consistent(),
         "of ‖exact‖, a bias that does not fall"),
        ("assert_bound", lambda r, a: stats.assert_bound(bound_draws(r), -3.0, a, detect=np.inf),
         lambda r, s: stats.assert_bound(bound_draws(r, s), -3.0, detect=np.inf),
         stats.assert_bound(bound_draws(r0), -3.0, detect=np.inf).resolution, "nats above log p(x)"),
    ]


def main():
    parser = cli.Parser(prog="testing_power.py", description=cli.first_paragraph(__doc__))
    parser.add_argument("--seeds", type=cli.integer(1), default=2000, help="calls per measured rate (default 2000)")
    args = parser.parse_args()
    n = args.seeds
    table = cases()
    print(f"false alarms of correct estimators in {n} seeded calls (the most Binomial(n, alpha) gives w.p. 1e-6), and at "
          f"alpha = 1e-3 the stated resolution with the share of {min(n, 500)} seeds that caught that departure (x1) "
          "and twice it (x2)")
    print(f"{'assertion':24s} {'alpha 0.05':>16s} {'alpha 1e-3':>16s}   resolution (x1 caught, x2 caught)")
    for name, edge, departed, resolution, unit in table:
        cells = []
        for alpha in (0.05, 1e-3):
            count = sum(raises(lambda: edge(np.random.default_rng(seed), alpha)) for seed in range(n))
            cells.append(f"{count} ({count / n:.4f}) <= {int(scipy.stats.binom.isf(1e-6, n, alpha))}")
        m = min(n, 500)
        caught = [sum(raises(lambda: departed(np.random.default_rng(10 ** 6 + seed), times * resolution))
                      for seed in range(m)) / m for times in (1, 2)]
        print(f"{name:24s} {cells[0]:>16s} {cells[1]:>16s}   {resolution:.3g} {unit} "
              f"({caught[0]:.0%}, {caught[1]:.0%})")


if __name__ == "__main__":
    main()
