"""Variational autoencoder (Kingma & Welling 2013; Rezende et al. 2014) and its IWAE bound (Burda et al. 2016).

    q(z|x) = N(mu(x), sigma(x)^2)        encoder MLP -> [mu, log sigma^2]
    p(z)   = N(0, I),  p(x|z) = Bernoulli(logits(z))   decoder MLP -> logits
    ELBO   = E_q[log p(x|z)] - KL(q(z|x) || p(z))      reparameterised, KL in closed form
    L_k    = E[log 1/k sum_j p(x, z_j) / q(z_j|x)],  z_j ~ q(z|x)

The gradient of the same model derived by hand lives in `vae_by_hand.py`.
`tinydgm train vae`, `tinydgm eval RUN`, `tinydgm sample RUN` are at the bottom.  Recipes:

    tinydgm train vae                            20 epochs, batch 100, constant lr: samples.png
    tinydgm train vae --minutes 30               the budgeted recipe: lr 1e-3 for 25% of the time,
                                                 then decayed 100-fold; best epoch by validation ELBO
    tinydgm train vae --schedule burda           Burda et al. 2016, App. D (3280 epochs, batch 20)
    tinydgm eval RUN --k 5000                    test NLL as -L_5000 over all 10,000 test images
"""
import json
import math
import os
import time

import numpy as np

import tinydgm as td
from tinydgm import backend, nn, runs
from tinydgm.distributions import Bernoulli, Normal, kl_standard_normal

LOG_2PI = math.log(2 * math.pi)


class VAE(nn.Module):
    """One stochastic layer of z_dim Gaussian units between two MLPs."""

    def __init__(self, x_dim=784, hidden=(200, 200), z_dim=50, activation="tanh", rng=None, dtype=None):
        rng = np.random.default_rng(rng) if rng is None or isinstance(rng, int) else rng
        self.x_dim, self.hidden, self.z_dim = x_dim, tuple(hidden), z_dim
        self.encoder = nn.MLP([x_dim, *hidden, 2 * z_dim], activation, rng=rng, dtype=dtype)
        self.decoder = nn.MLP([z_dim, *hidden[::-1], x_dim], activation, rng=rng, dtype=dtype)

    def encode(self, x):
        """q(z|x): the one place where log sigma^2 becomes a scale."""
        mu, log_var = td.split(self.encoder(x), 2, axis=-1)
        return Normal.from_log_var(mu, log_var)

    def decode(self, z):
        """p(x|z) as Bernoulli logits."""
        return Bernoulli(logits=self.decoder(z), validate_args=False)

    def elbo(self, x, rng=None):
        """Per-example ELBO = log p(x|z) - KL(q(z|x) || N(0, I)), z = mu + sigma * eps (one sample)."""
        q = self.encode(x)
        z = q.rsample(rng=rng)
        log_px = td.sum(self.decode(z).log_prob(x), axis=-1)
        return log_px - td.sum(kl_standard_normal(q), axis=-1)

    def iwae_bound(self, x, k, rng=None):
        """Per-example L_k = logsumexp_j log w_j - log k, w_j = p(x, z_j) / q(z_j|x).

        Burda et al. 2016, eq. 8; z_j ~ q(z|x) reparameterised, so it trains an IWAE too.
        """
        q = self.encode(x)
        z = q.rsample((k,), rng=rng)                                        # (k, B, z_dim)
        log_px = td.sum(self.decode(z).log_prob(x), axis=-1)
        log_pz = td.sum(-0.5 * z * z, axis=-1) - 0.5 * self.z_dim * LOG_2PI  # log N(z; 0, I)
        log_qz = td.sum(q.log_prob(z), axis=-1)
        return td.logsumexp(log_px + log_pz - log_qz, axis=0) - math.log(k)

    def sample(self, n, rng=None):
        """x ~ p(x|z), z ~ N(0, I): n binary images."""
        rng = np.random.default_rng() if rng is None else rng
        with td.no_grad():
            return self.decode(self.prior_sample(n, rng)).sample(rng=runs.device_rng(rng))

    def prior_sample(self, n, rng=None):
        """z ~ N(0, I), n rows (drawn on the host, moved to the backend)."""
        rng = np.random.default_rng() if rng is None else rng
        return td.tensor(rng.standard_normal((n, self.z_dim), dtype=self.decoder.layers[0].weight.dtype))

    def reconstruct(self, x):
        """The mean of p(x|z) at z = E_q[z|x]."""
        with td.no_grad():
            return self.decode(self.encode(x).loc).probs


# ---------------------------------------------------------------- the trainer plugged into runs.fit

