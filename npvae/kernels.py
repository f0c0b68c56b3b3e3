"""Fused Numba kernels for the fast path (npvae/fast.py), each beside its plain NumPy twin.

NumPy makes one pass over memory per operation: `lrelu(a + b)` is two passes, the BCE with its
gradient about a dozen over the (B*K, D) logits, the decoder's biggest array. Each kernel below
does one pass, in place where it can. The twins (`<name>_np`) compute the same thing with NumPy
(the loss-term twin through layers.py itself); tests compare the two in float32 and float64.

Each kernel is serial and releases the GIL (`nogil`). The matrix products around them already
use every core through BLAS; Numba's own thread pools (prange) fought BLAS's threads for the two
cores here (OpenMP: 10x slower steps; workqueue: slower than serial), so none is used.

Rules: `cache=True`; no `fastmath` flags that assume away NaN or inf (only `reassoc`, which lets
a row sum be vectorised, and `contract`, which allows fused multiply-adds). Inner loops index a
view (a row, a slice) from 0 with `range(len)`: with `a[lo + j]` LLVM cannot prove the index
non-negative (Numba wraps negative indices) and leaves the loop scalar (8x slower). With
NUMBA_DISABLE_JIT=1 every kernel is plain Python (slow: tests use small shapes).

Shapes: R rows (B images, or B*K image-component pairs, row r = i*K + k), N features, D pixels.
`lrelu(a) = max(a, LEAK a)`: its derivative is 1 where the output is > 0, else LEAK, so the
backward kernels need only the layer's output h, never its input.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from .layers import EPS, LEAK

_FM = {"reassoc", "contract"}            # no nnan / ninf: NaN and inf propagate as in NumPy
_jit = dict(cache=True, nogil=True, error_model="numpy", fastmath=_FM)


# ------------------------------------------------ e^-t and log(1 + e) that vectorise
# Numba calls libm for math.exp / math.log1p one element at a time (no SIMD: this Numba has no
# SVML), ~13 ms per call over the (1280, 784) logits, five times the matrix product that made
# them. In float32 the kernels use the two functions below instead: plain arithmetic that LLVM
# turns into AVX-512 code, accurate to ~2 ulp. float64 (and plain Python) keeps libm.
def exp_neg(t):
    """e^-t for t >= 0."""
    return math.exp(-t)


def log1p_unit(e):
    """log(1 + e) for 0 <= e <= 1."""
    return math.log1p(e)


@intrinsic
def _f32_from_bits(typingctx, n):
    """The float32 whose IEEE-754 bit pattern is the int32 n (a register move)."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


def _exp_neg_f32(t):
    # t = n ln2 + r with n = round(t / ln2), |r| <= ln2/2; e^-t = 2^-n e^-r. ln2 is split in
    # a short head (n * head is exact) and a tail (Cody-Waite), e^-r is its Taylor polynomial
    # of degree 6 (error r^7/7! < 1.2e-7, about one float32 rounding), 2^-n is built from its
    # exponent bits. t is capped at 86: e^-86 = 4e-38 is still a normal float32 (subnormal
    # arithmetic is up to 100x slower), and the cap changes any BCE sum by < 1e-37.
    t = min(t, np.float32(86.0))
    n = np.int32(t * np.float32(1.4426950408889634) + np.float32(0.5))
    nf = np.float32(n)
    r = (t - nf * np.float32(0.693145751953125)) - nf * np.float32(1.4286068203094173e-06)
    p = np.float32(1 / 720)
    for c in (1 / 120, 1 / 24, 1 / 6, 1 / 2, 1.0, 1.0):
        p = p * -r + np.float32(c)
    return p * _f32_from_bits(np.int32((127 - n) << 23))


