"""Every forward/backward pair of npvae/core/layers.py against float64 central differences.

Each check draws a random upstream gradient dy and differentiates sum(dy * out); inputs are
kept away from the points where a layer is not differentiable (lrelu at 0, the clip at EPS
and at 1), where central differences would straddle a kink.
"""
from __future__ import annotations

import numpy as np
import pytest

from npvae.core import layers as L

from conftest import check_layer

TOL = 1e-7


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def away_from_zero(rng, shape, margin=0.1):
    """Standard normal entries pushed to |a| >= margin, so a +-h step never crosses 0."""
    a = rng.standard_normal(shape)
    return np.where(a >= 0, a + margin, a - margin)


def probs(rng, shape, low=0.02):
    """Rows of a softmax, then floored at `low` and renormalised: far from EPS and from 1."""
    p = np.exp(rng.standard_normal(shape))
    p = np.maximum(p / p.sum(axis=-1, keepdims=True), low)
    return p / p.sum(axis=-1, keepdims=True)


def assert_small(errs):
    assert max(errs) <= TOL, f"relative errors {errs} exceed {TOL}"


def test_linear(rng):
    x, W, b = rng.standard_normal((5, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3)
    assert_small(check_layer(L.linear_forward, L.linear_backward, [x, W, b], [0, 1, 2], rng))


def test_lrelu(rng):
    a = away_from_zero(rng, (6, 5))
    assert (a > 0).any() and (a < 0).any(), "both slopes must be exercised"
    assert_small(check_layer(L.lrelu_forward, L.lrelu_backward, [a], [0], rng))


def test_lrelu_values():
    y, _ = L.lrelu_forward(np.array([-2.0, 0.0, 3.0]))
    np.testing.assert_array_equal(y, [-0.02, 0.0, 3.0])


def test_dropout(rng):
    keep = 0.8
    mask = (rng.random((6, 5)) < keep) / keep        # frozen mask, entries 0 or 1/keep
    x = rng.standard_normal((6, 5))
    assert_small(check_layer(lambda x: L.dropout_forward(x, mask), L.dropout_backward,
                             [x], [0], rng))


@pytest.mark.parametrize("shape", [(4, 5), (5,), (2, 3, 4)], ids=["batch", "vector", "3d"])
def test_softmax(rng, shape):
    a = 2.0 * rng.standard_normal(shape)
    assert_small(check_layer(L.softmax_forward, L.softmax_backward, [a], [0], rng))


def test_softmax_is_stable():
    p, _ = L.softmax_forward(np.array([1000.0, 0.0, -1000.0]))
    np.testing.assert_allclose(p, [1.0, 0.0, 0.0])
    assert np.isfinite(L.log_softmax(np.array([1000.0, 0.0]))).all()


def test_clip_log(rng):
    p = rng.uniform(0.05, 0.95, (4, 5))
    assert_small(check_layer(L.clip_log_forward, L.clip_log_backward, [p], [0], rng))


def test_clip_log_clipped_region_has_zero_gradient():
    p = np.array([0.0, 1e-12, 0.5])
    y, cache = L.clip_log_forward(p)
    np.testing.assert_allclose(y, [np.log(L.EPS), np.log(L.EPS), np.log(0.5)])
    np.testing.assert_array_equal(L.clip_log_backward(np.ones(3), cache), [0.0, 0.0, 2.0])


@pytest.mark.parametrize("scale", [1.0, 8.0], ids=["moderate", "large"])
def test_bce_logits(rng, scale):
    l = scale * rng.standard_normal((3, 2, 7))                  # (B, K, D) logits
    x = rng.random((3, 1, 7))                                   # targets, broadcast over K
    assert_small(check_layer(lambda l: L.bce_logits_forward(l, x), L.bce_logits_backward,
                             [l], [0], rng))


def test_gauss_kl(rng):
    mu, lv = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    assert_small(check_layer(L.gauss_kl_forward, L.gauss_kl_backward, [mu, lv], [0, 1], rng))


def test_reparam(rng):
    mu, lv, eps = (rng.standard_normal((5, 3)) for _ in range(3))   # eps frozen
    assert_small(check_layer(lambda m, v: L.reparam_forward(m, v, eps), L.reparam_backward,
                             [mu, lv], [0, 1], rng))


def test_cat_kl(rng):
    q, pi = probs(rng, (6, 4)), probs(rng, (4,))
    errs = check_layer(L.cat_kl_forward, L.cat_kl_backward, [q, pi], [0, 1], rng)
    assert_small(errs)      # errs[0]: with respect to q, errs[1]: with respect to pi


@pytest.mark.parametrize("shape", [(5,), (3, 5)], ids=["vector", "batch"])
def test_entropy(rng, shape):
    p = probs(rng, shape)
    assert_small(check_layer(L.entropy_forward, L.entropy_backward, [p], [0], rng))


@pytest.mark.parametrize("alpha", [5.0, 0.5])
def test_dirichlet(rng, alpha):
    pi = probs(rng, (6,))
    assert_small(check_layer(lambda pi: L.dirichlet_forward(pi, alpha), L.dirichlet_backward,
                             [pi], [0], rng))


@pytest.mark.parametrize("y", [[-1, -1, -1, -1, -1], [-1, 2, -1, -1, -1], [0, 3, -1, 3, 1]],
                         ids=["no_labeled_row", "one", "several"])
def test_labeled_ce(rng, y):
    y = np.array(y)
    logits = 2.0 * rng.standard_normal((5, 4))
    assert_small(check_layer(lambda lg: L.labeled_ce_forward(lg, y), L.labeled_ce_backward,
                             [logits], [0], rng))
    value, cache = L.labeled_ce_forward(logits, y)
    rows = np.flatnonzero(y >= 0)
    if rows.size == 0:
        assert value == 0.0
        assert not L.labeled_ce_backward(1.0, cache).any()
    else:        # the mean over labeled rows only, of -log softmax at the true class
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        np.testing.assert_allclose(value, -np.mean(logp[rows, y[rows]]), rtol=1e-12)
        assert not L.labeled_ce_backward(1.0, cache)[y < 0].any()
