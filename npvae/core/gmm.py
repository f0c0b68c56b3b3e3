"""Model "gmm": a Gaussian-mixture prior whose components are the classes (docs/math.md, section
14).

The seed's model (npvae/core/model.py) lets q(c|x) come from its own encoder head and gives every
component the same prior N(0, I), so nothing ties a component to a digit. Here, as in VaDE
(Jiang et al. 2017) made semi-supervised the way M2 (Kingma et al. 2014) is:

    x (B,D) -> trunk -> h -> mu (B,d), lv (B,d);   z = mu + e^{lv/2} eps   (z = mu in eval)
    p(c) = pi = softmax(pi_logits) (K,)            p(z|c) = N(m_c, diag e^{v_c})   m, v (K,d)
    s_ic = log pi_c + log N(z_i; m_c, e^{v_c})     (B,K)   log p(c, z_i)
    q(c|x_i) = p(c|z_i) = softmax_c(s_i)           the responsibilities: Bayes' rule on the prior
    x_i ~ Bernoulli-logits(decoder(z_i))           one decoder shared by every component

An image's posterior over components, gamma_i, is q_i if it is unlabeled and onehot(y_i) if its
label is known (the component *is* the class, K = num_classes). The loss, per batch of B rows:

    L_rec = w_rec/B sum_i BCE(x_i, decoder(z_i))
    L_klz = w_kl /B sum_i sum_c gamma_ic KL(N(mu_i, e^{lv_i}) || N(m_c, e^{v_c}))
    L_klc = w_klc/B sum_i sum_c gamma_ic (log gamma_ic - log pi_c)      (0 log 0 = 0)
    L_dir = w_dir Dir(pi),   L_div = w_div H(mean_i gamma_i)            (as in the seed)
    L_cls = w_cls mean over labeled rows of -log q(y_i|x_i)             the classifier is q itself

With w_rec = w_kl = w_klc = 1 and the other weights 0 it is the negative ELBO of the mixture
model; the training loop scales w_kl and w_klc by Config.kl_scale(epoch) (warm-up, anneal).
The terms keep the seed's names, so histories, reports and the engines treat both models alike.
Config.classifier = "tau" (docs/math.md, section 18) lets K >= num_classes: gamma = q on every
row, and L_cls = w_cls mean over labeled rows of -log sum_c q(c|x_i) tau[c, y_i], tau (K, C)
the map from components to classes that training forms every epoch (npvae/core/tau.py).
Config.encoder / decoder = "conv" put 3x3 stride-2 convolutions before the trunk / transposed
ones after the decoder MLP (npvae/core/convnet.py); everything between them is unchanged.

Every function that runs a block takes `ops`, a Blocks table (npvae/core/blocks.py): None means
READABLE, the functions of this file and layers.py; the engine passes fused substitutes.
"""
from __future__ import annotations

import dataclasses
from functools import partial

import numpy as np

from . import consistency as C
from . import convnet
from . import layers as L
from . import tau as T
from .blocks import Blocks, Outputs, mlp_backward, mlp_forward
from .config import Config
from .noise import Noise
from .params import Params


def encoder_forward(p: Params, x, cfg: Config, ops: Blocks | None = None):
    """[The conv layers,] the trunk and the mu / lv heads. x (B, D) -> mu, lv (B, d) and the
    caches."""
    ops, c_conv = ops or READABLE, None
    if cfg.encoder == "conv":
        x, c_conv = convnet.encoder_forward(p, x, cfg, gather=ops.gather,
                                            scatter=ops.scatter)  # (B, Ch s s)
    h, c_trunk = ops.mlp_forward(x, p, "enc", len(cfg.hidden_dims), False)
    mu, c_mu = L.linear_forward(h, p["enc_mu.W"], p["enc_mu.b"])            # (B, d)
    lv, c_lv = L.linear_forward(h, p["enc_lv.W"], p["enc_lv.b"])            # (B, d)
    return mu, lv, (ops, c_conv, c_trunk, c_mu, c_lv)


