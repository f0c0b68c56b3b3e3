"""The reference engine: the readable layer-by-layer path (npvae/core/model.py and
npvae/core/optim.py) on the Engine (one thread, no kernels), so that the training loop has
one step path for every engine. It draws nothing and computes what core computes.
"""
from __future__ import annotations

import time

import numpy as np

from npvae.core.config import Config
from npvae.core.model import TERMS, evaluate, loss_and_grads
from npvae.core.noise import Noise
from npvae.core.optim import AdamState, adamw_step
from npvae.core.params import Params

from .engine import Engine

ALL_TERMS = ("loss",) + TERMS


def evaluate_split(p: Params, x, y, cfg: Config) -> tuple[dict, np.ndarray]:
    """Eval-mode terms over a split in chunks of eval_batch_size, each averaged with weight
    chunk size / N (spec section 5); also the mean responsibilities q(c|x) over the split (K,)."""
    return ReferenceEngine(cfg).evaluate_split(p, x, y)


class ReferenceEngine(Engine):
    """Loss, gradient, evaluation and optimiser step of either model on the readable path,
    on one thread."""
    fused = False               # no kernels to compile

    def __init__(self, cfg: Config):
        super().__init__(cfg, threads=1)
        self.tau = None         # classifier tau: the map (K, C) fit sets every epoch

    def loss_and_grads(self, p: Params, x, y, noise: Noise, g: Params):
        """core's loss_and_grads with every gradient written into g: returns (loss, terms)."""
        t0 = time.perf_counter()
        loss, grads, terms = loss_and_grads(p, x, y, noise, self.train_cfg, self.tau)
        np.copyto(g.flat, grads.flat)
        self.lap("forward+backward", t0)
        return loss, terms

    def evaluate(self, p: Params, x, y=None, outputs: bool = False):
        """core's evaluate on one chunk: (terms with "loss", q summed over it (K,), Outputs
        when `outputs`, else None)."""
        out, terms = evaluate(p, x, self.cfg, y, self.tau)
        return terms, out.q.sum(axis=0, dtype=np.float64), (out if outputs else None)

    @staticmethod
    def adamw_step(flat: np.ndarray, grad: np.ndarray, state: AdamState,
                   decay_mask: np.ndarray, cfg: Config, norm: float | None = None) -> float:
        """core's clipped AdamW, which measures the norm itself (`norm` is not used); grad is
        clipped in place. Returns the norm before clipping."""
        return adamw_step(flat, grad, state, decay_mask, cfg)
