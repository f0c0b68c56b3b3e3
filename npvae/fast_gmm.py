"""The fast path of model "gmm": the loss and gradient of npvae/gmm.py with preallocated
buffers, BLAS products written in place (`out=`) and the fused kernels of npvae/kernels.py.

The gmm model's cost is its two MLPs (trunk 784 -> H and decoder d -> G -> 784), one row per
image: no (image, component) pairs as in the seed's decoder. So the products are plain
(B, N) x (N, M) ones, run on the whole batch with BLAS's own threads (no thread team), and
the kernels fuse what follows each product: bias + leaky ReLU, the BCE with its gradient and
bias gradient, the leaky ReLU's backward with the bias gradient. The small latent block
between encoder and decoder ((B, K, d) arrays, K = 10, d = 10) is the readable
gmm.latent_forward / latent_backward itself: fusing it would save ~0.2 ms a step.

Same numbers as the readable path: tests/test_gmm.py compares loss, terms and every gradient
to 1e-10 in float64.
"""
from __future__ import annotations

import time

import numba
import numpy as np

from . import gmm, kernels
from . import layers as L
from .config import Config
from .model import TERMS, Outputs
from .noise import Noise
from .params import Params

kern = kernels.numpy_twins() if numba.config.DISABLE_JIT else kernels


