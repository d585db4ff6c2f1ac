"""Part-of-speech induction with (featurized) HMMs on UD English EWT (Berg-Kirkpatrick et al. 2010, §5.1).

The unsupervised corpus is the word forms of EWT train+dev+test; the induced states are scored on
all of it against gold XPOS (Penn tags) and UPOS, decoding each token by its posterior argmax.
"""
import glob
import os

import numpy as np

from tinydgm.conllu import conllu
from tinydgm.datasets import data_root
from tinydgm.features import FEATURE_SETS, conjoin, word_features
from tinydgm.models import hmm as H
from tinydgm.tagging_metrics import tagging_scores



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
