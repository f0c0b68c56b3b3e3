"""An independent PyTorch implementation of the model, loss and optimiser (spec sections 2-4).

Written from the spec, not from npvae's code: autograd computes every gradient, so this file
is both a check of npvae's hand-written backward (tests/test_torch_parity.py) and the speed
reference for the benchmark. Shapes: B images, K components, D pixels, d latent, P pathway.

    x (B,D) -> trunk -> h -> q = softmax(Dense_K h), mu = Dense_d h, lv = Dense_d h
    z = mu + exp(lv/2) eps (training) or mu (eval)            pi = softmax(pi_logits)
    hz = lrelu(Dense_P z) (B,P)       hc = lrelu(Dense_P embed) (K,P)
    concat(hz_i, hc_k) (B*K, 2P) -> decoder MLP -> l (B,K,D)   z -> classifier (dropout)

Parameter names map one-to-one to npvae's (`enc0.W` <-> `enc.0.weight`, transposed, because
npvae stores W as (in, out) and nn.Linear as (out, in)).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from npvae import Config, Params
from npvae.core.params import Layout

EPS = 1e-8                       # clip(p) = clamp(p, EPS, 1) inside every log of a probability
TRUNC_STD = 0.87962566103423978  # std of N(0,1) cut at +-2: LeCun normal divides by it
TERMS = ("recon", "kl_z", "kl_c", "dirichlet", "diversity", "cls")


def _mlp(dims) -> nn.ModuleList:
    return nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))


class TorchVAE(nn.Module):
    """The mixture-prior VAE of spec section 2, initialised as the spec says."""

    def __init__(self, cfg: Config, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = cfg
        H, d, K, P = cfg.hidden_dims, cfg.latent_dim, cfg.K, cfg.pathway_dim
        self.enc = _mlp((cfg.input_dim, *H))
        self.enc_c, self.enc_mu, self.enc_lv = nn.Linear(H[-1], K), nn.Linear(H[-1], d), \
            nn.Linear(H[-1], d)
        self.pi_logits = nn.Parameter(torch.zeros(K))
        self.embed = nn.Parameter(torch.zeros(K, cfg.embed_dim))
        self.dec_z, self.dec_e = nn.Linear(d, P), nn.Linear(cfg.embed_dim, P)
        self.dec = _mlp((2 * P, *cfg.decoder_dims, cfg.input_dim))
        self.cls = _mlp((d, *cfg.classifier_dims, cfg.num_classes))
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Linear):   # LeCun normal truncated at 2 std, zero bias
                    std = (1.0 / m.in_features) ** 0.5 / TRUNC_STD
                    nn.init.trunc_normal_(m.weight, 0.0, std, -2 * std, 2 * std, generator)
                    nn.init.zeros_(m.bias)
            nn.init.normal_(self.embed, 0.0, 0.02, generator)

    def forward(self, x, eps=None, masks=None):
        """Training mode when eps (B,d) is given (masks: one (B, C[i]) per classifier hidden
        layer, entries 0 or 1/keep), eval mode (z = mu, no dropout) otherwise.
        Returns q (B,K), mu, lv, z (B,d), l (B,K,D), cls_logits (B,C), pi (K,)."""
        h = x
        for lin in self.enc:
            h = F.leaky_relu(lin(h), 0.01)
        q = torch.softmax(self.enc_c(h), dim=-1)
        mu, lv = self.enc_mu(h), self.enc_lv(h)
        z = mu if eps is None else mu + torch.exp(0.5 * lv) * eps
        pi = torch.softmax(self.pi_logits, dim=-1)
        hz = F.leaky_relu(self.dec_z(z), 0.01)                        # (B, P)
        hc = F.leaky_relu(self.dec_e(self.embed), 0.01)               # (K, P)
        B, K, P = z.shape[0], hc.shape[0], hc.shape[1]
        g = torch.cat([hz[:, None, :].expand(B, K, P), hc[None, :, :].expand(B, K, P)], -1)
        g = g.reshape(B * K, 2 * P)                                   # every (image, comp.) pair
        for i, lin in enumerate(self.dec):
            g = lin(g)
            if i < len(self.dec) - 1:
                g = F.leaky_relu(g, 0.01)
        l = g.reshape(B, K, -1)                                       # (B, K, D) logits
        c = z
        for i, lin in enumerate(self.cls):
            c = lin(c)
            if i < len(self.cls) - 1:
                c = F.leaky_relu(c, 0.01)
                if eps is not None:
                    c = c * masks[i]                                  # inverted dropout
        return q, mu, lv, z, l, c, pi


def _clip(p):
    return torch.clamp(p, EPS, 1.0)


def loss_terms(out, x, y, cfg: Config) -> dict:
    """The six weighted terms of spec section 3 (tensors; their sum is the loss)."""
    q, mu, lv, z, l, c, pi = out
    B = x.shape[0]
    bce = F.binary_cross_entropy_with_logits(l, x[:, None, :].expand_as(l),
                                             reduction="none").sum(-1)        # (B, K)
    klz = (-0.5 * (1 + lv - mu ** 2 - torch.exp(lv))).sum()
    klc = (_clip(q) * (torch.log(_clip(q)) - torch.log(_clip(pi)))).sum()
    dirichlet = -(cfg.dirichlet_alpha - 1.0) * torch.log(_clip(pi)).sum()
    p_hat = q.mean(dim=0)
    entropy = -(p_hat * torch.log(_clip(p_hat))).sum()
    labeled = y >= 0
    ce = F.cross_entropy(c[labeled], y[labeled]) if bool(labeled.any()) else c.sum() * 0.0
    return {"recon": cfg.w_rec * (q * bce).sum() / B, "kl_z": cfg.w_kl * klz / B,
            "kl_c": cfg.w_klc * klc / B, "dirichlet": cfg.w_dir * dirichlet,
            "diversity": cfg.w_div * entropy, "cls": cfg.w_cls * ce}


def torch_loss(module: TorchVAE, x, y, eps, masks, cfg: Config, train: bool = True):
    """Loss with frozen noise. x (B,D), y (B,) with -1 = unlabeled, eps (B,d), masks as in
    TorchVAE.forward; numpy arrays are converted to the module's dtype. train=False is eval
    mode (eps and masks ignored). Returns (loss, dict of weighted terms), both tensors."""
    dtype = next(module.parameters()).dtype
    as_t = lambda a: torch.as_tensor(a, dtype=dtype)                 # noqa: E731
    x = as_t(x)
    y = torch.as_tensor(y, dtype=torch.long)
    if train:
        out = module(x, as_t(eps), [as_t(m) for m in masks])
    else:
        out = module(x)
    terms = loss_terms(out, x, y, cfg)
    return sum(terms.values()), terms


# ------------------------------------------------------------------ npvae <-> torch
def _torch_name(name: str) -> tuple[str, bool]:
    """npvae name -> (state_dict key, transpose?): enc0.W -> enc.0.weight, dec_z.b -> dec_z.bias."""
    m = re.fullmatch(r"(enc|dec|cls)(\d+)\.([Wb])", name)
    if m:
        return f"{m[1]}.{m[2]}.{'weight' if m[3] == 'W' else 'bias'}", m[3] == "W"
    m = re.fullmatch(r"(\w+)\.([Wb])", name)
    if m:
        return f"{m[1]}.{'weight' if m[2] == 'W' else 'bias'}", m[2] == "W"
    return name, False


def load_npvae_params(module: TorchVAE, params: Params) -> TorchVAE:
    """Copy npvae's named arrays into the module (keeping the module's dtype)."""
    state = dict(module.named_parameters())
    with torch.no_grad():
        for name, arr in params.items():
            key, transpose = _torch_name(name)
            t = torch.as_tensor(np.ascontiguousarray(arr.T if transpose else arr))
            if tuple(state[key].shape) != tuple(t.shape):
                raise ValueError(f"parameter {name}: torch {key} has shape "
                                 f"{tuple(state[key].shape)}, npvae gives {tuple(t.shape)}.")
            state[key].copy_(t)
    return module


def to_npvae_params(module: TorchVAE, grads: bool = False) -> Params:
    """The module's parameters (or, with grads=True, their .grad) as npvae Params."""
    state = dict(module.named_parameters())
    layout = Layout.from_config(module.cfg)
    arrays = {}
    for name in layout.names:
        key, transpose = _torch_name(name)
        t = state[key].grad if grads else state[key]
        a = t.detach().cpu().numpy()
        arrays[name] = a.T if transpose else a
    dtype = next(module.parameters()).detach().numpy().dtype
    return Params.from_dict(layout, arrays, dtype=dtype)


