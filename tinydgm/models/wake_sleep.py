"""Wake-sleep for Helmholtz machines (Hinton, Dayan, Frey & Neal 1995) and reweighted wake-sleep
(Bornschein & Bengio 2015), on sigmoid belief nets with layers of binary stochastic units.

    p(x, h|θ) = p(h_L) Π_l p(h_l | h_{l+1}) p(x | h_1)     generative net, top-down, learned prior on h_L
    q(h|x, λ) = q(h_1 | x) Π_l q(h_{l+1} | h_l)            recognition net, bottom-up
    each layer:  p(s | t) = Π_i Bernoulli(s_i; σ(t W + b)_i)

    wake:    h ~ q(h|x) held fixed;            ascend log p(x, h|θ) in θ only
    sleep:   (h̃, x̃) ~ p(x, h|θ) (a dream);     ascend log q(h̃|x̃, λ) in λ only
    RWS:     h_1..h_K ~ q(h|x),  ω_k = w_k / Σ_j w_j,  w_k = p(x, h_k) / q(h_k|x)
             p-update Σ_k ω_k ∇θ log p(x, h_k);  q-wake update Σ_k ω_k ∇λ log q(h_k|x);  sleep update as above

Binary states are float32 0/1 arrays drawn as [u < σ(a)] from a passed generator; they are never
part of a graph.  Each layer's gradient is local, the delta rule (sample − predicted probability)
× input, written by hand below (`delta_rule`) beside the engine's, and tested against it.
`tinydgm train wake-sleep`, `tinydgm eval RUN`, `tinydgm sample RUN` are at the bottom.
"""
import json
import math
import os
import time

import numpy as np

import tinydgm as td
from tinydgm import backend, nn, runs


def _xp(a):
    return backend.get_array_module(a)


def sigmoid(a):
    """σ(a) = (1 + tanh(a/2)) / 2: no overflow for any a, one transcendental pass."""
    p = _xp(a).multiply(a, 0.5)
    _xp(a).tanh(p, out=p)
    p *= 0.5
    p += 0.5
    return p


def bernoulli_sample(logits, rng, shape=None):
    """Binary units s = [u < σ(logits)], u ~ U(0, 1), as 0/1 arrays of logits' dtype (`shape`: with sample axes)."""
    u = rng.random(shape or logits.shape, dtype=logits.dtype)
    return (u < sigmoid(logits)).astype(logits.dtype)


def log_bernoulli_sum(logits, s):
    """Σ_i log Bernoulli(s_i; σ(a_i)) = −Σ_i softplus((1 − 2 s_i) a_i) over the last axis, on arrays
    (logits and s broadcast) in six passes over the data: what evaluation with large k pays for."""
    xp = _xp(logits)
    z = logits * (1 - 2 * s)                     # log p(s|a) = log σ((2s − 1) a) = −softplus(z)
    if float(z.max()) > 80:                      # e^z would overflow float32: the stable form
        return -td.softplus(z).data.sum(-1)
    xp.exp(z, out=z)
    z += 1                                       # log(1 + e^z): for e^z below float32's epsilon the
    xp.log(z, out=z)                             # error is under 6e-8 per unit, and log beats log1p
    return -z.sum(-1)


def affine(s, weight, bias):
    """s W + b on arrays, sample axes flattened so that BLAS sees one matrix."""
    out = s.reshape(-1, s.shape[-1]) @ weight
    out += bias
    return out.reshape(s.shape[:-1] + (weight.shape[1],))


def _linear(layer, s):
    """layer(s) on the engine, sample axes flattened (NumPy's stacked matmul is slow for many samples)."""
    if s.ndim <= 2:
        return layer(s)
    return td.reshape(layer(s.reshape(-1, s.shape[-1])), s.shape[:-1] + (layer.weight.shape[1],))


# =============================================================================================
# The Helmholtz machine
# =============================================================================================

