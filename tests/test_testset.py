"""The data's test set (issue 12): t10k IDX files or x_test/y_test in a .npz are loaded beside
the training files, never trained on, and scored once in the report's Test rows."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from npvae.reporting import metrics as M
from npvae.reporting.baselines import training_labels
from npvae.training.checkpoint import load_checkpoint
from npvae.training.data import (DataError, data_changes, fingerprint, load_data, load_digits,
                        load_test_digits, subsample)
from npvae.training.idx import write_idx
from npvae.reporting.report import TEST_NOTE, table_lines
from npvae.runs.rundir import read_history
from npvae.reporting.summary import model_outputs
from npvae.training.loop import evaluate_split
from test_run import run_cli

N_TRAIN, N_TEST = 200, 60
TINY = ["--epochs", "2", "--batch-size", "50", "--num-labeled", "40", "--hidden-dims", "64",
        "32", "--decoder-dims", "32", "64", "--classifier-dims", "16", "--K", "4",
        "--no-progress"]


def write_idx_set(folder, with_test=True):
    """N_TRAIN embedded digits as training IDX files and N_TEST others as t10k files (gz)."""
    x, y = subsample(*load_digits(), N_TRAIN + N_TEST, seed=3)
    grey = np.rint(x * 255).astype(np.uint8).reshape(-1, 28, 28)
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / "train-images-idx3-ubyte", grey[:N_TRAIN])
    write_idx(folder / "train-labels-idx1-ubyte", y[:N_TRAIN].astype(np.uint8))
    if with_test:
        write_idx(folder / "t10k-images-idx3-ubyte", grey[N_TRAIN:], gz=True)
        write_idx(folder / "t10k-labels-idx1-ubyte", y[N_TRAIN:].astype(np.uint8), gz=True)
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tiny run on the same training files, with and without the t10k files."""
    root = tmp_path_factory.mktemp("testset")
    out = {}
    for name, with_test in (("with", True), ("without", False)):
        data = write_idx_set(root / f"data_{name}", with_test)
        proc = run_cli("--data", data, *TINY, "--out", root / name)
        assert proc.returncode == 0, proc.stderr
        out[name] = (root / name, data)
    return out


def test_the_test_set_changes_nothing_in_training(runs):
    """Training never sees the test set: the weights and every history value are the same
    bits with and without the t10k files."""
    (with_test, _), (without, _) = runs["with"], runs["without"]
    for ckpt in ("checkpoints/final.npz", "checkpoints/best.npz"):
        a, _ = load_checkpoint(with_test / ckpt)
        b, _ = load_checkpoint(without / ckpt)
        assert np.array_equal(a.flat, b.flat), ckpt
    assert read_history(with_test) == read_history(without)


def test_report_has_test_rows_only_with_a_test_set(runs):
    report = (runs["with"][0] / "REPORT.md").read_text()
    for row in ("| Test | Test Images | 60 |", "| Test | Test Accuracy: classifier head |",
                "| Test | Test Accuracy: components (tau map) |", "| Test | Test NMI |",
                "| Test | Test ARI |", "| Test | Test Cluster Accuracy (Hungarian) |",
                "| Test | Test Recon Loss |", "| Test | Test Kl Z |", "| Test | Test Kl C |"):
        assert row in report, row
    assert TEST_NOTE in report and "Test set: 60 images, fingerprint" in report
    plain = (runs["without"][0] / "REPORT.md").read_text()
    assert "| Test |" not in plain and TEST_NOTE not in plain and "Test set:" not in plain


def test_test_rows_are_recomputed_from_the_saved_weights(runs):
    """Each Test value, recomputed here from checkpoints/final.npz with independent code:
    argmax accuracies, sklearn's NMI/ARI, a tau map fitted on the training labels only, and
    the reference engine's eval-mode terms."""
    out, data = runs["with"]
    summary = json.loads((out / "summary.json").read_text())
    p, cfg = load_checkpoint(out / "checkpoints/final.npz")
    x, y, splits = load_data(cfg)
    x_test, y_test = load_test_digits(data)
    assert summary["test_images"] == len(y_test) == N_TEST
    o = model_outputs(p, x_test, cfg)
    acc = summary["test_accuracy"]
    assert acc["classifier head"] == np.mean(o["cls_logits"].argmax(1) == y_test)
    seen = training_labels(y, splits)                    # training-split labels only
    tau = M.tau_map(model_outputs(p, x, cfg)["q"], seen, cfg.num_classes)
    assert acc["components (tau map)"] == np.mean((o["q"] @ tau).argmax(1) == y_test)
    clusters = o["q"].argmax(1)
    assert summary["test_nmi"] == pytest.approx(normalized_mutual_info_score(y_test, clusters))
    assert summary["test_ari"] == pytest.approx(adjusted_rand_score(y_test, clusters))
    counts = np.array([[np.sum((clusters == k) & (y_test == c)) for c in range(10)]
                       for k in range(cfg.K)])
    best = max(sum(counts[k, c] for k, c in enumerate(match))       # every one-to-one match
               for match in itertools.permutations(range(10), cfg.K))
    assert summary["test_cluster_accuracy"] == best / N_TEST
    terms, _ = evaluate_split(p, x_test, np.full(N_TEST, -1), cfg)
    for key, term in (("test_recon_loss", "recon"), ("test_kl_z", "kl_z"),
                      ("test_kl_c", "kl_c"), ("test_loss", "loss")):
        assert summary[key] == pytest.approx(terms[term], rel=1e-4, abs=1e-6), key


