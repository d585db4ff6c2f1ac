"""Graph semantics: reuse, diamonds, deep chains, no_grad, detach, accumulation, errors, aliasing."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import tinydgm as td
from tinydgm import ops
from tinydgm.tensor import is_grad_enabled
from tinydgm.backend import to_numpy
from tinydgm.check import gradcheck


def leaf(xp, values, dtype=np.float64):
    return td.tensor(xp.asarray(values, dtype=dtype), requires_grad=True)


# =============================================================================================
# Shapes of graphs
# =============================================================================================

def test_reuse_of_a_tensor(xp):
    x = leaf(xp, [1.0, -2.0, 3.0])
    (x * x).sum().backward()
    np.testing.assert_allclose(to_numpy(x.grad), [2, -4, 6])               # d x^2 = 2x
    x.zero_grad()
    (x + x * x).sum().backward()
    np.testing.assert_allclose(to_numpy(x.grad), [3, -3, 7])               # 1 + 2x
    x.zero_grad()
    (x * x + x).sum().backward()                                           # same, other order
    np.testing.assert_allclose(to_numpy(x.grad), [3, -3, 7])


@pytest.mark.parametrize("order", ["b + a", "a + b"])
def test_diamond(xp, order):
    x = leaf(xp, [1.0, 2.0])
    b = x * 2
    a = b * 3                              # x -> b -> a, and b -> out directly: b has two users
    out = b + a if order == "b + a" else a + b
    out.sum().backward()
    np.testing.assert_allclose(to_numpy(x.grad), [8, 8])


def test_wide_diamond(xp):
    x = leaf(xp, [0.5])
    h = td.tanh(x)
    branches = [h * k for k in range(1, 6)]
    total = branches[0]
    for b in branches[1:]:
        total = total + b * h
    total.sum().backward()
    t = np.tanh(0.5)
    expected = (1 + sum(2 * k * t for k in range(2, 6))) * (1 - t * t)
    np.testing.assert_allclose(to_numpy(x.grad), [expected])


MASK = np.array([[True, False, True], [False, False, True]])
PROGRAM_OPS = {     # (2, 3), (2, 3) -> (2, 3), about as large as their inputs: well scaled for gradcheck
    "average": lambda a, b: (a + b) * 0.5,
    "half_difference": lambda a, b: (a - b) * 0.5,
    "product": lambda a, b: a * b,
    "tanh": lambda a, b: td.tanh(a + b),
    "swap_sum": lambda a, b: td.sum(a, axis=0, keepdims=True) * 0.25 + b,
    "matmul": lambda a, b: (a @ b.T) @ b * (1 / 6),
    "gather": lambda a, b: a[[1, 1]] * 0.5 + b[:, [2, 0, 2]] * 0.5,               # repeated indices
    "roll": lambda a, b: td.concatenate(td.split(a, [1], axis=1)[::-1], axis=1) * b,
    "logsumexp": lambda a, b: td.logsumexp(a, axis=1, keepdims=True) * 0.25 + b * 0.5,
    "softplus": lambda a, b: td.softplus(a) * 0.5 - b * 0.25,
    "log_sigmoid": lambda a, b: td.log_sigmoid(a) * 0.5 + b * 0.5,
    "sigmoid": lambda a, b: td.sigmoid(a) * b,
    "where": lambda a, b: td.where(td.backend.get_array_module(a.data).asarray(MASK), a, b),
    "shuffle": lambda a, b: td.reshape(a.T, (2, 3)) * 0.5 + td.stack([b[1], b[0]]) * 0.5,
    "broadcast": lambda a, b: td.broadcast_to(a[0:1], (2, 3)) * b,
    "mean": lambda a, b: td.mean(a * b, axis=1, keepdims=True) + td.exp(b * 0.1) * 0.1,
}


@settings(max_examples=60)
@given(n_inputs=st.integers(1, 3),
       steps=st.lists(st.tuples(st.sampled_from(sorted(PROGRAM_OPS)), st.integers(0, 99), st.integers(0, 99)),
                      min_size=1, max_size=16),
       data=st.data())
def test_random_programs_with_shared_nodes(xp, n_inputs, steps, data):
    """Random DAGs in which every node may feed any later one: the gradient of the sum of all
    nodes must pass gradcheck whatever the order in which nodes are reused."""
    xs = [data.draw(hnp.arrays(np.float64, (2, 3), elements=st.floats(-1, 1)), label=f"x{i}")
          for i in range(n_inputs)]

    def program(*inputs):
        nodes = list(inputs)
        for op, i, j in steps:
            nodes.append(PROGRAM_OPS[op](nodes[i % len(nodes)], nodes[j % len(nodes)]))
        return td.stack([n.sum() for n in nodes])
    assert gradcheck(program, *[xp.asarray(x) for x in xs])


def test_chain_of_100000_ops_backpropagates(xp):
    x = leaf(xp, [1.5, -2.0])
    y = x
    for _ in range(100_000):
        y = -y                                        # an even number of negations
    y.sum().backward()
    np.testing.assert_array_equal(to_numpy(x.grad), [1, 1])
    del y                                             # freeing the chain must not recurse either


def test_cotangents_are_freed_as_soon_as_used():
    """Backward through 60 tanh's of a 100,000-vector holds a few vectors at a time, not 60."""
    tracemalloc = pytest.importorskip("tracemalloc")
    n = 100_000
    x = td.tensor(np.random.default_rng(0).standard_normal(n) * 0.1, requires_grad=True)
    h = x
    for _ in range(60):
        h = td.tanh(h)
    loss = h.sum()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        loss.backward()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (peak - base) / (8 * n) < 8, "vectors alive at once during backward"


