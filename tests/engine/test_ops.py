"""Every primitive: directional gradcheck in float64 over hypothesis-drawn shapes, axes and values
in the op's domain; NumPy agrees on the forward; inputs are left alone; float32 stays float32."""
import numpy as np
import pytest
import scipy.special
from hypothesis import assume, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import tinydgm as td
from tinydgm import ops
from tinydgm.backend import to_numpy
from tinydgm.check import gradcheck

SOME = settings(max_examples=40)
FEW = settings(max_examples=15)

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)


def values(lo, hi, step=0.01):
    """Numbers in [lo, hi] on a grid of `step`: two of them are equal or at least `step` apart,
    far more than gradcheck's steps of ~1e-6, so kinks and ties can be assumed away exactly."""
    return st.integers(round(lo / step), round(hi / step)).map(lambda k: k * step)


def arrays(shape, lo=-2.0, hi=2.0, **kw):
    return hnp.arrays(np.float64, shape, elements=values(lo, hi), **kw)


def check(xp, f, ref, *arrays):
    """f's gradient passes gradcheck in float64, f agrees with NumPy's `ref`, f and its backward
    leave the inputs unchanged, and float32 inputs give a float32 output and float32 gradients."""
    ins = [xp.asarray(a) for a in arrays]
    before = [to_numpy(a).copy() for a in ins]
    assert gradcheck(f, *ins)

    ts = [td.tensor(a, requires_grad=True) for a in ins]
    out = f(*ts)
    assert isinstance(out, td.Tensor) and out.dtype == np.float64
    if ref is not None:
        np.testing.assert_allclose(to_numpy(out), ref(*arrays), rtol=1e-10, atol=1e-12)
    out.backward(xp.ones(out.shape))
    for t, a, b in zip(ts, ins, before):
        np.testing.assert_array_equal(to_numpy(a), b)
        assert t.grad is not None and t.grad.shape == a.shape and t.grad.dtype == np.float64

    ts32 = [td.tensor(a.astype(np.float32), requires_grad=True) for a in ins]
    out32 = f(*ts32)
    assert out32.dtype == np.float32, f"float32 in, {out32.dtype} out"
    out32.backward(xp.ones(out32.shape, dtype=np.float32))
    for t in ts32:
        assert t.grad.dtype == np.float32 and t.grad.shape == t.shape, (t.grad.dtype, t.grad.shape)


# =============================================================================================
# Elementwise, one input
# =============================================================================================

def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


UNARY = {   # name: (op, NumPy reference, values, what must hold)
    "negative": (td.negative, np.negative, values(-3, 3), None),
    "exp": (td.exp, np.exp, values(-3, 3), None),
    "log": (td.log, np.log, values(0.01, 5), lambda x: np.all(x > 0.05)),       # away from 0
    "tanh": (td.tanh, np.tanh, values(-3, 3), None),
    "sigmoid": (td.sigmoid, _sigmoid, values(-8, 8), None),
    "softplus": (td.softplus, lambda x: np.logaddexp(0, x), values(-8, 8), None),
    "log_sigmoid": (td.log_sigmoid, lambda x: -np.logaddexp(0, -x), values(-8, 8), None),
    "relu": (td.relu, lambda x: np.maximum(x, 0), values(-3, 3), lambda x: np.all(x != 0)),  # kink
}


@pytest.mark.parametrize("name", sorted(UNARY))
@SOME
@given(data=st.data())
def test_unary(xp, name, data):
    f, ref, elements, ok = UNARY[name]
    x = data.draw(hnp.arrays(np.float64, shapes, elements=elements), label="x")
    assume(ok is None or ok(x))
    check(xp, f, ref, x)


@pytest.mark.parametrize("c", [2, 3, 1, 0.5, -1, -1.5, 2.5])
@FEW
@given(data=st.data())
def test_power_by_constant(xp, c, data):
    lo = -2 if float(c).is_integer() and c > 0 else 0.1          # x^c for real c needs x > 0
    x = data.draw(arrays(shapes, lo, 2), label="x")
    assume(np.all(np.abs(x) > 0.05) or c > 0)
    check(xp, lambda x: x ** c, lambda x: x ** c, x)
    check(xp, lambda x: td.power(x, c), lambda x: np.power(x, c), x)


