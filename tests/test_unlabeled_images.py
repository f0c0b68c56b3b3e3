"""Images without a label (an ImageFolder's unlabeled/ folder, label -1) in npvae.run and
npvae.sweep: never drawn as labeled images, trained on as unlabeled ones, in train or val like
the rest, left out of every metric that compares with a label, and counted in the report;
npvae.active, whose annotator answers with the true labels, refuses them."""
from __future__ import annotations

import json

import numpy as np
import pytest

from npvae import Config, init_params
from npvae.reporting import baselines as B
from npvae.reporting import metrics as M
from npvae.reporting.summary import model_outputs, summarize
from npvae.runs import runner
from npvae.training.data import (DataError, fit_to_data, load_data, load_digits, make_splits,
                                 read_dataset, subsample)
from test_images_data import save
from test_run import run_cli

CLASSES = ("ant", "bee", "cat")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """3 classes x 12 grey 8 x 8 images (a bright band per class) and 10 noise images in
    unlabeled/."""
    root = tmp_path_factory.mktemp("imgs") / "pets"
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        for i in range(12):
            img = rng.integers(0, 40, (8, 8))
            img[:, 2 * c:2 * c + 3] += 200
            save(root / name / f"{i:02d}.png", img)
    for i in range(10):
        save(root / "unlabeled" / f"u{i}.png", rng.integers(0, 256, (8, 8)))
    return root


def fitted(folder, **settings):
    ds = read_dataset(folder)
    return fit_to_data(Config(data=str(folder), **settings), ds), ds


# ----------------------------------------------------------------------------- the splits

def test_make_splits_without_candidates_is_the_spec_recipe_and_equals_every_candidate():
    rng = np.random.RandomState(7)
    labeled, perm = rng.choice(50, 6, replace=False), rng.permutation(50)
    plain = make_splits(50, 6, 7, 0.2)
    every = make_splits(50, 6, 7, 0.2, candidates=np.arange(50))
    for s in (plain, every):
        np.testing.assert_array_equal(s.labeled, labeled)
        np.testing.assert_array_equal(s.val, perm[:10])
        np.testing.assert_array_equal(s.train, perm[10:])


def test_the_labeled_images_are_drawn_among_the_candidates_only():
    candidates = np.arange(0, 60, 3)                        # 20 of 60 images have a label
    splits = make_splits(60, 15, seed=1, val_fraction=0.2, candidates=candidates)
    rng = np.random.RandomState(1)
    np.testing.assert_array_equal(splits.labeled, candidates[rng.choice(20, 15, replace=False)])
    np.testing.assert_array_equal(splits.val, rng.permutation(60)[:12])
    assert set(splits.labeled) <= set(candidates) and len(set(splits.labeled)) == 15
    np.testing.assert_array_equal(np.sort(np.r_[splits.train, splits.val]), np.arange(60))
    with pytest.raises(DataError, match="num_labeled=21 is not possible: 20 of the 60 images"):
        make_splits(60, 21, 0, candidates=candidates)


def test_load_data_keeps_the_unlabeled_images_in_train_and_val(folder):
    cfg, ds = fitted(folder, num_labeled=30, val_fraction=0.3)
    x, y, splits = load_data(cfg, ds)
    assert len(y) == 46 and (y == -1).sum() == 10 and cfg.class_names == CLASSES
    assert (y[splits.labeled] >= 0).all() and len(splits.labeled) == 30
    np.testing.assert_array_equal(np.sort(np.r_[splits.train, splits.val]), np.arange(46))
    unlabeled = np.flatnonzero(y < 0)
    assert np.isin(unlabeled, splits.train).any()
    assert any(np.isin(unlabeled, load_data(cfg.replace(seed=s), ds)[2].val).any()
               for s in range(5))


def test_the_default_digits_draw_as_before():
    cfg = Config(num_samples=300, num_labeled=30, seed=3)
    x, y, splits = load_data(cfg)
    rng = np.random.RandomState(3)
    np.testing.assert_array_equal(y, subsample(*load_digits(), 300, 3)[1])
    np.testing.assert_array_equal(splits.labeled, rng.choice(300, 30, replace=False))
    np.testing.assert_array_equal(splits.val, rng.permutation(300)[:30])


# ----------------------------------------------------------------------------- the metrics

LABEL_KEYS = ("accuracy", "val_accuracy", "nmi", "ari", "cluster_accuracy",
              "component_majority_labels", "component_majority_confidence", "heldout_accuracy",
              "baseline_logistic_regression", "labeled_train_per_class")


