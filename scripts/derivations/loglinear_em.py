"""Log-linear EM (Berg-Kirkpatrick et al. 2010): the gradients by hand, by the engine, by differences.

    p(x | z, w) = exp(wᵀf(x, z)) / Σ_x' exp(wᵀf(x', z))
    M-step:  ∇ℓ(w) = Σ_{x,z} e(x, z) [f(x, z) − E_p(·|z) f(·, z)] − 2κw   observed − expected
    E-step as a gradient:  ∇_w log Σ_x exp(wᵀf(x, z)) = E[f(X, z) | z, w]
    HMM:  ∂ log p(x) / ∂ log A_ij = Σ_t p(z_t = i, z_t+1 = j | x)   (forward-backward = backprop)

Run:  python scripts/derivations/loglinear_em.py
"""
import numpy as np
import scipy.sparse as sp

import tinydgm as td
from tinydgm.models.loglinear import by_hand, model
from tinydgm.models.loglinear import hmm as H
from tinydgm.models.loglinear import mixture as ll
from tinydgm.models.loglinear.features import conjoin

rng = np.random.default_rng(0)
n_x, n_z, n_feat = 6, 3, 5
g = sp.csr_matrix((rng.random((n_x, n_feat)) < 0.5).astype(float) + np.eye(n_x, n_feat))
F = conjoin(g, n_z)                                   # f(x, z) = g(x) ⊗ e_z, rows (x, z)
w, counts, kappa = rng.normal(size=F.shape[1]), rng.gamma(1.0, size=(n_x, n_z)), 0.1


def row(name, by_hand, other, what="engine"):
    print(f"  {name:<46} max |hand − {what}| = {np.abs(by_hand - other).max():.2e}")


print("M-step gradient: observed minus expected features")
_, grad = by_hand.m_step_objective(w, F, counts, kappa)
row("∇ℓ(w)", -grad, td.grad(lambda w: model.expected_complete_log_likelihood(w, F.toarray(), counts, kappa))(w))

print("E-step as a gradient")
engine = np.stack([td.grad(lambda w: model.log_partition(w, F.toarray(), n_z)[z])(w) for z in range(n_z)])
row("E[f(X, z) | z] vs ∇ log Z_z", by_hand.expected_features(w, F, n_z), engine)

hmm = model.random_hmm(sp.identity(n_x * n_z, format="csr"), n_z, rng, scale=1.0)
x = rng.integers(0, n_x, 7)
counts_hmm = H.e_step(hmm, [H.bucket([x], [0], n_x)])
g_start, g_trans, g_emit = td.grad(model.hmm_log_likelihood, argnums=(0, 1, 2))(
    np.log(hmm.start), np.log(hmm.trans), hmm.log_emission(), x)
row("HMM transition counts vs ∂ log p(x)/∂ log A", counts_hmm.trans, g_trans)
row("HMM emission counts vs ∂ log p(x)/∂ log B", counts_hmm.emit, g_emit)

print("direct gradient (Fisher identity), directional central difference")
rich = model.random_hmm(F, n_z, rng, scale=1.0)
data = [H.bucket([x, x[:3]], [0, 1], n_x)]
theta, u, eps = H.pack(rich), rng.normal(size=H.pack(rich).shape), 1e-6
value, grad = H.direct_objective(theta, F, n_z, data, kappa)
numeric = (H.direct_objective(theta + eps * u, F, n_z, data, kappa)[0] -
           H.direct_objective(theta - eps * u, F, n_z, data, kappa)[0]) / (2 * eps)
row("⟨∇, u⟩", grad @ u, numeric, "differences")

print("EM on a mixture of log-linear categoricals: log p(x) never decreases")
mixture, data_x = model.random_mixture(F, n_z, rng), rng.integers(0, n_x, 200)
mixture, history = ll.em(mixture, data_x, 10)
print("  " + "  ".join(f"{h:.3f}" for h in history))
