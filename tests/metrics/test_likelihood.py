"""tinydgm.metrics.likelihood: iw_nll's exact chunking and its refusals, active units."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm.metrics import active_units, iw_nll
from tinydgm.models.vae import VAE


def small_model(seed=0):
    return VAE(x_dim=12, hidden=(8,), z_dim=3, rng=np.random.default_rng(seed), dtype=np.float64)


def test_iw_nll_chunks_exactly():
    """k samples drawn in chunks give the same L_k as one draw of k (same random stream)."""
    model = small_model(2)
    x = (np.random.default_rng(0).random((9, 12)) < 0.5).astype(np.float64)
    with td.no_grad():
        whole = -model.iwae_bound(x, 12, rng=np.random.default_rng(5)).data.mean()
    chunked = iw_nll(model, td.tensor(x), 12, rng=np.random.default_rng(5), chunk=4,
                     batch_size=9, progress=False)
    assert abs(whole - chunked) < 1e-9


@pytest.mark.parametrize("k, chunk", [(10, 3), (4, 8), (0, 1)])
def test_iw_nll_refuses_a_chunk_that_does_not_divide_k(k, chunk):
    """With chunk 3, k = 10 would silently use 9 samples and still be labelled L_10."""
    x = np.zeros((2, 12))
    with pytest.raises(ValueError, match=r"chunk \(\d+\) must be a positive divisor of k"):
        iw_nll(small_model(), x, k, chunk=chunk, progress=False)


def test_active_units():
    mu = np.zeros((100, 4))
    mu[:, 1] = np.random.default_rng(0).standard_normal(100)
    mu[:, 3] = 0.05 * np.random.default_rng(1).standard_normal(100)     # variance 0.0025 < 0.01
    assert active_units(mu) == 1
