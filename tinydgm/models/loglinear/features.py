"""Emission features f(x, z) for the featurized HMM (Berg-Kirkpatrick et al. 2010, section 5.1).

A template maps a word to a feature value, or to None/False when it does not fire; the value
names the feature ("suffix2=ed"). Every feature is conjoined with the state, f(x, z) = g(x) ⊗ e_z,
so a template is one line in TEMPLATES and one name in a FEATURE_SETS entry.
"""
import numpy as np
import scipy.sparse as sp

TEMPLATES = {
    "word":     lambda w: w,                                   # word identity
    "suffix1":  lambda w: len(w) > 1 and w[-1:],
    "suffix2":  lambda w: len(w) > 2 and w[-2:],
    "suffix3":  lambda w: len(w) > 3 and w[-3:],
    "capital":  lambda w: w[:1].isupper(),                     # initial capital
    "digit":    lambda w: any(c.isdigit() for c in w),         # contains a digit
    "hyphen":   lambda w: "-" in w,                            # contains a hyphen
}

FEATURE_SETS = {
    "basic": ["word"],                                         # = the multinomial HMM
    "rich": ["word", "suffix1", "suffix2", "suffix3", "capital", "digit", "hyphen"],
}


def word_features(vocab, names):
    """g(x) for each word of the vocabulary: a sparse 0/1 matrix (|X|, D) and the D feature names."""
    index, rows, cols = {}, [], []
    for i, w in enumerate(vocab):
        for name in names:
            value = TEMPLATES[name](w)
            if value is None or value is False:
                continue
            key = name if value is True else f"{name}={value}"
            rows.append(i)
            cols.append(index.setdefault(key, len(index)))
    g = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(vocab), len(index)))
    return g, list(index)


def conjoin(g, n_states):
    """f(x, z) = g(x) ⊗ e_z: rows indexed by (x, z), x-major; columns by (feature, state)."""
    return sp.kron(g, sp.identity(n_states, format="csr"), format="csr")
