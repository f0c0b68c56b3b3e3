"""Each Numba kernel of npvae/kernels.py against its NumPy twin, per call, at the shapes of the
default run (float32: B = 128 images, K = 10 components, D = 784 pixels, 491k parameters).

    python benchmarks/bench_kernels.py [--repeat 200]

Prints the median and the best time per call of both, and the speed-up (median over median).
The kernels' compiled code comes from Numba's on-disk cache; the first call (compilation or
cache load) is made before timing and not counted.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from npvae import Config, kernels as kk  # noqa: E402  (before numpy: npvae/blas.py)
import numpy as np  # noqa: E402
from npvae.params import Layout  # noqa: E402


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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=200, help="timed calls per kernel")
    args = ap.parse_args(argv)
    cases = real_shapes(Config(), np.random.default_rng(0))
    print(f"{'kernel':16s} {'shape':>12s} {'numba ms':>10s} {'(best)':>8s} "
          f"{'numpy ms':>10s} {'(best)':>8s} {'speed-up':>9s}")
    for name in kk.NAMES:
        a = cases[name]
        med_k, best_k = time_calls(getattr(kk, name), a, args.repeat)
        med_n, best_n = time_calls(getattr(kk, f"{name}_np"), a, max(10, args.repeat // 10))
        shape = "x".join(map(str, a[0].shape))
        print(f"{name:16s} {shape:>12s} {med_k * 1e3:10.3f} {best_k * 1e3:8.3f} "
              f"{med_n * 1e3:10.3f} {best_n * 1e3:8.3f} {med_n / med_k:8.1f}x")


if __name__ == "__main__":
    main()
