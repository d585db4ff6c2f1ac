"""Universal Dependencies English EWT (or any folder of CoNLL-U files) as one corpus for tagging.

The unsupervised corpus is the word forms of every file in the folder (train+dev+test for EWT);
the gold XPOS (Penn) and UPOS tags are kept for scoring induced states.
"""
import glob
import os

import numpy as np

from tinydgm.data.conllu import conllu
from tinydgm.data.mnist import data_root
from tinydgm.errors import DataError


def ewt_dir(root=None):
    """The shipped UD English EWT folder: `root`, else $TINYDGM_DATA, else data/ beside the package."""
    return os.path.join(data_root(root), "ud_english_ewt")


class Corpus:
    """Sentences of one or more CoNLL-U files, with the vocabulary and integer-coded sentences
    (DataError when the files hold no sentence)."""

    def __init__(self, paths):
        self.paths = sorted(paths)
        self.sentences = [s for p in self.paths for s in conllu(p)]
        if not self.sentences:
            raise DataError(f"{', '.join(map(str, self.paths)) or '(no files)'}: no sentences; "
                            f"expected CoNLL-U word lines")
        index = {}
        self.ints = [np.array([index.setdefault(w, len(index)) for w in s.forms], dtype=np.int64)
                     for s in self.sentences]
        self.vocab = list(index)
        self.forms = [w for s in self.sentences for w in s.forms]
        self.xpos = [t for s in self.sentences for t in s.xpos]
        self.upos = [t for s in self.sentences for t in s.upos]


def corpus_paths(data_dir):
    """The .conllu(.gz) files of a directory."""
    return sorted(glob.glob(os.path.join(data_dir, "*.conllu")) +
                  glob.glob(os.path.join(data_dir, "*.conllu.gz")))


def load_corpus(data_dir):
    """The Corpus of a folder's CoNLL-U files, or of its ud_english_ewt/ (a data folder, as the other commands'
    --data takes); DataError (or ConlluError) naming what is wrong."""
    paths = corpus_paths(data_dir) or corpus_paths(os.path.join(data_dir, "ud_english_ewt"))
    if not paths:
        raise DataError(f"{data_dir}: no .conllu or .conllu.gz files, nor a ud_english_ewt/ folder holding them "
                        f"(expected UD English EWT)")
    return Corpus(paths)