def test_deep_graph_with_reuse(xp):
    x = leaf(xp, [0.3])
    y = x
    for _ in range(20_000):
        y = y * 0.5 + y * 0.5                         # every node used twice
    y.sum().backward()
    np.testing.assert_allclose(to_numpy(x.grad), [1.0])


# =============================================================================================
# Recording on and off
# =============================================================================================

def test_no_grad_records_nothing(xp):
    x = leaf(xp, [1.0, 2.0])
    with td.no_grad():
        assert not is_grad_enabled()
        y = td.tanh(x * 2).sum()
    assert is_grad_enabled()
    assert not y.requires_grad and y._ctx is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_no_grad_restores_after_an_error_and_nests(xp):
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        with td.no_grad():
            1 / 0
    assert is_grad_enabled()
    with td.no_grad():
        with td.no_grad():
            pass
        assert not is_grad_enabled()
    assert is_grad_enabled()


def test_detach(xp):
    x = leaf(xp, [1.0, 2.0])
    d = x.detach()
    assert not d.requires_grad and d._ctx is None
    np.testing.assert_array_equal(to_numpy(d), [1, 2])
    (x * d).sum().backward()                          # d is a constant: d(x*d)/dx = d
    np.testing.assert_array_equal(to_numpy(x.grad), [1, 2])
    assert d.grad is None
    y = (x * 3).detach()
    assert not y.requires_grad and y._ctx is None


def test_gradients_accumulate_across_backward_calls_until_zero_grad(xp):
    x = leaf(xp, [1.0, 2.0])
    (x * x).sum().backward()
    first = x.grad
    (x * x).sum().backward()                          # a second graph over the same leaf
    np.testing.assert_array_equal(to_numpy(x.grad), [4, 8])
    np.testing.assert_array_equal(to_numpy(first), [2, 4])      # the first gradient was not changed in place
    x.zero_grad()
    assert x.grad is None
    (x * 3).sum().backward()
    np.testing.assert_array_equal(to_numpy(x.grad), [3, 3])


def test_a_second_backward_through_a_freed_graph_raises(xp):
    """As PyTorch: backward frees the graph it walked; walking it again is an error, and no leaf
    gradient changes (it used to double them silently)."""
    x = leaf(xp, [1.0, 2.0])
    h = x * x
    y = h.sum()
    y.backward()
    message = r"backward through the graph a second time.*retain_graph=True"
    with pytest.raises(RuntimeError, match=message):
        y.backward()
    with pytest.raises(RuntimeError, match=message):
        (h * 2).sum().backward()                      # a new graph through a freed node
    np.testing.assert_array_equal(to_numpy(x.grad), [2, 4])
    (x * 3).sum().backward()                          # a new graph from the leaf: accumulates
    np.testing.assert_array_equal(to_numpy(x.grad), [5, 7])
    np.testing.assert_array_equal(to_numpy(y), 5.0)   # values stay readable
    x.backward(xp.ones(2))                            # a leaf has no graph to free
    x.backward(xp.ones(2))
    np.testing.assert_array_equal(to_numpy(x.grad), [7, 9])


