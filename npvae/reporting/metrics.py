"""The report's metrics (spec section 5), as pure functions on NumPy arrays.

Shapes: q (N, K) responsibilities q(c=k | x_i), each row summing to 1; y (N,) int labels;
logits (N, C) classifier outputs; pi (K,) prior weights; u (K,) component usage.

All logs are natural. Probabilities inside a log are clipped as in the spec,
clip(p) = min(max(p, EPS), 1) with EPS = 1e-8, so a component with q = 0 contributes 0
instead of 0 * log 0 = nan.

The clustering metrics use the hard assignment argmax_k q_ik and well-kept library code:
scikit-learn for NMI / ARI, scipy's Hungarian solver for the matched accuracy.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from npvae.core import tau as T

EPS = 1e-8


def clip(p: np.ndarray) -> np.ndarray:
    """clip(p) = min(max(p, EPS), 1), elementwise."""
    return np.clip(p, EPS, 1.0)


def _rows(q: np.ndarray, name: str = "q") -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 2 or q.shape[0] == 0:
        raise ValueError(f"{name} has shape {q.shape}; it must be a non-empty 2-D array (N, K).")
    return q


def _labels(y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"y has shape {y.shape}; it must be (N,) = ({n},) to match the rows.")
    return y.astype(np.int64)


# ---------------------------------------------------------------- entropies and usage

def component_entropy(q: np.ndarray) -> float:
    """Mean per-image entropy of the responsibilities, in nats.

    H_q = (1/N) sum_i -sum_k clip(q_ik) log clip(q_ik); 0 for one-hot rows, log K for uniform rows.
    """
    cq = clip(_rows(q))
    return float(np.mean(-np.sum(cq * np.log(cq), axis=1)))


def usage(q: np.ndarray) -> np.ndarray:
    """u_k = (1/N) sum_i q_ik, shape (K,): how much of the data each component explains."""
    return _rows(q).mean(axis=0)


def entropy(p: np.ndarray) -> float:
    """H(p) = -sum_k p_k log clip(p_k) of one distribution p (K,); used for Pi Entropy = H(pi)."""
    p = np.asarray(p, dtype=np.float64)
    return float(-np.sum(p * np.log(clip(p))))


def effective_components(u: np.ndarray) -> float:
    """K_eff = exp(H(u / sum_k u_k)): K for uniform usage, 1 when one component takes all."""
    u = np.asarray(u, dtype=np.float64)
    total = u.sum()
    if not total > 0:
        raise ValueError(f"usage sums to {total}; it needs a positive total to be normalised.")
    return float(np.exp(entropy(u / total)))


def active_components(u: np.ndarray, threshold: float = 0.01) -> int:
    """Number of components with usage u_k > threshold (strictly greater)."""
    return int(np.sum(np.asarray(u) > threshold))


def responsibility_confidence(q: np.ndarray) -> float:
    """(1/N) sum_i max_k q_ik: 1 when every image is assigned with certainty, 1/K at worst."""
    return float(np.mean(np.max(_rows(q), axis=1)))


def pi_stats(pi: np.ndarray) -> dict:
    """Summary of the prior weights pi (K,): {"pi_entropy": H(pi), "pi_max", "pi_min", "pi_argmax"}.

    pi_argmax is the first index of the maximum (np.argmax), as in the seed report.
    """
    pi = np.asarray(pi, dtype=np.float64)
    return {"pi_entropy": entropy(pi), "pi_max": float(pi.max()), "pi_min": float(pi.min()),
            "pi_argmax": int(np.argmax(pi))}


# ------------------------------------------------------------- components vs labels

def majority_labels(q: np.ndarray, y: np.ndarray,
                    num_classes: int = 10) -> tuple[list[int], list[float]]:
    """Which digit each component mostly explains, from soft counts.

    S[k, c] = sum_i q_ik [y_i == c]                       (K, num_classes)
    label_k = argmax_c S[k, c];  confidence_k = S[k, label_k] / sum_c S[k, c]

    A component with zero total mass (sum_c S[k, c] == 0, only possible if q holds exact
    zeros) has no evidence either way: it gets label 0 (np.argmax of an all-zero row) and
    confidence 0.0, never nan, so the lists stay printable and JSON-safe.
    """
    q = _rows(q)
    y = _labels(y, len(q))
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"y spans {y.min()}..{y.max()}; labels must lie in 0..{num_classes - 1}.")
    onehot = np.eye(num_classes)[y]                       # (N, C)
    soft_counts = q.T @ onehot                            # (K, C)
    labels = np.argmax(soft_counts, axis=1)
    mass = soft_counts.sum(axis=1)
    best = soft_counts[np.arange(len(labels)), labels]
    confidence = np.divide(best, mass, out=np.zeros_like(best), where=mass > 0)
    return [int(c) for c in labels], [float(c) for c in confidence]


def tau_map(q: np.ndarray, y: np.ndarray, num_classes: int, a0: float = 0.1) -> np.ndarray:
    """(K, C) map from components to labels, learned from the labeled rows (y >= 0) only:
    soft counts S[k, c] = sum_i q_ik [y_i = c], tau[k, c] = (S[k, c] + a0) / sum_c' (S[k, c'] + a0).
    p(y|x) = sum_k q(k|x) tau[k, y] predicts a digit from the responsibilities; a component no
    labeled image uses maps to the uniform distribution. The math is core's
    (npvae/core/tau.py:tau_map), which model gmm's classifier tau trains with."""
    return T.tau_map(_rows(q), np.asarray(y), num_classes, a0)