class FastGMM:
    """Loss, gradient and evaluation of model gmm for one config, with reused buffers."""

    def __init__(self, cfg: Config, max_batch: int | None = None):
        self.cfg, self.dtype = cfg, np.dtype(cfg.dtype)
        self.train_cfg = cfg                # the loss weights of training steps (reweight)
        M = max_batch or max(cfg.batch_size + cfg.labeled_per_batch, cfg.eval_batch_size)
        self.max_batch = M
        e = lambda *shape: np.empty(shape, self.dtype)                          # noqa: E731
        self.enc_h = [e(M, n) for n in cfg.hidden_dims]      # trunk outputs (post-lrelu)
        self.enc_dh = [e(M, n) for n in cfg.hidden_dims]     # their pre-activation gradients
        self.dec_h = [e(M, n) for n in cfg.decoder_dims]
        self.dec_dh = [e(M, n) for n in cfg.decoder_dims]
        self.logits = e(M, cfg.input_dim)                    # then (training) dL/dlogits
        self.bce, self.w = e(M), e(M)
        self.n = len(cfg.decoder_dims)                       # index of the logits layer
        self.laps = None          # a dict to receive forward / backward seconds (profiling)
        if not numba.config.DISABLE_JIT:
            kernels.warm_up(self.dtype)

    def reweight(self, cfg: Config) -> None:
        """Training steps use cfg's loss weights from now on (the staged schedule changes
        w_kl, w_klc); evaluation keeps the full objective of the config it was made with."""
        self.train_cfg = cfg

    def _lap(self, name, t0):
        t = time.perf_counter()
        if self.laps is not None:
            self.laps[name] = self.laps.get(name, 0.0) + t - t0
        return t

    def _encode(self, p: Params, x):
        """Trunk and heads for the B rows of x: (h, the trunk's output (B, H[-1]), mu, lv)."""
        h = x
        for i, buf in enumerate(self.enc_h):
            out = buf[:x.shape[0]]
            np.matmul(h, p[f"enc{i}.W"], out=out)
            kern.bias_lrelu(out, p[f"enc{i}.b"])
            h = out
        return h, h @ p["enc_mu.W"] + p["enc_mu.b"], h @ p["enc_lv.W"] + p["enc_lv.b"]

    def _decode(self, p: Params, z):
        """The decoder up to its last product, bias not yet added: (B, D) in self.logits."""
        h = z
        for j, buf in enumerate(self.dec_h):
            out = buf[:z.shape[0]]
            np.matmul(h, p[f"dec{j}.W"], out=out)
            kern.bias_lrelu(out, p[f"dec{j}.b"])
            h = out
        return np.matmul(h, p[f"dec{self.n}.W"], out=self.logits[:z.shape[0]])

    # ---------------------------------------------------------------- training step
    def loss_and_grads(self, p: Params, x, y, noise: Noise, g: Params):
        """gmm.loss_and_grads, writing every gradient into g: returns (loss, terms)."""
        cfg, B, t0 = self.train_cfg, x.shape[0], time.perf_counter()
        if B > self.max_batch:
            raise ValueError(f"batch of {B} images exceeds this FastGMM's max_batch "
                             f"{self.max_batch}.")
        h, mu, lv = self._encode(p, x)
        z, c_z = L.reparam_forward(mu, lv, noise.eps)
        sums, _, _, _, c_lat = gmm.latent_forward(p, mu, lv, z, y, cfg)
        l = self._decode(p, z)
        w, bce, last = self.w[:B], self.bce[:B], f"dec{self.n}"
        w[:] = cfg.w_rec / B
        kern.bce_grad(l, p[f"{last}.b"], x, w, bce, g[f"{last}.b"])   # l <- dL/dl
        terms = {"recon": cfg.w_rec * float(bce.sum(dtype=np.float64)) / B,
                 **{k: v / B for k, v in sums.items()}}
        t0 = self._lap("forward", t0)
        # decoder, top down: dW = h^T dh; dh <- dh W^T * lrelu'(h), db from the same pass
        dh = l
        for j in range(self.n, 0, -1):
            below = self.dec_h[j - 1][:B]
            np.matmul(below.T, dh, out=g[f"dec{j}.W"])
            dh = np.matmul(dh, p[f"dec{j}.W"].T, out=self.dec_dh[j - 1][:B])
            kern.lrelu_grad_bias(dh, below, g[f"dec{j - 1}.b"])
        np.matmul(z.T, dh, out=g["dec0.W"])
        dz = dh @ p["dec0.W"].T                                             # (B, d)
        # latent terms, then z = mu + e^{lv/2} eps
        dmu, dlv, dz_lat = gmm.latent_backward(c_lat, g, cfg)
        dz += dz_lat
        dmu_z, dlv_z = L.reparam_backward(dz, c_z)
        dmu, dlv = dmu + dmu_z, dlv + dlv_z
        # heads and trunk
        for name, d in (("enc_mu", dmu), ("enc_lv", dlv)):
            np.matmul(h.T, d, out=g[f"{name}.W"])
            g[f"{name}.b"][...] = d.sum(axis=0)
        da = np.matmul(dmu, p["enc_mu.W"].T, out=self.enc_dh[-1][:B])
        da += dlv @ p["enc_lv.W"].T
        for i in range(len(self.enc_h) - 1, -1, -1):
            kern.lrelu_grad_bias(da, self.enc_h[i][:B], g[f"enc{i}.b"])
            below = self.enc_h[i - 1][:B] if i > 0 else x
            np.matmul(below.T, da, out=g[f"enc{i}.W"])
            if i > 0:
                da = np.matmul(da, p[f"enc{i}.W"].T, out=self.enc_dh[i - 1][:B])
        self._lap("backward", t0)
        return sum(terms.values()), terms

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, p: Params, x, y=None, outputs: bool = False):
        """Eval mode (z = mu) on one chunk: (terms with "loss", the sum of q over the chunk
        (K,), and the Outputs of model.evaluate when `outputs`, else None)."""
        B = x.shape[0]
        if B > self.max_batch:
            raise ValueError(f"chunk of {B} images exceeds this FastGMM's max_batch "
                             f"{self.max_batch}.")
        y = np.full(B, -1) if y is None else y
        _, mu, lv = self._encode(p, x)
        sums, q, s, pi, _ = gmm.latent_forward(p, mu, lv, mu, y, self.cfg)
        l = self._decode(p, mu)
        kern.bce_eval(l, p[f"dec{self.n}.b"], x, self.bce[:B])
        terms = {"recon": self.cfg.w_rec * float(self.bce[:B].sum(dtype=np.float64)) / B,
                 **{k: v / B for k, v in sums.items()}}
        terms["loss"] = sum(terms[t] for t in TERMS)
        out = Outputs(q, mu, lv, mu, l[:, None, :].copy(), s, pi) if outputs else None
        return terms, q.sum(axis=0, dtype=np.float64), out

    def evaluate_split(self, p: Params, x, y) -> tuple[dict, np.ndarray]:
        """train.evaluate_split on the fast path: chunks of eval_batch_size, each chunk's
        terms weighted by its size / N; and the mean of q(c|x) over the split (K,)."""
        n, bs = x.shape[0], self.cfg.eval_batch_size
        totals = dict.fromkeys(("loss",) + TERMS, 0.0)
        usage = np.zeros(self.cfg.K)
        if n == 0:
            return totals, np.full(self.cfg.K, np.nan)          # as train.evaluate_split
        for s in range(0, n, bs):
            terms, q_sum, _ = self.evaluate(p, x[s:s + bs], y[s:s + bs])
            for k in totals:
                totals[k] += min(bs, n - s) / n * terms[k]
            usage += q_sum
        return totals, usage / n
