"""`tinydgm train vae`, and `eval`/`sample` of its runs: the VAE of `tinydgm.models.vae` on binarized MNIST.

    tinydgm train vae                            20 epochs, batch 100, constant lr: samples.png
    tinydgm train vae --minutes 30               the budgeted recipe: lr 1e-3 for 25% of the time,
                                                 then decayed 100-fold; best epoch by validation ELBO
    tinydgm train vae --schedule burda           Burda et al. 2016, §5.1 and App. D (3280 epochs, batch 20,
                                                 Adam eps 1e-4, their initialisation: --init burda)
    tinydgm train vae --estimator iwae --k 5     IWAE (Burda et al. 2016): Adam on -L_5
    tinydgm train vae --estimator score-function[-baseline]
                                                 the same ELBO with the encoder's gradient by the score
                                                 function, without (with) a running-mean baseline
    tinydgm train vae --grad-variance-every 1    log grad_var_encoder at every validation (see below)
    tinydgm eval RUN --k 5000                    test NLL as -L_5000 over all 10,000 test images

Gradient variance (`--grad-variance-every N`, at the first validation and every Nth after it): S = 20
independent estimates of the gradient of the training loss (-mean of the objective over a batch) on a
fixed batch, the first 100 validation images, with a generator seeded by (seed, 2, validations before
this one) so that training's draws are untouched; `grad_var_encoder` = the sum over the encoder's
parameters of each element's sample variance (ddof 1); `grad_var_s` = the CPU seconds it took, which
count in the epoch's cpu_s (and so in a --cpu-minutes budget).
"""
import json
import math
import time

import numpy as np

import tinydgm as td
from tinydgm import backend, estimators, nn, plots
from tinydgm.data import binarized_mnist
from tinydgm.distributions import kl_standard_normal
from tinydgm.errors import UserError
from tinydgm.experiments import evaluation, options, runs
from tinydgm.metrics import active_units, mean_bound
from tinydgm.models.vae import VAE
from tinydgm.optim import learning_rate

NAME = "vae"
ESTIMATORS = estimators.names("continuous")      # --estimator (alias --objective): how the encoder's gradient is made
OPTION_ALIASES = {"objective": "estimator"}
GRAD_VAR_SAMPLES, GRAD_VAR_IMAGES = 20, 100
LINEAR_INIT = {"pytorch": "pytorch", "burda": "glorot"}  # --init: the layers' init (burda also sets the output bias)
INITS = tuple(LINEAR_INIT)


# ---------------------------------------------------------------- the trainer plugged into runs.fit

class VAETrainer:
    """One epoch of Adam on -ELBO (or -L_k, or the score-function ELBO), validation ELBO (and the
    encoder's gradient variance), and the state to resume from."""
    report = None                  # report(images done, images in the epoch): set by runs.fit for its progress bar

    def __init__(self, model, opt, train_x, valid_x, cfg, rng):
        self.model, self.opt, self.cfg, self.rng = model, opt, cfg, rng
        self.x, self.valid_x = train_x, valid_x
        self.draw = backend.device_rng(rng)
        self.estimator = make_estimator(cfg)
        self.validations = 0

    def train_epoch(self, epoch, progress):
        self.opt.lr = learning_rate(self.cfg["schedule"], self.cfg["lr"], epoch, progress)
        n, b = len(self.x), self.cfg["batch_size"]
        perm, total = backend.asarray(self.rng.permutation(n)), 0.0
        for i in range(0, n, b):
            x = self.x[perm[i:i + b]]
            value = -self.estimator.step(self.model, x, [self.opt], self.draw)["bound"]
            if not math.isfinite(value):
                raise runs.NonFinite(value)
            total += value * len(x)
            if self.report:
                self.report(i + len(x), n)
        return {"loss": total / n, "lr": self.opt.lr}

    def validate(self):
        out = {"valid_elbo": mean_elbo(self.model, self.valid_x, rng=np.random.default_rng(0))}
        every = self.cfg.get("grad_variance_every") or 0
        if every and self.validations % every == 0:            # the first validation, then every Nth
            c0 = time.process_time()
            rng = backend.device_rng(np.random.default_rng([self.cfg["seed"], 2, self.validations]))
            objective = lambda: self.estimator.objective(self.model, self.valid_x[:GRAD_VAR_IMAGES], rng)  # noqa: E731
            out["grad_var_encoder"] = gradient_variance(lambda: -objective().surrogate, self.model.encoder.parameters())
            out["grad_var_s"] = round(time.process_time() - c0, 3)
            self.model.zero_grad()
        self.validations += 1
        return out

    def state(self):
        return {"params": self.model.state_dict(), "opt": self.opt.state_dict(), "rng": runs.rng_state(self.rng),
                "validations": self.validations, **self.estimator.state_dict()}

    def load_state(self, state):
        self.model.load_state_dict(state["params"])
        self.opt.load_state_dict(state["opt"])
        runs.set_rng_state(self.rng, state["rng"])
        self.validations = int(state.get("validations", 0))
        self.estimator.load_state_dict(state)


