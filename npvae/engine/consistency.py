"""The consistency term on the engine's threads (model gmm; docs/math.md, section 17).

A training step with w_cons > 0 adds, for the U unlabeled images of its batch,

    L_cons = w_cons/U sum_i m_i KL(sharpen(q(c|x_i), T) || q(c|strong(x_i)))

where q(c|x_i) is the eval-mode posterior of the image as it is (a constant target) and
strong(x_i) a harder warp of it with a square cut out (augment.strong_view). The term only
reaches the encoder and the prior: no decoder, no sampled z. It is a sum over images, so the
threads split the rows: each runs npvae/core/gmm.py's class_log_posterior, consistency_forward
and consistency_backward on its rows (with the engine's blocks) into its own gradient buffer,
and the buffers are added in thread order (bit-for-bit repeatable for a given thread count).
"""
from __future__ import annotations

from npvae.core import gmm
from npvae.core.config import Config
from npvae.core.params import Params

from .augment import strong_view
from .threads import Team, blas_one_thread, blas_single_thread, split


class Consistency:
    """loss_and_grads of the consistency term for one config, on a Team's threads; ops: the
    blocks (npvae/engine/blocks.py:FAST, or None for gmm.READABLE)."""

    def __init__(self, cfg: Config, team: Team, ops=None):
        self.cfg, self.team, self.ops = cfg, team, ops
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
            target = gmm.class_log_posterior(p, x[i0:i1], self.cfg, self.ops)   # (b, K)
            loss, confident, cache = gmm.consistency_forward(p, target, xs[i0:i1], self.cfg,
                                                             U, self.ops)
            gmm.consistency_backward(cache, self.grads[t])
            return loss, confident

        blas = blas_one_thread() if self.cfg.convolutional else blas_single_thread(len(ranges))
        with blas:
            out = self.team.run(rows, ranges)
        for buf in self.grads[:len(ranges)]:   # in thread order
            g.flat += buf.flat
        return float(sum(o[0] for o in out)), sum(o[1] for o in out) / U