def test_retain_graph_keeps_it_for_another_backward_that_accumulates(xp):
    x = leaf(xp, [1.0, 2.0])
    y = td.tanh(x * x).sum()
    y.backward(retain_graph=True)
    first = to_numpy(x.grad).copy()
    y.backward(retain_graph=True)
    y.backward()                                      # the last one frees it
    np.testing.assert_allclose(to_numpy(x.grad), 3 * first)
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_backward_frees_the_intermediate_tensors(xp):
    import gc
    import weakref
    x = leaf(xp, [0.5, -1.0])
    y = td.tanh(td.tanh(x) * 2).sum()
    kept = td.tanh(td.tanh(x) * 2).sum()
    inner, inner_kept = weakref.ref(y._ctx[1][0]), weakref.ref(kept._ctx[1][0])
    y.backward()
    kept.backward(retain_graph=True)
    gc.collect()
    assert inner() is None                            # only the graph held it
    assert inner_kept() is not None


def test_grad_gradcheck_and_gradient_samples_walk_fresh_graphs(xp):
    f = lambda x: (td.tanh(x) * x).sum()              # noqa: E731
    x = xp.asarray([0.3, -0.7])
    g1, g2 = td.grad(f)(x), td.grad(f)(x)              # one graph per call
    np.testing.assert_array_equal(to_numpy(g1), to_numpy(g2))
    assert gradcheck(lambda x: td.tanh(x) * x, x)
    from tinydgm.estimators import gradient_samples
    (g,) = gradient_samples(lambda m: (m * m).sum(axis=1), [xp.asarray([1.0, 2.0])], 3)
    np.testing.assert_array_equal(to_numpy(g), [[2, 4]] * 3)


def test_float32_leaf_gets_float32_grad_from_float64_constants(xp):
    x = leaf(xp, [1.0, 2.0], np.float32)
    (x * xp.asarray([3.0, 4.0])).sum().backward()        # the product is float64
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(to_numpy(x.grad), [3, 4])
    g = td.grad(lambda x: (x * x).sum())(xp.asarray([1.0, 2.0], dtype=np.float32))
    assert g.dtype == np.float32


def test_grad_of_a_float64_array_is_computed_in_float64(xp):
    x = xp.asarray([1.0, 1e-9])
    g = td.grad(lambda x: (x * x).sum())(x)
    assert g.dtype == np.float64
    np.testing.assert_array_equal(to_numpy(g), [2.0, 2e-9])
    strided = xp.asarray([1.0, 5.0, 3.0])[::2]
    np.testing.assert_array_equal(to_numpy(td.grad(lambda x: (x * x).sum())(strided)), [2, 6])


def test_only_leaves_get_grad(xp):
    x = leaf(xp, [1.0, 2.0])
    c = td.tensor(xp.asarray([5.0, 6.0]))             # requires_grad=False
    h = x * c
    h.sum().backward()
    assert c.grad is None and h.grad is None
    np.testing.assert_array_equal(to_numpy(x.grad), [5, 6])


def test_float32_graph_gives_float32_grads(xp):
    x = leaf(xp, [[1.0, 2.0]], np.float32)
    w = leaf(xp, [[0.5], [0.25]], np.float32)
    loss = td.softplus(x @ w).mean() + td.logsumexp(x, axis=1).sum() + td.max(x) * 0.5
    loss.backward()
    assert loss.dtype == np.float32 and x.grad.dtype == np.float32 and w.grad.dtype == np.float32


# =============================================================================================
# backward's errors and aliasing
# =============================================================================================

