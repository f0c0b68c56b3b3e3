"""The convolutions' gather and scatter (docs/math.md, section 15): im2col and its adjoint col2im,
with the signatures of npvae/core/conv.py's own, which are their NumPy twins. The products
around them stay BLAS products (np.matmul in npvae/core/conv.py); pass these kernels to its
pairs as `gather=im2col, scatter=col2im` for the fast path.

Why kernels: the twins pad a copy of the images and then make kh kw strided passes over all
of them (and col2im a zeroed padded buffer, kh kw read-add-write passes and a cropped copy).
The kernels never build the padded image: each makes one pass, im2col writing the padding's
zeros as it goes, col2im adding into its zeroed output. Each output row's span of valid input
columns is worked out first, so the inner loop indexes from 0 without bounds tests (and, at
stride 1, is a plain vectorised copy or add).

Shapes: x (B, C, H, W) images; cols (B, C, kh, kw, Ho, Wo), entry (di, dj, oi, oj) the padded
pixel (oi s + di, oj s + dj), i.e. x[oi s + di - p, oj s + dj - p] or 0 outside the image.
"""
from __future__ import annotations

from numba import njit

from npvae.core.conv import col2im as col2im_np  # noqa: F401  (the twins)
from npvae.core.conv import im2col as im2col_np  # noqa: F401

from .jit import JIT


@njit(**JIT)
def _span(n_out, n_in, d, stride, pad):
    """The output positions o in [lo, hi) whose input o s + d - p lies in [0, n_in)."""
    lo = 0
    while lo < n_out and lo * stride + d - pad < 0:
        lo += 1
    hi = n_out
    while hi > lo and (hi - 1) * stride + d - pad >= n_in:
        hi -= 1
    return lo, hi


@njit(**JIT)
def _move(x, cols, stride, pad, scatter):
    """The loop both kernels share, over every image, channel, kernel tap and output row that
    reads inside the image, and that row's span of valid columns: scatter False copies x into
    cols (the gather) and writes 0 where a tap reads the padding, True adds cols into x and
    leaves those entries unread."""
    B, C, kh, kw, Ho, Wo = cols.shape
    H, W = x.shape[2], x.shape[3]
    for n in range(B):
        for c in range(C):
            xc = x[n, c]                                              # (H, W)
            for di in range(kh):
                ilo, ihi = _span(Ho, H, di, stride, pad)
                for dj in range(kw):
                    jlo, jhi = _span(Wo, W, dj, stride, pad)
                    blk = cols[n, c, di, dj]                          # (Ho, Wo)
                    if not scatter:                                   # the padding's zeros
                        blk[:ilo] = 0
                        blk[ihi:] = 0
                        blk[ilo:ihi, :jlo] = 0
                        blk[ilo:ihi, jhi:] = 0
                    for oi in range(ilo, ihi):
                        img = xc[oi * stride + di - pad, jlo * stride + dj - pad:]
                        col = blk[oi, jlo:jhi]
                        # stride 1 on its own: a loop LLVM knows is contiguous, so vectorises
                        if scatter and stride == 1:
                            for oj in range(col.shape[0]):
                                img[oj] += col[oj]
                        elif scatter:
                            for oj in range(col.shape[0]):
                                img[oj * stride] += col[oj]
                        elif stride == 1:
                            for oj in range(col.shape[0]):
                                col[oj] = img[oj]
                        else:
                            for oj in range(col.shape[0]):
                                col[oj] = img[oj * stride]


@njit(**JIT)
def im2col(x, stride, pad, cols):
    """Fills cols (B, C, kh, kw, Ho, Wo) from x (B, C, H, W): the pixel each kernel tap reads
    at each output position, 0 on the padding (npvae/core/conv.py:im2col)."""
    _move(x, cols, stride, pad, False)


@njit(**JIT)
def col2im(cols, stride, pad, x):
    """x (B, C, H, W) <- 0, then every entry of cols (B, C, kh, kw, Ho, Wo) added to the pixel
    it came from; entries from the padding are dropped (npvae/core/conv.py:col2im). Taps are
    added in the twin's order, (di, dj) row by row, so float sums round the same way."""
    x[...] = 0
    _move(x, cols, stride, pad, True)
