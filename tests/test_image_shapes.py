"""Training on images that are not 28 x 28 grey digits: random 8 x 8 and 8 x 12 RGB images
(rows channel after channel, Config.image_shape), through both models end to end.

The mixture (seed) model and model gmm's dense networks take any row length; the warps, the
strong view and the conv networks read Config.shape. Each run is a couple of epochs of tiny
networks: the test is that every path runs and stays finite, and (float64) that the fast
engine and the readable reference train the same weights.
"""
from __future__ import annotations

import numpy as np
import pytest

from npvae.core.config import Config
from npvae.training.loop import fit

TINY = dict(hidden_dims=(8,), decoder_dims=(8,), latent_dim=3, epochs=2, batch_size=16)


def images(H, W, C, n=48, classes=3, seed=0):
    """n random images (n, C H W) in [0, 1], labels 0..classes-1, 9 of them visible, and a
    split of 40 training and 8 validation rows."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, C * H * W)).astype(np.float32)
    y = np.where(np.arange(n) < 9, np.arange(n) % classes, -1)
    return x, y, np.arange(40), np.arange(40, n)


def check(result, cfg):
    assert result.epochs_completed == cfg.epochs and not result.diverged
    assert np.isfinite(result.history["train_loss"]).all()
    assert np.isfinite(result.params.flat).all()


def test_mixture_model_dense_on_rgb():
    x, y, tr, va = images(8, 8, 3)
    cfg = Config(input_dim=192, image_shape=(8, 8, 3), K=3, num_classes=3, embed_dim=2,
                 pathway_dim=4, classifier_dims=(8,), **TINY).validate()
    check(fit(cfg, x, y, tr, va, progress=False), cfg)


def test_gmm_dense_with_preset_warps_and_consistency_on_rgb():
    """The ssl-cons preset's warps, strong view and consistency, sized for side 28 and scaled
    to side 8 (aug_side 28)."""
    x, y, tr, va = images(8, 8, 3)
    cfg = Config(model="gmm", input_dim=192, image_shape=(8, 8, 3), K=3, num_classes=3,
                 labeled_per_batch=4, aug_rotate=15.0, aug_scale=0.1, aug_shift=2.0,
                 w_cons=30.0, cons_threshold=0.0, strong_rotate=30.0, strong_scale=0.2,
                 strong_shift=4.0, strong_cutout=12, aug_side=28, **TINY).validate()
    assert cfg.cutout_pixels() == 3
    check(fit(cfg, x, y, tr, va, progress=False), cfg)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gmm_conv_encoder_and_decoder_on_rgb_not_square(dtype):
    """8 x 12 RGB images through conv layers of 4 and 8 channels (8 x 12 -> 4 x 6 -> 2 x 3),
    with warps and consistency; in float64 the fast engine trains the reference's weights."""
    x, y, tr, va = images(8, 12, 3)
    x = x.astype(dtype)
    cfg = Config(model="gmm", input_dim=288, image_shape=(8, 12, 3), K=3, num_classes=3,
                 encoder="conv", decoder="conv", conv_channels=(4, 8), labeled_per_batch=4,
                 aug_rotate=10.0, aug_shift=1.0, w_cons=1.0, cons_threshold=0.0,
                 strong_shift=1.0, strong_cutout=3, dtype=dtype, **TINY).validate()
    a = fit(cfg, x, y, tr, va, progress=False)
    check(a, cfg)
    assert a.params["enc_conv0.W"].shape == (4, 3, 3, 3) and a.params["dec_conv0.b"].shape == (3,)
    if dtype == "float64":
        b = fit(cfg, x, y, tr, va, progress=False, engine="reference")
        np.testing.assert_allclose(a.params.flat, b.params.flat, rtol=1e-8, atol=1e-12)
