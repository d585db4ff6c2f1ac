"""What every estimator shares: its protocol, the one ascent helper, and the summaries of many draws.

An estimator is an object with

    objective(model, x, rng) -> Objective(surrogate, bound, loss)
        surrogate  a scalar Tensor whose gradient, in every parameter group of the model, is the estimator's
                   estimate of the gradient of the mean objective over the batch (its value means nothing)
        bound      the per-example estimate of the objective it ascends (an array), e.g. the ELBO or L_K
        loss       0, or a scalar the estimator's own parameters minimise (NVIL's baselines)
    step(model, x, optimizers, rng) -> {"bound": mean over the batch, ...}
        one step of each optimiser up the surrogate (and down the loss), then `update` (a running baseline);
        wake-sleep keeps its two phases
    parameters(), state_dict(), load_state_dict(state)       its own parameters and statistics, if any
    hold_statistics(**values), release_statistics()           hold its running statistics fixed (at `values`), so
                                                              that its claim holds as stated; then let them run
    name, target, claim                                       the command-line word; the objective it estimates the
                                                              gradient of ("elbo", "L_K", ...); "unbiased",
                                                              "consistent" (biased at finite K) or "biased"
"""
import collections

import numpy

from tinydgm import backend, ops
from tinydgm.tensor import Tensor, unwrap

Objective = collections.namedtuple("Objective", "surrogate bound loss", defaults=(0,))
Objective.__doc__ = ("A scalar to ascend (its gradient is the estimate; its value means nothing), the per-example "
                     "objective estimate, and a loss the estimator's own parameters minimise (0 if none).")
Objective.surrogate.__doc__ = "a scalar Tensor to ascend: its gradient is the estimate, its value means nothing"
Objective.bound.__doc__ = "the per-example estimate of the objective the estimator names (its `target`)"
Objective.loss.__doc__ = "a scalar the estimator's own parameters (a baseline) minimise; 0 if it has none"


def generator(rng):
    """A NumPy Generator from a seed, None (a fresh one) or a Generator (returned as it is)."""
    return numpy.random.default_rng(rng) if rng is None or isinstance(rng, (int, numpy.integer)) else rng


def total(terms):
    """Σ of a list of Tensors (or arrays), left to right: a log-density from its factors."""
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


def ascend(surrogate, *optimizers, loss=0):
    """One step of each optimiser up `surrogate` (and down `loss`), from one backward pass."""
    for opt in optimizers:
        opt.zero_grad()
    (loss - surrogate).backward()
    for opt in optimizers:
        opt.step()


class Estimator:
    """The protocol above; `step` ascends `objective` with every optimiser given."""
    name, target, claim = None, None, None
    held = False

    def objective(self, model, x, rng):
        raise NotImplementedError

    def step(self, model, x, optimizers, rng):
        objective = self.objective(model, x, rng)
        ascend(objective.surrogate, *optimizers, loss=objective.loss)
        self.update(objective)
        return self.report(objective)

    def update(self, objective):
        """Fold a batch just stepped on into the estimator's own statistics (a running baseline): none here."""

    def report(self, objective):
        """What a training log shows of a step: {"bound": the objective's mean over the batch}."""
        return {"bound": float(unwrap(objective.bound).mean())}

    def hold_statistics(self, **values):
        """Hold the estimator's own running statistics (a running baseline; NVIL's centring and scaling) where they
        are, or at `values`: until `release_statistics`, `objective`, `step` and `update` leave them alone, so every
        estimate comes from one state, the state its `claim` is about (`tinydgm.testing.check_estimator` holds each
        estimator it checks).  An estimator with statistics overrides it, naming them as keywords, and reads `held`;
        here there are none.  Returns self."""
        if values:
            raise TypeError(f"{self!r}.hold_statistics: it keeps no running statistics, got {', '.join(values)}")
        self.held = True
        return self

    def release_statistics(self):
        """Let the running statistics follow the batches again (undoes `hold_statistics`).  Returns self."""
        self.held = False
        return self

    def parameters(self):
        return []

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"


# =============================================================================================
# Drawing many estimates and summarising them
# =============================================================================================

Summary = collections.namedtuple("Summary", "mean variance stderr n")
Summary.__doc__ = "Mean, sample variance (ddof=1), standard error of the mean and count of S estimates (float64, host)."


def summarize(estimates, axis=0):
    """Summary(mean, variance, stderr, n) of estimates stacked along `axis`, as float64 NumPy arrays."""
    a = backend.to_numpy(unwrap(estimates)).astype(numpy.float64)
    n = a.shape[axis]
    var = a.var(axis=axis, ddof=1) if n > 1 else numpy.full(numpy.delete(a.shape, axis), numpy.nan)
    return Summary(a.mean(axis=axis), var, numpy.sqrt(var / n), n)


def draw(estimate, n):
    """Call `estimate()` n times (each one a fresh Monte-Carlo estimate) and stack the results on axis 0."""
    return numpy.stack([backend.to_numpy(unwrap(estimate())) for _ in range(n)])


def gradient_variance(gradient, n):
    """The total variance of n draws of `gradient()` (a flat array, a fresh estimate each call): Σ over its
    entries of the sample variance (ddof 1)."""
    return float(summarize(draw(gradient, n)).variance.sum())


def gradient_samples(objective, params, n):
    """n independent gradient estimates of d objective / d params, from one backward pass.

    Each parameter (an array or Tensor) is copied n times along a new axis 0, and
    `objective(*copies)` must build n independent estimates, estimate i from copy i alone (e.g. a
    Normal whose loc has shape (n,)); it may return them (shape (n,)) or their sum (a scalar, as
    `score_function_surrogate` does).  The gradient of the sum then holds estimate i in row i.
    Returns a list with one array of shape (n,) + param.shape per parameter.
    """
    leaves = []
    for p in params:
        a = unwrap(p)
        xp = backend.get_array_module(a)
        a = xp.asarray(a)
        if a.dtype.kind not in "fc":                 # a number like 0 stands for a float parameter
            a = a.astype(backend.default_dtype)
        leaves.append(Tensor(xp.broadcast_to(a, (n,) + a.shape).copy(), requires_grad=True))
    ops.sum(objective(*leaves)).backward()
    return [leaf.grad if leaf.grad is not None else backend.get_array_module(leaf.data).zeros_like(leaf.data)
            for leaf in leaves]
