"""`tinydgm train wake-sleep`, and `eval`/`sample` of its runs: the Helmholtz machine of
`tinydgm.models.wake_sleep` on binarized MNIST, trained by wake-sleep or reweighted wake-sleep.

    tinydgm train wake-sleep --layers 200 --minutes 30                 SBN 200, wake-sleep
    tinydgm train wake-sleep --layers 200,200 --reweighted --k 5       reweighted wake-sleep, K = 5
    tinydgm eval RUN --k 5000                                          test NLL as -L_5000, q the proposal
"""
import json
import math
import time

import numpy as np

import tinydgm as td
from tinydgm import backend, plots
from tinydgm.data import binarized_mnist
from tinydgm.errors import UserError
from tinydgm.experiments import evaluation, options, runs
from tinydgm.metrics import mean_bound
from tinydgm import estimators
from tinydgm.models.wake_sleep import HelmholtzMachine
from tinydgm.estimators.wake_sleep import UPDATES
from tinydgm.optim import learning_rate

NAME = "wake-sleep"
TRAIN_THREADS = "narrow"            # batch-25 steps: a second BLAS thread loses 8% (scripts/bench.py threads)
ESTIMATORS = estimators.names("discrete")       # --estimator: how q(h|x) (and, for the variational ones, θ) learns


# ---------------------------------------------------------------- the trainer plugged into runs.fit

class WakeSleepTrainer:
    """One epoch of (reweighted) wake-sleep with Adam on θ and on λ; validation L_k; resumable state."""
    report = None                  # report(images done, images in the epoch): set by runs.fit for its progress bar

    def __init__(self, model, opt_p, opt_q, train_x, valid_x, cfg, rng):
        self.model, self.opt_p, self.opt_q = model, opt_p, opt_q
        self.x, self.valid_x, self.cfg, self.rng = train_x, valid_x, cfg, rng
        self.draw = backend.device_rng(rng)
        self.estimator = make_estimator(cfg, model)
        own = self.estimator.parameters()               # NVIL's learned baselines, with their optimiser
        self.opt_b = td.optim.Adam(own, lr=cfg["lr"]) if own else None

    def step(self, x, opt_p, opt_q, opt_b=None):
        """One step of the run's estimator on batch x: {"bound": ...} or {"wake": ..., "sleep": ...}."""
        own = (opt_b or self.opt_b,) if self.opt_b else ()           # NVIL's baselines: their optimiser last
        return self.estimator.step(self.model, x, (opt_p, opt_q) + own, self.draw)

    def train_epoch(self, epoch, progress):
        lr = learning_rate(self.cfg["schedule"], self.cfg["lr"], epoch, progress)
        self.opt_p.lr = self.opt_q.lr = lr
        n, b = len(self.x), self.cfg["batch_size"]
        perm, sums = backend.asarray(self.rng.permutation(n)), {}
        for i in range(0, n, b):
            x = self.x[perm[i:i + b]]
            out = self.step(x, self.opt_p, self.opt_q)
            for key, v in out.items():
                if not math.isfinite(v):
                    raise runs.NonFinite(f"{key} = {v}")
                sums[key] = sums.get(key, 0.0) + v * len(x)
            if self.report:
                self.report(i + len(x), n)
        means = {key: v / n for key, v in sums.items()}
        # loss: -L_k of the training batches (RWS), or -E_q log p(x, h) (wake-sleep: the wake objective)
        loss = -means.pop("bound") if "bound" in means else -means["wake"]
        return {"loss": loss, **{f"train_{key}": v for key, v in means.items()}, "lr": lr}

    def validate(self):
        k, out = self.cfg["valid_k"], {}
        if self.cfg.get("grad_variance_every") and self.validations % self.cfg["grad_variance_every"] == 0:
            out = self.gradient_variance()
        self.validations += 1
        return {"valid_bound": mean_iwae_bound(self.model, self.valid_x, k, np.random.default_rng(0)),
                "valid_k": k, **out}

    validations = 0

    def gradient_variance(self, n=20, images=100):
        """grad_var_recognition: the total variance (Σ over λ's entries) of the estimator's gradient for the
        recognition parameters, from n independent estimates on the first `images` validation images."""
        c0, x = time.process_time(), self.valid_x[:images]
        saved = self.rng.bit_generator.state, self.estimator.state_dict()
        recognition = self.model.recognition_parameters()
        probe = _Probe(recognition)

        def estimate():                                   # a step whose optimisers only read the gradients
            self.step(x, _Probe([]), probe, _Probe([]))
            return backend.xp().concatenate([g.ravel() for g in probe.grads])
        variance = estimators.gradient_variance(estimate, n)
        self.rng.bit_generator.state = saved[0]           # the training stream goes on as if unmeasured
        self.estimator.load_state_dict(saved[1])
        return {"grad_var_recognition": variance, "grad_var_s": round(time.process_time() - c0, 3)}

    def state(self):
        nvil = {} if self.opt_b is None else {"nvil": self.estimator.state_dict(), "opt_b": self.opt_b.state_dict()}
        return {"params": self.model.state_dict(), "opt_p": self.opt_p.state_dict(),
                "opt_q": self.opt_q.state_dict(), "rng": runs.rng_state(self.rng),
                "validations": self.validations, **nvil}

    def load_state(self, state):
        self.model.load_state_dict(state["params"])
        self.opt_p.load_state_dict(state["opt_p"])
        self.opt_q.load_state_dict(state["opt_q"])
        runs.set_rng_state(self.rng, state["rng"])
        self.validations = state.get("validations", 0)
        if self.opt_b is not None:
            self.estimator.load_state_dict(state["nvil"])
            self.opt_b.load_state_dict(state["opt_b"])


