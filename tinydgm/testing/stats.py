"""Statistical assertions about Monte-Carlo draws, each with a stated false-alarm rate for the whole call.

Every assertion tests a claim (unbiased; the same mean as another estimator; a mean on one side of a limit; lower
variance; consistent; a bound) and

  * raises `StatisticalAssertionError` only on evidence against the claim: when the claim holds, the call raises
    with probability at most `alpha`, however many coordinates it looks at (Bonferroni over coordinates and
    comparisons; Holm's procedure would reject the same calls, since a call fails when any test rejects);
  * refuses to pass vacuously: when the draws are too few to see a departure of the stated size `detect`, it
    raises `UnderpoweredError` (and says how many draws would do) instead of passing.

The tests are asymptotic (Student-t quantiles with S − 1 degrees of freedom for a mean of S draws, widened for
skewed draws; a jackknife for variances): `tests/testing/test_toolkit_stats.py` measures each false-alarm rate on
correct synthetic estimators.  Draws are arrays (S, ...) with the draws along axis 0, or dicts {name: array (S, ...)}
of parameter groups; an exact value is an array, a number, or a dict {name: array} of the same shapes.
"""
import collections
import math

import numpy as np
import scipy.special

from tinydgm import backend

Outcome = collections.namedtuple("Outcome", "statistic threshold resolution draws")
Outcome.__doc__ = ("What a passing assertion saw: its test statistic (e.g. the largest |z|), the threshold it was held "
                   "to, the smallest departure it was sure to see with probability >= 1/2 (in the units of `detect`), "
                   "and the number of draws.")


class StatisticalAssertionError(AssertionError):
    """The draws are evidence against the claim (the call's false-alarm rate is its `alpha`)."""


class UnderpoweredError(AssertionError):
    """Too few draws to see a departure of the stated size: the assertion refuses to pass."""


# =============================================================================================
# Quantiles
# =============================================================================================

def t_quantile(p, df):
    """The Student-t quantile with `df` degrees of freedom (scipy.special.stdtrit, what scipy.stats.t.ppf calls)."""
    if df < 1:
        raise ValueError(f"t_quantile: needs at least 2 draws, got df = {df}")
    return float(scipy.special.stdtrit(df, p))


# =============================================================================================
# Coordinates: draws of arrays or of dicts of parameter groups, flattened with their labels
# =============================================================================================

def _host(a):
    return np.asarray(backend.to_numpy(a), dtype=np.float64)


def flatten(draws, exact=None):
    """(X (S, n), e (n,) or None, labels [n]) from draws (S, ...) or {name: (S, ...)}; labels name the coordinates
    as "name[i, j]" (or "[i]" for a bare array)."""
    if isinstance(draws, dict):
        names = list(exact) if isinstance(exact, dict) else list(draws)
        missing = [n for n in names if n not in draws]
        if missing or (isinstance(exact, dict) and set(draws) - set(exact)):
            raise ValueError(f"draws and exact name different parameters: draws {sorted(draws)}, exact {names}")
        parts = [flatten(draws[n], None if exact is None else exact[n]) for n in names]
        labels = [f"{n}{lab}" for n, (_, _, labs) in zip(names, parts) for lab in labs]
        X = np.concatenate([x for x, _, _ in parts], axis=1)
        e = None if exact is None else np.concatenate([v for _, v, _ in parts])
        return X, e, labels
    x = _host(draws)
    if x.ndim == 0:
        raise ValueError("draws must have the draws along axis 0")
    shape = x.shape[1:]
    e = None
    if exact is not None:
        e = _host(exact)
        if e.shape != shape:
            raise ValueError(f"draws of shape {shape} against an exact value of shape {e.shape}")
        e = e.reshape(-1)
    labels = [str(list(i)) if shape else "" for i in np.ndindex(*shape)] if shape else [""]
    return x.reshape(len(x), -1), e, labels


def _g(v):
    return f"{v:.4g}"


def _relative(a, scale):
    return f" = {a / scale:.1%} of ‖exact‖ = {_g(scale)}" if scale > 0 else " (‖exact‖ = 0)"


def _draws_needed(s, resolution, detect):
    return int(math.ceil(s * (resolution / detect) ** 2))


