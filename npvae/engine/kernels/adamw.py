"""Clipped AdamW in one pass over the flat parameter buffer, and the squared norm it clips by.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .jit import JIT


# ------------------------------------------------------------ clipped AdamW, one pass
@njit(**JIT)
def sq_norm(g):
    """sum_j g_j^2, accumulated in float64 (the first half of global-norm clipping)."""
    acc = 0.0
    for j in range(g.shape[0]):
        acc += np.float64(g[j]) * np.float64(g[j])
    return acc


def sq_norm_np(g):
    return float(np.dot(g.astype(np.float64), g.astype(np.float64)))


@njit(**JIT)
def adamw(p, g, m, v, decay, clip, lr, b1, b2, eps, wd, t):
    """One AdamW step on the clipped gradient c g, in place over the flat buffers (spec 4):

        m <- b1 m + (1 - b1) c g          v <- b2 v + (1 - b2) (c g)^2
        p <- p - lr (m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + wd decay p)

    p, g, m, v, decay (S,) (any matching slices: the update is elementwise); c = clip =
    min(1, max_norm / ||g||); t is the step number after this step; g is not modified.
    Constants are rounded once to the buffers' dtype, as NumPy rounds Python floats."""
    f = p.dtype.type
    clip_, b1_, a1, b2_, a2 = f(clip), f(b1), f(1 - b1), f(b2), f(1 - b2)
    c1, c2, lr_, eps_, wd_ = f(1 - b1 ** t), f(1 - b2 ** t), f(lr), f(eps), f(wd)
    for j in range(p.shape[0]):
        gj = g[j] * clip_
        mj = b1_ * m[j] + a1 * gj
        vj = b2_ * v[j] + a2 * gj * gj
        m[j] = mj
        v[j] = vj
        p[j] -= lr_ * (mj / c1 / (math.sqrt(vj / c2) + eps_) + wd_ * decay[j] * p[j])


def adamw_np(p, g, m, v, decay, clip, lr, b1, b2, eps, wd, t):
    g = g * g.dtype.type(clip)
    m *= b1
    m += (1 - b1) * g
    v *= b2
    v += (1 - b2) * g * g
    p -= lr * (m / (1 - b1 ** t) / (np.sqrt(v / (1 - b2 ** t)) + eps) + wd * decay * p)
