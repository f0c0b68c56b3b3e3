"""The seed's model on the engine: the loss and gradient of npvae/core/model.py with
preallocated buffers, BLAS products written in place (`out=`) and the fused kernels, in an order
of its own. Its decoder runs every (image, component) pair, K times the rows of model gmm's,
so it keeps a schedule of its own on the engine (engine.py: threads, timing, partial sums,
chunked evaluation) rather than model gmm's rows-and-blocks one (gmm.py); the kernels' NumPy
twins are npvae/core's blocks (kernels.latent_terms_np calls model.terms_forward).

What differs from the readable path (npvae/core/model.py), and why it gives the same numbers:

* The decoder's first layer is split. Its input concat(hz_i, hc_k) is linear in each half, so
      concat(hz_i, hc_k) W0 + b0 = hz_i W0[:P] + (hc_k W0[P:] + b0) = az_i + ac_k
  which costs one (B, P) x (P, G0) and one (K, P) x (P, G0) product instead of a
  (B*K, 2P) x (2P, G0) one; `pair_lrelu` adds the halves for every pair. In the backward pass
  dW0[:P] = hz^T sum_k da_ik and dW0[P:] = hc^T sum_i da_ik.
* The decoder runs on B*K rows at once (row i*K + k is the pair (image i, component k)), the
  bias added inside the next kernel, every bias gradient (a column sum) made by the kernel that
  forms the gradient it sums, and the BCE, its gradient and the q-weighting in one pass whose
  output overwrites the logits (nothing else needs them in training).
* Work is split by images over T threads (T = cores; npvae/engine/threads.py), BLAS running
  single-threaded inside each.
  Almost everything is per image: the whole forward pass, the decoder's backward pass (its input
  gradient w_ik (sigmoid(l_ik) - x_i) needs only image i's q), the classifier, the backward
  pass from z down to the input. So a step (`_step`, one call per thread) is two passes over
  the images, each thread on its own rows: `_down` (forward, decoder and classifier backward)
  and `_up` (pathway, heads and trunk backward). Between them, after a barrier, thread 0
  computes what couples images (`_couple`: the loss terms through the batch usage and the
  count of labeled images). A weight gradient sums over all images. The decoder's: each
  thread makes dW = h^T da over its own rows (data still in its core's cache), and while
  thread 0 runs `_couple` the others add these partial sums, in thread order, by columns.
  The encoder's, after a barrier: thread t makes its share of the *columns* of dW over all
  rows (no partial sums). Bias gradients are per-thread partial sums, added in thread order.
  Results are bit-for-bit repeatable.
  Evaluation chunks are independent: each thread takes whole chunks.
* The classifier runs on the labeled rows only: its loss is a mean over them, so the other
  rows' logits would be computed and thrown away (their gradient is exactly 0).
Threads of ours beside single-threaded BLAS, not BLAS's threads nor Numba's pools: BLAS's idle
threads spin and take the cores (the comparison is in benchmarks/README.md).
"""
from __future__ import annotations

import time

import numpy as np

from npvae.core import layers as L
from npvae.core.blocks import TERMS, Outputs, mlp_backward, mlp_forward
from npvae.core.config import Config
from npvae.core.noise import Noise
from npvae.core.params import Params

from . import blocks
from .engine import Engine, add_in_order, weights
from .kernels import ACTIVE as kern
from .kernels.dense import LATENT_TERMS_WEIGHTS
from .threads import Team, blas_single_thread, split


class Workspace:
    """Preallocated arrays for up to M images: activations, their gradients, heads."""

    def __init__(self, cfg: Config, M: int):
        dt, K, G, P, d = np.dtype(cfg.dtype), cfg.K, cfg.decoder_dims, cfg.pathway_dim, \
            cfg.latent_dim
        e = lambda *shape: np.empty(shape, dt)                                  # noqa: E731
        self.enc_h = [e(M, n) for n in cfg.hidden_dims]      # trunk outputs (post-lrelu)
        self.enc_dh = [e(M, n) for n in cfg.hidden_dims]     # their pre-activation gradients
        self.a, self.q, self.da = e(M, K), e(M, K), e(M, K)
        self.mu, self.lv, self.z = e(M, d), e(M, d), e(M, d)
        self.dmu, self.dlv, self.dz = e(M, d), e(M, d), e(M, d)
        self.hz, self.dhz = e(M, P), e(M, P)
        self.az, self.daz = e(M, G[0]), e(M, G[0])
        self.dec_h = [e(M * K, n) for n in G]                # decoder hidden outputs
        self.dec_dh = [e(M * K, n) for n in G]
        self.logits = e(M * K, cfg.input_dim)                # then (training) dL/dlogits
        self.bce, self.w = e(M * K), e(M * K)
        self.cls_logits = e(M, cfg.num_classes)