def skewness(X):
    """The sample skewness γ̂ of each column of X (S, n): m₃ / s³ (0 where a column is constant)."""
    d = X - X.mean(0)
    sd = X.std(0, ddof=1)
    return np.where(sd > 0, (d ** 3).mean(0) / np.where(sd > 0, sd, 1.0) ** 3, 0.0)


def skew_corrected(t, gamma, s):
    """The threshold t widened for the skewness γ of the draws: t + |γ| (2t² + 1) / (6 √S), the first-order Edgeworth
    term of Student's t for a mean of S skewed draws, P(T <= x) = Φ(x) + γ (2x² + 1) φ(x) / (6 √S) + O(1/S)
    (Hall 1992, "The Bootstrap and Edgeworth Expansion", §2.6), applied to both tails."""
    return t + np.abs(gamma) * (2 * t * t + 1) / (6 * math.sqrt(s))


# =============================================================================================
# Unbiased
# =============================================================================================

def assert_unbiased(draws, exact, alpha=1e-3, detect=0.2, atol=0.0, what="the draws"):
    """Assert E[draw] = exact in every coordinate; raises with probability <= alpha when it holds.

    z_i = (mean_i − exact_i) / SE_i, SE_i = sd_i / √S (plus a rounding allowance of 1e-9 max(1, ‖exact‖∞)), and
    the call fails when any |z_i| exceeds the two-sided Bonferroni threshold t = t_{S−1}(1 − alpha / 2n) over all n
    coordinates, widened where coordinate i's draws are skewed (`skew_corrected`).
    detect = δ: any bias b, whatever its direction, with ‖b‖ >= δ ‖exact‖ must be caught with probability >= 1/2,
    i.e. t ‖SE‖ <= δ ‖exact‖ (such a b has some |b_i| >= t SE_i); otherwise the call refuses (UnderpoweredError).
    `atol`: a floor for exact values near 0: the bias norm that must be seen is max(δ ‖exact‖, atol), so `atol`
    only ever loosens the requirement (to ask for a finer resolution, lower `detect`).
    Returns Outcome(max |z|, t, the relative bias caught w.p. >= 1/2, S)."""
    X, e, labels = flatten(draws, exact)
    s, n = X.shape
    mean = X.mean(0)
    se = np.sqrt(X.var(0, ddof=1) / s + (1e-9 * max(1.0, float(np.abs(e).max(initial=0)))) ** 2)
    z = (mean - e) / se
    t = t_quantile(1 - alpha / (2 * n), s - 1)
    limit = skew_corrected(t, skewness(X), s)                          # per coordinate
    scale = float(np.linalg.norm(e))
    resolution = t * float(np.linalg.norm(se)) / max(scale, 1e-300)
    worst = int(np.argmax(np.abs(z) / limit))
    if abs(z[worst]) > limit[worst]:
        beyond = int((np.abs(z) > limit).sum())
        raise StatisticalAssertionError(
            f"assert_unbiased: {what} are evidence of a bias ({s} draws; false-alarm rate {alpha:g} for the whole "
            f"call: |z| > {t:.3g} (more where the draws are skewed) on any of {n} coordinates). Worst {labels[worst]}: "
            f"estimate {_g(mean[worst])}, exact {_g(e[worst])}, SE {_g(se[worst])}, z = {z[worst]:.1f} against "
            f"{limit[worst]:.3g} (bias {_g(mean[worst] - e[worst])}). "
            f"{beyond} of {n} coordinates beyond; ‖mean − exact‖ = {_g(np.linalg.norm(mean - e))}"
            f"{_relative(np.linalg.norm(mean - e), scale)}.")
    floor = max(detect * scale, atol)
    if t * np.linalg.norm(se) > floor:
        caught = t * float(np.linalg.norm(se))
        raise UnderpoweredError(
            f"assert_unbiased refuses to pass: with {s} draws of {what} (‖SE‖ = {_g(np.linalg.norm(se))}) a bias of "
            f"norm {_g(caught)}{_relative(caught, scale)} could go unseen, more than detect = "
            f"{detect:.0%} (atol {atol:g}); about {_draws_needed(s, caught, floor)} draws would do.")
    return Outcome(float(np.max(np.abs(z))), t, resolution, s)


