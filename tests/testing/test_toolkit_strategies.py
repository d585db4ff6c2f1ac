"""tinydgm.testing's strategies: bounded sizes, float64, parameters in range, a repr that rebuilds the example."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import tinydgm as td
from tinydgm.distributions import Bernoulli, Categorical, LogitRelaxedBernoulli, Normal
from tinydgm.models.wake_sleep import HelmholtzMachine
from tinydgm.testing import strategies
from tinydgm.testing.models import (LinearGaussian, feature_hmm, feature_mixture, linear_gaussian,  # noqa: F401
                                    sigmoid_belief_net)                                     # (eval of reprs)


@settings(max_examples=30)
@given(case=strategies.sbn_cases(), max_latent=st.integers(1, 6), data=st.data())
def test_sigmoid_belief_nets_are_small_float64_helmholtz_machines(case, max_latent, data):
    model, x = case
    assert isinstance(model, HelmholtzMachine)
    assert 2 <= model.layers[0] <= 5 and 1 <= len(model.layers) - 1 <= 2
    assert all(1 <= w <= 3 for w in model.layers[1:]) and sum(model.layers[1:]) <= 6
    assert all(p.dtype == np.float64 and np.abs(p.data).max() <= model.scale for p in model.parameters())
    assert x.dtype == np.float64 and x.shape[1] == model.layers[0] and 1 <= len(x) <= 3 and set(np.unique(x)) <= {0.0, 1.0}
    again = eval(repr(model))
    for (n, p), (n2, p2) in zip(model.named_parameters(), again.named_parameters()):
        assert n == n2 and np.array_equal(p.data, p2.data)
    small = data.draw(strategies.sigmoid_belief_nets(max_latent=max_latent))
    assert sum(small.layers[1:]) <= max_latent


@settings(max_examples=20)
@given(case=strategies.linear_gaussian_cases())
def test_linear_gaussians_are_small_and_rebuild_from_their_repr(case):
    model, x = case
    assert isinstance(model, LinearGaussian) and 1 <= model.latent <= 2 and 1 <= model.observed <= 3
    assert x.shape[1] == model.observed and np.all(np.abs(x) <= 3)
    again = eval(repr(model))
    assert all(np.array_equal(p.data, q.data) for p, q in zip(model.parameters(), again.parameters()))
    assert np.all(np.isfinite(model.elbo(x, rng=np.random.default_rng(0)).data))


@settings(max_examples=20)
@given(normal=strategies.normal_parameters(), logits=strategies.bernoulli_logits(),
       cat=strategies.categorical_logits(), relaxed=strategies.relaxed_bernoulli_parameters())
def test_distribution_parameters_make_valid_distributions(normal, logits, cat, relaxed):
    loc, scale = normal
    assert loc.shape == scale.shape and loc.dtype == np.float64 and np.all(scale > 0)
    assert np.all(np.isfinite(Normal(loc, scale).log_prob(loc).data))
    assert np.all(np.isfinite(Bernoulli(logits=td.tensor(logits)).log_prob(np.zeros(logits.shape)).data))
    assert cat.shape[-1] >= 2
    assert np.all(np.isfinite(Categorical(logits=td.tensor(cat)).log_prob(np.zeros(cat.shape[:-1], dtype=int)).data))
    temperature, relaxed_logits = relaxed
    z = LogitRelaxedBernoulli(temperature, td.tensor(relaxed_logits)).rsample(rng=np.random.default_rng(0))
    assert 0.1 <= temperature <= 2 and np.all(np.isfinite(z.data))


@settings(max_examples=20)
@given(mix=strategies.mixture_cases(), chain=strategies.hmm_cases())
def test_log_linear_cases_are_small_and_rebuild_from_their_repr(mix, chain):
    """At most 3 classes or states, sentences of at most 4 words (<= 81 paths), features [identity, bits] ⊗ e_z."""
    model, x = mix
    assert 2 <= model.n_states <= 3 and model.F.shape[0] % model.n_states == 0
    assert np.all((0 <= x) & (x < model.F.shape[0] // model.n_states)) and 1 <= len(x) <= 6
    again = eval(repr(model))
    assert np.array_equal(again.w, model.w) and np.array_equal(again.log_prior, model.log_prior)
    hmm, sentences = chain
    assert 2 <= hmm.n_states <= 3 and 1 <= len(sentences) <= 3 and all(1 <= len(s) <= 4 for s in sentences)
    assert np.allclose(hmm.trans.sum(1), 1) and np.isclose(hmm.start.sum(), 1)
    again = eval(repr(hmm))
    assert np.array_equal(again.trans, hmm.trans) and (again.F != hmm.F).nnz == 0
