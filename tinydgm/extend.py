"""How to add a primitive to the engine (apart from the user's `tinydgm` API, as in HIPS autograd):

    @primitive
    def cube(xp, x):                      # forward on backend arrays; xp is numpy or cupy
        return x ** 3
    defvjp(cube, lambda g, ans, x: g * 3 * x * x)        # d x^3/dx = 3 x^2

A rule gets the incoming gradient, the op's output and its inputs, and returns the gradient for its
input; an elementwise rule sums it back to the input's shape with `unbroadcast`.
"""
from tinydgm.ops import defvjp, defvjp_argnum, primitive, unbroadcast

__all__ = ["primitive", "defvjp", "defvjp_argnum", "unbroadcast"]
