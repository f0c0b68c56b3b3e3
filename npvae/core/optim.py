"""AdamW with global-norm clipping, on the flat parameter buffer (spec section 4).

Because parameters and gradients are single flat arrays, clipping and the update are a
handful of vector operations; the decay mask (1 on Dense weights and conv kernels, 0 on
biases and the prior's arrays: Layout.decay_mask) is a flat array of the same layout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import Config


@dataclass
class AdamState:
    m: np.ndarray       # first moment  (size,)
    v: np.ndarray       # second moment (size,)
    t: int = 0          # steps taken

    @classmethod
    def zeros(cls, flat: np.ndarray) -> "AdamState":
        return cls(np.zeros_like(flat), np.zeros_like(flat), 0)


def clip_by_global_norm(g: np.ndarray, max_norm: float) -> float:
    """Scale g in place so that ||g||_2 <= max_norm; return the norm before clipping."""
    norm = float(np.sqrt(np.dot(g, g)))
    if norm > max_norm:
        g *= g.dtype.type(max_norm / norm)
    return norm


def adamw_step(flat: np.ndarray, grad: np.ndarray, state: AdamState, decay_mask: np.ndarray,
               cfg: Config) -> float:
    """One clipped AdamW step, in place on `flat` and `state`; `grad` is clipped in place.

        g <- g * min(1, c / ||g||)
        m <- b1 m + (1 - b1) g            v <- b2 v + (1 - b2) g^2
        m_hat = m / (1 - b1^t)            v_hat = v / (1 - b2^t)
        p <- p - lr (m_hat / (sqrt(v_hat) + eps) + wd * mask * p)

    Returns the gradient's global norm before clipping."""
    norm = clip_by_global_norm(grad, cfg.grad_clip)
    state.t += 1
    b1, b2 = cfg.beta1, cfg.beta2
    state.m *= b1
    state.m += (1 - b1) * grad
    state.v *= b2
    state.v += (1 - b2) * grad * grad
    m_hat = state.m / (1 - b1 ** state.t)
    v_hat = state.v / (1 - b2 ** state.t)
    flat -= cfg.lr * (m_hat / (np.sqrt(v_hat) + cfg.adam_eps) + cfg.weight_decay * decay_mask * flat)
    return norm
