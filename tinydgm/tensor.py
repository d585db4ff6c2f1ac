"""Tensor: an array, its gradient, and how it was made; reverse-mode `backward` over the graph.

The primitive ops and their derivatives live in `ops.py`.  Tensor's operators (+, *, @, .sum, ...)
are written in its class body below, each calling the op of `ops.py` it names, as `ops.add(...)`.
`ops.py` imports this module, so this module cannot import `ops.py`: instead `ops.py` ends with
`bind_ops(<itself>)`, which sets the module-level name `ops` here (see "Tensor's ops" below).
Apart from those operators, this module knows nothing about any particular op.
"""
import contextlib

import numpy

from tinydgm import backend

_grad_enabled = [True]      # a list, so that no_grad can flip it in place
_FREED = "freed"            # a non-leaf's _ctx once backward has walked it (unless retain_graph)


# ---------------------------------------------------------------------------------------------
# Tensor's ops: the functions of ops.py, bound late
# ---------------------------------------------------------------------------------------------

ops = None    # the module tinydgm.ops, whose functions Tensor's operators call; set by bind_ops


def bind_ops(module):
    """Give Tensor's operators the ops of `module`: ops.py calls this at its end, once (it imports
    this module, so this module cannot import it).  `import tinydgm` imports both."""
    global ops
    ops = module


# ---------------------------------------------------------------------------------------------
# Ops and tensors
# ---------------------------------------------------------------------------------------------

class Op:
    """A primitive: its forward (xp, *arrays, **kw) -> array and one derivative rule per input."""
    __slots__ = ("name", "forward", "vjps", "vjp_argnum")

    def __init__(self, name, forward):
        self.name, self.forward, self.vjps, self.vjp_argnum = name, forward, (), None

    def vjp(self, i, g, ans, inputs, kw):
        """g · d ans / d inputs[i], by the rule for input i (given the op's output and inputs)."""
        if self.vjp_argnum is not None:
            return self.vjp_argnum(i, g, ans, *inputs, **kw)
        rule = self.vjps[i] if i < len(self.vjps) else None
        if rule is None:
            raise RuntimeError(f"{self.name}: input {i} is not differentiable")
        return rule(g, ans, *inputs, **kw)

    def __repr__(self):
        return f"<op {self.name}>"