def decoder_forward(p: Params, z, cfg: Config, ops: Blocks | None = None):
    """The decoder MLP [and the transposed conv layers]: z (B, d) -> logits (B, D), cache."""
    ops, conv, c_conv = ops or READABLE, cfg.decoder == "conv", None
    l, c_mlp = ops.mlp_forward(z, p, "dec", len(cfg.decoder_dims) + 1, not conv)
    if conv:
        l, c_conv = convnet.decoder_forward(p, l, cfg, gather=ops.gather,
                                            scatter=ops.scatter)  # (B, D)
    return l, (ops, c_mlp, c_conv)


def decoder_backward(dl, cache, g: Params):
    """dl (B, D) -> writes the decoder's gradients into g; returns dz (B, d)."""
    ops, c_mlp, c_conv = cache
    if c_conv is not None:
        dl = convnet.decoder_backward(dl, c_conv, g)                        # (B, Ch s s)
    return ops.mlp_backward(dl, c_mlp, g, "dec", True)                      # (B, d)


def responsibilities_forward(p: Params, z):
    """s = log pi + log N(z; m_c, e^{v_c}) (B, K) and lq = log softmax(s) = log p(c|z).
    Returns lpi (K,), s, lq and the caches."""
    lpi, c_lpi = L.log_softmax_forward(p["pi_logits"])                      # (K,)
    logn, c_pdf = L.gauss_logpdf_mix_forward(z, p["prior_mu"], p["prior_lv"])   # (B, K)
    s = lpi + logn                                                          # (B, K)
    lq, c_lq = L.log_softmax_forward(s)
    return lpi, s, lq, (c_lpi, c_pdf, c_lq)


def posterior(lq, y):
    """gamma (B, K): onehot(y_i) on labeled rows (y >= 0), q = e^lq elsewhere; and
    log gamma with 0 on labeled rows (their gamma log gamma is 0: 1 log 1 and 0 log 0)."""
    labeled = y >= 0
    gam = np.exp(lq)
    lgam = lq.copy()
    rows = np.flatnonzero(labeled)
    gam[rows] = 0.0
    gam[rows, y[rows]] = 1.0
    lgam[rows] = 0.0
    return gam, lgam, labeled


def latent_forward(p: Params, mu, lv, z, y, cfg: Config, tau=None):
    """Everything between the encoder and the decoder: the responsibilities and every loss
    term but the reconstruction (weighted, summed over the B rows, not yet divided by B).
    mu, lv, z (B, d), y (B,) -> (sums dict, q (B, K), s (B, K), pi (K,), cache).
    cfg.classifier "tau" (docs/math.md, section 18): tau (K, C) maps components to classes,
    gamma = q on every row (a label no longer names one component) and the labeled term is
    -log sum_c q(c|x) tau[c, y] (npvae/core/tau.py), tau a constant; a batch with no labeled
    row needs no tau (None)."""
    with_tau = cfg.classifier == "tau"
    if with_tau and tau is None and (y >= 0).any():
        raise ValueError("classifier tau needs the map tau (K, C): npvae/core/tau.py:tau_map")
    lpi, s, lq, c_resp = responsibilities_forward(p, z)
    gam, lgam, labeled = posterior(lq, np.full_like(y, -1) if with_tau else y)
    kl, c_kl = L.gauss_kl_mix_forward(mu, lv, p["prior_mu"], p["prior_lv"])  # (B, K)
    klc = (gam * (lgam - lpi)).sum(axis=-1)                                 # (B,)
    pi = np.exp(lpi)
    dirp, c_dir = L.dirichlet_forward(pi, cfg.dirichlet_alpha)
    ent, c_ent = L.entropy_forward(gam.mean(axis=0))
    ce, c_ce = (T.tau_ce_forward(lq, y, tau) if with_tau
                else L.labeled_ce_forward(s, y))                            # -log q(y|x)
    B = mu.shape[0]
    sums = {"kl_z": cfg.w_kl * float((gam * kl).sum()), "kl_c": cfg.w_klc * float(klc.sum()),
            "dirichlet": B * cfg.w_dir * float(dirp), "diversity": B * cfg.w_div * float(ent),
            "cls": B * cfg.w_cls * float(ce)}
    cache = (B, pi, lpi, gam, lgam, labeled, kl, c_resp, c_kl, c_dir, c_ent, (with_tau, c_ce))
    return sums, np.exp(lq), s, pi, cache


