"""The consistency term on the engine's threads (model gmm; docs/math.md, section 17).

A training step with w_cons > 0 adds, for the U unlabeled images of its batch,

    L_cons = w_cons/U sum_i m_i KL(sharpen(q(c|x_i), T) || q(c|strong(x_i)))

where q(c|x_i) is the eval-mode posterior of the image as it is (a constant target) and
strong(x_i) a harder warp of it with a square cut out (augment.strong_view). The term only
reaches the encoder and the prior: no decoder, no sampled z. It is a sum over images, so the
engine's threads split the rows (Engine.by_rows): each runs npvae/core/gmm.py's
class_log_posterior, consistency_forward and consistency_backward on its rows, on the engine's
blocks, into its own gradient buffer; the buffers are added in thread order (bit-for-bit
repeatable for a given thread count).
"""
from __future__ import annotations

from npvae.core import gmm
from npvae.core.params import Params

from .augment import strong_view
from .engine import Engine


class Consistency:
    """loss_and_grads of the consistency term of an engine's config, on its threads and
    blocks (GMMEngine: FAST; ReferenceEngine: gmm.READABLE)."""

    def __init__(self, engine: Engine):
        self.engine, self.cfg = engine, engine.cfg

    def loss_and_grads(self, p: Params, x, u, g: Params) -> tuple[float, float]:
        """Adds the term's gradient to g. x (U, D): the unlabeled images of the step as they
        are; u (U, 6): their strong views' draws (Noise.strong). Returns (L_cons, the share
        of images whose target passed cons_threshold)."""
        U, cfg, ops = x.shape[0], self.cfg, self.engine.ops
        if U == 0:
            return 0.0, 0.0
        xs = strong_view(x, u, cfg, self.engine.team)                       # (U, D)

        grads = self.engine.thread_grads(g, "consistency")
        dec = g.layout.offsets[g.layout.names.index("dec0.W")]    # the decoder: g.flat[dec:]

        def rows(t, i0, i1, barrier, g_t):
            target = gmm.class_log_posterior(p, x[i0:i1], cfg, ops)         # (b, K)
            loss, confident, cache = gmm.consistency_forward(p, target, xs[i0:i1], cfg, U, ops)
            gmm.consistency_backward(cache, g_t)
            barrier.wait()     # g += the buffers in thread order, each thread a part of it;
            T = barrier.parties    # the decoder's entries are 0: the term does not reach it
            self.engine.sum_share(g, grads[:T], 0, dec, t, T, add=True)
            return loss, confident

        out, _ = self.engine.by_rows(U, rows, grads)
        return float(sum(o[0] for o in out)), sum(o[1] for o in out) / U
