"""The affine warp of H x W images with C channels that npvae/engine/augment.py draws.

Shapes: x, out (B, C H W), each row one image's values channel after channel (C x H x W
flattened, the layout of npvae/core/config.py:Config.shape); A (B, 2, 3) float64, one affine
map per image, applied alike to each of its channels.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .jit import JIT


# --------------------------------------------- affine warp of H x W x C images
# (npvae/engine/augment.py)
@njit(**JIT)
def warp(x, A, H, W, out):
    """out[b] = image x[b] (C channels of H x W, row-major) sampled bilinearly at
    A[b] (u, v, 1)^T: output pixel (row v, column u), both centred on the image's middle
    ((W - 1) / 2, (H - 1) / 2), reads the source at
        (su, sv) = (A[b,0,0] u + A[b,0,1] v + A[b,0,2],  A[b,1,0] u + A[b,1,1] v + A[b,1,2])
    (centred too), in every channel; source pixels outside the image count as 0.
    x, out (B, C H W) of either float type, C = x.shape[1] / (H W); A (B, 2, 3) float64.

    No branch per pixel: a channel is copied into a frame with a zero border (one pixel
    left and top, two right and bottom) and source coordinates are clamped to [-1, W] and
    [-1, H], where both neighbours of a clamped coordinate lie in the border (its weight on
    the inside one is exactly 0), so every read is in bounds and the loop vectorises.
    Channels are warped one after the other, each exactly as a grey image: the source
    coordinates are recomputed per channel (a few flops per pixel) rather than kept, so the
    inner loop stays the one of a grey image, and a grey image's bytes do not depend on C."""
    C = x.shape[1] // (H * W)
    cu, cv = (W - 1) / 2.0, (H - 1) / 2.0                # the centre: column, row
    F = W + 3                                           # the frame's row length
    frame = np.zeros((H + 3) * F)                       # pixel (r, col) at (r + 1) F + col + 1
    hu, hv = float(W), float(H)
    for b in range(x.shape[0]):
        a00, a01, a02 = A[b, 0, 0], A[b, 0, 1], A[b, 0, 2]
        a10, a11, a12 = A[b, 1, 0], A[b, 1, 1], A[b, 1, 2]
        for ch in range(C):
            xb = x[b, ch * H * W:(ch + 1) * H * W]       # (H W) one channel
            ob = out[b, ch * H * W:(ch + 1) * H * W]
            for r in range(H):
                for col in range(W):
                    frame[(r + 1) * F + col + 1] = xb[r * W + col]
            for r in range(H):
                bu = a01 * (r - cv) + a02 + cu           # the row's share, then per column
                bv = a11 * (r - cv) + a12 + cv
                for col in range(W):
                    su = min(max(a00 * (col - cu) + bu, -1.0), hu)
                    sv = min(max(a10 * (col - cu) + bv, -1.0), hv)
                    u0, v0 = math.floor(su), math.floor(sv)
                    fu, fv = su - u0, sv - v0
                    k = (int(v0) + 1) * F + int(u0) + 1
                    top = (1.0 - fu) * frame[k] + fu * frame[k + 1]
                    bottom = (1.0 - fu) * frame[k + F] + fu * frame[k + F + 1]
                    ob[r * W + col] = max((1.0 - fv) * top + fv * bottom, 0.0)


def warp_np(x, A, H, W, out):
    """The twin of warp, with NumPy: the source coordinates of every output pixel at once,
    then the four bilinear neighbours gathered from every channel, 0 outside the image.
    x, out (B, C H W), A (B, 2, 3)."""
    B, C = x.shape[0], x.shape[1] // (H * W)
    cu, cv = (W - 1) / 2.0, (H - 1) / 2.0
    v, u = np.mgrid[0:H, 0:W].reshape(2, -1)                                  # (H W,) each
    v, u = v - cv, u - cu
    su = A[:, 0, 0, None] * u + A[:, 0, 1, None] * v + A[:, 0, 2, None] + cu  # (B, H W)
    sv = A[:, 1, 0, None] * u + A[:, 1, 1, None] * v + A[:, 1, 2, None] + cv
    u0, v0 = np.floor(su), np.floor(sv)
    fu, fv = su - u0, sv - v0
    acc = np.zeros((B, C, H * W))
    images = x.reshape(B, C, H * W)
    for dv in (0, 1):
        for du in (0, 1):
            uu, vv = (u0 + du).astype(np.int64), (v0 + dv).astype(np.int64)
            inside = (uu >= 0) & (uu < W) & (vv >= 0) & (vv < H)              # (B, H W)
            at = np.where(inside, vv * W + uu, 0)[:, None, :]                 # (B, 1, H W)
            pix = np.take_along_axis(images, np.broadcast_to(at, images.shape), axis=2)
            weight = (fv if dv else 1 - fv) * (fu if du else 1 - fu)          # (B, H W)
            acc += np.where(inside[:, None], weight[:, None] * pix, 0.0)      # (B, C, H W)
    out[...] = np.maximum(acc, 0.0).reshape(out.shape)
