"""`check_estimator`: property-test a gradient estimator against exact answers on small drawn models.

For each of a few models drawn by hypothesis (a seeded run, no shrinking), by the estimator's `claim`:

    "unbiased"    mean of its gradient draws = the exact gradient of its `target` (every coordinate of θ and λ,
                  `stats.assert_unbiased`), and its `bound` draws = the exact value of the target
    "consistent"  the bias of its gradient falls with K (`stats.assert_consistent`), and its bound stays below
                  log p(x) and rises with K (`stats.assert_bound`)
    "biased"      no statistical claim
    first         the estimator is held: its own running statistics fixed (`Estimator.hold_statistics`; the values
                  of `PREPARE[name]`), so that every draw comes from the one state its claim is about
    every claim   finite at extreme parameters (|weights| up to `extreme`), the same draws from the same seed
                  (bit for bit), and the same gradient on CuPy as on NumPy where a GPU is present (else skipped)

targets:  "elbo" -> `oracles.elbo` (θ and λ);  "L_K" -> `oracles.iwae_bound` with the estimator's k (θ and λ; by
          enumeration on a sigmoid belief net, by quadrature on a linear-Gaussian model with one latent dimension);
          "log p(x)" -> `oracles.log_px` (θ only: λ does not enter log p(x); wake-sleep's λ follows its own objective)

The false-alarm rate: each statistical assertion gets alpha / (2 × examples), so a correct estimator fails the whole
call with probability at most alpha (a union bound over the examples and the two assertions of each).
"""
import collections
import copy
import math
import zlib

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

import tinydgm as td
from tinydgm import backend, estimators
from tinydgm.testing import oracles, stats
from tinydgm.testing.models import sigmoid_belief_net
from tinydgm.testing.strategies import linear_gaussian_cases, sbn_cases

Target = collections.namedtuple("Target", "oracle groups")
Target.__doc__ = "An estimator's target: oracle(model, x, estimator) -> an engine scalar; the groups it covers."

TARGETS = {
    "elbo": Target(lambda model, x, est: oracles.elbo(model, x), ("theta", "lambda")),
    "L_K": Target(lambda model, x, est: oracles.iwae_bound(model, x, est.k), ("theta", "lambda")),
    "log p(x)": Target(lambda model, x, est: oracles.log_px(model, x), ("theta",)),
}

Report = collections.namedtuple("Report", "name claim target examples")
Report.__doc__ = ("What check_estimator saw: the estimator's name, claim and target, and per example a dict "
                  "(model, draws, the Outcome of each assertion, cupy: 'same' or why skipped).")


# =============================================================================================
# Holding an estimator's own statistics
# =============================================================================================

def hold(**values):
    """prepare(est): hold the estimator's own running statistics fixed, at `values` where given, through the public
    hook `est.hold_statistics(**values)` (`tinydgm.estimators.Estimator`; a user's estimator with statistics of its
    own overrides it).  An estimator without the hook is taken as it is."""
    def prepare(est):
        hook = getattr(est, "hold_statistics", None)
        if hook is None and values:
            raise TypeError(f"check_estimator: {est!r} has no hold_statistics to hold {', '.join(values)}")
        if hook is not None:
            hook(**values)
    return prepare


PREPARE = {     # by estimator name, where the held state is not the fresh one (every other: hold())
    "nvil": hold(c=-3.0, v=1.0),                   # centred by c = −3 nats, not scaled (v <= 1): unbiased for ∇ ELBO
    "score-function-baseline": hold(baseline=-3.0),     # fresh, it has no baseline: b = −3 nats, as after one batch
}


def _snapshot(est):
    return copy.deepcopy(est.state_dict())


def _restore(est, state):
    if state:
        est.load_state_dict(copy.deepcopy(state))


# =============================================================================================
# Draws
# =============================================================================================

def _one(est, model, x, rng, groups, state):
    """One estimate: ({name: gradient}, the bound's mean over the batch), from the estimator's held state."""
    _restore(est, state)
    for p in est.parameters():
        p.grad = None
    objective = est.objective(model, x, rng)
    g = oracles.gradient(model, objective.surrogate, groups)
    for p in est.parameters():
        p.grad = None
    return g, float(np.mean(backend.to_numpy(objective.bound)))


