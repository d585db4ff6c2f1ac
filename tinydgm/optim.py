"""Optimisers that update parameters in place (SGD with momentum, Adam) and the learning-rate schedules they share."""
import math

import numpy

from tinydgm import backend
from tinydgm.checkpoint import describe_mismatch, mismatch_error


class Optimizer:
    """Holds the parameters; `zero_grad()`, `step()`, and a state_dict for resuming."""

    def __init__(self, params, lr):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        self.lr = lr

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def _grads(self):
        return [(p, p.grad) for p in self.params if p.grad is not None]

    def state_dict(self):
        """The optimiser's buffers (host arrays) and step count."""
        return {"lr": self.lr, **{f"{k}.{i}": backend.to_numpy(b).copy()
                                  for k, bufs in self._buffers().items() for i, b in enumerate(bufs)}}

    def load_state_dict(self, state):
        """Copy a `state_dict` back; its names and shapes must match exactly (else nothing is loaded)."""
        buffers = {f"{k}.{i}": b for k, bufs in self._buffers().items() for i, b in enumerate(bufs)}
        differs = describe_mismatch({"lr": (), **{k: b.shape for k, b in buffers.items()}},
                                    {k: numpy.shape(v) for k, v in state.items()})
        if differs:
            raise mismatch_error(self, differs)
        self.lr = float(state["lr"])
        for k, b in buffers.items():
            b[...] = backend.get_array_module(b).asarray(state[k])

    def _buffers(self):
        return {}


class SGD(Optimizer):
    """p <- p - lr (g + momentum * velocity)."""

    def __init__(self, params, lr=0.01, momentum=0.0):
        super().__init__(params, lr)
        self.momentum = momentum
        self.velocity = [p.data * 0 for p in self.params]

    def step(self):
        for p, v in zip(self.params, self.velocity):
            if p.grad is None:
                continue
            if self.momentum:
                v *= self.momentum
                v += p.grad
                p.data -= self.lr * v
            else:
                p.data -= self.lr * p.grad

    def _buffers(self):
        return {"velocity": self.velocity}


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, Alg. 1) with bias correction, updating in place without temporaries."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, lr)
        self.betas, self.eps = betas, eps
        self.m = [p.data * 0 for p in self.params]     # first moment
        self.v = [p.data * 0 for p in self.params]     # second moment
        self.buf = [p.data * 0 for p in self.params]   # scratch, reused every step
        self.t = backend.get_array_module(self.params[0].data).zeros(1)

    def step(self):
        b1, b2 = self.betas
        self.t += 1
        t = float(self.t[0])
        c1, c2 = 1 - b1 ** t, math.sqrt(1 - b2 ** t)
        step, eps = self.lr * c2 / c1, self.eps * c2      # bias corrections folded into lr and eps
        for p, m, v, buf in zip(self.params, self.m, self.v, self.buf):
            g = p.grad
            if g is None:
                continue
            xp = backend.get_array_module(g)
            xp.subtract(g, m, out=buf)                 # m <- m + (1 - b1)(g - m) = b1 m + (1 - b1) g
            buf *= 1 - b1
            m += buf
            xp.multiply(g, g, out=buf)                 # v <- v + (1 - b2)(g^2 - v)
            buf -= v
            buf *= 1 - b2
            v += buf
            xp.sqrt(v, out=buf)                        # p <- p - lr m_hat / (sqrt(v_hat) + eps)
            buf += eps
            xp.divide(m, buf, out=buf)
            buf *= -step
            p.data += buf

    def _buffers(self):
        return {"m": self.m, "v": self.v, "t": [self.t]}


def clip_grad_norm(params, max_norm):
    """Scale all gradients together so that their global L2 norm is at most max_norm; returns the norm."""
    grads = [p.grad for p in params if p.grad is not None]
    norm = math.sqrt(sum(float((g * g).sum()) for g in grads))
    if norm > max_norm:
        for p in params:
            if p.grad is not None:
                p.grad = p.grad * (max_norm / norm)
    return norm


# =============================================================================================
# Learning-rate schedules (every trainer's)
# =============================================================================================

SCHEDULES = ("anneal", "constant", "burda")
HOLD = 0.25                     # anneal: the share of the budget spent at the full learning rate


def learning_rate(schedule, lr, epoch, progress):
    """The step size for `epoch` (`progress` in [0, 1) is how much of the run's budget is spent)."""
    if schedule == "constant":
        return lr
    if schedule == "anneal":
        # hold lr for the first HOLD of the budget, then decay exponentially to lr/100 at the end
        return lr if progress < HOLD else lr * 10 ** (-2 * (progress - HOLD) / (1 - HOLD))
    if schedule == "burda":
        # Burda et al. 2016, App. D: lr 10^(-i/7) * 1e-3 for 3^i epochs, i = 0..7 (3280 epochs)
        i = next(i for i in range(8) if epoch < (3 ** (i + 1) - 1) // 2) if epoch < 3280 else 7
        return lr * 10 ** (-i / 7)
    raise ValueError(f"unknown schedule {schedule!r}")
