"""Query strategies for active learning: which unlabeled images to label next.

Every strategy is a function with the same signature

    strategy(probs, q, y_known, pool, batch, rng, emb=None) -> indices (n,) int64,
                                                              n = min(batch, candidates)

    probs   (N, C) the model's predicted label distribution p(y|x) for every image
    q       (N, K) its responsibilities q(c|x) (for model gmm the components are the classes,
            so q == probs; for the seed's model q is its mixture and probs its classifier)
    y_known (N,) int: the labels revealed so far, -1 where unknown
    pool    (N,) bool: the images that may be queried at all (the training split; never the
            held-out images)
    batch   how many to return (B)
    rng     np.random.Generator (used by `random`, and by `typical` to seed its k-means;
            the others are deterministic)
    emb     (N, D) the images' latent embeddings, the encoder means mu (used by `typical`
            only, which requires it; the loop always passes it)

The candidates are pool & (y_known < 0): an index already labeled or held out is never
returned, no index twice, and with fewer candidates than `batch` all of them are returned.
Scores are ranked by a stable sort, so ties go to the lower index.

    random      the baseline: `batch` candidates drawn uniformly without replacement
    entropy     largest H(p) = -sum_c p_c log p_c of the predicted label distribution
    margin      smallest p_(1) - p_(2), the gap between the two most likely labels
    responsibility  first, for every component with candidates but no labeled image yet
                (components taken largest first), its most typical candidate (largest
                q(c|x)); then the candidates ranked by unclear(c_i) * (1 - q(c_i|x_i)),
                c_i = argmax_c q(c|x_i), where unclear(c) = 1 - m_c / (n_c + 1) for the n_c
                labeled images whose component is c, m_c of them carrying its most common
                label (no label: 1; one label: 1/2; three agreeing: 1/4)
    diversity   the margin ranking, but at most ceil(batch / K) + 1 images from one component
                (argmax q) per round; when the cap leaves the batch short (few components
                have candidates), the rest of the ranking fills it. (Margin, not entropy:
                with model gmm's sharp q(c|x) the entropy ranking favours odd images spread
                over many classes; margin did better in a first trial on seed 42.)
    typical     for low budgets (the cold-start idea of typicality and coverage, e.g. Hacohen
                et al. 2022, "Active learning on a budget"): k-means (scikit-learn, seeded
                from rng) on the embeddings of the pool and the labeled images into
                n_labeled + batch clusters; of the clusters holding no labeled image, the
                largest first (ties to the lower cluster number), the most typical candidate
                of each: the largest typicality 1 / mean distance to its min(20, m - 1)
                nearest other members of its cluster of m (a lone member: typicality inf).
                Should fewer such clusters exist than `batch` (k-means may leave clusters
                empty on repeated points), the rest are the most typical candidates left.
                Uses neither probs nor q: what to label does not depend on the classifier.
"""
from __future__ import annotations

import math

import numpy as np


def candidates(y_known, pool) -> np.ndarray:
    """Indices (ascending) that may be queried: in the pool and not labeled yet."""
    return np.flatnonzero(np.asarray(pool, bool) & (np.asarray(y_known) < 0))


def _top(cand: np.ndarray, score: np.ndarray, batch: int) -> np.ndarray:
    """The `batch` candidates with the largest score; ties to the lower index (stable sort
    of -score over candidates in ascending order)."""
    order = np.argsort(-score[cand], kind="stable")
    return cand[order[:batch]].astype(np.int64)


def entropy_scores(probs) -> np.ndarray:
    """(N,) H(p_i) = -sum_c p_ic log p_ic (0 log 0 = 0)."""
    p = np.asarray(probs, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(p), 0.0)
    return -plogp.sum(axis=1)


def random(probs, q, y_known, pool, batch, rng, emb=None) -> np.ndarray:
    """Uniformly at random among the candidates (the baseline)."""
    cand = candidates(y_known, pool)
    return rng.choice(cand, min(batch, cand.size), replace=False).astype(np.int64)


def entropy(probs, q, y_known, pool, batch, rng, emb=None) -> np.ndarray:
    """The candidates whose predicted label distribution has the largest entropy."""
    return _top(candidates(y_known, pool), entropy_scores(probs), batch)


def margin_scores(probs) -> np.ndarray:
    """(N,) -(p_(1) - p_(2)): minus the gap between the two most likely labels."""
    top2 = -np.sort(-np.asarray(probs, np.float64), axis=1)[:, :2]
    return -(top2[:, 0] - top2[:, 1])


def margin(probs, q, y_known, pool, batch, rng, emb=None) -> np.ndarray:
    """The candidates with the smallest gap between their two most likely labels."""
    return _top(candidates(y_known, pool), margin_scores(probs), batch)


