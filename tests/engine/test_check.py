"""gradcheck: True on a right gradient, GradcheckError naming the input on a wrong one."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm.backend import to_numpy
from tinydgm.check import GradcheckError, gradcheck
from tinydgm.ops import defvjp, defvjp_argnum, primitive, unbroadcast


def _xp(a):
    return td.backend.get_array_module(a)


@primitive
def bad_square(xp, x):
    return x * x
defvjp(bad_square, lambda g, ans, x: g * x)                  # wrong on purpose: d x^2/dx = 2x


@primitive
def bad_scaled_product(xp, x, y):
    return x * y
defvjp(bad_scaled_product, lambda g, ans, x, y: unbroadcast(g * y, x.shape),          # right
                           lambda g, ans, x, y: unbroadcast(g * x * 1.001, y.shape))  # 0.1% too big


@primitive
def slightly_off(xp, x):
    return xp.sin(x)
defvjp(slightly_off, lambda g, ans, x: g * _xp(x).cos(x) * (1 + 1e-4))


@primitive
def bad_shape(xp, x):
    return 2 * x
defvjp(bad_shape, lambda g, ans, x: _xp(g).broadcast_to(2 * g, (4,) + g.shape))   # forgot to sum back


@primitive
def good_sum3(xp, *xs):
    return xs[0] + xs[1] + xs[2]
defvjp_argnum(good_sum3, lambda i, g, ans, *xs: unbroadcast(g, xs[i].shape))


def _inputs(xp, *shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [xp.asarray(rng.uniform(0.5, 1.5, s)) for s in shapes]


def test_true_on_a_right_gradient(xp):
    x, w = _inputs(xp, (4, 3), (3, 2))
    assert gradcheck(lambda x, w: td.tanh(x @ w).sum(axis=1), x, w) is True
    assert gradcheck(good_sum3, *_inputs(xp, (2, 3), (3,), (1, 3))) is True


def test_raises_naming_the_wrong_input(xp):
    x, y = _inputs(xp, (3,), (2, 3))
    with pytest.raises(GradcheckError, match=r"input 0 \(shape \(3,\)\)"):
        gradcheck(lambda x, y: bad_square(x) + y, x, y)
    with pytest.raises(GradcheckError, match=r"input 1 \(shape \(2, 3\)\)"):
        gradcheck(bad_scaled_product, x, y)
    assert issubclass(GradcheckError, AssertionError)


def test_a_gradient_of_the_wrong_shape_fails(xp):
    (x,) = _inputs(xp, (3,))
    with pytest.raises(GradcheckError, match=r"input 0 \(shape \(3,\)\) got a gradient of shape \(4, 3\)"):
        gradcheck(bad_shape, x)                       # <grad, v> alone would broadcast and pass


def test_names_the_worst_input(xp):
    x, y = _inputs(xp, (3,), (3,))
    with pytest.raises(GradcheckError, match="input 0") as info:     # 100% off beats 0.1% off
        gradcheck(lambda x, y: bad_square(x) + bad_scaled_product(x, y), x, y)
    assert "central differences" in str(info.value)


def test_tolerances(xp):
    (x,) = _inputs(xp, (5,))
    with pytest.raises(GradcheckError, match=r"input 0 \(shape \(5,\)\): engine's directional derivative "
                                             r".* vs central differences .*\(\|diff\| .*, rtol 1e-05, atol 1e-08\)"):
        gradcheck(slightly_off, x)                          # 1e-4 relative error > rtol 1e-5
    assert gradcheck(slightly_off, x, rtol=1e-3)


def test_inputs_are_not_changed_and_the_check_runs_in_float64(xp):
    x = xp.asarray([0.5, 1.0, 2.0], dtype=np.float32)
    t = td.tensor(x.copy(), requires_grad=True)
    seen = []

    def f(a):
        seen.append(a.dtype)
        return td.exp(a)
    assert gradcheck(f, x) and gradcheck(f, t)
    assert set(seen) == {np.dtype(np.float64)}
    np.testing.assert_array_equal(to_numpy(x), [0.5, 1.0, 2.0])
    assert x.dtype == np.float32 and t.grad is None


def test_f_must_return_a_tensor(xp):
    with pytest.raises(TypeError, match="must return a Tensor"):
        gradcheck(lambda x: 1.0, xp.ones(2))
