"""Building blocks: Module's parameter discovery and state dicts, Linear, MLP; SGD, Adam, clipping."""
import math
import re

import numpy as np
import pytest

import tinydgm as td
from tinydgm.backend import to_numpy
from tinydgm.check import gradcheck
from tinydgm.errors import CheckpointError
from tinydgm.nn import MLP, Linear, Module, Parameter
from tinydgm.optim import SGD, Adam, clip_grad_norm, learning_rate


class Net(Module):
    """Parameters in an attribute, a list, a dict, a tuple and a nested module."""

    def __init__(self, xp):
        self.scale = Parameter(xp.ones(2))
        self.blocks = [Linear(2, 3, rng=0), Linear(3, 2, rng=1)]
        self.heads = {"mu": Linear(2, 1, rng=2), "extra": Parameter(xp.zeros((1, 1)))}
        self.pair = (Parameter(xp.ones(1)), 7, "not a parameter")
        self.not_a_param = td.tensor(xp.ones(3), requires_grad=True)

    def forward(self, x):
        h = x * self.scale
        for b in self.blocks:
            h = td.tanh(b(h))
        return self.heads["mu"](h) + self.heads["extra"] + self.pair[0]


# =============================================================================================
# Module
# =============================================================================================

def test_module_finds_parameters_in_attributes_lists_dicts(xp):
    net = Net(xp)
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "blocks.0.weight", "blocks.0.bias", "blocks.1.weight", "blocks.1.bias",
                     "heads.mu.weight", "heads.mu.bias", "heads.extra", "pair.0"]
    assert [id(p) for p in net.parameters()] == [id(p) for _, p in net.named_parameters()]
    assert all(isinstance(p, Parameter) and p.requires_grad for p in net.parameters())


def test_shared_parameters_and_cycles_are_walked_once(xp):
    net = Net(xp)
    net.tied = net.blocks[0]                  # the same layer twice
    net.blocks[1].owner = net                 # a reference back to the parent
    assert len(net.parameters()) == 9


def test_module_zero_grad_and_call(xp):
    net = Net(xp)
    out = net(td.tensor(xp.ones((4, 2))))
    assert out.shape == (4, 1)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    with pytest.raises(NotImplementedError, match="Module must define forward"):
        Module()(1)


def test_state_dict_round_trip(xp):
    a, b = MLP([3, 4, 2], rng=0), MLP([3, 4, 2], rng=1)
    x = td.tensor(xp.asarray(np.random.default_rng(0).standard_normal((5, 3)), dtype=np.float32))
    state = a.state_dict()
    assert all(type(v) is np.ndarray for v in state.values())
    weights_before = [p.data for p in b.parameters()]
    b.load_state_dict(state)
    assert [p.data for p in b.parameters()] == weights_before          # loaded in place, same arrays
    np.testing.assert_array_equal(to_numpy(a(x)), to_numpy(b(x)))
    state["layers.0.weight"][...] = 0                                  # the state is a copy
    assert np.all(to_numpy(a.layers[0].weight) != 0)


def test_load_state_dict_errors_list_what_differs(xp):
    m = MLP([3, 4, 2], rng=0)
    state = m.state_dict()
    del state["layers.1.bias"]
    state["layers.9.weight"] = np.ones(2)
    state["layers.0.weight"] = np.ones((4, 3))
    with pytest.raises(CheckpointError) as e:
        m.load_state_dict(state)
    message = str(e.value)
    assert "\n" not in message
    for part in ["missing layers.1.bias", "unexpected layers.9.weight",
                 "layers.0.weight: checkpoint (4, 3) vs model (3, 4)"]:
        assert part in message, message
    assert isinstance(e.value, ValueError)


def test_load_state_dict_of_another_size_names_the_shapes(xp):
    big, small = MLP([784, 200, 10], rng=0), MLP([784, 16, 10], rng=0)
    with pytest.raises(CheckpointError, match=r"layers\.0\.weight: checkpoint \(784, 200\) vs model "
                                              r"\(784, 16\)"):
        small.load_state_dict(big.state_dict())
    before = [to_numpy(p).copy() for p in small.parameters()]
    with pytest.raises(CheckpointError):                                 # nothing is half loaded
        small.load_state_dict({**MLP([784, 16, 10], rng=1).state_dict(), "layers.1.bias": np.ones(3)})
    assert all(np.array_equal(a, to_numpy(p)) for a, p in zip(before, small.parameters()))