def unclear(comp, y_known, K: int) -> np.ndarray:
    """(K,) how unclear each component's label is: 1 - m_c / (n_c + 1), with n_c the labeled
    images whose component (comp = argmax q) is c and m_c the count of their commonest label."""
    out = np.ones(K)
    known = np.flatnonzero(np.asarray(y_known) >= 0)
    for c in range(K):
        labels = np.asarray(y_known)[known[comp[known] == c]]
        if labels.size:
            out[c] = 1.0 - np.bincount(labels).max() / (labels.size + 1)
    return out


def responsibility(probs, q, y_known, pool, batch, rng, emb=None) -> np.ndarray:
    """Components without a label first (their most typical candidate each, largest component
    first), then candidates by unclear(component) * (1 - q(component|x)); see the module doc."""
    q = np.asarray(q, np.float64)
    K = q.shape[1]
    cand = candidates(y_known, pool)
    comp = q.argmax(axis=1)
    known = np.asarray(y_known) >= 0
    picked: list[int] = []
    sizes = np.bincount(comp[cand], minlength=K)
    for c in np.argsort(-sizes, kind="stable"):          # largest component first
        if len(picked) >= batch or sizes[c] == 0:
            break
        if not np.any(known & (comp == c)):
            members = cand[comp[cand] == c]
            picked.append(int(_top(members, q[:, c], 1)[0]))
    rest = np.setdiff1d(cand, picked)
    score = unclear(comp, y_known, K)[comp] * (1.0 - q[np.arange(len(q)), comp])
    more = _top(rest, score, batch - len(picked))
    return np.concatenate([np.asarray(picked, np.int64), more]).astype(np.int64)


def diversity(probs, q, y_known, pool, batch, rng, emb=None) -> np.ndarray:
    """The margin ranking with at most ceil(batch / K) + 1 picks per component (argmax q);
    if the cap leaves the batch short, the next candidates of the ranking fill it."""
    q = np.asarray(q)
    cap = math.ceil(batch / q.shape[1]) + 1
    ranked = _top(candidates(y_known, pool), margin_scores(probs), len(pool))
    comp = q.argmax(axis=1)
    taken = np.zeros(q.shape[1], int)
    picked, skipped = [], []
    for i in ranked:
        if len(picked) == batch:
            break
        if taken[comp[i]] < cap:
            taken[comp[i]] += 1
            picked.append(i)
        else:
            skipped.append(i)
    picked += skipped[:batch - len(picked)]
    return np.asarray(picked, np.int64)


TYPICAL_K = 20          # neighbours of the typicality (Hacohen et al. use 20)


def typicality(points) -> np.ndarray:
    """(m,) 1 / mean Euclidean distance of each row of points (m, D) to its min(TYPICAL_K,
    m - 1) nearest other rows; inf for a lone row or a row at distance 0 from them all."""
    from scipy.spatial.distance import cdist

    pts = np.asarray(points, np.float64)
    m = len(pts)
    k = min(TYPICAL_K, m - 1)
    if k < 1:
        return np.full(m, np.inf)
    d = cdist(pts, pts)
    np.fill_diagonal(d, np.inf)                    # not its own neighbour
    near = np.partition(d, k - 1, axis=1)[:, :k].mean(axis=1)
    with np.errstate(divide="ignore"):
        return 1.0 / near


def typical(probs, q, y_known, pool, batch, rng, emb=None) -> np.ndarray:
    """The most typical candidate of each of the largest clusters (k-means on emb into
    n_labeled + batch clusters) that hold no labeled image; see the module doc."""
    from sklearn.cluster import KMeans

    if emb is None:
        raise ValueError("the typical strategy needs the embeddings (emb).")
    cand = candidates(y_known, pool)
    if cand.size <= batch:
        return cand.astype(np.int64)
    known = np.flatnonzero(np.asarray(y_known) >= 0)
    rows = np.union1d(cand, known)                 # ascending: the pool and the labeled
    emb = np.asarray(emb, np.float64)
    k = min(known.size + batch, rows.size)
    seed = int(rng.integers(2**31 - 1))
    cluster = KMeans(k, n_init=3, random_state=seed).fit_predict(emb[rows])
    is_cand = np.isin(rows, cand)
    labeled = np.zeros(k, bool)
    labeled[cluster[~is_cand]] = True
    score = np.full(len(emb), -np.inf)             # typicality within the own cluster
    for c in np.unique(cluster):
        members = rows[cluster == c]
        score[members] = typicality(emb[members])
    sizes = np.bincount(cluster, minlength=k)
    picked: list[int] = []
    for c in np.argsort(-sizes, kind="stable"):     # largest first, ties to the lower number
        if len(picked) == batch or sizes[c] == 0:
            break
        if not labeled[c]:
            picked.append(int(_top(rows[(cluster == c) & is_cand], score, 1)[0]))
    rest = _top(np.setdiff1d(cand, picked), score, batch - len(picked))
    return np.concatenate([np.asarray(picked, np.int64), rest]).astype(np.int64)


STRATEGIES = {"random": random, "entropy": entropy, "margin": margin,
              "responsibility": responsibility, "diversity": diversity,
              "typical": typical}
