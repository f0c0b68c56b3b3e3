"""The mixture-prior VAE: forward pass, loss (spec sections 2-3) and its exact gradient.

Data flow, one z per image shared by every component (B images, K components):

    x (B,D) -> trunk -> h (B,H) -> a (B,K) -> q = softmax(a)               q(c|x)
                                -> mu (B,d), lv (B,d) -> z = mu + e^{lv/2} eps
    pi = softmax(pi_logits) (K,)                                          p(c)
    hz = lrelu(z Wz + bz) (B,P)     hc = lrelu(embed We + be) (K,P)
    g = concat(hz_i, hc_k) (B,K,2P) -> decoder MLP -> l (B,K,D)           logits of p(x|z,c)
    z -> classifier MLP (dropout in training) -> logits (B,C)

    L = w_rec/B sum_ik q_ik BCE(x_i, l_ik) + w_kl/B sum_i KL(q(z|x_i)||N(0,I))
      + w_klc/B sum_i KL(q(c|x_i)||pi) + w_dir Dir(pi) + w_div H(mean_i q_i) + w_cls CE_labeled

`forward` computes everything and keeps a cache; `backward` walks the same graph in reverse.
This is the readable reference path: every step is a layer pair from layers.py.
"""
from __future__ import annotations

import sys

import numpy as np

from . import gmm
from . import layers as L
from .blocks import TERMS, Outputs, mlp_backward, mlp_forward  # noqa: F401 - public here too
from .config import Config
from .noise import Noise
from .params import Params


def decoder_forward(p: Params, z, cfg: Config, components=None):
    """Logits of p(x | z, c=k) for every pair (row of z, component k).

        hz = lrelu(z W_z + b_z)          (B, P)    z pathway
        hc = lrelu(e_k W_e + b_e)        (K', P)   component pathway, k in `components`
        g  = concat(hz_i, hc_k)          (B, K', 2P)
        l  = decoder MLP(g)              (B, K', D)

    components: indices into 0..K-1 (default all K). Returns (l, cache)."""
    ks = np.arange(cfg.K) if components is None else np.atleast_1d(components)
    B, Kc, P = z.shape[0], ks.size, cfg.pathway_dim
    az, c_az = L.linear_forward(z, p["dec_z.W"], p["dec_z.b"])
    hz, c_hz = L.lrelu_forward(az)                                          # (B, P)
    ae, c_ae = L.linear_forward(p["embed"][ks], p["dec_e.W"], p["dec_e.b"])
    hc, c_hc = L.lrelu_forward(ae)                                          # (K', P)
    g = np.concatenate([np.broadcast_to(hz[:, None, :], (B, Kc, P)),
                        np.broadcast_to(hc[None, :, :], (B, Kc, P))], axis=-1)  # (B, K', 2P)
    n_dec = len(cfg.decoder_dims) + 1
    l, c_mlp = mlp_forward(g.reshape(B * Kc, 2 * P), p, "dec", n_dec, last_linear=True)
    return l.reshape(B, Kc, -1), (B, Kc, P, ks, c_az, c_hz, c_ae, c_hc, c_mlp)


def decoder_backward(dl, cache, g: Params):
    """Reverse of decoder_forward for all K components: writes the decoder's and the
    embeddings' gradients into g, returns dz (B, d)."""
    B, Kc, P, ks, c_az, c_hz, c_ae, c_hc, c_mlp = cache
    dg = mlp_backward(dl.reshape(B * Kc, -1), c_mlp, g, "dec").reshape(B, Kc, 2 * P)
    dhz = dg[:, :, :P].sum(axis=1)                      # hz_i was shared by all K pairs (B, P)
    dhc = dg[:, :, P:].sum(axis=0)                      # hc_k was shared by all B pairs (K, P)
    dz, g["dec_z.W"][...], g["dec_z.b"][...] = L.linear_backward(L.lrelu_backward(dhz, c_hz),
                                                                 c_az)
    g["embed"][ks], g["dec_e.W"][...], g["dec_e.b"][...] = L.linear_backward(
        L.lrelu_backward(dhc, c_hc), c_ae)
    return dz