@backend.register_wrapper
class Tensor:
    """A backend array with a gradient.  Leaves accumulate `.grad` across `backward` calls; each
    backward frees the graph it walked (as in PyTorch), unless asked to retain it."""
    __slots__ = ("data", "grad", "requires_grad", "_ctx", "__weakref__")
    __array_priority__ = 1000     # ndarray * Tensor -> Tensor.__rmul__, not an object array

    def __init__(self, data, requires_grad=False):
        dtype = getattr(data, "dtype", None)          # an array's; Python numbers have none
        if requires_grad and dtype is not None and numpy.dtype(dtype).kind != "f":
            raise TypeError(f"tensor: only floating-point tensors can require gradients; got {dtype} "
                            "— convert with .astype(np.float64)")
        self.data = _as_float_array(data)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._ctx = None          # (op, inputs, keywords) for a Tensor made by an op

    # -- what it looks like --------------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        g = ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({backend.to_numpy(self.data)!r}{g})"

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item: only a one-element tensor has an item, this one has shape {self.shape}")
        return self.data.item()

    def numpy(self):
        """The value as a NumPy array on the host (a copy where the data lives on a GPU)."""
        return backend.to_numpy(self.data)

    def detach(self):
        """The same values, cut from the graph (shares memory, as in PyTorch)."""
        return Tensor(self.data)

    def zero_grad(self):
        self.grad = None

    def __setitem__(self, index, value):
        if self.requires_grad or self._ctx is not None:
            raise RuntimeError("setitem: cannot change a Tensor in place while it is part of a graph "
                               "(requires_grad=True or made by an op): its old value may still be "
                               "needed for gradients; build a new tensor with td.where or concatenate")
        self.data[index] = unwrap(value)

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError(f"the truth value of a Tensor of shape {self.shape} is ambiguous")
        return bool(self.data)

    __hash__ = object.__hash__

    # -- operators: each calls the op of ops.py it names (`ops` is bound late: see bind_ops) ---
    def __add__(self, other): return ops.add(self, other)
    def __radd__(self, other): return ops.add(other, self)
    def __sub__(self, other): return ops.subtract(self, other)
    def __rsub__(self, other): return ops.subtract(other, self)
    def __mul__(self, other): return ops.multiply(self, other)
    def __rmul__(self, other): return ops.multiply(other, self)
    def __truediv__(self, other): return ops.divide(self, other)
    def __rtruediv__(self, other): return ops.divide(other, self)
    def __matmul__(self, other): return ops.matmul(self, other)
    def __rmatmul__(self, other): return ops.matmul(other, self)
    def __neg__(self): return ops.negative(self)

    def __pow__(self, c):
        if isinstance(c, Tensor):
            raise TypeError("power: the exponent must be a constant (a number or an array), not a Tensor")
        return ops.power(self, c)

    def __getitem__(self, index): return ops.getitem(self, _index_arrays(index))

    T = property(lambda self: ops.transpose(self))
    def transpose(self, *axes): return ops.transpose(self, _one_or_many(axes) or None)
    def reshape(self, *shape): return ops.reshape(self, _one_or_many(shape))
    def broadcast_to(self, shape): return ops.broadcast_to(self, shape)

    def sum(self, axis=None, keepdims=False): return ops.sum(self, axis=axis, keepdims=keepdims)
    def mean(self, axis=None, keepdims=False): return ops.mean(self, axis=axis, keepdims=keepdims)
    def max(self, axis=None, keepdims=False): return ops.max(self, axis=axis, keepdims=keepdims)
    def logsumexp(self, axis=None, keepdims=False): return ops.logsumexp(self, axis=axis, keepdims=keepdims)

    def exp(self): return ops.exp(self)
    def log(self): return ops.log(self)
    def tanh(self): return ops.tanh(self)
    def sigmoid(self): return ops.sigmoid(self)
    def softplus(self): return ops.softplus(self)
    def log_sigmoid(self): return ops.log_sigmoid(self)
    def relu(self): return ops.relu(self)
    def clip(self, a_min, a_max): return ops.clip(self, a_min, a_max)

    # comparisons are not ops (nothing to differentiate): they give plain boolean arrays
    def __lt__(self, other): return numpy.less(self.data, unwrap(other))
    def __le__(self, other): return numpy.less_equal(self.data, unwrap(other))
    def __gt__(self, other): return numpy.greater(self.data, unwrap(other))
    def __ge__(self, other): return numpy.greater_equal(self.data, unwrap(other))

    # -- reverse mode ----------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Accumulate d self / d leaf into every leaf's `.grad` (`grad`: the cotangent of self), then
        free the graph behind self, unless `retain_graph` keeps it for another backward."""
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad (no input of it has "
                               "requires_grad=True, or it was computed under no_grad)")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward: a tensor of shape {self.shape} needs `grad` of the same "
                                   "shape; only a one-element tensor gets grad=1 by default")
            grad = backend.get_array_module(self.data).ones_like(self.data)
        else:
            grad = unwrap(grad)
            xp = backend.get_array_module(self.data)
            grad = xp.array(grad, dtype=self.data.dtype, copy=True)
            if grad.shape != self.shape:
                raise ValueError(f"backward: grad has shape {grad.shape}, expected {self.shape}")
        _backpropagate(self, grad, retain_graph)


def _as_float_array(data):
    """Data as a backend array: float arrays keep their dtype, everything else becomes float32."""
    if isinstance(data, Tensor):
        return data.data
    xp = backend.xp()
    if type(data) is numpy.ndarray or type(data).__module__.startswith("cupy"):
        if data.dtype.kind == "f":
            return xp.asarray(data) if xp is not numpy else data
        return xp.asarray(data, dtype=backend.default_dtype)
    a = numpy.asarray(data)
    if a.dtype.kind == "O":
        raise TypeError(f"tensor: expected numbers or an array, got {type(data).__name__}")
    dtype = a.dtype if (a.dtype.kind == "f" and isinstance(data, numpy.generic)) else backend.default_dtype
    return xp.asarray(a, dtype=dtype)


def unwrap(x):
    """The array inside a Tensor; anything else as it is."""
    return x.data if isinstance(x, Tensor) else x


def _index_arrays(index):
    """An index with the arrays inside any Tensors in it (x[t], x[t, 0], ...)."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(_index_arrays(i) for i in index)
    return index


def _one_or_many(args):
    """reshape(2, 3) and reshape((2, 3)) alike: a lone non-integer argument is the whole tuple."""
    return args[0] if len(args) == 1 and not isinstance(args[0], int) else args


def tensor(data, requires_grad=False):
    """A Tensor from an array (float dtype kept; other dtypes become float32 and cannot require grad)
    or from Python numbers (float32)."""
    return Tensor(data, requires_grad=requires_grad)


# ---------------------------------------------------------------------------------------------
# Recording ops
# ---------------------------------------------------------------------------------------------

def apply(op, args, kw):
    """Run `op` on the arrays inside `args` and, where a gradient may be wanted, record how."""
    datas, needed = [], False
    for a in args:
        if isinstance(a, Tensor):
            datas.append(a.data)
            needed = needed or a.requires_grad
        else:
            datas.append(a)
    xp = _module_of(datas)
    try:
        ans = op.forward(xp, *datas, **kw)
    except (ValueError, IndexError, TypeError) as e:
        shapes = " and ".join(str(getattr(d, "shape", type(d).__name__)) for d in datas)
        raise _like(e, f"{op.name}: inputs of shapes {shapes}: {e}") from None
    out = Tensor.__new__(Tensor)
    out.data = numpy.asarray(ans) if isinstance(ans, numpy.generic) else ans
    out.grad = None
    if needed and _grad_enabled[0]:
        out.requires_grad = True
        out._ctx = (op, args, kw)
    else:
        out.requires_grad = False
        out._ctx = None
    return out