def _log1p_unit_f32(e):
    # log(1 + e) = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...), s = e / (2 + e) <= 1/3: six
    # terms reach float32 precision (the seventh is < (1/9)^6 / 13 = 1.4e-7 relative) and
    # keep full relative accuracy as e -> 0, where log(1 + e) ~ e. e is raised to 1e-18 at
    # least, so that s^2 stays a normal number (absolute change < 1e-18, far below float32
    # resolution of any BCE sum).
    e = max(e, np.float32(1e-18))
    s = e / (np.float32(2.0) + e)
    s2 = s * s
    p = np.float32(1 / 11)
    for c in (1 / 9, 1 / 7, 1 / 5, 1 / 3, 1.0):
        p = p * s2 + np.float32(c)
    return np.float32(2.0) * s * p


@overload(exp_neg, jit_options=dict(fastmath=_FM))
def _exp_neg_jit(t):
    return _exp_neg_f32 if t == types.float32 else (lambda t: math.exp(-t))


@overload(log1p_unit, jit_options=dict(fastmath=_FM))
def _log1p_unit_jit(e):
    return _log1p_unit_f32 if e == types.float32 else (lambda e: math.log1p(e))


# --------------------------------------------------------------- leaky ReLU layers
@njit(**_jit)
def bias_lrelu(a, b):
    """In place: a <- lrelu(a + b).   a (R, N) = x W (the product), b (N,) the bias."""
    leak = a.dtype.type(LEAK)
    for r in range(a.shape[0]):
        ar = a[r]
        for j in range(ar.shape[0]):
            v = ar[j] + b[j]
            ar[j] = v if v > 0 else leak * v


def bias_lrelu_np(a, b):
    v = a + b
    a[...] = np.where(v > 0, v, LEAK * v)


@njit(**_jit)
def lrelu_grad_bias(dh, h, db):
    """In place: dh <- dh * lrelu'(h) (the gradient of the pre-activation a = x W + b), and
    db (N,) <- sum over rows of that gradient (= dL/db).   dh, h (R, N) with h = lrelu(a)."""
    leak = dh.dtype.type(LEAK)
    db[:] = 0
    for r in range(dh.shape[0]):
        dr, hr = dh[r], h[r]
        for j in range(dr.shape[0]):
            g = dr[j] if hr[j] > 0 else leak * dr[j]
            dr[j] = g
            db[j] += g


def lrelu_grad_bias_np(dh, h, db):
    dh *= np.where(h > 0, 1.0, LEAK).astype(dh.dtype)
    db[...] = dh.sum(axis=0)


@njit(**_jit)
def pair_lrelu(az, ac, out):
    """out[i*K + k] = lrelu(az[i] + ac[k]): the first decoder layer for every (image,
    component) pair. Because concat(hz_i, hc_k) W = hz_i W[:P] + hc_k W[P:], the product is
    done once per image (az = hz W[:P], (B, N)) and once per component (ac = hc W[P:] + b,
    (K, N)) instead of once per pair.   out (B*K, N)."""
    K = ac.shape[0]
    leak = out.dtype.type(LEAK)
    for i in range(az.shape[0]):
        for k in range(K):
            o, ai, ak = out[i * K + k], az[i], ac[k]
            for j in range(o.shape[0]):
                v = ai[j] + ak[j]
                o[j] = v if v > 0 else leak * v


def pair_lrelu_np(az, ac, out):
    v = (az[:, None, :] + ac[None, :, :]).reshape(out.shape)
    out[...] = np.where(v > 0, v, LEAK * v)


@njit(**_jit)
def pair_lrelu_grad(dh, h, daz, dac):
    """Backward of pair_lrelu. In place dh <- da = dh * lrelu'(h) (B*K, N); then
    daz[i] = sum_k da[i*K + k] (B, N) and dac[k] = sum_i da[i*K + k] (K, N): each half of the
    split layer fed K pairs (az) or B pairs (ac)."""
    K = dac.shape[0]
    leak = dh.dtype.type(LEAK)
    dac[:] = 0
    for i in range(daz.shape[0]):
        di = daz[i]
        di[:] = 0
        for k in range(K):
            dr, hr, dk = dh[i * K + k], h[i * K + k], dac[k]
            for j in range(dr.shape[0]):
                g = dr[j] if hr[j] > 0 else leak * dr[j]
                dr[j] = g
                di[j] += g
                dk[j] += g


