"""The optimiser step of the fast path: clipped AdamW over the flat parameter buffer in one
fused kernel pass (npvae/engine/kernels/adamw.py), the same update as npvae/core/optim.py.
"""
from __future__ import annotations

import math

import numpy as np

from npvae.core.config import Config
from npvae.core.optim import AdamState

from .kernels import ACTIVE as kern


def adamw_step_fast(flat: np.ndarray, grad: np.ndarray, state: AdamState,
                    decay_mask: np.ndarray, cfg: Config, norm: float | None = None) -> float:
    """optim.adamw_step with the fused kernels: the same update and state (the gradient buffer
    is left unclipped). `norm`: ||grad|| if already known (grad_norm). Returns the gradient's
    norm before clipping. One thread: this pass is memory-bound, and splitting it over two
    cores was slower once the hand-over is paid (benchmarks/README.md)."""
    state.t += 1
    if norm is None:
        norm = grad_norm(grad)
    clip = cfg.grad_clip / norm if norm > cfg.grad_clip else 1.0
    kern.adamw(flat, grad, state.m, state.v, decay_mask, clip, cfg.lr, cfg.beta1, cfg.beta2,
               cfg.adam_eps, cfg.weight_decay, state.t)
    return norm


def grad_norm(grad: np.ndarray) -> float:
    """||grad||_2, summed in float64 (NaN or inf when an entry is), without BLAS: a BLAS call
    here would wake BLAS's own threads, which then spin next to the model's."""
    return math.sqrt(kern.sq_norm(grad))
