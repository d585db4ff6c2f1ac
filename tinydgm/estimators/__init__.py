"""Gradient estimators for deep generative models, one module per family, each an object with one protocol
(`base.py`) that works on any model offering a small interface (`discrete.py` for binary latents; the VAE's
`elbo`/`iwae_bound`/`score_function_elbo` for continuous ones), found by name in one registry (below).

    importance.py      log-mean-exp, the IWAE bound L_k, the self-normalised weights ω (their one home)
    reparam.py         the reparameterised ELBO and IWAE                       (Kingma & Welling 2013; Burda et al. 2016)
    score_function.py  REINFORCE, baselines, NVIL                              (Williams 1992; Mnih & Gregor 2014)
    vimco.py           VIMCO: L_K with leave-one-out baselines                 (Mnih & Rezende 2016)
    wake_sleep.py      wake-sleep and reweighted wake-sleep                    (Hinton et al. 1995; Bornschein & Bengio 2015)
    relaxed.py         the binary Concrete relaxation and straight-through     (Maddison et al. 2017; Bengio et al. 2013)
    discrete.py        the layered binary-latent model interface, one pass up q that samples and scores
    base.py            Objective, Estimator, `ascend`, and the summaries of many draws

    est = estimators.make("vimco", model, k=5)
    est.step(model, x, [opt_p, opt_q], rng)            # one step of each optimiser; {"bound": L̂_5 of the batch}
"""
from tinydgm.estimators import discrete, importance, reparam, relaxed, score_function, vimco, wake_sleep
from tinydgm.estimators.base import (Estimator, Objective, Summary, ascend, draw, generator, gradient_samples,
                                     gradient_variance, summarize, total)
from tinydgm.estimators.importance import iwae_bound, log_mean_exp, normalized_weights
from tinydgm.estimators.relaxed import Relaxed, StraightThrough, straight_through
from tinydgm.estimators.reparam import ELBO, IWAE, elbo
from tinydgm.estimators.score_function import (NVIL, NVILTerms, Reinforce, RunningMean, ScoreFunction, local_signals,
                                               score_function_surrogate)
from tinydgm.estimators.vimco import VIMCO, vimco_surrogate
from tinydgm.estimators.wake_sleep import ReweightedWakeSleep, WakeSleep

# =============================================================================================
# The registry: the command line's word for each estimator, the latents it is for, the options it takes
# =============================================================================================

REGISTRY = {
    # name: (latents, options, make(model, rng, **options))
    "elbo": ("continuous", (), lambda model, rng: ELBO()),
    "iwae": ("continuous", ("k",), lambda model, rng, k=5: IWAE(k)),
    "score-function": ("continuous", (), lambda model, rng: ScoreFunction(baseline=False)),
    "score-function-baseline": ("continuous", (), lambda model, rng: ScoreFunction(baseline=True)),
    "ws": ("discrete", (), lambda model, rng: WakeSleep()),
    "rws": ("discrete", ("k", "updates"), lambda model, rng, k=5, updates=wake_sleep.UPDATES:
            ReweightedWakeSleep(k, updates)),
    "reinforce": ("discrete", (), lambda model, rng: Reinforce()),
    "nvil": ("discrete", (), lambda model, rng: NVIL(model.layers[:-1], rng=rng)),
    "vimco": ("discrete", ("k",), lambda model, rng, k=5: VIMCO(k)),
    "relaxed": ("discrete", ("temperature",), lambda model, rng, temperature=0.5: Relaxed(temperature)),
    "straight-through": ("discrete", ("temperature",), lambda model, rng, temperature=1.0: StraightThrough(temperature)),
}


def names(latents=None):
    """The registered names, in order; `latents`: only those for "continuous" or "discrete" latents."""
    return tuple(n for n, (kind, _, _) in REGISTRY.items() if latents in (None, kind))


def options(name):
    """The options the estimator `name` takes (e.g. ("k",)): any other is an option that does nothing for it."""
    return REGISTRY[name][1]


def make(name, model=None, rng=None, **opts):
    """The estimator registered as `name`, for `model` (NVIL sizes its baselines from it), with its `opts`."""
    if name not in REGISTRY:
        raise ValueError(f"unknown estimator {name!r}; expected one of {', '.join(REGISTRY)}")
    _, takes, build = REGISTRY[name]
    extra = sorted(set(opts) - set(takes))
    if extra:
        raise ValueError(f"estimator {name!r} takes no option {', '.join(extra)} (it takes: {', '.join(takes) or 'none'})")
    return build(model, rng, **{k: v for k, v in opts.items() if v is not None})


__all__ = ["Estimator", "Objective", "Summary", "REGISTRY", "names", "options", "make", "ascend", "total", "generator",
           "draw", "summarize", "gradient_variance", "gradient_samples", "log_mean_exp", "iwae_bound",
           "normalized_weights", "elbo", "ELBO", "IWAE", "score_function_surrogate", "RunningMean", "ScoreFunction",
           "Reinforce", "local_signals", "NVIL", "NVILTerms", "vimco_surrogate", "VIMCO", "WakeSleep",
           "ReweightedWakeSleep", "straight_through", "Relaxed", "StraightThrough",
           "discrete", "importance", "reparam", "score_function", "vimco", "wake_sleep", "relaxed"]
