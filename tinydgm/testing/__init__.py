"""Property-test gradient estimators against exact answers, with a stated false-alarm rate.

    models.py      small models with exact answers: sigmoid belief nets to enumerate, a linear-Gaussian model,
                   feature-rich mixtures and featurized HMMs (the package's log-linear models)
    strategies.py  hypothesis strategies drawing them (and distribution parameters), as (model, x) cases
    oracles.py     exact ELBO, L_K, log p(x) and posterior as engine scalars; `gradient` differentiates them
    stats.py       assert_unbiased, assert_same_mean, assert_mean_at_most/at_least, assert_lower_variance,
                   assert_consistent, assert_bound: each call fails a correct
                   estimator with probability <= alpha, and refuses to pass when its draws are too few to see a
                   departure of the stated size
    check.py       check_estimator(estimator or registry name): all of it, by the estimator's claim

    from tinydgm.testing import check_estimator
    check_estimator("vimco", options={"k": 3})    # raises with a falsifying model if VIMCO is not unbiased for ∇ L_3

For tests and users: the package itself never imports it (DESIGN.md, the testing layer).
"""
from tinydgm.testing import check, models, oracles, stats, strategies
from tinydgm.testing.check import PREPARE, TARGETS, Report, Target, check_estimator, draw_estimates, hold
from tinydgm.testing.models import (FeatureHMM, FeatureMixture, LinearGaussian, SigmoidBeliefNet, feature_hmm,
                                    feature_mixture, linear_gaussian, sigmoid_belief_net)
from tinydgm.testing.oracles import (OracleGradientError, check_gradient, elbo, gradient, hmm_posterior, iwae_bound,
                                     log_px, mixture_posterior, posterior)
from tinydgm.testing.stats import (Outcome, StatisticalAssertionError, UnderpoweredError, assert_bound,
                                   assert_consistent, assert_lower_variance, assert_mean_at_least, assert_mean_at_most,
                                   assert_same_mean, assert_unbiased)
from tinydgm.testing.strategies import (Case, bernoulli_logits, binary_images, categorical_logits, feature_hmms,
                                        feature_mixtures, hmm_cases, linear_gaussian_cases, linear_gaussians,
                                        mixture_cases, normal_parameters, relaxed_bernoulli_parameters, sbn_cases,
                                        sigmoid_belief_nets)

__all__ = ["check_estimator", "Report", "Target", "TARGETS", "PREPARE", "hold", "draw_estimates",
           "assert_unbiased", "assert_same_mean", "assert_mean_at_most", "assert_mean_at_least",
           "assert_lower_variance", "assert_consistent", "assert_bound", "Outcome",
           "StatisticalAssertionError", "UnderpoweredError",
           "elbo", "iwae_bound", "log_px", "posterior", "mixture_posterior", "hmm_posterior", "gradient",
           "check_gradient", "OracleGradientError",
           "sigmoid_belief_net", "SigmoidBeliefNet", "linear_gaussian", "LinearGaussian", "feature_mixture",
           "FeatureMixture", "feature_hmm", "FeatureHMM",
           "Case", "sigmoid_belief_nets", "binary_images", "sbn_cases", "linear_gaussians", "linear_gaussian_cases",
           "feature_mixtures", "mixture_cases", "feature_hmms", "hmm_cases",
           "normal_parameters", "bernoulli_logits", "categorical_logits", "relaxed_bernoulli_parameters",
           "check", "models", "oracles", "stats", "strategies"]
