"""What both models are built from: the names of the loss terms, the record of a forward
pass's outputs, the dense trunk (Dense + leaky ReLU [+ dropout] layers) with its backward, and
`Blocks`, the table of block pairs that an engine may replace by faster ones.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import layers as L

TERMS = ("recon", "kl_z", "kl_c", "dirichlet", "diversity", "cls")


@dataclass
class Outputs:
    q: np.ndarray           # (B, K) responsibilities q(c|x)
    mu: np.ndarray          # (B, d)
    lv: np.ndarray          # (B, d) log-variance
    z: np.ndarray           # (B, d) the sample (= mu in eval mode)
    logits: np.ndarray      # (B, K, D) decoder logits for every component
    cls_logits: np.ndarray  # (B, C) classifier logits
    pi: np.ndarray          # (K,) prior mixture weights


def mlp_forward(h, p, prefix, n_layers, last_linear, masks=None):
    """Dense layers prefix0..prefix{n-1} with lrelu between (and after the last unless
    last_linear); dropout mask i follows the lrelu of layer i when given."""
    caches = []
    for i in range(n_layers):
        h, c_lin = L.linear_forward(h, p[f"{prefix}{i}.W"], p[f"{prefix}{i}.b"])
        c_act = c_drop = None
        if i < n_layers - 1 or not last_linear:
            h, c_act = L.lrelu_forward(h)
            if masks is not None and i < len(masks):
                h, c_drop = L.dropout_forward(h, masks[i])
        caches.append((c_lin, c_act, c_drop))
    return h, caches


def mlp_backward(dh, caches, g, prefix, input_grad: bool = True):
    """Reverse of mlp_forward; writes dW, db into the gradient views g; returns d(input)
    (None when not input_grad: the input is data, and dx = dh W^T of the first layer, as
    large a product as its dW, would be thrown away)."""
    for i in reversed(range(len(caches))):
        c_lin, c_act, c_drop = caches[i]
        if c_drop is not None:
            dh = L.dropout_backward(dh, c_drop)
        if c_act is not None:
            dh = L.lrelu_backward(dh, c_act)
        if i == 0 and not input_grad:
            x, _ = c_lin
            g[f"{prefix}0.W"][...], g[f"{prefix}0.b"][...] = x.T @ dh, dh.sum(axis=0)
            return None
        dh, g[f"{prefix}{i}.W"][...], g[f"{prefix}{i}.b"][...] = L.linear_backward(dh, c_lin)
    return dh


@dataclass(frozen=True)
class Blocks:
    """The blocks of model gmm (npvae/core/gmm.py) as forward/backward functions. The readable
    ones are gmm.READABLE; an engine passes a copy with some replaced by fused kernels of the
    same contract (npvae/engine/blocks.py), so the model's math is written once, here in core.

        mlp_forward(h, p, prefix, n_layers, last_linear) -> (h, cache)   as mlp_forward
        mlp_backward(dh, cache, g, prefix, input_grad) -> d(input)      may overwrite dh
        bce_forward(l, x) -> (bce (B,), cache)                          layers.bce_logits_*
        bce_backward(w (B,), cache) -> dl (B, D)
        latent_forward, latent_backward                                 gmm.latent_*
        gather, scatter                                                 conv.im2col, col2im
    """
    mlp_forward: Callable
    mlp_backward: Callable
    bce_forward: Callable
    bce_backward: Callable
    latent_forward: Callable
    latent_backward: Callable
    gather: Callable
    scatter: Callable