# =============================================================================================
# Elementwise, broadcasting
# =============================================================================================

BINARY = {   # name: (op, NumPy reference, what must hold of the broadcast pair)
    "add": (td.add, np.add, None),
    "subtract": (td.subtract, np.subtract, None),
    "multiply": (td.multiply, np.multiply, None),
    "divide": (td.divide, np.divide, lambda x, y: np.all(np.abs(y) > 0.2)),       # away from 0
    "maximum": (td.maximum, np.maximum, lambda x, y: np.all(x != y)),             # no ties
}
pairs = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3)


@pytest.mark.parametrize("name", sorted(BINARY))
@SOME
@given(data=st.data())
def test_binary_broadcasting(xp, name, data):
    f, ref, ok = BINARY[name]
    s = data.draw(pairs, label="shapes")
    x = data.draw(arrays(s.input_shapes[0]), label="x")
    y = data.draw(arrays(s.input_shapes[1]), label="y")
    assume(ok is None or ok(*np.broadcast_arrays(x, y)))
    check(xp, f, ref, x, y)


@SOME
@given(data=st.data())
def test_where(xp, data):
    s = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3), label="shapes")
    cond = data.draw(hnp.arrays(bool, s.input_shapes[0]), label="condition")
    x = data.draw(arrays(s.input_shapes[1]), label="x")
    y = data.draw(arrays(s.input_shapes[2]), label="y")
    c = xp.asarray(cond)
    check(xp, lambda x, y: td.where(c, x, y), lambda x, y: np.where(cond, x, y), x, y)


def test_where_with_a_non_boolean_condition(xp):
    x = td.tensor(xp.asarray([1.0, 2.0, 3.0]), requires_grad=True)
    conds = [xp.asarray([1.0, 0.0, 2.0]), td.tensor(xp.asarray([1.0, 0.0, 2.0]))] + ([[1, 0, 1]] if xp is np else [])
    for cond in conds:
        x.zero_grad()
        td.where(cond, x, -x).sum().backward()
        np.testing.assert_array_equal(to_numpy(x.grad), [1, -1, 1])


@SOME
@given(x=arrays(shapes, -3, 3), lo=st.sampled_from([None, -1.0, 0.5]), hi=st.sampled_from([None, 1.0, 2.0]))
def test_clip(xp, x, lo, hi):
    assume(lo is not None or hi is not None)
    assume(all(b is None or np.all(np.abs(x - b) > 0.005) for b in (lo, hi)))     # away from the bounds
    check(xp, lambda x: td.clip(x, lo, hi), lambda x: np.clip(x, lo, hi), x)


@SOME
@given(data=st.data())
def test_clip_and_power_with_array_constants_that_broadcast(xp, data):
    s = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3), label="shapes")
    x = data.draw(arrays(s.input_shapes[0], -3, 3), label="x")
    lo = data.draw(arrays(s.input_shapes[1], -1.5, -0.5), label="lo")
    hi = data.draw(arrays(s.input_shapes[2], 0.5, 1.5), label="hi")
    assume(np.all(np.abs(x - lo) > 0.005) and np.all(np.abs(x - hi) > 0.005))
    a_lo, a_hi = xp.asarray(lo), xp.asarray(hi)      # constants in x's dtype, so float32 stays float32
    check(xp, lambda x: td.clip(x, a_lo.astype(x.dtype), a_hi.astype(x.dtype)), lambda x: np.clip(x, lo, hi), x)
    c = hi + 1.0                                     # exponents in [1.5, 2.5], x > 0
    a_c = xp.asarray(c)
    check(xp, lambda x: td.power(x * x + 0.5, a_c.astype(x.dtype)), lambda x: (x * x + 0.5) ** c, x)


@SOME
@given(data=st.data(), binary=st.booleans())
def test_bernoulli_log_prob(xp, data, binary):
    """x l - softplus(l), differentiable in the logits l; the data x may broadcast against l."""
    s = data.draw(pairs, label="shapes")
    logits = data.draw(arrays(s.input_shapes[0], -8, 8), label="logits")
    x = data.draw(hnp.arrays(np.float64, s.input_shapes[1], elements=st.sampled_from([0.0, 1.0]) if binary
                             else values(0, 1)), label="x")
    a_x = xp.asarray(x)
    check(xp, lambda l: td.bernoulli_log_prob(l, a_x.astype(l.dtype)), lambda l: x * l - np.logaddexp(0, l), logits)