class HelmholtzMachine(nn.Module):
    """A sigmoid belief net p(x, h|θ) and its recognition net q(h|x, λ); `layers` = (visible, h_1, ..., h_L)."""

    def __init__(self, layers=(784, 200, 200), rng=None, dtype=None):
        layers = tuple(int(n) for n in layers)
        if len(layers) < 2 or min(layers) < 1:
            raise ValueError(f"HelmholtzMachine: layers must be (visible, hidden, ...) positive sizes, got {layers}")
        rng = np.random.default_rng(rng) if rng is None or isinstance(rng, int) else rng
        dtype = dtype or backend.default_dtype
        self.layers = layers
        L = len(layers) - 1
        # θ: logits of the factorised prior p(h_L), and generative[l]: s_{l+1} -> logits of p(s_l | s_{l+1})  (s_0 = x)
        self.prior = nn.Parameter(backend.xp().zeros(layers[-1], dtype=dtype))
        self.generative = [nn.Linear(layers[l + 1], layers[l], rng=rng, dtype=dtype) for l in range(L)]
        # λ: recognition[l]: s_l -> logits of q(s_{l+1} | s_l)
        self.recognition = [nn.Linear(layers[l], layers[l + 1], rng=rng, dtype=dtype) for l in range(L)]

    def generative_parameters(self):
        """θ: the prior's logits and the top-down layers."""
        return [p for n, p in self.named_parameters() if not n.startswith("recognition")]

    def recognition_parameters(self):
        """λ: the bottom-up layers."""
        return [p for n, p in self.named_parameters() if n.startswith("recognition")]

    def arrays(self):
        """Parameter arrays by name (shared with the model, not copies): what the by-hand functions take."""
        return {n: p.data for n, p in self.named_parameters()}

    def init_visible_bias(self, x):
        """Set p(x|h_1)'s bias to the logit of the data mean (a standard start for binary images)."""
        m = np.clip(backend.to_numpy(x).mean(0), 1e-3, 1 - 1e-3)
        self.generative[0].bias.data[...] = backend.asarray(np.log(m / (1 - m)), dtype=self.prior.dtype)

    # -- densities (differentiable in the parameters; the states are data) -----------------------
    def log_joint(self, x, hs):
        """log p(x, h|θ) per example; hs = [h_1, ..., h_L], leading sample axes broadcast against x."""
        s = [td.tensor(x).data, *hs]
        total = td.sum(td.bernoulli_log_prob(self.prior, s[-1]), axis=-1)            # log p(h_L)
        for l in reversed(range(len(self.generative))):                                # log p(s_l | s_{l+1})
            total = total + td.sum(td.bernoulli_log_prob(_linear(self.generative[l], s[l + 1]), s[l]), axis=-1)
        return total

    def log_q(self, hs, x):
        """log q(h|x, λ) per example."""
        s = [td.tensor(x).data, *hs]
        total = 0
        for l, layer in enumerate(self.recognition):                                   # log q(s_{l+1} | s_l)
            total = total + td.sum(td.bernoulli_log_prob(_linear(layer, s[l]), s[l + 1]), axis=-1)
        return total

    # -- sampling (plain arrays: no gradient ever flows through a binary state) ----------------------
    def sample_q(self, x, rng, k=None):
        """h ~ q(h|x): [h_1, ..., h_L], each (B, n_l), or (k, B, n_l) with k samples per image."""
        s, hs = td.tensor(x).data, []
        for l, layer in enumerate(self.recognition):
            logits = affine(s, layer.weight.data, layer.bias.data)     # layer 1's logits once for all k
            s = bernoulli_sample(logits, rng, (k,) + logits.shape if k and l == 0 else None)
            hs.append(s)
        return hs

    def dream(self, n, rng):
        """(x̃, [h̃_1, ..., h̃_L]) ~ p(x, h|θ), ancestrally from the top."""
        s = bernoulli_sample(_xp(self.prior.data).broadcast_to(self.prior.data, (n, self.layers[-1])), rng)
        hs = [s]
        for layer in reversed(self.generative):
            s = bernoulli_sample(affine(s, layer.weight.data, layer.bias.data), rng)
            hs.insert(0, s)
        return hs[0], hs[1:]

    def dream_means(self, n, rng):
        """The means σ(h̃_1 W + b) of p(x|h̃_1) for n dreams (clearer to look at than binary x̃)."""
        _, hs = self.dream(n, rng)
        return sigmoid(affine(hs[0], self.generative[0].weight.data, self.generative[0].bias.data))

    # -- the two phases, as on the slides -----------------------------------------------------------
    def wake_phase(self, x, rng):
        """Wake: h ~ q(h|x) held fixed; returns mean log p(x, h|θ), a function of θ only."""
        return td.mean(self.log_joint(x, self.sample_q(x, rng)))

    def sleep_phase(self, n, rng):
        """Sleep: dream (x̃, h̃) ~ p; returns mean log q(h̃|x̃, λ), a function of λ only."""
        x, hs = self.dream(n, rng)
        return td.mean(self.log_q(hs, x))

    def reweighted_wake(self, x, rng, k, q_grad=True):
        """RWS wake (Bornschein & Bengio 2015, eqs. 10-11): k samples from q, their log p, log q (k, B)
        and normalised importance weights ω (k, B, an array: no gradient through the weights)."""
        hs = self.sample_q(x, rng, k)
        log_p = self.log_joint(x, hs)
        if q_grad:
            log_q = self.log_q(hs, x)
        else:
            with td.no_grad():
                log_q = self.log_q(hs, x)
        log_w = log_p.data - log_q.data
        omega = _xp(log_w).exp(log_w - log_w.max(0, keepdims=True))
        omega /= omega.sum(0, keepdims=True)
        return log_p, log_q, omega

    # -- bounds ------------------------------------------------------------------------------------------
    def iwae_bound(self, x, k, rng):
        """Per-example L_k = log 1/k Σ_j p(x, h_j) / q(h_j|x), h_j ~ q(h|x) (Burda et al. 2016, eq. 8); L_1 is the ELBO."""
        hs = self.sample_q(x, rng, k)
        if td.is_grad_enabled():
            log_w = self.log_joint(x, hs) - self.log_q(hs, x)
        else:                                   # evaluation: the same sums on arrays, about twice as fast
            log_w = td.tensor(self.log_weights(td.tensor(x).data, hs))
        return td.logsumexp(log_w, axis=0) - math.log(k)

    def log_weights(self, x, hs):
        """log p(x, h) - log q(h|x) on arrays, no graph: what L_k needs for k in the thousands."""
        s = [x, *hs]
        log_w = log_bernoulli_sum(self.prior.data, s[-1])
        for l, layer in enumerate(self.generative):
            log_w += log_bernoulli_sum(affine(s[l + 1], layer.weight.data, layer.bias.data), s[l])
        for l, layer in enumerate(self.recognition):
            log_w -= log_bernoulli_sum(affine(s[l], layer.weight.data, layer.bias.data), s[l + 1])
        return log_w


