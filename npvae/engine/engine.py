"""The engine: what every fast model shares. One per config; a model's engine subclasses it
and says how one training step and one evaluation chunk run.

    threads, team     T Python threads (threads.py), the calling thread is thread 0
    blas(T)           the BLAS context while T of ours run (one BLAS thread each)
    ops               the blocks (core/blocks.py:Blocks) the model runs on; None: readable
    reweight(cfg)     the loss weights of training steps (the staged schedule changes w_kl,
                      w_klc); evaluation keeps the config the engine was made with
    laps, lap()       per-phase seconds when profiling (laps is a dict), else nothing
    by_rows()         a function on each thread's contiguous share of n rows, each with a
                      gradient buffer of its own (thread_grads)
    add_in_order()    per-thread partial sums added in thread order: bit-for-bit repeatable
                      for a given thread count
    evaluate_split()  eval-mode terms over a split in chunks, each thread on whole chunks
    weights(cfg, ..)  loss weights by name, as the float64 vector a kernel takes
    adamw_step()      the optimiser update: the fused kernel pass (optim.py)

A subclass defines loss_and_grads(p, x, y, noise, g) -> (loss, terms) (every gradient written
into g), evaluate(p, x, y, outputs) -> (terms with "loss", q summed over the chunk (K,),
Outputs or None) and may define _eval_chunk(t, p, x, y, const) and _eval_constants(p).
"""
from __future__ import annotations

import time

import numba
import numpy as np

from npvae.core.blocks import TERMS
from npvae.core.config import Config

from . import kernels
from .optim import adamw_step_fast
from .threads import Team, available_cores, blas_single_thread, split


def weights(cfg: Config, names) -> np.ndarray:
    """The settings `names` of cfg (loss weights) as a float64 vector, in that order."""
    return np.array([getattr(cfg, n) for n in names], dtype=np.float64)


def add_in_order(out: np.ndarray, parts) -> None:
    """out = parts[0] + parts[1] + ..., added in this order (the same bits every time)."""
    np.copyto(out, parts[0])
    for part in parts[1:]:
        out += part


class Engine:
    """Threads, timing, the training weights and chunked evaluation for one config."""
    fused = True                  # runs Numba kernels (compiled when the engine is made)
    adamw_step = staticmethod(adamw_step_fast)

    def __init__(self, cfg: Config, threads: int | None = None):
        self.cfg = self.train_cfg = cfg
        self.dtype = np.dtype(cfg.dtype)
        self.threads = max(1, threads or available_cores())
        self.team = Team(self.threads)
        self.laps = None          # a dict to receive seconds per phase (profiling)
        self.ops = None           # model gmm's blocks (core/blocks.py:Blocks); None: readable
        self._grads = {}          # per-thread gradient buffers, by the work they serve
        if self.fused and not numba.config.DISABLE_JIT:
            kernels.warm_up(self.dtype)   # compile / load now, not inside a timed step

    def reweight(self, cfg: Config) -> None:
        """Training steps use cfg's loss weights from now on; evaluation keeps self.cfg."""
        self.train_cfg = cfg

    def blas(self, T: int):
        """The BLAS context while T of our threads run: one BLAS thread each when T > 1."""
        return blas_single_thread(T)

    def lap(self, name: str, t0: float) -> float:
        """Adds the seconds since t0 to laps[name] when profiling; returns now."""
        t = time.perf_counter()
        if self.laps is not None:
            self.laps[name] = self.laps.get(name, 0.0) + t - t0
        return t

    def thread_grads(self, g, key: str, first: int = 0) -> list:
        """A gradient buffer shaped like g for each thread from `first` on, for the work named
        key, made (zeroed) at the first call and reused: entries that work never writes stay 0."""
        if key not in self._grads:
            self._grads[key] = [g.zeros_like() for _ in range(first, self.threads)]
        return self._grads[key]

    @staticmethod
    def sum_share(g, grads: list, lo: int, hi: int, share: int, shares: int,
                  add: bool = False) -> None:
        """Part `share` of `shares` of g.flat[lo:hi] = the buffers' entries added in thread
        order (g += them when `add`; nothing to copy when grads[0] is g itself): each of
        `shares` threads sums its own contiguous part at once."""
        parts = split(hi - lo, shares)
        if share >= len(parts):
            return
        a, b = (lo + i for i in parts[share])
        out = g.flat[a:b]
        if not add and grads[0] is not g:
            np.copyto(out, grads[0].flat[a:b])
        for buf in grads if add else grads[1:]:
            out += buf.flat[a:b]

    def by_rows(self, n: int, fn, grads: list) -> tuple[list, list]:
        """fn(t, i0, i1, barrier, g_t) on thread t for its contiguous share i0:i1 of n rows,
        g_t = grads[t] its own gradient buffer, inside self.blas. Returns fn's results and the
        buffers used, both in thread order."""
        ranges = split(n, self.threads)
        with self.blas(len(ranges)):
            out = self.team.run(lambda t, r, barrier: fn(t, *r, barrier, grads[t]), ranges)
        return out, grads[:len(ranges)]

    # ------------------------------------------------------------------ evaluation
    def _eval_constants(self, p):
        """What every chunk's evaluation shares (computed once per split), or None."""
        return None

    def _eval_chunk(self, t: int, p, x, y, const):
        """Thread t's evaluation of one chunk: (terms with "loss", q summed over it (K,))."""
        return self.evaluate(p, x, y)[:2]

    def evaluate_split(self, p, x, y) -> tuple[dict, np.ndarray]:
        """Eval-mode terms over a split in chunks of eval_batch_size, each chunk's terms
        weighted by its size / N, and the mean of q(c|x) over the split (K,) (as
        training.loop.evaluate_split). Thread t evaluates chunks t, t + T, ...; results are
        combined in chunk order."""
        n, bs, K = x.shape[0], self.cfg.eval_batch_size, self.cfg.K
        totals = dict.fromkeys(("loss",) + TERMS, 0.0)
        if n == 0:
            return totals, np.full(K, np.nan)
        starts = list(range(0, n, bs))
        T = min(self.threads, len(starts))

        def run(t, mine, _):
            return [self._eval_chunk(t, p, x[s:s + bs], y[s:s + bs], const) for s in mine]

        with self.blas(T):
            const = self._eval_constants(p)
            done = self.team.run(run, [starts[t::T] for t in range(T)])
        usage = np.zeros(K)
        for c, s in enumerate(starts):
            terms, q_sum = done[c % T][c // T]
            for k in totals:
                totals[k] += min(bs, n - s) / n * terms[k]
            usage += q_sum
        return totals, usage / n