# =============================================================================================
# Two estimators of one quantity; a mean on one side of a limit
# =============================================================================================

def assert_same_mean(a, b, alpha=1e-3, detect=0.2, atol=0.0, what=("a", "b")):
    """Assert E[a] = E[b] in every coordinate (two estimators of one quantity, no exact value needed); raises with
    probability <= alpha when it holds.

    Welch's z_i = (mean_a,i − mean_b,i) / √(SE_a,i² + SE_b,i²) against the Bonferroni threshold t_{S−1}(1 − alpha/2n)
    (S: the fewer draws), widened for skewed draws with the skewness of the difference of the means (`skew_corrected`).
    detect = δ: a difference of norm >= δ ‖(mean_a + mean_b)/2‖ (or `atol`, whichever is larger) must be caught with
    probability >= 1/2, else the call refuses (UnderpoweredError).  Returns Outcome(max |z|, t, the relative
    difference caught w.p. >= 1/2, the fewer draws)."""
    Xa, _, labels = flatten(a)
    Xb, _, labels_b = flatten(b)
    if Xa.shape[1] != Xb.shape[1] or labels != labels_b:
        raise ValueError(f"assert_same_mean: {what[0]} and {what[1]} name different coordinates")
    (sa, n), sb = Xa.shape, len(Xb)
    va, vb = Xa.var(0, ddof=1) / sa, Xb.var(0, ddof=1) / sb
    se = np.sqrt(va + vb) + 1e-300
    diff = Xa.mean(0) - Xb.mean(0)
    z = diff / se
    s = min(sa, sb)
    t = t_quantile(1 - alpha / (2 * n), s - 1)
    third = (((Xa - Xa.mean(0)) ** 3).mean(0) / sa ** 2 - ((Xb - Xb.mean(0)) ** 3).mean(0) / sb ** 2)
    limit = skew_corrected(t, third / se ** 3, 1)                     # the mean difference's own skewness
    scale = float(np.linalg.norm((Xa.mean(0) + Xb.mean(0)) / 2))
    worst = int(np.argmax(np.abs(z) / limit))
    if abs(z[worst]) > limit[worst]:
        raise StatisticalAssertionError(
            f"assert_same_mean: {what[0]} and {what[1]} are evidence of different means ({sa} and {sb} draws; "
            f"false-alarm rate {alpha:g} for the whole call, |z| > {t:.3g} on any of {n} coordinates). Worst "
            f"{labels[worst]}: {_g(Xa.mean(0)[worst])} against {_g(Xb.mean(0)[worst])}, SE of the difference "
            f"{_g(se[worst])}, z = {z[worst]:.1f} against {limit[worst]:.3g}. ‖difference‖ = {_g(np.linalg.norm(diff))}"
            f"{_relative(np.linalg.norm(diff), scale)}.")
    caught = t * float(np.linalg.norm(se))
    _refuse_if_unseen("assert_same_mean", f"{sa} and {sb} draws", "a difference", caught, scale, detect, atol, s,
                      " of each")
    return Outcome(float(np.max(np.abs(z))), t, caught / max(scale, 1e-300), s)


def _refuse_if_unseen(name, draws, departure, caught, scale, detect, atol, s, each=""):
    """UnderpoweredError when a departure of norm `caught` (seen w.p. 1/2) exceeds detect × scale and atol."""
    if caught > max(detect * scale, atol):
        raise UnderpoweredError(
            f"{name} refuses to pass: with {draws} {departure} of norm {_g(caught)}{_relative(caught, scale)} "
            f"could go unseen, more than detect = {detect:.0%} (atol {atol:g}); about "
            f"{_draws_needed(s, caught, max(detect * scale, atol))} draws{each} would do.")


