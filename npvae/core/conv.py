"""Convolutional layer pairs (cs231n style, as in layers.py), images in NCHW layout.

Shapes: x (B, C, H, W) images with C channels of H rows and W columns; a kernel W (F, C, kh, kw)
makes F output channels; stride s and zero padding p are the same along both axes. A conv2d
output has Ho = (H + 2p - kh) // s + 1 rows (out_size), likewise Wo columns.

How, and why (docs/math.md, section 15): im2col. `im2col` copies the C kh kw inputs under each
output position into one column, so the convolution of an image is ONE matrix product
(F, C kh kw) @ (C kh kw, Ho Wo), which BLAS runs near peak; the backward pass is two more
products and `col2im`, the adjoint of the copy (a scatter-add). Direct loops in NumPy would be
B F C kh kw Python-level operations, or kh kw of them on broadcast (B, F, C, Ho, Wo) arrays,
F times the memory of the columns. The cost is the same 2 B F C kh kw Ho Wo flops either way
(one multiply and one add per kernel tap, input channel and output entry) plus the columns,
kh kw / s^2 times the input's memory. Both copies loop over the kh kw kernel taps, each tap one
strided slice of every image and channel at once: no index arrays, and the scatter is visibly
the gather run backwards.

The gather and the scatter are arguments (`gather`, `scatter`, kept in the cache) so that the
engine can pass its Numba kernels (npvae/engine/kernels/conv.py) to the same pairs.
"""
from __future__ import annotations

import numpy as np


def out_size(n: int, k: int, stride: int, pad: int) -> int:
    """Positions of a k-wide window in n + 2 pad inputs, moved by stride: (n + 2p - k) // s + 1."""
    if stride < 1 or pad < 0 or n + 2 * pad < k:
        raise ValueError(f"no output: size {n}, kernel {k}, stride {stride}, pad {pad}")
    return (n + 2 * pad - k) // stride + 1


def _taps(cols, stride):
    """Yield ((di, dj), window) per kernel tap: cols (B, C, kh, kw, Ho, Wo); window indexes
    the padded images (B, C, H + 2p, W + 2p) at the pixels tap (di, dj) reads for all Ho x Wo
    output positions: (oi s + di, oj s + dj)."""
    kh, kw, Ho, Wo = cols.shape[2:]
    for di in range(kh):
        for dj in range(kw):
            yield (di, dj), (slice(None), slice(None),
                             slice(di, di + stride * (Ho - 1) + 1, stride),
                             slice(dj, dj + stride * (Wo - 1) + 1, stride))


def im2col(x, stride, pad, cols):
    """Fills cols[n, c, di, dj, oi, oj] = xpad[n, c, oi s + di, oj s + dj], xpad being x with p
    zeros on every side.   x (B, C, H, W), cols (B, C, kh, kw, Ho, Wo) (its shape gives the
    kernel and output sizes)."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))          # (B, C, H + 2p, W + 2p)
    for (di, dj), window in _taps(cols, stride):
        cols[:, :, di, dj] = xp[window]                                 # (B, C, Ho, Wo)


def col2im(cols, stride, pad, x):
    """The adjoint of im2col: x <- 0, then every column entry is added to the pixel it was read
    from (a pixel under several windows collects several; what fell on the padding is dropped).
    cols (B, C, kh, kw, Ho, Wo), x (B, C, H, W) written."""
    B, C, H, W = x.shape
    xp = np.zeros((B, C, H + 2 * pad, W + 2 * pad), cols.dtype)
    for (di, dj), window in _taps(cols, stride):
        xp[window] += cols[:, :, di, dj]                                # (B, C, Ho, Wo)
    x[...] = xp[:, :, pad:pad + H, pad:pad + W]


# ------------------------------------------------- the products shared by both pairs
def _columns(gather, x, kh, kw, stride, pad):
    """im2col as a (B, C kh kw, Ho Wo) array (gather: im2col or a kernel with its signature)."""
    B, C, H, W = x.shape
    Ho, Wo = out_size(H, kh, stride, pad), out_size(W, kw, stride, pad)
    cols = np.empty((B, C, kh, kw, Ho, Wo), x.dtype)
    gather(x, stride, pad, cols)
    return cols.reshape(B, C * kh * kw, Ho * Wo), (Ho, Wo)


def _apply(W, cols):
    """W2 @ cols per image, W2 = W as (F, C kh kw): cols (B, C kh kw, P) -> (B, F, P)."""
    return np.matmul(W.reshape(W.shape[0], -1), cols)


def _apply_t(W, d):
    """W2^T @ d per image: d (B, F, P) -> (B, C kh kw, P), the columns' adjoint."""
    return np.matmul(W.reshape(W.shape[0], -1).T, d)