class Trainer:
    """One epoch of Adam on -ELBO (or -L_k), validation ELBO, and the state to resume from."""

    def __init__(self, model, opt, train_x, valid_x, cfg, rng):
        self.model, self.opt, self.cfg, self.rng = model, opt, cfg, rng
        self.x, self.valid_x = train_x, valid_x
        self.draw = runs.device_rng(rng)

    def objective(self, x):
        if self.cfg["objective"] == "iwae":
            return self.model.iwae_bound(x, self.cfg["k"], rng=self.draw)
        return self.model.elbo(x, rng=self.draw)

    def train_epoch(self, epoch, progress):
        self.opt.lr = runs.learning_rate(self.cfg["schedule"], self.cfg["lr"], epoch, progress)
        n, b = len(self.x), self.cfg["batch_size"]
        perm, total = backend.asarray(self.rng.permutation(n)), 0.0
        for i in range(0, n, b):
            x = self.x[perm[i:i + b]]
            loss = -td.mean(self.objective(x))
            value = loss.item()
            if not math.isfinite(value):
                raise runs.NonFinite(value)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            total += value * len(x)
        return {"loss": total / n, "lr": self.opt.lr}

    def validate(self):
        return {"valid_elbo": mean_elbo(self.model, self.valid_x, rng=np.random.default_rng(0))}

    def state(self):
        return {"params": self.model.state_dict(), "opt": self.opt.state_dict(),
                "rng": runs.rng_state(self.rng)}

    def load_state(self, state):
        self.model.load_state_dict(state["params"])
        self.opt.load_state_dict(state["opt"])
        runs.set_rng_state(self.rng, state["rng"])


def mean_elbo(model, x, rng, batch_size=1000):
    """The ELBO averaged over the rows of x (one z per image), computed in batches."""
    draw = runs.device_rng(rng)
    with td.no_grad():
        total = sum(float(model.elbo(x[i:i + batch_size], rng=draw).data.sum())
                    for i in range(0, len(x), batch_size))
    return total / len(x)


# ---------------------------------------------------------------- tinydgm train vae