# =============================================================================================
# Linear algebra
# =============================================================================================

@SOME
@given(data=st.data())
def test_matmul(xp, data):
    s = data.draw(hnp.mutually_broadcastable_shapes(signature=np.matmul.signature, max_dims=2, max_side=3),
                  label="shapes")
    x = data.draw(arrays(s.input_shapes[0]), label="x")
    y = data.draw(arrays(s.input_shapes[1]), label="y")
    check(xp, td.matmul, np.matmul, x, y)


@pytest.mark.parametrize("sx, sy", [((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((4, 2, 3), (3,)),
                                    ((3,), (4, 3, 2)), ((2, 1, 2, 3), (3, 3, 2)), ((2, 3), (3, 4)),
                                    ((1, 2, 3), (5, 3, 2))])
def test_matmul_vectors_and_batches(xp, sx, sy):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(sx), rng.standard_normal(sy)
    check(xp, lambda x, y: x @ y, np.matmul, x, y)


@SOME
@given(batch=hnp.array_shapes(min_dims=0, max_dims=2, max_side=3), k=st.integers(1, 4), m=st.integers(1, 4),
       data=st.data())
def test_linear(xp, batch, k, m, data):
    x = data.draw(arrays(batch + (k,)), label="x")
    w = data.draw(arrays((k, m)), label="w")
    b = data.draw(arrays((m,)), label="b")
    check(xp, ops.linear, lambda x, w, b: x @ w + b, x, w, b)


# =============================================================================================
# Reductions
# =============================================================================================

@st.composite
def array_and_axis(draw, lo=-2.0, hi=2.0, unique=False):
    """An array, and an axis for it: None, an int (maybe negative) or a tuple of distinct axes."""
    x = draw(arrays(shapes, lo, hi, unique=unique), label="x")
    choices = [st.none(), hnp.valid_tuple_axes(x.ndim)]
    if x.ndim:
        choices.append(st.integers(-x.ndim, x.ndim - 1))
    return x, draw(st.one_of(choices), label="axis")


def _logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


REDUCTIONS = {"sum": (td.sum, np.sum), "mean": (td.mean, np.mean), "logsumexp": (td.logsumexp, _logsumexp),
              "max": (td.max, np.max)}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@SOME
@given(xa=array_and_axis(unique=True), keepdims=st.booleans())         # unique: no ties for max
def test_reductions(xp, name, xa, keepdims):
    f, ref = REDUCTIONS[name]
    x, axis = xa
    check(xp, lambda x: f(x, axis=axis, keepdims=keepdims), lambda x: ref(x, axis=axis, keepdims=keepdims), x)


# Fixed cases on top of the drawn ones: descending, negative and mixed axis tuples on 3-D and 4-D
# inputs, where a gradient reshaped with unsorted or un-normalised axes goes wrong (sides all
# different, so a wrong reshape cannot pass by coincidence).
AXES = [((2, 3, 4), axis) for axis in [None, 0, -1, -2, (2, 0), (-1, 0), (0, 2), (1, 0), (-2, -3), (2, 1, 0)]] + \
       [((2, 3, 4, 5), axis) for axis in [-1, -3, (2, 0), (3, 1), (0, 2), (-2, 0), (-1, 0), (3, 0, 1), (2, 0, 1), (-1, -3),
                                          (1, 3, 2, 0)]]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("shape, axis", AXES, ids=[f"{len(s)}d-{a}" for s, a in AXES])
@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reduction_gradients_on_fixed_axes(xp, name, shape, axis, keepdims):
    f, ref = REDUCTIONS[name]
    x = np.random.default_rng(0).permutation(np.prod(shape)).reshape(shape) * 0.1 - 3   # distinct: no ties for max
    x_ = xp.asarray(x)
    assert gradcheck(lambda t: f(t, axis=axis, keepdims=keepdims), x_)
    t = td.tensor(x_, requires_grad=True)
    out = f(t, axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(to_numpy(out), ref(x, axis=axis, keepdims=keepdims), rtol=1e-12)
    out.backward(xp.ones(out.shape))
    assert t.grad.shape == shape


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [0, 2, -1, -3])
def test_log_mean_exp_gradient_on_fixed_axes(xp, axis, keepdims):
    """estimators.log_mean_exp (composed from logsumexp) on a 4-D input, single and negative axes."""
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 5))
    assert gradcheck(lambda t: td.estimators.log_mean_exp(t, axis=axis, keepdims=keepdims), xp.asarray(x))
    out = td.estimators.log_mean_exp(td.tensor(xp.asarray(x)), axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(to_numpy(out), scipy.special.logsumexp(x, axis=axis, keepdims=keepdims)
                               - np.log(x.shape[axis]), rtol=1e-12)


@FEW
@given(xa=array_and_axis(unique=True), keepdims=st.booleans())
def test_reduction_methods(xp, xa, keepdims):
    x, axis = xa
    t = td.tensor(xp.asarray(x))
    for name in ("sum", "mean", "max", "logsumexp"):
        by_method = getattr(t, name)(axis=axis, keepdims=keepdims)
        by_function = getattr(td, name)(t, axis=axis, keepdims=keepdims)
        np.testing.assert_array_equal(to_numpy(by_method), to_numpy(by_function))


# =============================================================================================
# Shapes
# =============================================================================================

@SOME
@given(data=st.data())
def test_reshape(xp, data):
    x = data.draw(arrays(shapes), label="x")
    target = data.draw(st.sampled_from([(-1,), x.shape[::-1], (1,) + x.shape, x.shape + (1, 1), (x.size,)]),
                       label="shape")
    check(xp, lambda x: td.reshape(x, target), lambda x: np.reshape(x, target), x)
    check(xp, lambda x: x.reshape(*target), lambda x: x.reshape(target), x)


@SOME
@given(data=st.data())
def test_transpose(xp, data):
    x = data.draw(arrays(shapes), label="x")
    perm = data.draw(st.permutations(range(x.ndim)), label="axes")
    signs = data.draw(st.lists(st.booleans(), min_size=x.ndim, max_size=x.ndim), label="negative")
    axes = tuple(a - x.ndim if neg else a for a, neg in zip(perm, signs))     # negative axes too
    check(xp, lambda x: td.transpose(x, axes), lambda x: np.transpose(x, axes), x)
    check(xp, lambda x: td.transpose(x), np.transpose, x)
    check(xp, lambda x: x.T, lambda x: x.T, x)


@SOME
@given(data=st.data())
def test_broadcast_to(xp, data):
    x = data.draw(arrays(shapes), label="x")
    other = data.draw(hnp.broadcastable_shapes(x.shape, max_dims=4, max_side=3), label="other")
    target = np.broadcast_shapes(x.shape, other)
    check(xp, lambda x: td.broadcast_to(x, target), lambda x: np.broadcast_to(x, target), x)


@SOME
@given(data=st.data())
def test_getitem_basic(xp, data):
    x = data.draw(arrays(shapes), label="x")
    index = data.draw(hnp.basic_indices(x.shape, allow_newaxis=True), label="index")
    check(xp, lambda x: x[index], lambda x: x[index], x)


@SOME
@given(data=st.data())
def test_getitem_integer_arrays(xp, data):
    x = data.draw(arrays(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4)), label="x")
    index = data.draw(hnp.integer_array_indices(x.shape, result_shape=hnp.array_shapes(max_dims=2, max_side=6)),
                      label="index")          # repeats are likely: up to 12 picks from <= 4 rows
    on_xp = tuple(xp.asarray(i) for i in index)
    check(xp, lambda x: x[on_xp], lambda x: x[index], x)
    if x.ndim >= 2:                         # an integer array after a slice
        rows = index[0] % x.shape[1]
        check(xp, lambda x: x[:, xp.asarray(rows)], lambda x: x[:, rows], x)