def encoder_forward(p: Params, x, cfg: Config):
    """The encoder: trunk, then three heads. x (B, D) -> q = softmax(a) (B, K), mu (B, d),
    lv (B, d), and the caches (trunk, a, q, mu, lv) that backward needs."""
    h, c_trunk = mlp_forward(x, p, "enc", len(cfg.hidden_dims), last_linear=False)
    a, c_a = L.linear_forward(h, p["enc_c.W"], p["enc_c.b"])
    q, c_q = L.softmax_forward(a)                                           # (B, K)
    mu, c_mu = L.linear_forward(h, p["enc_mu.W"], p["enc_mu.b"])            # (B, d)
    lv, c_lv = L.linear_forward(h, p["enc_lv.W"], p["enc_lv.b"])            # (B, d)
    return q, mu, lv, (c_trunk, c_a, c_q, c_mu, c_lv)


def forward(p: Params, x, y, cfg: Config, noise: Noise | None = None):
    """Training mode when `noise` is given (sampled z, dropout), eval mode otherwise
    (z = mu, no dropout).  x (B, D) in [0,1], y (B,) ints with -1 = unlabeled.
    Returns (loss, terms dict of weighted terms, Outputs, cache)."""
    B = x.shape[0]
    q, mu, lv, (c_trunk, c_a, c_q, c_mu, c_lv) = encoder_forward(p, x, cfg)
    if noise is not None:
        z, c_z = L.reparam_forward(mu, lv, noise.eps)
    else:
        z, c_z = mu, None
    # prior
    pi, c_pi = L.softmax_forward(p["pi_logits"])                            # (K,)
    # decoder: both pathways, every (image, component) pair
    l, c_dec = decoder_forward(p, z, cfg)                                   # (B, K, D)
    # classifier on z
    masks = noise.masks if noise is not None else None
    n_cls = len(cfg.classifier_dims) + 1
    cls_logits, c_cls = mlp_forward(z, p, "cls", n_cls, last_linear=True, masks=masks)

    # loss terms, each already weighted (spec section 3)
    bce, c_bce = L.bce_logits_forward(l, x[:, None, :])                     # (B, K)
    terms, c_terms = terms_forward(q, bce, mu, lv, pi, cfg)
    ce, c_ce = L.labeled_ce_forward(cls_logits, y)                          # scalar
    terms["cls"] = cfg.w_cls * float(ce)
    loss = sum(terms.values())
    out = Outputs(q, mu, lv, z, l, cls_logits, pi)
    cache = (B, q, c_trunk, c_a, c_q, c_mu, c_lv, c_z, c_pi, c_dec, c_cls, c_bce, c_terms, c_ce)
    return loss, terms, out, cache


def terms_forward(q, bce, mu, lv, pi, cfg: Config):
    """The five weighted terms that act on q, z's Gaussian and pi (spec section 3):

        recon = w_rec/B sum_ik q_ik bce_ik       kl_z = w_kl/B sum_i KL(N(mu_i, e^lv_i) || N(0, I))
        kl_c  = w_klc/B sum_i KL(q_i || pi)      dirichlet = w_dir Dir(pi; alpha)
        diversity = w_div H(mean_i q_i)

    q, bce (B, K); mu, lv (B, d); pi (K,). Returns (terms dict, cache)."""
    B = q.shape[0]
    klz, c_klz = L.gauss_kl_forward(mu, lv)                                 # (B,)
    klc, c_klc = L.cat_kl_forward(q, pi)                                    # (B,)
    dirp, c_dir = L.dirichlet_forward(pi, cfg.dirichlet_alpha)              # scalar
    ent, c_ent = L.entropy_forward(q.mean(axis=0))                          # H(p_hat)
    terms = {"recon": cfg.w_rec * float((q * bce).sum()) / B,
             "kl_z": cfg.w_kl * float(klz.sum()) / B,
             "kl_c": cfg.w_klc * float(klc.sum()) / B,
             "dirichlet": cfg.w_dir * float(dirp),
             "diversity": cfg.w_div * float(ent)}
    return terms, (B, q, bce, c_klz, c_klc, c_dir, c_ent, cfg)


