"""The fast path of model "gmm": the loss and gradient of npvae/core/gmm.py with preallocated
buffers, BLAS products written in place (`out=`) and the fused kernels of npvae/engine/kernels/.

The gmm model's cost is its two MLPs (trunk 784 -> H and decoder d -> G -> 784), one row per
image: no (image, component) pairs as in the seed's decoder. The kernels fuse what follows
each product: bias + leaky ReLU, the BCE with its gradient and bias gradient, the leaky
ReLU's backward with the bias gradient. The small latent block between encoder and decoder
((B, K, d) arrays, K = 10, d = 10) is one fused kernel, kernels.gmm_latent, whose NumPy twin
is the readable gmm.latent_forward / latent_backward.

Threads, as in npvae/engine/mixture.py (npvae/engine/threads.py): T Python threads, BLAS on one
thread inside each (OpenBLAS's own threads spin, and on a shared host they made steps 10x slower). A
step:
  A. rows: each thread takes its images from pixels through the decoder, the BCE and the
     decoder's backward pass down to dz (everything per image);
  B. thread 0 computes the latent block on the whole batch (it couples images: the labeled
     count, the batch usage); meanwhile the others make their columns of the decoder's
     weight gradients (dW = h^T dh over all rows), then thread 0 its own;
  C. rows: z = mu + e^{lv/2} eps, the heads and the trunk backward, per image;
  D. columns: the trunk's and heads' weight gradients.
Bias gradients are per-thread partial sums added in thread order: bit-for-bit repeatable for a
given thread count. Evaluation chunks are independent: each thread takes whole chunks.

Same numbers as the readable path: tests/test_gmm.py compares loss, terms and every gradient
to 1e-10 in float64.
"""
from __future__ import annotations

import time

import numba
import numpy as np

from npvae.core import layers as L
from npvae.core.blocks import TERMS, Outputs
from npvae.core.config import Config
from npvae.core.noise import Noise
from npvae.core.params import Params

from . import kernels
from .mixture import dense_lrelu_rows
from .threads import Team, available_cores, blas_single_thread, split

kern = kernels.numpy_twins() if numba.config.DISABLE_JIT else kernels


class Workspace:
    """Preallocated arrays for up to M images: activations and their gradients."""

    def __init__(self, cfg: Config, M: int):
        e = lambda *shape: np.empty(shape, np.dtype(cfg.dtype))                 # noqa: E731
        d = cfg.latent_dim
        self.enc_h = [e(M, n) for n in cfg.hidden_dims]      # trunk outputs (post-lrelu)
        self.enc_dh = [e(M, n) for n in cfg.hidden_dims]     # their pre-activation gradients
        self.dec_h = [e(M, n) for n in cfg.decoder_dims]
        self.dec_dh = [e(M, n) for n in cfg.decoder_dims]
        self.logits = e(M, cfg.input_dim)                    # then (training) dL/dlogits
        self.bce, self.w = e(M), e(M)
        self.mu, self.lv, self.z, self.dz = e(M, d), e(M, d), e(M, d), e(M, d)
        self.dmu, self.dlv, self.dz_lat = e(M, d), e(M, d), e(M, d)
        self.q, self.s = e(M, cfg.K), e(M, cfg.K)           # q(c|x) and log p(c, z)
        self.pm = e(cfg.K, d)                                # scratch: no prior gradient


