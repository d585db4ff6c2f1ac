"""Distributions with the names users know: Normal (diagonal), Bernoulli, Categorical, the relaxed
Bernoulli (binary Concrete) and its logit, kl_divergence.

All densities are computed in log space from the engine's stable primitives, so they are
differentiable in their parameters (and, for Normal, in the value).
"""
import math

import numpy

from tinydgm import backend, ops
from tinydgm.tensor import Tensor, no_grad, unwrap

LOG_2PI = math.log(2 * math.pi)


def _tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _rng(rng):
    return backend.rng() if rng is None else rng


def _size(shape, batch_shape):
    """The array shape of `shape` draws: sample shape (an int or a tuple) + batch shape."""
    return ((shape,) if isinstance(shape, int) else tuple(shape)) + tuple(batch_shape)


def _like(a, like):
    """`a` moved to the array module of `like` (a NumPy generator may feed CuPy parameters)."""
    return backend.get_array_module(like).asarray(a)


def _weighted(w, t):
    """w * t with the convention 0 * t = 0 (also where t is -inf or nan), as in p log p at p = 0."""
    xp = backend.get_array_module(unwrap(w))
    pos = xp.asarray(unwrap(w)) > 0
    return ops.where(pos, w * ops.where(pos, t, 0.0), 0.0)


class Distribution:
    """Base class: `batch_shape`, `log_prob`, `sample`, `entropy`, parameter checks."""
    has_rsample = False
    validate_args = True          # class-wide default; Distribution.validate_args = False for speed

    def __init__(self, batch_shape, validate_args=None):
        self.batch_shape = tuple(batch_shape)
        self._validate = Distribution.validate_args if validate_args is None else validate_args

    @staticmethod
    def set_default_validate_args(value):
        """Switch parameter and value checks on or off for every distribution made from now on."""
        Distribution.validate_args = bool(value)

    def _check(self, ok, message):
        if self._validate and not bool(ok):
            raise ValueError(f"{type(self).__name__}: {message}")

    def rsample(self, shape=(), rng=None):
        raise NotImplementedError(f"{type(self).__name__} has no reparameterised sampler (has_rsample is False); "
                                  "use sample() with a score-function estimator")

    def __repr__(self):
        return f"{type(self).__name__}(batch_shape={self.batch_shape})"


# =============================================================================================
# Normal (diagonal)
# =============================================================================================

class Normal(Distribution):
    """N(loc, scale^2), elementwise.  `Normal.from_log_var(mu, log_var)` is where log sigma^2 becomes a scale."""
    has_rsample = True

    def __init__(self, loc, scale, validate_args=None):
        self.loc, self.scale = _tensor(loc), _tensor(scale)
        shape = numpy.broadcast_shapes(self.loc.shape, self.scale.shape)
        super().__init__(shape, validate_args)
        if self._validate and not bool((self.scale.data > 0).all()):
            self._check(False, f"scale must be positive, got min {float(self.scale.data.min())!r}")
        self._log_scale = None

    @classmethod
    def from_log_var(cls, loc, log_var, validate_args=None):
        """N(loc, exp(log_var)): scale = exp(log_var / 2), and log scale = log_var / 2 exactly.

        Densities and KLs are computed from the log scale, so they stay finite for any finite
        log_var, even where the scale itself is 0 or inf in the dtype (see `_standardize`)."""
        log_scale = 0.5 * _tensor(log_var)
        with numpy.errstate(over="ignore"):           # a scale of inf is what it is; densities use log_scale
            d = cls(loc, ops.exp(log_scale), validate_args=False)
        d._validate = Distribution.validate_args if validate_args is None else validate_args
        d._log_scale = log_scale
        return d

    @property
    def log_scale(self):
        if self._log_scale is None:
            self._log_scale = ops.log(self.scale)
        return self._log_scale

    mean = property(lambda self: self.loc)
    variance = property(lambda self: self.scale ** 2)
    stddev = property(lambda self: self.scale)

    def _standardize(self, d):
        """d / s as (d h) h, h = e^(-log s / 2) capped below overflow: exact where s is representable;
        where s underflows to 0, it is 0 at d = 0 (never 0/0) and +-inf elsewhere, as log_prob's true value."""
        cap = math.log(numpy.finfo(self.log_scale.dtype).max) - 1
        h = ops.exp(ops.clip(-0.5 * self.log_scale, None, cap))
        return (d * h) * h

    def log_prob(self, value):
        # log N(x; mu, s^2) = -z^2 / 2 - log s - log(2 pi) / 2,  z = (x - mu) / s
        z = self._standardize(_tensor(value) - self.loc)
        return -0.5 * z * z - self.log_scale - 0.5 * LOG_2PI

    def _eps(self, shape, rng):
        dtype = numpy.result_type(self.loc.dtype, self.scale.dtype)
        return _like(_rng(rng).standard_normal(_size(shape, self.batch_shape), dtype=dtype), self.loc.data)

    def rsample(self, shape=(), rng=None):
        """loc + scale * eps, eps ~ N(0, I): differentiable in loc and scale (the reparameterisation)."""
        return self.loc + self.scale * self._eps(shape, rng)

    def sample(self, shape=(), rng=None):
        with no_grad():
            return self.rsample(shape, rng).detach()

    def entropy(self):
        # H = 1/2 + log(2 pi)/2 + log s
        return self.log_scale + 0.5 * (1 + LOG_2PI) + 0 * self.loc