@SOME
@given(data=st.data())
def test_getitem_boolean_mask(xp, data):
    x = data.draw(arrays(shapes), label="x")
    mask = data.draw(hnp.arrays(bool, x.shape), label="mask")
    m = xp.asarray(mask)
    check(xp, lambda x: x[m], lambda x: x[mask], x)


def test_getitem_repeated_indices_add_up(xp):
    x = td.tensor(xp.arange(12.0).reshape(3, 4), requires_grad=True)
    x[xp.asarray([0, 2, 0, 0])].sum().backward()
    np.testing.assert_array_equal(to_numpy(x.grad)[:, 0], [3, 0, 1])
    x.zero_grad()
    x[xp.asarray([1, 1]), xp.asarray([3, 3])].sum().backward()
    expected = np.zeros((3, 4))
    expected[1, 3] = 2
    np.testing.assert_array_equal(to_numpy(x.grad), expected)
    x.zero_grad()
    x[[2, 2, 2]].sum().backward()                            # a Python list of indices too
    np.testing.assert_array_equal(to_numpy(x.grad)[2], [3, 3, 3, 3])


@st.composite
def concatenable(draw):
    """2-3 arrays that agree on every axis but `axis`, and that axis."""
    base = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=3), label="shape")
    axis = draw(st.integers(-len(base), len(base) - 1), label="axis")
    sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3), label="sizes")
    shape = list(base)
    xs = []
    for n in sizes:
        shape[axis] = n
        xs.append(draw(arrays(tuple(shape))))
    return xs, axis


