"""The consistency term and the mean teacher (npvae/core/consistency.py): a float64 gradient
check of the pair (alone and chained onto log_softmax, as a model uses it), and what the term
means: the KL to the weak view's sharpened posterior over confident rows, FixMatch's
pseudo-label cross-entropy at T = 0, zero where the views agree, no gradient into the weak view."""
from __future__ import annotations

import numpy as np
import pytest

from npvae.core import consistency as C
from npvae.core import layers as L

from conftest import check_layer

TOL = 1e-7
B, K = 9, 5


@pytest.fixture
def rng():
    return np.random.default_rng(77)


def median_confidence(weak) -> float:
    """A threshold that keeps about half the rows (so a test sees both kinds)."""
    return float(np.sort(np.exp(weak).max(axis=1))[B // 2])


def views(rng, spread=2.0):
    """Log-posteriors of a weak and a strong view, (B, K), rows of varied confidence."""
    weak = L.log_softmax(spread * rng.standard_normal((B, K)))
    strong = L.log_softmax(spread * rng.standard_normal((B, K)))
    return weak, strong


@pytest.mark.parametrize("tau, T", [(0.0, 1.0), (0.5, 1.0), (0.5, 0.5), (0.7, 0.0), (0.0, 0.0)])
def test_gradient_of_the_strong_view(rng, tau, T):
    weak, strong = views(rng)
    errs = check_layer(lambda s: C.consistency_forward(weak, s, tau, T), C.consistency_backward,
                       [strong], wrt=[0], rng=rng)
    assert max(errs) <= TOL, errs


@pytest.mark.parametrize("tau, T", [(0.0, 1.0), (0.6, 0.5), (0.6, 0.0)])
def test_gradient_through_log_softmax_from_the_logits(rng, tau, T):
    """The chain a model uses: logits -> log_softmax -> consistency, backward in reverse."""
    weak, _ = views(rng)
    logits = rng.standard_normal((B, K))

    def forward(a):
        lq, c_lq = L.log_softmax_forward(a)
        loss, c = C.consistency_forward(weak, lq, tau, T)
        return loss, (c_lq, c)

    def backward(dy, cache):
        c_lq, c = cache
        return L.log_softmax_backward(C.consistency_backward(dy, c), c_lq)

    assert max(check_layer(forward, backward, [logits], wrt=[0], rng=rng)) <= TOL


def test_it_is_the_mean_kl_over_confident_rows(rng):
    weak, strong = views(rng)
    tau, T = median_confidence(weak), 0.7
    t = np.exp(weak / T) / np.exp(weak / T).sum(axis=1, keepdims=True)
    kl = (t * (np.log(t) - strong)).sum(axis=1)
    keep = np.exp(weak).max(axis=1) >= tau
    assert 0 < keep.sum() < B                                 # the mask really selects
    loss, _ = C.consistency_forward(weak, strong, tau, T)
    assert loss == pytest.approx(kl[keep].sum() / B, rel=1e-12)
    assert C.confident_share(weak, tau) == keep.mean()


def test_at_T_0_it_is_fixmatch_pseudo_label_cross_entropy(rng):
    weak, strong = views(rng)
    tau = median_confidence(weak)
    keep = np.exp(weak).max(axis=1) >= tau
    pseudo = weak.argmax(axis=1)
    ce = -strong[np.arange(B), pseudo]
    assert 0 < keep.sum() < B
    loss, _ = C.consistency_forward(weak, strong, tau, 0.0)
    assert loss == pytest.approx(ce[keep].sum() / B, rel=1e-12)
    # and a small temperature approaches it
    near, _ = C.consistency_forward(weak, strong, tau, 1e-3)
    assert near == pytest.approx(loss, rel=1e-6)


def test_zero_when_the_views_agree_and_positive_otherwise(rng):
    weak, strong = views(rng)
    same, cache = C.consistency_forward(weak, weak.copy(), 0.0, 1.0)
    assert abs(same) < 1e-14
    assert np.allclose(C.consistency_backward(1.0, cache).sum(axis=1), -1.0 / B)
    assert C.consistency_forward(weak, strong, 0.0, 1.0)[0] > 0


def test_no_row_passes_the_threshold_no_loss_and_no_gradient(rng):
    weak, strong = views(rng, spread=0.01)                    # near uniform: max q ~ 1/K
    loss, cache = C.consistency_forward(weak, strong, 0.9, 0.0)
    assert loss == 0.0 and not C.consistency_backward(1.0, cache).any()


def test_gradient_moves_the_strong_view_toward_the_target(rng):
    """A small step against the gradient lowers the term: the strong view learns from the
    weak one; the weak view is untouched (the backward returns the strong view's only)."""
    weak, strong = views(rng)
    loss, cache = C.consistency_forward(weak, strong, 0.0, 0.5)
    d = C.consistency_backward(1.0, cache)
    a = strong - 0.1 * d
    moved = L.log_softmax(a)                                  # stay a distribution
    assert C.consistency_forward(weak, moved, 0.0, 0.5)[0] < loss


def test_sharpen(rng):
    weak, _ = views(rng)
    assert np.allclose(C.sharpen(weak, 1.0), np.exp(weak))
    hard = C.sharpen(weak, 0.0)
    assert (hard.sum(axis=1) == 1).all() and (hard.argmax(axis=1) == weak.argmax(axis=1)).all()
    soft = C.sharpen(weak, 0.5)
    assert np.allclose(soft.sum(axis=1), 1) and (soft.max(axis=1) >= np.exp(weak).max(axis=1)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ema_update(dtype):
    rng = np.random.default_rng(3)
    teacher, student = rng.standard_normal(50).astype(dtype), rng.standard_normal(50).astype(dtype)
    want = 0.9 * teacher.astype(np.float64) + 0.1 * student.astype(np.float64)
    C.ema_update(teacher, student, 0.9)
    assert teacher.dtype == dtype
    np.testing.assert_allclose(teacher, want, rtol=1e-6 if dtype == np.float32 else 1e-14)
    C.ema_update(teacher, student, 0.0)                       # decay 0: the student itself
    np.testing.assert_array_equal(teacher, student)
