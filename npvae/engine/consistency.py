"""The consistency term on the engine's threads (model gmm; docs/math.md, section 17).

A training step with w_cons > 0 adds, for the U unlabeled images of its batch,

    L_cons = w_cons/U sum_i m_i KL(sharpen(q(c|x_i), T) || q(c|strong(x_i)))

where q(c|x_i) is the eval-mode posterior of the image as it is (a constant target) and
strong(x_i) a harder warp of it with a square cut out (augment.strong_view). The term only
reaches the encoder and the prior: no decoder, no sampled z. It is a sum over images, so the
threads split the rows (as in engine/convgmm.py): each makes its rows' targets, strong views'
posteriors and gradients in its own buffer, and the buffers are added in thread order
(bit-for-bit repeatable for a given thread count). With a conv encoder the arithmetic is
the readable npvae/core/gmm.py (consistency_forward / backward; the conv layers get the Numba
gather and scatter). With the dense trunk the rows go through it as in FastGMM (products
written in place, bias + leaky ReLU and its backward + bias gradient fused in one kernel
pass each, no gradient of the input pixels), around the readable latent part
(gmm.consistency_latent_forward / backward). tests/test_consistency_training.py compares both
with the readable path in float64.
"""
from __future__ import annotations

import numba
import numpy as np

from npvae.core import gmm
from npvae.core.config import Config
from npvae.core.params import Params

from . import kernels
from .augment import strong_view
from .mixture import dense_lrelu_rows
from .threads import Team, blas_one_thread, blas_single_thread, split

kern = kernels.numpy_twins() if numba.config.DISABLE_JIT else kernels


class Consistency:
    """loss_and_grads of the consistency term for one config, on a Team's threads."""

    def __init__(self, cfg: Config, team: Team, ops: dict | None = None):
        self.cfg, self.team, self.ops = cfg, team, ops or {}
        self.grads = None       # one gradient buffer per thread, made at the first step

    def loss_and_grads(self, p: Params, x, u, g: Params) -> tuple[float, float]:
        """Adds the term's gradient to g. x (U, D): the unlabeled images of the step as they
        are; u (U, 6): their strong views' draws (Noise.strong). Returns (L_cons, the share
        of images whose target passed cons_threshold)."""
        U = x.shape[0]
        if U == 0:
            return 0.0, 0.0
        ranges = split(U, self.team.size)
        if self.grads is None:                  # zeros: the decoder's part stays 0
            self.grads = [g.zeros_like() for _ in range(self.team.size)]
        xs = strong_view(x, u, self.cfg, self.team)                         # (U, D)

        def rows(t, r, _):
            i0, i1 = r
            if self.cfg.encoder == "dense":
                return _dense_rows(p, x[i0:i1], xs[i0:i1], self.cfg, U, self.grads[t])
            target = gmm.class_log_posterior(p, x[i0:i1], self.cfg, **self.ops)  # (b, K)
            loss, confident, cache = gmm.consistency_forward(p, target, xs[i0:i1], self.cfg,
                                                             n=U, **self.ops)
            gmm.consistency_backward(cache, self.grads[t])
            return loss, confident

        blas = blas_one_thread() if self.cfg.convolutional else blas_single_thread(len(ranges))
        with blas:
            out = self.team.run(rows, ranges)
        for t in range(len(ranges)):
            g.flat += self.grads[t].flat
        return float(sum(o[0] for o in out)), sum(o[1] for o in out) / U


def _trunk_mu(p: Params, x, hs):
    """Eval-mode mu (b, d) of the rows x (b, D) through the dense trunk, its activations
    (after the leaky ReLU) written into the buffers hs, one (b, H_i) per layer."""
    h = dense_lrelu_rows(x, p, "enc", hs, 0, x.shape[0])                    # lrelu(h W + b)
    return h @ p["enc_mu.W"] + p["enc_mu.b"]


def _dense_rows(p: Params, x, xs, cfg: Config, U: int, g: Params):
    """gmm.class_log_posterior, consistency_forward and consistency_backward of the rows
    x, xs (b, D) for a dense trunk, the gradients written into g: (L_cons share, confident)."""
    hs = [np.empty((x.shape[0], n), x.dtype) for n in cfg.hidden_dims]
    target = gmm.responsibilities_forward(p, _trunk_mu(p, x, hs))[2]        # (b, K) constant
    mu = _trunk_mu(p, xs, hs)                            # the strong view's, kept in hs
    loss, confident, c_lat = gmm.consistency_latent_forward(p, target, mu, cfg, U)
    dmu = gmm.consistency_latent_backward(c_lat, g)                         # (b, d)
    np.matmul(hs[-1].T, dmu, out=g["enc_mu.W"])
    g["enc_mu.b"][...] = dmu.sum(axis=0)
    g["enc_lv.W"][...], g["enc_lv.b"][...] = 0.0, 0.0                       # z = mu: no lv
    da = dmu @ p["enc_mu.W"].T                                              # (b, H[-1])
    for i in range(len(hs) - 1, -1, -1):
        kern.lrelu_grad_bias(da, hs[i], g[f"enc{i}.b"])                    # pre-activation
        np.matmul((hs[i - 1] if i else xs).T, da, out=g[f"enc{i}.W"])
        if i:
            da = da @ p[f"enc{i}.W"].T
    return loss, confident