def draw_estimates(est, model, x, n, rng, groups=("theta", "lambda"), state=None):
    """n independent estimates: ({name: array (n, ...)}, bounds (n,)); the estimator's state is restored before each."""
    grads, bounds = collections.defaultdict(list), []
    for _ in range(n):
        g, b = _one(est, model, x, rng, groups, state)
        for k, v in g.items():
            grads[k].append(v)
        bounds.append(b)
    return {k: np.stack(v) for k, v in grads.items()}, np.array(bounds)


def _concat(a, b):
    return {k: np.concatenate([a[k], b[k]]) for k in a}


def _adaptive(est, model, x, rng, groups, state, exact, draws, max_draws, alpha, detect):
    """Draws until a bias of `detect` × ‖exact‖ would be caught with probability >= 1/2 (judged from the standard errors
    alone, never from the means, so the z-test's false-alarm rate stands), doubling up to `max_draws`."""
    grads, bounds = draw_estimates(est, model, x, draws, rng, groups, state)
    scale = np.sqrt(sum(float((v ** 2).sum()) for v in exact.values()))
    while len(bounds) < max_draws:
        X, _, _ = stats.flatten(grads)
        t = stats.t_quantile(1 - alpha / (2 * X.shape[1]), len(X) - 1)
        if t * np.linalg.norm(X.std(0, ddof=1) / math.sqrt(len(X))) <= detect * scale:
            break
        more, more_bounds = draw_estimates(est, model, x, min(len(bounds), max_draws - len(bounds)), rng, groups, state)
        grads, bounds = _concat(grads, more), np.concatenate([bounds, more_bounds])
    return grads, bounds


