"""The VAE's gradient derived by hand, in plain NumPy (Kingma & Welling 2013, App. B/C); the step is the engine's Adam.

One stochastic layer, tanh MLPs, as on the slides:

    encoder   h1 = tanh(x W1 + b1), h2 = tanh(h1 W2 + b2), [mu, logvar] = h2 W3 + b3
    sample    z = mu + sigma * eps,  sigma = exp(logvar / 2),  eps ~ N(0, I)
    decoder   g1 = tanh(z W4 + b4),  g2 = tanh(g1 W5 + b5),  l = g2 W6 + b6   (Bernoulli logits)
    loss      mean over the batch of  -log p(x|z) + KL(q(z|x) || N(0, I))
              -log p(x|z) = sum_j softplus(l_j) - x_j l_j
              KL          = 1/2 sum_i (mu_i^2 + sigma_i^2 - logvar_i - 1)

`params` is a dict of arrays named W1, b1, ..., W6, b6 (PARAM_NAMES order), each W of shape
(n_in, n_out) so that a layer is `x @ W + b`.  The decoder is differentiated by backprop through
the Bernoulli likelihood, the encoder through the reparameterisation and the analytic KL.
Buffers are reused between calls through the `work` dict.  `train_step` updates the arrays with
the engine's own Adam (`adam(params)`), so that `scripts/bench.py engine|vae` compare the gradients
alone.  The stable formulas (softplus, sigmoid) are `tinydgm.numerics`'.
"""
import numpy as np

from tinydgm import numerics, optim
from tinydgm.tensor import Tensor

PARAM_NAMES = ("W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4", "W5", "b5", "W6", "b6")


def init_params(rng, x_dim=784, hidden=(200, 200), z_dim=50, dtype=np.float32):
    """PyTorch-default init U(-1/sqrt(n_in), 1/sqrt(n_in)) for the six layers."""
    sizes = [x_dim, *hidden, 2 * z_dim, None, *hidden[::-1], x_dim]
    sizes[len(hidden) + 2] = z_dim
    pairs = [(sizes[i], sizes[i + 1]) for i in range(len(sizes) - 1) if i != len(hidden) + 1]
    params = {}
    for k, (n_in, n_out) in enumerate(pairs, 1):
        bound = 1.0 / np.sqrt(n_in)
        params[f"W{k}"] = rng.uniform(-bound, bound, (n_in, n_out)).astype(dtype)
        params[f"b{k}"] = rng.uniform(-bound, bound, n_out).astype(dtype)
    return params


def _buf(work, name, shape, dtype):
    """A scratch array kept in `work` between calls (allocated once per shape)."""
    a = work.get(name)
    if a is None or a.shape != shape or a.dtype != dtype:
        a = work[name] = np.empty(shape, dtype)
    return a


def _linear(work, name, x, W, b):
    out = _buf(work, name, (x.shape[0], W.shape[1]), W.dtype)
    np.matmul(x, W, out=out)
    out += b
    return out


def _tanh_backward(work, name, g, h):
    # d tanh(a)/da = 1 - tanh(a)^2
    out = _buf(work, name, h.shape, h.dtype)
    np.multiply(h, h, out=out)
    np.subtract(1.0, out, out=out)
    out *= g
    return out


def _backward_linear(work, grads, k, x, d_out, d_in_name=None):
    """dW = x^T d_out, db = sum_rows d_out, and (if asked) d_in = d_out W^T."""
    np.matmul(x.T, d_out, out=grads[f"W{k}"])                        # dL/dW = x^T dL/dout
    np.sum(d_out, axis=0, out=grads[f"b{k}"])                         # dL/db = 1^T dL/dout
    if d_in_name is None:
        return None
    W = grads[f"W{k}"]
    d_in = _buf(work, d_in_name, (d_out.shape[0], W.shape[0]), W.dtype)
    return np.matmul(d_out, work["params"][f"W{k}"].T, out=d_in)     # dL/dx = dL/dout W^T