def estimator_name(cfg):
    """The run's --estimator (a run's config may name it `objective`, the option's other name)."""
    return cfg.get("estimator") or cfg.get("objective") or "elbo"


def init_name(cfg):
    """The run's --init (a run from before the option began as every run then did: options.BEFORE_THE_OPTION)."""
    return cfg.get("init", options.BEFORE_THE_OPTION["init"])


def make_estimator(cfg):
    """The run's estimator from the registry (with its k where it takes one)."""
    name = estimator_name(cfg)
    return estimators.make(name, **({"k": cfg["k"]} if "k" in estimators.options(name) else {}))


def gradient_variance(loss, params, n=GRAD_VAR_SAMPLES):
    """Total variance of n independent gradients of `loss()` (a fresh draw each call) w.r.t. params:
    the sum over every element of its sample variance (ddof 1), via estimators.gradient_variance."""
    xp = backend.xp()

    def estimate():
        for p in params:
            p.grad = None
        loss().backward()
        return xp.concatenate([(p.grad if p.grad is not None else xp.zeros_like(p.data)).ravel() for p in params])
    return estimators.gradient_variance(estimate, n)


def mean_elbo(model, x, rng, batch_size=1000):
    """The ELBO averaged over the rows of x (one z per image)."""
    draw = backend.device_rng(rng)
    return mean_bound(lambda xb: model.elbo(xb, rng=draw), x, batch_size)


# ---------------------------------------------------------------- tinydgm train vae

def add_train_arguments(p):
    options.budget_options(p, "epochs (default 20; 3280 with --schedule burda; unlimited with --minutes)",
                           schedule_help=" (default otherwise); burda: Burda et al. 2016 App. D "
                                         "(lr 1e-3*10^(-i/7) for 3^i epochs). Default: anneal with --minutes")
    p.add_argument("--batch-size", type=int, help="images per step (default 100; 20 with --schedule burda)")
    p.add_argument("--adam-eps", type=float, help="Adam epsilon (default 1e-8; 1e-4 with --schedule burda)")
    p.add_argument("--init", choices=INITS,
                   help="the parameters' start. pytorch: every weight and bias ~ U(-1/sqrt(n_in), 1/sqrt(n_in)) "
                        "(the default otherwise); burda: Burda et al. 2016, §5.1, Glorot & Bengio's heuristic "
                        "(weights ~ U(-sqrt(6/(n_in+n_out)), +sqrt(...)), biases 0), and, as their released code, "
                        "the decoder's output bias at the logit of the training images' pixel means "
                        "(the default with --schedule burda)"),
    p.add_argument("--estimator", "--objective", dest="estimator", choices=ESTIMATORS, default="elbo",
                   help="elbo: reparameterised, KL in closed form (default); iwae: L_k; score-function: the "
                        "one-sample ELBO (KL by sampling) with the encoder's gradient by the score function; "
                        "score-function-baseline: the same with a running-mean baseline (--objective: the same option)")
    p.add_argument("--k", type=int, default=5, help="importance samples for --estimator iwae (default 5)")
    p.add_argument("--grad-variance-every", type=int, default=0, metavar="N",
                   help=f"at the first validation and every Nth after it, log grad_var_encoder: the total variance of "
                        f"{GRAD_VAR_SAMPLES} gradient estimates of the training objective w.r.t. the encoder "
                        f"on the first {GRAD_VAR_IMAGES} validation images (default 0: never)")
    p.add_argument("--z-dim", type=int, default=50, help="latent dimensions (default 50)")
    p.add_argument("--hidden", default="200,200", help="hidden layer sizes, e.g. 200,200")
    p.add_argument("--activation", default="tanh", choices=sorted(nn.ACTIVATIONS),
                   help="the hidden layers' nonlinearity (default tanh)")
    options.run_options(p, NAME)


def configure(args):
    """A new run's config from the parsed options, checked (UserError naming the option)."""
    cfg = options.config(args, NAME)
    cfg["data"] = options.data_folder(cfg["data"])
    cfg["schedule"] = cfg["schedule"] or ("anneal" if cfg["minutes"] else "constant")
    burda = cfg["schedule"] == "burda"
    if cfg["epochs"] is None and cfg["minutes"] is None:
        cfg["epochs"] = 3280 if burda else 20
    defaults = {"batch_size": 20 if burda else 100, "adam_eps": 1e-4 if burda else 1e-8, "init": "burda" if burda else "pytorch"}
    for key, value in defaults.items():               # `is None`: a 0 given is checked below, never replaced
        if cfg[key] is None:
            cfg[key] = value
    cfg["hidden"] = options.sizes(cfg["hidden"], "--hidden")
    options.positive(cfg, "batch_size", "z_dim", "k", "eval_every")
    if not cfg["adam_eps"] > 0:
        raise UserError(f"--adam-eps: expected a number > 0, got {cfg['adam_eps']}")
    if cfg["grad_variance_every"] < 0:
        raise UserError(f"--grad-variance-every: expected an integer >= 0 (0: never), got {cfg['grad_variance_every']}")
    if "k" in getattr(args, "given", ()) and "k" not in estimators.options(cfg["estimator"]) and not args.resume:
        raise UserError(f"--k: only --estimator iwae draws k samples per image; --estimator {cfg['estimator']} "
                        f"draws one (leave --k out, or add --estimator iwae)")
    return cfg


