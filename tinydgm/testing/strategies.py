"""Hypothesis strategies for small models with exact answers, and for distribution parameters.

Every model is float64 and small enough that each example runs in milliseconds: a sigmoid belief net has at most
`max_latent` binary latent units in all (2^6 = 64 joint states by default), a linear-Gaussian model d <= 2 latent
and D <= 3 observed dimensions, a mixture or HMM at most 3 classes or states (and sentences of at most 4 words).  Parameters come from a seed drawn by hypothesis (the repr of an example is the call
that rebuilds it), bounded by a drawn `scale`.  A "case" is a (model, x) pair: the model and a few observations.
"""
import collections

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinydgm.testing.models import feature_hmm, feature_mixture, linear_gaussian, sigmoid_belief_net

Case = collections.namedtuple("Case", "model x")
Case.__doc__ = "A model and a batch of observations x (NumPy float64, one row per example)."

SEEDS = st.integers(0, 2 ** 32 - 1)


def scales(bounds):
    """A parameter scale s drawn from `bounds` (low, high), rounded to 3 decimals so that the repr rebuilds it."""
    return st.floats(*bounds, allow_nan=False).map(lambda a: round(a, 3))


# =============================================================================================
# Sigmoid belief nets (Helmholtz machines) and binary images
# =============================================================================================

