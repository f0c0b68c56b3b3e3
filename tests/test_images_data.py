"""Your own images, loading: every shape rule of a .npz, IDX of any size, image folders (by
class, with unlabeled/, flat), the grey / RGB rule, --resize, label mapping and the class
names of a .npz, and each bad input refused with one sentence naming it. Tiny images, made
here with Pillow and NumPy (npvae/training/images.py, imagefolder.py)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from npvae.training.data import DataError, load_test_digits, read_dataset
from npvae.training.imagefolder import to_array
from npvae.training.images import MAX_FILE_SIDE
from test_data import idx_dir

RNG = np.random.default_rng(0)


def npz(tmp_path, name="d.npz", **arrays):
    np.savez(tmp_path / name, **arrays)
    return tmp_path / name


def save(path, array, mode=None):
    """An image file from a uint8 array (H, W) grey or (H, W, 3|4) colour."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8), mode).save(path)
    return path


# ------------------------------------------------------------------ .npz shape rules

def test_grey_arrays_any_side(tmp_path):
    x = RNG.integers(0, 256, (6, 5, 7), dtype=np.uint8)
    ds = read_dataset(npz(tmp_path, x=x, y=np.arange(6) % 2))
    assert ds.shape == (5, 7, 1) and ds.x.shape == (6, 35) and ds.x.dtype == np.float32
    np.testing.assert_array_equal(ds.x, x.reshape(6, -1) / np.float32(255))


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_colour_arrays_become_channel_first_rows(tmp_path, layout):
    hwc = RNG.random((4, 5, 6, 3), dtype=np.float32)
    x = hwc if layout == "NHWC" else hwc.transpose(0, 3, 1, 2)
    ds = read_dataset(npz(tmp_path, x=x, y=[0, 1, 0, 1]))
    assert ds.shape == (5, 6, 3)
    # each row is C x H x W: the red plane, then green, then blue
    np.testing.assert_array_equal(ds.x, hwc.transpose(0, 3, 1, 2).reshape(4, -1))


def test_channel_last_wins_when_ambiguous(tmp_path):
    x = RNG.random((2, 3, 4, 3), dtype=np.float32)         # (N, C=3, H=4, W=3) or (N, 3, 4, C=3)
    assert read_dataset(npz(tmp_path, x=x, y=[0, 1])).shape == (3, 4, 3)
    x1 = RNG.random((2, 1, 4, 5), dtype=np.float32)        # axis 1 is the only channel axis
    assert read_dataset(npz(tmp_path, x=x1, y=[0, 1])).shape == (4, 5, 1)


def test_flat_rows(tmp_path):
    square = RNG.random((3, 36), dtype=np.float32)
    assert read_dataset(npz(tmp_path, x=square, y=[0, 1, 1])).shape == (6, 6, 1)
    hwc = RNG.random((3, 2, 4, 3), dtype=np.float32)
    path = npz(tmp_path, x=hwc.reshape(3, -1), y=[0, 1, 1])     # rows are H x W x C
    with pytest.raises(DataError, match=r"\(3, 24\).*not a square.*--image-shape"):
        read_dataset(path)
    ds = read_dataset(path, image_shape=(2, 4, 3))
    assert ds.shape == (2, 4, 3)
    np.testing.assert_array_equal(ds.x, hwc.transpose(0, 3, 1, 2).reshape(3, -1))
    with pytest.raises(DataError, match=r"image_shape.*2,4,1 needs 8 values"):
        read_dataset(path, image_shape=(2, 4))


def test_no_rule_and_too_large(tmp_path):
    with pytest.raises(DataError, match=r"\(2, 4, 4, 2\), which matches no accepted shape"):
        read_dataset(npz(tmp_path, x=np.zeros((2, 4, 4, 2)), y=[0, 1]))
    big = npz(tmp_path, x=np.zeros((2, 3, 257, 256), np.uint8), y=[0, 1])
    with pytest.raises(DataError, match=r"257 x 256 x 3 = 197376 values.*256 x 256 x 3 = "
                                        r"196608; use --resize"):
        read_dataset(big)
    assert read_dataset(big, resize=16).shape == (16, 16, 3)


def test_idx_of_any_side(tmp_path):
    images = RNG.integers(0, 256, (5, 9, 11), dtype=np.uint8)
    ds = read_dataset(idx_dir(tmp_path, images, np.array([0, 1, 2, 1, 0], np.uint8)))
    assert ds.shape == (9, 11, 1) and ds.classes == ("0", "1", "2") and ds.label_map is None