def _like(e, message):
    """An exception of e's type saying `message` (a plain TypeError/ValueError where that type
    cannot be built from a message, e.g. NumPy's _UFuncNoLoopError)."""
    try:
        return type(e)(message)
    except Exception:
        return (TypeError if isinstance(e, TypeError) else ValueError)(message)


def _module_of(datas):
    for d in datas:
        if type(d) is numpy.ndarray:
            return numpy
        if type(d).__module__.startswith("cupy"):
            return backend.get_array_module(d)
    return backend.xp()


def _toposort(root):
    """Tensors that lead to `root` and require grad, inputs before outputs (no recursion)."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:          # marked when expanded, not when pushed: a node reached
            continue                  # again later must still come after all its users
        if node._ctx is _FREED:
            raise RuntimeError("backward through the graph a second time: the graph was freed by the first "
                               "backward; call backward(retain_graph=True) the first time to keep it")
        seen.add(id(node))
        stack.append((node, True))
        if node._ctx is not None:
            for a in node._ctx[1]:
                if isinstance(a, Tensor) and a.requires_grad and id(a) not in seen:
                    stack.append((a, False))
    return order


def _backpropagate(root, grad, retain_graph=False):
    """The chain rule, once over the graph in reverse topological order: each node's cotangent
    (d root / d node, complete once all its users are walked) goes through its op's vector-Jacobian
    products to its inputs, and into `.grad` at the leaves.  Each cotangent is freed once used and,
    unless `retain_graph`, each node's record of its inputs (so their arrays can go)."""
    cotangents = {id(root): grad}
    leaf_grads = _LeafGrads()
    order = _toposort(root)
    while order:
        node = order.pop()    # outputs first; popped, so a walked node's inputs are released as we go
        g = cotangents.pop(id(node), None)
        if g is None:
            continue
        if node._ctx is None:                    # a leaf: g joins its .grad
            leaf_grads.accumulate(node, g)
            continue
        op, args, kw = node._ctx
        if not retain_graph:
            node._ctx = _FREED
        datas = [a.data if isinstance(a, Tensor) else a for a in args]
        for i, a in enumerate(args):             # each input that needs one gets its share of g
            if isinstance(a, Tensor) and a.requires_grad:
                share = op.vjp(i, g, node.data, datas, kw)      # d root / d a, through this node
                prev = cotangents.get(id(a))
                cotangents[id(a)] = share if prev is None else prev + share


class _LeafGrads:
    """Puts the cotangents of one backward into the leaves' `.grad`, never aliasing an array that
    someone else holds, and in the leaf's dtype."""
    __slots__ = ("handed_out",)

    def __init__(self):
        self.handed_out = set()   # ids of the arrays this backward stored in some leaf's .grad

    def accumulate(self, leaf, g):
        """leaf.grad += g, as a new array: the old `.grad` may be held by the user.  A `g` stored
        as it is must be this backward's own and given to no other leaf: otherwise it is copied
        (a view, a read-only array, or one that reached two leaves through pass-through ops)."""
        if g.dtype != leaf.data.dtype:             # a leaf's grad has the leaf's dtype, even
            g = g.astype(leaf.data.dtype)          # where it met a float64 constant on the way
        if leaf.grad is not None:
            leaf.grad = leaf.grad + g
        else:
            if id(g) in self.handed_out or not _owns(g):
                g = g.copy()
            self.handed_out.add(id(g))
            leaf.grad = g
        if isinstance(leaf.grad, numpy.generic):   # NumPy gives 0-d results as scalars
            leaf.grad = numpy.asarray(leaf.grad)


def _owns(a):
    flags = getattr(a, "flags", None)
    return flags is not None and flags.owndata and getattr(flags, "writeable", True)   # CuPy: always writeable


# ---------------------------------------------------------------------------------------------
# Switching recording off, and gradients as functions
# ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _recording(enabled):
    """Inside this block, ops record their graph iff `enabled`; the previous setting comes back after."""
    before = _grad_enabled[0]
    _grad_enabled[0] = enabled
    try:
        yield
    finally:
        _grad_enabled[0] = before


def no_grad():
    """Record nothing inside this block (for evaluation and parameter updates)."""
    return _recording(False)


def is_grad_enabled():
    return _grad_enabled[0]


def grad(f, argnums=0):
    """The function returning d f / d args[argnums] as arrays (f must return a one-element Tensor)."""
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)

    def gradient(*args, **kwargs):
        args = list(args)
        for i in nums:
            args[i] = Tensor(unwrap(args[i]), requires_grad=True)
        with _recording(True):
            out = f(*args, **kwargs)
        if not isinstance(out, Tensor) or out.data.size != 1:
            raise ValueError(f"grad: f must return a one-element Tensor, got "
                             f"{getattr(out, 'shape', type(out).__name__)}")
        if out.requires_grad:
            out.backward()
        xp = backend.get_array_module(args[nums[0]].data)
        gs = tuple(args[i].grad if args[i].grad is not None else xp.zeros_like(args[i].data)
                   for i in nums)
        return gs[0] if single else gs
    return gradient
