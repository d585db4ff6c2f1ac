"""PNG figures with matplotlib (the optional `plot` extra): image grids, learning curves, latent manifold.

Every function takes NumPy arrays, writes one PNG and returns its path.
"""
import math


def available():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _tile(images, rows, cols, side):
    """(n, side*side) images as one (rows*side, cols*side) array, row by row."""
    import numpy as np
    canvas = np.ones((rows * side, cols * side), dtype=np.float32)
    for i, img in enumerate(images[: rows * cols]):
        r, c = divmod(i, cols)
        canvas[r * side:(r + 1) * side, c * side:(c + 1) * side] = img.reshape(side, side)
    return canvas


def _save(plt, fig, path):
    fig.savefig(path, dpi=100, bbox_inches="tight")
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
            plt.plot([p[0] for p in pts], [sign * p[1] for p in pts],
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


def latent_manifold(decode, path, n=20):
    """Decoded means over a grid of 2-d z at the Normal quantiles (Kingma & Welling 2013, Fig. 4)."""
    import numpy as np
    from scipy.stats import norm
    q = norm.ppf(np.linspace(0.05, 0.95, n))
    z = np.array([[a, b] for b in q[::-1] for a in q])
    return image_grid(decode(z), path, cols=n, title="latent manifold: p(x|z) over a grid of z")
