"""Gradient checks: the engine's gradient against central differences, in float64."""
import numpy

from tinydgm import backend
from tinydgm.tensor import Tensor, no_grad, unwrap


class GradcheckError(AssertionError):
    """The engine's gradient disagrees with finite differences."""


def gradcheck(f, *inputs, eps=1e-6, rtol=1e-5, atol=1e-8, seed=0):
    """True if f's engine gradient matches central differences along random directions.

    For a random cotangent u of f's output and a random direction v_i of each input i, compares
    <J_i^T u, v_i> from one backward pass with (<u, f(x_i + eps v_i)> - <u, f(x_i - eps v_i)>) / 2 eps.
    Inputs are copied to float64 and never changed.  Raises GradcheckError naming the worst input.
    """
    xp = backend.get_array_module(*[unwrap(x) for x in inputs])
    rng = numpy.random.default_rng(seed)
    xs = [xp.array(unwrap(x), dtype=numpy.float64) for x in inputs]
    args = [Tensor(x, requires_grad=True) for x in xs]
    out = f(*args)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: f must return a Tensor, got {type(out).__name__}")
    u = xp.asarray(rng.standard_normal(out.shape))
    out.backward(u)

    worst = None
    for i, x in enumerate(xs):
        v = xp.asarray(rng.standard_normal(x.shape))
        if args[i].grad is not None and args[i].grad.shape != x.shape:     # else grad * v would broadcast
            raise GradcheckError(f"gradcheck: input {i} (shape {x.shape}) got a gradient of shape "
                                 f"{args[i].grad.shape}")
        engine = float((args[i].grad * v).sum()) if args[i].grad is not None else 0.0
        with no_grad():
            def at(step):
                moved = [Tensor(x + step * v if j == i else xs[j]) for j in range(len(xs))]
                return float((f(*moved).data * u).sum())
            numeric = (at(eps) - at(-eps)) / (2 * eps)
        err = abs(engine - numeric)
        excess = err - (atol + rtol * abs(numeric))
        if excess > 0 and (worst is None or excess > worst[0]):
            worst = (excess, i, engine, numeric)
    if worst is not None:
        _, i, engine, numeric = worst
        raise GradcheckError(f"gradcheck: input {i} (shape {xs[i].shape}): engine's directional derivative "
                             f"{engine:.10g} vs central differences {numeric:.10g} "
                             f"(|diff| {abs(engine - numeric):.3g}, rtol {rtol}, atol {atol})")
    return True
