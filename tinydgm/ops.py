"""The primitive ops: each forward with its vector-Jacobian products next to it, as the formula.

A derivative rule gets the incoming gradient `g`, the op's output `ans` and the op's inputs, in
that order (plus the op's keywords), and returns the gradient for its own input: `defvjp(op,
rule_for_input_0, rule_for_input_1, ...)`, `None` where an input is not differentiable.  Only the
rules of inputs that need a gradient run.  Every elementwise rule goes through `unbroadcast`.

Conventions at kinks: relu'(0) = 0; maximum sends the gradient of a tie to its first argument;
max over an axis splits it evenly among the tied entries; clip passes it at the bounds.
"""
import builtins
import sys

import numpy

from tinydgm import backend, numerics
from tinydgm.tensor import Op, Tensor, apply, bind_ops, unwrap


def primitive(forward):
    """Make a differentiable function from `forward(xp, *inputs, **kw)`."""
    op = Op(forward.__name__.strip("_"), forward)

    def f(*args, **kw):
        return apply(op, args, kw)
    f.op, f.__name__, f.__doc__ = op, op.name, forward.__doc__
    return f


def defvjp(f, *rules):
    """Attach one derivative rule per input of the primitive `f`."""
    f.op.vjps = rules


def defvjp_argnum(f, rule):
    """Attach a rule `rule(argnum, g, ans, *inputs)` for a primitive with any number of inputs."""
    f.op.vjp_argnum = rule


def unbroadcast(g, shape):
    """Sum `g` over the axes that broadcasting added or stretched, back to `shape`."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape) if axes else g.reshape(shape)


def _xp(a):
    return numpy if type(a) is numpy.ndarray else backend.get_array_module(a)


def _shape(a):
    return getattr(a, "shape", ())


def _keep(g, ndim, axis, keepdims):
    """A reduction's output (or its gradient) reshaped to broadcast against the input."""
    if keepdims or g.ndim == ndim:
        return g
    if axis is None:
        return g.reshape((1,) * ndim)
    shape = list(g.shape)
    for a in sorted(a % ndim for a in ((axis,) if isinstance(axis, int) else axis)):
        shape.insert(a, 1)
    return g.reshape(shape)


# =============================================================================================
# Arithmetic
# =============================================================================================

@primitive
def add(xp, x, y):
    return xp.add(x, y)
defvjp(add, lambda g, ans, x, y: unbroadcast(g, _shape(x)),          # d(x+y)/dx = 1
            lambda g, ans, x, y: unbroadcast(g, _shape(y)))          # d(x+y)/dy = 1


@primitive
def subtract(xp, x, y):
    return xp.subtract(x, y)
defvjp(subtract, lambda g, ans, x, y: unbroadcast(g, _shape(x)),     # d(x-y)/dx = 1
                 lambda g, ans, x, y: unbroadcast(-g, _shape(y)))    # d(x-y)/dy = -1


@primitive
def multiply(xp, x, y):
    return xp.multiply(x, y)
defvjp(multiply, lambda g, ans, x, y: unbroadcast(g * y, _shape(x)),  # d(xy)/dx = y
                 lambda g, ans, x, y: unbroadcast(g * x, _shape(y)))  # d(xy)/dy = x


@primitive
def divide(xp, x, y):
    return xp.divide(x, y)
defvjp(divide, lambda g, ans, x, y: unbroadcast(g / y, _shape(x)),          # d(x/y)/dx = 1/y
               lambda g, ans, x, y: unbroadcast(-g * ans / y, _shape(y)))   # d(x/y)/dy = -x/y^2


@primitive
def negative(xp, x):
    return xp.negative(x)
defvjp(negative, lambda g, ans, x: -g)                               # d(-x)/dx = -1


@primitive
def power(xp, x, c):
    """x ** c for a constant exponent c."""
    return xp.power(x, c)
