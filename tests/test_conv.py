"""The convolutional pairs of npvae/core/conv.py and their kernels (npvae/engine/kernels/conv.py).

- Gradients: float64 central differences with a random upstream gradient (conftest.check_layer)
  for every input of every pair (x, W, b of conv2d and of the transposed conv, x of max-pool
  and of the reshapes), rel_err <= 1e-6, at strides 1 to 3, paddings 0 to 2, kernels 1x1 to
  4x4 and a non-square one.
- Meaning: conv2d equals scipy.signal.correlate; the transposed conv equals a full
  scipy.signal.convolve and is conv2d's adjoint, sum(v * conv(u)) = sum(conv_T(v) * u) to
  1e-10; a stride-2 conv takes 28 x 28 to 14 x 14 and the transposed conv brings it back.
- Kernels: im2col and col2im against their NumPy twins in float32 and float64, and the pairs
  through the kernels against the pairs through the twins.

Shapes are small: the file also runs with NUMBA_DISABLE_JIT=1, where the kernels are Python.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import convolve, correlate

from npvae.core import conv as cv
from npvae.engine import kernels as kk

from conftest import check_layer

TOL = 1e-6
NUMBA = dict(gather=kk.im2col, scatter=kk.col2im)
# (B, C, H, W, F, kh, kw, stride, pad): C input channels of H x W, F output channels
CASES = [(2, 2, 5, 5, 3, 3, 3, 1, 1),
         (2, 3, 7, 6, 2, 3, 3, 2, 1),          # stride 2, an odd size: the last row unread
         (1, 2, 8, 8, 2, 4, 4, 2, 1),          # the decoder's 4x4 kernel, stride 2
         (2, 1, 6, 7, 3, 2, 3, 1, 0),          # a non-square kernel, no padding
         (1, 2, 5, 4, 2, 1, 1, 1, 0),          # 1x1: a dense layer per pixel
         (1, 1, 7, 7, 2, 3, 3, 3, 2)]          # stride 3, padding 2
IDS = [f"B{c[0]}C{c[1]}_{c[2]}x{c[3]}_F{c[4]}_k{c[5]}x{c[6]}_s{c[7]}p{c[8]}" for c in CASES]


@pytest.fixture
def rng():
    return np.random.default_rng(2023)


def arrays(rng, case, dtype=np.float64):
    """x (B, C, H, W), W (F, C, kh, kw), b (F,) standard normal, and stride, pad."""
    B, C, H, W, F, kh, kw, s, p = case
    f = lambda *shape: rng.standard_normal(shape).astype(dtype)       # noqa: E731
    return f(B, C, H, W), f(F, C, kh, kw), f(F), s, p


def conv_out_hw(case):
    B, C, H, W, F, kh, kw, s, p = case
    return cv.out_size(H, kh, s, p), cv.out_size(W, kw, s, p)


def assert_small(errs):
    assert max(errs) <= TOL, f"relative errors {errs} exceed {TOL}"


# ------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_conv2d_gradients(rng, case):
    x, W, b, s, p = arrays(rng, case)
    assert_small(check_layer(lambda x, W, b: cv.conv2d_forward(x, W, b, s, p),
                             cv.conv2d_backward, [x, W, b], [0, 1, 2], rng))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_conv2d_transpose_gradients(rng, case):
    """The transposed conv of the case's conv2d: F channels of Ho x Wo in, C channels of
    H x W out (H, W given, so stride-2 cases also ask for the larger of two sizes)."""
    B, C, H, W_, F = case[:5]
    _, W, _, s, p = arrays(rng, case)
    v, b = rng.standard_normal((B, F) + conv_out_hw(case)), rng.standard_normal(C)
    fwd = lambda v, W, b: cv.conv2d_transpose_forward(v, W, b, s, p, out_hw=(H, W_))  # noqa: E731
    assert_small(check_layer(fwd, cv.conv2d_transpose_backward, [v, W, b], [0, 1, 2], rng))


def distinct(rng, shape):
    """Entries 0.1 apart at least, shuffled: no 2x2 block has a tie a +-h step could flip."""
    return 0.1 * rng.permutation(int(np.prod(shape))).reshape(shape) - 1.0


def test_maxpool_gradient(rng):
    x = distinct(rng, (2, 3, 6, 4))
    assert_small(check_layer(cv.maxpool2x2_forward, cv.maxpool2x2_backward, [x], [0], rng))


def test_reshape_gradients(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    assert_small(check_layer(cv.flatten_forward, cv.flatten_backward, [x], [0], rng))
    rows = rng.standard_normal((2, 60))
    assert_small(check_layer(lambda r: cv.unflatten_forward(r, (3, 4, 5)),
                             cv.unflatten_backward, [rows], [0], rng))


# -------------------------------------------------------------------------- meaning
def reference_conv2d(x, W, b, s, p):
    """scipy.signal.correlate over (channel, row, column) of the padded image: the 'valid'
    part has one channel (all summed), then every s-th row and column."""
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    return np.array([[correlate(img, k, mode="valid")[0, ::s, ::s] + bf
                      for k, bf in zip(W, b)] for img in xp])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_conv2d_is_the_cross_correlation(rng, case):
    x, W, b, s, p = arrays(rng, case)
    y, _ = cv.conv2d_forward(x, W, b, s, p)
    assert y.shape == (case[0], case[4]) + conv_out_hw(case)
    np.testing.assert_allclose(y, reference_conv2d(x, W, b, s, p), rtol=0, atol=1e-12)


@pytest.mark.parametrize("case", [c for c in CASES if c[7] == 1], ids=lambda c: f"k{c[5]}p{c[8]}")
def test_stride_1_transpose_is_the_full_convolution(rng, case):
    """At stride 1, conv_T(v)[c] = sum_f convolve(v[f], W[f, c], 'full'), cropped by p."""
    _, W, _, s, p = arrays(rng, case)
    B, C, F = case[0], case[1], case[4]
    v, b = rng.standard_normal((B, F) + conv_out_hw(case)), rng.standard_normal(C)
    y, _ = cv.conv2d_transpose_forward(v, W, b, s, p)
    full = np.array([[sum(convolve(vf, Wf[c]) for vf, Wf in zip(img, W)) + b[c]
                      for c in range(C)] for img in v])
    H, W_ = full.shape[2:]
    np.testing.assert_allclose(y, full[:, :, p:H - p, p:W_ - p], rtol=0, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_transpose_is_the_adjoint(rng, case):
    """sum(v * conv(u)) = sum(conv_T(v) * u) for random u and v, both without bias."""
    u, W, _, s, p = arrays(rng, case)
    B, C, H, W_, F = case[:5]
    conv_u, _ = cv.conv2d_forward(u, W, np.zeros(F), s, p)
    v = rng.standard_normal(conv_u.shape)
    conv_t_v, _ = cv.conv2d_transpose_forward(v, W, np.zeros(C), s, p, out_hw=(H, W_))
    lhs, rhs = np.sum(v * conv_u), np.sum(conv_t_v * u)
    assert abs(lhs - rhs) <= 1e-10 * np.sum(np.abs(v * conv_u)), (lhs, rhs)


@pytest.mark.parametrize("k", [3, 4])
def test_28_to_14_and_back(rng, k):
    """The encoder's stride-2 step and the decoder's way back, at the digits' size."""
    x, W, b = rng.random((2, 1, 28, 28)), rng.standard_normal((8, 1, k, k)), np.zeros(8)
    y, _ = cv.conv2d_forward(x, W, b, stride=2, pad=1)
    assert y.shape == (2, 8, 14, 14)
    back, _ = cv.conv2d_transpose_forward(y, W, np.zeros(1), stride=2, pad=1,
                                          out_hw=(28, 28) if k == 3 else None)
    assert back.shape == (2, 1, 28, 28)
    if k == 3:       # by default the smallest size conv2d maps to 14: (14 - 1) 2 - 2 + 3 = 27
        default, _ = cv.conv2d_transpose_forward(y, W, np.zeros(1), stride=2, pad=1)
        assert default.shape == (2, 1, 27, 27)