# =============================================================================================
# Training steps on the engine
# =============================================================================================

UPDATES = ("p", "q-wake", "sleep")


def _ascend(objective, opt):
    opt.zero_grad()
    (-objective).backward()
    opt.step()


def wake_sleep_step(model, x, opt_p, opt_q, rng):
    """Hinton et al. 1995: a wake update of θ (opt_p), then a sleep update of λ (opt_q) on len(x) dreams."""
    wake = model.wake_phase(x, rng)
    _ascend(wake, opt_p)
    sleep = model.sleep_phase(len(x), rng)
    _ascend(sleep, opt_q)
    return {"wake": wake.item(), "sleep": sleep.item()}


def reweighted_step(model, x, opt_p, opt_q, rng, k=5, updates=UPDATES):
    """Reweighted wake-sleep (Bornschein & Bengio 2015): the chosen updates from one set of k samples
    per image (p: θ; q-wake and sleep: λ), one backward pass, then a step of each optimiser."""
    bad = set(updates) - set(UPDATES)
    if bad or not updates:
        raise ValueError(f"reweighted_step: updates must be among {UPDATES}, got {tuple(updates)}")
    log_p, log_q, omega = model.reweighted_wake(x, rng, k, q_grad="q-wake" in updates)
    n = len(x)
    objective, out = 0, {}
    if "p" in updates:
        objective = objective + td.sum(log_p * omega) / n                      # Σ_k ω_k log p(x, h_k)
    if "q-wake" in updates:
        objective = objective + td.sum(log_q * omega) / n                      # Σ_k ω_k log q(h_k|x)
    if "sleep" in updates:
        sleep = model.sleep_phase(n, rng)
        objective = objective + sleep
        out["sleep"] = sleep.item()
    opt_p.zero_grad()
    opt_q.zero_grad()
    (-objective).backward()
    opt_p.step()
    opt_q.step()
    log_w = log_p.data - log_q.data
    m = log_w.max(0)
    bound = m + _xp(m).log(_xp(log_w).exp(log_w - m).mean(0))                   # L_k of this batch, for free
    out["bound"] = float(bound.mean())
    return out


