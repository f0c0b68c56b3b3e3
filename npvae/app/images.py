"""Images in and out of the app, and the 2-D view of the latent space.

    load_app_data(cfg)   x (N, 784), y (N,) or None when the data has no labels, the splits:
                         the run's --data as npvae.run reads it, a .npz with only `x`, or a
                         folder of PNG images (28x28, grey or colour, read in name order)
    png_bytes(image, shape)   one image (D,) in [0, 1] as a PNG file, grey or RGB, at its
                         shape (H, W, C) (Pillow)
    project_2d(mu)       mu (N, d) -> (N, 2): itself for d <= 2, else its first two
                         principal components (signs fixed, so a refresh does not flip it)
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from npvae.experiments.active.annotate import load_images
from npvae.reporting.images import image_of
from npvae.training.data import DataError, local_path, make_splits, subsample
from npvae.training.idx import IMAGE_SIDE


def png_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())


def load_png_folder(folder: Path) -> np.ndarray:
    """x (N, 784) float32 in [0, 1] from every .png in `folder` (name order), as grey levels."""
    from PIL import Image                       # matplotlib's own dependency

    files = png_files(folder)
    if not files:
        raise DataError(f"{folder} holds no .png images.")
    x = np.empty((len(files), IMAGE_SIDE * IMAGE_SIDE), np.float32)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                if im.size != (IMAGE_SIDE, IMAGE_SIDE):
                    raise DataError(f"{f} is {im.size[0]}x{im.size[1]} pixels; the model needs "
                                    f"{IMAGE_SIDE}x{IMAGE_SIDE} images.")
                x[i] = np.asarray(im.convert("L"), np.float32).reshape(-1) / 255.0
        except OSError as err:
            raise DataError(f"{f} is not a readable PNG image ({err}).") from None
    return x


def load_app_data(cfg):
    """(x, y or None, splits) for the app; DataError (one sentence) for bad data."""
    path = local_path(cfg.data)
    if path is not None and Path(path).is_dir() and png_files(Path(path)):
        x = load_png_folder(Path(path))
        x, _ = subsample(x, np.zeros(len(x)), cfg.num_samples, cfg.seed)
        splits = make_splits(len(x), 0, cfg.seed, cfg.val_fraction)
        y = None
    else:
        x, y, splits = load_images(cfg)
    if len(splits.val) == 0 or len(splits.train) == 0:
        raise DataError(f"{len(x)} images are too few to split into training and held-out "
                        f"images (val_fraction {cfg.val_fraction}).")
    return x, y, splits


def png_bytes(image, shape=None) -> bytes:
    """A PNG file of one image (D,) with values in [0, 1], channel after channel, at shape
    (H, W, C) (cfg.shape): 8-bit grey for C = 1, RGB for C = 3; shape None: square grey
    when D is a square, else a 1 x D strip (reporting/images.py:image_of)."""
    from PIL import Image                       # matplotlib's own dependency

    pix = np.clip(np.rint(image_of(np.asarray(image, np.float32), shape) * 255), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(pix.astype(np.uint8)).save(buf, format="PNG")   # (H, W): L, (H, W, 3): RGB
    return buf.getvalue()


def project_2d(mu) -> np.ndarray:
    """(N, 2) coordinates of the latent means: mu itself when d <= 2 (padded with zeros for
    d = 1), else the projection on its first two principal components."""
    mu = np.asarray(mu, np.float64)
    if mu.shape[1] <= 2:
        return np.pad(mu, ((0, 0), (0, 2 - mu.shape[1])))
    centred = mu - mu.mean(axis=0)
    _, vecs = np.linalg.eigh(centred.T @ centred)
    top = vecs[:, ::-1][:, :2]
    top *= np.sign(top[np.abs(top).argmax(axis=0), [0, 1]])     # largest entry positive
    return centred @ top