defvjp(power, lambda g, ans, x, c: unbroadcast(g * (c * x ** (c - 1)), _shape(x)), None)  # d x^c/dx = c x^(c-1)


# =============================================================================================
# Elementwise functions (the stable forms are the ones to read)
# =============================================================================================

@primitive
def exp(xp, x):
    return xp.exp(x)
defvjp(exp, lambda g, ans, x: g * ans)                               # d e^x/dx = e^x


@primitive
def log(xp, x):
    return xp.log(x)
defvjp(log, lambda g, ans, x: g / x)                                 # d log x/dx = 1/x


@primitive
def tanh(xp, x):
    return xp.tanh(x)
defvjp(tanh, lambda g, ans, x: g * (1 - ans * ans))                  # d tanh x/dx = 1 - tanh(x)^2


@primitive
def sigmoid(xp, x):
    """1 / (1 + e^-x) = (1 + tanh(x/2)) / 2: no overflow for any x."""
    return numerics.sigmoid(xp, x)
defvjp(sigmoid, lambda g, ans, x: g * ans * (1 - ans))               # d s(x)/dx = s(x)(1 - s(x))


@primitive
def softplus(xp, x):
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|): finite for any x."""
    return numerics.softplus(xp, x)
defvjp(softplus, lambda g, ans, x: g * _exp(x - ans))                # d softplus(x)/dx = sigmoid(x) = e^(x - softplus(x))


@primitive
def log_sigmoid(xp, x):
    """log(1 / (1 + e^-x)) = min(x, 0) - log1p(e^-|x|): finite for any x."""
    return numerics.log_sigmoid(xp, x)
defvjp(log_sigmoid, lambda g, ans, x: g * _exp(ans - x))             # d log s(x)/dx = s(-x) = e^(log s(x) - x)


@primitive
def relu(xp, x):
    return xp.maximum(x, 0)
defvjp(relu, lambda g, ans, x: g * (x > 0))                          # d relu/dx = [x > 0]  (0 at 0)


@primitive
def maximum(xp, x, y):
    return xp.maximum(x, y)
defvjp(maximum, lambda g, ans, x, y: unbroadcast(g * (x >= y), _shape(x)),   # ties go to x
                lambda g, ans, x, y: unbroadcast(g * (x < y), _shape(y)))


@primitive
def where(xp, condition, x, y):
    """x where condition holds, else y (condition is not differentiable)."""
    return xp.where(condition, x, y)
defvjp(where, None,
       lambda g, ans, c, x, y: unbroadcast(g * _bool(c), _shape(x)),        # d/dx = [c]
       lambda g, ans, c, x, y: unbroadcast(g * ~_bool(c), _shape(y)))       # d/dy = [not c]


def _bool(c):
    if getattr(c, "dtype", None) == bool:
        return c
    return c.astype(bool) if hasattr(c, "astype") else numpy.asarray(c, dtype=bool)   # stays on its device


@primitive
def clip(xp, x, a_min, a_max):
    return xp.clip(x, a_min, a_max)
defvjp(clip, lambda g, ans, x, lo, hi:                              # d clip/dx = [lo <= x <= hi]
       unbroadcast(g * ((lo is None or x >= lo) & (hi is None or x <= hi)), _shape(x)))


@primitive
def bernoulli_log_prob(xp, logits, x):
    """x l - softplus(l): log Bernoulli(x; sigmoid(l)) from logits in one op (fused: it pays in the VAE)."""
    return numerics.bernoulli_log_prob(xp, logits, x)
defvjp(bernoulli_log_prob, lambda g, ans, l, x: _bernoulli_vjp(g, l, x), None)


def _bernoulli_vjp(g, l, x):
    return unbroadcast(g * (x - numerics.sigmoid(_xp(l), l)), l.shape)   # d/dl [x l - softplus(l)] = x - sigmoid(l)


def _exp(a):
    return _xp(a).exp(a)


# =============================================================================================
# Linear algebra
# =============================================================================================

@primitive
def matmul(xp, x, y):
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError("matmul needs arrays of at least one dimension")
    if x.shape[-1] != y.shape[-2 if y.ndim > 1 else 0]:
        raise ValueError(f"shapes {x.shape} and {y.shape} do not align")
    return xp.matmul(x, y)
defvjp(matmul, lambda g, ans, x, y: _matmul_vjp(g, x, y, 0),         # d(xy)/dx: g y^T
               lambda g, ans, x, y: _matmul_vjp(g, x, y, 1))         # d(xy)/dy: x^T g


def _matmul_vjp(g, x, y, which):
    if x.ndim == 2 and y.ndim == 2:
        return g @ y.T if which == 0 else x.T @ g
    x2 = x[None, :] if x.ndim == 1 else x           # vectors as 1-row / 1-column matrices
    y2 = y[:, None] if y.ndim == 1 else y
    g2 = g[..., None] if y.ndim == 1 else g
    g2 = g2[..., None, :] if x.ndim == 1 else g2
    if which == 0:
        return unbroadcast(g2 @ numpy.swapaxes(y2, -1, -2), x2.shape).reshape(x.shape)
    return unbroadcast(numpy.swapaxes(x2, -1, -2) @ g2, y2.shape).reshape(y.shape)


@primitive
def linear(xp, x, w, b):
    """x @ w + b in one op (a dense layer): one temporary instead of two."""
    if x.shape[-1] != w.shape[0] or b.shape[-1:] not in ((w.shape[1],), (1,)):
        raise ValueError(f"shapes {x.shape} @ {w.shape} + {b.shape} do not align")
    out = xp.matmul(x, w)
    out += b
    return out
defvjp(linear, lambda g, ans, x, w, b: g @ w.T,                                  # d/dx = g w^T
               lambda g, ans, x, w, b: x.reshape(-1, x.shape[-1]).T @ g.reshape(-1, g.shape[-1]),  # d/dw = x^T g
               lambda g, ans, x, w, b: unbroadcast(g, b.shape))                  # d/db = sum of g


# =============================================================================================
# Reductions
# =============================================================================================

@primitive
def sum(xp, x, axis=None, keepdims=False):
    return xp.sum(x, axis=axis, keepdims=keepdims)
defvjp(sum, lambda g, ans, x, axis=None, keepdims=False:             # d sum(x)/dx_i = 1
       _xp(g).broadcast_to(_keep(g, x.ndim, axis, keepdims), x.shape))


@primitive
def max(xp, x, axis=None, keepdims=False):
    return xp.max(x, axis=axis, keepdims=keepdims)
defvjp(max, lambda g, ans, x, axis=None, keepdims=False:             # d max(x)/dx_i = [x_i is the max] / #ties
       _max_vjp(g, ans, x, axis, keepdims))


def _max_vjp(g, ans, x, axis, keepdims):
    at_max = x == _keep(ans, x.ndim, axis, keepdims)
    return _keep(g, x.ndim, axis, keepdims) * at_max / at_max.sum(axis=axis, keepdims=True, dtype=g.dtype)


@primitive
def logsumexp(xp, x, axis=None, keepdims=False):
    """log sum exp(x) = m + log sum exp(x - m), m = max(x): finite for any finite x."""
    m = xp.max(x, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)
    s = xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m
    return s if keepdims else xp.squeeze(s, axis=axis)
defvjp(logsumexp, lambda g, ans, x, axis=None, keepdims=False:       # d lse(x)/dx_i = softmax(x)_i = e^(x_i - lse)
       _keep(g, x.ndim, axis, keepdims) * _exp(x - _keep(ans, x.ndim, axis, keepdims)))


def mean(x, axis=None, keepdims=False):
    """The mean over `axis` (composed: sum / count)."""
    shape = _shape(unwrap(x))
    axes = range(len(shape)) if axis is None else (axis,) if isinstance(axis, int) else axis
    n = 1
    for a in axes:
        if not -len(shape) <= a < len(shape):
            raise ValueError(f"mean: axis {a} is out of bounds for shape {shape}")
        n *= shape[a]
    return sum(x, axis=axis, keepdims=keepdims) / n


# =============================================================================================
# Shapes
# =============================================================================================

@primitive
def reshape(xp, x, shape):
    return xp.reshape(x, shape)
defvjp(reshape, lambda g, ans, x, shape: g.reshape(x.shape))


@primitive
def transpose(xp, x, axes=None):
    return xp.transpose(x, axes)
defvjp(transpose, lambda g, ans, x, axes=None:
       _xp(g).transpose(g, None if axes is None else tuple(numpy.argsort([a % x.ndim for a in axes]).tolist())))


@primitive
def broadcast_to(xp, x, shape):
    return xp.broadcast_to(x, shape)
defvjp(broadcast_to, lambda g, ans, x, shape: unbroadcast(g, x.shape))


@primitive
def getitem(xp, x, index):
    return x[index]
defvjp(getitem, lambda g, ans, x, index: _getitem_vjp(g, x, index), None)


def _getitem_vjp(g, x, index):
    """Scatter g back into zeros of x's shape, adding where an index repeats."""
    out = _xp(g).zeros(x.shape, dtype=g.dtype)
    parts = index if isinstance(index, tuple) else (index,)
    if builtins.any(getattr(p, "dtype", None) is not None and p.dtype.kind in "iu" or isinstance(p, list)
                    for p in parts):
        backend.scatter_add(out, index, g)
    else:
        out[index] = g
    return out


