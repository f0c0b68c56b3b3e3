"""Inputs of npvae.MixtureVAEClassifier: pixels onto [0, 1], unlabeled rows, the holdout.

    to_unit(X, dtype)          integer grey levels 0..255 / 255, float pixels checked in [0, 1]
    is_unlabeled(y)            (n,) bool: the rows marked -1
    rows(X, keep)              X[keep] for arrays and DataFrames
    holdout(n, f, seed)        (train, val) rows: the validation rows fit holds out
"""
from __future__ import annotations

import numpy as np


def holdout(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) row indices: make_splits' permutation with max(1, int(f n)) rows held out;
    with fewer than 1 / f rows (none to spare), every row trains and validates."""
    perm = np.random.RandomState(seed).permutation(n)
    k = int(val_fraction * n)
    if k < 1:
        return perm, perm
    return perm[k:], perm[:k]


def to_unit(X: np.ndarray, dtype) -> np.ndarray:
    """Integer grey levels 0..255 -> /255; floats must already lie in [0, 1]."""
    X = np.asarray(X)
    if X.dtype == bool:
        X = X.astype(np.uint8)
    if np.issubdtype(X.dtype, np.integer):
        if X.size and (X.min() < 0 or X.max() > 255):
            raise ValueError(f"integer pixels span {X.min()}..{X.max()}; grey levels must lie "
                             f"in 0..255.")
        return (X.astype(np.float32) / 255.0).astype(dtype)   # as npvae.training.data loads them
    if not np.issubdtype(X.dtype, np.floating):
        raise ValueError(f"X has dtype {X.dtype}; give float pixels in [0, 1] or integer grey "
                         f"levels 0..255.")
    if X.size and (X.min() < 0.0 or X.max() > 1.0):
        raise ValueError(f"float pixels span [{X.min():g}, {X.max():g}]; they must lie in "
                         f"[0, 1] (divide grey levels by 255, or pass them as integers).")
    return np.ascontiguousarray(X, dtype=dtype)


def is_unlabeled(y: np.ndarray) -> np.ndarray:
    """Rows marked -1 (the number, or the string '-1' in an object/string array)."""
    if y.dtype.kind in "iuf":
        return y == -1
    return np.array([v == -1 or v == "-1" for v in y.ravel()], dtype=bool).reshape(y.shape)


def rows(X, keep):
    return X.iloc[keep] if hasattr(X, "iloc") else np.asarray(X)[keep]