def assert_mean_at_most(draws, limit, alpha=1e-3, detect=0.2, atol=0.0, what="the draws"):
    """Assert E[draw] <= limit in every coordinate (one-sided); raises with probability <= alpha when it holds.

    z_i = (mean_i − limit_i) / SE_i against the one-sided Bonferroni threshold t_{S−1}(1 − alpha/n), widened for
    skewed draws.  detect = δ: an excess of norm >= δ ‖limit‖ (or `atol`) must be caught with probability >= 1/2
    (it has a coordinate beyond t SE_i), else the call refuses.  Returns Outcome(max z, t, the relative excess caught
    w.p. >= 1/2, S).  `assert_mean_at_least` is the same on −draws."""
    X, e, labels = flatten(draws, limit)
    s, n = X.shape
    se = np.sqrt(X.var(0, ddof=1) / s + (1e-9 * max(1.0, float(np.abs(e).max(initial=0)))) ** 2)
    z = (X.mean(0) - e) / se
    t = t_quantile(1 - alpha / n, s - 1)
    limits = skew_corrected(t, skewness(X), s)
    worst = int(np.argmax(z / limits))
    scale = float(np.linalg.norm(e))
    if z[worst] > limits[worst]:
        raise StatisticalAssertionError(
            f"assert_mean_at_most: {what} are evidence of a mean above the limit ({s} draws; false-alarm rate "
            f"{alpha:g} for the whole call, z > {t:.3g} on any of {n} coordinates). Worst {labels[worst]}: estimate "
            f"{_g(X.mean(0)[worst])}, limit {_g(e[worst])}, SE {_g(se[worst])}, z = {z[worst]:.1f} against "
            f"{limits[worst]:.3g}.")
    caught = t * float(np.linalg.norm(se))
    _refuse_if_unseen("assert_mean_at_most", f"{s} draws of {what}", "an excess", caught, scale, detect, atol, s)
    return Outcome(float(np.max(z)), t, caught / max(scale, 1e-300), s)


def assert_mean_at_least(draws, limit, alpha=1e-3, detect=0.2, atol=0.0, what="the draws"):
    """Assert E[draw] >= limit in every coordinate: `assert_mean_at_most` on −draws and −limit (same promises)."""
    neg = {k: -_host(v) for k, v in draws.items()} if isinstance(draws, dict) else -_host(draws)
    lim = {k: -_host(v) for k, v in limit.items()} if isinstance(limit, dict) else -_host(limit)
    try:
        return assert_mean_at_most(neg, lim, alpha, detect, atol, what)
    except AssertionError as e:
        message = str(e).replace("assert_mean_at_most", "assert_mean_at_least").replace("above the", "below the")
        raise type(e)(f"{message} (estimates and limit negated)") from None


# =============================================================================================
# Lower variance
# =============================================================================================

def total_variance(draws):
    """V = Σ_i (sample variance of coordinate i) = Σ_t ‖x_t − x̄‖² / (S − 1), of draws (S, ...) or a dict of them."""
    X, _, _ = flatten(draws)
    return float(((X - X.mean(0)) ** 2).sum() / (len(X) - 1))


def log_variance_jackknife(X):
    """(log V, the jackknife variance of log V) for draws X (S, n) (Quenouille 1956; Tukey 1958).  Leaving draw t out,
    Σ_{s≠t} ‖x_s − x̄_{−t}‖² = Q − S/(S−1) ‖x_t − x̄‖², Q = Σ_s ‖x_s − x̄‖², so V_{−t} = that / (S − 2) in closed
    form; var_J = (S − 1)/S Σ_t (log V_{−t} − mean)².  In expectation var_J overstates the variance of the statistic it
    estimates (Efron & Stein 1981): the test leans to the safe side, for heavy-tailed draws too."""
    s = len(X)
    d = ((X - X.mean(0)) ** 2).sum(1)
    q = d.sum()
    loo = np.log(np.maximum(q - s / (s - 1) * d, 1e-300) / (s - 2))
    return math.log(q / (s - 1)), float((s - 1) / s * ((loo - loo.mean()) ** 2).sum())