def _weight_grad(d, cols, shape):
    """sum over images of d_n cols_n^T: d (B, F, P), cols (B, C kh kw, P) -> shape (F, C, kh, kw).
    W is shared by every image and position, so its gradient sums them. One product per image,
    then the sum: np.tensordot would first copy d into (F, B P), which measured slower
    (benchmarks/README.md)."""
    return np.matmul(d, cols.transpose(0, 2, 1)).sum(axis=0).reshape(shape)


# ------------------------------------------------------------------------- conv2d
def conv2d_forward(x, W, b, stride=1, pad=0, *, gather=im2col, scatter=col2im):
    """Cross-correlation (no kernel flip, as in every deep-learning library):

        y[n, f, oi, oj] = b[f] + sum_{c, di, dj} W[f, c, di, dj] xpad[n, c, oi s + di, oj s + dj]

    x (B, C, H, W), W (F, C, kh, kw), b (F,) -> y (B, F, Ho, Wo). 2 B F C kh kw Ho Wo flops."""
    B = x.shape[0]
    F, C, kh, kw = W.shape
    cols, (Ho, Wo) = _columns(gather, x, kh, kw, stride, pad)      # (B, C kh kw, Ho Wo)
    y = _apply(W, cols)                                              # (B, F, Ho Wo)
    y += b[:, None]
    return y.reshape(B, F, Ho, Wo), (x.shape, cols, W, stride, pad, scatter)


def conv2d_backward(dy, cache):
    """dx = col2im(W2^T dy), dW = sum_n dy_n cols_n^T, db = sum of dy over images and
    positions (docs/math.md, section 15.2).
    dy (B, F, Ho, Wo) -> dx (B, C, H, W), dW (F, C, kh, kw), db (F,)."""
    x_shape, cols, W, stride, pad, scatter = cache
    B, F, Ho, Wo = dy.shape
    dy = dy.reshape(B, F, Ho * Wo)
    db = dy.sum(axis=(0, 2))                                         # (F,)
    dW = _weight_grad(dy, cols, W.shape)                             # (F, C, kh, kw)
    dcols = _apply_t(W, dy)                                          # (B, C kh kw, Ho Wo)
    dx = np.empty(x_shape, dcols.dtype)                              # (B, C, H, W)
    scatter(dcols.reshape(x_shape[:2] + W.shape[2:] + (Ho, Wo)), stride, pad, dx)
    return dx, dW, db


# ------------------------------------------------------------- transposed conv2d
def conv2d_transpose_forward(x, W, b, stride=1, pad=0, out_hw=None, *, gather=im2col,
                             scatter=col2im):
    """The adjoint of conv2d (its map from input to output, bias aside), plus a bias:

        y = col2im(W2^T x) + b,   sum(v * conv2d(u, W, 0)) = sum(conv2d_transpose(v, W, 0) * u)

    for every u, v: conv2d's backward pass for dx, run as a layer (docs/math.md, section 15.3).
    It upsamples by the stride.
    x (B, F, Hi, Wi), W (F, C, kh, kw) (conv2d's layout: F is this layer's INPUT channels),
    b (C,) -> y (B, C, Ho, Wo), by default Ho = (Hi - 1) s - 2p + kh, the smallest size conv2d
    maps to Hi; out_hw = (Ho, Wo) asks for up to s - 1 more (e.g. 28 from 14 with kh = 3, s = 2,
    p = 1, where the default is 27). Same flops as conv2d with the roles of x and y swapped."""
    B, F, Hi, Wi = x.shape
    _, C, kh, kw = W.shape
    Ho, Wo = out_hw or ((Hi - 1) * stride - 2 * pad + kh, (Wi - 1) * stride - 2 * pad + kw)
    if (out_size(Ho, kh, stride, pad), out_size(Wo, kw, stride, pad)) != (Hi, Wi):
        raise ValueError(f"conv2d does not map {Ho}x{Wo} to {Hi}x{Wi} (stride {stride}, pad {pad})")
    dcols = _apply_t(W, x.reshape(B, F, -1))                         # (B, C kh kw, Hi Wi)
    y = np.empty((B, C, Ho, Wo), dcols.dtype)                        # (B, C, Ho, Wo)
    scatter(dcols.reshape(B, C, kh, kw, Hi, Wi), stride, pad, y)
    y += b[:, None, None]
    return y, (x, W, stride, pad, gather)


