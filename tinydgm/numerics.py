"""The stable array formulas, written once: the engine's ops, the by-hand derivations and the models call these.

Each takes the array module `xp` first (numpy or cupy, found once by the caller) and plain arrays,
returns a new array and never syncs the GPU with the host.
"""
import math

LOG_2PI = math.log(2 * math.pi)


def sigmoid(xp, x):
    """σ(x) = (1 + tanh(x/2)) / 2: no overflow for any x, one transcendental pass (absolute error < eps)."""
    s = xp.asarray(xp.multiply(x, 0.5))  # an array even for 0-d x (NumPy returns a scalar there)
    xp.tanh(s, out=s)
    s *= 0.5
    s += 0.5
    return s


def _log1p_exp_neg_abs(xp, x):
    """log(1 + e^-|x|), the correction term shared by softplus and log σ."""
    out = xp.asarray(xp.abs(x))         # an array even for 0-d x (NumPy returns a scalar there)
    xp.negative(out, out=out)
    xp.exp(out, out=out)
    xp.log1p(out, out=out)
    return out


def softplus(xp, x):
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|): finite and accurate for any x."""
    out = _log1p_exp_neg_abs(xp, x)
    return xp.add(out, xp.maximum(x, 0), out=out)


def log_sigmoid(xp, x):
    """log σ(x) = min(x, 0) − log1p(e^-|x|): finite and accurate for any x."""
    out = _log1p_exp_neg_abs(xp, x)
    return xp.subtract(xp.minimum(x, 0), out, out=out)


def bernoulli_log_prob(xp, logits, x):
    """log Bernoulli(x; σ(l)) = x l − softplus(l), from logits (never log of a probability)."""
    return x * logits - softplus(xp, logits)          # x and logits broadcast


def log_mean_exp(xp, a, axis=0):
    """log (1/n) Σ_i exp(a_i) along `axis` = m + log mean exp(a − m), m = max(a): finite for finite a."""
    m = a.max(axis=axis, keepdims=True)
    out = m + xp.log(xp.exp(a - m).mean(axis=axis, keepdims=True))
    return out.squeeze(axis)