def terms_backward(cache):
    """Reverse of terms_forward: dq (B, K), dmu, dlv (B, d), dpi (K,). (d/d bce = w_rec/B q.)"""
    B, q, bce, c_klz, c_klc, c_dir, c_ent, cfg = cache
    dq = cfg.w_rec / B * bce                                                # (B, K)
    dmu, dlv = L.gauss_kl_backward(np.full(B, cfg.w_kl / B, q.dtype), c_klz)
    dq_klc, dpi = L.cat_kl_backward(np.full(B, cfg.w_klc / B, q.dtype), c_klc)
    dq += dq_klc
    dpi += L.dirichlet_backward(cfg.w_dir, c_dir)                           # (K,)
    dq += L.entropy_backward(cfg.w_div, c_ent)[None, :] / B                 # d usage / d q = 1/B
    return dq, dmu, dlv, dpi


def backward(p: Params, cache, cfg: Config) -> Params:
    """Exact gradient of the total loss with respect to every parameter array."""
    B, q, c_trunk, c_a, c_q, c_mu, c_lv, c_z, c_pi, c_dec, c_cls, c_bce, c_terms, c_ce = cache
    g = p.zeros_like()
    # loss terms -> their inputs
    dl = L.bce_logits_backward(cfg.w_rec / B * q, c_bce)                    # (B, K, D)
    dq, dmu, dlv, dpi = terms_backward(c_terms)
    dcls = L.labeled_ce_backward(cfg.w_cls, c_ce)                           # (B, C)

    # classifier -> z
    dz = mlp_backward(dcls, c_cls, g, "cls")                                # (B, d)
    # decoder -> both pathways -> z and the embeddings
    dz += decoder_backward(dl, c_dec, g)
    # prior
    g["pi_logits"][...] = L.softmax_backward(dpi, c_pi)
    # z -> mu, lv (eval mode: z = mu)
    if c_z is not None:
        dmu_z, dlv_z = L.reparam_backward(dz, c_z)
        dmu, dlv = dmu + dmu_z, dlv + dlv_z
    else:
        dmu = dmu + dz
    # encoder heads -> trunk
    da = L.softmax_backward(dq, c_q)
    dh, g["enc_c.W"][...], g["enc_c.b"][...] = L.linear_backward(da, c_a)
    dh_mu, g["enc_mu.W"][...], g["enc_mu.b"][...] = L.linear_backward(dmu, c_mu)
    dh_lv, g["enc_lv.W"][...], g["enc_lv.b"][...] = L.linear_backward(dlv, c_lv)
    mlp_backward(dh + dh_mu + dh_lv, c_trunk, g, "enc")
    return g


def graph(cfg: Config):
    """The module holding forward/backward for cfg.model: this one, or npvae/core/gmm.py."""
    if cfg.model == "gmm":
        return gmm
    return sys.modules[__name__]


def loss_and_grads(p: Params, x, y, noise: Noise, cfg: Config, tau=None):
    """Pure function of (params, batch, noise[, tau]) -> (loss, grads, terms), for either
    model; tau (K, C) is model gmm's class map under classifier tau (npvae/core/tau.py)."""
    m = graph(cfg)
    loss, terms, _, cache = m.forward(p, x, y, cfg, noise, **_tau(cfg, tau))
    return loss, m.backward(p, cache, cfg), terms


def _tau(cfg: Config, tau) -> dict:
    """The tau keyword for gmm.forward under classifier tau; nothing for the other cases."""
    return {"tau": tau} if cfg.classifier == "tau" else {}


def evaluate(p: Params, x, cfg: Config, y=None, tau=None):
    """Eval-mode forward (z = mu, no dropout): (Outputs, terms). y defaults to all unlabeled.
    Model gmm: Outputs.logits is (B, 1, D) (one decoder) and cls_logits = log p(c, z)."""
    if y is None:
        y = np.full(x.shape[0], -1)
    loss, terms, out, _ = graph(cfg).forward(p, x, y, cfg, None, **_tau(cfg, tau))
    return out, {**terms, "loss": loss}


def responsibilities(p: Params, x, cfg: Config):
    """Eval-mode q(c|x) (B, K), mu (B, d) and the class logits (B, C) without running the
    decoder: the seed's encoder head and classifier, or gmm's p(c|z=mu) (logits log p(c, mu))."""
    if cfg.model == "gmm":
        mu, _, _ = gmm.encoder_forward(p, x, cfg)
        _, s, lq, _ = gmm.responsibilities_forward(p, mu)
        return np.exp(lq), mu, s
    q, mu, _, _ = encoder_forward(p, x, cfg)
    n_cls = len(cfg.classifier_dims) + 1
    return q, mu, mlp_forward(mu, p, "cls", n_cls, last_linear=True)[0]