def loss_and_grads(params, x, eps, grads=None, work=None):
    """Mean over the batch of -ELBO(x) with z = mu + sigma*eps, and its gradient.

    Returns (loss: float, grads: dict like params).  Pass the same `grads` and `work` dicts back
    in to reuse their memory.
    """
    work = {} if work is None else work
    grads = {n: np.empty_like(p) for n, p in params.items()} if grads is None else grads
    work["params"] = params
    B, dt = x.shape[0], params["W1"].dtype
    z_dim = params["W4"].shape[0]

    # ---- forward: encoder
    h1 = np.tanh(_linear(work, "h1", x, params["W1"], params["b1"]), out=work["h1"])
    h2 = np.tanh(_linear(work, "h2", h1, params["W2"], params["b2"]), out=work["h2"])
    o = _linear(work, "o", h2, params["W3"], params["b3"])
    mu, logvar = o[:, :z_dim], o[:, z_dim:]
    var = np.exp(logvar, out=_buf(work, "var", mu.shape, dt))             # sigma^2 = exp(logvar)
    std = np.sqrt(var, out=_buf(work, "std", mu.shape, dt))               # sigma = exp(logvar/2)
    z = np.multiply(std, eps, out=_buf(work, "z", mu.shape, dt))
    z += mu                                                               # z = mu + sigma * eps

    # ---- forward: decoder and the two terms of the loss
    g1 = np.tanh(_linear(work, "g1", z, params["W4"], params["b4"]), out=work["g1"])
    g2 = np.tanh(_linear(work, "g2", g1, params["W5"], params["b5"]), out=work["g2"])
    logits = _linear(work, "l", g2, params["W6"], params["b6"])
    log_px = numerics.bernoulli_log_prob(np, logits, x)                  # x l - softplus(l)
    nll = -float(log_px.sum(dtype=np.float64))
    kl = 0.5 * float(np.sum(mu * mu + var - logvar - 1.0, dtype=np.float64))  # small: B x z_dim
    loss = (nll + kl) / B

    # ---- backward: decoder, through the Bernoulli likelihood
    dl = numerics.sigmoid(np, logits)
    dl -= x                                                               # d[-log p(x|z)]/dl = sigmoid(l) - x
    dl *= 1.0 / B                                                         # mean over the batch
    dg2 = _backward_linear(work, grads, 6, g2, dl, "dg2")
    da5 = _tanh_backward(work, "da5", dg2, g2)
    dg1 = _backward_linear(work, grads, 5, g1, da5, "dg1")
    da4 = _tanh_backward(work, "da4", dg1, g1)
    dz = _backward_linear(work, grads, 4, z, da4, "dz")

    # ---- backward: encoder, through the reparameterisation and the analytic KL
    do = _buf(work, "do", o.shape, dt)
    dmu, dlogvar = do[:, :z_dim], do[:, z_dim:]
    np.multiply(mu, 1.0 / B, out=dmu)                                     # dKL/dmu = mu
    dmu += dz                                                             # dz/dmu = 1
    np.subtract(var, 1.0, out=dlogvar)
    dlogvar *= 0.5 / B                                                    # dKL/dlogvar = (sigma^2 - 1)/2
    tmp = np.multiply(dz, eps, out=_buf(work, "tmp", mu.shape, dt))
    tmp *= std
    tmp *= 0.5                                                            # dz/dlogvar = eps * sigma / 2
    dlogvar += tmp
    dh2 = _backward_linear(work, grads, 3, h2, do, "dh2")
    da2 = _tanh_backward(work, "da2", dh2, h2)
    dh1 = _backward_linear(work, grads, 2, h1, da2, "dh1")
    da1 = _tanh_backward(work, "da1", dh1, h1)
    _backward_linear(work, grads, 1, x, da1)
    return loss, grads


def adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    """The engine's Adam (`tinydgm.optim.Adam`) over the arrays of `params`, stepping them in place."""
    return optim.Adam([Tensor(p) for p in params.values()], lr=lr, betas=betas, eps=eps)


def train_step(params, opt, x, eps, grads=None, work=None):
    """One step of `opt = adam(params)` on the mean -ELBO; returns the loss before the step."""
    loss, grads = loss_and_grads(params, x, eps, grads, work)
    for leaf, name in zip(opt.params, params):
        leaf.grad = grads[name]
    opt.step()
    return loss
