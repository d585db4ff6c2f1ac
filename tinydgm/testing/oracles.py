"""Exact answers for small models, as engine scalars: differentiate one with `gradient` for the exact gradient.

For a layered binary-latent model (the interface of `tinydgm.estimators.discrete`) every joint latent state h
(2^H of them, H = Σ_l n_l) is enumerated:

    ELBO(x)   = Σ_h q(h|x) [log p(x, h) − log q(h|x)]
    log p(x)  = log Σ_h p(x, h),          p(h|x) = p(x, h) / p(x)
    L_K(x)    = E[log 1/K Σ_k w_k],  w_k = p(x, h_k) / q(h_k|x),  h_1..h_K ~ q i.i.d.      (Burda et al. 2016, eq. 8)
              = Σ over multisets {h_1..h_K} of K!/Π_h c_h! · Π_k q(h_k|x) · log 1/K Σ_k w_k
                (L̂_K is symmetric in its samples, so the C(2^H + K − 1, K) multisets, each weighted by its number of
                orderings, replace the 2^{HK} ordered K-tuples)

A model that knows its own closed forms (the linear-Gaussian model) offers `closed_form_elbo(x)` and
`closed_form_log_px(x)`; the oracles call those.  Its L_K has no closed form: `quadrature_iwae_bound` writes the
expectation over K reparameterised draws as two one-dimensional integrals (Frullani's integral for the log).
Every oracle returns the mean over the examples x, so that its gradient is what an estimator's surrogate estimates
(the gradient of the batch mean).  The log-linear mixture and HMM (`tinydgm.models.loglinear`) get log p(x) and the
posterior by brute force in NumPy (`mixture_posterior`, `hmm_posterior`: every class, every state path).
"""
import itertools
import math

import numpy as np
import scipy.special

import tinydgm as td
from tinydgm import backend, estimators
from tinydgm.tensor import no_grad

MAX_TERMS = 200_000          # latent configurations (or multisets) × examples that an oracle will enumerate


# =============================================================================================
# Parameters by name and gradients
# =============================================================================================

def parameter_groups(model):
    """{"theta": [(name, Parameter)], "lambda": [(name, Parameter)]}: θ = generative_parameters(),
    λ = recognition_parameters(), named as in `model.named_parameters()` (else "theta.i", "lambda.i")."""
    names = {id(p): n for n, p in model.named_parameters()} if hasattr(model, "named_parameters") else {}
    return {group: [(names.get(id(p), f"{group}.{i}"), p) for i, p in enumerate(params)]
            for group, params in (("theta", model.generative_parameters()), ("lambda", model.recognition_parameters()))}


def named_parameters(model, groups=("theta", "lambda")):
    """[(name, Parameter)] of the chosen groups, θ first."""
    by_group = parameter_groups(model)
    return [item for g in groups for item in by_group[g]]


def gradient(model, scalar, groups=("theta", "lambda")):
    """d scalar / d parameter for every parameter of the chosen groups: {name: NumPy float64 array} (zeros where the
    scalar does not depend on it).  The .grad of every θ and λ parameter is cleared before and after."""
    params, every = named_parameters(model, groups), named_parameters(model)
    for _, p in every:
        p.grad = None
    scalar.backward()
    out = {n: np.zeros(p.shape) if p.grad is None else backend.to_numpy(p.grad).astype(np.float64) for n, p in params}
    for _, p in every:
        p.grad = None
    return out


def value(scalar):
    """A scalar Tensor's value as a Python float."""
    return float(backend.to_numpy(scalar.data))


# =============================================================================================
# Enumeration of a layered binary-latent model
# =============================================================================================

def latent_states(model, dtype=None):
    """Every joint latent state as [h_1, ..., h_L], each (2^H, n_l), 0/1 arrays on the model's backend."""
    sizes = list(model.layers[1:])
    total = sum(sizes)
    p = model.generative_parameters()[0].data
    states = ((np.arange(2 ** total)[:, None] >> np.arange(total)) & 1).astype(dtype or p.dtype)
    xp = backend.get_array_module(p)
    return [xp.asarray(s) for s in np.split(states, np.cumsum(sizes)[:-1], axis=1)]


def _check_size(terms, what):
    if terms > MAX_TERMS:
        raise ValueError(f"{what}: enumerating needs {terms:,} terms (more than MAX_TERMS = {MAX_TERMS:,}); "
                         "use fewer latent units, fewer examples or a smaller K")