def add_train_arguments(p):
    p.add_argument("--epochs", type=int, help="epochs (default 20; 3280 with --schedule burda; "
                   "unlimited with --minutes)")
    p.add_argument("--minutes", type=float, help="time budget: train for this long, annealing the "
                   "learning rate to fit (e.g. --minutes 30)")
    p.add_argument("--cpu-minutes", action="store_true", help="count --minutes in this process's "
                   "CPU time, not wall time (a fair budget on a shared machine)")
    p.add_argument("--batch-size", type=int, help="images per step (default 100; 20 with --schedule burda)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam step size (default 1e-3)")
    p.add_argument("--adam-eps", type=float, help="Adam epsilon (default 1e-8; 1e-4 with --schedule burda)")
    p.add_argument("--schedule", choices=runs.SCHEDULES,
                   help=f"anneal: hold lr {runs.HOLD * 100:.0f}%% of the budget, then decay it 100-fold "
                        "(default with --minutes); constant (default otherwise); burda: Burda et al. 2016 App. D "
                        "(lr 1e-3*10^(-i/7) for 3^i epochs)")
    p.add_argument("--objective", choices=("elbo", "iwae"), default="elbo")
    p.add_argument("--k", type=int, default=5, help="importance samples for --objective iwae (default 5)")
    p.add_argument("--z-dim", type=int, default=50)
    p.add_argument("--hidden", default="200,200", help="hidden layer sizes, e.g. 200,200")
    p.add_argument("--activation", default="tanh", choices=sorted(nn.ACTIVATIONS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--eval-every", type=int, default=1, help="validate every N epochs (default 1)")
    p.add_argument("--out", help="run directory (default runs/vae-DATE-TIME)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run (its config is reused)")
    p.add_argument("--limit", type=int, help="train and validate on the first N images only (quick trials)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _config(args):
    from tinydgm.cli import UserError
    cfg = {k: v for k, v in vars(args).items() if k not in ("command", "_kind", "resume", "quiet")}
    cfg["schedule"] = cfg["schedule"] or ("anneal" if cfg["minutes"] else "constant")
    burda = cfg["schedule"] == "burda"
    cfg["model"] = "vae"
    if cfg["epochs"] is None and cfg["minutes"] is None:
        cfg["epochs"] = 3280 if burda else 20
    cfg["batch_size"] = cfg["batch_size"] or (20 if burda else 100)
    cfg["adam_eps"] = cfg["adam_eps"] or (1e-4 if burda else 1e-8)
    try:
        cfg["hidden"] = [int(h) for h in str(cfg["hidden"]).split(",") if h.strip()]
    except ValueError:
        raise UserError(f"--hidden: expected sizes like 200,200, got {cfg['hidden']!r}") from None
    for key in ("batch_size", "z_dim", "k", "eval_every"):
        if cfg[key] < 1:
            raise UserError(f"--{key.replace('_', '-')}: expected a positive integer, got {cfg[key]}")
    if any(h < 1 for h in cfg["hidden"]) or not cfg["hidden"]:
        raise UserError(f"--hidden: expected positive sizes, got {cfg['hidden']}")
    cfg["out"] = cfg["out"] or os.path.join("runs", time.strftime("vae-%Y%m%d-%H%M%S"))
    return cfg


def build(cfg):
    """The model and its optimiser from a run's config."""
    model = VAE(784, cfg["hidden"], cfg["z_dim"], cfg["activation"], rng=np.random.default_rng(cfg["seed"]))
    opt = td.optim.Adam(model.parameters(), lr=cfg["lr"], eps=cfg["adam_eps"])
    return model, opt


def train(args):
    from tinydgm.datasets import binarized_mnist
    if args.resume:
        run = runs.Run.open(args.resume, model="vae")
        cfg = run.config
    else:
        cfg = _config(args)
    runs.use_device(cfg["device"])
    train_x, valid_x = (backend.asarray(binarized_mnist(s)[: cfg.get("limit")]) for s in ("train", "valid"))
    if not args.resume:
        run = runs.Run.create(cfg["out"], cfg)
    model, opt = build(cfg)
    trainer = Trainer(model, opt, train_x, valid_x, cfg, np.random.default_rng([cfg["seed"], 1]))
    summary = runs.fit(run, trainer, epochs=cfg["epochs"], minutes=cfg["minutes"],
                       eval_every=cfg["eval_every"], monitor="valid_elbo", mode="max", quiet=args.quiet,
                       clock="cpu" if cfg.get("cpu_minutes") else "wall")
    if summary["epochs"] > 0:
        summary["figures"] = figures(run, cfg)
    return run.finish(summary)


def load(run_dir, which="best"):
    """(model, run) from a run directory's `best` or `last` checkpoint."""
    run = runs.Run.open(run_dir, model="vae")
    model, _ = build(run.config)
    state, _ = runs.load_state(run.path(which))
    model.load_state_dict(state["params"])
    return model, run


def figures(run, cfg, n=100):
    """samples.png, reconstructions.png, curves.png (and manifold.png for a 2-d z) from the best checkpoint."""
    from tinydgm import plots
    from tinydgm.datasets import binarized_mnist
    if not plots.available():
        return []
    model, _ = load(run.dir, "best")
    rng = np.random.default_rng(cfg["seed"])
    with td.no_grad():
        means = backend.to_numpy(model.decode(model.prior_sample(n, rng)).probs.data)
    test = binarized_mnist("test")
    x = test[np.sort(rng.choice(len(test), 50, replace=False))]    # the test set is sorted by digit
    out = [plots.image_grid(means, run.path("samples.png"), title="samples: mean of p(x|z), z ~ N(0, I)"),
           plots.reconstructions(x, backend.to_numpy(model.reconstruct(td.tensor(x)).data), run.path("reconstructions.png")),
           plots.learning_curves(run.metrics(), run.path("curves.png"))]
    if cfg["z_dim"] == 2:
        decode = lambda z: backend.to_numpy(model.decode(td.tensor(z.astype(np.float32))).probs.data)  # noqa: E731
        out.append(plots.latent_manifold(decode, run.path("manifold.png")))
    return out


# ---------------------------------------------------------------- tinydgm eval / sample

def add_eval_arguments(p):
    p.add_argument("--k", type=int, default=5000, help="importance samples for L_k (default 5000)")
    p.add_argument("--split", choices=("test", "valid"), default="test")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--limit", type=int, help="evaluate only the first N images (a quick look, not a result)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--quiet", action="store_true")


def evaluate(args):
    """Test NLL as -L_k over the whole split, plus ELBO, KL and active units; writes eval.json."""
    from tinydgm.datasets import binarized_mnist
    from tinydgm.metrics import active_units, iw_nll
    runs.use_device(args.device)
    model, run = load(args.run_dir, args.checkpoint)
    x = backend.asarray(binarized_mnist(args.split)[: args.limit])
    t0 = time.perf_counter()
    with td.no_grad():
        q = model.encode(x)
        kl = float(td.sum(kl_standard_normal(q), axis=-1).data.mean())
        mu = q.loc.data
    elbo = mean_elbo(model, x, rng=np.random.default_rng(args.seed))
    nll = iw_nll(model, x, args.k, rng=np.random.default_rng(args.seed), progress=not args.quiet)
    result = {"run": run.dir, "checkpoint": args.checkpoint, "split": args.split, "n": len(x),
              "k": args.k, f"{args.split}_nll": nll, f"{args.split}_elbo": elbo, f"{args.split}_kl": kl,
              "active_units": active_units(mu), "time_s": round(time.perf_counter() - t0, 1)}
    with open(run.path(f"eval-{args.split}-k{args.k}.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result), flush=True)


def add_sample_arguments(p):
    p.add_argument("--n", type=int, default=100, help="how many samples (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="PNG file (default RUN/samples-SEED.png)")


def sample(args):
    from tinydgm import plots
    from tinydgm.cli import UserError
    model, run = load(args.run_dir)
    if not plots.available():
        raise UserError("sample: writing a PNG needs matplotlib (pip install 'tinydgm[plot]')")
    with td.no_grad():
        means = backend.to_numpy(model.decode(model.prior_sample(args.n, np.random.default_rng(args.seed))).probs.data)
    path = plots.image_grid(means, args.out or run.path(f"samples-{args.seed}.png"))
    print(json.dumps({"run": run.dir, "samples": path, "n": args.n}))