def conv2d_transpose_backward(dy, cache):
    """The adjoint of an adjoint is the map itself: dx = conv2d(dy, W) without bias,
    dW = sum_n x_n im2col(dy)_n^T, db = sum of dy over images and positions.
    dy (B, C, Ho, Wo) -> dx (B, F, Hi, Wi), dW (F, C, kh, kw), db (C,)."""
    x, W, stride, pad, gather = cache
    B, F = x.shape[:2]
    cols, _ = _columns(gather, dy, W.shape[2], W.shape[3], stride, pad)  # (B, C kh kw, Hi Wi)
    dx = _apply(W, cols).reshape(x.shape)                            # (B, F, Hi, Wi)
    dW = _weight_grad(x.reshape(B, F, -1), cols, W.shape)            # (F, C, kh, kw)
    db = dy.sum(axis=(0, 2, 3))                                      # (C,)
    return dx, dW, db


# ------------------------------------------------------------------ 2x2 max pooling
def _windows(x):
    """(B, C, H, W) -> (B, C, H/2, W/2, 4): the four pixels of each 2x2 block, row by row."""
    B, C, H, W = x.shape
    return x.reshape(B, C, H // 2, 2, W // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(
        B, C, H // 2, W // 2, 4)


def maxpool2x2_forward(x):
    """y[n, c, i, j] = max of x[n, c, 2i:2i+2, 2j:2j+2].   x (B, C, H, W), H and W even ->
    y (B, C, H/2, W/2)."""
    if x.shape[2] % 2 or x.shape[3] % 2:
        raise ValueError(f"maxpool2x2 needs an even height and width, not {x.shape[2:]}")
    win = _windows(x)                                                # (B, C, H/2, W/2, 4)
    arg = win.argmax(axis=-1)                                        # the first maximum
    return np.take_along_axis(win, arg[..., None], -1)[..., 0], (x.shape, arg)


def maxpool2x2_backward(dy, cache):
    """dy goes to the pixel that won its block (the first one on a tie), 0 to the other
    three (docs/math.md, section 15.4).   dy (B, C, H/2, W/2) -> dx (B, C, H, W)."""
    shape, arg = cache
    B, C, H, W = shape
    dwin = np.zeros(dy.shape + (4,), dy.dtype)                       # (B, C, H/2, W/2, 4)
    np.put_along_axis(dwin, arg[..., None], dy[..., None], -1)
    dwin = dwin.reshape(B, C, H // 2, W // 2, 2, 2)                  # (.., row in block, col)
    return dwin.transpose(0, 1, 2, 4, 3, 5).reshape(shape)           # (B, C, H, W)


# --------------------------------------------------------------- flatten, unflatten
def flatten_forward(x):
    """Images to rows for a dense layer: (B, C, H, W) -> (B, C H W), a reshape."""
    return x.reshape(x.shape[0], -1), x.shape


def flatten_backward(dy, cache):
    """The same numbers back in image shape: (B, C H W) -> (B, C, H, W)."""
    return dy.reshape(cache)


def unflatten_forward(x, shape):
    """Rows of a dense layer to images (the decoder's way in): (B, C H W) -> (B, *shape)."""
    return x.reshape((x.shape[0],) + tuple(shape)), x.shape


def unflatten_backward(dy, cache):
    """(B, C, H, W) -> (B, C H W)."""
    return dy.reshape(cache)