def latent_backward(cache, g: Params, cfg: Config):
    """Reverse of latent_forward for the loss (sums / B): writes the prior's gradients
    (pi_logits, prior_mu, prior_lv) into g and returns dmu, dlv (B, d) and dz (B, d)."""
    B, pi, lpi, gam, lgam, labeled, kl, c_resp, c_kl, c_dir, c_ent, (with_tau, c_ce) = cache
    c_lpi, c_pdf, c_lq = c_resp
    # KL to the components, weighted by gamma: d/dkl = gamma, d/dgamma = kl
    dmu, dlv, dm, dv = L.gauss_kl_mix_backward(cfg.w_kl / B * gam, c_kl)
    dgam = cfg.w_kl / B * kl + cfg.w_klc / B * (lgam - lpi)                 # (B, K)
    dlgam = cfg.w_klc / B * gam                                             # d/d log gamma
    dlpi = -cfg.w_klc / B * gam.sum(axis=0)                                 # (K,)
    dgam += L.entropy_backward(cfg.w_div, c_ent)[None, :] / B               # d usage/d gamma = 1/B
    dlpi += L.dirichlet_backward(cfg.w_dir, c_dir) * pi                     # pi = e^lpi
    # gamma = q = e^lq and log gamma = lq on unlabeled rows only (labeled rows are constants)
    q = np.exp(c_lq)
    dlq = np.where(labeled[:, None], 0.0, q * dgam + dlgam)
    if with_tau:                       # the tau term depends on s through lq
        ds = L.log_softmax_backward(dlq + T.tau_ce_backward(cfg.w_cls, c_ce), c_lq)
    else:
        ds = L.log_softmax_backward(dlq, c_lq) + L.labeled_ce_backward(cfg.w_cls, c_ce)
    # s = lpi + log N(z; m, e^v)
    dlpi += ds.sum(axis=0)
    dz, dm_s, dv_s = L.gauss_logpdf_mix_backward(ds, c_pdf)
    g["prior_mu"][...] = dm + dm_s
    g["prior_lv"][...] = dv + dv_s
    g["pi_logits"][...] = L.log_softmax_backward(dlpi, c_lpi)
    return dmu, dlv, dz


def rows_forward(p: Params, x, eps, cfg: Config, ops: Blocks | None = None):
    """The part of a forward pass that is image by image: encoder, z = mu + e^{lv/2} eps
    (z = mu when eps is None), decoder, BCE. x (B, D), eps (B, d) or None ->
    (mu, lv, z (B, d), logits (B, D), bce (B,)) and the cache."""
    ops = ops or READABLE
    mu, lv, c_enc = encoder_forward(p, x, cfg, ops)
    z, c_z = (mu, None) if eps is None else L.reparam_forward(mu, lv, eps)
    l, c_dec = decoder_forward(p, z, cfg, ops)                              # (B, D)
    bce, c_bce = ops.bce_forward(l, x)                                      # (B,)
    return (mu, lv, z, l, bce), (c_enc, c_z, c_dec, (ops, c_bce))


def rows_backward_decoder(w, cache, g: Params):
    """The reconstruction sum_i w_i BCE_i -> the decoder (its gradients written into g) ->
    dz (B, d). w (B,)."""
    _, _, c_dec, (ops, c_bce) = cache
    dl = ops.bce_backward(w.astype(c_bce[0].dtype), c_bce)                 # (B, D)
    return decoder_backward(dl, c_dec, g)                                   # (B, d)