# ------------------------------------------------------------------ labels and class names

def test_labels_not_0_to_c_minus_1_are_mapped(tmp_path):
    ds = read_dataset(npz(tmp_path, x=np.zeros((4, 4, 4)), y=[9, 3, 7, 3]))
    np.testing.assert_array_equal(ds.y, [2, 0, 1, 0])
    assert ds.classes == ("3", "7", "9") and ds.label_map == {"3": 0, "7": 1, "9": 2}
    ds = read_dataset(npz(tmp_path, x=np.zeros((3, 4, 4)), y=np.array(["dog", "cat", "dog"])))
    np.testing.assert_array_equal(ds.y, [1, 0, 1])
    assert ds.classes == ("cat", "dog") and ds.label_map == {"cat": 0, "dog": 1}
    # a num_classes the user gave keeps integer labels below it as they are
    ds = read_dataset(npz(tmp_path, x=np.zeros((4, 4, 4)), y=[9, 3, 7, 3]), num_classes=10)
    np.testing.assert_array_equal(ds.y, [9, 3, 7, 3])
    assert ds.classes == tuple("0123456789") and ds.label_map is None


def test_npz_classes_name_the_labels(tmp_path):
    path = npz(tmp_path, x=np.zeros((3, 4, 4)), y=[1, 0, 1], classes=np.array(["cat", "dog"]))
    ds = read_dataset(path)
    assert ds.classes == ("cat", "dog") and ds.label_map is None
    np.testing.assert_array_equal(ds.y, [1, 0, 1])
    bad = npz(tmp_path, x=np.zeros((3, 4, 4)), y=[2, 0, 1], classes=np.array(["cat", "dog"]))
    with pytest.raises(DataError, match=r"span 0..2, but its classes array names 2 classes; "
                                        r"labels must lie in 0..1"):
        read_dataset(bad)


def test_test_set_uses_the_training_classes(tmp_path):
    path = npz(tmp_path, x=np.zeros((4, 4, 4)), y=[9, 3, 7, 3], x_test=np.zeros((2, 16)),
               y_test=[7, 9])
    x_test, y_test = load_test_digits(path)
    assert x_test.shape == (2, 16)
    np.testing.assert_array_equal(y_test, [1, 2])
    path = npz(tmp_path, x=np.zeros((4, 4, 4)), y=[9, 3, 7, 3], x_test=np.zeros((2, 4, 4)),
               y_test=[5, 9])
    with pytest.raises(DataError, match=r"Label 5 from .*x_test, y_test.*not one of the "
                                        r"training data's classes \(3, 7, 9\)"):
        load_test_digits(path)
    path = npz(tmp_path, x=np.zeros((4, 4, 4)), y=[0, 1, 0, 1], x_test=np.zeros((2, 5, 5)),
               y_test=[0, 1])
    with pytest.raises(DataError, match=r"Test images .* are 5 x 5 grey, but the training "
                                        r"images are 4 x 4 grey"):
        load_test_digits(path)


# ------------------------------------------------------------------ image folders

def test_image_folder_by_class_with_unlabeled(tmp_path):
    root = tmp_path / "pets"
    save(root / "dog" / "b.png", np.full((4, 5), 200))
    save(root / "dog" / "a.png", np.full((4, 5), 100))
    save(root / "cat" / "z.jpg", np.full((4, 5), 50))
    save(root / "unlabeled" / "u.bmp", np.zeros((4, 5)))
    (root / "dog" / "notes.txt").write_text("not an image: skipped")
    ds = read_dataset(root)
    assert ds.classes == ("cat", "dog") and ds.shape == (4, 5, 1) and ds.source == str(root)
    np.testing.assert_array_equal(ds.y, [0, 1, 1, -1])     # class by class, names sorted
    np.testing.assert_allclose(ds.x[:, 0] * 255, [50, 100, 200, 0], atol=2)   # (jpeg)
    assert ds.truth is None                                 # unlabeled/ images lack a label


def test_flat_folder_has_no_labels(tmp_path):
    for i in range(3):
        save(tmp_path / f"{i}.png", np.full((6, 6), 10 * i))
    ds = read_dataset(tmp_path)
    assert ds.y is None and ds.classes == () and ds.shape == (6, 6, 1)
    np.testing.assert_array_equal(ds.x[:, 0], np.array([0, 10, 20], np.float32) / 255)