@primitive
def _concatenate(xp, *xs, axis=0):
    return xp.concatenate(xs, axis=axis)
defvjp_argnum(_concatenate, lambda i, g, ans, *xs, axis=0:            # each input gets its slice of g
              _xp(g).split(g, numpy.cumsum([x.shape[axis] for x in xs[:-1]]).tolist(), axis=axis)[i])


# ---------------------------------------------------------------------------------------------
# Composed from the primitives above
# ---------------------------------------------------------------------------------------------

def stack(xs, axis=0):
    """Join tensors of one shape along a new axis."""
    xs = [x if isinstance(x, Tensor) else Tensor(x) for x in xs]
    if not xs:
        raise ValueError("stack: needs at least one tensor")
    if not -xs[0].ndim - 1 <= axis <= xs[0].ndim:
        raise ValueError(f"stack: axis {axis} is out of bounds for tensors of shape {xs[0].shape}")
    axis = axis % (xs[0].ndim + 1)
    return _concatenate(*[reshape(x, x.shape[:axis] + (1,) + x.shape[axis:]) for x in xs], axis=axis)


def split(x, indices_or_sections, axis=0):
    """Cut x into pieces along `axis` (as numpy.split), each a differentiable slice."""
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"split: axis {axis} is out of bounds for shape {x.shape}")
    n = x.shape[axis]
    if isinstance(indices_or_sections, int):
        if indices_or_sections < 1 or n % indices_or_sections:
            raise ValueError(f"split: axis {axis} of length {n} does not divide into {indices_or_sections} equal parts")
        step = n // indices_or_sections
        bounds = list(range(0, n + 1, step))
    else:
        bounds = [0] + list(indices_or_sections) + [n]
    head = (slice(None),) * (axis % x.ndim)
    return [x[head + (slice(a, b),)] for a, b in zip(bounds[:-1], bounds[1:])]


def concatenate(xs, axis=0):
    """Join tensors along an existing axis (NumPy's signature: a sequence, then axis)."""
    return _concatenate(*xs, axis=axis)


# =============================================================================================
# Tensor's operators (written in tensor.py's Tensor class) call the ops of this module
# =============================================================================================

bind_ops(sys.modules[__name__])