# =============================================================================================
# Linear and MLP
# =============================================================================================

def test_linear_init_bounds_dtype_and_seed(xp):
    layer = Linear(100, 50, rng=0)
    w, b = to_numpy(layer.weight), to_numpy(layer.bias)
    bound = 1 / math.sqrt(100)
    assert w.shape == (100, 50) and b.shape == (50,)
    assert layer.weight.dtype == np.float32 and isinstance(layer.weight.data, xp.ndarray)
    assert np.all(np.abs(w) <= bound) and np.all(np.abs(b) <= bound)
    assert w.max() > 0.95 * bound and w.min() < -0.95 * bound          # uniform over the whole range
    assert abs(w.mean()) < 0.05 * bound
    np.testing.assert_array_equal(w, to_numpy(Linear(100, 50, rng=0).weight))
    assert not np.array_equal(w, to_numpy(Linear(100, 50, rng=1).weight))
    assert Linear(3, 2, dtype=np.float64).weight.dtype == np.float64
    assert Linear(3, 2, bias=False).bias is None and len(Linear(3, 2, bias=False).parameters()) == 1


def test_linear_glorot_init_bounds_and_zero_bias(xp):
    layer = Linear(300, 100, rng=0, init="glorot")
    w, b = to_numpy(layer.weight), to_numpy(layer.bias)
    bound = math.sqrt(6 / (300 + 100))                                  # Glorot & Bengio 2010, eq. 16
    assert np.all(np.abs(w) <= bound) and w.max() > 0.95 * bound and w.min() < -0.95 * bound
    assert np.all(b == 0)
    mlp = MLP([20, 10, 4], rng=0, init="glorot")
    assert all(np.all(to_numpy(layer.bias) == 0) for layer in mlp.layers)
    assert np.abs(to_numpy(mlp.layers[1].weight)).max() <= math.sqrt(6 / 14)
    with pytest.raises(ValueError, match="init must be one of"):
        Linear(3, 2, init="xavier")


def test_linear_forward_and_gradient(xp):
    layer = Linear(3, 2, rng=0, dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((4, 3))
    out = layer(td.tensor(xp.asarray(x)))
    np.testing.assert_allclose(to_numpy(out), x @ to_numpy(layer.weight) + to_numpy(layer.bias), rtol=1e-12)
    assert gradcheck(lambda x: layer(x), xp.asarray(x))
    nobias = Linear(3, 2, bias=False, rng=0, dtype=np.float64)
    np.testing.assert_allclose(to_numpy(nobias(td.tensor(xp.asarray(x)))), x @ to_numpy(nobias.weight), rtol=1e-12)
    layer.zero_grad()                      # gradcheck's backward also reached the layer's parameters
    out.sum().backward()
    np.testing.assert_allclose(to_numpy(layer.weight.grad), x.T @ np.ones((4, 2)), rtol=1e-12)
    np.testing.assert_allclose(to_numpy(layer.bias.grad), [4, 4])


@pytest.mark.parametrize("activation, f", [("tanh", np.tanh), ("relu", lambda h: np.maximum(h, 0)),
                                           ("sigmoid", lambda h: 1 / (1 + np.exp(-h)))])
def test_mlp(xp, activation, f):
    m = MLP([4, 5, 3, 2], activation=activation, rng=0, dtype=np.float64)
    assert len(m.layers) == 3 and len(m.parameters()) == 6
    x = np.random.default_rng(2).standard_normal((6, 4))
    h = x
    for i, layer in enumerate(m.layers):
        h = h @ to_numpy(layer.weight) + to_numpy(layer.bias)
        if i < 2:
            h = f(h)
    np.testing.assert_allclose(to_numpy(m(td.tensor(xp.asarray(x)))), h, rtol=1e-12)
    np.testing.assert_array_equal(to_numpy(MLP([4, 5, 3, 2], rng=0).layers[1].weight),
                                  to_numpy(MLP([4, 5, 3, 2], rng=0).layers[1].weight))
    with pytest.raises(ValueError, match="activation must be one of"):
        MLP([2, 2], activation="gelu")
    with pytest.raises(ValueError, match="sizes needs"):
        MLP([2])


# =============================================================================================
# Optimisers
# =============================================================================================

def _grads(step, shapes):
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal(s) for s in shapes]


