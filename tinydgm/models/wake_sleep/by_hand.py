"""The wake-sleep gradients by hand: the delta rule of Hinton, Dayan, Frey & Neal 1995.

For one sigmoid layer p(s | t) = Π_i Bernoulli(s_i; σ(t W + b)_i), on arrays, with no engine:

    ∂/∂W log p(s | t) = tᵀ (s − σ(t W + b)),    ∂/∂b log p(s | t) = s − σ(t W + b)

(sample − predicted probability) × input, local to each layer.  The wake phase applies it to the
generative layers on h ~ q(h|x), the sleep phase to the recognition layers on dreams, and
reweighted wake-sleep weights each of k samples by ω_k.  `tests/models/test_wake_sleep.py`
checks that these equal the engine's gradients; the by-hand steps use the same optimisers.
"""
from tinydgm import backend, numerics
from tinydgm.estimators.discrete import bernoulli_sample
from tinydgm.estimators.importance import bound_value, normalized_weights
from tinydgm.models.wake_sleep.model import UPDATES, affine, log_bernoulli_sum


# =============================================================================================
# The delta rule, by hand (Hinton et al. 1995: Δw_ji = ε s_i (s_j − p_j), local to each layer)
# =============================================================================================

def delta_rule(inputs, outputs, weight, bias, scale):
    """(ΔW, Δb, value) of Σ_n c_n log p(outputs_n | inputs_n), one sigmoid layer p = σ(inputs W + b), c = `scale`."""
    logits = affine(inputs, weight, bias)
    value = float((log_bernoulli_sum(logits, outputs) * _rows(scale)).sum())
    return (*delta_rule_at(inputs, outputs, logits, scale), value)


def delta_rule_at(inputs, outputs, logits, scale):
    """(ΔW, Δb) of the delta rule, given the layer's logits = inputs W + b (computed once by the caller)."""
    # ΔW = inputsᵀ c (outputs − p),  Δb = Σ_n c (outputs − p);  c: a number or per-row weights
    delta = outputs - numerics.sigmoid(backend.get_array_module(logits), logits)                             # sample − predicted probability
    delta *= scale
    if delta.ndim > inputs.ndim:                                 # inputs shared by k samples: sum them first
        delta = delta.sum(axis=tuple(range(delta.ndim - inputs.ndim)))
    inputs, delta = inputs.reshape(-1, inputs.shape[-1]), delta.reshape(-1, delta.shape[-1])
    return inputs.T @ delta, delta.sum(0)


def _scale(x, omega):
    n = x.shape[0]
    return 1.0 / n if omega is None else omega[..., None] / n


def _rows(scale):
    """A per-row scale (k, B, 1) as (k, B); a number as it is."""
    return scale[..., 0] if getattr(scale, "ndim", 0) else scale


def wake_gradients_by_hand(params, x, hs, omega=None):
    """(∇θ by name, value) of mean_n log p(x_n, h_n), or of mean_n Σ_k ω_k log p(x_n, h_k) with RWS weights ω."""
    s, c, g = [x, *hs], _scale(x, omega), {}
    prior = params["prior"]
    value = float((log_bernoulli_sum(prior, s[-1]) * _rows(c)).sum())
    delta = (s[-1] - numerics.sigmoid(backend.get_array_module(prior), prior)) * c                          # the prior: a layer with no input
    g["prior"] = delta.reshape(-1, delta.shape[-1]).sum(0)
    for l in range(len(hs)):
        w, b = f"generative.{l}.weight", f"generative.{l}.bias"
        g[w], g[b], v = delta_rule(s[l + 1], s[l], params[w], params[b], c)
        value += v
    return g, value


def recognition_gradients_by_hand(params, x, hs, omega=None):
    """(∇λ by name, value) of mean_n log q(h_n|x_n), weighted by ω as above: sleep on dreams, q-wake on data."""
    s, c, g, value = [x, *hs], _scale(x, omega), {}, 0.0
    for l in range(len(hs)):
        w, b = f"recognition.{l}.weight", f"recognition.{l}.bias"
        g[w], g[b], v = delta_rule(s[l], s[l + 1], params[w], params[b], c)
        value += v
    return g, value


