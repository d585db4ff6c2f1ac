"""Mutation check: break the mathematics one line at a time and see whether the tests notice.

Each record in MUTATIONS below changes one formula of the library (a derivative rule, a closed
form, an update, a normalisation axis) into a plausible wrong one.  The runner applies them one at
a time to a private copy of the repository, runs the tests named for it, and reports each as
caught (a test failed), SURVIVED (all passed), stale (the original text is no longer found exactly
once: the code moved) or error.  The working tree is never modified.

    python scripts/mutate.py --jobs 2                  all mutations, 2 at a time, mutation-report.md
    python scripts/mutate.py --list                    the list, and whether each still applies
    python scripts/mutate.py -k hmm --out /tmp/r.md    only ids or paths containing "hmm"
    python scripts/mutate.py --only ops-exp,ops-log    these ids
    python scripts/mutate.py --tests tests/            run the whole suite for every mutation

The list was written from the source's mathematics, before the tests meant to catch it
(issue 17, item 4), and committed first; so were the records of the estimators added since and of
every option an estimator takes (issue 25, item 5).  Exit status: 0 when every mutation is caught, 1 when one
survives, is stale or errs, 2 when the unmutated tests fail in the copy or an option is wrong (one line,
checked before anything runs), 130 when interrupted (SIGINT, SIGTERM, SIGHUP: the copies are removed and
their tests killed).
"""
import argparse
import collections
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchmarks import _cli as cli  # noqa: E402
from tinydgm import files  # noqa: E402
from tinydgm.errors import UserError  # noqa: E402

Mutation = collections.namedtuple("Mutation", "id path old new description tests")


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def m(id, path, old, new, description, tests):
    if not isinstance(path, str):                     # candidates: the file that holds `old` once
        found = [p for p in path if _count(p, old) == 1]
        path = found[0] if found else path[0]
    return Mutation(id, path, old, new, description, tuple(tests))


def _count(path, text):
    try:
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            return f.read().count(text)
    except OSError:
        return 0


# Test sets: add a new test file to the set of the module it covers.
ENGINE = ["tests/engine/test_ops.py", "tests/engine/test_graph.py"]
NN = ENGINE + ["tests/engine/test_nn_optim.py"]
DISTRIBUTIONS = ["tests/probability/test_distributions.py", "tests/probability/test_linear_gaussian.py"]
ESTIMATORS = ["tests/probability/test_estimators.py", "tests/probability/test_nvil_vimco.py",
              "tests/probability/test_relaxed_bernoulli.py", "tests/probability/test_estimator_options.py",
              "tests/probability/test_linear_gaussian.py", "tests/probability/test_estimator_models.py",
              "tests/models/test_sbn_estimators.py"]                    # cheap files first: pytest -x stops early
VAE = ["tests/models/test_vae.py", "tests/models/test_vae_reference.py"]
WAKE_SLEEP = ["tests/models/test_wake_sleep.py", "tests/probability/test_estimator_options.py",
              "tests/probability/test_estimator_models.py", "tests/experiments/test_wake_sleep_cli.py"]
HMM = ["tests/models/test_hmm.py"]
LOGLINEAR = ["tests/models/test_loglinear.py", "tests/models/test_hmm.py"]
OPTIM = ["tests/engine/test_nn_optim.py"]
METRICS = ["tests/metrics/test_likelihood.py", "tests/models/test_vae.py", "tests/experiments/test_vae_cli.py"]
TAGGING = ["tests/metrics/test_tagging.py", "tests/data/test_conllu.py", "tests/experiments/test_loglinear_cli.py"]
NUMERICS = ["tests/test_numerics.py"]

# Files: where a formula moved between files, the record names the candidates and the one that
# holds its text exactly once is used (see `m`).
OPS, TENSOR = ("tinydgm/ops.py", "tinydgm/numerics.py"), "tinydgm/tensor.py"
DIST = "tinydgm/distributions.py"
IMPORTANCE, REPARAM = "tinydgm/estimators/importance.py", "tinydgm/estimators/reparam.py"
SCORE, VIMCO_PY = "tinydgm/estimators/score_function.py", "tinydgm/estimators/vimco.py"
WS_EST, RELAXED = "tinydgm/estimators/wake_sleep.py", "tinydgm/estimators/relaxed.py"
DISCRETE, REGISTRY = "tinydgm/estimators/discrete.py", "tinydgm/estimators/__init__.py"
VAE_PY, HAND = "tinydgm/models/vae/model.py", "tinydgm/models/vae/by_hand.py"
WS = ("tinydgm/models/wake_sleep/model.py", "tinydgm/models/wake_sleep/by_hand.py",
      "tinydgm/models/wake_sleep/exact.py", "tinydgm/numerics.py")
HMM_PY = ("tinydgm/models/loglinear/hmm.py", "tinydgm/models/loglinear/by_hand.py", "tinydgm/models/loglinear/model.py")
LL = ("tinydgm/models/loglinear/model.py", "tinydgm/models/loglinear/by_hand.py",
      "tinydgm/models/loglinear/mixture.py")
OPTIM_PY, METRICS_PY, TAG = "tinydgm/optim.py", "tinydgm/metrics/likelihood.py", "tinydgm/metrics/tagging.py"

