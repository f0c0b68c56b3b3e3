"""The affine warp of 28 x 28 images that npvae/engine/augment.py draws.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .jit import JIT


# ------------------------------------------- affine warp of 28 x 28 images
# (npvae/engine/augment.py)
@njit(**JIT)
def warp(x, A, side, out):
    """out[b] = image x[b] (side x side, row-major) sampled bilinearly at A[b] (u, v, 1)^T:
    output pixel (row v, column u), both centred on the image's middle, reads the source at
        (su, sv) = (A[b,0,0] u + A[b,0,1] v + A[b,0,2],  A[b,1,0] u + A[b,1,1] v + A[b,1,2])
    (centred too); source pixels outside the image count as 0.  x, out (B, side*side) of
    either float type, A (B, 2, 3) float64.

    No branch per pixel: the image is copied into a frame with a zero border (one pixel
    left and top, two right and bottom) and source coordinates are clamped to [-1, side],
    where both neighbours of a clamped coordinate lie in the border (its weight on the
    inside one is exactly 0), so every read is in bounds and the loop vectorises."""
    c = (side - 1) / 2.0
    W = side + 3
    frame = np.zeros(W * W)                              # pixel (r, col) at (r + 1) W + col + 1
    hi = float(side)
    for b in range(x.shape[0]):
        xb, ob = x[b], out[b]
        for r in range(side):
            for col in range(side):
                frame[(r + 1) * W + col + 1] = xb[r * side + col]
        a00, a01, a02 = A[b, 0, 0], A[b, 0, 1], A[b, 0, 2]
        a10, a11, a12 = A[b, 1, 0], A[b, 1, 1], A[b, 1, 2]
        for r in range(side):
            bu = a01 * (r - c) + a02 + c                 # the row's share, then per column
            bv = a11 * (r - c) + a12 + c
            for col in range(side):
                su = min(max(a00 * (col - c) + bu, -1.0), hi)
                sv = min(max(a10 * (col - c) + bv, -1.0), hi)
                u0, v0 = math.floor(su), math.floor(sv)
                fu, fv = su - u0, sv - v0
                k = (int(v0) + 1) * W + int(u0) + 1
                top = (1.0 - fu) * frame[k] + fu * frame[k + 1]
                bottom = (1.0 - fu) * frame[k + W] + fu * frame[k + W + 1]
                ob[r * side + col] = max((1.0 - fv) * top + fv * bottom, 0.0)


def warp_np(x, A, side, out):
    c = (side - 1) / 2.0
    v, u = np.mgrid[0:side, 0:side].reshape(2, -1) - c                     # (side*side,) each
    su = A[:, 0, 0, None] * u + A[:, 0, 1, None] * v + A[:, 0, 2, None] + c  # (B, side*side)
    sv = A[:, 1, 0, None] * u + A[:, 1, 1, None] * v + A[:, 1, 2, None] + c
    u0, v0 = np.floor(su), np.floor(sv)
    fu, fv = su - u0, sv - v0
    acc = np.zeros(su.shape)
    rows = np.arange(x.shape[0])[:, None]
    for dv in (0, 1):
        for du in (0, 1):
            uu, vv = (u0 + du).astype(np.int64), (v0 + dv).astype(np.int64)
            inside = (uu >= 0) & (uu < side) & (vv >= 0) & (vv < side)
            pix = x[rows, np.where(inside, vv * side + uu, 0)]
            acc += np.where(inside, (fv if dv else 1 - fv) * (fu if du else 1 - fu) * pix, 0.0)
    out[...] = np.maximum(acc, 0.0)
