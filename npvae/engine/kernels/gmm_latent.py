"""Model gmm's latent block (npvae/core/gmm.py) fused into two passes over the rows.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from npvae.core.layers import EPS

from .jit import JIT


# gmm_latent's weight vector wts, by name (engine.weights(cfg, GMM_LATENT_WEIGHTS))
GMM_LATENT_WEIGHTS = ("w_kl", "w_klc", "w_dir", "dirichlet_alpha", "w_div", "w_cls")


@njit(**JIT)
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
    from npvae.core import gmm
    from npvae.core.config import Config
    from npvae.core.params import Layout, Params
    B, d = mu.shape
    K = m.shape[0]
    cfg = Config(model="gmm", K=K, num_classes=K, latent_dim=d,
                 **dict(zip(GMM_LATENT_WEIGHTS, map(float, wts))))
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