@SOME
@given(xa=concatenable())
def test_concatenate(xp, xa):
    xs, axis = xa
    check(xp, lambda *xs: td.concatenate(xs, axis=axis), lambda *xs: np.concatenate(xs, axis=axis), *xs)


@SOME
@given(data=st.data())
def test_stack(xp, data):
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=3), label="shape")
    xs = data.draw(st.lists(arrays(shape), min_size=1, max_size=3), label="xs")
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)), label="axis")
    check(xp, lambda *xs: td.stack(xs, axis=axis), lambda *xs: np.stack(xs, axis=axis), *xs)


@SOME
@given(data=st.data())
def test_split(xp, data):
    x = data.draw(arrays(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4)), label="x")
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1), label="axis")
    n = x.shape[axis]
    sections = data.draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0])
                         | st.lists(st.integers(0, n), max_size=3).map(sorted), label="sections")
    pieces = td.split(td.tensor(xp.asarray(x)), sections, axis=axis)
    expected = np.split(x, sections, axis=axis)
    assert len(pieces) == len(expected)
    for p, e in zip(pieces, expected):
        np.testing.assert_array_equal(to_numpy(p), e)

    def weighted(split):            # every piece feeds the output, each with its own weight
        return lambda x: [(p * p).sum() * (i + 1) for i, p in enumerate(split(x, sections, axis=axis))]
    check(xp, lambda x: td.stack(weighted(td.split)(x)), lambda x: np.stack(weighted(np.split)(x)), x)


# =============================================================================================
# Stable forms, conventions at kinks, operators
# =============================================================================================

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_forms_finite_at_magnitude_1000(xp, dtype):
    big = [-1000.0, -30.0, 0.0, 30.0, 1000.0]
    cases = [   # f, inputs, value, gradient
        (td.softplus, big, [0, 9.357623e-14, np.log(2), 30, 1000], [0, 9.357623e-14, 0.5, 1, 1]),
        (td.log_sigmoid, big, [-1000, -30, -np.log(2), -9.357623e-14, 0], [1, 1, 0.5, 9.357623e-14, 0]),
        (lambda x: td.logsumexp(x.reshape(-1, 2), axis=1), [1000.0, 1000.0, -1000.0, -1000.0, 1000.0, -1000.0],
         [1000 + np.log(2), -1000 + np.log(2), 1000], [0.5, 0.5, 0.5, 0.5, 1, 0]),
        (lambda x: td.bernoulli_log_prob(x, xp.asarray([1, 0, 1, 0, 1], dtype=x.dtype)), big,
         [-1000, -9.357623e-14, -np.log(2), -30, 0], [1, -9.357623e-14, 0.5, -1, 0]),
        (lambda x: td.logsumexp(x), [1000.0, 999.0], [1000 + np.log1p(np.exp(-1.0))],
         [1 / (1 + np.exp(-1.0)), 1 / (1 + np.exp(1.0))]),
    ]
    for f, x, value, gradient in cases:
        t = td.tensor(xp.asarray(x, dtype=dtype), requires_grad=True)
        out = f(t)
        out.backward(xp.ones(out.shape, dtype=dtype))
        assert out.dtype == dtype and t.grad.dtype == dtype
        assert np.all(np.isfinite(to_numpy(out))) and np.all(np.isfinite(to_numpy(t.grad)))
        np.testing.assert_allclose(to_numpy(out).ravel(), value, rtol=1e-6, atol=1e-6)
        # e^(x - lse) inherits lse's rounding: about 1000 * float32's epsilon at |x| = 1000
        tol = 1e-4 if dtype == np.float32 else 1e-10
        np.testing.assert_allclose(to_numpy(t.grad), gradient, rtol=tol, atol=1e-6)