def assert_lower_variance(a, b, alpha=1e-3, ratio=1.0, detect=0.5, what=("a", "b")):
    """Assert that draws `a` have at most `ratio` times the total variance of draws `b` (Σ over coordinates of each
    coordinate's variance); raises with probability <= alpha when V_a <= ratio V_b.

    One-sided test on r = log V̂_a − log V̂_b: fails when r − log ratio > t_{S−1}(1 − alpha) SE_r (S: the fewer draws),
    SE_r² = 2 max(J_a, J_b), J the jackknife variance of log V̂ (`log_variance_jackknife`).  Twice the larger rather
    than the sum: at the claim's edge a and b are alike, and a sample whose V̂ comes out low has a low J too (the
    heavy draws that would raise both are missing), which the sum lets through; the larger keeps the test on the
    safe side (measured in tests/testing).
    detect = δ: a true ratio V_a / V_b = ratio (1 + δ) must be caught with probability >= 1/2, i.e.
    t SE_r <= log(1 + δ); otherwise the call refuses (UnderpoweredError).  a and b may hold different numbers of
    draws.  Returns Outcome(V̂_a / V̂_b, ratio e^{t SE_r}, the relative excess caught w.p. >= 1/2, draws of a)."""
    Xa, _, labels = flatten(a)
    Xb, _, labels_b = flatten(b)
    if Xa.shape[1] == Xb.shape[1] and labels != labels_b:
        raise ValueError("assert_lower_variance: a and b name different coordinates")
    va, vb = total_variance(a), total_variance(b)
    t = t_quantile(1 - alpha, min(len(Xa), len(Xb)) - 1)
    if vb == 0 or va == 0:
        if va > 0:
            raise StatisticalAssertionError(f"assert_lower_variance: {what[1]} has no variance, {what[0]} has {_g(va)}")
        return Outcome(0.0, ratio, 0.0, len(Xa))
    (la, ja), (lb, jb) = log_variance_jackknife(Xa), log_variance_jackknife(Xb)
    r, se_r = la - lb, math.sqrt(2 * max(ja, jb))
    resolution = math.exp(t * se_r) - 1
    if r - math.log(ratio) > t * se_r:
        worst = ""
        if Xa.shape[1] == Xb.shape[1]:
            excess = Xa.var(0, ddof=1) - ratio * Xb.var(0, ddof=1)
            i = int(np.argmax(excess))
            worst = (f" The largest excess: {labels[i]}, variance {_g(Xa.var(0, ddof=1)[i])} against "
                     f"{_g(Xb.var(0, ddof=1)[i])}.")
        raise StatisticalAssertionError(
            f"assert_lower_variance: the draws are evidence that {what[0]}'s total variance is above {ratio:g} × "
            f"{what[1]}'s (false-alarm rate {alpha:g}): V = {_g(va)} against {_g(vb)}, ratio {va / vb:.3g} "
            f"(log ratio {r:.3g}, SE {se_r:.3g}, threshold log {ratio:g} + {t * se_r:.3g}; {len(Xa)} and {len(Xb)} "
            f"draws).{worst}")
    if resolution > detect:
        raise UnderpoweredError(
            f"assert_lower_variance refuses to pass: with {len(Xa)} and {len(Xb)} draws a variance ratio of "
            f"{ratio * (1 + resolution):.3g} (claimed <= {ratio:g}) could go unseen, more than {ratio:g} × (1 + detect"
            f" = {detect:g}); about {_draws_needed(min(len(Xa), len(Xb)), math.log1p(resolution), math.log1p(detect))}"
            f" draws of each would do.")
    return Outcome(va / vb, ratio * math.exp(t * se_r), resolution, len(Xa))


# =============================================================================================
# Consistent: the bias falls with K
# =============================================================================================

def _bias_norm2(X, e):
    """(β̂², its variance, d = mean − exact, SE) for draws X (S, n): β̂² = ‖mean − e‖² − ‖SE‖², unbiased for
    ‖bias‖²; Var ≈ Σ_i 4 d_i² SE_i² + 2 SE_i⁴ (normal means; d_i² in place of b_i² overstates it: conservative)."""
    s = len(X)
    d = X.mean(0) - e
    se2 = X.var(0, ddof=1) / s
    return float((d ** 2 - se2).sum()), float((4 * d ** 2 * se2 + 2 * se2 ** 2).sum()), d, np.sqrt(se2)


