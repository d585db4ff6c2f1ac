"""Write your own gradient estimator in a few lines and property-test it against exact answers.

VIMCO (Mnih & Rezende 2016) estimates ∇ L_K with a leave-one-out baseline for each of its K samples.  Any baseline
that does not depend on sample k keeps the estimate unbiased; the paper's own replaces w_k by the geometric mean of
the others (eq. 9), and the arithmetic mean of the others works too:

    L̂_{-k} = log 1/(K−1) Σ_{j≠k} w_j          ∇ L_K ≈ Σ_k (L̂ − L̂_{-k}) ∇ log q(h_k|x) + Σ_k w̃_k ∇ log w_k

`check_estimator` draws small sigmoid belief nets, enumerates L_K exactly and compares the mean of many gradient
estimates with its exact gradient.  The arithmetic-mean VIMCO passes.  A baseline that sees its own sample,
w_k replaced by the mean of all K weights (w_k included), is biased, and the check says where and by how much.

    python examples/custom_estimator.py
"""
import math

import numpy as np

from tinydgm import ops
from tinydgm.estimators import Estimator, Objective, discrete, normalized_weights, total
from tinydgm.estimators.importance import bound_value
from tinydgm.tensor import Tensor
from tinydgm.testing import check_estimator


def log_sum_exp(a, axis):
    """log Σ exp(a) along `axis`, stable, on NumPy arrays (entries of −inf allowed)."""
    top = a.max(axis, keepdims=True)
    return np.log(np.exp(a - top).sum(axis)) + top.squeeze(axis)


class ArithmeticVIMCO(Estimator):
    """VIMCO whose baseline for sample k is the bound of the other K − 1 samples: unbiased for ∇ L_K."""
    name, target, claim = "vimco-arithmetic", "L_K", "unbiased"

    def __init__(self, k=3):
        self.k = k

    def baselines(self, log_w):
        """L̂_{-k} = log 1/(K−1) Σ_{j≠k} w_j, for each k (an array like log_w)."""
        others = np.where(np.eye(self.k, dtype=bool)[:, :, None], -np.inf, log_w[None])    # row k: w_k left out
        return log_sum_exp(others, axis=1) - math.log(self.k - 1)

    def objective(self, model, x, rng):
        hs, q_terms = discrete.sample_q(model, x, rng, self.k)                 # K samples h_k ~ q(h|x), log q
        log_q = total(q_terms)
        log_w = total(model.log_joint_terms(x, hs)[::-1]) - log_q             # log w_k, (K, B)
        lw = log_w.data
        signal = bound_value(lw) - self.baselines(lw)                           # L̂ − L̂_{-k}
        surrogate = ops.sum(Tensor(signal) * log_q) + ops.sum(Tensor(normalized_weights(lw)) * log_w)
        return Objective(surrogate / len(x), bound_value(lw))


class SelfSeeingVIMCO(ArithmeticVIMCO):
    """The bug: w_k replaced by the mean of all K weights, its own included, so the baseline depends on h_k."""
    name, target, claim = "vimco-self-seeing", "L_K", "unbiased"

    def baselines(self, log_w):
        others = np.where(np.eye(self.k, dtype=bool)[:, :, None], -np.inf, log_w[None])
        mean_all = bound_value(log_w)                                          # log 1/K Σ_j w_j: sees w_k
        return np.logaddexp(log_sum_exp(others, axis=1), mean_all) - math.log(self.k)


def main():
    """Check both estimators; print what the checks say; return (the report of the good one, the bad one's error)."""
    report = check_estimator(ArithmeticVIMCO(k=3))
    for case in report.examples:
        print(f"passes on {case['model']}: largest |z| {case['gradient'].statistic:.2f} "
              f"(threshold {case['gradient'].threshold:.2f}), {case['draws']} draws")
    try:
        check_estimator(SelfSeeingVIMCO(k=3))
    except AssertionError as e:
        print(f"the self-seeing baseline fails, as it should:\n{e}")
        return report, e
    raise SystemExit("the self-seeing baseline passed: the check missed a bias")


if __name__ == "__main__":
    main()
