"""Log-linear categorical and mixture (Berg-Kirkpatrick et al. 2010): by hand = engine, EM, the M-step's
closed forms, and the L-BFGS that direct training resumes."""
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

import tinydgm as td
from tinydgm import checkpoint
from tinydgm.models.loglinear import by_hand, model
from tinydgm.models.loglinear import mixture as ll
from tinydgm.models.loglinear.lbfgs import LBFGS, minimize


def random_features(rng, n_x, n_z, n_feat, density=0.4):
    """A sparse 0/1 F of shape (n_x·n_z, n_feat) with every (x, z) row firing at least one feature."""
    F = (rng.random((n_x * n_z, n_feat)) < density).astype(float)
    F[np.arange(n_x * n_z), rng.integers(0, n_feat, n_x * n_z)] = 1.0
    return sp.csr_matrix(F)


small = st.tuples(st.integers(2, 5), st.integers(1, 3), st.integers(2, 6), st.integers(0, 2**16))


# ---- by hand = engine: the gradients of `by_hand.py` against the engine's of `model.py` ---------------

@settings(max_examples=15)
@given(small, st.floats(0.0, 1.0))
def test_m_step_gradient_by_hand_equals_engine(sizes, kappa):
    n_x, n_z, n_feat, seed = sizes
    rng = np.random.default_rng(seed)
    F = random_features(rng, n_x, n_z, n_feat)
    w, counts = rng.normal(size=n_feat), rng.gamma(1.0, size=(n_x, n_z))
    value, grad = by_hand.m_step_objective(w, F, counts, kappa)
    engine = td.grad(lambda w: model.expected_complete_log_likelihood(w, F.toarray(), counts, kappa))(w)
    np.testing.assert_allclose(-grad, engine, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(-value, model.expected_complete_log_likelihood(td.tensor(w), F.toarray(), counts,
                                                                              kappa).data, rtol=1e-10)


@settings(max_examples=15)
@given(small)
def test_expected_features_by_hand_equal_the_engine_gradient_of_the_log_partition(sizes):
    n_x, n_z, n_feat, seed = sizes
    rng = np.random.default_rng(seed)
    F = random_features(rng, n_x, n_z, n_feat)
    w = rng.normal(size=n_feat)
    expected = by_hand.expected_features(w, F, n_z)
    for z in range(n_z):            # ∇_w log Z_z(w) = E[f(X, z) | z, w]
        g = td.grad(lambda w: td.sum(model.log_partition(w, F.toarray(), n_z)[z]))(w)
        np.testing.assert_allclose(expected[z], g, rtol=1e-8, atol=1e-12)


@settings(max_examples=10)
@given(small)
def test_e_step_counts_by_hand_equal_the_engine_gradient_of_the_marginal_likelihood(sizes):
    # ∇_w log p(x) = Σ_i Σ_z q(z | x_i) [f(x_i, z) − E f(·, z)]: the E-step's counts in the M-step gradient.
    n_x, n_z, n_feat, seed = sizes
    rng = np.random.default_rng(seed)
    F = random_features(rng, n_x, n_z, n_feat)
    mixture = model.random_mixture(F, n_z, rng, scale=1.0)
    x = rng.integers(0, n_x, 20)
    _, counts = ll.e_step(mixture, x)
    closed = by_hand.feature_gradient(counts, model.log_conditional(mixture.w, F, n_z), F)
    engine = td.grad(model.mixture_log_likelihood, argnums=1)(mixture.log_prior, mixture.w, F.toarray(), x)
    np.testing.assert_allclose(closed, engine, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ll.marginal_log_likelihood(mixture, x),
                               model.mixture_log_likelihood(td.tensor(mixture.log_prior), td.tensor(mixture.w),
                                                            F.toarray(), x).data, rtol=1e-10)


# ---- the M-step's closed forms and EM for the mixture ------------------------------------------------------

@settings(max_examples=10)
@given(st.integers(2, 6), st.integers(1, 4), st.integers(0, 2**16))
def test_indicator_features_lbfgs_m_step_is_the_multinomial_m_step(n_x, n_z, seed):
    rng = np.random.default_rng(seed)
    F = sp.identity(n_x * n_z, format="csr")                         # one indicator per (x, z)
    counts = rng.gamma(2.0, size=(n_x, n_z)) + 0.1
    w = by_hand.m_step_weights(np.zeros(n_x * n_z), F, counts, kappa=0.0, maxiter=200)
    np.testing.assert_allclose(np.exp(model.log_conditional(w, F, n_z)), by_hand.multinomial_m_step(counts),
                               atol=1e-5)


@settings(max_examples=15)
@given(small, st.sampled_from([0.0, 0.1]))
def test_em_never_decreases_the_objective(sizes, kappa):
    # EM with an L-BFGS M-step is generalised EM: log p(x) − κ‖w‖² never goes down.
    n_x, n_z, n_feat, seed = sizes
    rng = np.random.default_rng(seed)
    F = random_features(rng, n_x, n_z, n_feat)
    mixture = model.random_mixture(F, n_z, rng, scale=1.0)
    x = rng.integers(0, n_x, 30)
    history = []
    for _ in range(8):
        history.append(ll.marginal_log_likelihood(mixture, x) - kappa * mixture.w @ mixture.w)
        _, counts = ll.e_step(mixture, x)
        mixture = ll.m_step(mixture, counts, kappa)
    history.append(ll.marginal_log_likelihood(mixture, x) - kappa * mixture.w @ mixture.w)
    assert np.all(np.diff(history) >= -1e-8 * np.abs(history[:-1]).max()), history


def bayes_counts(prior, p_x_given_z, x):
    """q(z | x_i) = p(z) p(x_i | z) / Σ_z' p(z') p(x_i | z'), and e(x, z) = Σ_i q(z | x_i) [x_i = x]."""
    joint = prior * p_x_given_z[x]                                       # (N, |Z|), one row per datum
    q = joint / joint.sum(axis=1, keepdims=True)
    counts = np.array([q[x == v].sum(axis=0) for v in range(len(p_x_given_z))])
    return q, counts


def softmax_over_x(w, F, n_z):
    s = (F @ w).reshape(-1, n_z)
    return np.exp(s) / np.exp(s).sum(axis=0)


@pytest.mark.parametrize("seed", range(5))
def test_mixture_m_step_is_normalised_posterior_counts(seed):
    rng = np.random.default_rng(seed)
    n_x, n_z = 3 + seed % 2, 2 + seed % 2
    F = sp.identity(n_x * n_z, format="csr")                             # indicators: a multinomial mixture
    prior = rng.dirichlet(np.ones(n_z))
    mixture = model.Mixture(np.log(prior), rng.normal(size=n_x * n_z), F)
    x = np.concatenate([np.arange(n_x), rng.integers(0, n_x, 10)])      # every x seen: a finite optimum
    q, counts = bayes_counts(prior, softmax_over_x(mixture.w, F, n_z), x)
    q_lib, counts_lib = ll.e_step(mixture, x)
    np.testing.assert_allclose(q_lib, q, atol=1e-12)
    np.testing.assert_allclose(counts_lib, counts, atol=1e-12)
    new = ll.m_step(mixture, counts_lib, kappa=0.0, maxiter=500)
    np.testing.assert_allclose(np.exp(new.log_prior), q.mean(axis=0), atol=1e-12)   # p(z) ∝ Σ_i q(z | x_i)
    # p(x | z) ∝ e(x, z), up to L-BFGS-B's stopping rule (relative change of ℓ below 2e-9)
    np.testing.assert_allclose(softmax_over_x(new.w, F, n_z), counts / counts.sum(axis=0), atol=5e-4)


@pytest.mark.parametrize("kappa", [0.0, 0.1])
@pytest.mark.parametrize("seed", range(4))
def test_every_mixture_m_step_gives_distributions(seed, kappa):
    rng = np.random.default_rng(seed)
    n_x, n_z, n_feat = 5, 3, 6
    F = random_features(rng, n_x, n_z, n_feat)
    mixture = model.random_mixture(F, n_z, rng, scale=1.0)
    x = rng.integers(0, n_x, 20)
    for _ in range(2):
        mixture = ll.m_step(mixture, ll.e_step(mixture, x)[1], kappa)
        np.testing.assert_allclose(np.exp(mixture.log_prior).sum(), 1, atol=1e-12)
        np.testing.assert_allclose(np.exp(model.log_conditional(mixture.w, F, n_z)).sum(axis=0), np.ones(n_z),
                                   atol=1e-12)
        assert not np.allclose(mixture.log_prior, -np.log(n_z))           # p(z) moved off uniform


# ---- the L-BFGS that direct training resumes -----------------------------------------------------------

def rosen(x):
    """Rosenbrock's function and its gradient (minimum 0 at x = 1)."""
    v = (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()
    g = np.zeros_like(x)
    g[:-1] = -400 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2 * (1 - x[:-1])
    g[1:] += 200 * (x[1:] - x[:-1] ** 2)
    return v, g


def test_lbfgs_minimises_a_quadratic_and_rosenbrock():
    rng = np.random.default_rng(0)
    Q = rng.normal(size=(20, 20))
    Q = Q @ Q.T + np.eye(20)
    b = rng.normal(size=20)
    x, _ = minimize(lambda x: (0.5 * x @ Q @ x - b @ x, Q @ x - b), np.zeros(20), 200)
    np.testing.assert_allclose(x, np.linalg.solve(Q, b), atol=1e-5)

    x, _ = minimize(rosen, np.zeros(5), 500)
    np.testing.assert_allclose(x, np.ones(5), atol=1e-4)


@pytest.mark.parametrize("m, first", [(10, 5), (3, 7), (10, 0)])
def test_lbfgs_resumed_from_a_checkpoint_continues_bit_for_bit(tmp_path, m, first):
    x0 = np.random.default_rng(0).normal(size=6)
    whole = LBFGS(rosen, x0, m)
    whole.run(first + 5)

    part = LBFGS(rosen, x0, m)
    part.run(first)
    checkpoint.save_state(tmp_path / "last", {"lbfgs": part.state()})
    state, _ = checkpoint.load_state(tmp_path / "last")
    resumed = LBFGS(rosen, np.zeros(6), 1)
    resumed.load_state(state["lbfgs"])
    x, value = resumed.run(5)
    assert np.array_equal(x, whole.x) and value == whole.value
    assert np.array_equal(resumed.grad, whole.grad) and resumed.evaluations == whole.evaluations
    assert len(resumed.pairs) == len(whole.pairs) and resumed.pairs.maxlen == m
    for (s1, y1, r1), (s2, y2, r2) in zip(resumed.pairs, whole.pairs):
        assert np.array_equal(s1, s2) and np.array_equal(y1, y2) and r1 == r2

    again = LBFGS.from_state(rosen, state["lbfgs"])                      # without evaluating fun at x0
    assert again.evaluations == part.evaluations
    assert np.array_equal(again.run(5)[0], whole.x)


def test_lbfgs_state_is_a_copy():
    opt = LBFGS(rosen, np.zeros(4))
    opt.run(3)
    state = opt.state()
    state["x"][...] = 7
    state["s"][...] = 7
    assert not np.any(opt.x == 7) and not any(np.any(s == 7) for s, _, _ in opt.pairs)