# =============================================================================================
# The delta rule, by hand (Hinton et al. 1995: Δw_ji = ε s_i (s_j − p_j), local to each layer)
# =============================================================================================

def delta_rule(inputs, outputs, weight, bias, scale):
    """(ΔW, Δb, value) of Σ_n c_n log p(outputs_n | inputs_n), one sigmoid layer p = σ(inputs W + b), c = `scale`."""
    # ΔW = inputsᵀ c (outputs − p),  Δb = Σ_n c (outputs − p);  c: a number or per-row weights
    logits = affine(inputs, weight, bias)
    value = float((log_bernoulli_sum(logits, outputs) * _rows(scale)).sum())
    delta = outputs - sigmoid(logits)                             # sample − predicted probability
    delta *= scale
    if delta.ndim > inputs.ndim:                                 # inputs shared by k samples: sum them first
        delta = delta.sum(axis=tuple(range(delta.ndim - inputs.ndim)))
    inputs, delta = inputs.reshape(-1, inputs.shape[-1]), delta.reshape(-1, delta.shape[-1])
    return inputs.T @ delta, delta.sum(0), value


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
    delta = (s[-1] - sigmoid(prior)) * c                          # the prior: a layer with no input
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


def _descend_along(model, ascent, opt):
    """Step `opt` uphill along the delta rule's gradients (an optimiser minimises: its .grad is minus them)."""
    params = dict(model.named_parameters())
    for n, g in ascent.items():
        g *= -1
        params[n].grad = g
    opt.step()


# =============================================================================================
# Exact computations on a machine small enough to enumerate (for tests and teaching)
# =============================================================================================

def all_states(n, dtype=np.float64):
    """All 2^n binary vectors of length n, as rows."""
    return ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1).astype(dtype)


def exact_log_joint_table(model, x):
    """log p(x_b, h) for every image b and every joint hidden state h: (number of states, B), and the states."""
    sizes = model.layers[1:]
    states = all_states(sum(sizes))
    hs = np.split(states, np.cumsum(sizes)[:-1], axis=1)
    with td.no_grad():
        table = model.log_joint(x, [h[:, None, :] for h in hs]).data
    return table, hs


def exact_log_px(model, x):
    """log p(x) = log Σ_h p(x, h), summed over all hidden states."""
    table, _ = exact_log_joint_table(model, x)
    return td.logsumexp(table, axis=0).data


def exact_kl_posterior(model, x):
    """KL(p(h|x) ‖ q(h|x)) per image, summed over all hidden states."""
    table, hs = exact_log_joint_table(model, x)
    log_post = table - td.logsumexp(table, axis=0).data
    with td.no_grad():
        log_q = model.log_q([h[:, None, :] for h in hs], x).data
    return (np.exp(log_post) * (log_post - log_q)).sum(0)


# =============================================================================================
# The trainer plugged into runs.fit
# =============================================================================================

