"""Model gmm (dense or convolutional) on the engine: npvae/core/gmm.py's own functions, run by
rows on T threads with the fused blocks of blocks.FAST.

A step:
  A. rows: each thread takes its images through gmm.rows_forward (encoder, z, decoder, BCE)
     and gmm.rows_backward_decoder down to dz, the decoder's weight gradients summed over its
     own rows into its own gradient buffer;
  B. thread 0 runs the latent block on the whole batch (it couples the images through the
     labeled count and the batch usage);
  C. rows: gmm.rows_backward_encoder, the encoder's gradients into the thread's buffer;
  D. the encoder's and the prior's gradients summed over the threads' buffers.
Thread 0's buffer is g itself. The sums add the buffers in thread order, each thread a part of
the entries; the decoder's are summed in B, beside the latent block (bit-for-bit repeatable
for a given T; with T = 1 and gmm.READABLE the readable path's very operations). Evaluation chunks are independent:
each thread takes whole chunks (Engine.evaluate_split).

BLAS runs on one thread inside each of ours when T > 1, and with conv layers also when T = 1,
because their per-image products are too small for BLAS's own threads. Dense networks run on
T = 1 by default, BLAS on every core (GMMEngine's docstring).
"""
from __future__ import annotations

import time

import numpy as np

from npvae.core import gmm
from npvae.core.config import Config
from npvae.core.noise import Noise
from npvae.core.params import Params

from .blocks import FAST
from .engine import Engine
from .threads import blas_one_thread, blas_single_thread


class GMMEngine(Engine):
    """Loss, gradient and evaluation of model gmm for one config, on the engine's threads."""

    def __init__(self, cfg: Config, threads: int | None = None, ops=FAST):
        """threads: Python threads for steps, the consistency term and evaluation. Default:
        one per core with conv layers, whose per-image products are too small for BLAS's own
        threads; 1 for dense networks, whose products are large enough for them, so that one
        Python thread needs no per-thread buffers or hand-overs (benchmarks/README.md)."""
        super().__init__(cfg, threads or (None if cfg.convolutional else 1))
        self.ops = ops          # the blocks: FAST, or gmm.READABLE
        self.tau = None         # classifier tau: the map (K, C) fit sets every epoch

    def blas(self, T: int):
        return blas_one_thread() if self.cfg.convolutional else blas_single_thread(T)

    def loss_and_grads(self, p: Params, x, y, noise: Noise, g: Params):
        """gmm.forward and gmm.backward by rows on T threads (the module docstring), every
        gradient written into g: returns (loss, terms)."""
        t0, B, cfg = time.perf_counter(), x.shape[0], self.train_cfg
        rows, latent = [None] * self.threads, {}
        ops = gmm.with_tau(self.ops, cfg, self.tau)   # classifier tau: core's latent block
        # thread 0 writes into g itself; the others' buffers stay 0 at the prior's entries
        grads = [g] + self.thread_grads(g, "step", first=1)
        dec = g.layout.offsets[g.layout.names.index("dec0.W")]    # the decoder: g.flat[dec:]

        def step(t, i0, i1, barrier, g_t):     # A. rows: forward, decoder backward to dz
            T = barrier.parties
            (mu, lv, z, _, bce), cache = gmm.rows_forward(p, x[i0:i1], noise.eps[i0:i1], cfg,
                                                          self.ops)
            dz = gmm.rows_backward_decoder(np.full(i1 - i0, cfg.w_rec / B), cache, g_t)
            rows[t] = (mu, lv, z)
            barrier.wait()
            if t == 0:                         # B. the latent block, on the whole batch
                mu, lv, z = (np.concatenate(a) for a in zip(*rows[:T]))
                latent["sums"], *_, c_lat = ops.latent_forward(p, mu, lv, z, y, cfg)
                latent["grads"] = ops.latent_backward(c_lat, g_t, cfg)
            else:                              # meanwhile: the decoder's sums over threads
                self.sum_share(g, grads[:T], dec, g.flat.size, t - 1, T - 1)
            barrier.wait()                     # C. rows: the encoder backward
            dmu, dlv, dz_lat = (a[i0:i1] for a in latent["grads"])
            gmm.rows_backward_encoder(dmu, dlv, dz + dz_lat, cache, g_t)
            barrier.wait()                     # D. the encoder's and prior's sums
            self.sum_share(g, grads[:T], 0, dec, t, T)
            return float(bce.sum(dtype=np.float64))

        bce, _ = self.by_rows(B, step, grads)
        terms = {"recon": cfg.w_rec * sum(bce) / B,
                 **{k: v / B for k, v in latent["sums"].items()}}
        self.lap("forward+backward", t0)
        return sum(terms.values()), terms

    def evaluate(self, p: Params, x, y=None, outputs: bool = False):
        """Eval mode (z = mu) on one chunk: (terms with "loss", the sum of q over the chunk
        (K,), and the Outputs of model.evaluate when `outputs`, else None)."""
        y = np.full(x.shape[0], -1) if y is None else y
        loss, terms, out, _ = gmm.forward(p, x, y, self.cfg, None, self.ops, self.tau)
        terms["loss"] = loss
        return terms, out.q.sum(axis=0, dtype=np.float64), (out if outputs else None)