def log_tables(model, x):
    """(log p(x_b, h), log q(h|x_b)) for every joint latent state h and example b: Tensors (2^H, B)."""
    x = td.tensor(x).data
    states = latent_states(model, x.dtype)
    n, b = len(states[0]), len(x)
    _check_size(n * b, "log_tables")
    xp = backend.get_array_module(x)
    hs = [xp.broadcast_to(h[:, None, :], (n, b, h.shape[-1])) for h in states]
    log_p = estimators.total(model.log_joint_terms(x, hs)[::-1])
    log_q = estimators.total(model.log_q_terms(hs, x))
    return log_p, log_q


def elbo(model, x):
    """mean_b ELBO(x_b) = mean_b Σ_h q(h|x_b) [log p(x_b, h) − log q(h|x_b)], an engine scalar in θ and λ."""
    if hasattr(model, "closed_form_elbo"):
        return model.closed_form_elbo(x)
    log_p, log_q = log_tables(model, x)
    return td.mean(td.sum(td.exp(log_q) * (log_p - log_q), axis=0))


def log_px(model, x):
    """mean_b log p(x_b) = mean_b log Σ_h p(x_b, h), an engine scalar (in θ; λ does not enter it)."""
    if hasattr(model, "closed_form_log_px"):
        return model.closed_form_log_px(x)
    log_p, _ = log_tables(model, x)
    return td.mean(td.logsumexp(log_p, axis=0))


def posterior(model, x):
    """(the joint states [h_1, ..., h_L], each (2^H, n_l); log p(h|x_b) as a Tensor (2^H, B)) of a layered binary-latent
    model (the linear-Gaussian model has its own closed form: `model.posterior(x)`)."""
    log_p, _ = log_tables(model, x)
    return latent_states(model, td.tensor(x).dtype), log_p - td.logsumexp(log_p, axis=0, keepdims=True)


def multisets(n, k):
    """All multisets of size k from n items as sorted index rows (M, k), M = C(n + k − 1, k), and the log of each
    one's number of orderings, log k! − Σ_i log c_i! (c_i: how often item i occurs)."""
    rows = np.array(list(itertools.combinations_with_replacement(range(n), k)), dtype=np.int64).reshape(-1, k)
    counts = np.zeros((len(rows), n))
    np.add.at(counts, (np.repeat(np.arange(len(rows)), k), rows.ravel()), 1)
    log_orderings = math.lgamma(k + 1) - np.sum([[math.lgamma(c + 1) for c in row] for row in counts], axis=1)
    return rows, log_orderings


def expected_bound(log_w, log_prob, k):
    """Σ over the multisets {h_1..h_K} of K states of P(the multiset) · log 1/K Σ_k w_k, from log w (N, B) and the
    log-probability of drawing each state (N, B) or (N, 1): E[L̂_K] when the states are all there is to draw."""
    rows, log_orderings = multisets(log_w.shape[0], k)
    xp = backend.get_array_module(log_w.data)
    rows, log_orderings = xp.asarray(rows), xp.asarray(log_orderings[:, None].astype(log_w.dtype))
    log_p_multiset = td.sum(log_prob[rows], axis=1) + log_orderings              # log P(the multiset) (M, B)
    bound = td.logsumexp(log_w[rows], axis=1) - math.log(k)                      # log 1/K Σ_k w_k     (M, B)
    return td.mean(td.sum(td.exp(log_p_multiset) * bound, axis=0))


def iwae_bound(model, x, k):
    """mean_b L_K(x_b), the expected importance-weighted bound with K = k samples from q, an engine scalar in θ and λ
    (L_1 is the ELBO).  A layered binary-latent model: exact, by enumerating the multisets of K joint latent states.
    A continuous model with a Gaussian q (the linear-Gaussian model): `quadrature_iwae_bound`, any K."""
    if k < 1:
        raise ValueError(f"iwae_bound: k must be >= 1, got {k}")
    if hasattr(model, "encode"):
        return quadrature_iwae_bound(model, x, k)
    x = td.tensor(x).data
    n = 2 ** sum(model.layers[1:])
    _check_size(math.comb(n + k - 1, k) * len(x), f"iwae_bound(k={k})")
    log_p, log_q = log_tables(model, x)
    return expected_bound(log_p - log_q, log_q, k)


# =============================================================================================
# L_K of a continuous model: the K-fold integral as two one-dimensional ones
# =============================================================================================

GRID, RADIUS, STEP = 401, 12.0, 0.2     # ε nodes per latent dimension on [−RADIUS, RADIUS]; the step in u = log t
MAX_CELLS = 5_000_000                   # ε nodes × u nodes × examples that `quadrature_iwae_bound` will hold
EXP_MAX = 700.0                         # e^700 is near float64's largest number


