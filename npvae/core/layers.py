"""Layers and loss terms as forward/backward pairs (cs231n style).

Each `<name>_forward` returns its output and a cache; `<name>_backward` takes the upstream
gradient d(output) and the cache and returns the gradients of the inputs, in the order the
forward took them. Shapes: B rows, N features; `clip(p) = min(max(p, EPS), 1)`.

Stable numerics live here and nowhere else: BCE from logits, log-softmax via logsumexp,
and the clipped logarithm of probabilities.
"""
from __future__ import annotations

import numpy as np

EPS = 1e-8          # the clip floor for probabilities inside logs (spec notation)
LEAK = 0.01         # lrelu(a) = max(a, 0.01 a)


# ----------------------------------------------------------------------------- dense
def linear_forward(x, W, b):
    """y = x W + b.   x (B, N), W (N, M), b (M,) -> y (B, M)."""
    return x @ W + b, (x, W)


def linear_backward(dy, cache):
    """dx = dy W^T, dW = x^T dy, db = sum_rows dy."""
    x, W = cache
    return dy @ W.T, x.T @ dy, dy.sum(axis=0)


# ----------------------------------------------------------------------- leaky ReLU
def lrelu_forward(a):
    """y = max(a, 0.01 a), elementwise, any shape."""
    return np.where(a > 0, a, LEAK * a), a


def lrelu_backward(dy, cache):
    """dy/da = 1 where a > 0, else 0.01."""
    a = cache
    return np.where(a > 0, dy, LEAK * dy)


# ------------------------------------------------------------------ inverted dropout
def dropout_forward(x, mask):
    """y = x * mask, where mask holds 0 or 1/keep (drawn in noise.py): the expected value
    of y equals x, so evaluation needs no rescaling (it simply skips this layer)."""
    return x * mask, mask


def dropout_backward(dy, cache):
    return dy * cache


# --------------------------------------------------------------------------- softmax
def log_softmax(a):
    """log softmax over the last axis through logsumexp (never overflows)."""
    a = a - a.max(axis=-1, keepdims=True)
    return a - np.log(np.exp(a).sum(axis=-1, keepdims=True))


def softmax_forward(a):
    """p = softmax(a) over the last axis.   a (..., K) -> p (..., K)."""
    p = np.exp(log_softmax(a))
    return p, p


def softmax_backward(dp, cache):
    """da_k = p_k (dp_k - sum_j p_j dp_j): the Jacobian diag(p) - p p^T applied to dp."""
    p = cache
    return p * (dp - (p * dp).sum(axis=-1, keepdims=True))


# ----------------------------------------------------------------- clipped logarithm
def clip_log_forward(p):
    """log clip(p), clip(p) = min(max(p, EPS), 1): keeps log finite for p -> 0."""
    return np.log(np.clip(p, EPS, 1.0)), p


def clip_log_backward(dy, cache):
    """d log clip(p) / dp = 1/p inside the clip, 0 where p < EPS is clipped. At p = 1 we take
    the left derivative 1/p = 1: probabilities reach 1 only from below (float rounding)."""
    p = cache
    inside = (p >= EPS) & (p <= 1.0)
    return np.where(inside, dy / np.clip(p, EPS, 1.0), 0.0)


# ------------------------------------------------------------------ BCE from logits
def bce_logits_forward(l, x):
    """BCE(x, l) = sum_d [max(l_d, 0) - x_d l_d + log(1 + exp(-|l_d|))], summed over the last
    axis: -[x log sigmoid(l) + (1 - x) log(1 - sigmoid(l))] without ever forming log(0).
    l (..., D) logits, x broadcastable to l, targets in [0, 1] -> (...,)."""
    return (np.maximum(l, 0) - x * l + np.log1p(np.exp(-np.abs(l)))).sum(axis=-1), (l, x)


def bce_logits_backward(dy, cache):
    """dBCE/dl_d = sigmoid(l_d) - x_d, scaled by the upstream dy (...,). Returns dl only
    (targets are data)."""
    l, x = cache
    return (sigmoid(l) - x) * dy[..., None]


