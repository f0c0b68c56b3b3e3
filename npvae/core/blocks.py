"""What both models are built from: the names of the loss terms, the record of a forward
pass's outputs, and the dense trunk (Dense + leaky ReLU [+ dropout] layers) with its backward.
"""
from __future__ import annotations

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
