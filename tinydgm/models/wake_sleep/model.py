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
part of a graph.  The machine offers the layered-model interface of `tinydgm.estimators.discrete`, so every
discrete estimator (`tinydgm.estimators`: wake-sleep, RWS, REINFORCE, NVIL, VIMCO, relaxed, straight-through)
trains it.  Each layer's gradient is local, the delta rule (sample − predicted probability) × input:
`by_hand.py` writes it out; `exact.py` enumerates small machines; training runs are in
`tinydgm.experiments.wake_sleep`.
"""

import tinydgm as td
from tinydgm import backend, estimators, nn, numerics
from tinydgm.estimators import wake_sleep
from tinydgm.estimators.discrete import bernoulli_sample
from tinydgm.estimators.importance import bound_value


def _xp(a):
    return backend.get_array_module(a)


def log_bernoulli_sum(logits, s):
    """Σ_i log Bernoulli(s_i; σ(a_i)) over the last axis, on arrays (logits and s broadcast)."""
    return numerics.bernoulli_log_prob(_xp(logits), logits, s).sum(-1)


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
        rng = estimators.generator(rng)
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
        self.generative[0].bias.data[...] = nn.mean_logits(x, self.prior.dtype)

    # -- the layered-model interface of tinydgm.estimators.discrete (on the engine) ----------------------
    def recognition_logits(self, l, below):
        """Logits of q(h_{l+1} | below), below = x for l = 0."""
        return _linear(self.recognition[l], below)

    def generative_logits(self, l, above):
        """Logits of p(s_l | s_{l+1} = above), s_0 = x."""
        return _linear(self.generative[l], above)

    def prior_logits(self):
        """Logits of the factorised prior p(h_L)."""
        return self.prior

    def log_likelihood(self, x, h1):
        """log p(x | h_1) per example (h_1 may be continuous in [0, 1])."""
        return td.sum(td.bernoulli_log_prob(self.generative_logits(0, h1), td.tensor(x).data), axis=-1)

    def log_joint(self, x, hs):
        """log p(x, h|θ) per example; hs = [h_1, ..., h_L], leading sample axes broadcast against x."""
        return estimators.total(self.log_joint_terms(x, hs)[::-1])

    def log_joint_terms(self, x, hs):
        """The factors of log p(x, h|θ) per example, bottom-up: [log p(x | h_1), ..., log p(h_{L-1} | h_L), log p(h_L)]."""
        s = [td.tensor(x).data, *hs]
        terms = [td.sum(td.bernoulli_log_prob(self.generative_logits(l, s[l + 1]), s[l]), axis=-1)   # log p(s_l | s_{l+1})
                 for l in range(len(self.generative))]
        return terms + [td.sum(td.bernoulli_log_prob(self.prior, s[-1]), axis=-1)]      # log p(h_L)

    def log_q(self, hs, x):
        """log q(h|x, λ) per example."""
        return estimators.total(self.log_q_terms(hs, x))

    def log_q_terms(self, hs, x):
        """The factors of log q(h|x, λ) per example: [log q(h_1 | x), ..., log q(h_L | h_{L-1})]."""
        s = [td.tensor(x).data, *hs]
        return [td.sum(td.bernoulli_log_prob(self.recognition_logits(l, s[l]), s[l + 1]), axis=-1)     # log q(s_{l+1} | s_l)
                for l in range(len(self.recognition))]

    # -- sampling (plain arrays: no gradient ever flows through a binary state) ----------------------
    def sample_q(self, x, rng, k=None):
        """h ~ q(h|x): [h_1, ..., h_L], each (B, n_l), or (k, B, n_l) with k samples per image."""
        with td.no_grad():
            return estimators.discrete.sample_q(self, x, rng, k)[0]

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
        return numerics.sigmoid(_xp(self.prior.data), affine(hs[0], self.generative[0].weight.data, self.generative[0].bias.data))

    # -- the two phases, as on the slides (written once, in tinydgm.estimators.wake_sleep) ----------------
    def wake_phase(self, x, rng):
        """Wake: h ~ q(h|x) held fixed; returns mean log p(x, h|θ), a function of θ only."""
        return wake_sleep.wake_phase(self, x, rng)

    def sleep_phase(self, n, rng):
        """Sleep: dream (x̃, h̃) ~ p; returns mean log q(h̃|x̃, λ), a function of λ only."""
        return wake_sleep.sleep_phase(self, n, rng)

    # -- bounds ------------------------------------------------------------------------------------------
    def iwae_bound(self, x, k, rng):
        """Per-example L_k = log 1/k Σ_j p(x, h_j) / q(h_j|x), h_j ~ q(h|x) (Burda et al. 2016, eq. 8); L_1 is the ELBO.

        A value, computed on arrays (no graph: train with `reweighted_step`), returned as a Tensor."""
        x = td.tensor(x).data
        with td.no_grad():                        # the draws of sample_q, log q from the logits that drew them
            hs, q_terms = estimators.discrete.sample_q(self, x, rng, k)
        log_w = self.log_weights(x, hs, estimators.total(q_terms).data)
        return td.tensor(bound_value(log_w))

    def log_weights(self, x, hs, log_q=None):
        """log p(x, h) - log q(h|x) on arrays, no graph: what L_k needs for k in the thousands (`log_q`: log q(h|x)
        where the caller has it already)."""
        s = [x, *hs]
        log_w = log_bernoulli_sum(self.prior.data, s[-1])
        for l, layer in enumerate(self.generative):
            w, b = layer.weight.data, layer.bias.data
            if l == 0 and x.ndim < s[1].ndim:      # x shared by the k samples: Σ_i x_i a_i = h·(W x) + b·x, so
                xp = _xp(x)                        # only softplus(a) runs over all (k, B, n_x) logits
                log_w += (s[1] * (x @ w.T)).sum(-1) + x @ b - numerics.softplus(xp, affine(s[1], w, b)).sum(-1)
            else:
                log_w += log_bernoulli_sum(affine(s[l + 1], w, b), s[l])
        if log_q is not None:
            return log_w - log_q
        for l, layer in enumerate(self.recognition):
            log_w -= log_bernoulli_sum(affine(s[l], layer.weight.data, layer.bias.data), s[l + 1])
        return log_w


# =============================================================================================
# Training steps on the engine (the estimators of tinydgm.estimators.wake_sleep)
# =============================================================================================

UPDATES = wake_sleep.UPDATES


def wake_sleep_step(model, x, opt_p, opt_q, rng):
    """Hinton et al. 1995: a wake update of θ (opt_p), then a sleep update of λ (opt_q) on len(x) dreams."""
    return wake_sleep.WakeSleep().step(model, x, (opt_p, opt_q), rng)


def reweighted_step(model, x, opt_p, opt_q, rng, k=5, updates=UPDATES):
    """Reweighted wake-sleep (Bornschein & Bengio 2015): the chosen updates from one set of k samples
    per image (p: θ; q-wake and sleep: λ), one backward pass, then a step of each optimiser."""
    return wake_sleep.ReweightedWakeSleep(k, updates).step(model, x, (opt_p, opt_q), rng)
