"""PNG figures with matplotlib (the optional `plot` extra): image grids, learning curves, latent manifold,
wake-sleep's dreams and unit activations, a tagging confusion table.

Every function takes NumPy arrays, writes one PNG and returns its path.
"""
import math

from tinydgm import files
from tinydgm.errors import UserError


def available():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


def require(what):
    """Stop with a one-line UserError where matplotlib is missing and `what` needs it."""
    if not available():
        raise UserError(f"{what}: writing a PNG needs matplotlib (pip install 'tinydgm[plot]')")


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _tile(images, rows, cols, side):
    """(n, side*side) images as one (rows*side, cols*side) array, row by row."""
    import numpy as np
    canvas = np.zeros((rows * side, cols * side), dtype=np.float32)      # cells left over stay blank
    for i, img in enumerate(images[: rows * cols]):
        r, c = divmod(i, cols)
        canvas[r * side:(r + 1) * side, c * side:(c + 1) * side] = img.reshape(side, side)
    return canvas


def _save(plt, fig, path, **options):
    """Write the figure as a PNG, whole (tinydgm.files), and close it."""
    try:
        with files.writing(path) as f:
            fig.savefig(f, format="png", **{"dpi": 100, "bbox_inches": "tight", **options})
    finally:
        plt.close(fig)
    return path


def image_grid(images, path, cols=10, title=None):
    """A grid of square grey images (rows of `cols`), values in [0, 1]."""
    plt = _pyplot()
    side = int(round(math.sqrt(images.shape[1])))
    rows = math.ceil(len(images) / cols)
    fig = plt.figure(figsize=(cols * 0.6, rows * 0.6 + (0.4 if title else 0)))
    plt.imshow(_tile(images, rows, cols, side), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    plt.axis("off")
    if title:
        plt.title(title, fontsize=8)
    return _save(plt, fig, path)


def reconstructions(x, x_rec, path, cols=10):
    """Data (odd rows) above their reconstructions (even rows)."""
    import numpy as np
    n = (len(x) // cols) * cols
    pairs = np.concatenate([np.stack([x[i:i + cols], x_rec[i:i + cols]]) for i in range(0, n, cols)])
    return image_grid(pairs.reshape(-1, x.shape[1]), path, cols, "data (rows 1, 3, ...) and reconstructions")


def learning_curves(records, path, keys=("loss", "valid_elbo")):
    """Training loss and validation ELBO per epoch (validation negated, to share the axis)."""
    plt = _pyplot()
    fig = plt.figure(figsize=(6, 4))
    for key in keys:
        pts = [(r["epoch"] + 1, r[key]) for r in records if key in r]
        if pts:
            sign = -1 if key.startswith("valid_elbo") else 1
            plt.plot([p[0] for p in pts], [sign * p[1] for p in pts], marker="o", ms=3,   # one epoch: a point
                     label=("-" if sign < 0 else "") + key)
    values = [-r["valid_elbo"] for r in records if "valid_elbo" in r]
    if values:                                           # zoom on the interesting part
        lo = min(values + [r["loss"] for r in records if "loss" in r])
        plt.ylim(lo - 2, lo + 40)
    plt.xlabel("epoch")
    plt.ylabel("nats per image")
    plt.legend()
    plt.grid(alpha=0.3)
    return _save(plt, fig, path)


def curves(series, path, xlabel, ylabel, log_x=False, marks=(), span=None):
    """Several runs' (x, y) points as lines, one per (label, points) of `series`; `marks`: (x, text) pairs drawn
    as dotted vertical lines; `span`: the y-range shown from the lowest point up (the rest is cut off)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, points in series:
        ax.plot(*zip(*points), lw=1, label=name)
    for x, text in marks:
        ax.axvline(x, color="grey", lw=0.5, ls=":")
        ax.text(x, 1.0, f" {text}", transform=ax.get_xaxis_transform(), fontsize=7, color="grey", va="top")
    if log_x:
        ax.set_xscale("log")
    if span:
        low = min(y for _, points in series for _, y in points)
        ax.set_ylim(low - 0.05 * span, low + span)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def latent_manifold(decode, path, n=20):
    """Decoded means over a grid of 2-d z at the Normal quantiles (Kingma & Welling 2013, Fig. 4)."""
    import numpy as np
    from scipy.stats import norm
    q = norm.ppf(np.linspace(0.05, 0.95, n))
    z = np.array([[a, b] for b in q[::-1] for a in q])
    return image_grid(decode(z), path, cols=n, title="latent manifold: p(x|z) over a grid of z")


def side_by_side(left, right, path, titles, n=50, cols=10):
    """Two grids of square images side by side (e.g. test images next to dreams)."""
    plt = _pyplot()
    side = int(round(math.sqrt(left.shape[1])))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(1, 2, figsize=(2 * cols * 0.6, rows * 0.6 + 0.4))
    for ax, images, title in zip(axes, (left, right), titles):
        ax.imshow(_tile(images[:n], rows, cols, side), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    return _save(plt, fig, path)


def activations(q_means, p_means, path):
    """Per layer: each unit's mean activation under q(h|x) on data and under p in dreams, units sorted."""
    import numpy as np
    plt = _pyplot()
    L = len(q_means)
    fig, axes = plt.subplots(1, L, figsize=(4 * L, 3), squeeze=False)
    for l, ax in enumerate(axes[0]):
        mq = q_means[l]
        order = np.argsort(-mq)
        ax.plot(mq[order], label="q(h|x), data")
        ax.plot(p_means[l][order], ".", ms=3, label="p, dreams")
        ax.set_title(f"layer h{l + 1}: {int(((mq > 0.01) & (mq < 0.99)).sum())} of {len(mq)} units not stuck", fontsize=8)
        ax.set_xlabel("unit (sorted)")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].set_ylabel("mean activation")
    axes[0][0].legend(fontsize=7)
    return _save(plt, fig, path)


def confusion(n, states, tags, path, title=""):
    """The state-by-tag table n[s, g] as a PNG, each state's row normalised, states ordered by their tag."""
    import numpy as np
    plt = _pyplot()
    rows = n / n.sum(axis=1, keepdims=True)
    order = np.lexsort((-rows.max(axis=1), rows.argmax(axis=1)))   # group states by their best tag
    fig, ax = plt.subplots(figsize=(0.22 * len(tags) + 3, 0.18 * len(states) + 2))
    ax.imshow(rows[order], aspect="auto", cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(tags)), [str(t) for t in tags], rotation=90, fontsize=6)
    ax.set_yticks(range(len(states)), [str(s) for s in states[order]], fontsize=5)
    ax.set_xlabel("gold tag")
    ax.set_ylabel("induced state")
    ax.set_title(title or "p(gold tag | induced state)", fontsize=8)
    fig.tight_layout()
    return _save(plt, fig, path, dpi=120, bbox_inches=None)
