"""tinydgm.numerics, the stable array formulas: float64 references over the whole range (|x| up to 1000),
the input's dtype and shape kept, inputs left alone, an array even for 0-d input where the formula says so;
on both backends."""
import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from tinydgm import numerics
from tinydgm.backend import to_numpy

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
wide = st.floats(-1000, 1000, allow_nan=False, allow_infinity=False)

REFERENCES = {   # name: (the formula on (xp, x), its float64 reference on x)
    "sigmoid": (numerics.sigmoid, scipy.special.expit),
    "softplus": (numerics.softplus, lambda x: np.logaddexp(0, x)),
    "log_sigmoid": (numerics.log_sigmoid, lambda x: -np.logaddexp(0, -x)),
    "bernoulli_log_prob, x = 1": (lambda xp, l: numerics.bernoulli_log_prob(xp, l, 1), lambda l: -np.logaddexp(0, -l)),
    "bernoulli_log_prob, x = 0": (lambda xp, l: numerics.bernoulli_log_prob(xp, l, 0), lambda l: -np.logaddexp(0, l)),
}
ARRAY_FOR_0D = {"sigmoid", "softplus", "log_sigmoid"}     # "an array even for 0-d x (NumPy returns a scalar there)"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(REFERENCES))
@settings(max_examples=30)
@given(x=hnp.arrays(np.float64, shapes, elements=wide))
def test_elementwise_formulas_match_float64_references(xp, name, dtype, x):
    f, ref = REFERENCES[name]
    a = xp.asarray(x.astype(dtype))
    before = to_numpy(a).copy()
    out = f(xp, a)
    assert out.dtype == dtype and out.shape == x.shape
    assert isinstance(out, xp.ndarray) or name not in ARRAY_FOR_0D
    np.testing.assert_array_equal(to_numpy(a), before)
    exact = ref(x.astype(dtype).astype(np.float64))
    eps, err = np.finfo(dtype).eps, np.abs(to_numpy(out) - exact)
    assert np.all(np.isfinite(to_numpy(out)))
    # within a few rounding errors of the result and of x (x l − softplus(l) cancels up to |l| ε)
    assert np.all(err <= 4 * eps * (np.abs(exact) + np.maximum(1, np.abs(x)))), (err.max(), x)
    if name == "sigmoid":                                    # "absolute error < eps"
        assert np.all(err < eps), err.max()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=30)
@given(data=st.data())
def test_log_mean_exp_matches_logsumexp_minus_log_n(xp, dtype, data):
    x = data.draw(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), elements=wide),
                  label="x")
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1), label="axis")
    a = xp.asarray(x.astype(dtype))
    before = to_numpy(a).copy()
    out = numerics.log_mean_exp(xp, a, axis=axis)
    assert out.dtype == dtype and out.shape == x.shape[:axis % x.ndim] + x.shape[axis % x.ndim + 1:]
    np.testing.assert_array_equal(to_numpy(a), before)
    exact = scipy.special.logsumexp(x.astype(dtype).astype(np.float64), axis=axis) - np.log(x.shape[axis])
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(to_numpy(out), exact, rtol=8 * eps, atol=8 * eps * max(1.0, np.abs(x).max()))  # log of a sum near 1: absolute