def test_backward_on_a_non_scalar_needs_grad(xp):
    x = leaf(xp, [1.0, 2.0])
    y = x * 2
    with pytest.raises(RuntimeError, match=r"shape \(2,\).*grad"):
        y.backward()
    with pytest.raises(ValueError, match=r"grad has shape \(3,\), expected \(2,\)"):
        y.backward(xp.ones(3))
    y.backward(xp.asarray([1.0, 10.0]))
    np.testing.assert_array_equal(to_numpy(x.grad), [2, 20])


def test_one_element_tensor_gets_grad_one(xp):
    x = leaf(xp, [[3.0]])
    (x * 2).backward()
    np.testing.assert_array_equal(to_numpy(x.grad), [[2]])
    s = leaf(xp, 2.0)
    (s * s).backward()
    assert s.grad.shape == () and float(s.grad) == 4.0 and isinstance(s.grad, xp.ndarray)


def test_setitem_on_a_tensor_in_a_graph_fails_loudly(xp):
    x = leaf(xp, [1.0, 2.0])
    with pytest.raises(RuntimeError, match="in place.*graph"):
        x[0] = 5.0
    y = x * 2
    with pytest.raises(RuntimeError, match="in place.*graph"):
        y[1] = 0.0
    np.testing.assert_array_equal(to_numpy(y), [2, 4])
    plain = td.tensor(xp.asarray([1.0, 2.0]))          # not in a graph: allowed
    plain[0] = 7.0
    np.testing.assert_array_equal(to_numpy(plain), [7, 2])


def test_leaf_grads_never_alias_each_other_or_the_users_grad(xp):
    x, y = leaf(xp, [1.0, 2.0]), leaf(xp, [3.0, 4.0])
    g = xp.asarray([1.0, 1.0])
    (x + y).backward(g)                                # add hands g through unchanged to both
    x.grad[0] = 100.0
    assert float(y.grad[0]) == 1.0 and float(g[0]) == 1.0
    g[1] = -5.0
    assert float(x.grad[1]) == 1.0 and float(y.grad[1]) == 1.0

    a = leaf(xp, [[1.0, 2.0]])
    g2 = xp.ones((2, 1))
    a.reshape(2, 1).backward(g2)                       # reshape's gradient is a view of g
    a.grad[0, 0] = 9.0
    assert float(g2[0, 0]) == 1.0
    b = leaf(xp, [1.0, 2.0, 3.0])
    b.sum().backward()                                 # sum's gradient is a broadcast view
    b.grad[0] = 9.0                                    # ... and must still be writable
    assert to_numpy(b.grad).tolist() == [9, 1, 1]


def test_leaf_used_twice_through_pass_through_ops(xp):
    x = leaf(xp, [1.0, 2.0])
    (x + x).sum().backward()
    np.testing.assert_array_equal(to_numpy(x.grad), [2, 2])


# =============================================================================================
# Tensors meeting arrays, td.tensor, td.grad
# =============================================================================================

def test_ndarray_on_the_left_gives_a_tensor(xp):
    x = leaf(xp, [1.0, 2.0])
    a = xp.asarray([3.0, 4.0])
    for out, want in [(a * x, [3, 8]), (a + x, [4, 6]), (a - x, [2, 2]), (a / x, [3, 2]), (a @ x, 11)]:
        assert isinstance(out, td.Tensor) and out.requires_grad
        np.testing.assert_allclose(to_numpy(out), want)
    (a * x).sum().backward()
    np.testing.assert_array_equal(to_numpy(x.grad), [3, 4])