def step_memory(cfg):
    """Bytes a training step holds at once (an estimate): the activations of batch x k rows, kept for backward."""
    rows = cfg["batch_size"] * (cfg["k"] if estimator_name(cfg) == "iwae" else 1)
    floats = 8 * 784 + 8 * 2 * sum(cfg["hidden"]) + 12 * cfg["z_dim"]
    return 2 * rows * floats * 4


def build(cfg):
    """The model and its optimiser from a run's config."""
    model = VAE(784, cfg["hidden"], cfg["z_dim"], cfg["activation"], rng=np.random.default_rng(cfg["seed"]),
                init=LINEAR_INIT[init_name(cfg)])
    opt = td.optim.Adam(model.parameters(), lr=cfg["lr"], eps=cfg["adam_eps"])
    return model, opt


def train(args):
    run, cfg = options.resume_or_configure(args, NAME, configure)
    options.use_device(cfg["device"])
    iwae = estimator_name(cfg) == "iwae"
    options.check_memory(step_memory(cfg), f"--batch-size {cfg['batch_size']}" + f" --k {cfg['k']}" * iwae,
                         cfg["k"] if iwae else None)
    data = options.mnist_data(run, cfg)               # the test split too: the figures need it at the end
    train_x, valid_x = (backend.asarray(data[s][: cfg.get("limit")]) for s in ("train", "valid"))
    new = run is None
    run = run or runs.Run.create(cfg["out"], cfg)
    model, opt = build(cfg)
    if new and cfg["init"] == "burda":                # (a resumed run's checkpoint replaces every parameter)
        model.init_output_bias(train_x)
    trainer = VAETrainer(model, opt, train_x, valid_x, cfg, np.random.default_rng([cfg["seed"], 1]))
    return runs.fit_and_finish(run, trainer, cfg, "valid_elbo", args.quiet, figures)


def load(run_dir, which="best"):
    """(model, run) from a run directory's `best` or `last` checkpoint."""
    return runs.load_model(run_dir, NAME, lambda cfg: build(cfg)[0], which)


def figures(run, cfg, n=100):
    """samples.png, reconstructions.png, curves.png (and manifold.png for a 2-d z) from the best checkpoint."""
    if not plots.available():
        return []
    model, _ = load(run.dir, "best")
    rng = np.random.default_rng(cfg["seed"])
    with td.no_grad():
        means = backend.to_numpy(model.decode(model.prior_sample(n, rng)).probs.data)
    test = binarized_mnist("test", cfg.get("data"))
    x = test[np.sort(rng.choice(len(test), 50, replace=False))]    # the test set is sorted by digit
    out = [plots.image_grid(means, run.path("samples.png"), title="samples: mean of p(x|z), z ~ N(0, I)"),
           plots.reconstructions(x, backend.to_numpy(model.reconstruct(td.tensor(x)).data), run.path("reconstructions.png")),
           plots.learning_curves(run.metrics(), run.path("curves.png"))]
    if cfg["z_dim"] == 2:
        decode = lambda z: backend.to_numpy(model.decode(td.tensor(z.astype(np.float32))).probs.data)  # noqa: E731
        out.append(plots.latent_manifold(decode, run.path("manifold.png")))
    return out


# ---------------------------------------------------------------- tinydgm eval / sample

add_eval_arguments = options.eval_options


def evaluate(args):
    """Test NLL as -L_k over the split (or a shard), plus ELBO, KL and active units; writes eval-*.json."""
    model, run, data = evaluation.prepare(args, load)

    def per_image(x, seed):
        with td.no_grad():
            kl = float(td.sum(kl_standard_normal(model.encode(x)), axis=-1).data.mean())
        return {"elbo": mean_elbo(model, x, rng=np.random.default_rng(seed)), "kl": kl}

    def whole(x, seed, shard):
        with td.no_grad():
            return {"active_units": active_units(model.encode(x).loc.data)}

    evaluation.evaluate(evaluation.Evaluation(model, run, data, per_image, whole), args)


def add_sample_arguments(p):
    p.add_argument("--n", type=int, default=100, help="how many samples (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the samples (default 0)")
    p.add_argument("--out", help="PNG file (default RUN/samples-SEED.png)")


def sample(args):
    plots.require("sample")
    model, run = load(args.run_dir)
    with td.no_grad():
        means = backend.to_numpy(model.decode(model.prior_sample(args.n, np.random.default_rng(args.seed))).probs.data)
    path = plots.image_grid(means, args.out or run.path(f"samples-{args.seed}.png"))
    print(json.dumps({"run": run.dir, "samples": path, "n": args.n}))
