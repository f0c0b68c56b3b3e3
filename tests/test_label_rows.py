"""The report's extra rows on labels (npvae/reporting/summary.py label_rows,
npvae/reporting/baselines.py): held-out accuracy of each predictor, the scikit-learn baselines on
the run's own split, and the labeled training images. Held-out = the validation split; only training
labels are used."""
from __future__ import annotations

import numpy as np
import pytest

from npvae import Config, init_params
from npvae.reporting import baselines as B
from npvae.training.data import load_digits, make_splits, subsample
from npvae.reporting.report import table_lines
from npvae.reporting.summary import label_rows, model_outputs, predictors

# The lead's independent check (issue 10 brief): embedded digits, 50 labels, held-out = the
# validation split. LabelSpreading(knn, 10) and the labeled-only logistic regression. Two of
# them are checked (each takes ~2 s).
REFERENCE = {42: (0.766, 0.658), 43: (0.734, 0.628), 44: (0.812, 0.710), 45: (0.732, 0.600),
             46: (0.762, 0.658)}
# Both fits run on float32 pixels through BLAS, whose kernels differ between CPUs: LBFGS's
# path, and the kNN graph's ties, can move a held-out image or two (seed 42's logistic
# regression is 0.656 on some Zen 4 hosts and in float64, 0.658 elsewhere). So the figures are
# pinned to 3 of the 500 held-out images. Each bug we could think of moves them further, by
# 6-24 images on one of the two seeds: the logistic regression fit on every labeled image,
# held-out ones included (+14/+17), on 50 other training images (-25/-49), with C=0.1 (-13/-6);
# LabelSpreading fit on the held-out pixels too (+10/+12), with 7 neighbours (-1/-20).
IMAGES = 3 / 500


@pytest.fixture(scope="module")
def all_digits():
    return load_digits()


@pytest.fixture(scope="module")
def small():
    x, y = subsample(*load_digits(), 300, seed=0)
    splits = make_splits(300, 40, seed=0)
    cfg = Config(hidden_dims=(32,), decoder_dims=(32,), classifier_dims=(16,))
    p = init_params(cfg, np.random.default_rng(0))
    return cfg, p, x, y, splits, model_outputs(p, x, cfg)


def test_training_labels_hide_everything_but_the_labeled_training_images(small):
    _, _, _, y, splits, _ = small
    seen = B.training_labels(y, splits)
    lab_train = np.intersect1d(splits.labeled, splits.train)
    assert 0 < lab_train.size < splits.labeled.size          # some labeled images are held out
    assert (seen[splits.val] == -1).all()
    assert (seen[lab_train] == y[lab_train]).all()
    assert (seen >= 0).sum() == lab_train.size


@pytest.mark.parametrize("seed", [42, 44])
def test_baselines_reproduce_the_reference_check(all_digits, seed):
    x, y = all_digits
    splits = make_splits(len(y), 50, seed)
    ls, lr = REFERENCE[seed]
    assert len(splits.val) == 500
    assert B.label_spreading(x, y, splits) == pytest.approx(ls, abs=IMAGES)
    assert B.logistic_regression(x, y, splits) == pytest.approx(lr, abs=IMAGES)
    nn = B.nearest_neighbour(x, y, splits)
    assert 0.5 < nn < ls                                      # issue 10: 1-NN ~0.63


def test_baselines_never_read_held_out_labels(small):
    """Scrambling every label outside the labeled training images changes no baseline."""
    _, _, x, y, splits, _ = small
    rng = np.random.default_rng(5)
    scrambled = rng.integers(0, 10, len(y))
    keep = B.training_labels(y, splits) >= 0
    scrambled[keep] = y[keep]
    scrambled[splits.val] = y[splits.val]                     # the score itself needs them
    for name, fn in B.BASELINES.items():
        assert fn(x, scrambled, splits) == fn(x, y, splits), name


def test_baselines_without_labels_or_with_one_class(small):
    _, _, x, y, splits, _ = small
    none = make_splits(len(y), 0, seed=0)
    for name, fn in B.BASELINES.items():
        assert np.isnan(fn(x, y, none)), name
    one = B.training_labels(y, splits) >= 0
    y1 = np.where(one, 3, y)                                  # every training label is a 3
    assert B.logistic_regression(x, y1, splits) == pytest.approx(np.mean(y[splits.val] == 3))


def test_predictors_give_class_probabilities(small):
    cfg, p, x, y, splits, out = small
    preds = predictors(p, cfg, out, B.training_labels(y, splits))
    assert "classifier head" in preds
    for name, probs in preds.items():
        assert probs.shape == (len(y), cfg.num_classes), name
        assert np.allclose(probs.sum(axis=1), 1.0) and (probs >= 0).all(), name
    head = preds["classifier head"]
    assert (head.argmax(1) == out["cls_logits"].argmax(1)).all()


def test_label_rows(small):
    cfg, p, x, y, splits, out = small
    rows = label_rows(p, cfg, x, y, splits, out)
    val = splits.val
    head = out["cls_logits"][val].argmax(1)
    assert rows["heldout_accuracy"]["classifier head"] == pytest.approx(np.mean(head == y[val]))
    assert rows["baseline_logistic_regression"] == B.logistic_regression(x, y, splits)
    lab_train = np.intersect1d(splits.labeled, splits.train)
    assert rows["labeled_train_count"] == lab_train.size == sum(rows["labeled_train_per_class"])
    assert rows["labeled_train_classes"] == sorted(set(y[lab_train].tolist()))
    assert [c for c, n in enumerate(rows["labeled_train_per_class"]) if n] == \
        rows["labeled_train_classes"]


def test_the_table_shows_them_after_the_seed_rows_one_row_per_predictor():
    from npvae.reporting.report import SEED_ROWS
    summary = {key: 0.5 for _, _, key in SEED_ROWS}
    summary.update(heldout_accuracy={"classifier head": 0.25, "components (tau map)": 0.75},
                   baseline_logistic_regression=0.625, labeled_train_count=3,
                   labeled_train_classes=[1, 7], labeled_train_per_class=[0, 2] + [0] * 5 + [1])
    lines = table_lines(summary)
    extra = lines[2 + len(SEED_ROWS):]
    assert extra == [
        "| Held-out (extra) | Held-out Accuracy: classifier head | 0.2500 |",
        "| Held-out (extra) | Held-out Accuracy: components (tau map) | 0.7500 |",
        "| Held-out (extra) | Labeled-only Logistic Regression (pixels) | 0.6250 |",
        "| Labels (extra) | Labeled Training Images | 3 |",
        "| Labels (extra) | Classes With Training Labels | [1, 7] |",
        "| Labels (extra) | Labeled Training Images Per Class | [0, 2, 0, 0, 0, 0, 0, 1] |",
    ]