def _adaptive_by_k(made, model, x, rng, groups, exact, draws, max_draws, alpha, detect, shrink, bound_detect):
    """Draws at each K until a bias that does not fall, of `detect` × ‖exact‖, and a bound error of `bound_detect`
    nats would each be caught with probability >= 1/2 (judged from the standard errors alone), doubling up to
    `max_draws`."""
    states = {k: _snapshot(est) for k, est in made.items()}
    out = {k: draw_estimates(est, model, x, draws, rng, groups, states[k]) for k, est in made.items()}
    scale = np.sqrt(sum(float((v ** 2).sum()) for v in exact.values()))
    ks = sorted(made)
    while len(out[ks[0]][1]) < max_draws:
        n = len(out[ks[0]][1])
        se = {k: stats.flatten(out[k][0])[0].std(0, ddof=1) / math.sqrt(n) for k in ks}
        t = stats.t_quantile(1 - alpha / len(ks), n - 1)
        t_bound = stats.t_quantile(1 - alpha / (len(ks) * (len(ks) + 1) // 2), n - 1)
        bound_se = sorted(out[k][1].std(ddof=1) / math.sqrt(n) for k in ks)[-2:]       # the largest pair's SE
        seen = stats.fall_resolution(se[ks[0]], se[ks[-1]], t, shrink) <= detect * scale
        if seen and t_bound * math.hypot(*bound_se) <= bound_detect:
            break
        more = min(n, max_draws - n)
        for k, est in made.items():
            g, b = draw_estimates(est, model, x, more, rng, groups, states[k])
            out[k] = (_concat(out[k][0], g), np.concatenate([out[k][1], b]))
    return {k: v[0] for k, v in out.items()}, {k: v[1] for k, v in out.items()}


# =============================================================================================
# The deterministic checks
# =============================================================================================

def _first_difference(a, b):
    for k in a:
        if not np.array_equal(a[k], b[k], equal_nan=True):
            i = int(np.argmax(np.abs(a[k] - b[k]).reshape(-1)) if np.all(np.isfinite(a[k] - b[k])) else 0)
            index = [int(j) for j in np.unravel_index(i, a[k].shape)]
            return f"{k}{index}: {a[k].reshape(-1)[i]!r} then {b[k].reshape(-1)[i]!r}"
    return None


def check_deterministic(est, model, x, seed, groups, state):
    """Two estimates from generators seeded alike are identical, bit for bit."""
    g1, b1 = _one(est, model, x, np.random.default_rng(seed), groups, state)
    g2, b2 = _one(est, model, x, np.random.default_rng(seed), groups, state)
    same_bound = b1 == b2 or (math.isnan(b1) and math.isnan(b2))
    diff = _first_difference(g1, g2) or (None if same_bound else f"bound: {b1!r} then {b2!r}")
    if diff:
        raise AssertionError(f"check_estimator: {est!r} is not deterministic given the seed {seed}: {diff}")


def check_finite(est, model, x, seed, extreme, state):
    """With the parameters scaled so that the largest |weight| is `extreme`, the gradient and bound are finite.
    Parameters named log_* (log-scales, as the linear-Gaussian model's) are scaled to ±log(extreme) instead."""
    big = copy.deepcopy(model)
    params = oracles.named_parameters(big)
    for log_scale in (False, True):
        chosen = [p for n, p in params if n.rpartition(".")[2].startswith("log_") == log_scale]
        top = max([float(np.abs(backend.to_numpy(p.data)).max(initial=0)) for p in chosen], default=0.0)
        for p in chosen:
            p.data[...] = p.data * ((math.log(extreme) if log_scale else extreme) / max(top, 1e-12))
    g, b = _one(est, big, x, np.random.default_rng(seed), ("theta", "lambda"), state)
    bad = [f"{k}{[int(j) for j in np.unravel_index(int(np.argmin(np.isfinite(v))), v.shape)]}"
           for k, v in g.items() if not np.all(np.isfinite(v))]
    if bad or not math.isfinite(b):
        raise AssertionError(f"check_estimator: {est!r} is not finite with parameters up to ±{extreme:g} on {model!r}: "
                             f"gradient {', '.join(bad) or 'finite'}; bound {b!r}")


def _cupy_or_none():
    try:
        return td.backend.use("cupy") and "cupy"
    except td.backend.BackendError:
        return None


def check_same_on_cupy(est, model, x, seed, groups, state):
    """The estimate on CuPy equals NumPy's (rtol 1e-9) from the same host generator; 'skipped: ...' without a GPU."""
    before = td.backend.name()
    g_numpy, b_numpy = _one(est, model, x, np.random.default_rng(seed), groups, state)
    try:
        if _cupy_or_none() is None:
            return "skipped: no usable CuPy and GPU"
        import cupy
        gpu_model, gpu_est = copy.deepcopy(model), copy.deepcopy(est)
        for obj in (gpu_model, gpu_est):
            for p in (obj.parameters() if hasattr(obj, "parameters") else []):
                p.data = cupy.asarray(p.data)
        rng = td.backend.device_rng(np.random.default_rng(seed))
        gpu_state = None if not state else {k: v for k, v in state.items()}
        g_cupy, b_cupy = _one(gpu_est, gpu_model, cupy.asarray(x), rng, groups, gpu_state)
    finally:
        td.backend.use(before)
    for k in g_numpy:
        if not np.allclose(g_cupy[k], g_numpy[k], rtol=1e-9, atol=1e-12):
            raise AssertionError(f"check_estimator: {est!r} differs on CuPy: {k} {g_cupy[k]!r} against NumPy's "
                                 f"{g_numpy[k]!r}")
    if not math.isclose(b_cupy, b_numpy, rel_tol=1e-9, abs_tol=1e-12):
        raise AssertionError(f"check_estimator: {est!r}'s bound differs on CuPy: {b_cupy!r} against {b_numpy!r}")
    return "same"


# =============================================================================================
# check_estimator
# =============================================================================================

def _largest_latent(k, budget=20_000, most=6):
    """The most binary latent units (<= `most`) whose K-multisets number at most `budget` (the L_K oracle's cost)."""
    return max([h for h in range(1, most + 1) if math.comb(2 ** h + k - 1, k) <= budget] or [1])


def _maker(estimator, options, prepare):
    """(make(model, k=None) -> a fresh estimator in its held state, its name)."""
    if isinstance(estimator, str):
        name = estimator
        if name not in estimators.REGISTRY:
            raise ValueError(f"check_estimator: unknown estimator {name!r}; "
                             f"expected one of {', '.join(estimators.REGISTRY)}")

        def make(model, k=None):
            opts = dict(options or {})
            if k is not None:
                opts["k"] = k
            return estimators.make(name, model, rng=0, **opts)
    else:
        name = estimator.name

        def make(model, k=None):
            est = copy.deepcopy(estimator)
            if k is not None:
                if not hasattr(est, "k"):
                    raise ValueError(f"check_estimator: {est!r} is 'consistent' but has no `k` to vary")
                est.k = k
            return est
    held = prepare if prepare is not None else PREPARE.get(name, hold())

    def made(model, k=None):
        est = make(model, k)
        held(est)
        return est
    return made, name


def check_estimator(estimator, models=None, *, alpha=1e-3, detect=0.2, examples=3, draws=100, max_draws=800,
                    repeats=100, ks=(1, 4, 16), shrink=0.9, bound_detect=0.1, extreme=1000.0, seed=0, options=None,
                    prepare=None, target=None):
    """Property-test `estimator` (an Estimator, or a registry name made with `options`) on `examples` cases drawn from
    `models` (a strategy of (model, x) pairs; default: sigmoid belief nets, or linear-Gaussian models for the
    registry's continuous estimators).  Each estimate is one objective on x repeated `repeats` times; `draws` to
    `max_draws` estimates per case (`_adaptive`).  Raises AssertionError (StatisticalAssertionError, UnderpoweredError
    or a deterministic check's) with the falsifying case; a correct estimator fails with probability <= alpha.
    `ks`: the K of a consistent estimator; `prepare(est)`: puts an estimator in the state its claim is about
    (default `PREPARE[name]`, else `hold()`: its running statistics held where they are, `est.hold_statistics()`);
    `target`: a Target for an estimator whose target is not in TARGETS; `detect`: the relative bias of the gradient
    to see (`stats.assert_unbiased`, `stats.assert_consistent`), `bound_detect`: the error of the bound
    to see, in nats.  Returns a Report."""
    make, name = _maker(estimator, options, prepare)
    probe = make(sigmoid_belief_net((2, 1)))
    claim, target_name = probe.claim, probe.target
    if claim not in ("unbiased", "consistent", "biased"):
        raise ValueError(f"check_estimator: {probe!r} has claim {claim!r}; expected unbiased, consistent or biased")
    goal = target or TARGETS.get(target_name)
    if goal is None and claim != "biased":
        raise ValueError(f"check_estimator: no oracle for {probe!r}'s target {target_name!r} "
                         f"(known: {', '.join(TARGETS)}); pass target=Target(oracle, groups)")
    if models is None:
        continuous = isinstance(estimator, str) and estimators.REGISTRY[estimator][0] == "continuous"
        models = linear_gaussian_cases(latent=(1, 1) if target_name == "L_K" else (1, 2)) if continuous else sbn_cases(
            max_latent=_largest_latent(getattr(probe, "k", 1)) if target_name == "L_K" else 6)
    each = alpha / (2 * examples)
    groups = goal.groups if goal else ("theta", "lambda")
    found = []

    def run_case(case):
        model, x = case
        key = zlib.crc32(repr(model).encode() + np.ascontiguousarray(x).tobytes())   # the case's own seed: a replay
        rng = np.random.default_rng([seed, key])                                     # by hypothesis draws the same
        est = make(model)
        state = _snapshot(est)
        out = {"model": repr(model)}
        check_deterministic(est, model, x, [seed, key, 1], groups, state)
        check_finite(est, model, x, [seed, key, 2], extreme, state)
        out["cupy"] = check_same_on_cupy(est, model, x, [seed, key, 3], groups, state)
        xs = np.tile(x, (repeats, 1))
        if claim == "unbiased":
            exact_scalar = goal.oracle(model, x, est)
            exact = oracles.gradient(model, exact_scalar, groups)
            grads, bounds = _adaptive(est, model, xs, rng, groups, state, exact, draws, max_draws, each, detect)
            out["draws"] = len(bounds)
            out["gradient"] = stats.assert_unbiased(grads, exact, each, detect, what=f"{name}'s gradients on {model!r}")
            out["bound"] = stats.assert_unbiased(bounds, np.float64(oracles.value(exact_scalar)), each, detect,
                                                 atol=bound_detect, what=f"{name}'s bound estimates on {model!r}")
        elif claim == "consistent":
            exact = oracles.gradient(model, goal.oracle(model, x, est), groups)
            made = {k: make(model, k) for k in ks}
            grads_by_k, bounds_by_k = _adaptive_by_k(made, model, xs, rng, groups, exact, draws, max_draws, each,
                                                     detect, shrink, bound_detect)
            out["draws"] = len(bounds_by_k[ks[0]])
            out["gradient"] = stats.assert_consistent(grads_by_k, exact, each, detect, shrink,
                                                      what=f"{name}'s gradients on {model!r}")
            out["bound"] = stats.assert_bound(bounds_by_k, oracles.value(oracles.log_px(model, x)), each, bound_detect,
                                              what=f"{name}'s bound estimates on {model!r}")
        found.append(out)

    @hypothesis_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=False, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(models)
    def run(case):
        run_case(case)

    run()
    return Report(name, claim, target_name, found)
