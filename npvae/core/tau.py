"""The tau classifier of model gmm (docs/math.md, section 18): K >= C components mapped to the
C classes by soft counts, so that several components may share a class and some may hold none.

    S[c, y]  = sum over labeled images i with label y of q(c|x_i)              (K, C)
    tau[c,y] = (S[c, y] + a0) / sum_y' (S[c, y'] + a0)                         rows sum to 1
    p(y|x)   = sum_c q(c|x) tau[c, y]                                          the prediction
    L_tau    = mean over labeled rows of -log sum_c q(c|x_i) tau[c, y_i]       tau held fixed
    ood(x)   = 1 - max_c q(c|x) max_y tau[c, y]

With K = C and tau the identity, L_tau is the component cross-entropy -log q(y|x).
"""
from __future__ import annotations

import numpy as np

SMOOTHING = 0.1     # a0: a component no labeled image falls into gets the uniform row 1/C
FREE_BELOW = 0.5    # a component whose largest tau[c, y] is below this holds no one class


def soft_counts(q, y, num_classes: int):
    """S (K, C): S[c, y] = sum of q(c|x_i) over the labeled rows (y_i >= 0) with label y.
    q (B, K), y (B,) ints, -1 = unlabeled."""
    rows = np.flatnonzero(y >= 0)
    onehot = np.zeros((rows.size, num_classes))
    onehot[np.arange(rows.size), y[rows]] = 1.0
    return q[rows].T.astype(np.float64) @ onehot                           # (K, C)


def tau_map(q, y, num_classes: int, a0: float = SMOOTHING):
    """tau (K, C) = (S + a0) / its row sums, S = soft_counts(q, y, C)."""
    s = soft_counts(q, y, num_classes) + a0
    return s / s.sum(axis=1, keepdims=True)


def predict(q, tau):
    """p(y|x) = q(c|x) @ tau: (B, K), (K, C) -> (B, C)."""
    return q @ tau


def ood_score(q, tau):
    """1 - max_c q(c|x) max_y tau[c, y] (B,): near 0 when one component that holds one class
    claims x, near 1 when no such component does."""
    return 1.0 - (q * tau.max(axis=1)).max(axis=1)


def free_components(tau, below: float = FREE_BELOW):
    """The components c whose max_y tau[c, y] < below: no class owns them (yet)."""
    return np.flatnonzero(tau.max(axis=1) < below)


def tau_ce_forward(lq, y, tau):
    """Mean over the n labeled rows (y >= 0) of -log sum_c q_ic tau[c, y_i], q = e^lq; 0 when
    no row is labeled. lq (B, K) log-responsibilities, y (B,), tau (K, C) a constant.
    Computed as -logsumexp_c(lq_ic + log tau[c, y_i]), which never forms log 0 of a sum."""
    rows = np.flatnonzero(y >= 0)
    n = rows.size
    if n == 0:
        return 0.0 * lq.sum(), (None, rows, lq.shape, n)
    with np.errstate(divide="ignore"):  # a tau with zeros (the identity): log 0 = -inf, fine
        a = lq[rows] + np.log(tau[:, y[rows]].T)                            # (n, K)
    top = a.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(a - top).sum(axis=1))                   # (n,)
    r = np.exp(a - lse[:, None])    # q_c tau[c,y] / sum_c' q_c' tau[c',y]: rows sum to 1
    return -lse.sum() / n, (r, rows, lq.shape, n)


def tau_ce_backward(dy, cache):
    """d/dlq_ic = -dy r_ic / n on labeled rows (0 elsewhere), r_ic = q_ic tau[c, y_i] /
    sum_c' q_ic' tau[c', y_i] the posterior over components given the label: d lse / d lq_c
    = e^{a_c - lse} since a_c = lq_c + log tau[c, y]. Returns dlq (B, K)."""
    r, rows, shape, n = cache
    dlq = np.zeros(shape)
    if n:
        dlq[rows] = -dy / n * r
    return dlq