def rows_backward_encoder(dmu, dlv, dz, cache, g: Params) -> None:
    """The gradients dmu, dlv, dz (B, d) of the loss -> through z = mu + e^{lv/2} eps (z = mu
    in eval mode), the heads, the trunk [and the conv layers]: written into g."""
    c_enc, c_z, _, _ = cache
    if c_z is not None:
        dmu_z, dlv_z = L.reparam_backward(dz, c_z)                          # (B, d) each
        dmu, dlv = dmu + dmu_z, dlv + dlv_z
    else:
        dmu = dmu + dz                                                      # (B, d)
    encoder_backward(dmu, dlv, c_enc, g)


def encoder_backward(dmu, dlv, cache, g: Params) -> None:
    """dmu, dlv (B, d) -> the heads, the trunk [and the conv layers]: written into g.
    dlv None: the loss does not depend on lv (its head's gradients are 0)."""
    ops, c_conv, c_trunk, c_mu, c_lv = cache
    dh, g["enc_mu.W"][...], g["enc_mu.b"][...] = L.linear_backward(dmu, c_mu)  # (B, H[-1])
    if dlv is None:
        g["enc_lv.W"][...], g["enc_lv.b"][...] = 0.0, 0.0
    else:
        dh_lv, g["enc_lv.W"][...], g["enc_lv.b"][...] = L.linear_backward(dlv, c_lv)
        dh = dh + dh_lv                                                     # (B, H[-1])
    dx = ops.mlp_backward(dh, c_trunk, g, "enc", c_conv is not None)        # (B, Ch s s)
    if c_conv is not None:
        convnet.encoder_backward(dx, c_conv, g)                             # (B, D), unused


def with_tau(ops: Blocks | None, cfg: Config, tau) -> Blocks:
    """ops for cfg: with classifier tau, the readable latent block bound to tau (the fused
    kernels compute the component cross-entropy only); otherwise ops as they are."""
    ops = ops or READABLE
    if cfg.classifier != "tau":
        return ops
    return dataclasses.replace(ops, latent_forward=partial(latent_forward, tau=tau),
                               latent_backward=latent_backward)


def forward(p: Params, x, y, cfg: Config, noise: Noise | None = None,
            ops: Blocks | None = None, tau=None):
    """Training mode when `noise` is given (sampled z), eval mode otherwise (z = mu).
    x (B, D) in [0,1], y (B,) ints with -1 = unlabeled; tau (K, C) for classifier tau.
    Returns (loss, terms dict of weighted terms, Outputs, cache)."""
    B, ops = x.shape[0], with_tau(ops, cfg, tau)
    (mu, lv, z, l, bce), c_rows = rows_forward(p, x, None if noise is None else noise.eps,
                                               cfg, ops)
    sums, q, s, pi, c_lat = ops.latent_forward(p, mu, lv, z, y, cfg)
    terms = {"recon": cfg.w_rec * float(bce.sum()) / B, **{k: v / B for k, v in sums.items()}}
    out = Outputs(q, mu, lv, z, l[:, None, :], s, pi)
    return sum(terms.values()), terms, out, (B, ops, c_rows, c_lat)


def backward(p: Params, cache, cfg: Config) -> Params:
    """Exact gradient of the total loss with respect to every parameter array."""
    B, ops, c_rows, c_lat = cache
    g = p.zeros_like()
    dz = rows_backward_decoder(np.full(B, cfg.w_rec / B), c_rows, g)       # (B, d)
    # the latent terms -> the prior's parameters, mu, lv and z
    dmu, dlv, dz_lat = ops.latent_backward(c_lat, g, cfg)
    rows_backward_encoder(dmu, dlv, dz + dz_lat, c_rows, g)
    return g


def class_log_posterior_chunks(p: Params, x, cfg: Config, ops: Blocks | None = None,
                               chunk: int = 1024):
    """class_log_posterior of x (N, D) in chunks of `chunk` rows: log q(c|x) (N, K)."""
    return np.concatenate([class_log_posterior(p, x[i:i + chunk], cfg, ops)
                           for i in range(0, x.shape[0], chunk)])