def _params(xp, dtype=np.float64):
    rng = np.random.default_rng(7)
    return [Parameter(xp.asarray(rng.standard_normal(s), dtype=dtype)) for s in [(3, 2), (2,)]]


def _set_grads(xp, params, step):
    for p, g in zip(params, _grads(step, [p.shape for p in params])):
        p.grad = xp.asarray(g, dtype=p.dtype)


def test_adam_matches_a_numpy_reference_and_updates_in_place(xp):
    params = _params(xp)
    arrays = [p.data for p in params]
    ref = [to_numpy(p).copy() for p in params]
    lr, (b1, b2), eps = 0.01, (0.8, 0.99), 1e-6
    opt = Adam(params, lr=lr, betas=(b1, b2), eps=eps)
    m = [np.zeros_like(r) for r in ref]
    v = [np.zeros_like(r) for r in ref]
    for t in range(1, 6):
        _set_grads(xp, params, t)
        opt.step()
        for i, g in enumerate(_grads(t, [r.shape for r in ref])):     # Kingma & Ba, Algorithm 1
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat, v_hat = m[i] / (1 - b1 ** t), v[i] / (1 - b2 ** t)
            ref[i] = ref[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
        for p, r in zip(params, ref):
            np.testing.assert_allclose(to_numpy(p), r, rtol=1e-10, atol=1e-12)
    assert all(p.data is a for p, a in zip(params, arrays))              # the same arrays, updated in place


def test_adam_float32_stays_float32_and_skips_missing_grads(xp):
    params = _params(xp, np.float32)
    before = [to_numpy(p).copy() for p in params]
    opt = Adam(params, lr=0.1)
    params[0].grad = xp.ones((3, 2), dtype=np.float32)
    opt.step()
    assert all(p.dtype == np.float32 for p in params)
    np.testing.assert_allclose(to_numpy(params[0]), before[0] - 0.1, rtol=1e-5)   # first step moves by lr
    np.testing.assert_array_equal(to_numpy(params[1]), before[1])
    opt.zero_grad()
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_matches_a_numpy_reference(xp, momentum):
    params = _params(xp)
    arrays = [p.data for p in params]
    ref = [to_numpy(p).copy() for p in params]
    vel = [np.zeros_like(r) for r in ref]
    opt = SGD(params, lr=0.1, momentum=momentum)
    for t in range(1, 5):
        _set_grads(xp, params, t)
        opt.step()
        for i, g in enumerate(_grads(t, [r.shape for r in ref])):     # v <- mu v + g;  p <- p - lr v
            vel[i] = momentum * vel[i] + g
            ref[i] = ref[i] - 0.1 * vel[i]
        for p, r in zip(params, ref):
            np.testing.assert_allclose(to_numpy(p), r, rtol=1e-12, atol=1e-14)
    assert all(p.data is a for p, a in zip(params, arrays))


def test_empty_parameter_list():
    with pytest.raises(ValueError, match="empty parameter list"):
        Adam([])


def test_clip_grad_norm(xp):
    params = _params(xp)
    params[0].grad = xp.full((3, 2), 2.0)
    params[1].grad = xp.full((2,), 2.0)
    extra = Parameter(xp.ones(4))                                  # no grad: ignored
    norm = clip_grad_norm(params + [extra], max_norm=1.0)
    assert norm == pytest.approx(math.sqrt(8 * 4))
    total = math.sqrt(sum(float((to_numpy(p.grad) ** 2).sum()) for p in params))
    assert total == pytest.approx(1.0)
    np.testing.assert_allclose(to_numpy(params[1].grad), 2.0 / math.sqrt(32))
    assert extra.grad is None
    assert clip_grad_norm(params, max_norm=5.0) == pytest.approx(1.0)            # under the bound: unchanged
    assert math.sqrt(sum(float((to_numpy(p.grad) ** 2).sum()) for p in params)) == pytest.approx(1.0)
    p32 = Parameter(xp.ones(3, dtype=np.float32))
    p32.grad = xp.full(3, 10.0, dtype=np.float32)
    clip_grad_norm([p32], 1.0)
    assert p32.grad.dtype == np.float32


@pytest.mark.parametrize("make", [lambda ps: Adam(ps, lr=0.05), lambda ps: SGD(ps, lr=0.05, momentum=0.9)],
                         ids=["adam", "sgd-momentum"])
def test_optimizer_state_dict_round_trip_gives_identical_next_steps(xp, make):
    def steps(model, opt, ts):
        for t in ts:
            x = td.tensor(xp.asarray(np.random.default_rng(t).standard_normal((8, 3)), dtype=np.float32))
            opt.zero_grad()
            (model(x) ** 2).mean().backward()
            opt.step()

    model = MLP([3, 4, 1], rng=0)
    opt = make(model.parameters())
    steps(model, opt, range(3))
    model_state, opt_state = model.state_dict(), opt.state_dict()
    steps(model, opt, range(3, 6))

    resumed = MLP([3, 4, 1], rng=99)
    resumed.load_state_dict(model_state)
    opt2 = make(resumed.parameters())
    opt2.load_state_dict(opt_state)
    steps(resumed, opt2, range(3, 6))
    for (name, p), q in zip(model.named_parameters(), resumed.parameters()):
        np.testing.assert_array_equal(to_numpy(p), to_numpy(q), err_msg=name)



@pytest.mark.parametrize("make", [lambda ps: Adam(ps, lr=0.05), lambda ps: SGD(ps, lr=0.05, momentum=0.9)],
                         ids=["adam", "sgd-momentum"])
def test_optimizer_load_state_dict_errors_list_what_differs(xp, make):
    model = MLP([3, 4, 1], rng=0)
    opt = make(model.parameters())
    state = opt.state_dict()
    key = next(k for k in state if k != "lr" and state[k].ndim == 2)
    bad = {**state, key: np.ones((7, 7))}
    with pytest.raises(CheckpointError, match=rf"{re.escape(key)}: checkpoint \(7, 7\) vs model \(3, 4\)"):
        opt.load_state_dict(bad)
    with pytest.raises(CheckpointError, match="missing lr"):           # was a raw KeyError
        opt.load_state_dict({k: v for k, v in state.items() if k != "lr"})
    other = SGD(model.parameters()) if isinstance(opt, Adam) else Adam(model.parameters())
    with pytest.raises(CheckpointError, match=r"missing (m|velocity)\.0.*unexpected (m|velocity)\.0"):
        other.load_state_dict(state)
    before = [to_numpy(b).copy() for bufs in opt._buffers().values() for b in bufs]
    last = list(state)[-1]
    with pytest.raises(CheckpointError):                                 # nothing is half loaded
        opt.load_state_dict({**{k: v + 1 for k, v in state.items()}, last: np.ones((7, 7))})
    assert opt.lr == 0.05
    assert all(np.array_equal(a, to_numpy(b)) for a, b in
               zip(before, [b for bufs in opt._buffers().values() for b in bufs]))


def test_a_small_regression_trains(xp):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 2))
    y = np.sin(x[:, :1]) + 0.5 * x[:, 1:]
    X, Y = td.tensor(xp.asarray(x, dtype=np.float32)), td.tensor(xp.asarray(y, dtype=np.float32))
    model = MLP([2, 16, 1], rng=0)
    opt = Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = ((model(X) - Y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]


def test_schedules():
    assert learning_rate("constant", 1e-3, 50, 0.9) == 1e-3
    assert learning_rate("anneal", 1e-3, 0, 0.2) == 1e-3
    assert learning_rate("anneal", 1e-3, 0, 0.999) == pytest.approx(1e-5, rel=0.02)
    # Burda et al. 2016, App. D: 3^i epochs at 1e-3 * 10^(-i/7)
    assert learning_rate("burda", 1e-3, 0, 0) == 1e-3
    assert learning_rate("burda", 1e-3, 1, 0) == learning_rate("burda", 1e-3, 3, 0) == pytest.approx(1e-3 * 10 ** (-1 / 7))
    assert learning_rate("burda", 1e-3, 4, 0) == pytest.approx(1e-3 * 10 ** (-2 / 7))
    assert learning_rate("burda", 1e-3, 3279, 0) == pytest.approx(1e-4)
