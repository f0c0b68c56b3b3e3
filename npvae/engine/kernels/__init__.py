"""Fused Numba kernels, each beside its plain NumPy twin (`<name>_np`).

NumPy makes one pass over memory per operation: `lrelu(a + b)` is two passes, the BCE with its
gradient about a dozen over the logits. Each kernel below does one pass, in place where it can.
Each twin computes the same thing with NumPy, through npvae/core itself where core has the block
(the BCE, the seed model's loss terms, model gmm's latent block); tests compare the two in
float32 and float64. `ACTIVE` is what the engine calls: the kernels, or with NUMBA_DISABLE_JIT=1
their twins (the kernels as plain Python loops are correct but far too slow for a training run;
they are still tested in that mode, at small shapes).

Each kernel is serial and releases the GIL (`nogil`): the engine's own threads run them side by
side, and Numba's thread pools fought BLAS's threads for the cores (benchmarks/README.md).

Rules (jit.py): `cache=True`; no `fastmath` flags that assume away NaN or inf (only `reassoc`,
which lets a row sum be vectorised, and `contract`, which allows fused multiply-adds). Inner
loops index a view (a row, a slice) from 0 with `range(len)`: with `a[lo + j]` LLVM cannot prove
the index non-negative (Numba wraps negative indices) and leaves the loop scalar.

The convolutions (conv.py) keep their products in BLAS; only im2col, the gather of every
kernel tap's pixels into columns, and its adjoint col2im, a scatter-add, are kernels.

Shapes of the dense kernels: R rows (B images, or B*K image-component pairs, row r = i*K + k),
N features, D pixels. `lrelu(a) = max(a, LEAK a)`: its derivative is 1 where the output is > 0,
else LEAK, so the backward kernels need only the layer's output h, never its input.
"""
from __future__ import annotations

from types import SimpleNamespace

import numba
import numpy as np

from .adamw import adamw, adamw_np, sq_norm, sq_norm_np  # noqa: F401
from .conv import col2im, col2im_np, im2col, im2col_np  # noqa: F401
from .dense import (bce_eval, bce_eval_np, bce_grad, bce_grad_np, bias_lrelu,  # noqa: F401
                    bias_lrelu_np, exp_neg, heads_forward, heads_forward_np, latent_terms,
                    latent_terms_np, log1p_unit, lrelu_grad_bias, lrelu_grad_bias_np, pair_lrelu,
                    pair_lrelu_grad, pair_lrelu_grad_np, pair_lrelu_np)
from .gmm_latent import gmm_latent, gmm_latent_np  # noqa: F401
from .warp import warp, warp_np  # noqa: F401

# ----------------------------------------------------------------------- the registry
NAMES = ("bias_lrelu", "lrelu_grad_bias", "pair_lrelu", "pair_lrelu_grad", "bce_grad",
         "bce_eval", "heads_forward", "latent_terms", "sq_norm", "adamw", "warp", "gmm_latent",
         "im2col", "col2im")


def numpy_twins() -> SimpleNamespace:
    """The NumPy twins under the kernels' names."""
    return SimpleNamespace(**{n: globals()[f"{n}_np"] for n in NAMES})


# what the engine calls: the kernels, or their twins when Numba's compiler is off
ACTIVE = numpy_twins() if numba.config.DISABLE_JIT else \
    SimpleNamespace(**{n: globals()[n] for n in NAMES})


def warm_up(dtype) -> None:
    """Compile (or load from Numba's cache) every kernel for `dtype` by calling it once on
    tiny C-contiguous arrays, the layout the fast path passes, so that no compilation happens
    inside a timed run."""
    dt = np.dtype(dtype)
    a, v, w = np.ones((2, 3), dt), np.ones(3, dt), np.ones(6)
    bias_lrelu(a, v)
    lrelu_grad_bias(a, a, v)
    pair_lrelu(a[:1], a, np.ones((2, 3), dt))
    pair_lrelu_grad(np.ones((2, 3), dt), a, a[:1].copy(), a.copy())
    bce_grad(a.copy(), v, a, np.ones(2, dt), np.ones(2, dt), v.copy())
    bce_eval(a.copy(), v, a, np.ones(2, dt))
    heads_forward(a, a, a, a, a.copy(), a.copy())
    heads_forward(a, a, a, a[:0], a.copy(), a.copy())
    latent_terms(a / 3, a, a, a, v / 3, w, a.copy(), a.copy(), a.copy(), v.copy())
    sq_norm(v)
    warp(np.ones((1, 4), dt), np.zeros((1, 2, 3)), 2, 2, np.ones((1, 4), dt))
    gmm_latent(a, a, a, np.array([-1, 0]), v, a, a, np.ones(6), True, a.copy(), a.copy(),
               a.copy(), a.copy(), a.copy(), v.copy(), a.copy(), a.copy())
    adamw(v.copy(), v, v.copy(), v.copy(), v, 1.0, 1e-3, 0.9, 0.999, 1e-8, 1e-4, 1)
    img, cols = np.ones((1, 1, 3, 3), dt), np.ones((1, 1, 2, 2, 2, 2), dt)
    im2col(img, 1, 0, cols)
    col2im(cols, 1, 0, img)
