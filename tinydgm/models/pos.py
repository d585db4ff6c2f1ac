"""Part-of-speech induction with (featurized) HMMs on UD English EWT (Berg-Kirkpatrick et al. 2010, §5.1).

The unsupervised corpus is the word forms of EWT train+dev+test; the induced states are scored on
all of it against gold XPOS (Penn tags) and UPOS, decoding each token by its posterior argmax.
"""
import glob
import json
import os
import time

import numpy as np

from tinydgm import checkpoint, runs
from tinydgm.conllu import ConlluError, conllu
from tinydgm.datasets import data_root
from tinydgm.features import FEATURE_SETS, conjoin, word_features
from tinydgm.models import hmm as H
from tinydgm.tagging_metrics import plot_confusion, tagging_scores, top_words



def ewt_dir(root=None):
    """The shipped UD English EWT folder: `root`, else $TINYDGM_DATA, else data/ beside the package."""
    return os.path.join(data_root(root), "ud_english_ewt")


# ---- corpus, model, scores ----------------------------------------------------------------------

class Corpus:
    """Sentences of one or more CoNLL-U files, with the vocabulary and integer-coded sentences."""

    def __init__(self, paths):
        self.paths = sorted(paths)
        self.sentences = [s for p in self.paths for s in conllu(p)]
        index = {}
        self.ints = [np.array([index.setdefault(w, len(index)) for w in s.forms], dtype=np.int64)
                     for s in self.sentences]
        self.vocab = list(index)
        self.forms = [w for s in self.sentences for w in s.forms]
        self.xpos = [t for s in self.sentences for t in s.xpos]
        self.upos = [t for s in self.sentences for t in s.upos]

    def buckets(self):
        return H.buckets(self.ints, len(self.vocab))


def corpus_paths(data_dir):
    """The .conllu(.gz) files of a directory."""
    return sorted(glob.glob(os.path.join(data_dir, "*.conllu")) +
                  glob.glob(os.path.join(data_dir, "*.conllu.gz")))


def features(corpus, n_states, feature_set):
    """F = g(x) ⊗ e_z for the named feature set, and the feature names."""
    g, names = word_features(corpus.vocab, FEATURE_SETS[feature_set])
    return conjoin(g, n_states), names


def tag(hmm, data):
    """Posterior-argmax state of every token, in corpus order, and log p(data)."""
    counts, states = H.e_step(hmm, data, decode=True)
    return np.concatenate(states), counts.loglik


def scores(pred, corpus):
    """Many-to-one, one-to-one, V-measure against XPOS and UPOS, as one flat dict."""
    out = {}
    for name, gold in (("xpos", corpus.xpos), ("upos", corpus.upos)):
        out.update({f"{k}_{name}": v for k, v in tagging_scores(pred, gold).items()})
    return out


# ---- training: one EM iteration (or one round of direct L-BFGS) per epoch of `runs.fit` -------

class Trainer:
    """EM or direct-gradient training of an HMM, in the shape `tinydgm.runs.fit` drives."""

    def __init__(self, hmm, corpus, cfg):
        self.hmm, self.corpus, self.cfg = hmm, corpus, cfg
        self.data = corpus.buckets()
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
        pred, loglik = tag(self.hmm, self.data)
        return {"loglik": loglik, "nll_per_token": -loglik / self.n_tokens, **scores(pred, self.corpus)}

    def state(self):
        return {"start": self.hmm.start, "trans": self.hmm.trans, "w": self.hmm.w}

    def load_state(self, state):
        self.hmm = H.HMM(state["start"], state["trans"], state["w"], self.hmm.F)
        self.opt = None                         # L-BFGS memory is not checkpointed (2·10 vectors of θ)


# ---- command line ------------------------------------------------------------------------------

