"""The only randomness inside a training step, drawn outside the loss.

The loss is a pure function of (parameters, batch, noise): tests freeze the noise to check
gradients, and a run is reproducible because every draw comes from a Generator passed in.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import Config


@dataclass
class Noise:
    eps: np.ndarray                  # (B, d) standard normal, for z = mu + exp(lv/2) eps
    masks: tuple[np.ndarray, ...]    # classifier dropout, one (B, C[i]) per hidden layer,
                                     # entries 0 or 1/keep (inverted dropout); model gmm: none
    aug: np.ndarray | None = None    # (B, 4) uniform in [-1, 1): rotation, scale, shift x, y
                                     # of each image's augmentation (npvae/engine/augment.py), or
                                     # None
    strong: np.ndarray | None = None  # (B, 6) uniform in [-1, 1): the consistency term's strong
                                     # view (rotation, scale, shift x, y, cutout centre y, x;
                                     # npvae/engine/augment.py:strong_view), or None


def draw_noise(cfg: Config, batch_size: int, rng: np.random.Generator) -> Noise:
    """Draw eps ~ N(0, I), the dropout keep-masks (keep probability 1 - dropout; model gmm has
    no classifier MLP, so none), when the config augments, the augmentation draws, and with
    the consistency term (w_cons > 0), the strong view's draws."""
    dtype = np.dtype(cfg.dtype)
    eps = rng.standard_normal((batch_size, cfg.latent_dim)).astype(dtype)
    keep = 1.0 - cfg.dropout
    widths = cfg.classifier_dims if cfg.model == "mixture" else ()
    masks = tuple((rng.random((batch_size, width)) < keep).astype(dtype) / dtype.type(keep)
                  for width in widths)
    aug = rng.uniform(-1.0, 1.0, (batch_size, 4)) if cfg.augments else None
    # drawn last, so the other draws are the same with or without the consistency term
    strong = rng.uniform(-1.0, 1.0, (batch_size, 6)) if cfg.w_cons > 0 else None
    return Noise(eps, masks, aug, strong)
