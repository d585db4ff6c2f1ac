"""`tinydgm train pos-hmm` (alias `loglinear`) and `eval` of its runs: part-of-speech induction with the
(featurized) HMMs of `tinydgm.models.loglinear.hmm` on UD English EWT (Berg-Kirkpatrick et al. 2010, §5.1).

The unsupervised corpus is the word forms of EWT train+dev+test; the induced states are scored on
all of it against gold XPOS (Penn tags) and UPOS, decoding each token by its posterior argmax.
"""
import json
import os
import time

import numpy as np

from tinydgm import plots
from tinydgm.data.ewt import ewt_dir, load_corpus
from tinydgm.errors import CheckpointError, UserError
from tinydgm.experiments import options, runs
from tinydgm.metrics.tagging import contingency, tagging_scores, top_words
from tinydgm.models.loglinear import hmm as H
from tinydgm.models.loglinear.features import FEATURE_SETS, conjoin, word_features

OPTION_ALIASES = {"epochs": "iterations"}    # `--epochs N` is `--iterations N`: an EM iteration is an epoch
TRAIN_THREADS = "narrow"     # tag-by-tag recursions over small arrays: one BLAS thread
EVAL_THREADS = "narrow"
NAME = "loglinear"           # the name runs record in config.json (`tinydgm train pos-hmm` is the same command)


# ---- corpus, model, scores ----------------------------------------------------------------------

def features(corpus, n_states, feature_set):
    """F = g(x) ⊗ e_z for the named feature set, and the feature names."""
    g, names = word_features(corpus.vocab, FEATURE_SETS[feature_set])
    return conjoin(g, n_states), names


def scores(pred, corpus):
    """Many-to-one, one-to-one, V-measure against XPOS and UPOS, as one flat dict."""
    out = {}
    for name, gold in (("xpos", corpus.xpos), ("upos", corpus.upos)):
        out.update({f"{k}_{name}": v for k, v in tagging_scores(pred, gold).items()})
    return out


# ---- training: one EM iteration (or one round of direct L-BFGS) per epoch of `runs.fit` -------

def from_state(hmm, state):
    """The HMM of a checkpoint's state, on `hmm`'s features (which must be the ones it was trained with)."""
    if state["w"].shape != hmm.w.shape:
        raise CheckpointError(f"{state['w'].shape[0]} emission weights; the corpus and features "
                               f"give {hmm.w.shape[0]} (another --data or --features?)")
    return H.HMM(state["start"], state["trans"], state["w"], hmm.F)


def buckets(corpus):
    """The corpus's integer sentences in padded, time-major buckets (what the E-step runs over)."""
    return H.buckets(corpus.ints, len(corpus.vocab))


class HMMTrainer:
    """EM or direct-gradient training of an HMM, in the shape `runs.fit` drives."""

    def __init__(self, hmm, corpus, cfg):
        self.hmm, self.corpus, self.cfg = hmm, corpus, cfg
        self.data = buckets(corpus)
        self.n_tokens = len(corpus.forms)
        self.multinomial = cfg["features"] == "basic" and cfg["mode"] == "em"
        self.opt = None                                           # direct mode: L-BFGS and its memory

    def train_epoch(self, epoch, progress):
        cfg, t0 = self.cfg, time.perf_counter()
        if cfg["mode"] == "em":
            counts = H.e_step(self.hmm, self.data)                # log-likelihood of the model going in
            t1 = time.perf_counter()
            self.hmm = H.m_step(self.hmm, counts, cfg["kappa"], cfg["mstep_iterations"], self.multinomial)
            loglik, times = counts.loglik, {"estep_s": round(t1 - t0, 3)}
        else:
            if self.opt is None:
                self.opt = H.direct_optimizer(self.hmm, self.data, cfg["kappa"])
            theta, value = self.opt.run(cfg["lbfgs_round"])      # value = −(log p(x) − κ‖θ‖²)
            self.hmm = H.unpack(theta, self.hmm.F, self.hmm.n_states)
            loglik, times = -value, {}
        return {"loss": -loglik / self.n_tokens, **times,
                "step_s": round(time.perf_counter() - t0, 3)}

    def validate(self):
        pred, loglik = H.decode(self.hmm, self.data)
        return {"loglik": loglik, "nll_per_token": -loglik / self.n_tokens, **scores(pred, self.corpus)}

    def state(self):
        lbfgs = {} if self.opt is None else {"lbfgs": self.opt.state()}   # direct mode: its memory too
        return {"start": self.hmm.start, "trans": self.hmm.trans, "w": self.hmm.w, **lbfgs}

    def load_state(self, state):
        self.hmm, self.opt = from_state(self.hmm, state), None
        if "lbfgs" in state:
            self.opt = H.direct_optimizer(self.hmm, self.data, self.cfg["kappa"], state=state["lbfgs"])


# ---- command line ------------------------------------------------------------------------------

