"""Images of any size and channel count: the Dataset record and the rules that turn arrays
and labels into it (the loaders are in data.py, idx.py and imagefolder.py).

Layout: x is (N, D) float32 in [0, 1] with D = H * W * C, each row one image's values
channel first (C x H x W flattened, `img_chw.reshape(-1)`; C 1: grey, 3: red, green, blue).
For grey images this is the plain row-major H x W image.

Shapes of an array `x` (a .npz's x or x_test, an IDX file's images):

    (N, H, W)        grey
    (N, H, W, C)     C 1 or 3, channel last (this wins when both axes could be channels)
    (N, C, H, W)     C 1 or 3, channel first
    (N, D)           square grey when D is a square, else image_shape (--image-shape H,W[,C])
                     says H, W, C: each row is then read as row-major H x W x C
                     (`x.reshape(N, -1)` of an (N, H, W, C) array) and turned channel first

Labels: whole numbers or strings. Integer labels whose distinct values are exactly 0..C-1
are kept as they are (C classes named "0".."C-1"); so are integer labels that all lie below
a num_classes the user gave. Any other labels ({3, 7, 9}, strings, ...) are mapped to
0..C-1 in sorted order, the classes are named by the original values, and the mapping is
recorded (Dataset.label_map, in run.json). A .npz's `classes` array names the classes
itself: its labels must then lie in 0..len(classes)-1 (or be strings among the names).

Limits: an image file's side may be at most MAX_FILE_SIDE pixels, and an image at most
MAX_VALUES values (H * W * C, after --resize); both are refused with one sentence.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .idx import DataError

MAX_FILE_SIDE = 8192              # an image file wider or taller than this is refused
MAX_VALUES = 256 * 256 * 3        # the model's input: at most 196608 values per image


@dataclass
class Dataset:
    """Images and their labels as every entry point uses them.

    x:         (N, D) float32 in [0, 1], rows channel first (C x H x W), D = H * W * C.
    y:         (N,) int64 in 0..C-1, -1 for an image without a label; None when no image
               has one.
    shape:     (H, W, C) of every image, C 1 (grey) or 3 (RGB).
    classes:   the class names, index = label; () when the data names no class (no labels).
    source:    where the images came from, for messages and the fingerprint.
    label_map: {original label as text: label} when the labels were mapped, else None.
    """
    x: np.ndarray
    y: np.ndarray | None
    shape: tuple[int, int, int]
    classes: tuple[str, ...]
    source: str
    label_map: dict | None = None

    @property
    def truth(self) -> np.ndarray | None:
        """y when every image has a label, else None (the app and --annotate then measure
        no held-out accuracy)."""
        return self.y if self.y is not None and (self.y >= 0).all() else None


def numbers(count: int) -> tuple[str, ...]:
    """The names of classes that have none of their own: "0", "1", .., str(count - 1)."""
    return tuple(str(i) for i in range(count))


def describe(shape) -> str:
    """(28, 28, 1) -> '28 x 28 grey', (32, 32, 3) -> '32 x 32 RGB'."""
    H, W, C = shape
    return f"{H} x {W} {'grey' if C == 1 else 'RGB'}"


# ------------------------------------------------------------------ shape rules

def image_rows(x: np.ndarray, source: str,
               image_shape: tuple = ()) -> tuple[np.ndarray, tuple[int, int, int]]:
    """x of any accepted shape (module docstring) -> (x (N, D) channel first, (H, W, C)).
    The values are not converted yet (check_pixels does that)."""
    x = np.asarray(x)
    n = len(x) if x.ndim else 0
    if x.ndim == 3:
        return x.reshape(n, -1), (x.shape[1], x.shape[2], 1)
    if x.ndim == 4 and x.shape[3] in (1, 3):             # channel last
        return x.transpose(0, 3, 1, 2).reshape(n, -1), (x.shape[1], x.shape[2], x.shape[3])
    if x.ndim == 4 and x.shape[1] in (1, 3):             # channel first
        return x.reshape(n, -1), (x.shape[2], x.shape[3], x.shape[1])
    if x.ndim == 2 and image_shape:
        H, W, C = (*image_shape, 1)[:3]
        if H * W * C != x.shape[1]:
            raise DataError(f"Images from {source} have shape {x.shape}, but image_shape "
                            f"(--image-shape) {H},{W},{C} needs {H * W * C} values per row.")
        chw = x.reshape(n, H, W, C).transpose(0, 3, 1, 2).reshape(n, -1)
        return chw, (H, W, C)
    if x.ndim == 2:
        side = int(round(x.shape[1] ** 0.5))
        if side * side == x.shape[1] and side > 0:
            return x, (side, side, 1)
        raise DataError(f"Images from {source} have shape {x.shape}: {x.shape[1]} values per "
                        f"row are not a square grey image; give their shape with "
                        f"--image-shape H,W or H,W,C.")
    raise DataError(f"Images from {source} have shape {x.shape}, which matches no accepted "
                    f"shape: (N, H, W), (N, H, W, C), (N, C, H, W) with C 1 or 3, or (N, D).")


def check_size(shape, source: str) -> None:
    """Refuse images of more than MAX_VALUES values (256 x 256 x 3)."""
    H, W, C = shape
    if H * W * C > MAX_VALUES:
        raise DataError(f"Images from {source} are {H} x {W} x {C} = {H * W * C} values, more "
                        f"than the limit of 256 x 256 x 3 = {MAX_VALUES}; use --resize S to "
                        f"make them S x S (e.g. --resize 64).")


def check_pixels(x: np.ndarray, source: str) -> np.ndarray:
    """Integer grey levels 0..255 (divided by 255) or floats in [0, 1] -> float32 [0, 1]."""
    if np.issubdtype(x.dtype, np.integer):
        if x.min() < 0 or x.max() > 255:
            raise DataError(f"Integer pixels from {source} span {x.min()}..{x.max()}; integer "
                            f"grey levels must lie in 0..255.")
        x = x.astype(np.float32)
        x /= 255.0      # in place: the same float32 division, without a second N x D copy
    elif np.issubdtype(x.dtype, np.floating):
        if not np.all(np.isfinite(x)):
            raise DataError(f"Pixels from {source} contain NaN or inf; all pixels must be finite.")
        x = x.astype(np.float32, copy=False)
    else:
        raise DataError(f"Pixels from {source} have dtype {x.dtype}; accepted are integer grey "
                        f"levels 0..255 or floats in [0, 1].")
    if x.min() < 0.0 or x.max() > 1.0:
        raise DataError(f"Float pixels from {source} span [{x.min():g}, {x.max():g}]; float "
                        f"pixels must already be scaled to [0, 1].")
    return np.ascontiguousarray(x)


def resize_rows(x: np.ndarray, shape, side: int | None) -> tuple[np.ndarray, tuple]:
    """x (N, C*H*W) float32 -> (N, C*side*side), every channel resized to side x side with
    Pillow's bilinear filter (the aspect ratio is not kept). Unchanged when side is None or
    the images are side x side already."""
    H, W, C = shape
    if side is None or (H, W) == (side, side):
        return x, shape
    from PIL import Image                       # matplotlib's own dependency

    out = np.empty((len(x), C, side, side), np.float32)
    for i, image in enumerate(x.reshape(len(x), C, H, W)):
        for c in range(C):
            plane = Image.fromarray(np.ascontiguousarray(image[c]), mode="F")
            out[i, c] = np.asarray(plane.resize((side, side), Image.BILINEAR))
    np.clip(out, 0.0, 1.0, out=out)
    return out.reshape(len(x), -1), (side, side, C)


def make_dataset(x, y, source: str, names=None, image_shape: tuple = (),
                 resize: int | None = None, num_classes: int | None = None) -> Dataset:
    """A Dataset from arrays: x in any accepted shape, y (N,) labels or None, names the
    class names (a .npz's `classes`) or None. num_classes: the number of classes the user
    gave, which keeps integer labels below it unmapped (None: not given)."""
    x, shape = image_rows(x, source, image_shape)
    if y is not None:
        check_label_count(y, len(x), source)
    if len(x) == 0:
        raise DataError(f"{source} holds no images; the dataset must not be empty.")
    x, shape = resize_rows(check_pixels(x, source), shape, resize)
    check_size(shape, source)
    y, classes, label_map = read_labels(y, source, names, num_classes)
    return Dataset(x, y, shape, classes, source, label_map)


# ------------------------------------------------------------------ labels

def check_label_count(y, n: int, source: str) -> None:
    """y must be a 1-D array of n labels."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"Labels from {source} have shape {y.shape}; labels must be a 1-D "
                        f"array (N,).")
    if n != len(y):
        raise DataError(f"{source} has {n} images but {len(y)} labels; the counts must match.")