def test_sizes_that_do_not_fit_are_refused(rng):
    v, W = rng.standard_normal((1, 2, 14, 14)), rng.standard_normal((2, 1, 3, 3))
    with pytest.raises(ValueError, match="does not map 30x28 to 14x14"):
        cv.conv2d_transpose_forward(v, W, np.zeros(1), 2, 1, out_hw=(30, 28))
    with pytest.raises(ValueError, match="no output"):
        cv.conv2d_forward(rng.standard_normal((1, 1, 2, 2)), W[:1], np.zeros(1), 1, 0)
    with pytest.raises(ValueError, match="even"):
        cv.maxpool2x2_forward(rng.standard_normal((1, 1, 5, 4)))


def test_maxpool_values(rng):
    x = distinct(rng, (2, 3, 6, 4))
    y, cache = cv.maxpool2x2_forward(x)
    np.testing.assert_array_equal(y, x.reshape(2, 3, 3, 2, 2, 2).max(axis=(3, 5)))
    dx = cv.maxpool2x2_backward(np.ones_like(y), cache)
    np.testing.assert_array_equal(dx, x == np.repeat(np.repeat(y, 2, axis=2), 2, axis=3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_pairs_keep_the_dtype(rng, dtype):
    x, W, b, s, p = arrays(rng, CASES[1], dtype)
    y, cache = cv.conv2d_forward(x, W, b, s, p)
    assert y.dtype == dtype and all(g.dtype == dtype for g in cv.conv2d_backward(y, cache))


# -------------------------------------------------------------------------- kernels
# Tolerances. im2col only copies: the kernel must equal its twin exactly. col2im sums, into a
# pixel, the taps of every window over it: at most n = ceil(kh/s) ceil(kw/s) terms. Summed in
# another order, two results differ by at most n eps sum|terms| (eps the dtype's machine
# epsilon: 1.19e-7 in float32, 2.2e-16 in float64), which bounds every pixel.
def taps_per_pixel(case):
    kh, kw, s = case[5:8]
    return -(-kh // s) * -(-kw // s)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_kernels_equal_their_twins(rng, case, dtype):
    x, _, _, s, p = arrays(rng, case, dtype)
    B, C, H, W, F, kh, kw = case[:7]
    shape = (B, C, kh, kw) + conv_out_hw(case)
    got, want = np.full(shape, np.nan, dtype), np.full(shape, np.nan, dtype)
    kk.im2col(x, s, p, got)
    kk.im2col_np(x, s, p, want)
    np.testing.assert_array_equal(got, want)

    cols = rng.standard_normal(shape).astype(dtype)
    got, want, scale = (np.full(x.shape, np.nan, dtype) for _ in range(3))
    kk.col2im(cols, s, p, got)
    kk.col2im_np(cols, s, p, want)
    kk.col2im_np(np.abs(cols), s, p, scale)
    bound = taps_per_pixel(case) * np.finfo(dtype).eps * scale.astype(np.float64)
    assert np.all(np.abs(got.astype(np.float64) - want) <= bound)


# The pairs through the kernels against the pairs through the twins: the BLAS products get the
# same columns, so only col2im's order of summation could differ (bound above); in float32 we
# allow L eps relative to the largest entry, L the longest reduction of any output (B Ho Wo
# terms in dW and db), and 1e-12 in float64.
def path_tol(case, dtype):
    if dtype == np.float64:
        return 1e-12
    return case[0] * np.prod(conv_out_hw(case)) * np.finfo(np.float32).eps


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(1e-30, float(np.max(np.abs(b)))))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_pairs_through_the_kernels(rng, case, dtype):
    x, W, b, s, p = arrays(rng, case, dtype)
    dy = rng.standard_normal((case[0], case[4]) + conv_out_hw(case)).astype(dtype)
    bt = rng.standard_normal(case[1]).astype(dtype)                     # the transpose's bias
    fast, want = [], []
    for ops, out in ((NUMBA, fast), ({}, want)):
        y, cache = cv.conv2d_forward(x, W, b, s, p, **ops)
        out += [y, *cv.conv2d_backward(dy, cache)]
        t, cache = cv.conv2d_transpose_forward(dy, W, bt, s, p,
                                               out_hw=x.shape[2:], **ops)
        out += [t, *cv.conv2d_transpose_backward(x, cache)]
    for name, g, w in zip(("y", "dx", "dW", "db", "y_T", "dx_T", "dW_T", "db_T"), fast, want):
        assert g.dtype == dtype and rel(g, w) <= path_tol(case, dtype), name