def sigmoid(l):
    """1 / (1 + e^-l) written so that neither branch overflows."""
    e = np.exp(-np.abs(l))
    return np.where(l >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# ------------------------------------------------------------------ Gaussian KL
def gauss_kl_forward(mu, lv):
    """KL(N(mu, e^lv) || N(0, I)) per row = sum_j -0.5 (1 + lv - mu^2 - e^lv).
    mu, lv (B, d) -> (B,)."""
    return (-0.5 * (1.0 + lv - mu * mu - np.exp(lv))).sum(axis=-1), (mu, lv)


def gauss_kl_backward(dy, cache):
    """dKL/dmu = mu, dKL/dlv = 0.5 (e^lv - 1)."""
    mu, lv = cache
    dy = dy[:, None]
    return dy * mu, dy * 0.5 * (np.exp(lv) - 1.0)


# ---------------------------------------------------------- reparameterised sample
def reparam_forward(mu, lv, eps):
    """z = mu + exp(lv / 2) * eps, eps ~ N(0, I) drawn outside (frozen noise).  (B, d)."""
    s = np.exp(0.5 * lv)
    return mu + s * eps, (s, eps)


def reparam_backward(dz, cache):
    """dz/dmu = 1, dz/dlv = 0.5 exp(lv/2) eps."""
    s, eps = cache
    return dz, dz * 0.5 * s * eps


# ------------------------------------------------------------ categorical KL vs pi
def cat_kl_forward(q, pi):
    """Per row: sum_k clip(q_k) (log clip(q_k) - log clip(pi_k)).  q (B, K), pi (K,) -> (B,)."""
    cq = np.clip(q, EPS, 1.0)
    lq, cache_q = clip_log_forward(q)
    lpi, cache_pi = clip_log_forward(pi)
    return (cq * (lq - lpi)).sum(axis=-1), (q, cq, lq, lpi, cache_q, cache_pi)


def cat_kl_backward(dy, cache):
    """d/dq_k = [clip'](log cq_k - log cpi_k) + cq_k d(log cq_k)/dq_k;
    d/dpi_k = -sum_i cq_ik d(log cpi_k)/dpi_k.   Returns dq (B, K), dpi (K,)."""
    q, cq, lq, lpi, cache_q, cache_pi = cache
    dy = dy[:, None]
    inside = (q >= EPS) & (q <= 1.0)                      # derivative of clip itself
    dq = dy * np.where(inside, lq - lpi, 0.0) + clip_log_backward(dy * cq, cache_q)
    dpi = clip_log_backward(-(dy * cq).sum(axis=0), cache_pi)
    return dq, dpi


# --------------------------------------------------------------------- entropy H(p)
def entropy_forward(p):
    """H(p) = -sum_k p_k log clip(p_k) over the last axis.  p (..., K) -> (...,)."""
    lp, cache = clip_log_forward(p)
    return -(p * lp).sum(axis=-1), (p, lp, cache)


def entropy_backward(dy, cache):
    """dH/dp_k = -(log clip(p_k) + p_k d(log clip(p_k))/dp_k)."""
    p, lp, cache_l = cache
    dy = np.asarray(dy)[..., None]
    return -(dy * lp) - clip_log_backward(dy * p, cache_l)


# ------------------------------------------------------- Dirichlet penalty on pi
def dirichlet_forward(pi, alpha):
    """-(alpha - 1) sum_k log clip(pi_k): the negative log-density of a symmetric
    Dirichlet(alpha) prior on pi, up to a constant.  pi (K,) -> scalar."""
    lpi, cache = clip_log_forward(pi)
    return -(alpha - 1.0) * lpi.sum(), (alpha, cache)


def dirichlet_backward(dy, cache):
    alpha, cache_l = cache
    return clip_log_backward(np.full_like(cache_l, -(alpha - 1.0) * dy), cache_l)


# ------------------------------------------- cross-entropy over the labeled rows
def labeled_ce_forward(logits, y):
    """Mean over rows with y >= 0 of -log softmax(logits)[y]; 0 when no row is labeled
    (y = -1 marks an unlabeled image).  logits (B, C), y (B,) -> scalar."""
    labeled = y >= 0
    n = int(labeled.sum())
    logp = log_softmax(logits)
    if n == 0:
        return 0.0 * logits.sum(), (logp, y, labeled, n)
    return -logp[labeled, y[labeled]].sum() / n, (logp, y, labeled, n)


def labeled_ce_backward(dy, cache):
    """dCE/dlogits = (softmax - onehot(y)) / n on labeled rows, 0 elsewhere."""
    logp, y, labeled, n = cache
    dlogits = np.zeros_like(logp)
    if n:
        rows = np.flatnonzero(labeled)
        dlogits[rows] = np.exp(logp[rows])
        dlogits[rows, y[rows]] -= 1.0
        dlogits *= dy / n
    return dlogits


# ------------------------------------------------------ log-softmax (model gmm)
def log_softmax_forward(a):
    """lp = log softmax(a) over the last axis.   a (..., K) -> lp (..., K)."""
    lp = log_softmax(a)
    return lp, lp


def log_softmax_backward(dlp, cache):
    """da_k = dlp_k - p_k sum_j dlp_j, with p = e^lp."""
    lp = cache
    return dlp - np.exp(lp) * dlp.sum(axis=-1, keepdims=True)


# ------------------------------- Gaussian mixture prior p(z|c) = N(m_c, e^{v_c}) (gmm)
def gauss_logpdf_mix_forward(z, m, v):
    """log N(z_i; m_c, diag e^{v_c}) for every row i and component c
        = -1/2 sum_j [(z_ij - m_cj)^2 e^{-v_cj} + v_cj + log 2 pi].
    z (B, d), m (K, d), v (K, d) log-variances -> (B, K)."""
    diff = z[:, None, :] - m[None, :, :]                                    # (B, K, d)
    iv = np.exp(-v)                                                         # (K, d)
    out = -0.5 * (diff * diff * iv + v + np.log(2.0 * np.pi)).sum(axis=-1)
    return out, (diff, iv)


def gauss_logpdf_mix_backward(dy, cache):
    """dz_i = -sum_c dy_ic (z_i - m_c) e^{-v_c};  dm_c = sum_i dy_ic (z_i - m_c) e^{-v_c};
    dv_c = 1/2 sum_i dy_ic ((z_i - m_c)^2 e^{-v_c} - 1).   Returns dz, dm, dv."""
    diff, iv = cache
    t = dy[:, :, None] * diff * iv                                          # (B, K, d)
    dv = 0.5 * (t * diff).sum(axis=0) - 0.5 * dy.sum(axis=0)[:, None]
    return -t.sum(axis=1), t.sum(axis=0), dv


def gauss_kl_mix_forward(mu, lv, m, v):
    """KL(N(mu_i, e^{lv_i}) || N(m_c, e^{v_c})) for every row i and component c
        = 1/2 sum_j [v_cj - lv_ij + (e^{lv_ij} + (mu_ij - m_cj)^2) e^{-v_cj} - 1].
    mu, lv (B, d), m, v (K, d) -> (B, K)."""
    diff = mu[:, None, :] - m[None, :, :]                                   # (B, K, d)
    iv, s2 = np.exp(-v), np.exp(lv)
    r = (s2[:, None, :] + diff * diff) * iv                                 # (B, K, d)
    out = 0.5 * (v[None] - lv[:, None, :] + r - 1.0).sum(axis=-1)
    return out, (diff, iv, s2, r)


def gauss_kl_mix_backward(dy, cache):
    """dmu_i = sum_c dy_ic (mu_i - m_c) e^{-v_c};   dlv_i = 1/2 sum_c dy_ic (e^{lv_i - v_c} - 1);
    dm_c = -sum_i dy_ic (mu_i - m_c) e^{-v_c};  dv_c = 1/2 sum_i dy_ic (1 - r_ic).
    Returns dmu, dlv, dm, dv."""
    diff, iv, s2, r = cache
    dy3 = dy[:, :, None]                                                    # (B, K, 1)
    t = dy3 * diff * iv                                                     # (B, K, d)
    dlv = 0.5 * ((dy3 * iv).sum(axis=1) * s2 - dy.sum(axis=1)[:, None])
    dv = 0.5 * (dy3 * (1.0 - r)).sum(axis=0)
    return t.sum(axis=1), dlv, -t.sum(axis=0), dv