def fit_tau(p: Params, x, y, cfg: Config, ops: Blocks | None = None, chunk: int = 1024):
    """The tau classifier's map from the current parameters (docs/math.md, section 18):
    eval-mode q(c|x) (z = mu, no noise) of the labeled images among x (N, D), y (N,), in
    chunks, then tau (K, C) from their soft counts (npvae/core/tau.py:tau_map)."""
    rows = np.flatnonzero(y >= 0)
    q = np.exp(class_log_posterior_chunks(p, x[rows], cfg, ops, chunk)) if rows.size else \
        np.zeros((0, cfg.K))
    return T.tau_map(q, y[rows], cfg.num_classes)


# ------------------------------------------------------- consistency (docs/math.md, section 17)
def class_log_posterior(p: Params, x, cfg: Config, ops: Blocks | None = None):
    """log q(c|x) in eval mode (z = mu), the classifier that predictions use: x (B, D) ->
    (B, K). The consistency term's target comes from here, as a constant."""
    mu, _, _ = encoder_forward(p, x, cfg, ops)
    return responsibilities_forward(p, mu)[2]


def consistency_forward(p: Params, lq_target, x_strong, cfg: Config, n: int | None = None,
                        ops: Blocks | None = None):
    """w_cons times the consistency term on the strong views x_strong (B, D) of B images whose
    eval-mode log q(c|x) is lq_target (B, K) (a constant, from class_log_posterior):

        L_cons = w_cons/n sum_i m_i KL(sharpen(q_i, T) || q(c|x_strong_i)),  z = mu

    n: the rows the mean is over (B unless the rows are split between threads).
    Returns (L_cons, the number of confident rows m_i = 1, cache)."""
    mu, _, c_enc = encoder_forward(p, x_strong, cfg, ops)
    loss, confident, c_lat = consistency_latent_forward(p, lq_target, mu, cfg, n)
    return loss, confident, (c_enc, c_lat)


def consistency_backward(cache, g: Params) -> None:
    """Reverse of consistency_forward: the gradients of every parameter the strong view's
    q(c|x) depends on (encoder, prior) written into g; the decoder's stay as g has them."""
    c_enc, c_lat = cache
    dmu = consistency_latent_backward(c_lat, g)                             # (B, d)
    encoder_backward(dmu, None, c_enc, g)                                   # z = mu: no lv


def consistency_latent_forward(p: Params, lq_target, mu, cfg: Config, n: int | None = None):
    """The term from the strong views' codes mu (B, d) on: q(c|x_strong) = p(c|mu) and the
    masked KL (npvae/core/consistency.py), times w_cons B / n. -> (L_cons, confident, cache)."""
    B = mu.shape[0]
    _, _, lq, c_resp = responsibilities_forward(p, mu)
    kl, c_cons = C.consistency_forward(lq_target, lq, cfg.cons_threshold,
                                       cfg.cons_temperature)               # mean over B rows
    scale = cfg.w_cons * B / (n or B)
    return scale * kl, int(c_cons[1].sum()), (scale, c_resp, c_cons)


def consistency_latent_backward(cache, g: Params):
    """Reverse of consistency_latent_forward: the prior's gradients written into g; returns
    dmu (B, d)."""
    scale, (c_lpi, c_pdf, c_lq), c_cons = cache
    dlq = C.consistency_backward(scale, c_cons)                             # (B, K)
    ds = L.log_softmax_backward(dlq, c_lq)                                  # s = lpi + log N
    dmu, g["prior_mu"][...], g["prior_lv"][...] = L.gauss_logpdf_mix_backward(ds, c_pdf)
    g["pi_logits"][...] = L.log_softmax_backward(ds.sum(axis=0), c_lpi)
    return dmu


# the readable blocks: what every function above runs when it is given no `ops`
READABLE = Blocks(mlp_forward=mlp_forward, mlp_backward=mlp_backward,
                  bce_forward=L.bce_logits_forward, bce_backward=L.bce_logits_backward,
                  latent_forward=latent_forward, latent_backward=latent_backward,
                  gather=convnet.C.im2col, scatter=convnet.C.col2im)