def test_sigmoid_finite_at_magnitude_1000(xp):
    for dtype in (np.float32, np.float64):
        t = td.tensor(xp.asarray([-1000.0, 0.0, 1000.0], dtype=dtype), requires_grad=True)
        s = td.sigmoid(t)
        s.sum().backward()
        np.testing.assert_allclose(to_numpy(s), [0, 0.5, 1])
        np.testing.assert_allclose(to_numpy(t.grad), [0, 0.25, 0])
        assert s.dtype == dtype and t.grad.dtype == dtype


def test_conventions_at_kinks(xp):
    x = td.tensor(xp.asarray([-1.0, 0.0, 2.0]), requires_grad=True)
    td.relu(x).sum().backward()
    np.testing.assert_array_equal(to_numpy(x.grad), [0, 0, 1])                # relu'(0) = 0

    a = td.tensor(xp.asarray([1.0, 2.0, 3.0]), requires_grad=True)
    b = td.tensor(xp.asarray([1.0, 5.0, 3.0]), requires_grad=True)
    td.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(to_numpy(a.grad), [1, 0, 1])                # ties go to the first
    np.testing.assert_array_equal(to_numpy(b.grad), [0, 1, 0])

    m = td.tensor(xp.asarray([[3.0, 1.0, 3.0], [0.0, 2.0, 1.0]]), requires_grad=True)
    td.max(m, axis=1).sum().backward()
    np.testing.assert_array_equal(to_numpy(m.grad), [[0.5, 0, 0.5], [0, 1, 0]])  # ties share evenly

    c = td.tensor(xp.asarray([-2.0, -1.0, 0.0, 1.0, 2.0]), requires_grad=True)
    td.clip(c, -1.0, 1.0).sum().backward()
    np.testing.assert_array_equal(to_numpy(c.grad), [0, 1, 1, 1, 0])          # passed at the bounds


def test_operators_and_methods_match_the_functions(xp):
    rng = np.random.default_rng(1)
    xa, ya = rng.uniform(0.5, 2, (2, 3)), rng.uniform(0.5, 2, (2, 3))
    x, y, w = td.tensor(xp.asarray(xa)), td.tensor(xp.asarray(ya)), td.tensor(xp.asarray(ya.T))
    pairs = [(x + y, xa + ya), (x - y, xa - ya), (x * y, xa * ya), (x / y, xa / ya), (-x, -xa),
             (x ** 2, xa ** 2), (x @ w, xa @ ya.T), (2.0 + x, 2 + xa), (2.0 - x, 2 - xa), (2.0 * x, 2 * xa),
             (2.0 / x, 2 / xa), (x + 1, xa + 1), (x.T, xa.T), (x.transpose(), xa.T), (x.transpose(1, 0), xa.T),
             (x.transpose((1, 0)), xa.T), (x.reshape(3, 2), xa.reshape(3, 2)), (x.reshape((6,)), xa.ravel()),
             (x.exp(), np.exp(xa)), (x.log(), np.log(xa)), (x.tanh(), np.tanh(xa)),
             (x.sigmoid(), 1 / (1 + np.exp(-xa))), (x.softplus(), np.logaddexp(0, xa)),
             (x.log_sigmoid(), -np.logaddexp(0, -xa)), (x.relu(), xa), (x.clip(0.8, 1.5), np.clip(xa, 0.8, 1.5)),
             (x.broadcast_to((4, 2, 3)), np.broadcast_to(xa, (4, 2, 3))), (x[1], xa[1]), (x[:, ::2], xa[:, ::2]),
             (td.neg(x), -xa)]
    for got, want in pairs:
        assert isinstance(got, td.Tensor)
        np.testing.assert_allclose(to_numpy(got), want, rtol=1e-12)
    for got, want in [(x < y, xa < ya), (x <= 1.0, xa <= 1), (x > y, xa > ya), (x >= y, xa >= ya)]:
        assert not isinstance(got, td.Tensor) and got.dtype == bool
        np.testing.assert_array_equal(to_numpy(got), want)