# =============================================================================================
# Bernoulli (logits)
# =============================================================================================

class Bernoulli(Distribution):
    """Bernoulli(sigmoid(logits)) on {0, 1}; give logits= or probs=.

    Logits are used as given.  probs= are clamped to [eps, 1 - eps], eps = finfo(dtype).eps, only
    when turned into logits (as PyTorch does), so log_prob, entropy, KL and their gradients stay
    finite at p = 0 and 1 (log p(x) = log eps, not -inf, for an x of probability 0); `probs`,
    `mean` and `sample` use p itself.
    """

    def __init__(self, logits=None, probs=None, validate_args=None):
        if (logits is None) == (probs is None):
            raise ValueError("Bernoulli: give exactly one of logits= or probs=")
        self._probs = None
        if probs is not None:
            p = self._probs = _tensor(probs)
            super().__init__(p.shape, validate_args)
            if self._validate and not bool(((p.data >= 0) & (p.data <= 1)).all()):
                self._check(False, f"probs must lie in [0, 1], got values in "
                                   f"[{float(p.data.min())!r}, {float(p.data.max())!r}]")
            eps = float(numpy.finfo(p.dtype).eps)
            p = ops.clip(p, eps, 1 - eps)                      # d/dp = 0 where clamped
            self.logits = ops.log(p) - ops.log(1 - p)          # log p/(1-p); 1 - p exact for p >= 1/2
        else:
            self.logits = _tensor(logits)
            super().__init__(self.logits.shape, validate_args)

    probs = property(lambda self: ops.sigmoid(self.logits) if self._probs is None else self._probs)
    mean = probs
    variance = property(lambda self: self.probs * (1 - self.probs))

    def log_prob(self, value):
        # log p(x) = x l - log(1 + e^l) = x l - softplus(l); exact for any finite l
        value = _like(unwrap(value), self.logits.data)
        if self._validate:
            self._check(((value == 0) | (value == 1)).all(), "value must be 0 or 1")
        return ops.bernoulli_log_prob(self.logits, value)

    def sample(self, shape=(), rng=None):
        with no_grad():
            p = self.probs.data
            u = _like(_rng(rng).random(_size(shape, self.batch_shape), dtype=p.dtype), p)
            return Tensor((u < p).astype(p.dtype))

    def entropy(self):
        # H = -p log p - (1 - p) log(1 - p) = softplus(l) - l sigmoid(l)
        return ops.softplus(self.logits) - self.logits * self.probs


# =============================================================================================
# The relaxed Bernoulli: binary Concrete / Gumbel-sigmoid (Maddison et al. 2017; Jang et al. 2017)
# =============================================================================================

def _logistic_noise(shape, rng, like):
    """log u − log(1 − u), u ~ U(0, 1): standard logistic noise (u = 0 is raised to the dtype's tiny)."""
    xp = backend.get_array_module(like)
    u = _like(_rng(rng).random(shape, dtype=like.dtype), like)
    u = xp.maximum(u, numpy.finfo(like.dtype).tiny)
    return xp.log(u) - xp.log1p(-u)


