"""Images in and out of the app, and the 2-D view of the latent space.

    load_app_data(cfg)   x (N, D), y (N,) or None when the data has no labels, the splits:
                         the run's --data as npvae.run reads it (npvae/training/data.py:
                         an IDX or image folder, a .npz, the embedded digits), a .npz with
                         only `x`, or a flat folder of images (any size and colour)
    png_bytes(image, shape)   one image (D,) in [0, 1] as a PNG file, grey or RGB, at its
                         shape (H, W, C) (Pillow)
    project_2d(mu)       mu (N, d) -> (N, 2): itself for d <= 2, else its first two
                         principal components (signs fixed, so a refresh does not flip it)
"""
from __future__ import annotations

import io

import numpy as np

from npvae.experiments.active.annotate import load_images
from npvae.reporting.images import image_of
from npvae.training.data import DataError


def load_app_data(cfg, ds=None):
    """(x, y or None, splits) for the app, cfg fitted to its data (ds: its Dataset when
    already loaded); DataError (one sentence) for bad data. Data where some image has no
    label (an unlabeled/ folder) counts as unlabelled: y None."""
    x, y, splits = load_images(cfg, ds)
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
