"""Building blocks: Module, Parameter, Linear, MLP and activations."""
import math

import numpy

from tinydgm import backend, ops
from tinydgm.checkpoint import describe_mismatch, mismatch_error
from tinydgm.tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module learns: requires_grad is always on, and it owns a copy of `data`
    (optimisers update it in place; the caller's array is never changed)."""
    __slots__ = ()

    def __init__(self, data):
        super().__init__(data, requires_grad=True)
        self.data = self.data.copy()


class Module:
    """A function with parameters; parameters are found in attributes, lists, tuples and dicts."""

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward")

    def named_parameters(self, prefix=""):
        """(name, Parameter) pairs, depth first, in the order the attributes were set."""
        seen, out, stack = set(), [], [(prefix, self)]
        while stack:
            name, obj = stack.pop()
            if isinstance(obj, Parameter):
                if id(obj) not in seen:
                    seen.add(id(obj))
                    out.append((name, obj))
                continue
            if isinstance(obj, Module):
                if id(obj) in seen:        # shared, or a reference back to a parent: walk it once
                    continue
                seen.add(id(obj))
                items = list(vars(obj).items())
            elif isinstance(obj, (list, tuple)):
                items = [(str(i), v) for i, v in enumerate(obj)]
            elif isinstance(obj, dict):
                items = [(str(k), v) for k, v in obj.items()]
            else:
                continue
            for k, v in reversed(items):
                stack.append((f"{name}.{k}" if name else k, v))
        return out

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def state_dict(self):
        """Parameter values by name, as copies on the host."""
        return {k: backend.to_numpy(p.data).copy() for k, p in self.named_parameters()}

    def load_state_dict(self, state):
        """Copy values into the parameters; names and shapes must match exactly (else nothing is loaded)."""
        params = dict(self.named_parameters())
        differs = describe_mismatch({k: p.shape for k, p in params.items()},
                                    {k: numpy.shape(v) for k, v in state.items()})
        if differs:
            raise mismatch_error(self, differs)
        for k, p in params.items():
            p.data[...] = backend.get_array_module(p.data).asarray(state[k], dtype=p.dtype)


def _generator(rng):
    if rng is None or isinstance(rng, (int, numpy.integer)):
        return numpy.random.default_rng(rng)
    return rng


INITS = ("pytorch", "glorot")


class Linear(Module):
    """y = x W + b, W of shape (n_in, n_out).  init "pytorch" (default): W and b ~ U(-1/sqrt(n_in), 1/sqrt(n_in)),
    PyTorch's default; "glorot": W ~ U(-sqrt(6/(n_in + n_out)), +sqrt(...)) and b = 0, the heuristic of
    Glorot & Bengio 2010 (eq. 16) for tanh layers."""

    def __init__(self, n_in, n_out, bias=True, rng=None, dtype=None, init="pytorch"):
        if init not in INITS:
            raise ValueError(f"Linear: init must be one of {list(INITS)}, not {init!r}")
        rng, dtype = _generator(rng), dtype or backend.default_dtype
        bound = 1 / math.sqrt(n_in) if init == "pytorch" else math.sqrt(6 / (n_in + n_out))
        self.weight = Parameter(backend.asarray(rng.uniform(-bound, bound, (n_in, n_out)), dtype=dtype))
        if not bias:
            self.bias = None
        elif init == "pytorch":
            self.bias = Parameter(backend.asarray(rng.uniform(-bound, bound, n_out), dtype=dtype))
        else:
            self.bias = Parameter(backend.asarray(numpy.zeros(n_out), dtype=dtype))

    def forward(self, x):
        if self.bias is None:
            return ops.matmul(x, self.weight)
        return ops.linear(x, self.weight, self.bias)


class Tanh(Module):
    def forward(self, x):
        return ops.tanh(x)


class ReLU(Module):
    def forward(self, x):
        return ops.relu(x)


class Sigmoid(Module):
    def forward(self, x):
        return ops.sigmoid(x)


ACTIVATIONS = {"tanh": Tanh, "relu": ReLU, "sigmoid": Sigmoid}


def mean_logits(x, dtype):
    """logit(mean over the rows of binary data x), each mean clipped to [1e-3, 1 - 1e-3]: the bias at which a
    Bernoulli output layer whose weights are 0 gives each pixel its marginal probability (a standard start)."""
    m = numpy.clip(backend.to_numpy(x).mean(0), 1e-3, 1 - 1e-3)
    return backend.asarray(numpy.log(m / (1 - m)), dtype=dtype)


class MLP(Module):
    """Linear layers of the given sizes with `activation` between them (none after the last); `init` as Linear's."""

    def __init__(self, sizes, activation="tanh", rng=None, dtype=None, init="pytorch"):
        if activation not in ACTIVATIONS:
            raise ValueError(f"MLP: activation must be one of {sorted(ACTIVATIONS)}, not {activation!r}")
        if len(sizes) < 2:
            raise ValueError(f"MLP: sizes needs an input and an output size, got {list(sizes)}")
        rng = _generator(rng)
        self.layers = [Linear(a, b, rng=rng, dtype=dtype, init=init) for a, b in zip(sizes[:-1], sizes[1:])]
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)
