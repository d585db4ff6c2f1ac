"""The VAE: hand-derived gradient = engine gradient, the same initialisation, shapes.

The IWAE bound against references (same draws, E[L_1] = ELBO, L_k -> log p(x) by quadrature) is in
test_vae_reference.py."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm.models.vae import by_hand as hand
from tinydgm.models.vae import VAE

ENGINE_NAMES = [f"{net}.layers.{i}.{w}" for net in ("encoder", "decoder") for i in range(3)
                for w in ("weight", "bias")]


def test_same_init_as_hand_params():
    model = VAE(rng=np.random.default_rng(3), dtype=np.float64)
    params = hand.init_params(np.random.default_rng(3), dtype=np.float64)
    for name, p in zip(ENGINE_NAMES, hand.PARAM_NAMES):
        np.testing.assert_array_equal(model.state_dict()[name], params[p])


@pytest.mark.parametrize("seed", [0, 1])
def test_hand_gradient_equals_engine(seed):
    """The slides' gradient (vae_by_hand) = the engine's, default architecture, float64, 1e-10."""
    rng = np.random.default_rng(seed)
    model = VAE(rng=np.random.default_rng(seed), dtype=np.float64)
    for p in model.parameters():                              # move away from the init a little
        p.data += 0.05 * rng.standard_normal(p.shape)
    x = (rng.random((7, 784)) < 0.3).astype(np.float64)
    loss = -td.mean(model.elbo(x, rng=np.random.default_rng(10 + seed)))
    loss.backward()
    params = {h: model.state_dict()[e] for e, h in zip(ENGINE_NAMES, hand.PARAM_NAMES)}
    eps = np.random.default_rng(10 + seed).standard_normal((7, 50))
    hand_loss, grads = hand.loss_and_grads(params, x, eps)
    assert abs(hand_loss - loss.item()) <= 1e-10 * abs(hand_loss)
    for (name, p), h in zip(model.named_parameters(), hand.PARAM_NAMES):
        err = np.abs(p.grad - grads[h]).max() / np.abs(grads[h]).max()
        assert err < 1e-10, f"{name} vs {h}: relative error {err:.2e}"


def test_hand_step_float32_and_reuses_buffers():
    params = hand.init_params(np.random.default_rng(0))
    x = (np.random.default_rng(1).random((20, 784)) < 0.3).astype(np.float32)
    eps = np.random.default_rng(2).standard_normal((20, 50), dtype=np.float32)
    work, grads = {}, {n: np.empty_like(p) for n, p in params.items()}
    opt = hand.adam(params)
    loss0 = hand.train_step(params, opt, x, eps, grads, work)
    ids = {k: id(v) for k, v in work.items() if isinstance(v, np.ndarray)}
    for _ in range(20):
        loss = hand.train_step(params, opt, x, eps, grads, work)
    assert all(v.dtype == np.float32 for v in params.values()) and loss < loss0
    assert {k: id(v) for k, v in work.items() if isinstance(v, np.ndarray)} == ids


def small_model(seed=0):
    return VAE(x_dim=12, hidden=(8,), z_dim=3, rng=np.random.default_rng(seed), dtype=np.float64)


def test_output_bias_at_the_data_logit_gives_the_pixel_marginals():
    model = VAE(x_dim=12, hidden=(8,), z_dim=3, rng=np.random.default_rng(0), dtype=np.float64, init="glorot")
    assert all(np.all(b == 0) for n, b in model.state_dict().items() if n.endswith("bias"))
    x = (np.random.default_rng(1).random((50, 12)) < np.linspace(0.05, 0.95, 12)).astype(np.float64)
    x[:, 0] = 0                                                          # a pixel never on: its mean clipped to 1e-3
    model.init_output_bias(x)
    model.decoder.layers[-1].weight.data[...] = 0                        # p(x|z) then no longer depends on z
    probs = model.decode(np.zeros((1, 3))).probs.data[0]
    np.testing.assert_allclose(probs, np.clip(x.mean(0), 1e-3, 1 - 1e-3), rtol=1e-12)


def test_encode_decode_shapes():
    model = small_model()
    x = (np.random.default_rng(0).random((5, 12)) < 0.5).astype(np.float64)
    q = model.encode(x)
    assert q.loc.shape == q.scale.shape == (5, 3)
    assert model.decode(q.loc).logits.shape == (5, 12)
    assert model.elbo(x).shape == (5,) and model.iwae_bound(x, 4).shape == (5,)
    assert model.sample(6, np.random.default_rng(0)).shape == (6, 12)
    r = model.reconstruct(x).data
    assert r.shape == (5, 12) and ((r > 0) & (r < 1)).all()