def fall_resolution(se_lo, se_hi, t, shrink):
    """The norm β of a bias that stays the same at K_min and K_max and that assert_consistent's "does not fall" test
    catches with probability >= 1/2, given the standard errors of the two means (arrays) and the threshold t."""
    # its statistic has mean (1 − shrink²) β² and variance at most 4 β² (max SE²_hi + shrink⁴ max SE²_lo)
    # + 2 (Σ SE⁴_hi + shrink⁴ Σ SE⁴_lo): β⁴ >= u (a2 β² + c), u = t² / (1 − shrink²)², a quadratic in β²
    a2 = 4 * (se_hi.max() ** 2 + shrink ** 4 * se_lo.max() ** 2)
    c = 2 * ((se_hi ** 4).sum() + shrink ** 4 * (se_lo ** 4).sum())
    u = t ** 2 / (1 - shrink ** 2) ** 2
    return math.sqrt((u * a2 + math.sqrt((u * a2) ** 2 + 4 * u * c)) / 2)


def assert_consistent(draws_by_k, exact, alpha=1e-3, detect=0.2, shrink=0.9, what="the draws"):
    """Assert that an estimator biased at finite K has a bias that falls with K; raises with probability <= alpha
    when ‖bias_K‖ is non-increasing over the K given and ‖bias_{K_max}‖ <= shrink ‖bias_{K_min}‖.

    draws_by_k: {K: draws (S, ...) or {name: (S, ...)}}, independent across K.  With β̂²_K = ‖mean_K − exact‖² −
    ‖SE_K‖² (unbiased for ‖bias_K‖²) and its variance v_K (`_bias_norm2`), one-sided tests at alpha / m each:
        for consecutive K < K':  β̂²_{K'} − β̂²_K > t √(v_K + v_{K'})                              "the bias grows"
        and:                      β̂²_{K_max} − shrink² β̂²_{K_min} > t √(v_max + shrink⁴ v_min)    "it does not fall"
    detect = δ: a bias that does not fall at all, of norm δ ‖exact‖ at every K, must be caught by the last test with
    probability >= 1/2 (judged with the largest SE of each K); otherwise the call refuses (UnderpoweredError).
    Returns Outcome(‖bias_{K_max}‖ / ‖bias_{K_min}‖ estimated, shrink, the δ of a constant bias caught, S)."""
    ks = sorted(draws_by_k)
    if len(ks) < 2:
        raise ValueError("assert_consistent: needs draws at two values of K at least")
    stats, labels = {}, None
    for k in ks:
        X, e, labels = flatten(draws_by_k[k], exact)
        stats[k] = (*_bias_norm2(X, e), len(X))
    scale = float(np.linalg.norm(e))
    m = len(ks)                                                        # (len(ks) − 1) growth tests + one fall test
    t = t_quantile(1 - alpha / m, min(st[4] for st in stats.values()) - 1)
    norms = ", ".join(f"{math.sqrt(max(stats[k][0], 0)):.3g} at K = {k}" for k in ks)

    def worst_at(k):
        _, _, d, se, _ = stats[k]
        z = d / np.maximum(se, 1e-300)
        i = int(np.argmax(np.abs(z)))
        return (f"worst coordinate at K = {k}: {labels[i]}, estimate {_g(d[i] + e[i])}, exact {_g(e[i])}, "
                f"SE {_g(se[i])}, z = {z[i]:.1f}")

    for k, k2 in zip(ks, ks[1:]):
        diff, sd = stats[k2][0] - stats[k][0], math.sqrt(stats[k][1] + stats[k2][1])
        if diff > t * sd:
            raise StatisticalAssertionError(
                f"assert_consistent: the bias of {what} grows from K = {k} to K = {k2} (false-alarm rate {alpha:g}): "
                f"‖bias‖ = {norms} (‖exact‖ = {_g(scale)}); ‖bias‖² rises by {_g(diff)}, {diff / sd:.1f} SE; "
                f"{worst_at(k2)}.")
    lo, hi = ks[0], ks[-1]
    diff = stats[hi][0] - shrink ** 2 * stats[lo][0]
    sd = math.sqrt(stats[hi][1] + shrink ** 4 * stats[lo][1])
    ratio = math.sqrt(max(stats[hi][0], 0) / stats[lo][0]) if stats[lo][0] > 0 else float("nan")
    if diff > t * sd:
        raise StatisticalAssertionError(
            f"assert_consistent: the bias of {what} does not fall with K (false-alarm rate {alpha:g}): ‖bias‖ = {norms}"
            f" (‖exact‖ = {_g(scale)}); at K = {hi} it is {ratio:.3g} of that at K = {lo}, claimed <= {shrink:g} "
            f"({diff / sd:.1f} SE beyond); {worst_at(hi)}.")
    resolution = fall_resolution(stats[lo][3], stats[hi][3], t, shrink) / max(scale, 1e-300)
    if resolution > detect:
        raise UnderpoweredError(
            f"assert_consistent refuses to pass: with these draws of {what} a bias that does not fall with K, of norm "
            f"{resolution:.1%} of ‖exact‖, could go unseen, more than detect = {detect:.0%}; about "
            f"{_draws_needed(min(st[4] for st in stats.values()), resolution, detect)} draws at each K would do.")
    return Outcome(ratio, shrink, resolution, min(st[4] for st in stats.values()))


