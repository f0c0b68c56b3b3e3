"""A folder of image files (.png, .jpg, .jpeg, .bmp, .gif, .webp) as a Dataset.

Two layouts, read in sorted name order (so the same folder always gives the same rows):

    root/<class name>/*.png     the ImageFolder layout: the class names in sorted order are
    root/unlabeled/*.png        the labels 0..C-1; images in unlabeled/ have label -1
    root/*.png                  a flat folder: no image has a label (y None)

Files with other suffixes and hidden files are skipped; a folder with both image files and
subfolders, or a class folder without images, is refused.

Grey or colour: the images of modes "1", "L", "LA", "I" and "I;16" (16-bit grey, divided by
65535) are grey, and so are palette images whose colours are all grey; every other mode
that Pillow converts to RGB (RGB, RGBA, P, CMYK, YCbCr, ...) is colour. When every image is
grey the data is grey (C = 1), else every image is read as RGB (C = 3; a grey image then
has three equal channels). Other modes (32-bit float "F", ...) are refused. Transparency is
composited onto black (each value times its alpha).

Sizes: every image must have the same size, unless --resize S is given: then each image is
resized to S x S with Pillow's bilinear filter (the aspect ratio is not kept).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .idx import DataError
from .images import MAX_FILE_SIDE, Dataset, check_size, resize_rows

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
UNLABELED = "unlabeled"
GREY_MODES = ("1", "L", "LA", "I", "I;16")
COLOUR_MODES = ("P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV")


def image_files(folder: Path) -> list[Path]:
    """The image files directly in `folder`, by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES
                  and not p.name.startswith(".") and p.is_file())


def subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def is_image_folder(folder: Path) -> bool:
    """Does `folder` hold image files or subfolders (of classes)?"""
    return bool(image_files(folder) or subfolders(folder))


def read_folder(folder, resize: int | None = None) -> Dataset:
    """The Dataset of an image folder in either layout (module docstring)."""
    folder = Path(folder)
    loose, groups = image_files(folder), subfolders(folder)
    if loose and groups:
        raise DataError(f"{folder} holds both image files ({loose[0].name}) and folders "
                        f"({groups[0].name}/); put every image in a class folder (or "
                        f"{UNLABELED}/), or give a flat folder of images only.")
    classes = [g for g in groups if g.name != UNLABELED]
    files, labels = list(loose), [-1] * len(loose)
    for label, group in enumerate(classes):
        found = image_files(group)
        if not found:
            raise DataError(f"Class folder {group} holds no images ({', '.join(SUFFIXES)}); "
                            f"add its images or remove the folder.")
        files += found
        labels += [label] * len(found)
    if (folder / UNLABELED).is_dir():
        found = image_files(folder / UNLABELED)
        files += found
        labels += [-1] * len(found)
    if not files:
        raise DataError(f"{folder} holds no images ({', '.join(SUFFIXES)}).")
    x, shape = _read_all(files, resize, str(folder))
    y = np.array(labels, np.int64) if classes else None
    return Dataset(x, y, shape, tuple(g.name for g in classes), str(folder))


def _read_all(files: list[Path], resize: int | None, source: str):
    """x (N, C*H*W) float32 and (H, W, C) of the files, in their order."""
    images, first = [], None
    for path in files:
        image = read_image(path)                                  # (H, W, c)
        H, W, c = image.shape
        if resize is None:
            if first is None:
                first = (path, (H, W))
            elif (H, W) != first[1]:
                (h, w) = first[1]
                raise DataError(f"Images in {source} differ in size: {first[0].name} is "
                                f"{w}x{h} pixels and {path.name} is {W}x{H} (width x height); "
                                f"give --resize S to resize every image to S x S.")
            check_size((H, W, c), source)
        rows, shape = resize_rows(image.transpose(2, 0, 1).reshape(1, -1), (H, W, c), resize)
        images.append((rows[0], shape))
    C = max(shape[2] for _, shape in images)
    x = np.stack([row if shape[2] == C else np.tile(row, C)    # grey -> 3 equal channels
                  for row, shape in images])
    shape = (*images[0][1][:2], C)
    check_size(shape, source)
    return x, shape


def read_image(path: Path) -> np.ndarray:
    """One image file as (H, W, c) float32 in [0, 1], c 1 (grey) or 3 (RGB)."""
    from PIL import Image                       # matplotlib's own dependency

    try:
        with Image.open(path) as im:
            if max(im.size) > MAX_FILE_SIDE:
                raise DataError(f"{path} is {im.size[0]}x{im.size[1]} pixels; image files may "
                                f"be at most {MAX_FILE_SIDE} pixels wide and high.")
            im.load()                           # decodes it all: a truncated file fails here
            return to_array(im, path)
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"{path} is not a readable image ({err}).") from None


def to_array(im, path) -> np.ndarray:
    """A loaded Pillow image -> (H, W, c) float32 in [0, 1] (grey / colour rules above)."""
    mode = im.mode
    if mode in ("I", "I;16"):
        return np.clip(np.asarray(im, np.float32) / 65535.0, 0.0, 1.0)[..., None]
    if mode in ("1", "L"):
        return (np.asarray(im.convert("L"), np.float32) / 255.0)[..., None]
    if mode == "LA":
        la = np.asarray(im, np.float32) / 255.0
        return la[..., :1] * la[..., 1:]
    if mode not in COLOUR_MODES:
        raise DataError(f"{path} has Pillow mode {mode}, which is neither grey nor colour; "
                        f"save it as 8-bit grey or RGB (PNG or JPEG).")
    rgba = np.asarray(im.convert("RGBA"), np.float32) / 255.0
    rgb = rgba[..., :3] * rgba[..., 3:]
    if mode in ("P", "PA") and np.array_equal(rgb[..., :1], rgb[..., 1:2]) \
            and np.array_equal(rgb[..., :1], rgb[..., 2:]):
        return rgb[..., :1]                     # a palette of greys
    return rgb