def read_labels(y, source: str, names=None, num_classes: int | None = None):
    """(y int64 in 0..C-1 or None, class names, label map or None); the rules are in the
    module docstring."""
    if names is not None:                       # (bytes decode to their text)
        names = tuple(str(n) for n in np.asarray(names).astype(str).reshape(-1))
    if y is None:
        return None, names or (), None
    y = _whole(np.asarray(y), source)
    if names is not None:
        return _named(y, names, source), names, None
    if y.dtype.kind in "US":
        values = np.unique(y)
    else:
        if len(y) and y.min() < 0:
            raise DataError(f"Labels from {source} span {y.min()}..{y.max()}; integer labels "
                            f"must be 0 or more.")
        y = y.astype(np.int64)
        count = int(y.max()) + 1 if len(y) else 0
        if num_classes is not None and count <= num_classes:
            return y, numbers(num_classes), None
        values = np.unique(y)
        if len(values) == count:                        # exactly 0..C-1
            return y, numbers(count), None
    classes = tuple(str(v) for v in values)
    return (np.searchsorted(values, y).astype(np.int64), classes,
            {name: i for i, name in enumerate(classes)})


def _whole(y: np.ndarray, source: str) -> np.ndarray:
    """Labels as integers or strings; whole-number floats become integers."""
    if y.dtype.kind == "S":                     # bytes: named by their text
        return y.astype(str)
    if y.dtype.kind in "iuU":
        return y
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.rint(y)):
        return np.rint(y).astype(np.int64)
    raise DataError(f"Labels from {source} have dtype {y.dtype} with non-integer values; "
                    f"labels must be integers or strings.")


