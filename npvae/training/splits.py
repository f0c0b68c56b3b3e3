"""The labeled subset and the train / validation split (spec section 1), and subsampling.

The splits follow the spec's NumPy recipe exactly (np.random.RandomState, not Generator),
because the labeled set and the split must be the same images as in the reproduced run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .idx import DataError


def subsample(x: np.ndarray, y: np.ndarray, num_samples: int | None,
              seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep num_samples images drawn without replacement, in the order drawn.

    idx = np.random.RandomState(seed).choice(N, num_samples, replace=False); returns
    (x[idx], y[idx]). num_samples None or == N returns the inputs unchanged.
    """
    n = len(x)
    if num_samples is None or num_samples == n:
        return x, y
    if not 1 <= num_samples <= n:
        raise DataError(f"num_samples={num_samples} is not possible with {n} images; it must "
                        f"be in 1..{n} (or 'all' for every image).")
    idx = np.random.RandomState(seed).choice(n, num_samples, replace=False)
    return x[idx], y[idx]


@dataclass(frozen=True)
class Splits:
    """Index arrays (int64) into the N images.

    labeled: the images whose labels the model may see, in the order rng.choice drew them
             (not sorted), so the recipe can be checked against the spec verbatim; never
             an image without a label.
    train:   the training split, in permutation order.
    val:     the validation split, in permutation order; disjoint from train, and
             train + val cover 0..N-1. Labeled images, and images without a label,
             fall in either split.
    """
    labeled: np.ndarray
    train: np.ndarray
    val: np.ndarray


def make_splits(n: int, num_labeled: int, seed: int, val_fraction: float = 0.1,
                candidates: np.ndarray | None = None) -> Splits:
    """Spec section 1, exactly.

    rng = np.random.RandomState(seed)
    labeled = rng.choice(n, num_labeled, replace=False)
    perm = rng.permutation(n)          # same rng, after the labeled draw
    val = perm[:int(val_fraction * n)]; train = perm[int(val_fraction * n):]

    candidates: (M,) int indices of the images that have a label, when some have none
    (their label -1); the labeled images are then drawn among them only,
    labeled = candidates[rng.choice(M, num_labeled, replace=False)], and every one of the
    n images still falls in train or val. None: every image has a label (the recipe above,
    draw for draw).
    """
    if n < 1:
        raise DataError(f"n={n} images is not enough to split; n must be at least 1.")
    pool = n if candidates is None else len(candidates)
    if candidates is not None and not 0 <= num_labeled <= pool:
        raise DataError(f"num_labeled={num_labeled} is not possible: {pool} of the {n} images "
                        f"have a label; it must be in 0..{pool}.")
    if not 0 <= num_labeled <= n:
        raise DataError(f"num_labeled={num_labeled} is not possible with {n} images; it must "
                        f"be in 0..{n}.")
    num_val = int(val_fraction * n)
    if not 0.0 <= val_fraction < 1.0 or num_val > n - 1:
        raise DataError(f"val_fraction={val_fraction} leaves no training image out of {n}; it "
                        f"must be in [0, 1) with int(val_fraction * n) <= n - 1.")
    rng = np.random.RandomState(seed)
    labeled = rng.choice(pool, num_labeled, replace=False)
    if candidates is not None:
        labeled = np.asarray(candidates, dtype=np.int64)[labeled]
    perm = rng.permutation(n)
    return Splits(labeled=labeled.astype(np.int64), train=perm[num_val:].astype(np.int64),
                  val=perm[:num_val].astype(np.int64))


def visible_labels(y: np.ndarray, labeled: np.ndarray) -> np.ndarray:
    """(N,) int64 copy of y with -1 at every index not in `labeled` (labels the model never sees)."""
    y = np.asarray(y)
    labeled = np.asarray(labeled, dtype=np.int64)
    if labeled.size and (labeled.min() < 0 or labeled.max() >= len(y)):
        raise DataError(f"Labeled indices span {labeled.min()}..{labeled.max()}; they must lie "
                        f"in 0..{len(y) - 1} for {len(y)} labels.")
    visible = np.full(len(y), -1, dtype=np.int64)
    visible[labeled] = y[labeled]
    return visible
