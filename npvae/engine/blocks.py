"""Fused substitutes for model gmm's blocks (npvae/core/blocks.py:Blocks): each pair has the
contract of the readable pair it replaces, so npvae/core/gmm.py runs unchanged on either.

    mlp_forward / mlp_backward     the dense stack: bias + leaky ReLU fused after each product,
                                   and the leaky ReLU's backward with the bias gradient
    bce_forward / bce_backward     BCE from logits and its gradient, one pass each
    latent_forward / backward      gmm's latent block, kernels/gmm_latent.py
    gather / scatter               the conv layers' im2col / col2im

FAST is the table the engine passes. The kernels' NumPy twins (kernels.ACTIVE under
NUMBA_DISABLE_JIT=1) call npvae/core for the BCE and the latent block.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from npvae.core import gmm
from npvae.core import layers as L

from .engine import weights
from .kernels import ACTIVE as kern
from .kernels.gmm_latent import GMM_LATENT_WEIGHTS


def mlp_forward(h, p, prefix: str, n_layers: int, last_linear: bool, out=None):
    """blocks.mlp_forward without dropout: h <- lrelu(h W + b) per layer (bias and leaky
    ReLU in one pass; the last layer linear when last_linear). out: one (B, N_i) array per
    layer to write the outputs into (default: new ones). Cache: each layer's input and output,
    and the weights."""
    hs, Ws = [h], []
    for i in range(n_layers):
        W, b = p[f"{prefix}{i}.W"], p[f"{prefix}{i}.b"]
        h = np.matmul(h, W, out=None if out is None else out[i])    # (B, N_i)
        if i < n_layers - 1 or not last_linear:
            kern.bias_lrelu(h, b)
        else:
            h += b
        hs.append(h)
        Ws.append(W)
    return h, (hs, Ws, last_linear)


def mlp_backward(dh, cache, g, prefix: str, input_grad: bool = True):
    """Reverse of mlp_forward: dW, db into g; returns d(input), or None when not input_grad.
    dh is overwritten (it becomes the last layer's pre-activation gradient)."""
    hs, Ws, last_linear = cache
    n = len(Ws)
    for i in reversed(range(n)):
        db = g[f"{prefix}{i}.b"]
        if i < n - 1 or not last_linear:
            kern.lrelu_grad_bias(dh, hs[i + 1], db)                  # dh <- d(pre-activation)
        else:
            db[...] = dh.sum(axis=0)
        np.matmul(hs[i].T, dh, out=g[f"{prefix}{i}.W"])
        if i == 0 and not input_grad:
            return None
        dh = dh @ Ws[i].T                                            # (B, N_{i-1})
    return dh


def bce_forward(l, x):
    """layers.bce_logits_forward for l, x (B, D): bce (B,) and the cache."""
    bce, zero = np.empty(l.shape[0], l.dtype), np.zeros(l.shape[1], l.dtype)
    kern.bce_eval(l, zero, x, bce)                                   # l + 0: l unchanged
    return bce, (l, x, zero)


def bce_backward(w, cache):
    """layers.bce_logits_backward: dl = w_i (sigmoid(l) - x) (B, D)."""
    l, x, zero = cache
    dl, bce, db = l.copy(), np.empty(l.shape[0], l.dtype), np.empty_like(zero)
    kern.bce_grad(dl, zero, x, w, bce, db)
    return dl


def latent_forward(p, mu, lv, z, y, cfg):
    """gmm.latent_forward through the fused kernel: (sums, q, s, pi, cache). With a sampled z
    (training: z is not mu) the same kernel call also forms the gradients, which
    latent_backward then hands out (one pass over the rows instead of two)."""
    q, s = (np.empty((mu.shape[0], cfg.K), mu.dtype) for _ in range(2))
    grads = None
    if z is not mu:
        grads = tuple(np.empty_like(mu) for _ in range(3)) + \
            tuple(np.empty_like(p[name]) for name in ("pi_logits", "prior_mu", "prior_lv"))
    sums = _latent(p, mu, lv, z, y, cfg, q, s, grads)
    pi = np.exp(L.log_softmax(p["pi_logits"]))
    return sums, q, s, pi, (p, mu, lv, z, y, q, s, cfg, grads)


def latent_backward(cache, g, cfg):
    """gmm.latent_backward: the prior's gradients into g; returns dmu, dlv, dz (B, d)."""
    p, mu, lv, z, y, q, s, cfg_forward, grads = cache
    if grads is None or cfg is not cfg_forward:       # not formed by the forward call
        grads = tuple(np.empty_like(a) for a in (mu, mu, mu, p["pi_logits"], p["prior_mu"],
                                                  p["prior_lv"]))
        _latent(p, mu, lv, z, y, cfg, q.copy(), s.copy(), grads)
    g["pi_logits"][...], g["prior_mu"][...], g["prior_lv"][...] = grads[3:]
    return grads[:3]


def _latent(p, mu, lv, z, y, cfg, q, s, grads):
    """One call of kernels.gmm_latent (grads None: forward only); returns its sums by name."""
    train = grads is not None
    if not train:
        scratch = np.empty_like(p["prior_mu"])
        grads = (mu[:0],) * 3 + (np.empty_like(p["pi_logits"]), scratch, scratch)
    sums = kern.gmm_latent(mu, lv, z, y, p["pi_logits"], p["prior_mu"], p["prior_lv"],
                           weights(cfg, GMM_LATENT_WEIGHTS), train, q, s, *grads)
    return dict(zip(("kl_z", "kl_c", "dirichlet", "diversity", "cls"), map(float, sums)))


FAST = dataclasses.replace(gmm.READABLE, mlp_forward=mlp_forward, mlp_backward=mlp_backward,
                           bce_forward=bce_forward, bce_backward=bce_backward,
                           latent_forward=latent_forward, latent_backward=latent_backward,
                           gather=kern.im2col, scatter=kern.col2im)
