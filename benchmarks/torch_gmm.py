"""An independent PyTorch implementation of model gmm with dense nets, its consistency term
and its training loop (docs/math.md, sections 14 and 17).

Written from the docs, not from npvae's code: autograd computes every gradient, so this file
checks npvae's hand-written backward passes (tests/test_torch_parity_gmm.py) and is the speed
reference of benchmarks/bench_cons.py. Shapes: B images, K = C components (the classes),
D pixels, d latent, U unlabeled images of a step.

    x (B,D) -> trunk (lrelu after every layer) -> h -> mu = Dense_d h, lv = Dense_d h
    z = mu + exp(lv/2) eps (training) or mu (eval)      l = decoder(z) (B,D) logits
    s_ik = log pi_k + log N(z_i; m_k, diag e^{v_k})    (B,K)    pi = softmax(pi_logits)
    log q(c|x) = log_softmax(s)                         gamma = q, or onehot(y) if labeled
    L = w_rec/B sum_i BCE(x_i, l_i) + w_kl/B sum_ik gamma KL(N(mu, e^lv) || N(m_k, e^v_k))
      + w_klc/B sum_ik gamma (log gamma - log pi) + w_dir Dir(pi) + w_div H(mean_i gamma_i)
      + w_cls mean_{labeled} -log q(y_i|x_i)
    L_cons = w_cons/U sum_i m_i KL(sharpen(q(.|x_i), T) || q(.|strong(x_i))), both at z = mu,
             the target and m_i = [max_k q_ik >= threshold] constants

Every log of a probability that may reach 0 (pi, the batch usage, the target) is taken of
clip(p) = clamp(p, EPS, 1), the project's convention. Parameter names map one-to-one to
npvae's flat layout (`enc0.W` <-> `enc.0.weight`, transposed; `prior_mu` <-> `prior_mu`), so
benchmarks/torch_ref.py's load_npvae_params / to_npvae_params serve this module too.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from npvae import Config
from npvae.core.noise import draw_noise
from npvae.core.params import init_params
from npvae.engine.augment import augment, strong_view
from npvae.training.loop import make_rngs

from benchmarks.torch_ref import (TERMS, TRUNC_STD, _mlp, load_npvae_params,  # noqa: F401
                                  to_npvae_params)

EPS = 1e-8                       # clip floor inside the log of a probability
LEAK = 0.01
LOG_2PI = math.log(2.0 * math.pi)


def _clip_log(p):
    return torch.log(torch.clamp(p, EPS, 1.0))


class TorchGMM(nn.Module):
    """Model gmm (docs/math.md 14.1-14.2) with a dense encoder and decoder."""

    def __init__(self, cfg: Config, generator: torch.Generator | None = None):
        super().__init__()
        if cfg.model != "gmm" or cfg.convolutional:
            raise ValueError("TorchGMM is model gmm with a dense encoder and decoder.")
        self.cfg = cfg
        H, d, K = cfg.hidden_dims, cfg.latent_dim, cfg.K
        self.enc = _mlp((cfg.input_dim, *H))
        self.enc_mu, self.enc_lv = nn.Linear(H[-1], d), nn.Linear(H[-1], d)
        self.pi_logits = nn.Parameter(torch.zeros(K))
        self.prior_mu = nn.Parameter(torch.zeros(K, d))
        self.prior_lv = nn.Parameter(torch.zeros(K, d))
        self.dec = _mlp((d, *cfg.decoder_dims, cfg.input_dim))
        with torch.no_grad():    # LeCun normal cut at 2 std, zero biases, means ~ N(0, I)
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    std = (1.0 / m.in_features) ** 0.5 / TRUNC_STD
                    nn.init.trunc_normal_(m.weight, 0.0, std, -2 * std, 2 * std, generator)
                    nn.init.zeros_(m.bias)
            nn.init.normal_(self.prior_mu, 0.0, 1.0, generator)

    def encode(self, x):
        """x (B,D) -> mu, lv (B,d)."""
        h = x
        for lin in self.enc:
            h = F.leaky_relu(lin(h), LEAK)
        return self.enc_mu(h), self.enc_lv(h)

    def decode(self, z):
        """z (B,d) -> logits (B,D): lrelu between the layers, none after the last."""
        for i, lin in enumerate(self.dec):
            z = lin(z)
            if i < len(self.dec) - 1:
                z = F.leaky_relu(z, LEAK)
        return z

    def log_joint(self, z):
        """s = log pi + log N(z; m_k, e^{v_k}) (B,K), and log pi (K,)."""
        lpi = torch.log_softmax(self.pi_logits, dim=-1)
        diff = z[:, None, :] - self.prior_mu[None]                          # (B,K,d)
        logn = -0.5 * (diff * diff * torch.exp(-self.prior_lv) + self.prior_lv
                       + LOG_2PI).sum(-1)
        return lpi + logn, lpi

    def class_log_posterior(self, x):
        """Eval-mode log q(c|x) (B,K): the classifier at z = mu."""
        return torch.log_softmax(self.log_joint(self.encode(x)[0])[0], dim=-1)


def gmm_terms(module: TorchGMM, x, y, eps, cfg: Config) -> dict:
    """The six weighted terms of docs/math.md 14.3 (tensors). x (B,D), y (B,) long with -1
    unlabeled, eps (B,d) or None (eval mode, z = mu). cfg gives the weights (a scheduled
    step passes its scaled w_kl, w_klc)."""
    B = x.shape[0]
    mu, lv = module.encode(x)
    z = mu if eps is None else mu + torch.exp(0.5 * lv) * eps
    bce = F.binary_cross_entropy_with_logits(module.decode(z), x, reduction="none").sum(-1)
    s, lpi = module.log_joint(z)
    lq = torch.log_softmax(s, dim=-1)
    labeled = (y >= 0)[:, None]
    onehot = F.one_hot(y.clamp(min=0), cfg.K).to(x.dtype)
    gam = torch.where(labeled, onehot, torch.exp(lq))       # a labeled row's gamma: constant
    lgam = torch.where(labeled, torch.zeros_like(lq), lq)   # its gamma log gamma is 0
    m, v = module.prior_mu, module.prior_lv
    diff = mu[:, None, :] - m[None]                                         # (B,K,d)
    kl = 0.5 * (v[None] - lv[:, None, :] + (torch.exp(lv)[:, None, :] + diff * diff)
                * torch.exp(-v)[None] - 1.0).sum(-1)                        # (B,K)
    pi = torch.exp(lpi)
    usage = gam.mean(dim=0)
    rows = labeled[:, 0]
    ce = -lq[rows, y[rows]].mean() if bool(rows.any()) else lq.sum() * 0.0
    return {"recon": cfg.w_rec * bce.sum() / B,
            "kl_z": cfg.w_kl * (gam * kl).sum() / B,
            "kl_c": cfg.w_klc * (gam * (lgam - lpi)).sum() / B,
            "dirichlet": cfg.w_dir * -(cfg.dirichlet_alpha - 1.0) * _clip_log(pi).sum(),
            "diversity": cfg.w_div * -(usage * _clip_log(usage)).sum(),
            "cls": cfg.w_cls * ce}


def sharpen(lq, T: float):
    """softmax(lq / T) (B,K); T = 0: onehot(argmax), ties to the first class."""
    if T == 0:
        return F.one_hot(lq.argmax(dim=-1), lq.shape[-1]).to(lq.dtype)
    return torch.softmax(lq / T, dim=-1)


def consistency(module: TorchGMM, x, x_strong, cfg: Config):
    """w_cons/U sum_i m_i KL(t_i || q(.|x_strong_i)) over U rows (docs/math.md 17). x (U,D):
    the images as they are (their eval-mode posterior, detached, makes the target t and the
    mask m); x_strong (U,D) their strong views. Returns (L_cons tensor, rows with m_i = 1)."""
    with torch.no_grad():
        lq_w = module.class_log_posterior(x)
        t = sharpen(lq_w, cfg.cons_temperature)
        mask = (torch.exp(lq_w.max(dim=-1).values) >= cfg.cons_threshold).to(x.dtype)
    lq_s = module.class_log_posterior(x_strong)                # z = mu of the strong view
    kl = (t * (_clip_log(t) - lq_s)).sum(-1)                   # 0 log 0 = 0 through the clip
    return cfg.w_cons * (mask * kl).sum() / x.shape[0], int(mask.sum())


# ---------------------------------------------------------------------- optimiser
def make_optimizer(module: nn.Module, cfg: Config, fused: bool = True) -> torch.optim.AdamW:
    """AdamW, decoupled decay on the Linear weight matrices only (Layout.decay_mask): biases
    and the prior (pi_logits, prior_mu, prior_lv) stay free. fused: torch's one-kernel
    update (0.49 ms a step for the ssl preset's 0.42M parameters on one thread, against
    1.35 ms for the default per-tensor loop); the same update either way."""
    decay = [m.weight for m in module.modules() if isinstance(m, nn.Linear)]
    ids = {id(p) for p in decay}
    rest = [p for p in module.parameters() if id(p) not in ids]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": rest, "weight_decay": 0.0}],
                             lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps,
                             fused=fused)


@torch.no_grad()
def clip_global_norm(params, max_norm: float) -> float:
    """g <- g min(1, c / ||g||) over all gradients at once, as npvae (torch's
    clip_grad_norm_ divides by ||g|| + 1e-6 instead). Returns ||g|| before clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g)
                                                       for g in grads])))
    if norm > max_norm:
        for g in grads:
            g.mul_(max_norm / norm)
    return norm