def add_train_arguments(p):
    p.add_argument("--states", type=int, default=45, help="hidden states (default 45)")
    p.add_argument("--features", choices=sorted(FEATURE_SETS), default="rich",
                   help="emission features: basic = word identity (the multinomial HMM), rich = "
                        "+ suffixes 1-3, initial capital, digit, hyphen (default rich)")
    p.add_argument("--mode", choices=("em", "direct"), default="direct",
                   help="em: EM with an L-BFGS M-step; direct: L-BFGS on the marginal likelihood")
    p.add_argument("--iterations", type=int,
                   help="EM iterations, or direct L-BFGS iterations (default 300 em basic, 100 em "
                        "rich, 200 direct)")
    p.add_argument("--kappa", type=float, help="L2 penalty κ‖w‖² (default 0 em basic, else 0.5)")
    p.add_argument("--mstep-iterations", type=int, default=30, help="L-BFGS iterations per M-step")
    p.add_argument("--lbfgs-round", type=int, default=20,
                   help="direct mode: L-BFGS iterations per epoch (a checkpoint after each)")
    p.add_argument("--init-scale", type=float,
                   help="s.d. of the random initial weights (default 0.1 em basic, else 0.01)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", help="folder of .conllu(.gz) files (default: the shipped UD English EWT)")
    p.add_argument("--eval-every", type=int,
                   help="score against gold tags every N epochs (default 10 em, 1 direct)")
    p.add_argument("--out", help="run directory (default runs/loglinear-DATE-TIME)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run (its config is reused)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _config(args):
    from tinydgm.cli import UserError
    cfg = {k: v for k, v in vars(args).items() if k not in ("command", "_kind", "resume", "quiet")}
    cfg["model"] = "loglinear"
    plain = cfg["features"] == "basic" and cfg["mode"] == "em"
    if cfg["iterations"] is None:
        cfg["iterations"] = 300 if plain else 100 if cfg["mode"] == "em" else 200
    if cfg["kappa"] is None:
        cfg["kappa"] = 0.0 if plain else 0.5
    if cfg["init_scale"] is None:
        cfg["init_scale"] = 0.1 if plain else 0.01
    if cfg["eval_every"] is None:
        cfg["eval_every"] = 10 if cfg["mode"] == "em" else 1
    for key in ("states", "iterations", "mstep_iterations", "lbfgs_round", "eval_every"):
        if cfg[key] < 1:
            raise UserError(f"--{key.replace('_', '-')}: expected a positive integer, got {cfg[key]}")
    if cfg["kappa"] < 0:
        raise UserError(f"--kappa: expected a penalty >= 0, got {cfg['kappa']}")
    if plain and cfg["kappa"] > 0:
        raise UserError("--kappa: the plain HMM (--features basic --mode em) has a closed-form "
                        "M-step without a penalty; use --mode direct or --features rich")
    cfg["data"] = os.path.abspath(cfg["data"] or ewt_dir())
    cfg["out"] = cfg["out"] or os.path.join("runs", time.strftime("loglinear-%Y%m%d-%H%M%S"))
    return cfg


def load_corpus(data_dir):
    """The Corpus of a folder's CoNLL-U files, or a UserError naming what is wrong."""
    from tinydgm.cli import UserError
    paths = corpus_paths(data_dir)
    if not paths:
        raise UserError(f"{data_dir}: no .conllu or .conllu.gz files (expected UD English EWT)")
    try:
        return Corpus(paths)
    except ConlluError as e:
        raise UserError(str(e)) from None


def build(cfg, corpus):
    """The initial HMM of a run's config: near-uniform π and A, small random emission weights."""
    F, _ = features(corpus, cfg["states"], cfg["features"])
    return H.random_hmm(F, cfg["states"], np.random.default_rng(cfg["seed"]), cfg["init_scale"])


def _epochs(cfg):
    if cfg["mode"] == "em":
        return cfg["iterations"]
    return -(-cfg["iterations"] // cfg["lbfgs_round"])


def train(args):
    from tinydgm.cli import UserError
    try:
        run = runs.Run.open(args.resume, model="loglinear") if args.resume else None
    except runs.RunError as e:
        raise UserError(str(e)) from None
    cfg = run.config if run else _config(args)
    corpus = load_corpus(cfg["data"])
    if run is None:
        try:
            run = runs.Run.create(cfg["out"], cfg)
        except runs.RunError as e:
            raise UserError(str(e)) from None
    trainer = Trainer(build(cfg, corpus), corpus, cfg)
    summary = runs.fit(run, trainer, epochs=_epochs(cfg), eval_every=cfg["eval_every"],
                       monitor="loglik", mode="max", quiet=args.quiet)
    if summary["epochs"] > 0:
        summary["final"] = report(run, trainer.hmm, corpus, trainer.data)
    return run.finish(summary)


def report(run, hmm, corpus, data):
    """Scores, the most frequent words of each state (top_words.json) and confusion-matrix PNGs."""
    from tinydgm import plots
    t0 = time.perf_counter()
    pred, loglik = tag(hmm, data)
    estep_s = time.perf_counter() - t0
    out = {"loglik": loglik, "tag_s": round(estep_s, 3),
           **{k: round(v, 4) for k, v in scores(pred, corpus).items()}}
    with open(run.path("top_words.json"), "w") as f:
        json.dump(top_words(pred, corpus.forms), f, indent=1)
    if plots.available():
        for name, gold in (("xpos", corpus.xpos), ("upos", corpus.upos)):
            plot_confusion(pred, gold, run.path(f"confusion_{name}.png"),
                           f"p({name.upper()} | state), M-1 {out['m1_' + name]:.3f}")
    return out


def add_eval_arguments(p):
    p.add_argument("--checkpoint", choices=("best", "last"), default="last")
    p.add_argument("--data", help="folder of .conllu(.gz) files (default: the run's)")


def evaluate(args):
    from tinydgm.cli import UserError
    try:
        run = runs.Run.open(args.run_dir, model="loglinear")
        state, _ = runs.load_state(run.path(args.checkpoint))
    except (runs.RunError, checkpoint.CheckpointError) as e:
        raise UserError(str(e)) from None
    cfg = run.config
    corpus = load_corpus(args.data or cfg["data"])
    hmm = build(cfg, corpus)
    if state["w"].shape != hmm.w.shape:
        raise UserError(f"{run.path(args.checkpoint)}.npz: {state['w'].shape[0]} emission weights; "
                        f"the corpus and features give {hmm.w.shape[0]} (another --data?)")
    hmm = H.HMM(state["start"], state["trans"], state["w"], hmm.F)
    out = {"run": run.dir, "checkpoint": args.checkpoint, **report(run, hmm, corpus, corpus.buckets())}
    print(json.dumps(out), flush=True)
    return 0
