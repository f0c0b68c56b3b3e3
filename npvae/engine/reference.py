"""The reference engine: the readable layer-by-layer path (npvae/core/model.py and
npvae/core/optim.py) behind the fast engines' interface, so that the training loop has one
step path for every engine. It draws nothing and computes what core computes.
"""
from __future__ import annotations

import time

import numpy as np

from npvae.core.config import Config
from npvae.core.model import TERMS, evaluate, loss_and_grads
from npvae.core.noise import Noise
from npvae.core.optim import AdamState, adamw_step
from npvae.core.params import Params

from .threads import Team

ALL_TERMS = ("loss",) + TERMS


def evaluate_split(p: Params, x, y, cfg: Config) -> tuple[dict, np.ndarray]:
    """Eval-mode terms over a split in chunks of eval_batch_size, each averaged with weight
    chunk size / N (spec section 5); also the mean responsibilities q(c|x) over the split (K,)."""
    n, bs = x.shape[0], cfg.eval_batch_size
    totals = dict.fromkeys(ALL_TERMS, 0.0)
    usage = np.zeros(cfg.K)
    for s in range(0, n, bs):
        out, terms = evaluate(p, x[s:s + bs], cfg, y[s:s + bs])
        w = out.q.shape[0] / n
        for k in ALL_TERMS:
            totals[k] += w * terms[k]
        usage += out.q.sum(axis=0)
    return totals, usage / n


class ReferenceEngine:
    """Loss, gradient, evaluation and optimiser step of either model on the readable path."""

    def __init__(self, cfg: Config):
        self.cfg = self.train_cfg = cfg
        self.team = Team(1)     # augmentation and the consistency term run on one thread
        self.laps = None        # a dict to receive forward+backward seconds (profiling)
        self.ops = {}           # the consistency term's default im2col / col2im

    def reweight(self, cfg: Config) -> None:
        """Training steps use cfg's loss weights from now on (the staged schedule changes
        w_kl, w_klc); evaluation keeps the full objective of the config it was made with."""
        self.train_cfg = cfg

    def loss_and_grads(self, p: Params, x, y, noise: Noise, g: Params):
        """core's loss_and_grads with every gradient written into g: returns (loss, terms)."""
        t0 = time.perf_counter()
        loss, grads, terms = loss_and_grads(p, x, y, noise, self.train_cfg)
        np.copyto(g.flat, grads.flat)
        if self.laps is not None:
            self.laps["forward+backward"] = (self.laps.get("forward+backward", 0.0)
                                             + time.perf_counter() - t0)
        return loss, terms

    def evaluate_split(self, p: Params, x, y) -> tuple[dict, np.ndarray]:
        """Eval-mode terms over a split (N, D) and its mean responsibilities (K,)."""
        return evaluate_split(p, x, y, self.cfg)

    @staticmethod
    def adamw_step(flat: np.ndarray, grad: np.ndarray, state: AdamState,
                   decay_mask: np.ndarray, cfg: Config, norm: float | None = None) -> float:
        """core's clipped AdamW, which measures the norm itself (`norm` is not used); grad is
        clipped in place. Returns the norm before clipping."""
        return adamw_step(flat, grad, state, decay_mask, cfg)