class FastModel(Engine):
    """Loss, gradient and evaluation of the seed's model for one config, with reused
    workspaces."""

    def __init__(self, cfg: Config, max_batch: int | None = None, threads: int | None = None,
                 train_threads: int | None = None):
        """threads: Python threads for evaluation (default: one per core), each on whole
        chunks with single-threaded BLAS. train_threads (default: threads): the same for a
        training step, its images split between them; 1 runs it on one thread with BLAS on
        every core (benchmarks/README.md compares the two)."""
        super().__init__(cfg, threads)
        self.max_batch = M = max_batch or max(cfg.batch_size, cfg.eval_batch_size)
        self.train_threads = max(1, train_threads or self.threads)
        T = max(self.threads, self.train_threads)
        self.n = len(cfg.decoder_dims)                       # index of the logits layer
        self.ws = [Workspace(cfg, M)] + [Workspace(cfg, cfg.eval_batch_size)
                                         for _ in range(T - 1)]
        # per-thread partial sums over images: d(ac), bias and classifier gradients
        dims = (cfg.latent_dim, *cfg.classifier_dims, cfg.num_classes)
        biases = [(f"enc{i}", n) for i, n in enumerate(cfg.hidden_dims)] + \
                 [(f"dec{j}", n) for j, n in enumerate((*cfg.decoder_dims, cfg.input_dim)) if j]
        self.n_cls = len(dims) - 1                           # the classifier's layers
        self.cls_grads = [f"cls{i}.{w}" for i in range(self.n_cls) for w in "Wb"]
        self.summed_down = [f"{n}.b" for n, _ in biases if n.startswith("dec")] + self.cls_grads
        self.summed_up = [f"{n}.b" for n, _ in biases if n.startswith("enc")]
        self.parts = [{**{f"{n}.b": np.empty(w, self.dtype) for n, w in biases},
                       **{f"cls{i}.W": np.empty(dims[i:i + 2], self.dtype)
                          for i in range(len(dims) - 1)},
                       **{f"cls{i}.b": np.empty(dims[i + 1], self.dtype)
                          for i in range(len(dims) - 1)},
                       **{f"dec{j}.W": np.empty((a, b), self.dtype) for j, (a, b) in
                          enumerate(zip(cfg.decoder_dims, (*cfg.decoder_dims[1:], cfg.input_dim)),
                                    start=1)},
                       "dac": np.empty((cfg.K, cfg.decoder_dims[0]), self.dtype)}
                      for _ in range(T)]
        self.team = Team(T)

    # ------------------------------------------------------------ forward pieces
    def _constants(self, p: Params):
        """What does not depend on the images: pi (K,), the component pathway hc (K, P) and
        its half of the first decoder layer, ac = hc W0[P:] + b0 (K, G0)."""
        pi = L.softmax_forward(p["pi_logits"])[0]
        hc, c_hc = L.lrelu_forward(p["embed"] @ p["dec_e.W"] + p["dec_e.b"])
        return pi, hc, c_hc, hc @ p["dec0.W"][self.cfg.pathway_dim:] + p["dec0.b"]

    def _forward_rows(self, ws: Workspace, p: Params, x, ac, eps, i0: int, i1: int):
        """Images i0:i1 from pixels to the decoder's last product (bias not yet added), in ws:
        trunk, heads (q, mu, lv, z = mu + e^{lv/2} eps, or mu when eps is None), the z
        pathway hz, and every (image, component) pair. Returns the logits' rows."""
        h = blocks.mlp_forward(x[i0:i1], p, "enc", len(ws.enc_h), False,
                               [buf[i0:i1] for buf in ws.enc_h])[0]
        a, mu, lv, z = ws.a[i0:i1], ws.mu[i0:i1], ws.lv[i0:i1], ws.z[i0:i1]
        for name, out in (("enc_c", a), ("enc_mu", mu), ("enc_lv", lv)):
            np.matmul(h, p[f"{name}.W"], out=out)
            out += p[f"{name}.b"]
        eps_rows = eps[i0:i1] if eps is not None else ws.z[:0]      # no rows: z = mu
        kern.heads_forward(a, mu, lv, eps_rows, ws.q[i0:i1], z)
        hz = np.matmul(z, p["dec_z.W"], out=ws.hz[i0:i1])
        kern.bias_lrelu(hz, p["dec_z.b"])
        np.matmul(hz, p["dec0.W"][:self.cfg.pathway_dim], out=ws.az[i0:i1])
        K = self.cfg.K
        h = ws.dec_h[0][i0 * K:i1 * K]
        kern.pair_lrelu(ws.az[i0:i1], ac, h)
        for j in range(1, self.n + 1):
            out = (ws.dec_h[j] if j < self.n else ws.logits)[i0 * K:i1 * K]
            np.matmul(h, p[f"dec{j}.W"], out=out)
            if j < self.n:
                kern.bias_lrelu(out, p[f"dec{j}.b"])
            h = out
        return h

    def _terms(self, ws: Workspace, B: int, pi, ce: float, cfg: Config):
        """The six weighted terms (cfg's weights) from the heads of B images, their BCE and
        the classifier's CE; the first five terms' gradients w.r.t. the heads go to ws.da,
        dmu, dlv (and the one w.r.t. pi_logits is returned)."""
        dpi_logits = np.empty_like(pi)
        five = kern.latent_terms(ws.q[:B], ws.bce[:B * cfg.K].reshape(B, -1), ws.mu[:B],
                                 ws.lv[:B], pi, weights(cfg, LATENT_TERMS_WEIGHTS), ws.da[:B],
                                 ws.dmu[:B], ws.dlv[:B], dpi_logits)
        return dict(zip(TERMS, (*five, cfg.w_cls * ce))), dpi_logits

    # ------------------------------------------------------------------ training
    def loss_and_grads(self, p: Params, x, y, noise: Noise, g: Params):
        """Training mode (sampled z, dropout): the loss and its weighted terms; the gradient
        is written into g (every array). model.loss_and_grads with g given, not returned."""
        cfg, B = self.train_cfg, x.shape[0]
        if B > self.max_batch:
            raise ValueError(f"batch of {B} images exceeds this FastModel's max_batch "
                             f"{self.max_batch}; build it with max_batch >= {B}.")
        self._t0 = time.perf_counter()
        rows = split(B, self.train_threads)
        n_lab = int((y >= 0).sum())
        with blas_single_thread(len(rows)):
            const = self._constants(p)
            done = self.team.run(lambda t, r, bar: self._step(
                p, x, y, noise, const, n_lab, g, t, *r, bar), rows)
            self._sum_parts(g, len(rows), self.summed_up)
        self.lap("backward", self._t1)
        terms = done[0][1]
        terms["cls"] = cfg.w_cls * sum(ce for ce, _ in done)
        return sum(terms.values()), terms

    def _step(self, p, x, y, noise, const, n_lab, g, t, i0, i1, barrier):
        """Thread t's part of a training step, images i0:i1: `_down` and the decoder's weight
        gradients over these rows; after a barrier thread 0 runs `_couple` while the others
        add up those partial sums; after another, `_up`. Returns the thread's share of the
        classifier's CE, and (thread 0) the other five weighted terms."""
        T = barrier.parties
        ce = self._down(p, x, y, noise, const[3], n_lab, t, i0, i1)
        # the decoder's weight gradients dW = h^T da over this thread's rows (a partial sum)
        ws, r0, r1 = self.ws[0], i0 * self.cfg.K, i1 * self.cfg.K
        for j in range(1, self.n + 1):
            top = ws.logits if j == self.n else ws.dec_dh[j]
            out = g[f"dec{j}.W"] if T == 1 else self.parts[t][f"dec{j}.W"]
            np.matmul(ws.dec_h[j - 1][r0:r1].T, top[r0:r1], out=out)
        barrier.wait()                                  # every thread's rows are done
        if t == 0:
            terms = self._couple(p, g, const, x.shape[0], T)
        else:                    # meanwhile the others add up the partial sums, by columns
            terms = None
            for j in range(1, self.n + 1):
                name = f"dec{j}.W"
                c0, c1 = split(g[name].shape[1], T - 1)[t - 1]
                self._sum_parts(g, T, [name], slice(c0, c1))
        barrier.wait()                                  # da, dmu, dlv are ready
        self._up(p, x, noise, g, t, i0, i1, barrier)
        return ce, terms

    def _couple(self, p, g, const, B: int, T: int):
        """What couples the images (thread 0, while the others add up the decoder's weight
        gradients): the loss terms through the batch usage (their gradients w.r.t. the heads
        into ws.da, dmu, dlv), the threads' partial sums of the decoder's bias and classifier
        gradients, and the component pathway's backward pass from d(ac) = sum over images.
        Returns the five terms."""
        pi, hc, c_hc, _ = const
        P, ws = self.cfg.pathway_dim, self.ws[0]
        terms, dpi_logits = self._terms(ws, B, pi, 0.0, self.train_cfg)
        self._sum_parts(g, T, self.summed_down)
        dac = self.parts[0]["dac"]
        for t in range(1, T):
            dac += self.parts[t]["dac"]
        g["pi_logits"][...] = dpi_logits
        g["dec0.b"][...] = dac.sum(axis=0)
        np.matmul(hc.T, dac, out=g["dec0.W"][P:])
        dpre = L.lrelu_backward(dac @ p["dec0.W"][P:].T, c_hc)                     # (K, P)
        g["embed"][...], g["dec_e.W"][...], g["dec_e.b"][...] = L.linear_backward(
            dpre, (p["embed"], p["dec_e.W"]))
        return terms

    def _down(self, p, x, y, noise, ac, n_lab, t, i0, i1):
        """Thread t, images i0:i1: the forward pass, the BCE with its gradient, the decoder's
        backward pass to d(az) and the thread's part of d(ac), the classifier's forward and
        backward to dz (d(CE)/d logits = (softmax - onehot) w_cls / n_lab on labeled rows).
        Returns this thread's share of the classifier's CE (its labeled rows' sum / n_lab)."""
        cfg, ws, K, n, part = self.train_cfg, self.ws[0], self.cfg.K, self.n, self.parts[t]
        r0, r1 = i0 * K, i1 * K
        da = self._forward_rows(ws, p, x, ac, noise.eps, i0, i1)       # the logits' rows
        if t == 0:                                    # profile: thread 0's forward pass
            self._t1 = self.lap("forward", self._t0)
        np.multiply(ws.q[i0:i1].reshape(-1), self.dtype.type(cfg.w_rec / x.shape[0]),
                    out=ws.w[r0:r1])
        kern.bce_grad(da, p[f"dec{n}.b"], x[i0:i1], ws.w[r0:r1], ws.bce[r0:r1], part[f"dec{n}.b"])
        for j in range(n, 0, -1):                  # da: gradient of layer j's pre-activation
            da = np.matmul(da, p[f"dec{j}.W"].T, out=ws.dec_dh[j - 1][r0:r1])
            if j > 1:
                kern.lrelu_grad_bias(da, ws.dec_h[j - 1][r0:r1], part[f"dec{j - 1}.b"])
        kern.pair_lrelu_grad(da, ws.dec_h[0][r0:r1], ws.daz[i0:i1], part["dac"])
        # the classifier (its weight gradients are this thread's partial sums), on the labeled
        # rows only: its CE is a mean over them, so the others get no gradient from it
        dz, lab = ws.dz[i0:i1], np.flatnonzero(y[i0:i1] >= 0)
        dz[...] = 0
        ce, share = 0.0, lab.size / max(n_lab, 1)          # the CE is a mean over the batch
        if lab.size:
            masks = tuple(m[i0:i1][lab] for m in noise.masks)
            logits, caches = mlp_forward(ws.z[i0:i1][lab], p, "cls", self.n_cls, True, masks)
            ce, c_ce = L.labeled_ce_forward(logits, y[i0:i1][lab])
            dz[lab] = mlp_backward(L.labeled_ce_backward(cfg.w_cls * share, c_ce), caches,
                                   part, "cls")
        else:
            for name in self.cls_grads:
                part[name][...] = 0
        return float(ce) * share

    def _up(self, p, x, noise, g, t, i0, i1, barrier):
        """Thread t, images i0:i1: from d(az), dz (classifier) and the loss terms' da, dmu,
        dlv down through the z pathway, z = mu + e^{lv/2} eps, the heads and the trunk.
        After the barrier: this thread's columns of the trunk's and the heads' weight
        gradients, and (thread 0) the z pathway's and the first decoder layer's."""
        ws, P = self.ws[0], self.cfg.pathway_dim
        dhz = np.matmul(ws.daz[i0:i1], p["dec0.W"][:P].T, out=ws.dhz[i0:i1])
        dhz *= np.where(ws.hz[i0:i1] > 0, 1.0, L.LEAK).astype(self.dtype)     # lrelu'
        dz = ws.dz[i0:i1]
        dz += dhz @ p["dec_z.W"].T
        dmu, dlv = ws.dmu[i0:i1], ws.dlv[i0:i1]
        dmu += dz
        dlv += dz * (0.5 * np.exp(0.5 * ws.lv[i0:i1]) * noise.eps[i0:i1])
        da = ws.enc_dh[-1][i0:i1]
        np.matmul(ws.da[i0:i1], p["enc_c.W"].T, out=da)
        da += dmu @ p["enc_mu.W"].T
        da += dlv @ p["enc_lv.W"].T
        n_layers = len(ws.enc_h)
        for i in range(n_layers - 1, -1, -1):
            kern.lrelu_grad_bias(da, ws.enc_h[i][i0:i1], self.parts[t][f"enc{i}.b"])
            if i > 0:
                da = np.matmul(da, p[f"enc{i}.W"].T, out=ws.enc_dh[i - 1][i0:i1])
        barrier.wait()
        B = x.shape[0]
        for i in range(n_layers):
            c0, c1 = split(ws.enc_dh[i].shape[1], barrier.parties)[t]
            below = ws.enc_h[i - 1][:B] if i > 0 else x
            np.matmul(below.T, ws.enc_dh[i][:B, c0:c1], out=g[f"enc{i}.W"][:, c0:c1])
        if t == 0:                       # the small ones: a few microseconds each
            h = ws.enc_h[-1][:B]
            for name, d in (("enc_c", ws.da), ("enc_mu", ws.dmu), ("enc_lv", ws.dlv)):
                np.matmul(h.T, d[:B], out=g[f"{name}.W"])
                g[f"{name}.b"][...] = d[:B].sum(axis=0)
            np.matmul(ws.z[:B].T, ws.dhz[:B], out=g["dec_z.W"])
            g["dec_z.b"][...] = ws.dhz[:B].sum(axis=0)
            np.matmul(ws.hz[:B].T, ws.daz[:B], out=g["dec0.W"][:P])

    def _sum_parts(self, g: Params, T: int, names, cols=slice(None)):
        """g[name] = the threads' partial sums, added in thread order (only the columns
        `cols` of the last axis, when given)."""
        for name in names:
            add_in_order(g[name][..., cols], [self.parts[t][name][..., cols] for t in range(T)])

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, ws: Workspace, p: Params, x, y, const, outputs: bool):
        """Eval mode on one chunk with one thread's workspace: (terms, q summed over the
        chunk, Outputs or None)."""
        B, K = x.shape[0], self.cfg.K
        pi, _, _, ac = const
        logits = self._forward_rows(ws, p, x, ac, None, 0, B)
        kern.bce_eval(logits, p[f"dec{self.n}.b"], x, ws.bce[:B * K])
        mu = ws.mu[:B]
        rows = slice(None) if outputs else np.flatnonzero(y >= 0)    # the CE's rows suffice
        cls_logits = mlp_forward(mu[rows], p, "cls", self.n_cls, True)[0]
        terms = self._terms(ws, B, pi, float(L.labeled_ce_forward(cls_logits, y[rows])[0]),
                            self.cfg)[0]
        terms["loss"] = sum(terms[t] for t in TERMS)
        out = None
        if outputs:
            out = Outputs(ws.q[:B].copy(), mu.copy(), ws.lv[:B].copy(), mu.copy(),
                          logits.reshape(B, K, -1).copy(), cls_logits, pi)
        return terms, ws.q[:B].sum(axis=0, dtype=np.float64), out

    def evaluate(self, p: Params, x, y=None, outputs: bool = False):
        """Eval mode (z = mu, no dropout) on one chunk: (terms with "loss", the sum of q over
        the chunk (K,), and the Outputs of model.evaluate when `outputs`, else None)."""
        if x.shape[0] > self.max_batch:
            raise ValueError(f"chunk of {x.shape[0]} images exceeds this FastModel's "
                             f"max_batch {self.max_batch}.")
        y = np.full(x.shape[0], -1) if y is None else y
        return self._evaluate(self.ws[0], p, x, y, self._constants(p), outputs)  # all-core BLAS

    def _eval_constants(self, p: Params):
        return self._constants(p)

    def _eval_chunk(self, t: int, p: Params, x, y, const):
        return self._evaluate(self.ws[t], p, x, y, const, False)[:2]

