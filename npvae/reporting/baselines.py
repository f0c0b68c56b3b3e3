"""scikit-learn baselines on a run's own split: what the pixels give without the model.

Each baseline sees exactly what the model may use: the training split's pixels and the labels
of the labeled images that fall in the training split (`training_labels`); it predicts the
validation split (the held-out images), whose labels are used only to score it; images
without a label (y = -1) are never scored, and LabelSpreading takes those of the training
split as the unlabeled points they are.

    training_labels(y, splits)        (N,) the training labels, -1 everywhere else
    BASELINES[name](x, y, splits)     held-out accuracy of one baseline (nan if it cannot fit)

    "LabelSpreading (knn 10)"          LabelSpreading(kernel="knn", n_neighbors=10) fit on
                                       every training image, -1 for the unlabeled ones
    "logistic regression (labeled)"    LogisticRegression(max_iter=1000) on the labeled
                                       training images only
    "1-NN (labeled)"                   1-nearest-neighbour on the labeled training images only

Rows are taken in the training split's order (the order changes LBFGS's last digits, and so
can move a logistic regression by an image).
"""
from __future__ import annotations

import warnings

import numpy as np

from npvae.training.data import Splits


def training_labels(y, splits: Splits) -> np.ndarray:
    """(N,) int64: y at the labeled images of the training split, -1 elsewhere (labeled
    images in the validation split are held out like the rest of it)."""
    seen = np.full(len(y), -1, dtype=np.int64)
    lab = np.intersect1d(splits.labeled, splits.train)
    seen[lab] = np.asarray(y)[lab]
    return seen


def _labeled_rows(x, y, splits: Splits):
    """Pixels and labels of the labeled training images, in training-split order."""
    y_tr = training_labels(y, splits)[splits.train]
    keep = y_tr >= 0
    return x[splits.train][keep], y_tr[keep]


def _score(predict, x, y, splits: Splits) -> float:
    """Accuracy on the validation images that have a label (y >= 0); nan when none has."""
    y = np.asarray(y)
    val = splits.val[y[splits.val] >= 0]
    if val.size == 0:
        return float("nan")
    return float(np.mean(predict(x[val]) == y[val]))


def _one_class(labels):
    """Classifiers refuse a single class; predicting that class is what they would learn."""
    return (lambda xv: np.full(len(xv), labels[0])) if len(set(labels.tolist())) == 1 else None


def label_spreading(x, y, splits: Splits) -> float:
    from sklearn.semi_supervised import LabelSpreading

    y_tr = training_labels(y, splits)[splits.train]
    if not (y_tr >= 0).any() or len(splits.train) < 2:
        return float("nan")
    k = min(10, len(splits.train) - 1)
    with warnings.catch_warnings():      # max_iter reached: the result is still a prediction
        warnings.simplefilter("ignore")
        model = LabelSpreading(kernel="knn", n_neighbors=k).fit(x[splits.train], y_tr)
    return _score(model.predict, x, y, splits)


def logistic_regression(x, y, splits: Splits) -> float:
    from sklearn.linear_model import LogisticRegression

    xl, yl = _labeled_rows(x, y, splits)
    if yl.size == 0:
        return float("nan")
    predict = _one_class(yl) or LogisticRegression(max_iter=1000).fit(xl, yl).predict
    return _score(predict, x, y, splits)


def nearest_neighbour(x, y, splits: Splits) -> float:
    from sklearn.neighbors import KNeighborsClassifier

    xl, yl = _labeled_rows(x, y, splits)
    if yl.size == 0:
        return float("nan")
    return _score(KNeighborsClassifier(n_neighbors=1).fit(xl, yl).predict, x, y, splits)


BASELINES = {
    "LabelSpreading (knn 10)": label_spreading,
    "logistic regression (labeled)": logistic_regression,
    "1-NN (labeled)": nearest_neighbour,
}