def test_grey_or_rgb(tmp_path):
    """One colour image makes the whole folder RGB; a grey image then has equal channels.
    Alpha is composited onto black; a palette of greys is grey."""
    rgb = RNG.integers(0, 256, (3, 4, 3))
    save(tmp_path / "rgb" / "a.png", rgb)
    save(tmp_path / "rgb" / "b.png", np.full((3, 4), 128))
    ds = read_dataset(tmp_path / "rgb")
    assert ds.shape == (3, 4, 3)
    np.testing.assert_array_equal(ds.x[0], (rgb.transpose(2, 0, 1) / 255).astype(np.float32)
                                  .reshape(-1))
    grey = ds.x[1].reshape(3, 3, 4)
    assert (grey == grey[0]).all() and grey[0, 0, 0] == np.float32(128) / 255
    rgba = np.dstack([np.full((2, 2, 3), 255), np.array([[255, 0], [51, 255]])])
    assert to_array(Image.fromarray(rgba.astype(np.uint8), "RGBA"), "p").shape == (2, 2, 3)
    np.testing.assert_allclose(to_array(Image.fromarray(rgba.astype(np.uint8), "RGBA"),
                                        "p")[..., 0], [[1, 0], [0.2, 1]])
    palette = Image.fromarray(np.full((2, 2), 90, np.uint8), "L").convert("P")
    assert to_array(palette, "p").shape == (2, 2, 1)


def test_resize_makes_every_image_s_by_s(tmp_path):
    save(tmp_path / "a" / "x.png", np.full((4, 6), 255))
    save(tmp_path / "b" / "y.png", np.zeros((10, 8, 3)))
    with pytest.raises(DataError, match=r"differ in size: x.png is 6x4 pixels and y.png is "
                                        r"8x10 \(width x height\); give --resize S"):
        read_dataset(tmp_path)
    ds = read_dataset(tmp_path, resize=5)
    assert ds.shape == (5, 5, 3) and ds.x.shape == (2, 75)
    np.testing.assert_allclose(ds.x[0], 1.0)              # white grey, as three channels
    np.testing.assert_allclose(ds.x[1], 0.0)


# ------------------------------------------------------------------ bad folders

def test_truncated_and_corrupt_images_are_named(tmp_path):
    path = save(tmp_path / "c" / "a.png", RNG.integers(0, 256, (40, 40)))
    save(tmp_path / "d" / "b.png", np.zeros((40, 40)))
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    with pytest.raises(DataError, match=r"a.png is not a readable image \(.*truncated"):
        read_dataset(tmp_path)
    path.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"a.png is not a readable image"):
        read_dataset(tmp_path)


def test_bad_folder_layouts(tmp_path):
    save(tmp_path / "cat" / "a.png", np.zeros((4, 4)))
    (tmp_path / "dog").mkdir()
    with pytest.raises(DataError, match=r"Class folder .*dog holds no images \(.png"):
        read_dataset(tmp_path)
    save(tmp_path / "dog" / "b.png", np.zeros((4, 4)))
    save(tmp_path / "loose.png", np.zeros((4, 4)))
    with pytest.raises(DataError, match=r"both image files \(loose.png\) and folders \(cat/\)"):
        read_dataset(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"neither train-images-idx3-ubyte .*nor image files"):
        read_dataset(empty)


def test_size_limits_and_modes(tmp_path):
    save(tmp_path / "wide" / "w.png", np.zeros((1, MAX_FILE_SIDE + 1)))
    with pytest.raises(DataError, match=r"w.png is 8193x1 pixels; image files may be at most "
                                        r"8192 pixels"):
        read_dataset(tmp_path / "wide")
    save(tmp_path / "big" / "b.png", np.zeros((300, 300, 3)))
    with pytest.raises(DataError, match=r"300 x 300 x 3 = 270000 values.*use --resize S"):
        read_dataset(tmp_path / "big")
    assert read_dataset(tmp_path / "big", resize=32).shape == (32, 32, 3)
    with pytest.raises(DataError, match=r"p has Pillow mode F, which is neither grey nor "
                                        r"colour"):
        to_array(Image.new("F", (2, 2)), "p")