def add_train_arguments(p):
    p.add_argument("--states", type=int, default=45, help="hidden states (default 45)")
    p.add_argument("--features", choices=sorted(FEATURE_SETS), default="rich",
                   help="emission features: basic = word identity (the multinomial HMM), rich = "
                        "+ suffixes 1-3, initial capital, digit, hyphen (default rich)")
    p.add_argument("--mode", choices=("em", "direct"), default="direct",
                   help="em: EM with an L-BFGS M-step; direct: L-BFGS on the marginal likelihood")
    p.add_argument("--iterations", "--epochs", type=int, dest="iterations",
                   help="EM iterations, or direct L-BFGS iterations (default 300 em basic, 100 em "
                        "rich, 200 direct)")
    p.add_argument("--kappa", type=float, help="L2 penalty κ‖w‖² (default 0 em basic, else 0.5)")
    p.add_argument("--mstep-iterations", type=int, default=30, help="L-BFGS iterations per M-step")
    p.add_argument("--lbfgs-round", type=int, default=20,
                   help="direct mode: L-BFGS iterations per epoch (a checkpoint after each)")
    p.add_argument("--init-scale", type=float,
                   help="s.d. of the random initial weights (default 0.1 em basic, else 0.01)")
    options.run_options(p, NAME, device=False, limit=False, eval_every=None,
                        data_help="folder of .conllu(.gz) files, or a data folder holding ud_english_ewt/ "
                                          "(default: the shipped UD English EWT)",
                        eval_every_help="score against gold tags every N epochs (default 10 em, 1 direct)")


def _config(args):
    cfg = options.config(args, NAME)
    plain = cfg["features"] == "basic" and cfg["mode"] == "em"
    if cfg["iterations"] is None:
        cfg["iterations"] = 300 if plain else 100 if cfg["mode"] == "em" else 200
    if cfg["kappa"] is None:
        cfg["kappa"] = 0.0 if plain else 0.5
    if cfg["init_scale"] is None:
        cfg["init_scale"] = 0.1 if plain else 0.01
    if cfg["eval_every"] is None:
        cfg["eval_every"] = 10 if cfg["mode"] == "em" else 1
    options.positive(cfg, "states", "iterations", "mstep_iterations", "lbfgs_round", "eval_every")
    if cfg["kappa"] < 0:
        raise UserError(f"--kappa: expected a penalty >= 0, got {cfg['kappa']}")
    if plain and cfg["kappa"] > 0:
        raise UserError("--kappa: the plain HMM (--features basic --mode em) has a closed-form "
                        "M-step without a penalty; use --mode direct or --features rich")
    cfg["data"] = os.path.abspath(cfg["data"] or ewt_dir())
    return cfg


def build(cfg, corpus):
    """The initial HMM of a run's config: near-uniform π and A, small random emission weights."""
    F, _ = features(corpus, cfg["states"], cfg["features"])
    return H.random_hmm(F, cfg["states"], np.random.default_rng(cfg["seed"]), cfg["init_scale"])


def _epochs(cfg):
    if cfg["mode"] == "em":
        return cfg["iterations"]
    return -(-cfg["iterations"] // cfg["lbfgs_round"])


def train(args):
    run, cfg = options.resume_or_configure(args, NAME, _config)
    corpus = load_corpus(cfg["data"])
    run = run or runs.Run.create(cfg["out"], cfg)
    trainer = HMMTrainer(build(cfg, corpus), corpus, cfg)
    summary = runs.fit(run, trainer, epochs=_epochs(cfg), eval_every=cfg["eval_every"],
                       monitor="loglik", mode="max", quiet=args.quiet)
    if summary["epochs"] > 0:
        summary["final"] = report(run, trainer.hmm, corpus, trainer.data)
    return run.finish(summary)


def report(run, hmm, corpus, data):
    """Scores, the most frequent words of each state (top_words.json) and confusion-matrix PNGs."""
    t0 = time.perf_counter()
    pred, loglik = H.decode(hmm, data)
    estep_s = time.perf_counter() - t0
    out = {"loglik": loglik, "tag_s": round(estep_s, 3),
           **{k: round(v, 4) for k, v in scores(pred, corpus).items()}}
    with open(run.path("top_words.json"), "w") as f:
        json.dump(top_words(pred, corpus.forms), f, indent=1)
    if plots.available():
        for name, gold in (("xpos", corpus.xpos), ("upos", corpus.upos)):
            plots.confusion(*contingency(pred, gold), run.path(f"confusion_{name}.png"),
                            f"p({name.upper()} | state), M-1 {out['m1_' + name]:.3f}")
    return out


def add_eval_arguments(p):
    p.add_argument("--checkpoint", choices=("best", "last"), default="last")
    p.add_argument("--data", help="folder of .conllu(.gz) files (default: the run's)")


def evaluate(args):
    run, state = runs.load_checkpoint(args.run_dir, NAME, args.checkpoint)
    cfg = run.config
    corpus = load_corpus(args.data or cfg["data"])
    hmm = build(cfg, corpus)
    with runs.fitting(run, args.checkpoint):
        hmm = from_state(hmm, state)
    out = {"run": run.dir, "checkpoint": args.checkpoint, **report(run, hmm, corpus, buckets(corpus))}
    print(json.dumps(out), flush=True)
    return 0