MUTATIONS = [
    # =========================================================================================
    # tinydgm/ops.py: the derivative rules
    # =========================================================================================
    m("ops-add-dy", OPS, "unbroadcast(g, _shape(y))", "unbroadcast(-g, _shape(y))",
      "add: d(x+y)/dy = -1", ENGINE),
    m("ops-sub-dy", OPS, "unbroadcast(-g, _shape(y)))    # d(x-y)/dy", "unbroadcast(g, _shape(y)))    # d(x-y)/dy",
      "subtract: d(x-y)/dy = +1", ENGINE),
    m("ops-mul-dx", OPS, "unbroadcast(g * y, _shape(x))", "unbroadcast(g * x, _shape(x))",
      "multiply: d(xy)/dx = x", ENGINE),
    m("ops-div-dx", OPS, "unbroadcast(g / y, _shape(x))", "unbroadcast(g * y, _shape(x))",
      "divide: d(x/y)/dx = y", ENGINE),
    m("ops-div-dy", OPS, "unbroadcast(-g * ans / y, _shape(y))", "unbroadcast(g * ans / y, _shape(y))",
      "divide: d(x/y)/dy = +x/y^2", ENGINE),
    m("ops-neg", OPS, "defvjp(negative, lambda g, ans, x: -g)", "defvjp(negative, lambda g, ans, x: g)",
      "negative: d(-x)/dx = +1", ENGINE),
    m("ops-pow", OPS, "g * (c * x ** (c - 1))", "g * (x ** (c - 1))",
      "power: d x^c/dx = x^(c-1), the factor c dropped", ENGINE),
    m("ops-exp", OPS, "defvjp(exp, lambda g, ans, x: g * ans)", "defvjp(exp, lambda g, ans, x: g * x)",
      "exp: d e^x/dx = x", ENGINE),
    m("ops-log", OPS, "defvjp(log, lambda g, ans, x: g / x)", "defvjp(log, lambda g, ans, x: g * x)",
      "log: d log x/dx = x", ENGINE),
    m("ops-tanh", OPS, "g * (1 - ans * ans)", "g * (1 - ans)",
      "tanh: d tanh/dx = 1 - tanh (not squared)", ENGINE),
    m("ops-sigmoid", OPS, "g * ans * (1 - ans)", "g * ans",
      "sigmoid: d s/dx = s, the factor (1 - s) dropped", ENGINE),
    m("ops-softplus", OPS, "defvjp(softplus, lambda g, ans, x: g * _exp(x - ans))",
      "defvjp(softplus, lambda g, ans, x: g * _exp(ans - x))",
      "softplus: derivative sigmoid(-x) instead of sigmoid(x)", ENGINE),
    m("ops-log-sigmoid", OPS, "defvjp(log_sigmoid, lambda g, ans, x: g * _exp(ans - x))",
      "defvjp(log_sigmoid, lambda g, ans, x: g * _exp(ans))",
      "log_sigmoid: derivative sigmoid(x) instead of sigmoid(-x)", ENGINE),
    m("ops-relu-kink", OPS, "g * (x > 0)", "g * (x >= 0)",
      "relu'(0) = 1, not the documented 0", ENGINE),
    m("ops-maximum-tie", OPS, "g * (x >= y)", "g * (x > y)",
      "maximum: a tie sends the gradient to neither argument", ENGINE),
    m("ops-where-y", OPS, "unbroadcast(g * ~_bool(c), _shape(y))", "unbroadcast(g, _shape(y))",
      "where: y gets the gradient everywhere, also where the condition holds", ENGINE),
    m("ops-clip-outside", OPS,
      "unbroadcast(g * ((lo is None or x >= lo) & (hi is None or x <= hi)), _shape(x))",
      "unbroadcast(g, _shape(x))",
      "clip: gradient passed outside [lo, hi] too", ENGINE),
    m("ops-clip-bounds", OPS, "(lo is None or x >= lo) & (hi is None or x <= hi)",
      "(lo is None or x > lo) & (hi is None or x < hi)",
      "clip: no gradient at the bounds (documented: passed)", ENGINE),
    m("ops-bernoulli", OPS, "g * (x - numerics.sigmoid(_xp(l), l))", "g * (numerics.sigmoid(_xp(l), l) - x)",
      "bernoulli_log_prob: d/dl = sigmoid(l) - x (sign)", ENGINE),
    m("ops-matmul-dx", OPS, "return g @ y.T if which == 0 else x.T @ g", "return g @ y if which == 0 else x.T @ g",
      "matmul (2-d): d/dx = g y, the transpose forgotten", ENGINE),
    m("ops-linear-dw", OPS, "x.reshape(-1, x.shape[-1]).T @ g.reshape(-1, g.shape[-1])",
      "x.reshape(-1, x.shape[-1]).T @ g.reshape(-1, g.shape[-1]) / g.shape[0]",
      "linear: dW = x^T g / B, averaged over the batch instead of summed", NN),
    m("ops-linear-db", OPS, "unbroadcast(g, b.shape))", "unbroadcast(g, b.shape) / g.shape[0])",
      "linear: db averaged over the batch instead of summed", NN),
    m("ops-keep-sorted", OPS, "for a in sorted(a % ndim for a in", "for a in (a % ndim for a in",
      "reductions: axes re-inserted in the order given, not sorted (axis=(2, 0))", ENGINE),
    m("ops-keep-negative", OPS, "sorted(a % ndim for a in", "sorted(a for a in",
      "reductions: negative axes not wrapped before re-inserting them", ENGINE),
    m("ops-mean-count", OPS, "n *= shape[a]", "n = shape[a]",
      "mean over several axes divides by the last axis's length only", ENGINE),
    m("ops-max-ties", OPS, "* at_max / at_max.sum(axis=axis, keepdims=True, dtype=g.dtype)", "* at_max",
      "max: every tied entry gets the whole gradient (not split evenly)", ENGINE),
    m("ops-lse-vjp", OPS, "_exp(x - _keep(ans, x.ndim, axis, keepdims)))", "_exp(x))",
      "logsumexp: gradient e^x instead of softmax(x)", ENGINE),
    m("ops-lse-forward", OPS, "s = xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m",
      "s = xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True))",
      "logsumexp forward: the max m is not added back", ENGINE),
    m("ops-reshape", OPS, "defvjp(reshape, lambda g, ans, x, shape: g.reshape(x.shape))",
      "defvjp(reshape, lambda g, ans, x, shape: g.reshape(x.shape, order='F'))",
      "reshape: gradient reshaped in Fortran order", ENGINE),
    m("ops-transpose", OPS, "tuple(numpy.argsort([a % x.ndim for a in axes]).tolist())",
      "tuple(a % x.ndim for a in axes)",
      "transpose: gradient permuted by axes, not the inverse permutation", ENGINE),
    m("ops-broadcast", OPS, "defvjp(broadcast_to, lambda g, ans, x, shape: unbroadcast(g, x.shape))",
      "defvjp(broadcast_to, lambda g, ans, x, shape: g.reshape(-1)[:x.size].reshape(x.shape))",
      "broadcast_to: gradient of the first copy only, not the sum over copies", ENGINE),
    m("ops-getitem-scatter", OPS, "        backend.scatter_add(out, index, g)", "        out[index] = g",
      "getitem: repeated indices overwrite instead of adding", ENGINE),
    m("ops-concat-split", OPS, "numpy.cumsum([x.shape[axis] for x in xs[:-1]])",
      "numpy.cumsum([x.shape[axis] for x in xs[1:]])",
      "concatenate: gradient cut at the sizes of the later inputs", ENGINE),
    m("ops-stack-axis", OPS, "axis = axis % (xs[0].ndim + 1)", "axis = axis % xs[0].ndim",
      "stack: a negative axis wraps modulo ndim, not ndim + 1", ENGINE),
    m("ops-split-axis", OPS, "head = (slice(None),) * (axis % x.ndim)", "head = (slice(None),) * axis",
      "split: a negative axis cuts axis 0", ENGINE),
    m("ops-unbroadcast-mean", OPS, "g.sum(axis=axes, keepdims=True).reshape(shape)",
      "g.mean(axis=axes, keepdims=True).reshape(shape)",
      "unbroadcast: mean over broadcast axes instead of sum", ENGINE),

    # =========================================================================================
    # tinydgm/tensor.py: accumulation in backward
    # =========================================================================================
    m("tensor-leaf-accumulate", TENSOR, "leaf.grad = leaf.grad + g", "leaf.grad = g",
      "backward: a leaf's .grad overwritten, not accumulated across calls", ENGINE),
    m("tensor-fan-out", TENSOR, "cotangents[id(a)] = share if prev is None else prev + share", "cotangents[id(a)] = share",
      "backward: a node used twice keeps only its last cotangent", ENGINE),

    # =========================================================================================
    # tinydgm/distributions.py: closed forms
    # =========================================================================================
    m("dist-normal-logprob-scale", DIST, "-0.5 * z * z - self.log_scale - 0.5 * LOG_2PI",
      "-0.5 * z * z - 0.5 * LOG_2PI",
      "Normal.log_prob: the -log sigma term dropped", DISTRIBUTIONS),
    m("dist-normal-logprob-2pi", DIST, "-0.5 * z * z - self.log_scale - 0.5 * LOG_2PI",
      "-0.5 * z * z - self.log_scale - LOG_2PI",
      "Normal.log_prob: -log(2 pi) instead of -log(2 pi)/2", DISTRIBUTIONS),
    m("dist-normal-entropy", DIST, "self.log_scale + 0.5 * (1 + LOG_2PI)", "self.log_scale + 0.5 * LOG_2PI",
      "Normal.entropy: the 1/2 dropped", DISTRIBUTIONS),
    m("dist-from-log-var", DIST, "log_scale = 0.5 * _tensor(log_var)", "log_scale = _tensor(log_var)",
      "Normal.from_log_var: log variance taken as log scale", DISTRIBUTIONS),
    m("dist-kl-normal", DIST, "0.5 * (r * r + d * d) - 0.5", "0.5 * (r + d * d) - 0.5",
      "KL(Normal||Normal): variance ratio s1/s2 not squared", DISTRIBUTIONS),
    m("dist-kl-std-normal", DIST, "p.scale * p.scale - 1) - p.log_scale", "p.scale - 1) - p.log_scale",
      "kl_standard_normal: sigma instead of sigma^2", DISTRIBUTIONS),
    m("dist-bernoulli-probs", DIST, "self.logits = ops.log(p) - ops.log(1 - p)", "self.logits = ops.log(p)",
      "Bernoulli(probs=): logits log p instead of log p/(1-p)", DISTRIBUTIONS),
    m("dist-bernoulli-entropy", DIST, "return ops.softplus(self.logits) - self.logits * self.probs",
      "return ops.softplus(self.logits) + self.logits * self.probs",
      "Bernoulli.entropy: softplus(l) + l sigmoid(l) (sign)", DISTRIBUTIONS),
    m("dist-categorical-normalise", DIST, "self.logits = logits - ops.logsumexp(logits, axis=-1, keepdims=True)",
      "self.logits = logits",
      "Categorical: logits not normalised (log_prob off by log Z)", DISTRIBUTIONS),
    m("dist-categorical-logprob", DIST, "one_hot = value.astype(int)[..., None] == self._support().astype(int)",
      "one_hot = value.astype(int)[..., None] == self._support().astype(int)[::-1]",
      "Categorical.log_prob: picks category K-1-k instead of k", DISTRIBUTIONS),
    m("dist-categorical-entropy", DIST, "return -ops.sum(_weighted(self.probs, self.logits), axis=-1)",
      "return ops.sum(_weighted(self.probs, self.logits), axis=-1)",
      "Categorical.entropy: sum p log p (sign)", DISTRIBUTIONS),
    m("dist-kl-categorical", DIST, "_weighted(p.probs, p.logits - q.logits)", "_weighted(q.probs, p.logits - q.logits)",
      "KL(Categorical||Categorical): weighted by q instead of p", DISTRIBUTIONS),
    m("dist-kl-bernoulli", DIST, "ops.log_sigmoid(-a) - ops.log_sigmoid(-b)", "ops.log_sigmoid(-a) - ops.log_sigmoid(b)",
      "KL(Bernoulli||Bernoulli): log(1 - q) replaced by log q", DISTRIBUTIONS),

    # =========================================================================================
    # tinydgm/estimators/: importance.py, reparam.py, score_function.py (moved from estimators.py)
    # =========================================================================================
    m("est-lme-log-n", IMPORTANCE, "ops.logsumexp(x, axis=axis, keepdims=keepdims) - math.log(x.shape[axis])",
      "ops.logsumexp(x, axis=axis, keepdims=keepdims)",
      "log_mean_exp: - log n dropped (log-sum-exp)", ESTIMATORS),
    m("est-lme-axis", IMPORTANCE, "math.log(x.shape[axis])", "math.log(x.shape[0])",
      "log_mean_exp: n counted along axis 0 whatever the axis", ESTIMATORS),
    m("est-iwae-mean", IMPORTANCE, "return log_mean_exp(log_weights, axis=axis)", "return ops.mean(log_weights, axis=axis)",
      "iwae_bound: mean of log w (the ELBO) instead of log mean w", ESTIMATORS),
    m("est-elbo-kl-sign", REPARAM, "return expected - _event_sum(kl_divergence(q, prior), event_ndim)",
      "return expected + _event_sum(kl_divergence(q, prior), event_ndim)",
      "elbo (analytic): + KL instead of - KL", ESTIMATORS),
    m("est-elbo-entropy", REPARAM, "return expected + _event_sum(q.entropy(), event_ndim)", "return expected",
      "elbo (analytic, no prior): the entropy H(q) dropped", ESTIMATORS),
    m("est-elbo-mc-q", REPARAM, "log_ratio = -_event_sum(q.log_prob(z), event_ndim)",
      "log_ratio = _event_sum(q.log_prob(z), event_ndim)",
      "elbo (mc): + log q instead of - log q", ESTIMATORS),
    m("est-elbo-mc-prior", REPARAM, "log_ratio = log_ratio + _event_sum(prior.log_prob(z), event_ndim)",
      "log_ratio = log_ratio - _event_sum(prior.log_prob(z), event_ndim)",
      "elbo (mc): - log p(z) instead of + log p(z)", ESTIMATORS),
    m("est-loo", SCORE, "baseline = (f.sum(axis=0, keepdims=True) - f) / (s - 1)",
      "baseline = f.mean(axis=0, keepdims=True)",
      "score function 'loo': mean of all samples, own included (biased)", ESTIMATORS),
    m("est-baseline-sign", SCORE, "centred = f if baseline is None else f - unwrap(baseline)",
      "centred = f if baseline is None else f + unwrap(baseline)",
      "score function: f + b instead of f - b", ESTIMATORS),

    # =========================================================================================
    # The estimators added since the list was written (issue 25, item 5): written before the tests
    # meant to catch them.  NVIL (Mnih & Gregor 2014): signals, baselines, centring and scaling
    # =========================================================================================
    m("nvil-signal-q", SCORE, "acc = acc + p - q", "acc = acc + p",
      "local_signals: ℓ_l = log p(h_{l-1}, ..., h_L) without − log q(h_l, ..., h_L | h_{l-1})", ESTIMATORS),
    m("nvil-signal-order", SCORE, "return signals[::-1]", "return signals",
      "local_signals: the layers' signals in reverse (layer 1 gets the top layer's)", ESTIMATORS),
    m("nvil-signal-prior", SCORE, "signals, acc = [], log_p_terms[-1]", "signals, acc = [], 0 * log_p_terms[-1]",
      "local_signals: the prior log p(h_L) left out of every signal", ESTIMATORS),
    m("nvil-residual-sign", SCORE, "r = signal - b.data", "r = signal + b.data",
      "NVIL: ℓ_l + b_l(h_{l-1}) instead of ℓ_l − b_l (the baseline added)", ESTIMATORS),
    m("nvil-centre", SCORE, "((r - c) / s)[..., 0]", "(r / s)[..., 0]",
      "NVIL: the running mean c_l not subtracted from the signal", ESTIMATORS),
    m("nvil-scale-sqrt", SCORE, "return max(1.0, math.sqrt(self.v[l]))", "return max(1.0, self.v[l])",
      "NVIL: the signal divided by max(1, v) instead of max(1, √v)", ESTIMATORS),
    m("nvil-scale-max", SCORE, "return max(1.0, math.sqrt(self.v[l]))", "return math.sqrt(self.v[l])",
      "NVIL: divided by √v even when v < 1 (the max(1, ·) dropped)", ESTIMATORS),
    m("nvil-c-alpha", SCORE, "self.c[l] = self.alpha * self.c[l] + (1 - self.alpha) * float(r.mean())",
      "self.c[l] = (1 - self.alpha) * self.c[l] + self.alpha * float(r.mean())",
      "NVIL: c <- (1 − α) c + α mean (α and 1 − α swapped)", ESTIMATORS),
    m("nvil-v-var", SCORE, "(1 - self.alpha) * float(r.var())", "(1 - self.alpha) * float(r.std())",
      "NVIL: the running variance v folds in the batch's standard deviation", ESTIMATORS),
    m("nvil-first-batch", SCORE, "if update and self.steps == 0:", "if update and self.steps < 0:",
      "NVIL: the first batch is centred by c = 0, v = 1 instead of its own mean and variance", ESTIMATORS),
    m("nvil-loss-c", SCORE, "err = signal - c - b", "err = signal - b",
      "NVIL: the baselines learn ℓ_l, not ℓ_l − c_l (the loss ignores c)", ESTIMATORS),
    m("nvil-loss-scale", SCORE, "(0.5 / (s * err.size))", "(0.5 / err.size)",
      "NVIL: the baselines' loss not divided by max(1, √v_l)", ESTIMATORS),
    m("nvil-baseline-input", SCORE, "[unwrap(x), *hs[:-1]]", "[unwrap(x), *hs[1:]]",
      "NVIL.objective: b_l sees h_l instead of h_{l-1} (a baseline that depends on the sample: biased)", ESTIMATORS),
    m("sf-running-mean-bias", SCORE, "return self.mean / (1 - self.decay ** self.steps) if self.steps else None",
      "return self.mean if self.steps else None",
      "RunningMean: no bias correction 1/(1 − decay^t)", ESTIMATORS + VAE),
    m("sf-baseline-unused", SCORE, "baseline=None if self.baseline is None else self.baseline.value)",
      "baseline=None)",
      "ScoreFunction(baseline=True): the running baseline never reaches the estimate", ESTIMATORS + VAE),
    m("sf-baseline-not-updated", SCORE, "self.baseline.update(objective.bound)", "pass",
      "ScoreFunction(baseline=True): the running mean never folds in a batch (b stays None)", ESTIMATORS + VAE),

    # =========================================================================================
    # VIMCO (Mnih & Rezende 2016): the leave-one-out signal and w̃
    # =========================================================================================
    m("vimco-geometric-k", VIMCO_PY, "- lw) / (k - 1)", "- lw) / k",
      "VIMCO: log ŵ_{-k} = Σ_{j≠k} log w_j / K, not / (K − 1)", ESTIMATORS),
    m("vimco-loo-drop", VIMCO_PY, "others[i, i] = geometric", "others[i, i] = -xp.inf",
      "VIMCO: L̂_{-k} with w_k dropped instead of replaced by the geometric mean of the others", ESTIMATORS),
    m("vimco-signal-sign", VIMCO_PY, "signal = bound - numerics.log_mean_exp(xp, others, axis=1)",
      "signal = numerics.log_mean_exp(xp, others, axis=1) - bound",
      "VIMCO: the signal L̂_{-k} − L̂ (sign)", ESTIMATORS),
    m("vimco-others-axis", VIMCO_PY, "numerics.log_mean_exp(xp, others, axis=1)",
      "numerics.log_mean_exp(xp, others, axis=0)",
      "VIMCO: L̂_{-k} averaged over the wrong axis of the (K, K, B) table", ESTIMATORS),
    m("vimco-no-baseline", VIMCO_PY, "signal = bound - numerics.log_mean_exp(xp, others, axis=1)",
      "signal = bound + 0 * numerics.log_mean_exp(xp, others, axis=1)",
      "VIMCO: no leave-one-out baseline (the signal L̂ itself: unbiased, high variance)", ESTIMATORS),
    m("vimco-w-tilde", VIMCO_PY, "w_tilde = normalized_weights(lw)", "w_tilde = xp.full_like(lw, 1.0 / k)",
      "VIMCO: w̃_k = 1/K (the ELBO's weights) instead of w_k / Σ_j w_j", ESTIMATORS),

    # =========================================================================================
    # The binary Concrete (distributions.py) and the relaxed and straight-through estimators
    # =========================================================================================
    m("concrete-log-tau", DIST, "return math.log(self.temperature) + d - 2 * ops.softplus(d)",
      "return d - 2 * ops.softplus(d)",
      "LogitRelaxedBernoulli.log_prob: the log τ term dropped", ESTIMATORS + DISTRIBUTIONS),
    m("concrete-tau-x", DIST, "d = self.logits - self.temperature * _tensor(value)", "d = self.logits - _tensor(value)",
      "LogitRelaxedBernoulli.log_prob: l − x instead of l − τx", ESTIMATORS + DISTRIBUTIONS),
    m("concrete-softplus-2", DIST, "+ d - 2 * ops.softplus(d)", "+ d - ops.softplus(d)",
      "LogitRelaxedBernoulli.log_prob: − softplus(l − τx) instead of − 2 softplus (not a density)",
      ESTIMATORS + DISTRIBUTIONS),
    m("concrete-sample-tau", DIST, "return (self.logits + noise) / self.temperature",
      "return self.logits + noise / self.temperature",
      "LogitRelaxedBernoulli.rsample: l + L/τ instead of (l + L)/τ", ESTIMATORS + DISTRIBUTIONS),
    m("concrete-noise", DIST, "return xp.log(u) - xp.log1p(-u)", "return xp.log(u) + xp.log1p(-u)",
      "logistic noise log u + log(1 − u) instead of log u − log(1 − u)", ESTIMATORS + DISTRIBUTIONS),
    m("concrete-jacobian", DIST, "return self.base.log_prob(log_y - log_1my) - log_y - log_1my",
      "return self.base.log_prob(log_y - log_1my)",
      "RelaxedBernoulli.log_prob: the Jacobian − log y − log(1 − y) of y = σ(x) dropped", ESTIMATORS + DISTRIBUTIONS),
    m("relaxed-prior-temperature", RELAXED,
      "tau_p = tau if self.prior_temperature is None else self.prior_temperature", "tau_p = tau",
      "Relaxed: prior_temperature ignored (p̃ at q̃'s temperature)", ESTIMATORS),
    m("relaxed-q-temperature", RELAXED, "log_q = total([log_density(a, l, tau) for",
      "log_q = total([log_density(a, l, tau_p) for",
      "Relaxed: q̃'s density at the prior's temperature (the two temperatures mixed up)", ESTIMATORS),
    m("relaxed-sample-temperature", RELAXED, "layers = _relaxed_sample(model, x, rng, tau)",
      "layers = _relaxed_sample(model, x, rng, tau_p)",
      "Relaxed: y drawn at the prior's temperature instead of q's", ESTIMATORS),
    m("relaxed-top-temperature", RELAXED, "log_p = log_density(model.prior_logits(), len(layers) - 1, tau_p)",
      "log_p = log_density(model.prior_logits(), len(layers) - 1, tau)",
      "Relaxed: the prior p̃(y_L) at q's temperature, the generative layers at prior_temperature", ESTIMATORS),
    m("relaxed-generative-temperature", RELAXED, "log_density(model.generative_logits(l, ys[l]), l - 1, tau_p)",
      "log_density(model.generative_logits(l, ys[l]), l - 1, tau)",
      "Relaxed: p̃(y_l | y_{l+1}) at q's temperature, not prior_temperature", ESTIMATORS),
    m("relaxed-generative-layer", RELAXED, "log_density(model.generative_logits(l, ys[l]), l - 1, tau_p)",
      "log_density(model.generative_logits(l, ys[l]), l, tau_p)",
      "Relaxed: p̃(y_l | y_{l+1}) evaluated at y_{l+1} (one layer off)", ESTIMATORS),
    m("relaxed-density-ignored", RELAXED, 'if self.density == "bernoulli":', "if False:",
      'Relaxed: density="bernoulli" ignored (always the Concrete densities)', ESTIMATORS),
    m("relaxed-density-swapped", RELAXED, 'if self.density == "bernoulli":', 'if self.density == "concrete":',
      "Relaxed: the two densities swapped", ESTIMATORS),
    m("soft-bernoulli-flip", RELAXED, "return ops.sum(s * logits - ops.softplus(logits), axis=-1)",
      "return ops.sum((1 - s) * logits - ops.softplus(logits), axis=-1)",
      "the Bernoulli formula at continuous s: log p(1 − s) instead of log p(s)", ESTIMATORS),
    m("st-threshold", RELAXED, "hard = (y.data > 0.5).astype(y.dtype)", "hard = (y.data > 0.25).astype(y.dtype)",
      "straight_through: h = [y > 1/4], not an exact Bernoulli(σ(a)) draw", ESTIMATORS),
    m("st-no-pass-through", RELAXED, "return y + Tensor(hard - y.data)", "return Tensor(hard)",
      "straight_through: no gradient passed through the threshold", ESTIMATORS),
    m("st-temperature", RELAXED, "z = LogitRelaxedBernoulli(self.temperature, a, validate_args=False)",
      "z = LogitRelaxedBernoulli(1.0, a, validate_args=False)",
      "StraightThrough: temperature ignored (τ = 1 always)", ESTIMATORS),
    m("st-log-q-soft", RELAXED, "log_q = log_q + _soft_bernoulli_log_prob(a, s)",
      "log_q = log_q + _soft_bernoulli_log_prob(a, ops.sigmoid(z))",
      "StraightThrough: log q at the soft y instead of the hard h", ESTIMATORS),

    # =========================================================================================
    # Reweighted wake-sleep's weights and options; each estimator's K; the one pass up q
    # =========================================================================================
    m("rws-q-wake-uniform", WS_EST, "surrogate = surrogate + ops.sum(log_q * omega) / n",
      "surrogate = surrogate + ops.sum(log_q) / (n * len(omega))",
      "RWS q-wake: uniform weights 1/k instead of ω", WAKE_SLEEP),
    m("rws-updates-ignored", WS_EST, "self.k, self.updates = k, tuple(updates)", "self.k, self.updates = k, UPDATES",
      "ReweightedWakeSleep: updates ignored (always p, q-wake and sleep)", WAKE_SLEEP),
    m("rws-k-ignored", WS_EST, "self.k, self.updates = k, tuple(updates)", "self.k, self.updates = 5, tuple(updates)",
      "ReweightedWakeSleep: k ignored (always 5)", WAKE_SLEEP),
    m("rws-sleep-dropped", WS_EST, 'if "sleep" in self.updates:', "if False:",
      'ReweightedWakeSleep: the "sleep" update never made', WAKE_SLEEP),
    m("vimco-k-ignored", VIMCO_PY, "discrete.sample_q(model, x, rng, self.k)", "discrete.sample_q(model, x, rng, 5)",
      "VIMCO: k ignored (always 5 samples)", ESTIMATORS),
    m("iwae-k-ignored", REPARAM, "values = model.iwae_bound(x, self.k, rng=rng)",
      "values = model.iwae_bound(x, 5, rng=rng)",
      "IWAE: k ignored (always L_5)", ESTIMATORS + VAE),
    m("discrete-sample-flip", DISCRETE, "return (u < numerics.sigmoid(backend.get_array_module(logits), logits))",
      "return (u > numerics.sigmoid(backend.get_array_module(logits), logits))",
      "bernoulli_sample: h = [u > σ(a)], a draw from Bernoulli(1 − σ(a))", ESTIMATORS + WAKE_SLEEP),
    m("discrete-log-q", DISCRETE, "terms.append(ops.sum(ops.bernoulli_log_prob(logits, s), axis=-1))",
      "terms.append(ops.sum(ops.bernoulli_log_prob(logits, 1 - s), axis=-1))",
      "sample_q: log q of the complement 1 − h, not of the h drawn", ESTIMATORS + WAKE_SLEEP),

    # =========================================================================================
    # The registry: each option reaches the estimator it names
    # =========================================================================================
    m("registry-iwae-k", REGISTRY, "k=5: IWAE(k)", "k=5: IWAE(5)",
      "registry: iwae's k not passed", ESTIMATORS),
    m("registry-vimco-k", REGISTRY, "k=5: VIMCO(k)", "k=5: VIMCO(5)",
      "registry: vimco's k not passed", ESTIMATORS),
    m("registry-rws-k", REGISTRY, "ReweightedWakeSleep(k, updates)", "ReweightedWakeSleep(5, updates)",
      "registry: rws's k not passed", ESTIMATORS + WAKE_SLEEP),
    m("registry-rws-updates", REGISTRY, "ReweightedWakeSleep(k, updates)", "ReweightedWakeSleep(k)",
      "registry: rws's updates not passed", ESTIMATORS + WAKE_SLEEP),
    m("registry-relaxed-temperature", REGISTRY, "Relaxed(temperature)", "Relaxed(0.5)",
      "registry: relaxed's temperature not passed", ESTIMATORS),
    m("registry-relaxed-prior-temperature", REGISTRY, "Relaxed(temperature)",
      "Relaxed(0.5, prior_temperature=temperature)",
      "registry: relaxed's temperature passed as its prior_temperature (mixed up)", ESTIMATORS),
    m("registry-st-temperature", REGISTRY, "StraightThrough(temperature)", "StraightThrough(1.0)",
      "registry: straight-through's temperature not passed", ESTIMATORS),
    m("registry-sf-baseline", REGISTRY, "lambda model, rng: ScoreFunction(baseline=True)",
      "lambda model, rng: ScoreFunction(baseline=False)",
      "registry: score-function-baseline built without its baseline", ESTIMATORS),
    m("registry-options-dropped", REGISTRY, "return build(model, rng, **{k: v for k, v in opts.items() if v is not None})",
      "return build(model, rng)",
      "registry: make() passes no option (every estimator at its defaults)", ESTIMATORS),
    m("registry-nvil-rng", REGISTRY, "NVIL(model.layers[:-1], rng=rng)", "NVIL(model.layers[:-1])",
      "registry: make()'s rng not passed to NVIL (its baselines drawn from a fresh generator)", ESTIMATORS),

    # =========================================================================================
    # The remaining options: NVIL's alpha and hidden, RunningMean's decay, elbo's kl and n_samples
    # =========================================================================================
    m("nvil-alpha-ignored", SCORE, "self.alpha = float(alpha)", "self.alpha = 0.8",
      "NVIL: alpha ignored (always 0.8)", ESTIMATORS),
    m("nvil-hidden-ignored", SCORE, "nn.MLP((int(n), hidden, 1)", "nn.MLP((int(n), 100, 1)",
      "NVIL: the baselines' hidden size ignored (always 100)", ESTIMATORS),
    m("running-mean-decay-ignored", SCORE, "self.decay, self.mean, self.steps = decay, 0.0, 0",
      "self.decay, self.mean, self.steps = 0.9, 0.0, 0",
      "RunningMean: decay ignored (always 0.9)", ESTIMATORS + VAE),
    m("elbo-kl-ignored", REPARAM, 'if kl == "analytic":', "if True:",
      'elbo: kl="mc" ignored (the KL or entropy always in closed form)', ESTIMATORS + VAE),
    m("elbo-n-samples-one", REPARAM, "shape = () if n_samples is None else (n_samples,)",
      "shape = () if n_samples is None else (1,)",
      "elbo: n_samples=S draws one sample, not S", ESTIMATORS + VAE),

    # =========================================================================================
    # tinydgm/models/vae.py
    # =========================================================================================
    m("vae-iwae-log-2pi", VAE_PY, "log_pz = td.sum(self.prior(z.dtype).log_prob(z), axis=-1)\n",
      "log_pz = td.sum(-0.5 * z * z, axis=-1)\n",
      "VAE.iwae_bound: the -0.5*z_dim*LOG_2PI constant of log N(z;0,I) dropped", VAE),
    m("vae-iwae-log-k", VAE_PY, "return estimators.iwae_bound(log_px + log_pz - log_qz, axis=0)",
      "return td.logsumexp(log_px + log_pz - log_qz, axis=0)",
      "VAE.iwae_bound: - log k dropped", VAE),
    m("vae-iwae-q-sign", VAE_PY, "log_px + log_pz - log_qz", "log_px + log_pz + log_qz",
      "VAE.iwae_bound: log w = log p + log q", VAE),
    # VAE.elbo is estimators.elbo(..., StandardNormal prior): its KL is the one registered for (Normal, StandardNormal)
    m("vae-elbo-kl-sign", DIST, "register_kl(Normal, StandardNormal)(lambda p, q: kl_standard_normal(p))",
      "register_kl(Normal, StandardNormal)(lambda p, q: -kl_standard_normal(p))",
      "VAE.elbo: + KL instead of - KL (the KL registered for the VAE's StandardNormal prior negated)",
      VAE + DISTRIBUTIONS),
    m("vae-elbo-no-noise", REPARAM, "z = q.rsample(shape, rng=rng) if q.has_rsample",
      "z = q.loc if q.has_rsample",
      "VAE.elbo (estimators.elbo): z = mu, no sampling (a deterministic autoencoder)", VAE + ESTIMATORS),

    # =========================================================================================
    # tinydgm/models/vae_by_hand.py
    # =========================================================================================
    m("hand-dl-sign", HAND, "dl -= x", "dl += x",
      "by hand: d[-log p(x|z)]/dl = sigmoid(l) + x", VAE),
    m("hand-kl-mu", HAND, "np.multiply(mu, 1.0 / B, out=dmu)", "np.multiply(mu, 0.0, out=dmu)",
      "by hand: dKL/dmu = mu dropped", VAE),
    m("hand-kl-logvar", HAND, "dlogvar *= 0.5 / B", "dlogvar *= 1.0 / B",
      "by hand: dKL/dlogvar = sigma^2 - 1 (the 1/2 dropped)", VAE),
    m("hand-reparam-half", HAND, "tmp *= 0.5 ", "tmp *= 1.0 ",
      "by hand: dz/dlogvar = eps sigma (the 1/2 dropped)", VAE),
    m("hand-tanh", HAND, "np.subtract(1.0, out, out=out)", "np.subtract(1.0, h, out=out)",
      "by hand: d tanh = 1 - h instead of 1 - h^2", VAE),
    m("hand-backprop-weight", HAND, 'np.matmul(d_out, work["params"][f"W{k}"].T, out=d_in)',
      "np.matmul(d_out, W.T, out=d_in)",
      "by hand: dL/dx = dL/dout (dL/dW)^T, the gradient in place of the weight", VAE),
    m("hand-kl-value", HAND, "mu * mu + var - logvar - 1.0", "mu * mu + var - 1.0",
      "by hand: the loss's KL value without - log sigma^2", VAE),
    m("hand-adam-bias", HAND, "leaf.grad = grads[name]", "leaf.grad = -grads[name]",
      "by-hand train_step: the gradient handed to Adam with the wrong sign (ascends the loss)", VAE),

    # =========================================================================================
    # tinydgm/models/wake_sleep.py
    # =========================================================================================
    m("ws-omega-plus", WS_EST, "return log_p, log_q, normalized_weights(log_p.data - log_q.data)",
      "return log_p, log_q, normalized_weights(log_p.data + log_q.data)",
      "RWS: importance weights from log p + log q instead of log p - log q", WAKE_SLEEP),
    m("ws-omega-uniform", WS_EST, "surrogate = surrogate + ops.sum(log_p * omega) / n",
      "surrogate = surrogate + ops.sum(log_p * (1.0 / len(omega))) / n",
      "RWS p-update ignores the weights: uniform 1/k", WAKE_SLEEP),
    m("ws-omega-axis", IMPORTANCE, "omega /= omega.sum(axis, keepdims=True)", "omega /= omega.sum(-1, keepdims=True)",
      "RWS (importance.normalized_weights): weights normalised over the batch, not the k samples",
      WAKE_SLEEP + ESTIMATORS),
    m("ws-delta-sign", WS, "delta = outputs - numerics.sigmoid(backend.get_array_module(logits), logits)",
      "delta = numerics.sigmoid(backend.get_array_module(logits), logits) - outputs",
      "delta rule: predicted probability - sample (sign)", WAKE_SLEEP),
    m("ws-delta-scale", WS, "delta *= scale", "delta *= 1",
      "delta rule: the scale c (1/n or omega/n) ignored", WAKE_SLEEP),
    m("ws-prior-delta", WS, "delta = (s[-1] - numerics.sigmoid(backend.get_array_module(prior), prior)) * c",
      "delta = s[-1] * c",
      "wake by hand: the prior's delta misses - sigmoid(b)", WAKE_SLEEP),
    m("ws-sleep-phase", WS_EST, "return ops.mean(total(model.log_q_terms(hs, x)))",
      "return ops.mean(total(model.log_joint_terms(x, hs)))",
      "sleep phase ascends log p(x~, h~) instead of log q(h~|x~)", WAKE_SLEEP),
    m("ws-log-bernoulli-sign", WS, "return numerics.bernoulli_log_prob(_xp(logits), logits, s).sum(-1)",
      "return numerics.bernoulli_log_prob(_xp(logits), logits, 1 - s).sum(-1)",
      "log_bernoulli_sum: log p(1 - s) instead of log p(s)", WAKE_SLEEP),
    m("ws-log-bernoulli-1p", OPS, "return xp.add(out, xp.maximum(x, 0), out=out)",
      "return xp.add(out * 0, xp.maximum(x, 0), out=out)",
      "numerics.softplus: max(x, 0) alone, the log1p(e^-|x|) term lost", NUMERICS + ENGINE + WAKE_SLEEP),
    m("ws-sigmoid", OPS, "s = xp.asarray(xp.multiply(x, 0.5))", "s = xp.asarray(xp.multiply(x, 1.0))",
      "numerics.sigmoid(a) = (1 + tanh(a))/2, the a/2 lost", NUMERICS + ENGINE + WAKE_SLEEP),
    m("ws-iwae-log-k", IMPORTANCE, "return numerics.log_mean_exp(backend.get_array_module(log_w), log_w, axis=axis)",
      "return numerics.log_mean_exp(backend.get_array_module(log_w), log_w, axis=axis) + math.log(log_w.shape[axis])",
      "HelmholtzMachine.iwae_bound (importance.bound_value, also VIMCO's and RWS's L_k): - log k dropped",
      WAKE_SLEEP + ESTIMATORS),
    m("ws-log-weights-q", WS, "log_w -= log_bernoulli_sum(", "log_w += log_bernoulli_sum(",
      "log_weights (arrays): + log q instead of - log q", WAKE_SLEEP),
    m("ws-log-joint-prior", WS, "return terms + [td.sum(td.bernoulli_log_prob(self.prior, s[-1]), axis=-1)]",
      "return terms + [td.sum(td.bernoulli_log_prob(self.prior, s[-1]), axis=-1) * 0]",
      "log_joint: the prior p(h_L) dropped", WAKE_SLEEP),
    m("ws-rws-bound", WS_EST, "return surrogate, bound_value(log_p.data - log_q.data), sleep",
      "return surrogate, (log_p.data - log_q.data).mean(0), sleep",
      "reweighted_step's reported L_k: the ELBO (mean log w) instead", WAKE_SLEEP),

    # =========================================================================================
    # tinydgm/models/hmm.py
    # =========================================================================================
    m("hmm-trans-axis0", HMM_PY, "trans = counts.trans / counts.trans.sum(axis=1, keepdims=True)",
      "trans = counts.trans / counts.trans.sum(axis=0, keepdims=True)",
      "m_step: transition counts normalised over axis 0 (columns)", HMM),
    m("hmm-keep-start", HMM_PY, "start = counts.start / counts.start.sum()", "start = hmm.start",
      "m_step: initial distribution not re-estimated (keeps hmm.start)", HMM),
    m("hmm-forward-trans", HMM_PY, "a = (alpha[t - 1] @ trans) * b[t]", "a = (alpha[t - 1] @ trans.T) * b[t]",
      "forward: alpha_{t-1} A^T", HMM),
    m("hmm-backward-trans", HMM_PY, "(nxt[t + 1] * beta[t + 1]) @ trans.T", "(nxt[t + 1] * beta[t + 1]) @ trans",
      "backward: beta_t = A^T (b beta)_{t+1}", HMM),
    m("hmm-forward-start", HMM_PY, "a = start * b[0]", "a = b[0] / len(start)",
      "forward: starts from a uniform pi", HMM),
    m("hmm-xi", HMM_PY, "xi = trans * (alpha", "xi = (alpha",
      "xi: the factor A_ij dropped", HMM),
    m("hmm-loglik-shift", HMM_PY, "np.log(c)[..., 0].sum(axis=0) + (shift[bk.words] * bk.mask).sum(axis=0)",
      "np.log(c)[..., 0].sum(axis=0)",
      "log p(x): the emission scaling s(x_t) not added back", HMM),
    m("hmm-direct-start", HMM_PY, "g_start = counts.start - counts.start.sum() * hmm.start", "g_start = counts.start",
      "direct gradient for log pi: expected term - N pi dropped", HMM),
    m("hmm-direct-trans", HMM_PY,
      "g_trans = counts.trans - counts.trans.sum(axis=1, keepdims=True) * hmm.trans",
      "g_trans = counts.trans - counts.trans.sum(axis=0, keepdims=True) * hmm.trans",
      "direct gradient for log A: e(i) summed over the wrong axis", HMM),
    m("hmm-direct-kappa", HMM_PY, "- 2 * kappa * theta", "- kappa * theta",
      "direct gradient: penalty gradient kappa theta instead of 2 kappa theta", HMM),
    m("hmm-engine-axis", HMM_PY, "td.logsumexp(td.reshape(alpha, (K, 1)) + log_trans, axis=0)",
      "td.logsumexp(td.reshape(alpha, (K, 1)) + log_trans, axis=1)",
      "engine forward: log-sum over the next state instead of the previous", HMM),
    m("hmm-multinomial-ravel", HMM_PY, "w = np.log(multinomial_m_step(counts.emit)).ravel()",
      "w = np.log(multinomial_m_step(counts.emit)).T.ravel()",
      "multinomial m_step: weights flattened z-major instead of x-major", HMM),

    # =========================================================================================
    # tinydgm/models/loglinear.py
    # =========================================================================================
    m("ll-keep-prior", LL, "return Mixture(np.log(e_z / e_z.sum()), w, model.F)",
      "return Mixture(model.log_prior, w, model.F)",
      "mixture m_step: p(z) not re-estimated (keeps model.log_prior)", LOGLINEAR),
    m("ll-grad-sign", LL, "counts - np.exp(log_p) * counts.sum(axis=0)", "np.exp(log_p) * counts.sum(axis=0) - counts",
      "feature_gradient: expected - observed (sign)", LOGLINEAR),
    m("ll-grad-expected", LL, "counts - np.exp(log_p) * counts.sum(axis=0)", "counts - np.exp(log_p)",
      "feature_gradient: expected term not weighted by e(z)", LOGLINEAR),
    m("ll-log-conditional-axis", LL, "return s - logsumexp(s, axis=0, keepdims=True)",
      "return s - logsumexp(s, axis=1, keepdims=True)",
      "log_conditional: normalised over z instead of x", LOGLINEAR),
    m("ll-e-step-axis", LL, "q = np.exp(lj - logsumexp(lj, axis=1, keepdims=True))",
      "q = np.exp(lj - logsumexp(lj, axis=0, keepdims=True))",
      "e_step: posteriors normalised over the examples instead of z", LOGLINEAR),
    m("ll-e-step-counts", LL, "np.add.at(counts, x, q)", "counts[x] += q",
      "e_step: repeated words overwrite their counts instead of adding", LOGLINEAR),
    m("ll-m-step-kappa", LL, "grad = feature_gradient(counts, log_p, F) - 2 * kappa * w",
      "grad = feature_gradient(counts, log_p, F) - kappa * w",
      "M-step gradient: penalty kappa w instead of 2 kappa w", LOGLINEAR),
    m("ll-expected-features", LL, "F[z::n_states].T @ p[:, z]", "F[z::n_states].T @ p[:, 0]",
      "expected_features: every z uses p(.|z=0)", LOGLINEAR),
    m("ll-multinomial-axis", LL, "return counts / counts.sum(axis=0, keepdims=True)",
      "return counts / counts.sum(axis=1, keepdims=True)",
      "multinomial_m_step: counts normalised over z instead of x", LOGLINEAR),

    # =========================================================================================
    # tinydgm/optim.py
    # =========================================================================================
    m("optim-adam-c1", OPTIM_PY, "c1, c2 = 1 - b1 ** t, math.sqrt(1 - b2 ** t)", "c1, c2 = 1, math.sqrt(1 - b2 ** t)",
      "Adam: no first-moment bias correction", OPTIM),
    m("optim-adam-c2", OPTIM_PY, "c1, c2 = 1 - b1 ** t, math.sqrt(1 - b2 ** t)", "c1, c2 = 1 - b1 ** t, 1.0",
      "Adam: no second-moment bias correction", OPTIM),
    m("optim-adam-m-rate", OPTIM_PY, "buf *= 1 - b1", "buf *= b1",
      "Adam: m moves by b1 (g - m) instead of (1 - b1)(g - m)", OPTIM),
    m("optim-sgd-sign", OPTIM_PY, "p.data -= self.lr * p.grad", "p.data += self.lr * p.grad",
      "SGD ascends (sign)", OPTIM),
    m("optim-sgd-momentum", OPTIM_PY, "v *= self.momentum", "v *= 1 - self.momentum",
      "SGD momentum: velocity decays by 1 - momentum", OPTIM),
    m("optim-clip-norm", OPTIM_PY, "p.grad = p.grad * (max_norm / norm)", "p.grad = p.grad * (norm / max_norm)",
      "clip_grad_norm scales by norm / max_norm", OPTIM),

    # =========================================================================================
    # tinydgm/metrics.py
    # =========================================================================================
    m("metrics-iw-log-c", METRICS_PY, "return numerics.log_mean_exp(np, parts, axis=0)",
      "return numerics.log_mean_exp(np, parts, axis=0) + np.log(len(parts))",
      "iw_nll: chunks combined without - log C", METRICS),
    m("metrics-iw-mean-chunks", METRICS_PY, "return numerics.log_mean_exp(np, parts, axis=0)", "return parts.mean(0)",
      "iw_nll: mean of the chunk bounds (L_chunk, not L_k)", METRICS),
    m("metrics-active-axis", METRICS_PY, "mu.var(axis=0) > threshold", "mu.var(axis=1) > threshold",
      "active_units: variance over units instead of over x", METRICS),
    m("metrics-active-std", METRICS_PY, "mu.var(axis=0) > threshold", "mu.std(axis=0) > threshold",
      "active_units: standard deviation compared with the threshold", METRICS),
    m("metrics-log-mean-exp", OPS, "xp.exp(a - m).mean(axis=axis, keepdims=True)", "xp.exp(a - m).sum(axis=axis, keepdims=True)",
      "numerics.log_mean_exp: log-sum-exp (one home for iw_nll, L_k of the machine, RWS's bound)",
      NUMERICS + METRICS + WAKE_SLEEP),

    # =========================================================================================
    # tinydgm/tagging_metrics.py
    # =========================================================================================
    m("tag-m1-axis", TAG, "n.max(axis=1).sum() / n.sum()", "n.max(axis=0).sum() / n.sum()",
      "many-to-one: each tag mapped to its best state (the wrong direction)", TAGGING),
    m("tag-1to1-minimise", TAG, "linear_sum_assignment(n, maximize=True)", "linear_sum_assignment(n)",
      "one-to-one: the worst assignment (minimised)", TAGGING),
    m("tag-vm-homogeneity", TAG, "1 - (h_joint - h_s) / h_g", "1 - (h_joint - h_g) / h_g",
      "V-measure: homogeneity uses H(S|G) instead of H(G|S)", TAGGING),
    m("tag-vm-harmonic", TAG, "2 * homogeneity * completeness / (homogeneity + completeness)",
      "(homogeneity + completeness) / 2",
      "V-measure: arithmetic instead of harmonic mean", TAGGING),
]