class LogitRelaxedBernoulli(Distribution):
    """The logit x = log(y / (1 − y)) of a binary Concrete variable y at temperature τ (Maddison et al. 2017, §3.3 and App. C):

        x = (l + log u − log(1 − u)) / τ,  u ~ U(0, 1)       a logistic with location l/τ and scale 1/τ
        log p(x) = log τ + l − τx − 2 softplus(l − τx)

    Maddison et al. recommend this space for the relaxed objective's densities: no log of a y that
    rounds to 0 or 1.  rsample is differentiable in the logits (τ is a fixed number)."""
    has_rsample = True

    def __init__(self, temperature, logits, validate_args=None):
        self.logits = _tensor(logits)
        super().__init__(self.logits.shape, validate_args)
        self._check(float(temperature) > 0, f"temperature must be positive, got {temperature!r}")
        self.temperature = float(temperature)

    def log_prob(self, value):
        # log p(x) = log τ + l − τx − 2 softplus(l − τx)
        d = self.logits - self.temperature * _tensor(value)
        return math.log(self.temperature) + d - 2 * ops.softplus(d)

    def rsample(self, shape=(), rng=None):
        """(l + logistic noise) / τ: differentiable in the logits."""
        noise = _logistic_noise(_size(shape, self.batch_shape), rng, self.logits.data)
        return (self.logits + noise) / self.temperature

    def sample(self, shape=(), rng=None):
        with no_grad():
            return self.rsample(shape, rng).detach()


class RelaxedBernoulli(Distribution):
    """The binary Concrete (Gumbel-sigmoid) distribution on (0, 1) at temperature τ (Maddison et al. 2017,
    §3.3 "binary Concrete"; Jang et al. 2017): y = σ(x), x ~ LogitRelaxedBernoulli(τ, l), α = e^l:

        y = σ((l + log u − log(1 − u)) / τ),  u ~ U(0, 1);   P(y > 1/2) = σ(l);   y -> Bernoulli(σ(l)) as τ -> 0
        p(y) = τ α y^(−τ−1) (1 − y)^(−τ−1) / (α y^(−τ) + (1 − y)^(−τ))^2
        log p(y) = log p_X(logit y) − log y − log(1 − y)      (change of variables; how it is computed)

    For a training objective prefer LogitRelaxedBernoulli's densities (no log of a y rounded to 0 or 1)."""
    has_rsample = True

    def __init__(self, temperature, logits, validate_args=None):
        self.base = LogitRelaxedBernoulli(temperature, logits, validate_args)
        super().__init__(self.base.batch_shape, validate_args)
        self.logits, self.temperature = self.base.logits, self.base.temperature

    probs = property(lambda self: ops.sigmoid(self.logits))

    def log_prob(self, value):
        value = _tensor(value)
        if self._validate:
            self._check(((value.data > 0) & (value.data < 1)).all(), "value must lie in (0, 1)")
        log_y, log_1my = ops.log(value), ops.log(1 - value)
        return self.base.log_prob(log_y - log_1my) - log_y - log_1my

    def rsample(self, shape=(), rng=None):
        """σ of the logit's rsample: differentiable in the logits."""
        return ops.sigmoid(self.base.rsample(shape, rng))

    def sample(self, shape=(), rng=None):
        with no_grad():
            return self.rsample(shape, rng).detach()


# =============================================================================================
# Categorical (logits over the last axis)
# =============================================================================================

