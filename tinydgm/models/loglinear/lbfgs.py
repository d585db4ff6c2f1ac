"""L-BFGS in NumPy (Nocedal & Wright 2006, Algorithms 7.4 and 7.5), with a backtracking line search.

The M-step uses scipy.optimize's L-BFGS-B. The direct gradient runs for hundreds of iterations and
stops every few of them to log, score and checkpoint; scipy's minimize cannot pause and go on with
its curvature memory, so `LBFGS` keeps its memory between calls to `run`, and `state()` /
`load_state` carry it through a checkpoint: a resumed run takes the same steps, bit for bit.
"""
from collections import deque

import numpy as np


class LBFGS:
    """Minimise fun(x) -> (value, gradient) from x0, keeping the last m curvature pairs (s, y)."""

    def __init__(self, fun, x0, m=10):
        self.fun, self.x, self.m = fun, np.array(x0, dtype=np.float64), m
        self.value, self.grad = fun(self.x)
        self.pairs = deque(maxlen=m)
        self.evaluations = 1

    # ---------------------------------------------------------------- through a checkpoint

    def state(self):
        """Everything `run` needs to go on (copies): x, f(x), ∇f(x), the (s, y, ρ) memory, counters."""
        n = len(self.x)
        return {"x": self.x.copy(), "value": np.array(self.value), "grad": np.array(self.grad),
                "s": np.array([s for s, _, _ in self.pairs]).reshape(-1, n),
                "y": np.array([y for _, y, _ in self.pairs]).reshape(-1, n),
                "rho": np.array([rho for _, _, rho in self.pairs], dtype=np.float64),
                "m": self.m, "evaluations": self.evaluations}

    def load_state(self, state):
        """Go on from `state()` (e.g. read back by checkpoint.load_state) instead of the current point."""
        self.m = int(state["m"])
        self.x = np.array(state["x"])
        self.value = np.asarray(state["value"])[()]                  # a 0-d array back to a scalar
        self.grad = np.array(state["grad"])
        self.pairs = deque(((s.copy(), y.copy(), rho)
                            for s, y, rho in zip(state["s"], state["y"], state["rho"])), maxlen=self.m)
        self.evaluations = int(state["evaluations"])

    @classmethod
    def from_state(cls, fun, state):
        """An LBFGS of `fun` that goes on from `state()`, without evaluating fun again."""
        opt = cls.__new__(cls)
        opt.fun = fun
        opt.load_state(state)
        return opt

    def direction(self):
        """−H∇f by the two-loop recursion (Algorithm 7.4), H₀ = (sᵀy / yᵀy) I."""
        q, alphas = -self.grad, []
        for s, y, rho in reversed(self.pairs):
            a = rho * (s @ q)
            q = q - a * y
            alphas.append(a)
        if self.pairs:
            s, y, _ = self.pairs[-1]
            q = q * (s @ y) / (y @ y)
        else:
            q = q / max(1.0, np.linalg.norm(q))                      # first step: at most unit length
        for (s, y, rho), a in zip(self.pairs, reversed(alphas)):
            q = q + s * (a - rho * (y @ q))
        return q

    def step(self, c1=1e-4, shrink=0.5, tries=30):
        """One iteration: backtrack from step 1 until f(x + t d) <= f(x) + c1 t ∇fᵀd (Armijo)."""
        d = self.direction()
        slope = self.grad @ d
        if slope >= 0:                                                # not a descent direction: reset
            self.pairs.clear()
            d, slope = -self.grad, -(self.grad @ self.grad)
        t = 1.0
        for _ in range(tries):
            x = self.x + t * d
            value, grad = self.fun(x)
            self.evaluations += 1
            if np.isfinite(value) and value <= self.value + c1 * t * slope:
                break
            t *= shrink
        else:
            return False                                              # no decrease found
        s, y = x - self.x, grad - self.grad
        if s @ y > 1e-10 * (y @ y):                                   # keep H positive definite
            self.pairs.append((s, y, 1.0 / (s @ y)))
        self.x, self.value, self.grad = x, value, grad
        return True

    def run(self, iterations, gtol=1e-6):
        """Up to `iterations` steps; stops early when ‖∇f‖∞ < gtol or no step decreases f."""
        for _ in range(iterations):
            if np.abs(self.grad).max() < gtol or not self.step():
                break
        return self.x, self.value


def minimize(fun, x0, iterations, m=10):
    """argmin_x fun(x), fun returning (value, gradient): (x, value)."""
    return LBFGS(fun, x0, m).run(iterations)
