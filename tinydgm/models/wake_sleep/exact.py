"""Exact computations on a Helmholtz machine small enough to enumerate (for tests and teaching)."""
import numpy as np

import tinydgm as td


def all_states(n, dtype=np.float64):
    """All 2^n binary vectors of length n, as rows."""
    return ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1).astype(dtype)


def exact_log_joint_table(model, x):
    """log p(x_b, h) for every image b and every joint hidden state h: (number of states, B), and the states."""
    sizes = model.layers[1:]
    states = all_states(sum(sizes))
    hs = np.split(states, np.cumsum(sizes)[:-1], axis=1)
    with td.no_grad():
        table = model.log_joint(x, [h[:, None, :] for h in hs]).data
    return table, hs


def exact_log_px(model, x):
    """log p(x) = log Σ_h p(x, h), summed over all hidden states."""
    table, _ = exact_log_joint_table(model, x)
    return td.logsumexp(table, axis=0).data


def exact_kl_posterior(model, x):
    """KL(p(h|x) ‖ q(h|x)) per image, summed over all hidden states."""
    table, hs = exact_log_joint_table(model, x)
    log_post = table - td.logsumexp(table, axis=0).data
    with td.no_grad():
        log_q = model.log_q([h[:, None, :] for h in hs], x).data
    return (np.exp(log_post) * (log_post - log_q)).sum(0)