# ----------------------------------------------------------------------- training
@dataclass
class TorchFit:
    module: TorchGMM
    epoch_seconds: list                 # wall time per epoch (steps + evaluation)
    phases: dict = field(default_factory=dict)   # seconds per phase, summed over epochs
    train_terms: dict = field(default_factory=dict)   # last epoch's eval-mode terms
    val_terms: dict = field(default_factory=dict)


@torch.no_grad()
def evaluate_split(module: TorchGMM, x, y, cfg: Config) -> dict:
    """Eval-mode terms (full weights) in chunks of eval_batch_size, each weighted by its
    share of the split; "loss" is their sum."""
    n, bs = x.shape[0], cfg.eval_batch_size
    totals = dict.fromkeys(("loss",) + TERMS, 0.0)
    for s in range(0, n, bs):
        terms = gmm_terms(module, x[s:s + bs], y[s:s + bs], None, cfg)
        w = min(bs, n - s) / n
        for k, v in terms.items():
            totals[k] += w * float(v)
            totals["loss"] += w * float(v)
    return totals


def fit_torch(cfg: Config, x, y_visible, train_idx, epochs: int | None = None,
              threads: int = 1, val_idx=None) -> TorchFit:
    """npvae.training.loop.fit's loop in PyTorch. Data preparation is npvae's, from the same
    seed: the initial weights (init_params), each epoch's shuffle, the labeled_per_batch rows
    drawn with replacement, the step noise, the augmentation and strong-view warps (numpy);
    so in float64 it follows npvae's run step by step. Each step: the ELBO terms with w_kl,
    w_klc scaled by cfg.kl_scale(epoch), the consistency term on the step's unlabeled rows
    (as they are, not augmented), backward, global-norm clip, AdamW. After each epoch an
    eval-mode pass over the training split and val_idx's (if given). Early stopping is left
    out (timing does not need it). cfg.dtype sets the precision; torch runs `threads`."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _fit(cfg, np.asarray(x), np.asarray(y_visible), np.asarray(train_idx),
                    cfg.epochs if epochs is None else epochs, val_idx)
    finally:
        torch.set_num_threads(old)


def _fit(cfg, x, y_visible, train_idx, epochs, val_idx) -> TorchFit:
    dtype = np.dtype(cfg.dtype)
    rngs = make_rngs(cfg.seed)
    module = load_npvae_params(TorchGMM(cfg).to(getattr(torch, cfg.dtype)),
                               init_params(cfg, rngs["init"]))
    opt = make_optimizer(module, cfg)
    params = list(module.parameters())
    xtr, ytr = x[train_idx].astype(dtype), y_visible[train_idx]
    tx, ty = torch.from_numpy(xtr), torch.from_numpy(ytr).long()
    splits = [(tx, ty)]
    if val_idx is not None:
        splits.append((torch.from_numpy(x[val_idx].astype(dtype)),
                       torch.from_numpy(y_visible[val_idx]).long()))
    pool = np.flatnonzero(ytr >= 0)
    extra = cfg.labeled_per_batch if pool.size else 0
    n, fit = xtr.shape[0], TorchFit(module, [])
    lap = _Laps(fit.phases)
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        lap("tracking")
        order = rngs["shuffle"].permutation(n)
        scale = cfg.kl_scale(epoch)
        step_cfg = cfg if scale == 1.0 else cfg.replace(w_kl=cfg.w_kl * scale,
                                                        w_klc=cfg.w_klc * scale)
        module.train()
        for s in range(0, n, cfg.batch_size):
            idx = order[s:s + cfg.batch_size]
            if extra:
                idx = np.concatenate([idx, rngs["shuffle"].choice(pool, extra)])
            noise = draw_noise(cfg, idx.size, rngs["noise"])
            xb = xtr[idx]
            if noise.aug is not None:
                xb = augment(xb, noise.aug, cfg)
            xb, yb, eps = torch.from_numpy(xb), ty[idx], torch.from_numpy(noise.eps)
            lap("batch")
            opt.zero_grad(set_to_none=True)
            sum(gmm_terms(module, xb, yb, eps, step_cfg).values()).backward()
            lap("forward+backward")
            rows = idx[ytr[idx] < 0]
            if cfg.w_cons > 0 and rows.size:    # its own graph: a second backward adds up
                xs = strong_view(xtr[rows], noise.strong[ytr[idx] < 0], cfg)
                consistency(module, tx[rows], torch.from_numpy(xs), cfg)[0].backward()
                lap("consistency")
            clip_global_norm(params, cfg.grad_clip)
            opt.step()
            lap("optimizer")
        module.eval()
        terms = [evaluate_split(module, *split, cfg) for split in splits]
        fit.train_terms, fit.val_terms = terms[0], terms[-1] if len(terms) > 1 else {}
        lap("evaluation")
        fit.epoch_seconds.append(time.perf_counter() - t0)
    return fit


class _Laps:
    """lap(name): adds the seconds since the previous lap to phases[name]."""

    def __init__(self, phases: dict):
        self.phases, self.t = phases, time.perf_counter()

    def __call__(self, name: str) -> None:
        t = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + t - self.t
        self.t = t
