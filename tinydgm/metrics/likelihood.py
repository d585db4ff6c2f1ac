"""Likelihood metrics: a bound averaged over a data set, the importance-weighted NLL (Burda et al. 2016)
and active units (Burda et al. 2016, sec. 5.2)."""
import numpy as np
from tqdm import tqdm

import tinydgm as td
from tinydgm import backend, numerics


def mean_bound(bound, x, batch_size, bar=None, start=0, total=0.0, after=None):
    """The mean over the rows of x of `bound(x_batch)` (per-example values), in batches, without a graph.

    `start` rows already summed to `total` are skipped; `after(rows done, total)` follows each batch."""
    with td.no_grad():
        for i in range(start, len(x), batch_size):
            values = bound(x[i:i + batch_size])
            total += float(backend.to_numpy(values).astype(np.float64).sum())
            if bar is not None:
                bar.update(len(values))
            if after is not None:
                after(i + len(values), total)
    return total / len(x)


def iw_nll(model, x, k=5000, rng=None, batch_size=None, chunk=None, progress=True, resume=None, keep=None,
           each_batch=None):
    """-L_k averaged over the rows of x, in nats: the test NLL of a model with an `iwae_bound`.

    Works for any model with `iwae_bound(x, k, rng=rng)` returning per-example bounds.  The k
    samples are drawn in equal chunks and combined exactly:  L_k = logsumexp_c L_chunk^(c) - log C,
    so memory stays bounded (about batch_size * chunk rows at a time) for any k.
    `keep(state)` receives after each batch what `resume=state` needs to go on from there with the
    same draws, so an interrupted evaluation ends with the number of an uninterrupted one.
    `each_batch()`, where given, is called before each batch (`tinydgm eval` looks at the machine's load there).
    """
    x = x.data if isinstance(x, td.Tensor) else x
    rng = np.random.default_rng(0) if rng is None else rng
    chunk = chunk or _divisor(k, 1000)
    if k < 1 or chunk < 1 or k % chunk:
        raise ValueError(f"iw_nll: chunk ({chunk}) must be a positive divisor of k ({k}); L_k needs all k samples")
    batch_size = batch_size or max(1, 10000 // chunk)
    draw = backend.device_rng(rng)

    def bound(xb):                                                  # log mean_c exp(L_chunk^(c))
        if each_batch is not None:
            each_batch()
        parts = np.stack([backend.to_numpy(model.iwae_bound(xb, chunk, rng=draw).data)
                          for _ in range(k // chunk)]).astype(np.float64)
        return numerics.log_mean_exp(np, parts, axis=0)

    start, total = 0, 0.0
    if resume is not None:
        start, total = resume["done"], resume["total"]
        rng.bit_generator.state = resume["rng"]

    def after(done, total):
        if keep is not None:
            keep({"done": done, "total": total, "rng": rng.bit_generator.state})

    with tqdm(total=len(x), initial=start, unit="image", disable=not progress, desc=f"L_{k}") as bar:
        return -mean_bound(bound, x, batch_size, bar, start, total, after)


def _divisor(k, most):
    """The largest divisor of k that is at most `most`."""
    return max(d for d in range(1, min(k, most) + 1) if k % d == 0)


def active_units(mean, threshold=0.01):
    """How many latent units have Cov_x(E_q[z_i|x]) > threshold (`mean`: E_q[z|x], one row per x)."""
    mu = backend.to_numpy(mean.data if isinstance(mean, td.Tensor) else mean).astype(np.float64)
    return int((mu.var(axis=0) > threshold).sum())