# =============================================================================================
# Checking, copying, running
# =============================================================================================

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COPIED = ("tinydgm", "tests", "setup.cfg", "pyproject.toml")
LINKED = ("data",)


def staleness(mut, root=ROOT):
    """None if the mutation applies (its original text occurs exactly once), else why not."""
    path = os.path.join(root, mut.path)
    if not os.path.exists(path):
        return f"{mut.path} does not exist"
    if mut.old == mut.new:
        return "replacement equals the original"
    with open(path, encoding="utf-8") as f:
        n = f.read().count(mut.old)
    return None if n == 1 else f"original text found {n} times in {mut.path}"


def test_paths(mut, override, root=ROOT):
    """The tests to run for `mut` that exist (node ids kept whole), and those missing."""
    tests = override or mut.tests
    have = [t for t in tests if os.path.exists(os.path.join(root, t.split("::")[0]))]
    return have, [t for t in tests if t not in have]


def module_name(path):
    return path[:-3].replace("/", ".")


def environment(copy):
    env = dict(os.environ, PYTHONPATH=copy, PYTHONDONTWRITEBYTECODE="1")
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = "1"
    env.pop("TINYDGM_BACKEND", None)
    return env


def make_copy(parent, i):
    """A private copy of the repository's code and tests, with data/ linked."""
    copy = os.path.join(parent, f"worker{i}")
    os.makedirs(copy)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    for name in COPIED:
        src = os.path.join(ROOT, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(copy, name), ignore=ignore)
        elif os.path.exists(src):
            shutil.copy2(src, os.path.join(copy, name))
    for name in LINKED:
        if os.path.exists(os.path.join(ROOT, name)):
            os.symlink(os.path.join(ROOT, name), os.path.join(copy, name))
    return copy