class Trainer:
    """One epoch of (reweighted) wake-sleep with Adam on θ and on λ; validation L_k; resumable state."""

    def __init__(self, model, opt_p, opt_q, train_x, valid_x, cfg, rng):
        self.model, self.opt_p, self.opt_q = model, opt_p, opt_q
        self.x, self.valid_x, self.cfg, self.rng = train_x, valid_x, cfg, rng
        self.draw = runs.device_rng(rng)

    def train_epoch(self, epoch, progress):
        lr = runs.learning_rate(self.cfg["schedule"], self.cfg["lr"], epoch, progress)
        self.opt_p.lr = self.opt_q.lr = lr
        n, b, cfg = len(self.x), self.cfg["batch_size"], self.cfg
        perm, sums = backend.asarray(self.rng.permutation(n)), {}
        for i in range(0, n, b):
            x = self.x[perm[i:i + b]]
            if cfg["reweighted"]:
                out = reweighted_step(self.model, x, self.opt_p, self.opt_q, self.draw, cfg["k"], cfg["updates"])
            else:
                out = wake_sleep_step(self.model, x, self.opt_p, self.opt_q, self.draw)
            for key, v in out.items():
                if not math.isfinite(v):
                    raise runs.NonFinite(f"{key} = {v}")
                sums[key] = sums.get(key, 0.0) + v * len(x)
        means = {key: v / n for key, v in sums.items()}
        # loss: -L_k of the training batches (RWS), or -E_q log p(x, h) (wake-sleep: the wake objective)
        loss = -means.pop("bound") if "bound" in means else -means["wake"]
        return {"loss": loss, **{f"train_{key}": v for key, v in means.items()}, "lr": lr}

    def validate(self):
        k = self.cfg["valid_k"]
        return {"valid_bound": mean_bound(self.model, self.valid_x, k, np.random.default_rng(0)),
                "valid_k": k}

    def state(self):
        return {"params": self.model.state_dict(), "opt_p": self.opt_p.state_dict(),
                "opt_q": self.opt_q.state_dict(), "rng": runs.rng_state(self.rng)}

    def load_state(self, state):
        self.model.load_state_dict(state["params"])
        self.opt_p.load_state_dict(state["opt_p"])
        self.opt_q.load_state_dict(state["opt_q"])
        runs.set_rng_state(self.rng, state["rng"])


