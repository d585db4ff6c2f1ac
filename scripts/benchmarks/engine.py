"""`python scripts/bench.py engine`: one VAE training step written with tinydgm ops, against the
same step derived by hand in plain NumPy (tinydgm.models.vae.by_hand) and, where installed, PyTorch.

Workload: encoder 784-200-200-(2x50) giving mu and log sigma^2, decoder 50-200-200-784, tanh,
Bernoulli log-likelihood from logits, closed-form KL, Adam, float32.  The three steps run
interleaved in one process (rounds of `--steps` each, in turn) so that machine noise hits all of
them alike; we report medians over rounds and the ratios.  Before timing, the engine's gradient is
checked against the hand-derived one in float64.

`--device cuda`: the engine on CuPy against PyTorch on the GPU (the hand-derived step is NumPy-only);
each timed round ends with a device synchronisation.
"""
import json
import os
import statistics
import time
import tracemalloc

import numpy as np

import tinydgm as td
from tinydgm import ops
from tinydgm.data.mnist import binarized_mnist
from tinydgm.experiments import runtime
from tinydgm.models.vae import by_hand as vae_by_hand

from benchmarks._cli import Parser, first_paragraph, integer

Z = 50


class EngineStep:
    """The VAE step with tinydgm ops: the graph is rebuilt and differentiated every step."""

    def __init__(self, params, lr=1e-3):
        self.p = {k: td.nn.Parameter(td.backend.asarray(v)) for k, v in params.items()}
        self.opt = td.optim.Adam(list(self.p.values()), lr=lr)

    def loss(self, x, eps):
        P = self.p
        h = td.tanh(ops.linear(x, P["W1"], P["b1"]))
        h = td.tanh(ops.linear(h, P["W2"], P["b2"]))
        o = ops.linear(h, P["W3"], P["b3"])
        mu, log_var = o[:, :Z], o[:, Z:]
        z = mu + td.exp(0.5 * log_var) * eps                       # reparameterisation
        g = td.tanh(ops.linear(z, P["W4"], P["b4"]))
        g = td.tanh(ops.linear(g, P["W5"], P["b5"]))
        logits = ops.linear(g, P["W6"], P["b6"])
        log_px = td.sum(td.bernoulli_log_prob(logits, x))          # x l - softplus(l)
        kl = 0.5 * td.sum(mu * mu + td.exp(log_var) - 1 - log_var)  # KL(q || N(0, I))
        return (kl - log_px) / x.shape[0]

    def grads(self, x, eps):
        self.opt.zero_grad()
        loss = self.loss(x, eps)
        loss.backward()
        return loss, {k: p.grad for k, p in self.p.items()}

    def __call__(self, x, eps):
        loss, _ = self.grads(x, eps)
        self.opt.step()
        return loss.item()


class HandStep:
    def __init__(self, params, lr=1e-3):
        self.params = {k: v.copy() for k, v in params.items()}
        self.opt = vae_by_hand.adam(self.params, lr=lr)
        self.grads, self.work = {n: np.empty_like(p) for n, p in self.params.items()}, {}

    def __call__(self, x, eps):
        return vae_by_hand.train_step(self.params, self.opt, x, eps, self.grads, self.work)


class TorchStep:
    def __init__(self, params, lr=1e-3, device="cpu"):
        import torch
        self.torch = torch
        self.p = {k: torch.tensor(v.copy(), requires_grad=True, device=device) for k, v in params.items()}
        self.opt = torch.optim.Adam(list(self.p.values()), lr=lr)

    def __call__(self, x, eps):
        torch, P = self.torch, self.p
        as_torch = torch.from_numpy if isinstance(x, np.ndarray) else torch.from_dlpack   # CuPy: shared, no copy
        x, eps = as_torch(x), as_torch(eps)
        self.opt.zero_grad()
        h = torch.tanh(torch.addmm(P["b1"], x, P["W1"]))
        h = torch.tanh(torch.addmm(P["b2"], h, P["W2"]))
        o = torch.addmm(P["b3"], h, P["W3"])
        mu, log_var = o[:, :Z], o[:, Z:]
        z = mu + torch.exp(0.5 * log_var) * eps
        g = torch.tanh(torch.addmm(P["b4"], z, P["W4"]))
        g = torch.tanh(torch.addmm(P["b5"], g, P["W5"]))
        logits = torch.addmm(P["b6"], g, P["W6"])
        log_px = (x * logits - torch.nn.functional.softplus(logits)).sum()
        kl = 0.5 * (mu * mu + torch.exp(log_var) - 1 - log_var).sum()
        loss = (kl - log_px) / x.shape[0]
        loss.backward()
        self.opt.step()
        return loss.item()