def pair_lrelu_grad_np(dh, h, daz, dac):
    B, K = daz.shape[0], dac.shape[0]
    dh *= np.where(h > 0, 1.0, LEAK).astype(dh.dtype)
    da = dh.reshape(B, K, -1)
    daz[...] = da.sum(axis=1)
    dac[...] = da.sum(axis=0)


# ----------------------------------------------- BCE from logits, its gradient, weighting
@njit(**_jit)
def bce_grad(l, b, x, w, bce, db):
    """The reconstruction term's forward and backward in one pass over the logits.

    With l_rd = (l + b)_rd the logits of row r = i*K + k and x_i its image:
        bce[r] = sum_d [max(l_rd, 0) - x_id l_rd + log(1 + e^-|l_rd|)]        (B*K,)
        l[r, d] <- w[r] (sigmoid(l_rd) - x_id)     in place: dL/dl when w_r = w_rec q_ik / B
        db[d]   =  sum_r of the new l[r, d]                                    dL/db (D,)
    e = e^-|l| is computed once and serves both: log(1 + e), and sigmoid(l) = 1 / (1 + e) for
    l >= 0, e / (1 + e) otherwise.   l (B*K, D) = h W (no bias yet), b (D,), x (B, D), w (B*K,).
    """
    K = l.shape[0] // x.shape[0]
    one, zero = l.dtype.type(1), l.dtype.type(0)
    db[:] = 0
    for r in range(l.shape[0]):
        lr, xi, wr = l[r], x[r // K], w[r]
        acc = zero
        for d in range(lr.shape[0]):
            v = lr[d] + b[d]
            e = exp_neg(abs(v))                               # e^-|l|
            acc += max(v, zero) - xi[d] * v + log1p_unit(e)
            s = one / (one + e)
            g = wr * ((s if v >= 0 else e * s) - xi[d])       # w (sigmoid(l) - x)
            lr[d] = g
            db[d] += g
        bce[r] = acc


def bce_grad_np(l, b, x, w, bce, db):
    from .layers import bce_logits_forward, sigmoid
    v = l + b
    xr = np.repeat(x, l.shape[0] // x.shape[0], axis=0)
    bce[...] = bce_logits_forward(v, xr)[0]
    l[...] = w[:, None] * (sigmoid(v) - xr)
    db[...] = l.sum(axis=0)


@njit(**_jit)
def bce_eval(l, b, x, bce):
    """Eval-mode half of bce_grad: in place l <- l + b (the final logits, kept for the report's
    reconstructions) and bce[r] = sum_d [max(l_rd, 0) - x_id l_rd + log(1 + e^-|l_rd|)]."""
    K = l.shape[0] // x.shape[0]
    zero = l.dtype.type(0)
    for r in range(l.shape[0]):
        lr, xi = l[r], x[r // K]
        acc = zero
        for d in range(lr.shape[0]):
            v = lr[d] + b[d]
            lr[d] = v
            acc += max(v, zero) - xi[d] * v + log1p_unit(exp_neg(abs(v)))
        bce[r] = acc


def bce_eval_np(l, b, x, bce):
    from .layers import bce_logits_forward
    l += b
    bce[...] = bce_logits_forward(l, np.repeat(x, l.shape[0] // x.shape[0], axis=0))[0]


# ---------------------------------------------- heads: softmax, sample, loss terms
@njit(**_jit)
def heads_forward(a, mu, lv, eps, q, z):
    """q = softmax(a) by rows (B, K); z = mu + e^{lv/2} eps (B, d), or z = mu when eps has no
    rows (eval mode). Softmax as exp(a - max - log sum e^(a - max)), the log-sum-exp form of
    layers.log_softmax."""
    for i in range(a.shape[0]):
        _softmax(a[i], q[i])
    for i in range(mu.shape[0]):
        for j in range(mu.shape[1]):
            z[i, j] = mu[i, j] + math.exp(0.5 * lv[i, j]) * eps[i, j] if eps.shape[0] else mu[i, j]


@njit(**_jit)
def _softmax(a, out):
    m = a.max()
    s = 0.0
    for k in range(a.shape[0]):
        s += math.exp(a[k] - m)
    ls = math.log(s)
    for k in range(a.shape[0]):
        out[k] = math.exp(a[k] - m - ls)


def heads_forward_np(a, mu, lv, eps, q, z):
    from .layers import reparam_forward, softmax_forward
    q[...] = softmax_forward(a)[0]
    z[...] = reparam_forward(mu, lv, eps)[0] if eps.shape[0] else mu


@njit(**_jit)
def latent_terms(q, bce, mu, lv, pi, w, da, dmu, dlv, dpi_logits):
    """The five loss terms that act on q, z's Gaussian and pi (spec 3), and their gradients.
    w = (w_rec, w_kl, w_klc, w_dir, alpha, w_div). With cq = clip(q), lq = log cq:

        recon = w_rec/B sum q bce              dq  = w_rec/B bce
        kl_z  = w_kl/B sum -(1 + lv - mu^2 - e^lv)/2      dmu = w_kl/B mu, dlv = w_kl/B (e^lv - 1)/2
        kl_c  = w_klc/B sum cq (lq - log cpi)  dq += w_klc/B (lq - log cpi + 1)   [q inside clip]
                                               dpi = -w_klc/B sum_i cq / cpi      [pi inside clip]
        dir   = -w_dir (alpha - 1) sum log cpi dpi += -w_dir (alpha - 1) / cpi
        div   = w_div H(u), u = mean_i q       dq += -w_div/B (log cu + 1)        [u inside clip]
        da = q (dq - sum_k q dq),  dpi_logits = pi (dpi - sum_k pi dpi)   (softmax backward)

    q, bce, da (B, K); mu, lv, dmu, dlv (B, d); pi, dpi_logits (K,). Returns the five weighted
    terms (recon, kl_z, kl_c, dirichlet, diversity) as float64. Outside the clip range a
    clipped factor has derivative 0 (layers.clip_log_backward)."""
    w_rec, w_kl, w_klc, w_dir, alpha, w_div = w[0], w[1], w[2], w[3], w[4], w[5]
    B, K = q.shape
    rec, klz, klc = 0.0, 0.0, 0.0
    lpi, u = np.empty(K), np.zeros(K)
    dpi = np.zeros(K)
    for k in range(K):
        lpi[k] = math.log(min(max(pi[k], EPS), 1.0))
    for i in range(B):
        for k in range(K):
            u[k] += q[i, k]
    u /= B
    dir_ = -(alpha - 1.0) * lpi.sum()
    div = 0.0
    ddiv = np.zeros(K)                       # d div / d q_ik, the same for every row i
    for k in range(K):
        lu = math.log(min(max(u[k], EPS), 1.0))
        div -= u[k] * lu
        ddiv[k] = -w_div / B * (lu + (1.0 if EPS <= u[k] <= 1.0 else 0.0))
    dq = np.empty(K)
    for i in range(B):
        for k in range(K):
            qk = q[i, k]
            cq = min(max(qk, EPS), 1.0)
            lq = math.log(cq)
            rec += qk * bce[i, k]
            klc += cq * (lq - lpi[k])
            dq[k] = w_rec / B * bce[i, k] + ddiv[k]
            if EPS <= qk <= 1.0:
                dq[k] += w_klc / B * (lq - lpi[k] + 1.0)
            dpi[k] -= w_klc / B * cq
        s = 0.0
        for k in range(K):
            s += q[i, k] * dq[k]
        for k in range(K):
            da[i, k] = q[i, k] * (dq[k] - s)
        for j in range(mu.shape[1]):
            e = math.exp(lv[i, j])
            klz += -0.5 * (1.0 + lv[i, j] - mu[i, j] * mu[i, j] - e)
            dmu[i, j] = w_kl / B * mu[i, j]
            dlv[i, j] = w_kl / B * 0.5 * (e - 1.0)
    s = 0.0
    for k in range(K):
        inside = EPS <= pi[k] <= 1.0
        cpi = min(max(pi[k], EPS), 1.0)
        dpi[k] = (dpi[k] - w_dir * (alpha - 1.0)) / cpi if inside else 0.0
        s += pi[k] * dpi[k]
    for k in range(K):
        dpi_logits[k] = pi[k] * (dpi[k] - s)
    return w_rec * rec / B, w_kl * klz / B, w_klc * klc / B, w_dir * dir_, w_div * div


def latent_terms_np(q, bce, mu, lv, pi, w, da, dmu, dlv, dpi_logits):
    """The same through the layer pairs of layers.py, as model.py uses them."""
    from . import layers as L
    w_rec, w_kl, w_klc, w_dir, alpha, w_div = (float(v) for v in w)
    B = q.shape[0]
    klz, c_klz = L.gauss_kl_forward(mu, lv)
    klc, c_klc = L.cat_kl_forward(q, pi)
    dirp, c_dir = L.dirichlet_forward(pi, alpha)
    ent, c_ent = L.entropy_forward(q.mean(axis=0))
    dq = w_rec / B * bce
    dmu[...], dlv[...] = L.gauss_kl_backward(np.full(B, w_kl / B), c_klz)
    dq_klc, dpi = L.cat_kl_backward(np.full(B, w_klc / B), c_klc)
    dq = dq + dq_klc + L.entropy_backward(w_div, c_ent)[None, :] / B
    dpi = dpi + L.dirichlet_backward(w_dir, c_dir)
    da[...] = L.softmax_backward(dq, q)
    dpi_logits[...] = L.softmax_backward(dpi, pi)
    return (w_rec * float((q * bce).sum()) / B, w_kl * float(klz.sum()) / B,
            w_klc * float(klc.sum()) / B, w_dir * float(dirp), w_div * float(ent))


# ------------------------------------------------------------ clipped AdamW, one pass
@njit(**_jit)
def sq_norm(g):
    """sum_j g_j^2, accumulated in float64 (the first half of global-norm clipping)."""
    acc = 0.0
    for j in range(g.shape[0]):
        acc += np.float64(g[j]) * np.float64(g[j])
    return acc


def sq_norm_np(g):
    return float(np.dot(g.astype(np.float64), g.astype(np.float64)))


@njit(**_jit)
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


# ------------------------------------------- affine warp of 28 x 28 images (augment.py)
@njit(**_jit)
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


# ------------------------------------------ model gmm: the latent block (npvae/gmm.py)
@njit(**_jit)
def gmm_latent(mu, lv, z, y, rho, m, v, wts, train, q, s, dmu, dlv, dz, drho, dm, dv):
    """gmm.latent_forward (and, when `train`, latent_backward) in two passes over the rows.

    mu, lv, z (B, d); y (B,) int (-1 unlabeled); rho = pi_logits (K,); m, v = prior_mu,
    prior_lv (K, d); wts = (w_kl, w_klc, w_dir, alpha, w_div, w_cls) float64.
    Writes q = p(c|z) and s = log pi + log N(z; m, e^v) (B, K); with `train` the gradients
    dmu, dlv, dz (B, d), drho (K,), dm, dv (K, d) of the latent terms (divided by B). Returns
    the weighted sums over rows (kl_z, kl_c, dirichlet, diversity, cls), each times B as in
    latent_forward. Pass 1 needs the whole batch (the labeled count and the batch usage)
    before pass 2 can form any row's gradient. Arithmetic in float64."""
    B, d = mu.shape
    K = m.shape[0]
    w_kl, w_klc, w_dir, alpha, w_div, w_cls = wts[0], wts[1], wts[2], wts[3], wts[4], wts[5]
    mx = rho.max()
    lse = mx + math.log(np.exp(rho - mx).sum())
    lpi = rho - lse                                                          # (K,) float64
    pi = np.exp(lpi)
    iv = np.exp(-v.astype(np.float64))                                       # (K, d)
    half_log_2pi = 0.5 * d * math.log(2.0 * math.pi)
    n_lab = 0
    for i in range(B):
        if y[i] >= 0:
            n_lab += 1
    kl = np.empty((B, K))
    lq = np.empty((B, K))
    usage = np.zeros(K)
    klz = klc = ce = 0.0
    for i in range(B):                                    # pass 1: every row's terms
        s2 = np.exp(lv[i].astype(np.float64))
        smax = -np.inf
        for k in range(K):
            acc_n, acc_kl = 0.0, 0.0
            for j in range(d):
                dz_ = z[i, j] - m[k, j]
                dm_ = mu[i, j] - m[k, j]
                acc_n += dz_ * dz_ * iv[k, j] + v[k, j]
                acc_kl += v[k, j] - lv[i, j] + (s2[j] + dm_ * dm_) * iv[k, j] - 1.0
            sk = lpi[k] - 0.5 * acc_n - half_log_2pi
            s[i, k] = sk
            kl[i, k] = 0.5 * acc_kl
            smax = max(smax, sk)
        tot = 0.0
        for k in range(K):
            tot += math.exp(s[i, k] - smax)
        lse_i = smax + math.log(tot)
        for k in range(K):
            lq[i, k] = s[i, k] - lse_i
            q[i, k] = math.exp(lq[i, k])
        if y[i] >= 0:
            c = y[i]
            usage[c] += 1.0
            klz += kl[i, c]
            klc -= lpi[c]
            ce -= lq[i, c]
        else:
            for k in range(K):
                qk = math.exp(lq[i, k])
                usage[k] += qk
                klz += qk * kl[i, k]
                klc += qk * (lq[i, k] - lpi[k])
    usage /= B
    ent, dirp = 0.0, 0.0
    dH = np.empty(K)                                      # dH / d usage_k
    ddir = np.empty(K)                                    # d Dir / d pi_k
    for k in range(K):
        inside = usage[k] >= EPS and usage[k] <= 1.0
        lu = math.log(min(max(usage[k], EPS), 1.0))
        ent -= usage[k] * lu
        dH[k] = -(lu + (1.0 if inside else 0.0))
        lp = math.log(min(max(pi[k], EPS), 1.0))
        dirp -= (alpha - 1.0) * lp
        ddir[k] = -(alpha - 1.0) / pi[k] if (pi[k] >= EPS and pi[k] <= 1.0) else 0.0
    ce_mean = ce / n_lab if n_lab else 0.0
    sums = np.array([w_kl * klz, w_klc * klc, B * w_dir * dirp, B * w_div * ent,
                     B * w_cls * ce_mean])
    if not train:
        return sums
    dlpi = np.empty(K)
    for k in range(K):
        dlpi[k] = w_dir * ddir[k] * pi[k]
    dmv = np.zeros((K, d))
    dvv = np.zeros((K, d))
    ds = np.empty(K)
    gam = np.empty(K)
    for i in range(B):                                    # pass 2: gradients, row by row
        lab = y[i] >= 0
        for k in range(K):
            gam[k] = (1.0 if k == y[i] else 0.0) if lab else math.exp(lq[i, k])
            dlpi[k] -= w_klc / B * gam[k]
        if lab:
            for k in range(K):
                ds[k] = w_cls / n_lab * (math.exp(lq[i, k]) - gam[k])
        else:
            tot = 0.0
            for k in range(K):
                dgam = (w_kl * kl[i, k] + w_klc * (lq[i, k] - lpi[k]) + w_div * dH[k]) / B
                ds[k] = gam[k] * dgam + w_klc / B * gam[k]                  # d/d log q
                tot += ds[k]
            for k in range(K):
                ds[k] -= gam[k] * tot                                        # log-softmax
        s2 = np.exp(lv[i].astype(np.float64))
        for j in range(d):
            a_mu, a_lv, a_z = 0.0, 0.0, 0.0
            for k in range(K):
                G = w_kl / B * gam[k]
                dm_ = mu[i, j] - m[k, j]
                t = G * dm_ * iv[k, j]
                a_mu += t
                a_lv += 0.5 * G * (s2[j] * iv[k, j] - 1.0)
                dmv[k, j] -= t
                dvv[k, j] += 0.5 * G * (1.0 - (s2[j] + dm_ * dm_) * iv[k, j])
                dz_ = z[i, j] - m[k, j]
                t2 = ds[k] * dz_ * iv[k, j]
                a_z -= t2
                dmv[k, j] += t2
                dvv[k, j] += 0.5 * ds[k] * (dz_ * dz_ * iv[k, j] - 1.0)
            dmu[i, j], dlv[i, j], dz[i, j] = a_mu, a_lv, a_z
        for k in range(K):
            dlpi[k] += ds[k]
    tot = dlpi.sum()
    for k in range(K):
        drho[k] = dlpi[k] - pi[k] * tot
    dm[...] = dmv
    dv[...] = dvv
    return sums


def gmm_latent_np(mu, lv, z, y, rho, m, v, wts, train, q, s, dmu, dlv, dz, drho, dm, dv):
    from . import gmm
    from .config import Config
    from .params import Layout, Params
    B, d = mu.shape
    K = m.shape[0]
    cfg = Config(model="gmm", K=K, num_classes=K, latent_dim=d, w_kl=wts[0], w_klc=wts[1],
                 w_dir=wts[2], dirichlet_alpha=wts[3], w_div=wts[4], w_cls=wts[5])
    lay = Layout.from_config(cfg)
    p = Params(lay, np.zeros(lay.size, mu.dtype))
    g = p.zeros_like()
    p["pi_logits"][...], p["prior_mu"][...], p["prior_lv"][...] = rho, m, v
    sums, qq, ss, _, cache = gmm.latent_forward(p, mu, lv, z, y, cfg)
    q[...], s[...] = qq, ss
    if train:
        dmu[...], dlv[...], dz[...] = gmm.latent_backward(cache, g, cfg)
        drho[...], dm[...], dv[...] = g["pi_logits"], g["prior_mu"], g["prior_lv"]
    return np.array([sums[k] for k in ("kl_z", "kl_c", "dirichlet", "diversity", "cls")])


# ----------------------------------------------------------------------- the registry
NAMES = ("bias_lrelu", "lrelu_grad_bias", "pair_lrelu", "pair_lrelu_grad", "bce_grad",
         "bce_eval", "heads_forward", "latent_terms", "sq_norm", "adamw", "warp", "gmm_latent")


def numpy_twins() -> SimpleNamespace:
    """The NumPy twins under the kernels' names. fast.py uses them when NUMBA_DISABLE_JIT=1:
    the kernels then run as plain Python loops, correct but far too slow for a training run
    (the kernels themselves are still tested in that mode, at small shapes)."""
    return SimpleNamespace(**{n: globals()[f"{n}_np"] for n in NAMES})


def warm_up(dtype) -> None:
    """Compile (or load from Numba's cache) every kernel for `dtype` by calling it once on
    tiny C-contiguous arrays, the layout the fast path passes, so that no compilation happens
    inside a timed run."""
    dt = np.dtype(dtype)
    a, v, w = np.ones((2, 3), dt), np.ones(3, dt), np.ones(6)
    bias_lrelu(a, v)
    lrelu_grad_bias(a, a, v)
    pair_lrelu(a[:1], a, np.ones((2, 3), dt))
    pair_lrelu_grad(np.ones((2, 3), dt), a, a[:1].copy(), a.copy())
    bce_grad(a.copy(), v, a, np.ones(2, dt), np.ones(2, dt), v.copy())
    bce_eval(a.copy(), v, a, np.ones(2, dt))
    heads_forward(a, a, a, a, a.copy(), a.copy())
    heads_forward(a, a, a, a[:0], a.copy(), a.copy())
    latent_terms(a / 3, a, a, a, v / 3, w, a.copy(), a.copy(), a.copy(), v.copy())
    sq_norm(v)
    warp(np.ones((1, 4), dt), np.zeros((1, 2, 3)), 2, np.ones((1, 4), dt))
    gmm_latent(a, a, a, np.array([-1, 0]), v, a, a, np.ones(6), True, a.copy(), a.copy(),
               a.copy(), a.copy(), a.copy(), v.copy(), a.copy(), a.copy())
    adamw(v.copy(), v, v.copy(), v.copy(), v, 1.0, 1e-3, 0.9, 0.999, 1e-8, 1e-4, 1)