def normal_grid(d, n=None, radius=RADIUS):
    """Nodes ε (n^d, d) of a uniform grid on [−radius, radius]^d and weights ω ∝ N(ε; 0, I) summing to 1: the
    trapezoid rule for E_{ε ~ N(0, I)}[f(ε)], accurate to rounding for smooth f (its error falls faster than any
    power of the step)."""
    e = np.linspace(-radius, radius, GRID if n is None else n)
    grid = np.stack(np.meshgrid(*[e] * d, indexing="ij"), -1).reshape(-1, d)
    log_w = -0.5 * (grid ** 2).sum(1)
    return grid, np.exp(log_w - scipy.special.logsumexp(log_w))


def quadrature_iwae_bound(model, x, k, grid=None):
    """mean_b L_K(x_b) of a model with a Gaussian q(z|x) = N(μ, diag σ²) (`model.encode(x)`, `model.prior(dtype)`,
    `model.log_likelihood(x, z)`: the VAE's interface), an engine scalar in θ and λ.  With S = Σ_k w_k and
    Frullani's integral log S = ∫_0^∞ (e^{−t} − e^{−tS}) dt / t, and the K draws independent,

        L_K + log K = E[log S] = ∫ (exp(−e^u) − φ(e^u)^K) du over u = log t,    φ(t) = E_ε[exp(−t w(μ + σ ε))]

    so the K-fold integral is one over ε (`normal_grid`, z = μ + σ ε reparameterised, as IWAE draws it) and one over
    u (the trapezoid rule, step STEP), for one latent dimension (d = 1); `grid`: the ε nodes (default GRID).
    L_1 is the ELBO to rounding; on `strategies.linear_gaussians(latent=(1, 1))` the grid's error is below 1e-6 of
    |L_K| (tests/testing).
    The weights are scaled by p(x) (from the same grid, held as a constant) before they enter φ."""
    q = model.encode(x)
    b, d = q.loc.shape
    if d != 1:
        raise NotImplementedError(f"quadrature_iwae_bound: one latent dimension only (the grid over ε is fine enough "
                                  f"there), {model!r} has {d}")
    eps, omega = normal_grid(d, grid)
    xp = backend.get_array_module(q.loc.data)
    z = q.loc + q.scale * td.tensor(xp.asarray(eps[:, None, :].astype(q.loc.dtype)))           # (G, B, d)
    log_w = model.log_likelihood(x, z) + td.sum(model.prior(z.dtype).log_prob(z) - q.log_prob(z), axis=-1)
    lw = np.asarray(backend.to_numpy(log_w.data), dtype=np.float64)
    a = scipy.special.logsumexp(lw + np.log(omega)[:, None], axis=0)                            # log p(x) (B,)
    u = _u_grid(lw - a, omega, k)
    _check_size_cells(len(eps) * len(u) * b, k)
    as_tensor = lambda v: td.tensor(xp.asarray(np.asarray(v, dtype=np.float64).astype(q.loc.dtype)))  # noqa: E731
    scaled = log_w - as_tensor(a)                                                               # log w − log p(x)
    s = scaled[:, None, :] + as_tensor(u[None, :, None])                                        # log(t w) (G, U, B)
    s = td.where(s.data < EXP_MAX, s, EXP_MAX)           # exp(−e^s) is 0 beyond, in float64; no inf in its gradient
    phi = td.sum(as_tensor(omega[:, None, None]) * td.exp(-td.exp(s)), axis=0)                  # φ(e^u) (U, B)
    integrand = as_tensor(np.exp(-np.exp(u))[:, None]) - phi ** k
    return td.mean(td.sum(integrand, axis=0) * STEP + as_tensor(a) - math.log(k))


def _u_grid(scaled, omega, k, low=-40.0):
    """The u nodes where exp(−e^u) − φ(e^u)^K is not negligible (below 1e-17 at both ends), from the host values."""
    def integrand(u):
        s = np.minimum(u[None, :, None] + scaled[:, None, :], EXP_MAX)
        phi = (omega[:, None, None] * np.exp(-np.exp(s))).sum(0)
        return np.abs(np.exp(-np.exp(u))[:, None] - phi ** k).max(1)
    coarse = np.arange(low, EXP_MAX - 10, 1.0)
    alive = np.flatnonzero(integrand(coarse) > 1e-17)
    high = coarse[alive.max()] + 2.0 if len(alive) else 10.0
    return np.arange(low, high + STEP / 2, STEP)


def _check_size_cells(cells, k):
    if cells > MAX_CELLS:
        raise ValueError(f"quadrature_iwae_bound(k={k}): {cells:,} grid cells (more than MAX_CELLS = {MAX_CELLS:,}); "
                         "use fewer latent dimensions or fewer examples")