def clustering_scores(q: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(NMI, ARI) of the hard clustering argmax_k q_ik against the labels y.

    NMI: sklearn normalized_mutual_info_score (arithmetic normalisation), in [0, 1].
    ARI: sklearn adjusted_rand_score, 1 for a perfect clustering, about 0 for chance.
    Both ignore how clusters are numbered.
    """
    q = _rows(q)
    y = _labels(y, len(q))
    clusters = np.argmax(q, axis=1)
    return (float(normalized_mutual_info_score(y, clusters)),
            float(adjusted_rand_score(y, clusters)))


def cluster_accuracy(q: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of argmax_k q_ik after the best one-to-one matching of clusters to labels.

    Contingency M[k, c] = #{i : argmax q_i = k, y_i = c}; the Hungarian solver picks the
    matching (each cluster to at most one label, each label to at most one cluster)
    maximising sum M[k, match(k)]; accuracy = that sum / N. With K != num_classes the
    matching is rectangular: images in unmatched clusters (K > C) count as wrong.
    """
    q = _rows(q)
    y = _labels(y, len(q))
    if y.min() < 0:
        raise ValueError(f"y holds {y.min()}; labels must be non-negative class indices.")
    clusters = np.argmax(q, axis=1)
    contingency = np.zeros((q.shape[1], int(y.max()) + 1), dtype=np.int64)
    np.add.at(contingency, (clusters, y), 1)
    rows, cols = linear_sum_assignment(contingency, maximize=True)
    return float(contingency[rows, cols].sum() / len(y))


# --------------------------------------------------------------------- classifier

def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """mean_i [argmax_c logits_ic == y_i]; nan for zero rows (nothing to score)."""
    logits = np.asarray(logits)
    y = _labels(y, len(logits))
    if len(y) == 0:
        return float("nan")
    return float(np.mean(np.argmax(logits, axis=1) == y))


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    """Plain mean cross-entropy over the given rows, in nats; nan for zero rows.

    CE = (1/N) sum_i [ logsumexp_c(logits_ic) - logits_{i, y_i} ]. logsumexp subtracts the
    row maximum first, so huge logits stay finite. This is the report's
    "Classification CE (labeled, plain mean)" when given the labeled rows only.
    """
    logits = np.asarray(logits, dtype=np.float64)
    y = _labels(y, len(logits))
    if len(y) == 0:
        return float("nan")
    if logits.ndim != 2 or y.min() < 0 or y.max() >= logits.shape[1]:
        raise ValueError(f"logits {logits.shape} and labels {y.min()}..{y.max()} do not fit; "
                         f"labels must index the classes 0..C-1 of logits (N, C).")
    picked = logits[np.arange(len(y)), y]
    return float(np.mean(logsumexp(logits, axis=1) - picked))