def sleep_gradients_by_hand(params, x_dream, hs_dream):
    """∇λ of mean log q(h̃|x̃) on dreams, and its value."""
    return recognition_gradients_by_hand(params, x_dream, hs_dream)


def wake_sleep_step_by_hand(model, x, opt_p, opt_q, rng):
    """`wake_sleep_step` with the delta rule in place of the engine (same draws from rng, same optimisers,
    the same objective values returned for the training log)."""
    params = model.arrays()
    g, wake = wake_gradients_by_hand(params, x, model.sample_q(x, rng))
    _descend_along(model, g, opt_p)
    x_dream, hs_dream = model.dream(len(x), rng)
    g, sleep = sleep_gradients_by_hand(params, x_dream, hs_dream)
    _descend_along(model, g, opt_q)
    return {"wake": wake, "sleep": sleep}


def reweighted_step_by_hand(model, x, opt_p, opt_q, rng, k=5, updates=UPDATES):
    """`reweighted_step` with the delta rule in place of the engine (Bornschein & Bengio 2015): the same draws
    (k samples per image from q, then the dream), the same optimisers and the same values returned.  Each layer's
    logits are computed once, for the samples, the importance weights and the delta rule.

        ω_k = w_k / Σ_j w_j,  log w_k = log p(x, h_k) − log q(h_k|x)
        p-update  Σ_k ω_k ∇θ log p(x, h_k),   q-wake  Σ_k ω_k ∇λ log q(h_k|x),   sleep  ∇λ log q(h̃|x̃)
    """
    bad = set(updates) - set(UPDATES)
    if bad or not updates:
        raise ValueError(f"reweighted_step_by_hand: updates must be among {UPDATES}, got {tuple(updates)}")
    a, xp, n_layers = model.arrays(), backend.get_array_module(x), len(model.recognition)
    s, logits_q = [x], []                                             # up through q, as sample_q draws
    for l in range(n_layers):
        logits_q.append(affine(s[l], a[f"recognition.{l}.weight"], a[f"recognition.{l}.bias"]))
        s.append(bernoulli_sample(logits_q[l], rng, (k,) + logits_q[l].shape if l == 0 else None))
    logits_p = [affine(s[l + 1], a[f"generative.{l}.weight"], a[f"generative.{l}.bias"]) for l in range(n_layers)]
    log_w = log_bernoulli_sum(a["prior"], s[-1])
    for l in range(n_layers):
        log_w += log_bernoulli_sum(logits_p[l], s[l]) - log_bernoulli_sum(logits_q[l], s[l + 1])
    omega = normalized_weights(log_w)                                   # ω_k
    c, g_p, g_q, out = omega[..., None] / len(x), {}, {}, {}
    if "p" in updates:
        delta = (s[-1] - numerics.sigmoid(xp, a["prior"])) * c        # the prior: a layer with no input
        g_p["prior"] = delta.reshape(-1, delta.shape[-1]).sum(0)
        for l in range(n_layers):
            g_p[f"generative.{l}.weight"], g_p[f"generative.{l}.bias"] = delta_rule_at(s[l + 1], s[l], logits_p[l], c)
    if "q-wake" in updates:
        for l in range(n_layers):
            g_q[f"recognition.{l}.weight"], g_q[f"recognition.{l}.bias"] = delta_rule_at(s[l], s[l + 1], logits_q[l], c)
    if "sleep" in updates:
        x_dream, hs_dream = model.dream(len(x), rng)
        g_s, out["sleep"] = sleep_gradients_by_hand(a, x_dream, hs_dream)
        g_q = {n: g + g_q[n] for n, g in g_s.items()} if g_q else g_s
    _descend_along(model, g_p, opt_p)
    _descend_along(model, g_q, opt_q)
    out["bound"] = float(bound_value(log_w).mean())                     # L_k of this batch
    return out


def _descend_along(model, ascent, opt):
    """Step `opt` uphill along the delta rule's gradients (an optimiser minimises: its .grad is minus them);
    parameters without one are left alone (as the engine leaves a gradient of None)."""
    opt.zero_grad()
    params = dict(model.named_parameters())
    for n, g in ascent.items():
        params[n].grad = -g
    opt.step()