class FastGMM:
    """Loss, gradient and evaluation of model gmm for one config, with reused buffers."""

    def __init__(self, cfg: Config, max_batch: int | None = None, threads: int | None = None):
        self.cfg, self.dtype = cfg, np.dtype(cfg.dtype)
        self.train_cfg = cfg                # the loss weights of training steps (reweight)
        M = max_batch or max(cfg.batch_size + cfg.labeled_per_batch, cfg.eval_batch_size)
        self.max_batch = M
        self.threads = T = max(1, threads or available_cores())
        self.ws = [Workspace(cfg, M)] + [Workspace(cfg, cfg.eval_batch_size)
                                         for _ in range(T - 1)]
        self.n = len(cfg.decoder_dims)                       # index of the logits layer
        biases = [f"enc{i}.b" for i in range(len(cfg.hidden_dims))] + \
                 [f"dec{j}.b" for j in range(self.n + 1)]
        self.parts = [{name: np.empty(p_shape, self.dtype) for name, p_shape in
                       zip(biases, [*cfg.hidden_dims, *cfg.decoder_dims, cfg.input_dim])}
                      for _ in range(T)]
        self.team = Team(T)
        self.laps = None          # a dict to receive forward / backward seconds (profiling)
        self._latent = None       # thread 0's latent block of the current step
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

    def _forward_rows(self, ws: Workspace, p: Params, x, eps, i0: int, i1: int):
        """Images i0:i1 from pixels to the decoder's last product (bias not yet added), in
        ws: trunk, mu, lv, z = mu + e^{lv/2} eps (or mu when eps is None), decoder."""
        h = dense_lrelu_rows(x[i0:i1], p, "enc", ws.enc_h, i0, i1)
        mu, lv, z = ws.mu[i0:i1], ws.lv[i0:i1], ws.z[i0:i1]
        for name, out in (("enc_mu", mu), ("enc_lv", lv)):
            np.matmul(h, p[f"{name}.W"], out=out)
            out += p[f"{name}.b"]
        z[...] = mu if eps is None else mu + np.exp(0.5 * lv) * eps[i0:i1]
        h = dense_lrelu_rows(z, p, "dec", ws.dec_h, i0, i1)
        return np.matmul(h, p[f"dec{self.n}.W"], out=ws.logits[i0:i1])

    # ---------------------------------------------------------------- training step
    def loss_and_grads(self, p: Params, x, y, noise: Noise, g: Params):
        """gmm.loss_and_grads, writing every gradient into g: returns (loss, terms)."""
        B, t0 = x.shape[0], time.perf_counter()
        if B > self.max_batch:
            raise ValueError(f"batch of {B} images exceeds this FastGMM's max_batch "
                             f"{self.max_batch}.")
        ranges = split(B, self.threads)
        T = len(ranges)
        with blas_single_thread(T):
            self.team.run(lambda t, r, barrier: self._step(p, x, y, noise, g, t, *r, barrier,
                                                           T), ranges)
        for name in self.parts[0]:                       # bias partial sums, thread order
            total = g[name]
            np.copyto(total, self.parts[0][name])
            for t in range(1, T):
                total += self.parts[t][name]
        cfg, ws = self.train_cfg, self.ws[0]
        terms = {"recon": cfg.w_rec * float(ws.bce[:B].sum(dtype=np.float64)) / B,
                 **{k: v / B for k, v in self._latent.items()}}
        self._lap("forward+backward", t0)
        return sum(terms.values()), terms

    def _step(self, p, x, y, noise, g, t, i0, i1, barrier, T):
        cfg, ws, B, n = self.train_cfg, self.ws[0], x.shape[0], self.n
        part = self.parts[t]
        # A. rows: forward, the BCE and its gradient, the decoder backward down to dz
        l = self._forward_rows(ws, p, x, noise.eps, i0, i1)
        w = ws.w[i0:i1]
        w[:] = cfg.w_rec / B
        kern.bce_grad(l, p[f"dec{n}.b"], x[i0:i1], w, ws.bce[i0:i1], part[f"dec{n}.b"])
        dh = l                                                              # dL/dlogits
        for j in range(n, 0, -1):
            dh = np.matmul(dh, p[f"dec{j}.W"].T, out=ws.dec_dh[j - 1][i0:i1])
            kern.lrelu_grad_bias(dh, ws.dec_h[j - 1][i0:i1], part[f"dec{j - 1}.b"])
        np.matmul(dh, p["dec0.W"].T, out=ws.dz[i0:i1])
        barrier.wait()
        # B. thread 0: the latent block (whole batch); every thread: decoder dW columns
        if t == 0:
            self._latent = self._latent_block(p, ws, y, B, cfg, g)
            ws.dz[:B] += ws.dz_lat[:B]
        for j in range(n + 1):
            below = ws.dec_h[j - 1][:B] if j else ws.z[:B]
            top = ws.dec_dh[j][:B] if j < n else ws.logits[:B]
            c0, c1 = _columns(top.shape[1], T, t)
            np.matmul(below.T, top[:, c0:c1], out=g[f"dec{j}.W"][:, c0:c1])
        barrier.wait()
        # C. rows: z = mu + e^{lv/2} eps, the heads, the trunk backward
        dz, lv = ws.dz[i0:i1], ws.lv[i0:i1]
        dmu, dlv = ws.dmu[i0:i1], ws.dlv[i0:i1]
        dmu += dz
        dlv += dz * (0.5 * np.exp(0.5 * lv) * noise.eps[i0:i1])
        da = np.matmul(dmu, p["enc_mu.W"].T, out=ws.enc_dh[-1][i0:i1])
        da += dlv @ p["enc_lv.W"].T
        for i in range(len(ws.enc_h) - 1, -1, -1):
            kern.lrelu_grad_bias(da, ws.enc_h[i][i0:i1], part[f"enc{i}.b"])
            if i > 0:
                da = np.matmul(da, p[f"enc{i}.W"].T, out=ws.enc_dh[i - 1][i0:i1])
        barrier.wait()
        # D. columns: the trunk's weight gradients; thread 0 the heads'
        for i in range(len(ws.enc_h)):
            top = ws.enc_dh[i][:B]
            c0, c1 = _columns(top.shape[1], T, t)
            below = ws.enc_h[i - 1][:B] if i else x
            np.matmul(below.T, top[:, c0:c1], out=g[f"enc{i}.W"][:, c0:c1])
        if t == 0:
            h = ws.enc_h[-1][:B]
            for name, d in (("enc_mu", ws.dmu[:B]), ("enc_lv", ws.dlv[:B])):
                np.matmul(h.T, d, out=g[f"{name}.W"])
                g[f"{name}.b"][...] = d.sum(axis=0)

    def _latent_block(self, p: Params, ws: Workspace, y, B: int, cfg: Config, g):
        """The fused gmm.latent_forward (+ latent_backward when g is given, writing the
        prior's gradients into g and dmu, dlv, dz_lat into ws): {term: sum over rows}; q and s
        in ws. Training rows use z, evaluation rows z = mu (ws.z holds mu then)."""
        wts = np.array([cfg.w_kl, cfg.w_klc, cfg.w_dir, cfg.dirichlet_alpha, cfg.w_div,
                        cfg.w_cls])
        grads = (g["pi_logits"], g["prior_mu"], g["prior_lv"]) if g is not None else \
            (np.empty(cfg.K, self.dtype), ws.pm, ws.pm)
        sums = kern.gmm_latent(ws.mu[:B], ws.lv[:B], ws.z[:B], y, p["pi_logits"],
                               p["prior_mu"], p["prior_lv"], wts, g is not None, ws.q[:B],
                               ws.s[:B], ws.dmu[:B], ws.dlv[:B], ws.dz_lat[:B], *grads)
        return dict(zip(("kl_z", "kl_c", "dirichlet", "diversity", "cls"), map(float, sums)))

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, ws: Workspace, p: Params, x, y, outputs: bool):
        """Eval mode (z = mu) on one chunk with one thread's workspace: (terms, q summed over
        the chunk, Outputs or None)."""
        B = x.shape[0]
        l = self._forward_rows(ws, p, x, None, 0, B)
        kern.bce_eval(l, p[f"dec{self.n}.b"], x, ws.bce[:B])
        mu, lv = ws.mu[:B], ws.lv[:B]
        sums = self._latent_block(p, ws, y, B, self.cfg, None)
        q, s, pi = ws.q[:B], ws.s[:B], np.exp(L.log_softmax(p["pi_logits"]))
        terms = {"recon": self.cfg.w_rec * float(ws.bce[:B].sum(dtype=np.float64)) / B,
                 **{k: v / B for k, v in sums.items()}}
        terms["loss"] = sum(terms[t] for t in TERMS)
        out = None
        if outputs:
            out = Outputs(q.copy(), mu.copy(), lv.copy(), mu.copy(), l[:, None, :].copy(),
                          s.copy(), pi)
        return terms, q.sum(axis=0, dtype=np.float64), out

    def evaluate(self, p: Params, x, y=None, outputs: bool = False):
        """Eval mode (z = mu) on one chunk: (terms with "loss", the sum of q over the chunk
        (K,), and the Outputs of model.evaluate when `outputs`, else None)."""
        if x.shape[0] > self.max_batch:
            raise ValueError(f"chunk of {x.shape[0]} images exceeds this FastGMM's max_batch "
                             f"{self.max_batch}.")
        y = np.full(x.shape[0], -1) if y is None else y
        return self._evaluate(self.ws[0], p, x, y, outputs)

    def evaluate_split(self, p: Params, x, y) -> tuple[dict, np.ndarray]:
        """train.evaluate_split on the fast path (evaluate_chunks), each thread with its own
        workspace."""
        def chunk(t, xc, yc):
            return self._evaluate(self.ws[t], p, xc, yc, False)[:2]

        return evaluate_chunks(self.team, self.threads, self.cfg, x, y, chunk)