# =============================================================================================
# Log-linear models (the mixture and the HMM) by brute force, in NumPy float64
# =============================================================================================

def log_emission_by_definition(w, F, n_states):
    """log p(x | z, w) = wᵀf(x, z) − log Σ_x' exp(wᵀf(x', z)), (|X|, |Z|), one z at a time from the rows of F."""
    F = np.asarray(F.todense()) if hasattr(F, "todense") else np.asarray(F)
    out = []
    for z in range(n_states):
        scores = F[z::n_states] @ w                                   # rows (x, z), x-major
        out.append(scores - scipy.special.logsumexp(scores))
    return np.stack(out, axis=1)


def mixture_posterior(model, x):
    """(log p(x_i) (N,), p(z | x_i) (N, |Z|)) of a feature-rich mixture, by summing p(z) p(x_i | z) over z."""
    log_joint = (model.log_prior - scipy.special.logsumexp(model.log_prior)
                 + log_emission_by_definition(model.w, model.F, model.n_states))[np.asarray(x)]
    log_px_ = scipy.special.logsumexp(log_joint, axis=1)
    return log_px_, np.exp(log_joint - log_px_[:, None])


def hmm_paths(model, sentence):
    """(every state path z (K^T, T), log p(x, z) for each) of one sentence of word ids, by the product formula."""
    sentence = np.asarray(sentence)
    K, T = model.n_states, len(sentence)
    _check_size(K ** T, "hmm_paths")
    paths = np.array(list(itertools.product(range(K), repeat=T)), dtype=np.int64).reshape(-1, T)
    log_emit = log_emission_by_definition(model.w, model.F, K)
    log_p = np.log(model.start)[paths[:, 0]] + log_emit[sentence[None, :], paths].sum(1)
    for t in range(1, T):
        log_p = log_p + np.log(model.trans)[paths[:, t - 1], paths[:, t]]
    return paths, log_p


def hmm_posterior(model, sentence):
    """(log p(x), p(z_t = k | x) (T, K), Σ_t p(z_t = i, z_{t+1} = j | x) (K, K)) of one sentence, by summing over
    every path: the forward-backward algorithm's answers, from the definition."""
    paths, log_p = hmm_paths(model, sentence)
    log_px_ = scipy.special.logsumexp(log_p)
    post = np.exp(log_p - log_px_)
    K, T = model.n_states, paths.shape[1]
    gamma = np.stack([np.bincount(paths[:, t], post, K) for t in range(T)])
    xi = np.zeros((K, K))
    for t in range(T - 1):
        np.add.at(xi, (paths[:, t], paths[:, t + 1]), post)
    return log_px_, gamma, xi


# =============================================================================================
# Checking an oracle's gradient by central differences
# =============================================================================================

class OracleGradientError(AssertionError):
    """An oracle's engine gradient disagrees with central finite differences."""


def check_gradient(model, oracle, groups=("theta", "lambda"), eps=1e-6, rtol=1e-5, atol=1e-7):
    """The engine gradient of `oracle(model)` (an engine scalar) against central differences, one coordinate at a
    time: (f(θ + ε e_i) − f(θ − ε e_i)) / 2ε for every coordinate i of every parameter of `groups` (float64 models;
    each parameter is restored).  Returns the largest |difference|; raises OracleGradientError naming the worst
    coordinate when |engine − numeric| > atol + rtol |numeric| anywhere."""
    exact = gradient(model, oracle(model), groups)
    worst, worst_failure, message = 0.0, 0.0, None
    for name, p in named_parameters(model, groups):
        if np.dtype(p.dtype) != np.float64:
            raise TypeError(f"check_gradient: needs a float64 model, {name} is {p.dtype}")
        flat = p.data.reshape(-1)
        for i in range(flat.size):
            keep = float(flat[i])
            with no_grad():
                flat[i] = keep + eps
                up = value(oracle(model))
                flat[i] = keep - eps
                down = value(oracle(model))
            flat[i] = keep
            numeric = (up - down) / (2 * eps)
            engine = float(exact[name].reshape(-1)[i])
            gap = abs(engine - numeric)
            if gap > atol + rtol * abs(numeric) and gap > worst_failure:
                index = [int(j) for j in np.unravel_index(i, p.shape)]
                message = f"{name}{index}: engine {engine:.10g}, central differences {numeric:.10g}"
                worst_failure = gap
            worst = max(worst, gap)
    if message is not None:
        raise OracleGradientError(f"check_gradient: the oracle's gradient disagrees with central differences "
                                  f"(eps={eps}, rtol={rtol}, atol={atol}); worst {message}")
    return worst
