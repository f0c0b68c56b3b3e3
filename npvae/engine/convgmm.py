"""The engine of model gmm with a convolutional encoder or decoder (Config.encoder / decoder
= "conv"): FastGMM's interface (loss_and_grads, evaluate, evaluate_split, reweight, team,
laps) around the readable path, npvae/core/gmm.py with npvae/core/convnet.py, whose conv layers
get the Numba im2col / col2im (npvae/engine/kernels/conv.py) as their gather and scatter.

Threads, as in FastGMM (npvae/engine/threads.py): T Python threads, BLAS on one thread inside
each, also when T = 1. The conv layers' products are small (one (F, C 9) x (C 9, positions)
product per image), too small for BLAS's own threads: on 2 busy cores a step took 2.5 times as
long with BLAS on 2 threads as on 1. A step:
  A. rows: each thread takes its images through gmm.rows_forward (encoder, z, decoder, BCE)
     and gmm.rows_backward_decoder down to dz, the decoder's weight gradients summed over its
     own rows into its own gradient buffer;
  B. thread 0 computes the latent block on the whole batch (gmm.latent_forward / backward: it
     couples images through the labeled count and the batch usage);
  C. rows: gmm.rows_backward_encoder, the encoder's gradients into the thread's buffer;
then the T buffers are added in thread order (bit-for-bit repeatable for a given T; with T = 1
the readable path's very operations). Evaluation chunks are independent: each thread takes
whole chunks (engine/gmm.py:evaluate_chunks).

Why not FastGMM's fused kernels: the conv layers and the wide dense layer next to them
(Ch[-1] s s = 3136 features at 28 x 28) are where the time goes, and they are already BLAS
products and the two copy kernels; the rest is small beside them.

Same numbers as the readable path: tests/test_conv_model.py compares loss, terms and every
gradient to 1e-10 in float64.
"""
from __future__ import annotations

import time

import numba
import numpy as np

from npvae.core import gmm
from npvae.core.config import Config
from npvae.core.noise import Noise
from npvae.core.params import Params

from . import kernels
from .gmm import evaluate_chunks
from .threads import Team, available_cores, blas_one_thread, split

# with NUMBA_DISABLE_JIT=1 the NumPy twins (the kernels as plain Python loops are far slower)
kern = kernels.numpy_twins() if numba.config.DISABLE_JIT else kernels


class ConvGMM:
    """Loss, gradient and evaluation of model gmm with conv layers, for one config."""

    def __init__(self, cfg: Config, threads: int | None = None):
        self.cfg = self.train_cfg = cfg
        self.threads = T = max(1, threads or available_cores())
        self.team = Team(T)                    # also the loop's augmentation threads
        self.laps = None        # a dict to receive forward+backward seconds (profiling)
        self.ops = {"gather": kern.im2col, "scatter": kern.col2im}
        self.grads = None       # one gradient buffer per thread, made at the first step
        if not numba.config.DISABLE_JIT:
            kernels.warm_up(np.dtype(cfg.dtype))

    def reweight(self, cfg: Config) -> None:
        """Training steps use cfg's loss weights from now on (the staged schedule changes
        w_kl, w_klc); evaluation keeps the full objective of the config it was made with."""
        self.train_cfg = cfg

    def loss_and_grads(self, p: Params, x, y, noise: Noise, g: Params):
        """gmm.forward and gmm.backward by rows on T threads (the module docstring), every
        gradient written into g: returns (loss, terms)."""
        t0, B, cfg = time.perf_counter(), x.shape[0], self.train_cfg
        ranges = split(B, self.threads)
        if self.grads is None:                 # zeros: only thread 0 writes the prior's
            self.grads = [g.zeros_like() for _ in range(self.threads)]
        rows, latent = [None] * len(ranges), {}

        def step(t, r, barrier):
            i0, i1 = r                         # A. rows: forward, decoder backward to dz
            (mu, lv, z, _, bce), cache = gmm.rows_forward(p, x[i0:i1], noise.eps[i0:i1], cfg,
                                                          **self.ops)
            dz = gmm.rows_backward_decoder(np.full(i1 - i0, cfg.w_rec / B), cache,
                                           self.grads[t])
            rows[t] = (mu, lv, z)
            barrier.wait()
            if t == 0:                         # B. the latent block, on the whole batch
                mu, lv, z = (np.concatenate(a) for a in zip(*rows))
                latent["sums"], *_, c_lat = gmm.latent_forward(p, mu, lv, z, y, cfg)
                latent["grads"] = gmm.latent_backward(c_lat, self.grads[0], cfg)
            barrier.wait()                     # C. rows: the encoder backward
            dmu, dlv, dz_lat = (a[i0:i1] for a in latent["grads"])
            gmm.rows_backward_encoder(dmu, dlv, dz + dz_lat, cache, self.grads[t])
            return float(bce.sum())

        with blas_one_thread():
            bce = self.team.run(step, ranges)
        np.copyto(g.flat, self.grads[0].flat)
        for t in range(1, len(ranges)):
            g.flat += self.grads[t].flat
        terms = {"recon": cfg.w_rec * sum(bce) / B,
                 **{k: v / B for k, v in latent["sums"].items()}}
        if self.laps is not None:
            self.laps["forward+backward"] = self.laps.get("forward+backward", 0.0) + \
                time.perf_counter() - t0
        return sum(terms.values()), terms

    def evaluate(self, p: Params, x, y=None, outputs: bool = False):
        """Eval mode (z = mu) on one chunk: (terms with "loss", the sum of q over the chunk
        (K,), and the Outputs of model.evaluate when `outputs`, else None)."""
        y = np.full(x.shape[0], -1) if y is None else y
        loss, terms, out, _ = gmm.forward(p, x, y, self.cfg, None, **self.ops)
        terms["loss"] = loss
        return terms, out.q.sum(axis=0, dtype=np.float64), (out if outputs else None)

    def evaluate_split(self, p: Params, x, y) -> tuple[dict, np.ndarray]:
        """train.evaluate_split on threads, chunk by chunk (engine/gmm.py:evaluate_chunks)."""
        def chunk(t, xc, yc):
            return self.evaluate(p, xc, yc)[:2]

        with blas_one_thread():                # also when one thread evaluates
            return evaluate_chunks(self.team, self.threads, self.cfg, x, y, chunk)