# -------------------------------------------------------------------- optimiser
def make_optimizer(module: TorchVAE, cfg: Config) -> torch.optim.AdamW:
    """AdamW with decoupled decay on Linear weight matrices only (spec section 4)."""
    decay = [m.weight for m in module.modules() if isinstance(m, nn.Linear)]
    ids = {id(p) for p in decay}
    rest = [p for p in module.parameters() if id(p) not in ids]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": rest, "weight_decay": 0.0}],
                             lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps)


def train_step(module, opt, x, y, eps, masks, cfg: Config) -> float:
    """One step: loss, backward, clip to global norm, AdamW. Returns the loss."""
    opt.zero_grad(set_to_none=True)
    loss, _ = torch_loss(module, x, y, eps, masks, cfg, train=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
    opt.step()
    return loss.item()


# ---------------------------------------------------------------------- training
@dataclass
class TorchFit:
    module: TorchVAE
    epoch_seconds: list      # wall time per epoch (steps + evaluation)
    step_seconds: list       # of which the training steps
    eval_seconds: list       # of which the eval passes over the train and validation split
    train_terms: dict        # final epoch, training split, eval mode (plus "loss")
    val_terms: dict          # final epoch, validation split


@torch.no_grad()
def evaluate_split(module: TorchVAE, x, y, cfg: Config) -> dict:
    """Eval-mode terms over a split in chunks, each weighted by chunk size / N."""
    n, bs = x.shape[0], cfg.eval_batch_size
    totals = dict.fromkeys(("loss",) + TERMS, 0.0)
    for s in range(0, n, bs):
        xb, yb = x[s:s + bs], y[s:s + bs]
        terms = loss_terms(module(xb), xb, yb, cfg)
        w = xb.shape[0] / n
        for k, v in terms.items():
            totals[k] += w * float(v)
            totals["loss"] += w * float(v)
    return totals


def train_torch(cfg: Config, x, y_visible, train_idx, val_idx, threads: int = 2) -> TorchFit:
    """The loop of npvae.training.loop.fit in PyTorch: per-epoch reshuffle, batches of batch_size
    (last partial batch kept), fresh noise each step from a torch Generator seeded with
    cfg.seed, then an eval-mode pass over both splits. Early stopping is not needed for
    timing and is left out."""
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        dtype = getattr(torch, cfg.dtype)
        gen = torch.Generator().manual_seed(cfg.seed)
        module = TorchVAE(cfg, gen).to(dtype)
        opt = make_optimizer(module, cfg)
        xtr = torch.as_tensor(np.asarray(x)[train_idx], dtype=dtype)
        ytr = torch.as_tensor(np.asarray(y_visible)[train_idx], dtype=torch.long)
        xva = torch.as_tensor(np.asarray(x)[val_idx], dtype=dtype)
        yva = torch.as_tensor(np.asarray(y_visible)[val_idx], dtype=torch.long)
        keep = 1.0 - cfg.dropout
        n = xtr.shape[0]
        fit = TorchFit(module, [], [], [], {}, {})
        for _ in range(cfg.epochs):
            t0 = time.perf_counter()
            module.train()
            order = torch.randperm(n, generator=gen)
            for s in range(0, n, cfg.batch_size):
                idx = order[s:s + cfg.batch_size]
                B = idx.shape[0]
                eps = torch.randn(B, cfg.latent_dim, generator=gen, dtype=dtype)
                masks = [(torch.rand(B, w, generator=gen) < keep).to(dtype) / keep
                         for w in cfg.classifier_dims]
                train_step(module, opt, xtr[idx], ytr[idx], eps, masks, cfg)
            t1 = time.perf_counter()
            module.eval()
            fit.train_terms = evaluate_split(module, xtr, ytr, cfg)
            fit.val_terms = evaluate_split(module, xva, yva, cfg)
            t2 = time.perf_counter()
            fit.step_seconds.append(t1 - t0)
            fit.eval_seconds.append(t2 - t1)
            fit.epoch_seconds.append(t2 - t0)
        return fit
    finally:
        torch.set_num_threads(old_threads)