_LIVE, _LIVE_LOCK, _STOPPING = set(), threading.Lock(), threading.Event()


def run(cmd, copy, timeout):
    """(returncode or None on timeout, output, seconds) of cmd run in `copy`."""
    t0 = time.perf_counter()
    with _LIVE_LOCK:
        if _STOPPING.is_set():
            raise KeyboardInterrupt("mutate.py: stopping")
        p = subprocess.Popen(cmd, cwd=copy, env=environment(copy), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
        _LIVE.add(p)
    try:
        out, _ = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        _kill(p)
        out, _ = p.communicate()
        rc = None
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(p)
    return rc, out, time.perf_counter() - t0


def _kill(p):
    """Kill the process group of one run: pytest and anything it started, nothing else."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_children():
    """On interruption: no new runs, and the running ones killed (they live in their own sessions)."""
    with _LIVE_LOCK:
        _STOPPING.set()
        for p in list(_LIVE):
            _kill(p)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"mutate.py: signal {signum}")


def pytest_cmd(tests):
    return [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-rfE", *tests]


def first_failure(output):
    """The node id of the first FAILED/ERROR line of pytest's short summary."""
    for line in output.splitlines():
        hit = re.match(r"(FAILED|ERROR) (.+?)(?: - .*)?$", line)      # ids may hold spaces: "[(1, -1)]"
        if hit:
            return hit.group(2)
    return ""


def check_import(copy):
    """The copy's `tinydgm` must be the one imported (not the working tree's)."""
    rc, out, _ = run([sys.executable, "-c", "import tinydgm; print(tinydgm.__file__)"], copy, 120)
    where = out.strip().splitlines()[-1] if out.strip() else ""
    if rc != 0 or not os.path.realpath(where).startswith(os.path.realpath(copy) + os.sep):
        sys.exit(f"mutate.py: `import tinydgm` in the copy gives {where or out!r}, not {copy}/tinydgm")
    return where


Result = collections.namedtuple("Result", "mutation result caught_by seconds note")


def try_mutation(mut, copy, tests, timeout):
    """Apply `mut` in `copy`, run its tests, restore the file; a Result."""
    path = os.path.join(copy, mut.path)
    with open(path, encoding="utf-8") as f:
        original = f.read()
    if original.count(mut.old) != 1:
        return Result(mut, "stale", "", 0.0, "original text not found once in the copy")
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(original.replace(mut.old, mut.new))
        rc, out, _ = run([sys.executable, "-c", f"import {module_name(mut.path)}"], copy, 120)
        if rc != 0:
            return Result(mut, "error", "", 0.0, "mutated module does not import: " + out.strip().splitlines()[-1][:120])
        rc, out, seconds = run(pytest_cmd(tests), copy, timeout)
    finally:
        with open(path, "w", encoding="utf-8") as f:
            f.write(original)
    if rc is None:
        return Result(mut, "caught (timeout)", first_failure(out), seconds, f"timed out after {timeout} s")
    if rc == 0:
        return Result(mut, "SURVIVED", "", seconds, "")
    if rc in (1, 2):                              # a failed test, or a collection error the mutation caused
        return Result(mut, "caught", first_failure(out) or f"pytest exit {rc}", seconds, "")
    tail = out.strip().splitlines()[-1][:120] if out.strip() else ""
    return Result(mut, "error", "", seconds, f"pytest exit {rc}: {tail}")


def baseline(copies, tests, timeout):
    """Run the selected tests unmutated, split over the copies; None if they pass, else the output."""
    chunks = [tests[i::len(copies)] for i in range(len(copies))]
    outs = [None] * len(copies)

    def work(i):
        if chunks[i]:
            outs[i] = run(pytest_cmd(chunks[i]), copies[i], timeout * max(1, len(chunks[i])))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(copies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bad = [o for o in outs if o is not None and o[0] != 0]
    return None if not bad else "\n".join(("(timed out)\n" if o[0] is None else "") + o[1] for o in bad)


# =============================================================================================
# Report
# =============================================================================================

def cell(s):
    return str(s).replace("|", "\\|").replace("\n", " ")


def report(results, missing, header):
    lines = [header, "", "| id | file | description | result | caught by | s |",
             "|---|---|---|---|---|---|"]
    for r in results:
        by = r.caught_by if r.caught_by else r.note
        if r.caught_by and r.note:
            by = f"{r.caught_by} ({r.note})"
        lines.append(f"| {cell(r.mutation.id)} | {cell(r.mutation.path)} | {cell(r.mutation.description)} | "
                     f"{cell(r.result)} | {cell(by)} | {r.seconds:.1f} |")
    counts = collections.Counter(r.result.split(" ")[0] for r in results)
    lines += ["", "Summary: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + f", {len(results)} in all."]
    if missing:
        lines += ["", "Test files named in the list but not found (skipped): " + ", ".join(sorted(missing)) + "."]
    return "\n".join(lines) + "\n"


def print_list(selected, override):
    bad = 0
    for mut in selected:
        why = staleness(mut)
        bad += why is not None
        tests, missing = test_paths(mut, override)
        print(f"{mut.id:28} {mut.path:32} {'STALE: ' + why if why else 'ok'}")
        print(f"    {mut.description}")
        print(f"    - {mut.old!r}\n    + {mut.new!r}")
        print(f"    tests: {' '.join(tests)}" + (f"  (missing: {' '.join(missing)})" if missing else ""))
    print(f"\n{len(selected)} mutations, {bad} stale")
    return 1 if bad else 0


def select(args):
    chosen = MUTATIONS
    if args.only:
        ids = [s for part in args.only for s in part.split(",") if s]
        unknown = set(ids) - {mut.id for mut in MUTATIONS}
        if unknown:
            raise UserError(f"--only: no mutation with id {', '.join(sorted(unknown))}")
        chosen = [mut for mut in chosen if mut.id in ids]
    if args.k:
        chosen = [mut for mut in chosen if args.k in mut.id or args.k in mut.path]
    return chosen


def check_report(path):
    """The report can be written: its folder exists and takes a file (checked before the mutations run)."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UserError(f"--out {path}: a folder; expected the path of the markdown report")
    if not os.path.isdir(folder):
        raise UserError(f"--out {path}: the folder {folder} does not exist; create it or choose another path")
    files.check_writable(folder)


def main(argv=None):
    p = cli.Parser(prog="mutate.py", description=__doc__.split("\n\n")[0],
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=cli.integer(1), default=2, help="mutations run at once (default 2, one per core)")
    p.add_argument("--timeout", type=cli.number(0), default=300, help="seconds per mutation (default 300)")
    p.add_argument("--out", default="mutation-report.md", help="markdown report (default mutation-report.md)")
    p.add_argument("--only", action="append", metavar="ID[,ID]", help="run only these mutations")
    p.add_argument("-k", metavar="SUBSTRING", help="run only mutations whose id or path contains SUBSTRING")
    p.add_argument("--tests", nargs="+", metavar="TEST", help="run these tests for every mutation instead of its own")
    p.add_argument("--list", action="store_true", help="print the mutations and whether each applies")
    args = p.parse_args(argv)
    ids = [mut.id for mut in MUTATIONS]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        sys.exit(f"mutate.py: duplicate ids {sorted(dup)}")
    selected = select(args)
    if args.list:
        return print_list(selected, args.tests)
    if not selected:
        raise UserError("no mutation selected (see --list)")
    check_report(args.out)

    results, todo, missing = {}, [], set()
    for mut in selected:
        why = staleness(mut)
        tests, gone = test_paths(mut, args.tests)
        missing.update(gone)
        if why:
            results[mut.id] = Result(mut, "stale", "", 0.0, why)
        elif not tests:
            results[mut.id] = Result(mut, "error", "", 0.0, "none of its test files exist")
        else:
            todo.append((mut, tests))
    for name in sorted(missing):
        print(f"mutate.py: {name} is named in the list but does not exist; skipped", file=sys.stderr)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    parent = tempfile.mkdtemp(prefix="tinydgm-mutate-")
    try:
        copies = [make_copy(parent, i) for i in range(max(1, min(args.jobs, len(todo) or 1)))]
        for copy in copies:
            where = check_import(copy)
        print(f"mutate.py: {len(copies)} copies under {parent}; tinydgm imported from {where}", file=sys.stderr)
        all_tests = sorted({t for _, tests in todo for t in tests})
        if all_tests:
            print(f"mutate.py: baseline, {len(all_tests)} test paths unmutated ...", file=sys.stderr)
            failed = baseline(copies, all_tests, args.timeout)
            if failed:
                print(failed[-6000:], file=sys.stderr)
                print("mutate.py: the unmutated tests fail in the copy; fix that first (no mutation run)", file=sys.stderr)
                return 2

        free = queue.Queue()
        for copy in copies:
            free.put(copy)
        lock, done = threading.Lock(), [0]

        def work(item):
            mut, tests = item
            copy = free.get()
            try:
                r = try_mutation(mut, copy, tests, args.timeout)
            finally:
                free.put(copy)
            with lock:
                done[0] += 1
                results[mut.id] = r
                print(f"[{done[0]}/{len(todo)}] {mut.id}: {r.result} {r.caught_by or r.note} ({r.seconds:.0f} s)",
                      file=sys.stderr, flush=True)

        pool = ThreadPoolExecutor(len(copies))
        try:
            list(pool.map(work, todo))
        finally:
            stop_children()
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        stop_children()                    # SIGTERM or ^C: no pytest left running in a removed copy
        shutil.rmtree(parent, ignore_errors=True)

    ordered = [results[mut.id] for mut in selected]
    header = (f"# Mutation check, {time.strftime('%Y-%m-%d %H:%M')}\n\n"
              f"`python scripts/mutate.py {' '.join(argv if argv is not None else sys.argv[1:])}`")
    text = report(ordered, missing, header)
    print(text)
    files.write_text(args.out, text)
    print(f"mutate.py: report written to {args.out}", file=sys.stderr)
    return 1 if any(r.result in ("SURVIVED", "stale", "error") for r in ordered) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as e:
        print(f"mutate.py: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as e:
        print(f"{e or 'mutate.py: interrupted'}; copies removed, no test left running", file=sys.stderr)
        sys.exit(130)