class _Probe:
    """An optimiser that steps nothing: `step` keeps a copy of its parameters' gradients (for measuring them)."""

    def __init__(self, params):
        self.params, self.grads = list(params), []

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        self.grads = [p.grad.copy() if p.grad is not None else p.data * 0 for p in self.params]


def make_estimator(cfg, model):
    """The run's estimator from the registry, with the options it takes (NVIL's baselines seeded by (seed, 2))."""
    name = cfg.get("estimator") or ("rws" if cfg.get("reweighted") else "ws")
    opts = {"k": cfg["k"], "updates": cfg["updates"], "temperature": cfg.get("temperature")}
    return estimators.make(name, model, rng=np.random.default_rng([cfg["seed"], 2]),
                           **{key: opts[key] for key in estimators.options(name)})


def mean_iwae_bound(model, x, k, rng, rows=20000):
    """L_k averaged over the rows of x, in batches of about `rows` samples."""
    draw = backend.device_rng(rng)
    return mean_bound(lambda xb: model.iwae_bound(xb, k, draw), x, max(1, rows // k))


# ---------------------------------------------------------------- tinydgm train wake-sleep

def add_train_arguments(p):
    p.add_argument("--layers", default="200,200", help="hidden layer sizes, bottom to top (default 200,200)")
    p.add_argument("--estimator", choices=ESTIMATORS, default=None,
                   help="ws: wake-sleep (default); rws: reweighted wake-sleep (Bornschein & Bengio 2015); the "
                        "variational ones train θ and λ on the ELBO: reinforce (score function), nvil (Mnih & "
                        "Gregor 2014), vimco (L_K, Mnih & Rezende 2016), relaxed (binary Concrete, Maddison et al. "
                        "2017), straight-through")
    p.add_argument("--reweighted", action="store_true", help="the same as --estimator rws")
    p.add_argument("--k", type=int, default=5, help="samples from q per image for rws and vimco (default 5)")
    p.add_argument("--temperature", type=float, help="relaxed and straight-through: the Concrete temperature "
                   "(default 0.5 relaxed, 1.0 straight-through)")
    p.add_argument("--updates", default="p,q-wake,sleep",
                   help="for rws: which of p,q-wake,sleep to apply (default all three)")
    p.add_argument("--grad-variance-every", type=int, default=0, help="at every Nth validation, log the total "
                   "variance of the recognition parameters' gradient (20 estimates on 100 valid images; default off)")
    options.budget_options(p, "epochs (default 100; unlimited with --minutes)", schedule="anneal",
                           schedule_help="; burda: Burda et al. 2016 App. D (default anneal)")
    p.add_argument("--batch-size", type=int, default=25, help="images per step (default 25)")
    p.add_argument("--valid-k", type=int, default=10, help="samples for the validation bound L_k (default 10)")
    options.run_options(p, NAME)


def configure(args):
    """A new run's config from the parsed options, checked (UserError naming the option)."""
    cfg = options.config(args, NAME)
    cfg["data"] = options.data_folder(cfg["data"])
    if cfg["epochs"] is None and cfg["minutes"] is None:
        cfg["epochs"] = 100
    cfg["layers"] = options.sizes(cfg["layers"], "--layers")
    cfg["updates"] = [u.strip() for u in str(cfg["updates"]).split(",") if u.strip()]
    if not cfg["updates"] or set(cfg["updates"]) - set(UPDATES):
        raise UserError(f"--updates: expected some of {','.join(UPDATES)}, got {','.join(cfg['updates'])!r}")
    options.positive(cfg, "batch_size", "k", "valid_k", "eval_every", "epochs")
    if cfg["reweighted"] and cfg["estimator"] not in (None, "rws"):
        raise UserError(f"--reweighted is --estimator rws; it cannot go with --estimator {cfg['estimator']}")
    cfg["estimator"] = "rws" if cfg["reweighted"] else cfg["estimator"] or "ws"
    cfg["reweighted"] = cfg["estimator"] == "rws"
    if cfg["temperature"] is not None and not cfg["temperature"] > 0:
        raise UserError(f"--temperature: expected a number > 0, got {cfg['temperature']}")
    if cfg["grad_variance_every"] < 0:
        raise UserError(f"--grad-variance-every: expected an integer >= 0, got {cfg['grad_variance_every']}")
    if cfg["estimator"] == "vimco" and cfg["k"] < 2:
        raise UserError(f"--k: VIMCO needs K >= 2 samples per image (each one's baseline leaves it out), got {cfg['k']}")
    takes = estimators.options(cfg["estimator"])
    for option in ("k", "temperature", "updates"):
        if option in getattr(args, "given", ()) and option not in takes and not args.resume:
            users = [n for n in ESTIMATORS if option in estimators.options(n)]
            raise UserError(f"--{option}: only --estimator {' and '.join(users)} use it, not {cfg['estimator']} "
                            f"(leave it out)")
    if "k" not in takes:
        cfg["k"] = 1
    if cfg["estimator"] != "rws":
        cfg["updates"] = ["p", "sleep"] if cfg["estimator"] == "ws" else []
    return cfg


def build(cfg):
    """The machine and its two optimisers (θ, λ) from a run's config."""
    model = HelmholtzMachine([784, *cfg["layers"]], rng=np.random.default_rng(cfg["seed"]))
    opt_p = td.optim.Adam(model.generative_parameters(), lr=cfg["lr"])
    opt_q = td.optim.Adam(model.recognition_parameters(), lr=cfg["lr"])
    return model, opt_p, opt_q


def train(args):
    run, cfg = options.resume_or_configure(args, NAME, configure)
    options.use_device(cfg["device"])
    need = 2 * cfg["batch_size"] * cfg["k"] * 4 * (8 * 784 + 8 * sum(cfg["layers"]))   # activations kept for backward
    options.check_memory(need, f"--batch-size {cfg['batch_size']} --k {cfg['k']}", cfg["k"] if cfg["k"] > 1 else None)
    data = options.mnist_data(run, cfg)               # the test split too: the figures need it at the end
    train_np = data["train"][:cfg.get("limit")]
    train_x, valid_x = backend.asarray(train_np), backend.asarray(data["valid"][:cfg.get("limit")])
    run = run or runs.Run.create(cfg["out"], cfg)
    model, opt_p, opt_q = build(cfg)
    model.init_visible_bias(train_np)
    trainer = WakeSleepTrainer(model, opt_p, opt_q, train_x, valid_x, cfg, np.random.default_rng([cfg["seed"], 1]))
    return runs.fit_and_finish(run, trainer, cfg, "valid_bound", args.quiet, figures)


def load(run_dir, which="best"):
    """(model, run) from a run directory's `best` or `last` checkpoint."""
    return runs.load_model(run_dir, NAME, lambda cfg: build(cfg)[0], which)


def figures(run, cfg, n=100):
    """dreams.png, activations.png, curves.png from the best checkpoint."""
    if not plots.available():
        return []
    model, _ = load(run.dir, "best")
    rng = np.random.default_rng(cfg["seed"])
    x = binarized_mnist("test", cfg.get("data"))
    x = x[rng.permutation(len(x))[:1000]]                  # the test file is ordered by digit
    draw = backend.device_rng(rng)                         # draws on the model's device
    dreams = backend.to_numpy(model.dream_means(n, draw))
    hq = model.sample_q(backend.asarray(x), draw)
    _, hp = model.dream(len(x), draw)
    return [plots.side_by_side(x, dreams, run.path("dreams.png"), ("data", "dreams: mean of p(x|h̃₁), h̃ ~ p")),
            plots.activations([backend.to_numpy(h).mean(0) for h in hq], [backend.to_numpy(h).mean(0) for h in hp],
                              run.path("activations.png")),
            plots.learning_curves([{**r, "-valid_bound": -r["valid_bound"]} if "valid_bound" in r else r
                                   for r in run.metrics()], run.path("curves.png"), keys=("loss", "-valid_bound"))]


# ---------------------------------------------------------------- tinydgm eval / sample

add_eval_arguments = options.eval_options


def evaluate(args):
    """NLL = -L_k, q the proposal, over the split or a shard of it, plus L_1 there and on train; writes eval-*.json."""
    model, run, data = evaluation.prepare(args, load)

    def per_image(x, seed):
        return {"elbo": mean_iwae_bound(model, x, 1, np.random.default_rng(seed))}

    def whole(x, seed, shard):                                 # once, in --combine, for shards
        train = None if shard else mean_iwae_bound(model, backend.asarray(data("train")), 1,
                                                   np.random.default_rng(seed))
        return {"train_elbo": train}

    def nll_options(k):
        # about 1000 samples per call: the arrays stay in cache (a third faster than 10,000 here)
        chunk = max(d for d in range(1, min(k, 500) + 1) if k % d == 0)
        return {"chunk": chunk, "batch_size": max(1, 1000 // chunk)}

    evaluation.evaluate(evaluation.Evaluation(model, run, data, per_image, whole, nll_options), args)


def add_sample_arguments(p):
    p.add_argument("--n", type=int, default=100, help="how many dreams (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the dreams (default 0)")
    p.add_argument("--out", help="PNG file (default RUN/dreams-SEED.png)")


def sample(args):
    """Dreams: the means of p(x|h̃_1) for h̃ ~ p, as a PNG grid."""
    plots.require("sample")
    model, run = load(args.run_dir)
    means = backend.to_numpy(model.dream_means(args.n, backend.device_rng(np.random.default_rng(args.seed))))
    path = plots.image_grid(means, args.out or run.path(f"dreams-{args.seed}.png"), title="dreams: mean of p(x|h̃₁)")
    print(json.dumps({"run": run.dir, "dreams": path, "n": args.n}))