@st.composite
def sigmoid_belief_nets(draw, depth=(1, 2), width=(1, 3), visible=(2, 5), scale=(0.25, 3.0), max_latent=6):
    """HelmholtzMachine (p and q) of float64: `depth` hidden layers of `width` units (at most `max_latent` in all),
    `visible` units, every parameter U(−s, s) with s drawn from `scale`."""
    if max_latent < depth[0] * width[0]:
        raise ValueError(f"sigmoid_belief_nets: max_latent = {max_latent} leaves no room for {depth[0]} layers")
    n_layers = draw(st.integers(depth[0], min(depth[1], max_latent // width[0])))
    widths, left = [], max_latent
    for i in range(n_layers):
        most = min(width[1], left - width[0] * (n_layers - i - 1))
        widths.append(draw(st.integers(width[0], most)))
        left -= widths[-1]
    v = draw(st.integers(*visible))
    s = draw(scales(scale))
    return sigmoid_belief_net((v, *widths), scale=s, seed=draw(SEEDS))


def binary_images(visible, examples=(1, 3)):
    """A batch of binary images (n, visible) as float64 0/1, n drawn from `examples`."""
    return hnp.arrays(np.bool_, st.tuples(st.integers(*examples), st.just(visible))).map(lambda a: a.astype(np.float64))


@st.composite
def sbn_cases(draw, examples=(1, 3), **nets):
    """Case(a sigmoid belief net from `sigmoid_belief_nets(**nets)`, binary images x for it)."""
    model = draw(sigmoid_belief_nets(**nets))
    return Case(model, draw(binary_images(model.layers[0], examples)))


# =============================================================================================
# Linear-Gaussian models
# =============================================================================================

@st.composite
def linear_gaussians(draw, latent=(1, 2), observed=(1, 3), scale=(0.25, 1.5)):
    """LinearGaussian (p(z) = N(0, I), p(x|z) = N(z W + b, s² I), q(z|x) = N(x A + c, diag σ²)), float64,
    parameters U(−s, s)."""
    s = draw(scales(scale))
    return linear_gaussian(draw(st.integers(*latent)), draw(st.integers(*observed)), scale=s, seed=draw(SEEDS))


@st.composite
def linear_gaussian_cases(draw, examples=(1, 3), **models):
    """Case(a linear-Gaussian model, observations x in [−3, 3])."""
    model = draw(linear_gaussians(**models))
    x = draw(hnp.arrays(np.float64, (draw(st.integers(*examples)), model.observed),
                        elements=st.floats(-3, 3, allow_nan=False)))
    return Case(model, x)


# =============================================================================================
# Feature-rich mixtures and featurized HMMs, with brute-force posteriors (`oracles.mixture_posterior`, `hmm_posterior`)
# =============================================================================================

@st.composite
def feature_mixtures(draw, states=(2, 3), outcomes=(2, 5), features=(0, 2), scale=(0.25, 2.0)):
    """A feature-rich mixture (`models.feature_mixture`): f(x, z) = [word identity, random bits] ⊗ e_z."""
    s = draw(scales(scale))
    return feature_mixture(draw(st.integers(*states)), draw(st.integers(*outcomes)), draw(st.integers(*features)),
                           scale=s, seed=draw(SEEDS))


@st.composite
def mixture_cases(draw, examples=(1, 6), **mixtures):
    """Case(a feature-rich mixture, observed outcomes x: int array (N,))."""
    model = draw(feature_mixtures(**mixtures))
    n_x = model.F.shape[0] // model.n_states
    return Case(model, np.array(draw(st.lists(st.integers(0, n_x - 1), min_size=examples[0], max_size=examples[1]))))


@st.composite
def feature_hmms(draw, states=(2, 3), vocabulary=(2, 4), features=(0, 2), scale=(0.25, 2.0)):
    """A featurized HMM (`models.feature_hmm`), π and A softmaxes of bounded logits."""
    s = draw(scales(scale))
    return feature_hmm(draw(st.integers(*states)), draw(st.integers(*vocabulary)), draw(st.integers(*features)),
                       scale=s, seed=draw(SEEDS))


@st.composite
def hmm_cases(draw, sentences=(1, 3), length=(1, 4), **hmms):
    """Case(a featurized HMM, sentences: a list of int arrays of word ids), at most 3^4 = 81 paths per sentence."""
    model = draw(feature_hmms(**hmms))
    n_x = model.F.shape[0] // model.n_states
    sentence = st.lists(st.integers(0, n_x - 1), min_size=length[0], max_size=length[1]).map(np.array)
    return Case(model, draw(st.lists(sentence, min_size=sentences[0], max_size=sentences[1])))


# =============================================================================================
# Distribution parameters (float64 arrays)
# =============================================================================================

def shapes(max_dims=2, max_side=4):
    """Array shapes with 0 to `max_dims` axes of 1 to `max_side`."""
    return hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=1, max_side=max_side)


def _values(shape, low, high):
    return hnp.arrays(np.float64, shape, elements=st.floats(low, high, allow_nan=False, allow_infinity=False))


@st.composite
def normal_parameters(draw, shape=None, loc=(-3.0, 3.0), scale=(0.1, 3.0)):
    """(loc, scale) arrays of one shape for Normal(loc, scale)."""
    shape = draw(shapes()) if shape is None else shape
    return draw(_values(shape, *loc)), draw(_values(shape, *scale))


def bernoulli_logits(shape=None, logits=(-8.0, 8.0)):
    """Logits for Bernoulli(logits=...)."""
    return shapes().flatmap(lambda s: _values(s, *logits)) if shape is None else _values(shape, *logits)


@st.composite
def categorical_logits(draw, categories=(2, 5), batch=None, logits=(-5.0, 5.0)):
    """Logits (..., n) for Categorical(logits=...), n >= 2 categories along the last axis."""
    batch = draw(shapes(max_dims=1)) if batch is None else batch
    return draw(_values(tuple(batch) + (draw(st.integers(*categories)),), *logits))


@st.composite
def relaxed_bernoulli_parameters(draw, shape=None, temperature=(0.1, 2.0), logits=(-5.0, 5.0)):
    """(temperature, logits) for RelaxedBernoulli / LogitRelaxedBernoulli (binary Concrete, Maddison et al. 2017)."""
    shape = draw(shapes()) if shape is None else shape
    return draw(st.floats(*temperature, allow_nan=False)), draw(_values(shape, *logits))