def mean_bound(model, x, k, rng, rows=20000):
    """L_k averaged over the rows of x, in batches of about `rows` samples."""
    draw, b = runs.device_rng(rng), max(1, rows // k)
    with td.no_grad():
        total = sum(float(model.iwae_bound(x[i:i + b], k, draw).data.sum()) for i in range(0, len(x), b))
    return total / len(x)


# =============================================================================================
# tinydgm train wake-sleep
# =============================================================================================

def add_train_arguments(p):
    p.add_argument("--layers", default="200,200", help="hidden layer sizes, bottom to top (default 200,200)")
    p.add_argument("--reweighted", action="store_true", help="reweighted wake-sleep (Bornschein & Bengio 2015)")
    p.add_argument("--k", type=int, default=5, help="samples from q per image for --reweighted (default 5)")
    p.add_argument("--updates", default="p,q-wake,sleep",
                   help="for --reweighted: which of p,q-wake,sleep to apply (default all three)")
    p.add_argument("--epochs", type=int, help="epochs (default 100; unlimited with --minutes)")
    p.add_argument("--minutes", type=float, help="time budget: train this long, annealing the learning rate to fit")
    p.add_argument("--batch-size", type=int, default=25, help="images per step (default 25)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam step size for θ and λ (default 1e-3)")
    p.add_argument("--schedule", choices=("anneal", "constant"), default="anneal",
                   help=f"anneal: hold lr {runs.HOLD * 100:.0f}%% of the budget, then decay it 100-fold (default); "
                        "constant")
    p.add_argument("--valid-k", type=int, default=10, help="samples for the validation bound L_k (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--eval-every", type=int, default=1, help="validate every N epochs (default 1)")
    p.add_argument("--out", help="run directory (default runs/wake-sleep-DATE-TIME)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run (its config is reused)")
    p.add_argument("--limit", type=int, help="train and validate on the first N images only (quick trials)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _config(args):
    from tinydgm.cli import UserError
    cfg = {k: v for k, v in vars(args).items() if k not in ("command", "_kind", "resume", "quiet")}
    cfg["model"] = "wake-sleep"
    if cfg["epochs"] is None and cfg["minutes"] is None:
        cfg["epochs"] = 100
    try:
        cfg["layers"] = [int(h) for h in str(cfg["layers"]).split(",") if h.strip()]
    except ValueError:
        raise UserError(f"--layers: expected hidden sizes like 200,200, got {cfg['layers']!r}") from None
    if not cfg["layers"] or min(cfg["layers"]) < 1:
        raise UserError(f"--layers: expected positive hidden sizes like 200,200, got {cfg['layers']}")
    cfg["updates"] = [u.strip() for u in str(cfg["updates"]).split(",") if u.strip()]
    if not cfg["updates"] or set(cfg["updates"]) - set(UPDATES):
        raise UserError(f"--updates: expected some of {','.join(UPDATES)}, got {','.join(cfg['updates'])!r}")
    for key in ("batch_size", "k", "valid_k", "eval_every"):
        if cfg[key] < 1:
            raise UserError(f"--{key.replace('_', '-')}: expected a positive integer, got {cfg[key]}")
    if cfg["epochs"] is not None and cfg["epochs"] < 1:
        raise UserError(f"--epochs: expected a positive integer, got {cfg['epochs']}")
    if not cfg["reweighted"]:
        cfg["k"], cfg["updates"] = 1, ["p", "sleep"]
    cfg["out"] = cfg["out"] or os.path.join("runs", time.strftime("wake-sleep-%Y%m%d-%H%M%S"))
    return cfg


def build(cfg):
    """The machine and its two optimisers (θ, λ) from a run's config."""
    model = HelmholtzMachine([784, *cfg["layers"]], rng=np.random.default_rng(cfg["seed"]))
    opt_p = td.optim.Adam(model.generative_parameters(), lr=cfg["lr"])
    opt_q = td.optim.Adam(model.recognition_parameters(), lr=cfg["lr"])
    return model, opt_p, opt_q


def _data(split, limit=None):
    from tinydgm.cli import UserError
    from tinydgm.datasets import DataError, binarized_mnist
    try:
        return binarized_mnist(split)[:limit]
    except DataError as e:
        raise UserError(str(e)) from None


def train(args):
    from tinydgm.cli import UserError
    try:
        if args.resume:
            run = runs.Run.open(args.resume, model="wake-sleep")
            cfg = run.config
        else:
            cfg = _config(args)
    except runs.RunError as e:
        raise UserError(str(e)) from None
    runs.use_device(cfg["device"])
    train_np = _data("train", cfg.get("limit"))
    train_x, valid_x = backend.asarray(train_np), backend.asarray(_data("valid", cfg.get("limit")))
    if not args.resume:
        try:
            run = runs.Run.create(cfg["out"], cfg)
        except runs.RunError as e:
            raise UserError(str(e)) from None
    model, opt_p, opt_q = build(cfg)
    model.init_visible_bias(train_np)
    trainer = Trainer(model, opt_p, opt_q, train_x, valid_x, cfg, np.random.default_rng([cfg["seed"], 1]))
    summary = runs.fit(run, trainer, epochs=cfg["epochs"], minutes=cfg["minutes"], eval_every=cfg["eval_every"],
                       monitor="valid_bound", mode="max", quiet=args.quiet)
    if summary["epochs"] > 0:
        summary["figures"] = figures(run, cfg)
    return run.finish(summary)


def load(run_dir, which="best"):
    """(model, run) from a run directory's `best` or `last` checkpoint."""
    from tinydgm import checkpoint
    from tinydgm.cli import UserError
    try:
        run = runs.Run.open(run_dir, model="wake-sleep")
        model, _, _ = build(run.config)
        state, _ = runs.load_state(run.path(which))
    except (runs.RunError, checkpoint.CheckpointError) as e:
        raise UserError(str(e)) from None
    model.load_state_dict(state["params"])
    return model, run


# =============================================================================================
# Figures: dreams next to data, and how active each layer's units are
# =============================================================================================

def dreams_figure(data, dreams, path, n=50, cols=10):
    """Test images (left) next to dreams, the means of p(x|h̃_1) (right)."""
    from tinydgm import plots
    plt = plots._pyplot()
    side = int(round(math.sqrt(data.shape[1])))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(1, 2, figsize=(2 * cols * 0.6, rows * 0.6 + 0.4))
    for ax, images, title in zip(axes, (data, dreams), ("data", "dreams: mean of p(x|h̃₁), h̃ ~ p")):
        ax.imshow(plots._tile(images[:n], rows, cols, side), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    return plots._save(plt, fig, path)


def activations_figure(model, x, rng, path):
    """Per layer: each unit's mean activation under q(h|x) on data and under p in dreams, units sorted."""
    from tinydgm import plots
    plt = plots._pyplot()
    hq = model.sample_q(backend.asarray(x), rng)
    _, hp = model.dream(len(x), rng)
    L = len(hq)
    fig, axes = plt.subplots(1, L, figsize=(4 * L, 3), squeeze=False)
    for l, ax in enumerate(axes[0]):
        mq = backend.to_numpy(hq[l]).mean(0)
        order = np.argsort(-mq)
        ax.plot(mq[order], label="q(h|x), data")
        ax.plot(backend.to_numpy(hp[l]).mean(0)[order], ".", ms=3, label="p, dreams")
        ax.set_title(f"layer h{l + 1}: {int(((mq > 0.01) & (mq < 0.99)).sum())} of {len(mq)} units not stuck", fontsize=8)
        ax.set_xlabel("unit (sorted)")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].set_ylabel("mean activation")
    axes[0][0].legend(fontsize=7)
    return plots._save(plt, fig, path)


def figures(run, cfg, n=100):
    """dreams.png, activations.png, curves.png from the best checkpoint."""
    from tinydgm import plots
    if not plots.available():
        return []
    model, _ = load(run.dir, "best")
    rng = np.random.default_rng(cfg["seed"])
    x = _data("test")
    x = x[rng.permutation(len(x))[:1000]]                  # the test file is ordered by digit
    draw = runs.device_rng(rng)                            # draws on the model's device
    dreams = backend.to_numpy(model.dream_means(n, draw))
    return [dreams_figure(x, dreams, run.path("dreams.png")),
            activations_figure(model, x, draw, run.path("activations.png")),
            plots.learning_curves([{**r, "-valid_bound": -r["valid_bound"]} if "valid_bound" in r else r
                                   for r in run.metrics()], run.path("curves.png"), keys=("loss", "-valid_bound"))]


# =============================================================================================
# tinydgm eval / sample
# =============================================================================================

def add_eval_arguments(p):
    p.add_argument("--k", type=int, default=5000, help="importance samples for L_k (default 5000)")
    p.add_argument("--split", choices=("test", "valid"), default="test")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--limit", type=int, help="evaluate only the first N images (a quick look, not a result)")
    p.add_argument("--start", type=int, default=0, help="skip the first N images (with --limit: one shard of "
                   "the split, so that shards can run in parallel; their NLLs average, weighted by n)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--combine", action="store_true", help="evaluate nothing: merge the shards (--start/--limit) "
                   "of this split and --k found in RUN into one result, checking that they cover the split once")
    p.add_argument("--quiet", action="store_true")


def evaluate(args):
    """NLL = -L_k, q the proposal, over the split or a shard of it, plus L_1 there and on train; writes eval-*.json."""
    from tinydgm.cli import UserError
    from tinydgm.metrics import iw_nll
    for flag, value, least in (("--k", args.k, 1), ("--limit", args.limit, 1), ("--start", args.start, 0)):
        if value is not None and value < least:
            raise UserError(f"{flag}: expected an integer >= {least}, got {value}")
    if args.combine and (args.start or args.limit):
        raise UserError("--combine merges the shards already evaluated: give it no --start or --limit")
    runs.use_device(args.device)
    model, run = load(args.run_dir, args.checkpoint)
    if args.combine:
        return combine_shards(model, run, args)
    x = _data(args.split)[args.start:]
    x = backend.asarray(x[:args.limit])
    if len(x) == 0:
        raise UserError(f"--start {args.start}: the {args.split} split has no images from there on")
    shard = bool(args.start or args.limit)
    t0 = time.perf_counter()
    elbo = mean_bound(model, x, 1, np.random.default_rng(args.seed))
    # about 1000 samples per call: the arrays stay in cache (a third faster than 10,000 here)
    chunk = max(d for d in range(1, min(args.k, 500) + 1) if args.k % d == 0)
    nll = iw_nll(model, x, args.k, rng=np.random.default_rng(args.seed), chunk=chunk,
                 batch_size=max(1, 1000 // chunk), progress=not args.quiet)
    result = {"run": run.dir, "checkpoint": args.checkpoint, "split": args.split, "start": args.start,
              "n": len(x), "k": args.k, f"{args.split}_nll": nll, f"{args.split}_elbo": elbo,
              "train_elbo": None if shard else _train_elbo(model, args.seed),      # once, in --combine, for shards
              "time_s": round(time.perf_counter() - t0, 1)}
    part = f"-from{args.start}" * bool(args.start) + f"-n{len(x)}" * shard
    _write_eval(run, f"eval-{args.split}-k{args.k}{part}.json", result)


def _train_elbo(model, seed):
    return mean_bound(model, backend.asarray(_data("train")), 1, np.random.default_rng(seed))


def _write_eval(run, name, result):
    with open(run.path(name), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result), flush=True)


def combine_shards(model, run, args):
    """eval-SPLIT-kK.json from one checkpoint's shards eval-SPLIT-kK[-fromS]-nN.json that tile the split, weighted by n."""
    from tinydgm.cli import UserError
    split, k, prefix, shards = args.split, args.k, f"eval-{args.split}-k{args.k}-", []
    for name in sorted(os.listdir(run.dir)):
        if not (name.startswith(prefix) and name.endswith(".json")):
            continue
        try:
            with open(run.path(name)) as f:
                r = json.load(f)
            r["start"], r["n"], r[f"{split}_nll"], r[f"{split}_elbo"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UserError(f"{run.path(name)}: not a shard written by tinydgm eval ({e}); move it away") from None
        if r.get("checkpoint", "best") == args.checkpoint:
            shards.append((r["start"], name, r))
    if not shards:
        raise UserError(f"{run.dir}: no {args.checkpoint} shards {prefix}*.json to combine; make them with "
                        f"tinydgm eval {run.dir} --k {k} --split {split} --start S --limit N")
    shards.sort(key=lambda t: t[:2])
    total, at = len(_data(split)), 0
    for start, name, r in shards:
        if start != at:
            problem = "an overlap" if start < at else "a gap"
            raise UserError(f"{run.dir}: the {split} shards do not tile the split: {problem} at image {at} "
                            f"({name} starts at {start}); move the extra shard away or fill the gap")
        at += r["n"]
    if at != total:
        raise UserError(f"{run.dir}: the {split} shards cover images 0-{at - 1} of {total}; evaluate the rest with "
                        f"--start {at}")
    mean = {key: sum(r[key] * r["n"] for _, _, r in shards) / total for key in (f"{split}_nll", f"{split}_elbo")}
    result = {"run": run.dir, "checkpoint": args.checkpoint, "split": split, "n": total, "k": k, **mean,
              "train_elbo": _train_elbo(model, args.seed), "shards": len(shards),
              "shard_seconds": round(sum(r.get("time_s", 0) for _, _, r in shards), 1)}
    _write_eval(run, f"eval-{split}-k{k}.json", result)


def add_sample_arguments(p):
    p.add_argument("--n", type=int, default=100, help="how many dreams (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="PNG file (default RUN/dreams-SEED.png)")


def sample(args):
    """Dreams: the means of p(x|h̃_1) for h̃ ~ p, as a PNG grid."""
    from tinydgm import plots
    from tinydgm.cli import UserError
    model, run = load(args.run_dir)
    if not plots.available():
        raise UserError("sample: writing a PNG needs matplotlib (pip install 'tinydgm[plot]')")
    means = backend.to_numpy(model.dream_means(args.n, runs.device_rng(np.random.default_rng(args.seed))))
    path = plots.image_grid(means, args.out or run.path(f"dreams-{args.seed}.png"), title="dreams: mean of p(x|h̃₁)")
    print(json.dumps({"run": run.dir, "dreams": path, "n": args.n}))