def check_gradients(x):
    """The engine's gradient equals the hand-derived one in float64; returns the worst relative error."""
    rng = np.random.default_rng(1)
    params = vae_by_hand.init_params(rng, dtype=np.float64)
    x = x[:32].astype(np.float64)
    eps = rng.standard_normal((32, Z))
    _, hand = vae_by_hand.loss_and_grads(params, x, eps)
    _, engine = EngineStep(params).grads(x, eps)
    return max(float(np.abs(engine[k] - hand[k]).max() / (np.abs(hand[k]).max() + 1e-300)) for k in hand)


def per_op_overhead(n=2000):
    """Microseconds the engine adds per op (forward + backward) on one-element arrays."""
    a = np.ones(1, np.float32)
    t0 = time.perf_counter()
    y = a
    for _ in range(n):
        y = y * 1.0001
    raw = time.perf_counter() - t0
    x = td.tensor(a, requires_grad=True)
    t0 = time.perf_counter()
    y = x
    for _ in range(n):
        y = y * 1.0001
    y.sum().backward()
    eng = time.perf_counter() - t0
    return (eng - raw) / n * 1e6


def peak_memory(step, x, eps):
    step(x, eps)                                # warm up: buffers allocated once are not the peak
    tracemalloc.start()
    tracemalloc.reset_peak()
    step(x, eps)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2 ** 20


def main(argv):
    ap = Parser(prog="bench.py engine", description=first_paragraph(__doc__))
    ap.add_argument("--batch", type=integer(1), nargs="+", default=[100, 1000])
    ap.add_argument("--rounds", type=integer(1), default=7)
    ap.add_argument("--steps", type=integer(1), default=50, help="steps per round at batch 100 (scaled down for bigger batches)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = ap.parse_args(argv)
    cuda = args.device == "cuda"

    xtr = binarized_mnist("train")
    err = check_gradients(xtr)
    print(f"gradient check (float64, engine vs hand-derived): max relative error {err:.2e}"
          f" -> {'OK' if err < 1e-10 else 'MISMATCH'}")
    print(f"engine per-op overhead (forward + backward): {per_op_overhead():.2f} us")
    try:
        import torch
        have_torch = not args.no_torch
        if os.environ.get("OMP_NUM_THREADS"):
            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    except ImportError:
        have_torch = False
        print("PyTorch not installed: skipping it (pip install torch==2.13.0 for the comparison)")
    print(f"allocator tuned by tinydgm.experiments.runtime: {runtime.allocator_tuned()}")
    if cuda:
        td.backend.use("cupy")
        sync = td.backend.xp().cuda.Device().synchronize

    summary = {}
    for batch in args.batch:
        rng = np.random.default_rng(0)
        params = vae_by_hand.init_params(rng)
        steps = {"engine": EngineStep(params)} if cuda else {"engine": EngineStep(params), "hand": HandStep(params)}
        if have_torch:
            steps["torch"] = TorchStep(params, device=args.device)
        n = max(5, args.steps * 100 // batch)
        batches = [(td.backend.asarray(xtr[rng.integers(0, len(xtr), batch)]),
                    td.backend.asarray(rng.standard_normal((batch, Z), dtype=np.float32))) for _ in range(n)]
        times = {k: [] for k in steps}
        for k, s in steps.items():                               # warm up
            for xb, eb in batches[:3]:
                s(xb, eb)
        for _ in range(args.rounds):
            for k, s in steps.items():
                t0 = time.perf_counter()
                for xb, eb in batches:
                    s(xb, eb)
                if cuda:
                    sync()
                times[k].append((time.perf_counter() - t0) / n)
        med = {k: statistics.median(v) for k, v in times.items()}
        mem = {} if cuda else {k: peak_memory(s, *batches[0]) for k, s in steps.items() if k != "torch"}
        row = {f"{k}_ms_per_step": round(v * 1e3, 3) for k, v in med.items()}
        row.update({f"{k}_s_per_epoch": round(v * 50000 / batch, 3) for k, v in med.items()})
        if "hand" in med:
            row["engine/hand"] = round(med["engine"] / med["hand"], 3)
        if have_torch:
            row["engine/torch"] = round(med["engine"] / med["torch"], 3)
        row.update({f"{k}_peak_MiB": round(v, 1) for k, v in mem.items()})
        summary[batch] = row
        print(f"batch {batch}: " + "  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    print(json.dumps({"benchmark": "engine", "device": args.device, "results": summary}))
