"""Each Numba kernel of npvae/engine/kernels/ against its NumPy twin, per call, at the shapes of the
default run (float32: B = 128 images, K = 10 components, D = 784 pixels, 491k parameters),
then each fused kernel's time as a share of a training step and of an evaluation chunk.

    python benchmarks/bench_kernels.py [--repeat 200] [--steps 300] [--fixed 1000]

Per call: the median and the best time of both, and the speed-up (median over median).
Share of a step: real training steps of the default run (FastModel.loss_and_grads, the
gradient's norm, AdamW) on the default batch, with every kernel call, every BLAS product of
npvae/engine/mixture.py and every barrier wait timed on the calling thread (thread 0; the other
threads do the same work on their own rows at the same time, so thread 0's time is the
step's). The rest is Python, small NumPy operations and the hand-overs to the threads.
The kernels' compiled code comes from Numba's on-disk cache; the first call (compilation or
cache load) is made before timing and not counted.

Fixed cost (--fixed N): the same training step and evaluation, with the default run's K,
batch sizes and threads, but every layer 8 wide and 16 pixels, so that products and kernels
take next to nothing: what is left is what every step pays whatever the host's arithmetic
speed (Python, NumPy's and Numba's call overheads, hand-overs between threads, their waits
for the GIL). It is printed as a share of the real step and chunk measured before it. On a
host whose products are fast it is, with the kernels and the small products, what keeps the
fit away from the floor (benchmarks/README.md, "A second look at the same host").
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from types import SimpleNamespace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from npvae import Config
from npvae.engine import kernels as kk  # noqa: E402  (before numpy: npvae/engine/blas.py)
import numpy as np  # noqa: E402
from npvae import draw_noise, init_params  # noqa: E402
from npvae.engine import mixture as fast  # noqa: E402
from npvae.engine import optim as fast_optim  # noqa: E402
from npvae.training.data import load_digits, make_splits, visible_labels  # noqa: E402
from npvae.core.optim import AdamState  # noqa: E402
from npvae.core.params import Layout  # noqa: E402
from benchmarks import host  # noqa: E402


def real_shapes(cfg: Config, rng: np.random.Generator) -> dict[str, tuple]:
    """Arguments of every kernel as the default training step / evaluation calls it."""
    B, K, D = cfg.batch_size, cfg.K, cfg.input_dim
    R, G0, G1, S, d = B * K, cfg.decoder_dims[0], cfg.decoder_dims[-1], \
        Layout.from_config(cfg).size, cfg.latent_dim
    f = lambda *s: rng.standard_normal(s).astype(np.float32)                   # noqa: E731
    q = rng.dirichlet(np.ones(K), B).astype(np.float32)
    pi = np.full(K, 1.0 / K, np.float32)
    x = rng.random((B, D)).astype(np.float32)
    return {
        "bias_lrelu": (f(R, G1), f(G1)),                         # decoder hidden layer 2
        "lrelu_grad_bias": (f(R, G1), f(R, G1), f(G1)),
        "pair_lrelu": (f(B, G0), f(K, G0), f(R, G0)),            # decoder layer after concat
        "pair_lrelu_grad": (f(R, G0), f(R, G0), f(B, G0), f(K, G0)),
        "bce_grad": (5 * f(R, D), f(D), x, rng.random(R).astype(np.float32), f(R), f(D)),
        "bce_eval": (5 * f(R, D), f(D), x, f(R)),
        "heads_forward": (f(B, K), f(B, d), f(B, d), f(B, d), f(B, K), f(B, d)),
        "latent_terms": (q, 500 * rng.random((B, K)).astype(np.float32), f(B, d), f(B, d), pi,
                         np.array([1.0, 0.5, 0.001, 1.0, 5.0, -0.05]), f(B, K), f(B, d),
                         f(B, d), f(K)),
        "sq_norm": (f(S),),
        "adamw": (f(S), f(S), 0.01 * f(S), np.abs(f(S)), np.ones(S, np.float32),
                  0.5, 1e-3, 0.9, 0.999, 1e-8, 1e-4, 10),
    }


def time_calls(fn, args, repeat: int) -> tuple[float, float]:
    """Median and best seconds per call. In-place kernels run on the same buffers each time
    (their cost does not depend on the values)."""
    fn(*args)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t)
    return float(np.median(times)), float(np.min(times))


class _Timed:
    """Seconds and calls of what runs through it on the thread that made it (thread 0)."""

    def __init__(self):
        self.main, self.seconds, self.calls = threading.get_ident(), {}, {}

    def wrap(self, name, fn):
        def timed(*args, **kw):
            if threading.get_ident() != self.main:
                return fn(*args, **kw)
            t = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t
                self.calls[name] = self.calls.get(name, 0) + 1
        return timed


class _NumPy(SimpleNamespace):
    """numpy for npvae/engine/mixture.py, its matmul timed."""

    def __init__(self, timer: _Timed):
        super().__init__(matmul=timer.wrap("products", np.matmul))

    def __getattr__(self, name):
        return getattr(np, name)


class _Barrier(threading.Barrier):
    timer: _Timed

    def wait(self, timeout=None):
        return self.timer.wrap("barrier waits", super().wait)(timeout)


def step_shares(steps: int) -> dict:
    """Training steps and evaluation chunks of the default run, thread 0's time split by
    kernel, products, barrier waits and the rest; printed per step / chunk and as shares.
    Returns the seconds per step and per T chunks at once: {"step": s, "chunks": s}."""
    cfg = Config()
    x, y = load_digits()
    s = make_splits(len(y), cfg.num_labeled, cfg.seed, cfg.val_fraction)
    y = visible_labels(y, s.labeled)
    xtr, ytr = x[s.train].astype(np.float32), y[s.train]
    rng = np.random.default_rng(0)
    p = init_params(cfg, rng)
    g, opt, decay = p.zeros_like(), AdamState.zeros(p.flat), p.layout.decay_mask()
    model = fast.FastModel(cfg)
    saved, per = (fast.kern, fast.np), {}
    try:
        for label, n in (("training step", steps), ("evaluation chunk", max(10, steps // 3))):
            timer = _Timed()
            fast.kern = SimpleNamespace(**{k: timer.wrap(k, getattr(kk, k)) for k in kk.NAMES})
            fast_optim.kern = fast.kern
            fast.np = _NumPy(timer)
            _Barrier.timer = timer
            T = model.team.size
            model.team.barriers = {t: _Barrier(t) for t in range(1, T + 1)}
            wall = []
            for i in range(n + 5):
                idx = rng.choice(len(ytr), cfg.batch_size if label[0] == "t"
                                 else cfg.eval_batch_size * T, replace=False)
                noise = draw_noise(cfg, idx.size, rng)
                xb, yb = xtr[idx], ytr[idx]
                if i == 5:                           # 5 untimed warm-up calls
                    timer.seconds, timer.calls = {}, {}
                t = time.perf_counter()
                if label[0] == "t":
                    model.loss_and_grads(p, xb, yb, noise, g)
                    fast_optim.adamw_step_fast(p.flat, g.flat, opt, decay, cfg)
                else:
                    model.evaluate_split(p, xb, yb)
                wall.append(time.perf_counter() - t)
            wall = float(np.sum(wall[5:])) / n       # seconds per step / per T chunks
            per["step" if label[0] == "t" else "chunks"] = wall
            what = "step" if label[0] == "t" else f"{T} chunks at once, one per thread"
            print(f"\n{label}s (default run, {T} threads): {wall * 1e3:.2f} ms per {what}; "
                  f"thread 0's time in each part:")
            print(f"{'part':16s} {'calls':>6s} {'ms':>8s} {'share':>7s}")
            rest = wall
            for k, v in sorted(timer.seconds.items(), key=lambda kv: -kv[1]):
                rest -= v / n
                print(f"{k:16s} {timer.calls[k] / n:6.1f} {v / n * 1e3:8.3f} {v / n / wall:7.1%}")
            print(f"{'rest':16s} {'':6s} {rest * 1e3:8.3f} {rest / wall:7.1%}")
    finally:
        fast.kern, fast.np = saved
        fast_optim.kern = saved[0]
        model.team.barriers = {}
    return per


def narrow(cfg: Config) -> Config:
    """cfg with every layer 8 wide and 16 pixels (products and kernels next to free); K,
    batch sizes, depth and everything else as in cfg."""
    return cfg.replace(hidden_dims=(8,) * len(cfg.hidden_dims),
                       decoder_dims=(8,) * len(cfg.decoder_dims),
                       classifier_dims=(8,) * len(cfg.classifier_dims), input_dim=16,
                       embed_dim=4, pathway_dim=4).validate()


def fixed_costs(steps: int, real: dict | None = None) -> dict:
    """Seconds per training step (gradient, norm, AdamW) and per T evaluation chunks at
    once, of the default run narrowed (`narrow`); printed, with their shares of `real`
    (step_shares' result) when given."""
    cfg = narrow(Config())
    rng = np.random.default_rng(0)
    model = fast.FastModel(cfg)
    B, E, T = cfg.batch_size, cfg.eval_batch_size, model.team.size
    x = rng.random((max(B, E * T), cfg.input_dim)).astype(np.float32)   # a batch; T chunks
    y = np.full(x.shape[0], -1)
    y[::90] = rng.integers(0, cfg.num_classes, y[::90].size)    # 2 labeled rows a batch, as
    p = init_params(cfg, rng)                                   # the default run's ~1.4
    g, opt, decay = p.zeros_like(), AdamState.zeros(p.flat), p.layout.decay_mask()
    noise = draw_noise(cfg, B, rng)
    calls = {"step": lambda: (model.loss_and_grads(p, x[:B], y[:B], noise, g),
                              fast_optim.adamw_step_fast(p.flat, g.flat, opt, decay, cfg)),
             "chunks": lambda: model.evaluate_split(p, x[:E * T], y[:E * T])}
    out = {k: time_calls(fn, (), steps)[0] for k, fn in calls.items()}
    print(f"\nfixed cost ({T} threads; the default run's K, batch sizes and depth, every layer "
          f"8 wide): what a step and an evaluation pay whatever the arithmetic")
    for k, what in (("step", "training step"), ("chunks", f"{T} evaluation chunks at once")):
        share = f" = {out[k] / real[k]:.1%} of the default run's" if real and k in real else ""
        print(f"{what:28s} {out[k] * 1e3:7.3f} ms{share}")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=200, help="timed calls per kernel")
    ap.add_argument("--steps", type=int, default=300, help="timed training steps (0: none)")
    ap.add_argument("--fixed", type=int, default=1000,
                    help="timed steps of the narrowed model, the fixed cost (0: none)")
    args = ap.parse_args(argv)
    cases = real_shapes(Config(), np.random.default_rng(0))
    print(host.one_line(host.describe()))
    print(f"{'kernel':16s} {'shape':>12s} {'numba ms':>10s} {'(best)':>8s} "
          f"{'numpy ms':>10s} {'(best)':>8s} {'speed-up':>9s}")
    for name, a in cases.items():            # the default run's kernels (not warp, gmm_latent)
        med_k, best_k = time_calls(getattr(kk, name), a, args.repeat)
        med_n, best_n = time_calls(getattr(kk, f"{name}_np"), a, max(10, args.repeat // 10))
        shape = "x".join(map(str, a[0].shape))
        print(f"{name:16s} {shape:>12s} {med_k * 1e3:10.3f} {best_k * 1e3:8.3f} "
              f"{med_n * 1e3:10.3f} {best_n * 1e3:8.3f} {med_n / med_k:8.1f}x")
    real = step_shares(args.steps) if args.steps else None
    if args.fixed:
        fixed_costs(args.fixed, real)


if __name__ == "__main__":
    main()
