"""Tests for npvae.reporting.metrics against hand-made cases, scikit-learn and scipy."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import entropy as scipy_entropy
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from npvae.reporting import metrics as M


def random_q(n, k, seed=0, sharp=3.0):
    a = np.random.default_rng(seed).normal(size=(n, k)) * sharp
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def one_hot_q(assign, k):
    return np.eye(k)[assign]


# ------------------------------------------------------------------ entropies, usage

@pytest.mark.parametrize("k", [2, 10])
def test_component_entropy_bounds(k):
    assert M.component_entropy(np.full((5, k), 1 / k)) == pytest.approx(np.log(k))
    # one-hot rows: the K-1 zeros are clipped to EPS, each adding -EPS log EPS (spec's clip)
    clipped_zeros = (k - 1) * M.EPS * -np.log(M.EPS)
    assert M.component_entropy(one_hot_q([0, 1, 1], k)) == pytest.approx(clipped_zeros)


def test_component_entropy_matches_scipy():
    q = random_q(50, 6)
    expected = np.mean([scipy_entropy(row) for row in q])
    assert M.component_entropy(q) == pytest.approx(expected, rel=1e-6)


def test_entropy_and_pi_stats():
    p = np.array([0.5, 0.25, 0.25, 0.0])
    assert M.entropy(p) == pytest.approx(scipy_entropy(p))  # the zero contributes 0, not nan
    stats = M.pi_stats(np.full(10, 0.1))
    assert stats["pi_entropy"] == pytest.approx(np.log(10))
    assert stats["pi_max"] == pytest.approx(0.1) and stats["pi_min"] == pytest.approx(0.1)
    stats = M.pi_stats(np.array([0.2, 0.5, 0.3]))
    assert (stats["pi_argmax"], stats["pi_max"], stats["pi_min"]) == (1, 0.5, 0.2)
    assert isinstance(stats["pi_argmax"], int)


def test_usage_and_confidence():
    q = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]])
    np.testing.assert_allclose(M.usage(q), [0.55, 0.45, 0.0])
    assert M.responsibility_confidence(q) == pytest.approx(0.85)
    assert M.responsibility_confidence(np.full((4, 5), 0.2)) == pytest.approx(0.2)


def test_effective_components():
    assert M.effective_components(np.full(10, 0.1)) == pytest.approx(10.0)
    assert M.effective_components(np.eye(10)[3]) == pytest.approx(1.0, abs=1e-6)
    # scale-free: unnormalised usage gives the same K_eff
    u = np.array([3.0, 1.0, 1.0, 0.0])
    assert M.effective_components(u) == pytest.approx(M.effective_components(u / 5))
    assert M.effective_components(u) == pytest.approx(np.exp(scipy_entropy(u)))
    assert 1.0 < M.effective_components(u) < 3.0
    with pytest.raises(ValueError, match="positive"):
        M.effective_components(np.zeros(3))


def test_active_components():
    u = np.array([0.5, 0.3, 0.011, 0.01, 0.005, 0.0])
    assert M.active_components(u) == 3  # strictly above 0.01
    assert M.active_components(u, threshold=0.0) == 5
    assert M.active_components(np.full(10, 0.1)) == 10


# ---------------------------------------------------------- components vs labels

def test_majority_labels_hand_built():
    # component 0 holds two 7s fully and a 2 half; component 1 the other half of the 2 and a 4;
    # component 2 is never used.
    q = np.array([[1.0, 0.0, 0.0],
                  [1.0, 0.0, 0.0],
                  [0.5, 0.5, 0.0],
                  [0.0, 1.0, 0.0]])
    y = np.array([7, 7, 2, 4])
    labels, conf = M.majority_labels(q, y)
    assert labels[:2] == [7, 4]
    np.testing.assert_allclose(conf[:2], [2 / 2.5, 1 / 1.5])
    assert labels[2] == 0 and conf[2] == 0.0  # documented: no mass -> label 0, confidence 0
    assert all(isinstance(c, int) for c in labels) and all(isinstance(c, float) for c in conf)


def test_majority_labels_soft_counts_against_a_loop():
    q, y = random_q(200, 4, seed=1, sharp=1.0), np.random.default_rng(2).integers(0, 10, 200)
    labels, conf = M.majority_labels(q, y)
    for k in range(4):
        counts = [sum(q[i, k] for i in range(200) if y[i] == c) for c in range(10)]
        assert labels[k] == int(np.argmax(counts))
        assert conf[k] == pytest.approx(max(counts) / sum(counts))
    with pytest.raises(ValueError, match="0..9"):
        M.majority_labels(q, np.full(200, 10))


def test_clustering_scores_match_sklearn():
    q, y = random_q(300, 10, seed=3), np.random.default_rng(4).integers(0, 10, 300)
    nmi, ari = M.clustering_scores(q, y)
    hard = q.argmax(axis=1)
    assert nmi == pytest.approx(normalized_mutual_info_score(y, hard))
    assert ari == pytest.approx(adjusted_rand_score(y, hard))
    assert 0.0 <= nmi < 0.2 and abs(ari) < 0.05  # random assignments carry little information


def test_relabelled_perfect_clustering_scores_one():
    y = np.random.default_rng(5).integers(0, 10, 400)
    relabel = np.random.default_rng(6).permutation(10)
    q = one_hot_q(relabel[y], 10) * 0.9 + 0.01  # soft, but argmax is the relabelled digit
    nmi, ari = M.clustering_scores(q, y)
    assert nmi == pytest.approx(1.0) and ari == pytest.approx(1.0)
    assert M.cluster_accuracy(q, y) == pytest.approx(1.0)


def brute_force_accuracy(clusters, y, k, c):
    """Best one-to-one map of clusters to labels by trying every injection."""
    best = 0
    small, large = (k, c) if k <= c else (c, k)
    for perm in itertools.permutations(range(large), small):
        mapping = dict(zip(range(small), perm))
        if k <= c:  # cluster j -> label mapping[j]
            hits = sum(mapping[cl] == t for cl, t in zip(clusters, y))
        else:       # label j -> cluster mapping[j]
            hits = sum(mapping[t] == cl for cl, t in zip(clusters, y))
        best = max(best, hits)
    return best / len(y)


@pytest.mark.parametrize("k, c, seed", [(3, 3, 0), (4, 3, 1), (2, 4, 2), (5, 5, 3)])
def test_cluster_accuracy_matches_brute_force(k, c, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, 40)
    y[:c] = np.arange(c)  # every label occurs
    q = random_q(40, k, seed=seed)
    expected = brute_force_accuracy(q.argmax(axis=1), y, k, c)
    assert M.cluster_accuracy(q, y) == pytest.approx(expected)


def test_cluster_accuracy_more_clusters_than_labels():
    # 4 clusters, 2 labels: cluster 0/1 are pure 0s, cluster 2 pure 1s, cluster 3 mixed.
    clusters = np.array([0, 0, 1, 2, 2, 3, 3])
    y = np.array([0, 0, 0, 1, 1, 1, 0])
    # best injection: cluster 0 -> 0, cluster 2 -> 1 : 4 of 7 right
    assert M.cluster_accuracy(one_hot_q(clusters, 4), y) == pytest.approx(4 / 7)


# -------------------------------------------------------------------- classifier

def test_accuracy():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 5.0], [1.0, 3.0, 0.0], [0.0, 1.0, 0.5]])
    assert M.accuracy(logits, np.array([0, 2, 0, 1])) == pytest.approx(0.75)
    assert np.isnan(M.accuracy(np.zeros((0, 3)), np.zeros(0, dtype=int)))


def test_cross_entropy_matches_naive():
    rng = np.random.default_rng(7)
    logits, y = rng.normal(size=(30, 10)) * 2, rng.integers(0, 10, 30)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    naive = -np.mean(np.log(p[np.arange(30), y]))
    assert M.cross_entropy(logits, y) == pytest.approx(naive, rel=1e-10)
    # uniform logits: CE is log C
    assert M.cross_entropy(np.zeros((4, 10)), np.arange(4)) == pytest.approx(np.log(10))


def test_cross_entropy_huge_logits_stay_finite():
    logits = np.array([[1000.0, 0.0, -1000.0], [1000.0, 999.0, 0.0]])
    ce = M.cross_entropy(logits, np.array([0, 1]))
    # row 1: correct with certainty -> 0; row 2: log(1 + e) - 0 relative to the max
    assert np.isfinite(ce)
    assert ce == pytest.approx((0.0 + (np.log1p(np.exp(-1.0)) + 1.0)) / 2)
    assert M.cross_entropy(np.array([[-1e4, 1e4]]), np.array([0])) == pytest.approx(2e4)
    assert np.isnan(M.cross_entropy(np.zeros((0, 10)), np.zeros(0, dtype=int)))


def test_model_outputs_are_the_eval_forward_without_the_decoder():
    """summary.model_outputs skips the decoder; q, mu and the classifier's logits must be
    those of the full eval-mode forward pass, chunk boundaries included."""
    from conftest import small_config

    from npvae.core.model import evaluate
    from npvae.core.params import init_params
    from npvae.reporting.summary import model_outputs

    cfg = small_config(eval_batch_size=4)
    rng = np.random.default_rng(3)
    p = init_params(cfg, rng)
    x = rng.random((10, cfg.input_dim))
    o = model_outputs(p, x, cfg)
    full, _ = evaluate(p, x, cfg)
    for key in ("q", "mu", "cls_logits"):
        assert o[key].dtype == np.float64
        np.testing.assert_allclose(o[key], getattr(full, key), rtol=1e-12, atol=1e-14)


def test_tau_map_counts_labeled_responsibilities_only():
    """tau[k, c] = (sum over labeled rows of q_ik [y_i = c] + a0) / row total: unlabeled rows
    never count, and a component no labeled row touches maps to the uniform distribution."""
    q = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.0, 0.0, 1.0], [0.6, 0.4, 0.0]])
    y = np.array([1, 0, -1, 1])
    tau = M.tau_map(q, y, 3, a0=0.5)
    S = np.array([[0.2, 1.5, 0.0], [0.8, 0.5, 0.0], [0.0, 0.0, 0.0]]) + 0.5
    np.testing.assert_allclose(tau, S / S.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(tau[2], 1 / 3)
    pred = (q @ tau).argmax(axis=1)
    assert pred[0] == 1 and pred[1] == 0
