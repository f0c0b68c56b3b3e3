"""New images from a trained model: z from the prior, decoded, as Bernoulli means in [0, 1].

    sample_images(p, cfg, n, component, rng) -> (n, D) float64

Seed model ("mixture"): every component shares the prior N(0, I); component k decodes z with
its own embedding: x = sigmoid(decoder_forward(p, z, cfg, components=k)).
Model gmm: component k has its own prior N(m_k, diag e^{v_k}) and one decoder serves all:
z = m_k + e^{v_k / 2} eps, x = sigmoid(gmm.decoder_forward(z)).
component None draws each row's component from the learned weights pi = softmax(pi_logits).
"""
from __future__ import annotations

import numpy as np

from . import gmm
from .config import Config
from .layers import sigmoid, softmax_forward
from .model import decoder_forward
from .params import Params


def sample_images(p: Params, cfg: Config, n: int, component, rng: np.random.Generator):
    """(n, D) images in [0, 1] (float64); component None or an int in 0..K-1."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n_samples = {n!r}: give a whole number of images, at least 1.")
    p = p.astype(np.float64)
    if component is None:
        pi = softmax_forward(p["pi_logits"])[0]
        ks = rng.choice(cfg.K, size=n, p=pi / pi.sum())
    else:
        if isinstance(component, bool) or not isinstance(component, (int, np.integer)) \
                or not 0 <= component < cfg.K:
            raise ValueError(f"component = {component!r} is not one of the model's "
                             f"components 0..{cfg.K - 1} (or None to draw them from pi).")
        ks = np.full(n, int(component))
    eps = rng.standard_normal((n, cfg.latent_dim))
    images = np.empty((n, cfg.input_dim))
    if cfg.model == "gmm":
        z = p["prior_mu"][ks] + np.exp(0.5 * p["prior_lv"][ks]) * eps
        return sigmoid(gmm.decoder_forward(p, z, cfg)[0])
    for k in np.unique(ks):                 # decode each component's rows together
        rows = ks == k
        images[rows] = sigmoid(decoder_forward(p, eps[rows], cfg, components=k)[0][:, 0])
    return images