def test_each_tensor_operator_records_the_op_of_ops_py_it_names(xp):
    x, y, c = leaf(xp, [[1.0, 2.0]]), leaf(xp, [[3.0, 4.0]]), 2.0
    cases = {   # expression: (its result, the op it records, that op's leading inputs)
        "x + y": (x + y, ops.add, (x, y)), "c + x": (c + x, ops.add, (c, x)),
        "x - y": (x - y, ops.subtract, (x, y)), "c - x": (c - x, ops.subtract, (c, x)),
        "x * y": (x * y, ops.multiply, (x, y)), "c * x": (c * x, ops.multiply, (c, x)),
        "x / y": (x / y, ops.divide, (x, y)), "c / x": (c / x, ops.divide, (c, x)),
        "x @ y.T": (x @ y.T, ops.matmul, (x,)), "-x": (-x, ops.negative, (x,)),
        "x ** c": (x ** c, ops.power, (x, c)),
        "x[0]": (x[0], ops.getitem, (x, 0)),
        "x.T": (x.T, ops.transpose, (x,)), "x.transpose(1, 0)": (x.transpose(1, 0), ops.transpose, (x, (1, 0))),
        "x.reshape(2, 1)": (x.reshape(2, 1), ops.reshape, (x, (2, 1))),
        "x.reshape((2, 1))": (x.reshape((2, 1)), ops.reshape, (x, (2, 1))),
        "x.broadcast_to((3, 2))": (x.broadcast_to((3, 2)), ops.broadcast_to, (x, (3, 2))),
        "x.sum(0)": (x.sum(0), ops.sum, (x,)), "x.max()": (x.max(), ops.max, (x,)),
        "x.logsumexp(1)": (x.logsumexp(1), ops.logsumexp, (x,)),
        "x.mean()": (x.mean(), ops.divide, ()),                            # composed: sum / n
        "x.exp()": (x.exp(), ops.exp, (x,)), "x.log()": (x.log(), ops.log, (x,)),
        "x.tanh()": (x.tanh(), ops.tanh, (x,)),
        "x.sigmoid()": (x.sigmoid(), ops.sigmoid, (x,)), "x.softplus()": (x.softplus(), ops.softplus, (x,)),
        "x.log_sigmoid()": (x.log_sigmoid(), ops.log_sigmoid, (x,)), "x.relu()": (x.relu(), ops.relu, (x,)),
        "x.clip(0, 1)": (x.clip(0, 1), ops.clip, (x, 0, 1)),
    }
    for text, (out, f, inputs) in cases.items():
        op, args, kw = out._ctx
        assert op is f.op, text
        assert all(a is b if isinstance(b, td.Tensor) else a == b for a, b in zip(args, inputs)), text
    assert cases["x.sum(0)"][0]._ctx[2] == {"axis": 0, "keepdims": False}
    np.testing.assert_allclose(to_numpy(cases["x.mean()"][0]), 1.5)
    with pytest.raises(TypeError, match="exponent must be a constant"):
        x ** y
    for out, want in [(x < y, [[True, True]]), (x <= 1.0, [[True, False]]), (x > 1.0, [[False, True]]),
                      (y >= x, [[True, True]])]:               # comparisons: plain boolean arrays
        assert not isinstance(out, td.Tensor) and out.dtype == bool
        np.testing.assert_array_equal(to_numpy(out), want)


def test_tensor_dtype_rules(xp):
    assert td.tensor(np.ones(3, dtype=np.float64)).dtype == np.float64
    assert td.tensor(np.ones(3, dtype=np.float32)).dtype == np.float32
    assert td.tensor([1.0, 2.0]).dtype == np.float32
    assert td.tensor([1, 2]).dtype == np.float32
    assert td.tensor(3).dtype == np.float32
    assert td.tensor(3.5).dtype == np.float32
    assert td.tensor(np.arange(3)).dtype == np.float32
    assert td.tensor(np.array([True, False])).dtype == np.float32
    assert td.tensor(xp.ones(2, dtype=np.float64)).dtype == np.float64
    t = td.tensor([[1, 2], [3, 4]], requires_grad=True)
    assert t.requires_grad and t.shape == (2, 2) and t.ndim == 2 and t.size == 4 and len(t) == 2
    assert isinstance(t.data, xp.ndarray)
    assert td.tensor(2.5).item() == 2.5
    with pytest.raises(ValueError, match="one-element"):
        t.item()
    with pytest.raises(TypeError, match="tensor: expected numbers or an array, got dict"):
        td.tensor({"a": 1})
    np.testing.assert_array_equal(t.numpy(), [[1, 2], [3, 4]])
    assert "requires_grad=True" in repr(t)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_only_floating_point_arrays_can_require_grad(xp, dtype):
    """As PyTorch: an integer or bool array with requires_grad=True is refused, naming its dtype
    (it used to become float32 silently: 2**24 + 1 turned into 16777216)."""
    a = xp.asarray([1, 0, 1], dtype=dtype)
    name = np.dtype(dtype).name
    message = rf"only floating-point tensors can require gradients; got {name} .*astype\(np\.float64\)"
    for make in (lambda: td.tensor(a, requires_grad=True), lambda: td.Tensor(a, requires_grad=True),
                 lambda: td.nn.Parameter(a), lambda: td.tensor(to_numpy(a)[0], requires_grad=True),
                 lambda: td.grad(lambda x: (x * x).sum())(a)):
        with pytest.raises(TypeError, match=message):
            make()
    plain = td.tensor(a)                                      # without requires_grad: float32, as before
    assert plain.dtype == np.float32 and not plain.requires_grad
    np.testing.assert_array_equal(to_numpy(plain), [1, 0, 1])
    assert td.tensor(a.astype(np.float64), requires_grad=True).dtype == np.float64


