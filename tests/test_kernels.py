"""Each Numba kernel (npvae/engine/kernels/) against its NumPy twin, in float32 and float64, at
small shapes (they also run as plain Python under NUMBA_DISABLE_JIT=1).

Tolerances: float64 agrees to 1e-12 relative; float32 to a few float32 roundings of the largest
entry (the kernels sum in another order, and the float32 exp / log1p are ~2 ulp).
"""
from __future__ import annotations

import math

import numba
import numpy as np
import pytest

from npvae.engine import kernels as kk

TOL = {np.float32: 2e-6, np.float64: 1e-12}
DTYPES = (np.float32, np.float64)
ROWS = (3, 20)          # images per batch
K, N, D = 3, 7, 13


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(1e-30, float(np.max(np.abs(b)))))


def cases(dtype, B, seed=0):
    """Arguments of every kernel at small shapes; arrays the kernel writes are included."""
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.standard_normal(s).astype(dtype)                        # noqa: E731
    R, S = B * K, 101
    # probabilities with entries on both sides of the clip floor EPS = 1e-8: component 0 is
    # below it in every row (so is its usage), one row is one-hot up to rounding
    q = rng.dirichlet(np.ones(K), B)
    q[:, 0] = 1e-10
    q[1] = [1e-10, 1e-12, 1.0]
    q = (q / q.sum(axis=1, keepdims=True)).astype(dtype)
    pi = np.array([0.6, 0.4 - 1e-9, 1e-9], dtype)
    return {
        "bias_lrelu": (f(R, N), f(N)),
        "lrelu_grad_bias": (f(R, N), f(R, N), f(N)),
        "pair_lrelu": (f(B, N), f(K, N), f(R, N)),
        "pair_lrelu_grad": (f(R, N), f(R, N), f(B, N), f(K, N)),
        # logits of both signs up to |l| ~ 20, targets in [0, 1], weights in (0, 1)
        "bce_grad": (5 * f(R, D), f(D), rng.random((B, D)).astype(dtype),
                     rng.random(R).astype(dtype), f(R), f(D)),
        "bce_eval": (5 * f(R, D), f(D), rng.random((B, D)).astype(dtype), f(R)),
        "sq_norm": (f(S),),
        "adamw": (f(S), f(S), 0.01 * f(S), np.abs(f(S)), (rng.random(S) < 0.5).astype(dtype),
                  0.7, 1e-3, 0.9, 0.999, 1e-8, 1e-4, 3),
        "heads_forward": (f(B, K), f(B, 2), f(B, 2), f(B, 2), f(B, K), f(B, 2)),
        "latent_terms": (q, 500 * rng.random((B, K)).astype(dtype), f(B, 2), f(B, 2), pi,
                         np.array([1.0, 0.5, 0.001, 1.0, 5.0, -0.05]), f(B, K), f(B, 2),
                         f(B, 2), f(K)),
        # a rotation, scale and shift per image, some reading far outside the 28 x 28 frame
        "warp": (rng.random((B, 784)).astype(dtype), _affine(rng, B), 28, 28, f(B, 784)),
        # model gmm's latent block: a few labeled rows, both weights' signs in use
        "gmm_latent": (f(B, 2), 0.3 * f(B, 2), f(B, 2), _labels(rng, B), f(K), f(K, 2),
                       0.3 * f(K, 2), np.array([0.7, 0.9, 0.4, 5.0, -0.3, 2.0]), True,
                       f(B, K), f(B, K), f(B, 2), f(B, 2), f(B, 2), f(K), f(K, 2), f(K, 2)),
        # the convolutions' gather and scatter: 6 x 5 images, 3 x 3 kernel, stride 2, pad 1
        # (tests/test_conv.py checks more sizes, with tolerances derived per kernel)
        "im2col": (f(B, 2, 6, 5), 2, 1, f(B, 2, 3, 3, 3, 3)),
        "col2im": (f(B, 2, 3, 3, 3, 3), 2, 1, f(B, 2, 6, 5)),
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("H,W,C", [(10, 14, 3), (9, 6, 1), (7, 7, 3)])
def test_warp_kernel_equals_twin_any_shape(H, W, C, dtype):
    """The warp on images that are not square, grey or RGB, against its twin."""
    rng = np.random.default_rng([H, W, C])
    B = 5
    args = (rng.random((B, C * H * W)).astype(dtype), _affine(rng, B), H, W,
            np.full((B, C * H * W), np.nan, dtype))
    (got,), (want,) = run(kk.warp, args)[-1:], run(kk.warp_np, args)[-1:]
    assert not np.isnan(got).any() and got.dtype == dtype
    assert rel(got, want) < TOL[dtype], f"warp differs from its twin by {rel(got, want):.2e}"


def _affine(rng, B):
    from npvae.engine.augment import affine_matrices
    from npvae.core.config import Config
    return affine_matrices(rng.uniform(-1, 1, (B, 4)),
                           Config(aug_rotate=40, aug_scale=0.3, aug_shift=8))


def _labels(rng, B):
    y = np.full(B, -1)
    y[:max(1, B // 4)] = rng.integers(0, K, max(1, B // 4))
    return y


def run(fn, args):
    """Call on copies; return every array argument after the call plus the return value."""
    args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    ret = fn(*args)
    return [a for a in args if isinstance(a, np.ndarray)] + ([ret] if ret is not None else [])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B", ROWS)
@pytest.mark.parametrize("name", kk.NAMES)
def test_kernel_equals_numpy_twin(name, B, dtype):
    args = cases(dtype, B)[name]
    got = run(getattr(kk, name), args)
    want = run(getattr(kk, f"{name}_np"), args)
    for g, w in zip(got, want):
        assert rel(g, w) < TOL[dtype], f"{name} differs from its twin by {rel(g, w):.2e}"


def test_float32_exp_and_log1p_are_accurate():
    """The vectorisable float32 e^-t and log(1 + e) against float64 libm, at a few ulp over
    the range logits take; beyond it they stay tiny normal numbers (no subnormals)."""
    @numba.njit
    def both(t):
        e, l1 = np.empty_like(t), np.empty_like(t)
        for i in range(t.size):
            e[i] = kk.exp_neg(t[i])
            l1[i] = kk.log1p_unit(min(e[i], np.float32(1.0)))
        return e, l1

    t = np.concatenate([np.linspace(0, 40, 200001), [0.0, 1e-7, 0.5 * math.log(2)]])
    e, l1 = both(t.astype(np.float32))
    t64 = t.astype(np.float32).astype(np.float64)
    assert np.max(np.abs(e / np.exp(-t64) - 1)) < 4e-7           # ~3 float32 ulp
    assert np.max(np.abs(l1 / np.log1p(e.astype(np.float64)) - 1)) < 4e-7
    if numba.config.DISABLE_JIT:
        return                     # plain Python uses libm, which goes subnormal, then 0
    far, l1_far = both(np.array([60.0, 86.0, 88.0, 100.0, 1e30, np.inf], np.float32))
    assert np.all((far >= np.finfo(np.float32).tiny) & (far < 1e-26))
    assert np.all((l1_far >= np.finfo(np.float32).tiny) & (l1_far < 1e-17))


@pytest.mark.parametrize("name", ("bce_grad", "bce_eval"))
def test_bce_propagates_nan(name):
    args = cases(np.float32, 3)[name]
    args[0][4, 2] = np.nan                   # row 4 = image 1, component 1
    out = run(getattr(kk, name), args)
    bce = out[4] if name == "bce_grad" else out[3]
    assert np.isnan(bce[4]) and np.isfinite(np.delete(bce, 4)).all()
