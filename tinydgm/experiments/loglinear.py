"""`tinydgm train loglinear` (alias `pos-hmm`) and `eval` of its runs: part-of-speech induction with the
(featurized) HMMs of `tinydgm.models.loglinear` on UD English EWT (Berg-Kirkpatrick et al. 2010, §5.1).

The unsupervised corpus is the word forms of EWT train+dev+test; the induced states are scored on
all of it against gold XPOS (Penn tags) and UPOS, decoding each token by its posterior argmax.

`--epochs N` (or `--iterations N`, recorded as the config's "epochs") is N EM iterations, or N L-BFGS
iterations in direct mode, where an epoch of `runs.fit` is a round of `--lbfgs-round` of them (the last
round only what is left).  `eval` keeps each result beside the training's files, never over them:

    eval-corpus[-last][-dataXXXXXXXX].json    the scores ("-data…": another corpus, by its SHA-256)
    eval-corpus[-last][-data…]-top_words.json, -confusion_xpos.png, -confusion_upos.png
    evals.jsonl                                one line per evaluation
"""
import hashlib
import json
import math
import os
import time

import numpy as np

from tinydgm import checkpoint, files, plots
from tinydgm.data.ewt import Corpus, corpus_paths, ewt_dir, load_corpus
from tinydgm.errors import CheckpointError, DataError, UserError
from tinydgm.experiments import options, runs
from tinydgm.metrics.tagging import contingency, tagging_scores, top_words
from tinydgm.models.loglinear import hmm as H
from tinydgm.models.loglinear.features import FEATURE_SETS, conjoin, word_features
from tinydgm.models.loglinear.model import HMM, random_hmm

OPTION_ALIASES = {"iterations": "epochs"}    # `--iterations N` is `--epochs N`: an EM iteration is an epoch
TRAIN_THREADS = "narrow"     # tag-by-tag recursions over small arrays: one BLAS thread
EVAL_THREADS = "narrow"
NAME = "loglinear"           # the command, and the name runs record in config.json (`train pos-hmm` is its alias)


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
    return HMM(state["start"], state["trans"], state["w"], hmm.F)


def buckets(corpus):
    """The corpus's integer sentences in padded, time-major buckets (what the E-step runs over)."""
    return H.buckets(corpus.ints, len(corpus.vocab))


def first_sentences(corpus, n):
    """The corpus of its first n sentences (all where n is None): words are coded in first-seen order, so
    their codes and vocabulary are a prefix of the whole corpus's."""
    if n is None or n >= len(corpus.sentences):
        return corpus
    cut = Corpus.__new__(Corpus)
    cut.paths, cut.sentences, cut.ints = corpus.paths, corpus.sentences[:n], corpus.ints[:n]
    cut.vocab = corpus.vocab[:1 + max((int(s.max()) for s in cut.ints if len(s)), default=-1)]
    tokens = sum(len(s) for s in cut.ints)
    cut.forms, cut.xpos, cut.upos = corpus.forms[:tokens], corpus.xpos[:tokens], corpus.upos[:tokens]
    return cut


def own_corpus(cfg):
    """The corpus a run trains on: its --data, cut to --limit sentences."""
    return first_sentences(load_corpus(cfg["data"]), cfg.get("limit"))