def test_npz_test_arrays_and_their_absence(tmp_path):
    x, y = subsample(*load_digits(), 30, seed=0)
    np.savez(tmp_path / "with.npz", x=x[:20], y=y[:20], x_test=(x[20:] * 255).round()
             .astype(np.uint8).reshape(-1, 28, 28), y_test=y[20:])
    np.savez(tmp_path / "without.npz", x=x, y=y)
    x_test, y_test = load_test_digits(tmp_path / "with.npz")
    assert x_test.shape == (10, 784) and x_test.dtype == np.float32
    np.testing.assert_allclose(x_test, x[20:], atol=1e-6)
    assert np.array_equal(y_test, y[20:])
    assert load_test_digits(tmp_path / "without.npz") is None
    assert load_test_digits(None) is None                # the embedded digits have none
    assert load_test_digits(write_idx_set(tmp_path / "idx", with_test=False)) is None


def test_one_t10k_file_alone_is_refused(tmp_path):
    folder = write_idx_set(tmp_path / "idx")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz has no partner"):
        load_test_digits(folder)


def test_fingerprint_covers_the_test_set():
    rng = np.random.default_rng(0)
    x, y = rng.random((20, 784), dtype=np.float32), rng.integers(0, 10, 20)
    xt, yt = rng.random((5, 784), dtype=np.float32), rng.integers(0, 10, 5)
    plain = fingerprint(x, y, "d")
    assert "test" not in plain                           # as before test sets existed
    a = fingerprint(x, y, "d", (xt, yt))
    assert a["sha256"] == plain["sha256"]                # the training part is unchanged
    assert data_changes(a, fingerprint(x, y, "d", (xt.copy(), yt.copy()))) == []
    yt2 = yt.copy()
    yt2[0] = (yt2[0] + 1) % 10
    changed = data_changes(a, fingerprint(x, y, "d", (xt, yt2)))
    assert len(changed) == 1 and "labels from the test files of d differ" in changed[0]
    fewer = data_changes(a, fingerprint(x, y, "d", (xt[:4], yt[:4])))
    assert fewer == ["the test files of d now gives 4 images, not 5"]
    assert data_changes(a, plain) == ["d has no test set now, but had 5 test images"]
    # a resume point written before test sets were fingerprinted still fits
    assert data_changes(plain, a) == []


def test_table_shows_test_rows_after_the_others():
    from test_report import _summary

    lines = table_lines({**_summary(np.random.default_rng(0)), "test_images": 7, "test_accuracy": {"head": 0.5},
                         "test_nmi": 0.25})
    assert lines[-3:] == ["| Test | Test Images | 7 |", "| Test | Test Accuracy: head | 0.5000 |",
                          "| Test | Test NMI | 0.2500 |"]


def test_the_scale_benchmark_data_are_shifted_digits():
    """benchmarks/bench_scale.py's 60k + 10k set: each copy is the digits moved by its offset
    (zero-filled, no wrap-around), twelve distinct training offsets and two others for test."""
    from benchmarks.bench_scale import TEST_SHIFTS, TRAIN_SHIFTS, shifted

    assert len(set(TRAIN_SHIFTS)) == 12 and len(set(TEST_SHIFTS)) == 2
    assert not set(TRAIN_SHIFTS) & set(TEST_SHIFTS)
    images = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 251 + 1       # no zero pixel
    for dy, dx in TRAIN_SHIFTS + TEST_SHIFTS:
        moved = shifted(images, dy, dx)
        rows, cols = slice(max(dy, 0), 28 + min(dy, 0)), slice(max(dx, 0), 28 + min(dx, 0))
        assert np.array_equal(moved[:, rows, cols],
                              np.roll(images, (dy, dx), axis=(1, 2))[:, rows, cols])
        assert np.count_nonzero(moved == 0) == 2 * (28 * 28 - (28 - abs(dy)) * (28 - abs(dx)))