def _named(y: np.ndarray, names: tuple, source: str) -> np.ndarray:
    """Labels of data that names its classes: indices into names, or names themselves."""
    if y.dtype.kind in "US":
        index = {name: i for i, name in enumerate(names)}
        unknown = [v.item() for v in np.unique(y) if str(v) not in index]
        if unknown:
            raise DataError(f"Label {unknown[0]!r} from {source} is not one of its classes "
                            f"({', '.join(names)}).")
        return np.array([index[str(v)] for v in y], np.int64)
    if len(y) and (y.min() < 0 or y.max() >= len(names)):
        raise DataError(f"Labels from {source} span {y.min()}..{y.max()}, but its classes "
                        f"array names {len(names)} classes; labels must lie in "
                        f"0..{len(names) - 1}.")
    return y.astype(np.int64)


def labels_like(y, train: Dataset, source: str) -> np.ndarray:
    """A test set's labels in the training data's classes (its label map when it has one)."""
    y = _whole(np.asarray(y), source)
    if train.label_map is not None:
        index = train.label_map
        unknown = [v.item() for v in np.unique(y) if str(v) not in index]
        if unknown:
            raise DataError(f"Label {unknown[0]!r} from {source} is not one of the training "
                            f"data's classes ({', '.join(train.classes)}).")
        return np.array([index[str(v)] for v in y], np.int64)
    if y.dtype.kind in "US":
        return _named(y, train.classes, source)
    C = len(train.classes)
    if len(y) and (y.min() < 0 or y.max() >= C):
        raise DataError(f"Labels from {source} span {y.min()}..{y.max()}; they must lie in "
                        f"0..{C - 1}, the training data's {C} classes.")
    return y.astype(np.int64)