def test_float32_stays_float32_with_python_numbers(xp):
    x = td.tensor(xp.ones((2, 3), dtype=np.float32), requires_grad=True)
    outs = [x * 2.0, x + 1, 3 - x, 1.5 / x, x ** 2, x ** 0.5, x.mean(), td.maximum(x, 0.0), td.clip(x, 0.0, 1.0),
            td.where(xp.ones((2, 3), dtype=bool), x, 0.0)]
    for out in outs:
        assert out.dtype == np.float32, out
    loss = outs[0].sum()
    for out in outs[1:]:
        loss = loss + out.sum()
    loss.backward()
    assert x.grad.dtype == np.float32


# =============================================================================================
# Errors from bad calls name the op and the shapes
# =============================================================================================

def test_errors_name_the_op_and_shapes(xp):
    a, b = td.tensor(xp.ones((2, 3))), td.tensor(xp.ones((4, 5)))
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\).*\(4, 5\)"):
        a @ b
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\).*\(4, 5\)"):
        td.matmul(a, b)
    with pytest.raises(ValueError, match=r"add.*\(2, 3\).*\(4, 5\)"):
        a + b
    with pytest.raises(ValueError, match=r"multiply.*\(2, 3\).*\(4, 5\)"):
        a * b
    with pytest.raises(ValueError, match=r"maximum.*\(2, 3\).*\(4, 5\)"):
        td.maximum(a, b)
    with pytest.raises(ValueError, match=r"linear.*\(2, 3\).*\(4, 5\)"):
        ops.linear(a, b, td.tensor(xp.ones(5)))
    with pytest.raises(ValueError, match=r"concatenate.*\(2, 3\).*\(4, 5\)"):
        td.concatenate([a, b], axis=0)
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\)"):
        a.reshape(4, 2)
    with pytest.raises(ValueError, match=r"broadcast_to.*\(2, 3\)"):
        td.broadcast_to(a, (4, 5))
    with pytest.raises(IndexError, match=r"getitem.*\(2, 3\)"):
        a[5]
    with pytest.raises(ValueError, match=r"sum.*\(2, 3\)"):
        a.sum(axis=4)
    with pytest.raises(ValueError, match=r"where.*\(2, 3\).*\(4, 5\)"):
        td.where(xp.ones((2, 3), dtype=bool), a, b)
    with pytest.raises(ValueError, match=r"split.*3"):
        td.split(a, 2, axis=1)
    with pytest.raises(ValueError, match=r"split.*0"):
        td.split(a, 0, axis=1)
    with pytest.raises(ValueError, match=r"split: axis 5.*\(2, 3\)"):
        td.split(a, 2, axis=5)
    with pytest.raises(ValueError, match=r"stack: axis 3.*\(2, 3\)"):
        td.stack([a, a], axis=3)                      # not wrapped round to axis 0
    with pytest.raises(ValueError, match=r"stack: axis -4"):
        td.stack([a, a], axis=-4)
    with pytest.raises(ValueError, match=r"mean: axis 2.*\(2, 3\)"):
        a.mean(axis=2)
    with pytest.raises(ValueError, match=r"max.*\(2, 3\)"):
        a.max(axis=(0, 2))
    with pytest.raises(TypeError, match="power"):
        a ** a
    with pytest.raises(TypeError, match=r"add.*\(2, 3\)"):
        a + "x"


@SOME
@given(data=st.data())
def test_unbroadcast_is_the_adjoint_of_broadcasting(data):
    """<unbroadcast(g, shape), v> = <g, broadcast_to(v, g.shape)> for every v: the one rule that
    every elementwise gradient goes through."""
    s = data.draw(pairs, label="shapes")
    shape, target = s.input_shapes[0], s.result_shape
    g = data.draw(arrays(target), label="g")
    v = data.draw(arrays(shape), label="v")
    back = ops.unbroadcast(g, shape)
    assert back.shape == shape
    np.testing.assert_allclose(np.sum(back * v), np.sum(g * np.broadcast_to(v, target)), rtol=1e-12, atol=1e-12)