def evaluate_chunks(team: Team, threads: int, cfg: Config, x, y, chunk):
    """train.evaluate_split on threads: chunks of eval_batch_size, each chunk's terms weighted
    by its size / N, and the mean of q(c|x) over the split (K,). chunk(t, x, y) -> (terms
    with "loss", q summed over the chunk) runs on thread t, which evaluates chunks t, t + T,
    ... with BLAS on one thread; results are combined in chunk order."""
    n, bs = x.shape[0], cfg.eval_batch_size
    totals = dict.fromkeys(("loss",) + TERMS, 0.0)
    usage = np.zeros(cfg.K)
    if n == 0:
        return totals, np.full(cfg.K, np.nan)                   # as train.evaluate_split
    starts = list(range(0, n, bs))
    T = min(threads, len(starts))

    def run(t, mine, _):
        return [chunk(t, x[s:s + bs], y[s:s + bs]) for s in mine]

    with blas_single_thread(T):
        done = team.run(run, [starts[t::T] for t in range(T)])
    for c, s in enumerate(starts):
        terms, q_sum = done[c % T][c // T]
        for k in totals:
            totals[k] += min(bs, n - s) / n * terms[k]
        usage += q_sum
    return totals, usage / n


def _columns(n: int, T: int, t: int) -> tuple[int, int]:
    """Thread t's share of n columns; an empty range when there are fewer columns than
    threads (e.g. a 1-pixel input), since split() hands out at most n ranges."""
    ranges = split(n, T)
    return ranges[t] if t < len(ranges) else (n, n)
