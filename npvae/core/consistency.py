"""Consistency between two views of an image, and the mean teacher (docs/math.md, section 17).

Semi-supervised learning with few labels gains most from one assumption: a small change of an
image that a person would call "the same digit" should not change the model's answer. Two
views of each unlabeled image are made, a weak one (the image as it is, or lightly warped) and
a strong one (warped harder); the model's class posterior on the weak view becomes the target
for its posterior on the strong view:

    t_i = sharpen(q_weak_i, T)            target, treated as a constant (no gradient)
    m_i = 1[max_k q_weak_ik >= tau]       only confident targets count
    L_cons = 1/B sum_i m_i sum_k t_ik (log t_ik - lq_strong_ik)
           = 1/B sum_i m_i KL(t_i || q_strong_i)

sharpen(q, T)_k = q_k^(1/T) / sum_j q_j^(1/T): T = 1 keeps q (the KL of UDA, Xie et al. 2020,
or of a mean teacher, Tarvainen & Valpola 2017, with tau = 0), T -> 0 gives the one-hot argmax
(FixMatch, Sohn et al. 2020: pseudo-labels above a confidence tau, whose loss is then the
cross-entropy -log q_strong[argmax q_weak], the target's entropy being 0). The mean is over all
B rows, masked or not, as in FixMatch: early in training few targets pass tau and the term is
small by itself, with no extra schedule.

Why the target is a constant: if the gradient also flowed into the weak view, the cheapest way
to agree would be for both views to become uninformative (uniform); stopping it makes the
strong view move toward the weak view's answer, never the reverse.

Shapes: B rows, K classes; lq_* are log-probabilities (B, K) (log softmax of the model's
logits, or model gmm's log q(c|x)), so the pair below chains onto a log_softmax_backward.
"""
from __future__ import annotations

import numpy as np

from . import layers as L


def sharpen(lq, T: float):
    """The target distribution from log-probabilities lq (B, K): softmax(lq / T) for T > 0,
    onehot(argmax lq) for T = 0 (the limit; ties go to the first class). (B, K)."""
    if T == 0:
        t = np.zeros_like(lq)
        t[np.arange(lq.shape[0]), lq.argmax(axis=1)] = 1.0
        return t
    return np.exp(L.log_softmax(lq / T))


def consistency_forward(lq_weak, lq_strong, tau: float, T: float):
    """L_cons = 1/B sum_i m_i sum_k t_ik (log t_ik - lq_strong_ik), t = sharpen(lq_weak, T)
    held constant, m_i = 1[max_k e^{lq_weak_ik} >= tau]; 0 log 0 = 0.
    lq_weak, lq_strong (B, K) -> scalar."""
    B = lq_strong.shape[0]
    t = sharpen(lq_weak, T)                                                 # (B, K)
    mask = np.exp(lq_weak.max(axis=1)) >= tau                               # (B,)
    h_t, _ = L.entropy_forward(t)                                           # (B,) 0 log 0 = 0
    kl = -h_t - (t * lq_strong).sum(axis=1)                                 # (B,)
    return (kl * mask).sum() / B, (t, mask, B)


def consistency_backward(dy, cache):
    """dL/dlq_strong_ik = -dy m_i t_ik / B. The weak view gets no gradient (its target is a
    constant), so only dlq_strong (B, K) is returned."""
    t, mask, B = cache
    return -(dy / B) * mask[:, None] * t                                    # (B, K)


def confident_share(lq_weak, tau: float) -> float:
    """The share of rows whose target passes the threshold (a progress figure: it should rise
    as the model learns)."""
    return float(np.mean(np.exp(lq_weak.max(axis=1)) >= tau))


# ------------------------------------------------------------------- the mean teacher
def ema_update(teacher, student, decay: float) -> None:
    """teacher <- decay teacher + (1 - decay) student, in place, on flat parameter buffers
    (npvae/core/params.py: one array, so one operation). A teacher that averages the student's
    recent weights gives steadier targets than the student itself (Tarvainen & Valpola 2017);
    decay 0 makes the teacher the student."""
    teacher *= decay
    teacher += (1.0 - decay) * student
