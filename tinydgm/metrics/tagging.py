"""Scores for induced tags against gold tags: many-to-one, one-to-one, V-measure.

All three start from the contingency table n[s, g] = #tokens with induced state s and gold tag g.
Many-to-one maps each state to its most frequent gold tag; one-to-one finds the best one-to-one
map (Hungarian algorithm); V-measure is the harmonic mean of homogeneity and completeness
(Rosenberg & Hirschberg 2007).
"""
import numpy as np
from scipy.optimize import linear_sum_assignment


def contingency(pred, gold):
    """n[s, g] counts, with the state and gold labels it indexes: (n, states, tags)."""
    states, s = np.unique(np.asarray(pred), return_inverse=True)
    tags, g = np.unique(np.asarray(gold), return_inverse=True)
    n = np.zeros((len(states), len(tags)), dtype=np.int64)
    np.add.at(n, (s, g), 1)
    return n, states, tags


def many_to_one(pred, gold):
    """Accuracy when each state is labelled with its most frequent gold tag."""
    n, _, _ = contingency(pred, gold)
    return n.max(axis=1).sum() / n.sum()


def one_to_one(pred, gold):
    """Accuracy under the best one-to-one map from states to tags (Hungarian algorithm)."""
    n, _, _ = contingency(pred, gold)
    rows, cols = linear_sum_assignment(n, maximize=True)
    return n[rows, cols].sum() / n.sum()


def _entropy(counts):
    p = counts[counts > 0] / counts.sum()
    return -(p * np.log(p)).sum()


def v_measure(pred, gold):
    """Harmonic mean of homogeneity 1 - H(G|S)/H(G) and completeness 1 - H(S|G)/H(S)."""
    n, _, _ = contingency(pred, gold)
    h_joint = _entropy(n.ravel())
    h_s, h_g = _entropy(n.sum(axis=1)), _entropy(n.sum(axis=0))
    homogeneity = 1.0 if h_g == 0 else 1 - (h_joint - h_s) / h_g     # H(G|S) = H(S,G) - H(S)
    completeness = 1.0 if h_s == 0 else 1 - (h_joint - h_g) / h_s    # H(S|G) = H(S,G) - H(G)
    if homogeneity + completeness == 0:
        return 0.0
    return 2 * homogeneity * completeness / (homogeneity + completeness)


def tagging_scores(pred, gold):
    """{"m1", "1to1", "vm"} of induced states `pred` against gold tags, token by token."""
    return {"m1": float(many_to_one(pred, gold)), "1to1": float(one_to_one(pred, gold)),
            "vm": float(v_measure(pred, gold))}


def top_words(pred, words, k=10):
    """The k most frequent words of each induced state: {state: [(word, count), ...]}."""
    out = {}
    pred, words = np.asarray(pred), np.asarray(words, dtype=object)
    for s in np.unique(pred):
        w, c = np.unique(words[pred == s], return_counts=True)
        order = np.argsort(-c, kind="stable")[:k]
        out[int(s)] = [(str(w[i]), int(c[i])) for i in order]
    return out