class HMMTrainer:
    """EM or direct-gradient training of an HMM, in the shape `runs.fit` drives."""

    def __init__(self, hmm, corpus, cfg, done=0):
        self.hmm, self.corpus, self.cfg = hmm, corpus, cfg
        self.data = buckets(corpus)
        self.n_tokens = len(corpus.forms)
        self.multinomial = cfg["features"] == "basic" and cfg["mode"] == "em"
        self.opt = None                                           # direct mode: L-BFGS and its memory
        self.done = done                                          # direct mode: L-BFGS iterations run

    def round_size(self):
        """Direct mode: the L-BFGS iterations of the next epoch, a round or what is left of --epochs."""
        epochs = budget(self.cfg)
        return self.cfg["lbfgs_round"] if epochs is None else max(0, min(self.cfg["lbfgs_round"], epochs - self.done))

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
            n = self.round_size()
            theta, value = self.opt.run(n)                        # value = −(log p(x) − κ‖θ‖²)
            self.hmm, self.done = H.unpack(theta, self.hmm.F, self.hmm.n_states), self.done + n
            loglik, times = -value, {"lbfgs_iterations": self.done, "evaluations": self.opt.evaluations}
        return {"loss": -loglik / self.n_tokens, **times,
                "step_s": round(time.perf_counter() - t0, 3)}

    def validate(self):
        pred, loglik = H.decode(self.hmm, self.data)
        return {"loglik": loglik, "nll_per_token": -loglik / self.n_tokens, **scores(pred, self.corpus)}

    def state(self):
        lbfgs = {} if self.opt is None else {"lbfgs": self.opt.state(), "lbfgs_iterations": self.done}
        return {"start": self.hmm.start, "trans": self.hmm.trans, "w": self.hmm.w, **lbfgs}

    def load_state(self, state):
        self.hmm, self.opt = from_state(self.hmm, state), None
        self.done = int(state.get("lbfgs_iterations", self.done))
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
    p.add_argument("--epochs", "--iterations", type=int, dest="iterations", metavar="N",
                   help="EM iterations, or direct L-BFGS iterations, exactly (default 300 em basic, 100 em "
                        "rich, 200 direct; unlimited with --minutes)")
    p.add_argument("--minutes", type=float, metavar="M", help="time budget: the run ends at the epoch (EM iteration or "
                   "L-BFGS round) boundary nearest to M minutes")
    p.add_argument("--cpu-minutes", action="store_true", default=None, help="count --minutes in this "
                   "process's CPU time, not wall time (a fair budget on a shared machine)")
    p.add_argument("--kappa", type=float, help="L2 penalty κ‖w‖² (default 0 em basic, else 0.5)")
    p.add_argument("--mstep-iterations", type=int, default=30, help="L-BFGS iterations per M-step")
    p.add_argument("--lbfgs-round", type=int, default=20,
                   help="direct mode: L-BFGS iterations per epoch (a checkpoint after each)")
    p.add_argument("--init-scale", type=float,
                   help="s.d. of the random initial weights (default 0.1 em basic, else 0.01)")
    p.add_argument("--limit", type=int, metavar="N", help="train on the first N sentences only (quick trials)")
    options.run_options(p, NAME, device=False, limit=False, eval_every=None,
                        data_help="folder of .conllu(.gz) files, or a data folder holding ud_english_ewt/ "
                                          "(default: the shipped UD English EWT)",
                        eval_every_help="score against gold tags every N epochs (default 10 em, 1 direct)")


def configure(args):
    """A run's config from the parsed options, checked (UserError naming the option).  On --resume only the
    budget options given are filled in: the others are None, and the run's own are kept."""
    cfg = options.config(args, NAME)
    cfg["epochs"] = cfg.pop("iterations")
    plain = cfg["features"] == "basic" and cfg["mode"] == "em"
    if not args.resume or getattr(args, "given", set()) & set(options.BUDGET):
        cfg["cpu_minutes"] = bool(cfg["cpu_minutes"])
    if not args.resume and cfg["epochs"] is None and cfg["minutes"] is None:
        cfg["epochs"] = 300 if plain else 100 if cfg["mode"] == "em" else 200
    if cfg["kappa"] is None:
        cfg["kappa"] = 0.0 if plain else 0.5
    if cfg["init_scale"] is None:
        cfg["init_scale"] = 0.1 if plain else 0.01
    if cfg["eval_every"] is None:
        cfg["eval_every"] = 10 if cfg["mode"] == "em" else 1
    options.positive(cfg, "states", "epochs", "mstep_iterations", "lbfgs_round", "eval_every")
    if not 0 <= cfg["kappa"] < math.inf:
        raise UserError(f"--kappa: expected a finite penalty >= 0, got {cfg['kappa']}")
    if not 0 < cfg["init_scale"] < math.inf:
        raise UserError(f"--init-scale: expected a finite standard deviation > 0, got {cfg['init_scale']}")
    if plain and cfg["kappa"] > 0:
        raise UserError("--kappa: the plain HMM (--features basic --mode em) has a closed-form "
                        "M-step without a penalty; use --mode direct or --features rich")
    cfg["data"] = os.path.abspath(cfg["data"] or ewt_dir())
    return cfg