class Categorical(Distribution):
    """A distribution over {0, ..., K-1} with probabilities softmax(logits) along the last axis."""

    def __init__(self, logits=None, probs=None, validate_args=None):
        if (logits is None) == (probs is None):
            raise ValueError("Categorical: give exactly one of logits= or probs=")
        if probs is not None:
            p = _tensor(probs)
            ok = (p.data >= 0).all() & (abs(p.data.sum(-1) - 1) < 1e-4).all()
            with numpy.errstate(divide="ignore"):
                logits = ops.log(p)
        logits = _tensor(logits)
        super().__init__(logits.shape[:-1], validate_args)
        if probs is not None:
            self._check(ok, "probs must be non-negative and sum to 1 along the last axis")
        self.num_categories = logits.shape[-1]
        self.logits = logits - ops.logsumexp(logits, axis=-1, keepdims=True)   # normalised: log p

    probs = property(lambda self: ops.exp(self.logits))

    @property
    def mean(self):
        """E[k] = sum_k k p_k (the categories as the integers 0..K-1)."""
        return ops.sum(self.probs * self._support(), axis=-1)

    @property
    def variance(self):
        """Var[k] = sum_k k^2 p_k - E[k]^2."""
        m = self.mean
        return ops.sum(self.probs * self._support() ** 2, axis=-1) - m * m

    def _support(self):
        return backend.get_array_module(self.logits.data).arange(self.num_categories, dtype=self.logits.dtype)

    def log_prob(self, value):
        """log p(value) for integer values of shape batch_shape (or broadcastable to it)."""
        value = backend.get_array_module(self.logits.data).asarray(unwrap(value))
        if self._validate:
            self._check(((value >= 0) & (value < self.num_categories) & (value == value.astype(int))).all(),
                        f"value must be an integer in [0, {self.num_categories})")
        one_hot = value.astype(int)[..., None] == self._support().astype(int)
        return ops.sum(ops.where(one_hot, self.logits, 0.0), axis=-1)     # picks log p_value; never 0 * log 0

    def sample(self, shape=(), rng=None):
        """Integer draws of shape `shape` + batch_shape (an array, not a Tensor: indices carry no gradient),
        by the Gumbel-max trick: argmax(logits + Gumbel noise)."""
        rng = _rng(rng)
        l = self.logits.data
        u = _like(rng.random(_size(shape, l.shape), dtype=l.dtype), l)
        xp = backend.get_array_module(l)
        return (l - xp.log(-xp.log(u))).argmax(-1)

    def entropy(self):
        # H = -sum p log p
        return -ops.sum(_weighted(self.probs, self.logits), axis=-1)


# =============================================================================================
# KL divergences in closed form, looked up by the pair of types
# =============================================================================================

_KL = {}


def register_kl(type_p, type_q):
    """Decorator: register fn(p, q) as KL(p || q) for this pair of types; returns fn."""
    def decorate(fn):
        _KL[type_p, type_q] = fn
        return fn
    return decorate


def kl_divergence(p, q):
    """KL(p || q) in closed form, elementwise over the batch."""
    for tp in type(p).__mro__:
        for tq in type(q).__mro__:
            if (tp, tq) in _KL:
                return _KL[tp, tq](p, q)
    raise NotImplementedError(f"kl_divergence: no closed form registered for "
                              f"{type(p).__name__} || {type(q).__name__}; add one with register_kl")


@register_kl(Normal, Normal)
def _kl_normal_normal(p, q):
    # KL(N(m1, s1^2) || N(m2, s2^2)) = log s2/s1 + (s1^2 + (m1 - m2)^2) / 2 s2^2 - 1/2, from the log scales
    r = ops.exp(p.log_scale - q.log_scale)           # s1 / s2, finite wherever the KL is
    d = q._standardize(p.loc - q.loc)
    return q.log_scale - p.log_scale + 0.5 * (r * r + d * d) - 0.5


def kl_standard_normal(p):
    """KL(N(mu, s^2) || N(0, I)) = 1/2 (mu^2 + s^2 - 1 - log s^2): the VAE's closed form (Kingma & Welling 2013, App. B)."""
    return 0.5 * (p.loc * p.loc + p.scale * p.scale - 1) - p.log_scale


class StandardNormal(Normal):
    """N(0, I) over vectors of `size`: a prior whose KL from a Normal is `kl_standard_normal`."""

    def __init__(self, size, dtype=None):
        xp = backend.xp()
        dtype = dtype or backend.default_dtype
        super().__init__(xp.zeros(size, dtype), xp.ones(size, dtype), validate_args=False)


register_kl(Normal, StandardNormal)(lambda p, q: kl_standard_normal(p))


@register_kl(Bernoulli, Bernoulli)
def _kl_bernoulli_bernoulli(p, q):
    # KL = s(a)(log s(a) - log s(b)) + s(-a)(log s(-a) - log s(-b)), with logits a, b
    a, b = p.logits, q.logits
    with numpy.errstate(invalid="ignore"):             # inf - inf at logits +-inf: weighted by 0 below
        return _weighted(ops.sigmoid(a), ops.log_sigmoid(a) - ops.log_sigmoid(b)) + \
            _weighted(ops.sigmoid(-a), ops.log_sigmoid(-a) - ops.log_sigmoid(-b))


@register_kl(Categorical, Categorical)
def _kl_categorical_categorical(p, q):
    # KL = sum_k p_k (log p_k - log q_k)
    return ops.sum(_weighted(p.probs, p.logits - q.logits), axis=-1)