# =============================================================================================
# Bounds: below log p(x) in expectation, and monotone in K
# =============================================================================================

def assert_bound(bound_draws_by_k, log_px, alpha=1e-3, detect=0.1, what="the bound"):
    """Assert that E[L̂_K] <= log p(x) for every K and E[L̂_K] <= E[L̂_K'] for K < K' (as L_K: Burda et al. 2016,
    thm. 1); raises with probability <= alpha when both hold.

    bound_draws_by_k: {K: draws (S,)} of the bound (e.g. each the mean of L̂_K over a batch), independent across K;
    log_px: the exact value (the same mean).  One-sided t-tests, Bonferroni over the n_K tests against log p(x) and
    the n_K (n_K − 1) / 2 pairs, each threshold widened for skewed draws (`skew_corrected`).  detect = δ nats: an
    excess of δ over log p(x), or a fall of δ between two K, must be caught with probability >= 1/2, i.e. t SE <= δ
    for each test; otherwise the call refuses (UnderpoweredError).
    Returns Outcome(the largest t statistic, t, the excess in nats caught w.p. >= 1/2, the fewest draws)."""
    ks = sorted(bound_draws_by_k)
    stats = {}
    for k in ks:
        x = _host(bound_draws_by_k[k]).reshape(-1)
        stats[k] = (x.mean(), x.std(ddof=1) / math.sqrt(len(x)), len(x), float(skewness(x[:, None])[0]))
    m = len(ks) + len(ks) * (len(ks) - 1) // 2
    t = t_quantile(1 - alpha / m, min(s[2] for s in stats.values()) - 1)
    table = ", ".join(f"K = {k}: {_g(stats[k][0])} ± {_g(stats[k][1])}" for k in ks)
    worst, resolution = -math.inf, 0.0
    for k in ks:
        mean, se, n, gamma = stats[k]
        z, limit = (mean - log_px) / max(se, 1e-300), skew_corrected(t, gamma, n)
        if z > limit:
            raise StatisticalAssertionError(
                f"assert_bound: {what} at K = {k} is above log p(x) = {_g(log_px)} by {_g(mean - log_px)} nats, "
                f"{z:.1f} SE (false-alarm rate {alpha:g}, threshold {limit:.3g}); means {table}.")
        worst, resolution = max(worst, z), max(resolution, t * se)
    for i, k in enumerate(ks):
        for k2 in ks[i + 1:]:
            diff, se = stats[k][0] - stats[k2][0], math.hypot(stats[k][1], stats[k2][1])
            z = diff / max(se, 1e-300)
            limit = skew_corrected(t, max(abs(stats[k][3]), abs(stats[k2][3])), min(stats[k][2], stats[k2][2]))
            if z > limit:
                raise StatisticalAssertionError(
                    f"assert_bound: {what} falls from K = {k} to K = {k2} by {_g(diff)} nats, {z:.1f} SE "
                    f"(false-alarm rate {alpha:g}, threshold {limit:.3g}); log p(x) = {_g(log_px)}; means {table}.")
            worst, resolution = max(worst, z), max(resolution, t * se)
    if resolution > detect:
        raise UnderpoweredError(
            f"assert_bound refuses to pass: {what}: an excess over log p(x) (or a fall between two K) of "
            f"{_g(resolution)} nats could go unseen, more than detect = {detect:g} nats; means {table}.")
    return Outcome(worst, t, resolution, min(s[2] for s in stats.values()))