def budget(cfg):
    """The run's --epochs: EM or L-BFGS iterations (None: only --minutes; a config may name it "iterations")."""
    return cfg.get("epochs", cfg.get("iterations"))


def build(cfg, corpus):
    """The initial HMM of a run's config: near-uniform π and A, small random emission weights."""
    F, _ = features(corpus, cfg["states"], cfg["features"])
    return random_hmm(F, cfg["states"], np.random.default_rng(cfg["seed"]), cfg["init_scale"])


def trained(run, cfg):
    """(epochs, direct-mode L-BFGS iterations) behind a run's last checkpoint, read from its .json copy."""
    try:
        with open(run.path("last.json")) as f:
            meta = json.load(f)
        epochs = int(meta["loop"]["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0, 0
    state = meta.get("state") if isinstance(meta.get("state"), dict) else {}
    return epochs, int(state.get("lbfgs_iterations", epochs * cfg["lbfgs_round"]))


def identify_corpus(run, cfg, corpus):
    """A new run records its corpus's SHA-256 (`digest`) in cfg; a resumed one checks it is the same (its
    --data may have moved), or records it where the run has no record yet."""
    found = digest(corpus.paths)
    recorded = None if run is None else run.config.get("corpus_sha256")
    if recorded not in (None, found):
        raise DataError(f"{cfg['data']}: not the corpus {run.dir} was trained on (its SHA-256 {found[:12]}... differs "
                        f"from the recorded {recorded[:12]}...); give --data DIR with the run's own corpus")
    if run is None:
        cfg["corpus_sha256"] = found
    elif recorded is None:
        run.pending["corpus_sha256"] = run.config["corpus_sha256"] = found


def epochs_in_all(cfg, epochs_done, iterations_done):
    """The epochs of `runs.fit` that make --epochs iterations: EM iterations, or the rounds of L-BFGS
    iterations done so far and those still to run (None: no limit but --minutes)."""
    n = budget(cfg)
    if n is None or cfg["mode"] == "em":
        return n
    return epochs_done + -(-max(0, n - iterations_done) // cfg["lbfgs_round"])


def train(args):
    run, cfg = options.resume_or_configure(args, NAME, configure)
    corpus = own_corpus(cfg)
    identify_corpus(run, cfg, corpus)
    run = run or runs.Run.create(cfg["out"], cfg)
    epochs_done, iterations_done = trained(run, cfg)
    trainer = HMMTrainer(build(cfg, corpus), corpus, cfg, iterations_done)
    summary = runs.fit(run, trainer, epochs=epochs_in_all(cfg, epochs_done, iterations_done),
                       minutes=cfg.get("minutes"), eval_every=cfg["eval_every"], monitor="loglik", mode="max",
                       quiet=args.quiet, clock="cpu" if cfg.get("cpu_minutes") else "wall")
    if summary["epochs"] > 0:
        summary["final"] = report(run, trainer.hmm, corpus, trainer.data)
    return run.finish(summary)


def report(run, hmm, corpus, data, prefix=""):
    """Scores, the most frequent words of each state (PREFIXtop_words.json) and confusion-matrix PNGs
    (PREFIXconfusion_xpos.png, _upos), the names of the files written under "files"."""
    t0 = time.perf_counter()
    pred, loglik = H.decode(hmm, data)
    estep_s = time.perf_counter() - t0
    out = {"loglik": loglik, "nll_per_token": -loglik / len(corpus.forms), "tag_s": round(estep_s, 3),
           **{k: round(v, 4) for k, v in scores(pred, corpus).items()}}
    names = [f"{prefix}top_words.json"]
    files.write_json(run.path(names[0]), top_words(pred, corpus.forms))
    if plots.available():
        for name, gold in (("xpos", corpus.xpos), ("upos", corpus.upos)):
            names.append(f"{prefix}confusion_{name}.png")
            plots.confusion(*contingency(pred, gold), run.path(names[-1]),
                            f"p({name.upper()} | state), M-1 {out['m1_' + name]:.3f}")
    return {**out, "files": names}


# ---- eval: a result of its own for each request --------------------------------------------------

def add_eval_arguments(p):
    p.add_argument("--checkpoint", choices=("best", "last"), default="last",
                   help="the last checkpoint (default), or the one with the best log-likelihood of the corpus")
    p.add_argument("--data", help="folder of .conllu(.gz) files (default: the run's own corpus, its first --limit "
                   "sentences where it was trained on those); a corpus of other files is kept apart "
                   "(eval-corpus-…-dataXXXXXXXX.json, the first digits of its SHA-256)")


def digest(paths):
    """SHA-256 of a corpus: of its files' SHA-256s, sorted (so a copy elsewhere is the same corpus)."""
    each = []
    for path in paths:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        each.append(h.hexdigest())
    return hashlib.sha256("\n".join(sorted(each)).encode()).hexdigest()


def corpus_files(folder):
    """The .conllu(.gz) files that `load_corpus(folder)` reads."""
    return corpus_paths(folder) or corpus_paths(os.path.join(folder, "ud_english_ewt"))


def eval_corpus(cfg, data):
    """(corpus, other): the run's own corpus, cut to its --limit (also where --data DIR holds the same files),
    and other None; else DIR's whole corpus, and other = {"data_sha256": its digest}."""
    corpus = load_corpus(data or cfg["data"])
    found = digest(corpus.paths)
    own = cfg.get("corpus_sha256") or digest(corpus_files(cfg["data"]))    # a run without the record: its files as they are
    if found == own:
        return first_sentences(corpus, cfg.get("limit")), None
    if data is None:
        raise DataError(f"{cfg['data']}: not the corpus the run was trained on (its SHA-256 {found[:12]}... differs "
                        f"from the recorded {own[:12]}...); give --data DIR with the run's own corpus")
    return corpus, {"data_sha256": found}


def eval_name(checkpoint_name, other):
    """One name per distinct request: the checkpoint (best unnamed, as for every model) and the data where
    it is not the run's own."""
    return ("eval-corpus" + "-last" * (checkpoint_name == "last")
            + (f"-data{other['data_sha256'][:8]}" if other else ""))


def evaluate(args):
    """Scores of a checkpoint on the run's corpus (or --data's): eval-corpus*.json, a line of evals.jsonl,
    its own top words and figures, and the result printed as one JSON line."""
    run = runs.Run.open(args.run_dir, model=NAME)
    files.check_writable(run.dir)
    state, loop = checkpoint.load_state(run.path(args.checkpoint))
    cfg = run.config
    corpus, other = eval_corpus(cfg, args.data)
    hmm = build(cfg, corpus)
    with runs.fitting(run, args.checkpoint):
        hmm = from_state(hmm, state)
    name = eval_name(args.checkpoint, other)
    result = {"run": run.dir, "checkpoint": args.checkpoint, "epochs_trained": loop.get("epoch"),
              "data": os.path.abspath(args.data or cfg["data"]), **(other or {}),
              "limit": None if other else cfg.get("limit"), "sentences": len(corpus.sentences),
              "tokens": len(corpus.forms), **report(run, hmm, corpus, buckets(corpus), prefix=f"{name}-")}
    keep(run, f"{name}.json", result)
    return 0


def keep(run, name, result):
    """Print the result as one JSON line, write it as RUN/name and add it to RUN/evals.jsonl; non-finite
    numbers become null, with a "status" naming them (JSON has no NaN)."""
    bad = [key for key, v in result.items() if isinstance(v, float) and not math.isfinite(v)]
    result = {**{key: None if key in bad else v for key, v in result.items()},
              "status": f"non-finite: {', '.join(bad)} (a diverged model?)" if bad else "ok"}
    print(json.dumps(result, allow_nan=False), flush=True)
    files.write_json(run.path(name), result)
    files.append_line(run.path("evals.jsonl"), json.dumps({"file": name, **result}, allow_nan=False))