def test_metrics_compare_only_the_images_with_a_label(folder):
    cfg, ds = fitted(folder, num_labeled=12, val_fraction=0.3, hidden_dims=(16,),
                     decoder_dims=(16,), classifier_dims=(8,))
    x, y, splits = load_data(cfg, ds)
    p = init_params(cfg, np.random.default_rng(0))
    history = {k: [] for k in ("epoch", "train_loss", "train_recon", "train_kl_z",
                               "train_kl_c", "train_cls", "train_dirichlet", "train_diversity",
                               "val_loss")}
    out = model_outputs(p, x, cfg)
    s = summarize(p, cfg, x, y, splits, history, 0.0, out)
    known = y >= 0
    assert s["unlabeled_images"] == 10
    assert s["accuracy"] == M.accuracy(out["cls_logits"][known], y[known])
    assert (s["nmi"], s["ari"]) == M.clustering_scores(out["q"][known], y[known])
    assert s["cluster_accuracy"] == M.cluster_accuracy(out["q"][known], y[known])
    val = splits.val[known[splits.val]]
    assert s["val_accuracy"] == M.accuracy(out["cls_logits"][val], y[val])
    # Whatever the model makes of the unlabeled images, and whatever their pixels, no row
    # that compares with a label moves.
    absurd = {k: v.copy() for k, v in out.items()}
    absurd["cls_logits"][~known] = 1e6 * np.eye(cfg.num_classes)[0]
    absurd["q"][~known] = np.eye(cfg.K)[-1]
    x2 = x.copy()
    x2[~known] = 1.0
    s2 = summarize(p, cfg, x2, y, splits, history, 0.0, absurd)
    assert {k: s2[k] for k in LABEL_KEYS} == {k: s[k] for k in LABEL_KEYS}
    assert np.isfinite(B.label_spreading(x, y, splits))   # the unlabeled images as such


# ----------------------------------------------------------------------------- the commands

def test_a_run_on_a_folder_with_unlabeled_images(folder, tmp_path):
    out = tmp_path / "run"
    proc = run_cli("--data", folder, "--epochs", 1, "--num-labeled", 6, "--no-progress",
                   "--out", out)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unlabeled_images"] == 10 and summary["labeled_train_count"] <= 6
    report = (out / "REPORT.md").read_text()
    assert "- Unlabeled images: 10 (trained on as unlabeled, scored nowhere)" in report
    assert "10 images have no label" in report


def test_more_labels_asked_than_images_with_one_is_refused(folder, tmp_path, capsys):
    out = tmp_path / "run"
    code = runner.main(["--data", str(folder), "--num-labeled", "40", "--out", str(out),
                        "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["error: num_labeled=40 is not possible: 36 of the 46 images "
                                 "have a label; it must be in 0..36."]
    assert not out.exists()


def test_a_sweep_point_scores_its_baselines_on_the_labeled_images(folder, tmp_path):
    from npvae.experiments.sweep import command as sweep
    from npvae.experiments.sweep.worker import run_one

    argv = ["--data", str(folder), "--epochs", "1", "--num-labeled", "12", "--hidden-dims",
            "16", "--decoder-dims", "16"]
    ns = sweep.build_parser().parse_args([*argv, "--seed", "1", "2"])
    assert len(sweep.check(sweep.grid(ns))) == 2                 # not refused
    row = run_one(argv, str(tmp_path / "point"), str(tmp_path / "point.log"), 1)
    assert row["status"] == "ok", row["error"]
    assert row["summary"]["unlabeled_images"] == 10
    assert all(np.isfinite(v) for v in row["baselines"].values()), row["baselines"]


def test_active_refuses_them(folder, tmp_path, capsys):
    from npvae.experiments.active import command as active

    code = active.main(["--data", str(folder), "--num-labeled", "6", "--out",
                        str(tmp_path / "active")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: 10 images from ") and "have no label (the unlabeled/ " \
        "folder); npvae.active answers its queries with the images' own labels" in err[0]


def test_a_folder_without_any_label_is_refused(folder, tmp_path, capsys):
    flat = tmp_path / "flat"
    for f in (folder / "unlabeled").iterdir():
        save(flat / f.name, np.zeros((8, 8)))
    assert runner.main(["--data", str(flat), "--num-labeled", "0", "--out",
                        str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: No image from {flat} has a label"), err
