"""The dense model's kernels: e^-t and log(1 + e) that vectorise, the leaky ReLU layers,
the BCE from logits with its gradient, the heads (softmax, sample) and the latent loss terms.
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from npvae.core.layers import EPS, LEAK

from .jit import FASTMATH, JIT


# ------------------------------------------------ e^-t and log(1 + e) that vectorise
# Numba calls libm for math.exp / math.log1p one element at a time (no SIMD: this Numba has no
# SVML), several times the cost of the matrix product that made the logits. In float32 the
# kernels use the two functions below instead: plain arithmetic that LLVM turns into vector
# code, accurate to ~2 ulp. float64 (and plain Python) keeps libm.
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


@overload(exp_neg, jit_options=dict(fastmath=FASTMATH))
def _exp_neg_jit(t):
    return _exp_neg_f32 if t == types.float32 else (lambda t: math.exp(-t))


@overload(log1p_unit, jit_options=dict(fastmath=FASTMATH))
def _log1p_unit_jit(e):
    return _log1p_unit_f32 if e == types.float32 else (lambda e: math.log1p(e))


# --------------------------------------------------------------- leaky ReLU layers
@njit(**JIT)
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


@njit(**JIT)
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


@njit(**JIT)
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


@njit(**JIT)
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
@njit(**JIT)
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
    from npvae.core.layers import bce_logits_forward, sigmoid
    v = l + b
    xr = np.repeat(x, l.shape[0] // x.shape[0], axis=0)
    bce[...] = bce_logits_forward(v, xr)[0]
    l[...] = w[:, None] * (sigmoid(v) - xr)
    db[...] = l.sum(axis=0)


@njit(**JIT)
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
    from npvae.core.layers import bce_logits_forward
    l += b
    bce[...] = bce_logits_forward(l, np.repeat(x, l.shape[0] // x.shape[0], axis=0))[0]


# ---------------------------------------------- heads: softmax, sample, loss terms
@njit(**JIT)
def heads_forward(a, mu, lv, eps, q, z):
    """q = softmax(a) by rows (B, K); z = mu + e^{lv/2} eps (B, d), or z = mu when eps has no
    rows (eval mode). Softmax as exp(a - max - log sum e^(a - max)), the log-sum-exp form of
    layers.log_softmax."""
    for i in range(a.shape[0]):
        _softmax(a[i], q[i])
    for i in range(mu.shape[0]):
        for j in range(mu.shape[1]):
            z[i, j] = mu[i, j] + math.exp(0.5 * lv[i, j]) * eps[i, j] if eps.shape[0] else mu[i, j]


@njit(**JIT)
def _softmax(a, out):
    m = a.max()
    s = 0.0
    for k in range(a.shape[0]):
        s += math.exp(a[k] - m)
    ls = math.log(s)
    for k in range(a.shape[0]):
        out[k] = math.exp(a[k] - m - ls)


def heads_forward_np(a, mu, lv, eps, q, z):
    from npvae.core.layers import reparam_forward, softmax_forward
    q[...] = softmax_forward(a)[0]
    z[...] = reparam_forward(mu, lv, eps)[0] if eps.shape[0] else mu


# latent_terms' weight vector w, by name (engine.weights(cfg, LATENT_TERMS_WEIGHTS))
LATENT_TERMS_WEIGHTS = ("w_rec", "w_kl", "w_klc", "w_dir", "dirichlet_alpha", "w_div")


@njit(**JIT)
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
    """npvae/core/model.py's terms_forward / terms_backward, then the two softmax backwards,
    in float64 as the kernel computes (in float32 the softmax backward's row sums cancel)."""
    from types import SimpleNamespace

    from npvae.core import layers as L
    from npvae.core.model import terms_backward, terms_forward
    q, bce, mu, lv, pi = (np.asarray(a, np.float64) for a in (q, bce, mu, lv, pi))
    terms, cache = terms_forward(q, bce, mu, lv, pi,
                                 SimpleNamespace(**dict(zip(LATENT_TERMS_WEIGHTS, map(float, w)))))
    dq, dmu[...], dlv[...], dpi = terms_backward(cache)
    da[...] = L.softmax_backward(dq, q)
    dpi_logits[...] = L.softmax_backward(dpi, pi)
    return tuple(terms.values())