def test_integer_input_without_requires_grad_keeps_becoming_float32(xp):
    big = xp.asarray([2 ** 24 + 1])
    assert td.tensor(big).dtype == np.float32 and float(td.tensor(big).data[0]) == 2.0 ** 24
    assert td.tensor(big.astype(np.float64), requires_grad=True).data[0] == 2 ** 24 + 1
    t = td.tensor([[1, 2], [3, 4]], requires_grad=True)      # Python numbers are not an array: float32
    assert t.dtype == np.float32 and t.requires_grad


def test_grad_function_with_argnums(xp):
    def f(x, y, k=1.0):
        return (x * x * y).sum() * k

    x, y = xp.asarray([1.0, 2.0]), xp.asarray([3.0, 4.0])
    gx = td.grad(f)(x, y)
    assert isinstance(gx, xp.ndarray) and gx.dtype == np.float64
    np.testing.assert_allclose(to_numpy(gx), [6, 16])                    # 2xy
    gy = td.grad(f, argnums=1)(x, y, k=2.0)
    np.testing.assert_allclose(to_numpy(gy), [2, 8])                     # 2 x^2
    gx, gy = td.grad(f, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(to_numpy(gx), [6, 16])
    np.testing.assert_allclose(to_numpy(gy), [1, 4])
    (g,) = td.grad(f, argnums=(1,))(x, y)
    np.testing.assert_allclose(to_numpy(g), [1, 4])
    np.testing.assert_array_equal(to_numpy(x), [1, 2])                   # inputs untouched
    with td.no_grad():                                                   # works inside no_grad too
        np.testing.assert_allclose(to_numpy(td.grad(f)(x, y)), [6, 16])
    zero = td.grad(lambda x, y: (td.tensor(y) * 2).sum())(x, y)          # f does not depend on x
    np.testing.assert_array_equal(to_numpy(zero), [0, 0])
    with pytest.raises(ValueError, match="one-element"):
        td.grad(lambda x: x * 2)(x)


def test_results_and_grads_a_user_holds_are_never_overwritten_later(xp):
    """Whatever buffers the engine reuses, arrays it has handed out stay as they were."""
    rng = np.random.default_rng(3)
    w = leaf(xp, rng.standard_normal((4, 3)), np.float32)
    b = leaf(xp, rng.standard_normal(3), np.float32)

    def step(seed):
        x = td.tensor(xp.asarray(np.random.default_rng(seed).standard_normal((5, 4)), dtype=np.float32))
        h = ops.linear(x, w, b)
        outs = [h, x @ w, td.tanh(h), td.softplus(h), td.sigmoid(h), td.log_sigmoid(h), td.exp(h * 0.1),
                td.logsumexp(h, axis=1), td.bernoulli_log_prob(h, xp.ones((5, 3), dtype=np.float32))]
        loss = outs[0].sum()
        for o in outs[1:]:
            loss = loss + o.sum()
        w.zero_grad()
        b.zero_grad()
        loss.backward()
        return [o.data for o in outs] + [w.grad, b.grad]

    first = step(0)
    kept = [to_numpy(a).copy() for a in first]
    for seed in (1, 2):
        step(seed)
    for a, k in zip(first, kept):
        np.testing.assert_array_equal(to_numpy(a), k)
