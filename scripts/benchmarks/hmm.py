"""HMM E-step speed on UD English EWT: `python scripts/bench.py hmm [--states 45] [--rounds 3]`.

Measured side by side, interleaved round by round (median of the rounds):
  estep      tinydgm's forward-backward over the whole corpus (length buckets, scaled, BLAS)
  em_iter    one plain EM iteration: E-step + closed-form M-step
  floor      one (tokens, K) @ (K, K) product: the arithmetic of a single forward pass
  hmmlearn   one EM iteration of hmmlearn's CategoricalHMM, if installed (it is not a dependency),
             with its default log-space implementation, and with implementation="scaling"
  rich_em    one featurized EM iteration (E-step + 30 L-BFGS M-step iterations)
  direct     one evaluation of the direct objective and its gradient
Throughput is tokens·K²/s; ratios are between columns of this one run (the machine is shared).
"""
import json
import os
import time

import numpy as np

from benchmarks._cli import Parser, first_paragraph, integer


def _time(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def main(argv):
    p = Parser(prog="bench.py hmm", description=first_paragraph(__doc__))
    p.add_argument("--states", type=integer(1), default=45)
    p.add_argument("--rounds", type=integer(1), default=3)
    p.add_argument("--no-rich", action="store_true", help="skip the featurized timings")
    args = p.parse_args(argv)

    from tinydgm.data import ewt
    from tinydgm.experiments import loglinear
    from tinydgm.models.loglinear import hmm as H
    from tinydgm.models.loglinear.model import random_hmm
    corpus = ewt.load_corpus(ewt.ewt_dir())
    data, K = loglinear.buckets(corpus), args.states
    n = len(corpus.forms)
    rng = np.random.default_rng(0)
    plain = random_hmm(loglinear.features(corpus, K, "basic")[0], K, rng, 0.1)
    X, A = rng.random((n, K)), rng.random((K, K))
    padded = sum(b.words.size for b in data)

    cases = {"estep": lambda: H.e_step(plain, data),
             "em_iter": lambda: H.m_step(plain, H.e_step(plain, data), multinomial=True),
             "floor": lambda: X @ A}
    try:
        from hmmlearn.hmm import CategoricalHMM
        model = CategoricalHMM(n_components=K, n_iter=1, init_params="", params="ste", tol=-np.inf)
        model.n_features = len(corpus.vocab)
        model.startprob_, model.transmat_ = plain.start, plain.trans
        model.emissionprob_ = np.exp(plain.log_emission()).T
        x_all = np.concatenate(corpus.ints)[:, None]
        lengths = [len(s) for s in corpus.ints]
        cases["hmmlearn"] = lambda: model.fit(x_all, lengths)
        scaled = CategoricalHMM(n_components=K, n_iter=1, init_params="", params="ste", tol=-np.inf,
                                implementation="scaling")
        scaled.n_features = model.n_features
        scaled.startprob_, scaled.transmat_, scaled.emissionprob_ = (
            model.startprob_, model.transmat_, model.emissionprob_)
        cases["hmmlearn_scaling"] = lambda: scaled.fit(x_all, lengths)
    except ImportError:
        print("hmmlearn not installed: no side-by-side (pip install hmmlearn to compare)")
    if not args.no_rich:
        F, _ = loglinear.features(corpus, K, "rich")
        rich = random_hmm(F, K, rng, 0.01)
        theta = H.pack(rich)
        cases["rich_em"] = lambda: H.m_step(rich, H.e_step(rich, data), kappa=0.5, maxiter=30)
        cases["direct"] = lambda: H.direct_objective(theta, F, K, data, 0.5)

    times = {k: [] for k in cases}
    for _ in range(args.rounds):
        for k, f in cases.items():
            times[k].append(_time(f))
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"EWT: {n} tokens in {len(corpus.ints)} sentences, {len(data)} buckets "
          f"({padded / n - 1:.1%} padding), K = {K}, OPENBLAS_NUM_THREADS = "
          f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    for k, t in med.items():
        print(f"  {k:9s} {t:8.3f} s   {n * K * K / t / 1e9:6.2f} G tokens·K²/s")
    ratios = {"estep_over_floor": med["estep"] / med["floor"]}
    if "hmmlearn" in med:
        ratios["hmmlearn_over_em_iter"] = med["hmmlearn"] / med["em_iter"]
        ratios["hmmlearn_scaling_over_em_iter"] = med["hmmlearn_scaling"] / med["em_iter"]
    for k, v in ratios.items():
        print(f"  {k} = {v:.2f}")
    print(json.dumps({"tokens": n, "states": K, "seconds": med, **ratios}))
    return 0
