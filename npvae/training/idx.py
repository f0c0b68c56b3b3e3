"""MNIST-format IDX files: reading (with one-sentence errors naming the file) and writing.

An IDX data directory holds the training files `train-images-idx3-ubyte` and
`train-labels-idx1-ubyte`, and optionally the test files `t10k-images-idx3-ubyte` and
`t10k-labels-idx1-ubyte`, each plain or gzipped (`.gz`), as distributed for MNIST and its
drop-in replacements such as Fashion-MNIST; their images may have any height and width.

File layout: a big-endian int32 magic number (0x0803 images / 0x0801 labels: unsigned bytes,
the low byte is the number of dimensions), then one big-endian int32 per dimension, then
prod(dims) unsigned bytes.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

IMAGE_SIDE = 28  # the side of MNIST's (and the embedded digits') images
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (count, rows, cols)
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (count)
IDX_IMAGES_NAME = "train-images-idx3-ubyte"
IDX_LABELS_NAME = "train-labels-idx1-ubyte"
IDX_TEST_IMAGES_NAME = "t10k-images-idx3-ubyte"
IDX_TEST_LABELS_NAME = "t10k-labels-idx1-ubyte"


class DataError(ValueError):
    """A data file or data argument is unusable; the message says which and why."""


def find_idx(folder: Path, name: str, required: bool = True) -> Path | None:
    """The plain file if present, else its .gz; None if neither exists and not `required`,
    else DataError listing both names."""
    candidates = [folder / name, folder / (name + ".gz")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if not required:
        return None
    raise DataError(f"Directory {folder} has neither {candidates[0].name} nor "
                    f"{candidates[1].name}; an IDX data directory needs {IDX_IMAGES_NAME} and "
                    f"{IDX_LABELS_NAME} (each optionally .gz).")


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read an unsigned-byte IDX file (layout in the module docstring) as a uint8 array of
    its dims. The file must hold exactly prod(dims) bytes after the header."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise DataError(f"{path} is not a valid gzip file ({err}); give an intact .gz or the "
                        f"uncompressed IDX file.") from err
    ndim = magic & 0xFF
    header_size = 4 * (1 + ndim)
    if len(raw) < header_size:
        raise DataError(f"{path} is truncated: {len(raw)} bytes, shorter than its "
                        f"{header_size}-byte IDX header.")
    (found,) = struct.unpack(">i", raw[:4])
    if found != magic:
        raise DataError(f"{path} has magic number 0x{found:08X}; an IDX "
                        f"{'image' if ndim == 3 else 'label'} file must start with 0x{magic:08X}.")
    dims = struct.unpack(f">{ndim}i", raw[4:header_size])
    expected = int(np.prod(dims, dtype=np.int64))
    body = len(raw) - header_size
    if body != expected:
        what = "truncated" if body < expected else "longer than its header says"
        raise DataError(f"{path} is {what}: its header promises {expected} bytes of data "
                        f"(dims {dims}) but it holds {body}.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims)


def read_idx_pair(images_file: Path, labels_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, H, W) and labels (n,) as uint8 from two IDX files whose counts must match
    (the images may have any size; npvae/training/images.py checks it)."""
    images = read_idx(images_file, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_file, IDX_LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{images_file} holds {images.shape[0]} images but {labels_file} holds "
                        f"{labels.shape[0]} labels; the two files must have the same count.")
    return images, labels


def t10k_files(folder: Path) -> tuple[Path, Path] | None:
    """The t10k image and label files of an IDX directory, None if it has neither; one
    without the other is a DataError naming the missing one."""
    images = find_idx(folder, IDX_TEST_IMAGES_NAME, required=False)
    labels = find_idx(folder, IDX_TEST_LABELS_NAME, required=False)
    if images is None and labels is None:
        return None
    if images is None or labels is None:
        have, missing = ((labels, IDX_TEST_IMAGES_NAME) if images is None
                         else (images, IDX_TEST_LABELS_NAME))
        raise DataError(f"{have} has no partner: directory {folder} has neither {missing} nor "
                        f"{missing}.gz; a test set needs both t10k files (or neither).")
    return images, labels


def write_idx(path, array: np.ndarray, magic: int | None = None, gz: bool = False) -> Path:
    """Write a uint8 array as an IDX file at `path` (+ ".gz" and gzipped when gz). magic None:
    0x0800 + array.ndim (0x0803 for images (n, H, W), 0x0801 for labels (n,)); any other
    magic is written as given (the tests write bad files this way). Returns the path written."""
    array = np.asarray(array)
    magic = 0x800 + array.ndim if magic is None else magic
    raw = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    raw += np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path = Path(path)
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path
