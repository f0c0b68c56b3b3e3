"""Random affine augmentation of training batches (model gmm's preset; off by default).

Every training image is redrawn at every step with a small random rotation, scale and shift,
the draws coming from the step's Noise (noise.aug, uniform in [-1, 1)), so a run stays a pure
function of its seed. It gives the mixture many slightly different views of the few thousand
digits: a component must explain a digit wherever it sits, not one pixel pattern. The model
and its loss are unchanged; augmentation only changes which images a step sees (both the
encoder's input and the reconstruction target), so gradient checks need none of it.

For output pixel (u, v), centred coordinates, the source pixel is read at
    (su, sv) = R(-theta) (u, v) / s - (tu, tv)
i.e. the image is rotated by theta, scaled by s and shifted by (tu, tv) pixels; bilinear,
with 0 outside the image.

Images: x (B, D), each row one image of cfg.shape = (H, W, C), its C channels of H x W
pixels one after the other (D = C H W); every channel of an image gets the same warp and the
same cutout. Shifts and the cutout's side are pixels of the data's images,
cfg.pixels("aug_shift") etc.: the settings scaled by image_side / aug_side when aug_side is
set (the presets give them for 28 x 28 digits), the settings as they are otherwise.
"""
from __future__ import annotations

import math

import numpy as np

from npvae.core.config import Config

from .kernels import ACTIVE as kern
from .threads import Team, split


def affine_matrices(u: np.ndarray, cfg: Config, strong: bool = False) -> np.ndarray:
    """u (B, 4) in [-1, 1) -> (B, 2, 3) float64 maps from output to source pixel coordinates:
    theta = u0 aug_rotate degrees, s = 1 + u1 aug_scale, shift (u2, u3) cfg.pixels("aug_shift")
    pixels (strong: the strong view's strong_rotate, strong_scale, strong_shift)."""
    rotate, scale, shift = ((cfg.strong_rotate, cfg.strong_scale, cfg.pixels("strong_shift"))
                            if strong else
                            (cfg.aug_rotate, cfg.aug_scale, cfg.pixels("aug_shift")))
    theta = np.deg2rad(u[:, 0] * rotate)
    s = 1.0 + u[:, 1] * scale
    cos, sin = np.cos(theta) / s, np.sin(theta) / s
    A = np.empty((u.shape[0], 2, 3))
    A[:, 0, 0], A[:, 0, 1], A[:, 0, 2] = cos, sin, -u[:, 2] * shift
    A[:, 1, 0], A[:, 1, 1], A[:, 1, 2] = -sin, cos, -u[:, 3] * shift
    return A


def augment(x: np.ndarray, u: np.ndarray, cfg: Config, out: np.ndarray | None = None,
            team: Team | None = None, strong: bool = False):
    """The batch x (B, D) warped image by image with the draws u (B, 4), each channel alike; a
    new array unless `out` (B, D) is given (it must not be x). team: threads
    (npvae/engine/threads.py) that share the images; every image is warped alone, so the
    result does not depend on the split. strong: warp by the strong view's ranges (strong_*)
    instead of aug_*."""
    H, W, _ = image_shape(x, cfg)
    out = np.empty_like(x) if out is None else out
    x, A = np.ascontiguousarray(x), affine_matrices(u, cfg, strong)
    rows = split(x.shape[0], team.size if team is not None else 1)
    if len(rows) == 1:
        kern.warp(x, A, H, W, out)
    else:
        team.run(lambda t, r, _: kern.warp(x[r[0]:r[1]], A[r[0]:r[1]], H, W, out[r[0]:r[1]]),
                 rows)
    return out


def strong_view(x: np.ndarray, u: np.ndarray, cfg: Config, team: Team | None = None):
    """The consistency term's strong view of x (B, D): warped by the strong ranges with the
    draws u[:, :4], then a square of side cfg.cutout_pixels() set to 0 in every channel
    (cutout, DeVries & Taylor 2017), its centre at u[:, 4] over the rows and u[:, 5] over the
    columns, clipped at the border. u (B, 6) in [-1, 1). A person still reads the digit; a
    model that reads it the same way has learnt its shape, not its pixels."""
    out = augment(x, u[:, :4], cfg, team=team, strong=True)
    (H, W, C), c = image_shape(x, cfg), cfg.cutout_pixels()
    if c:
        # the first row and column of the square; (H, W) multiplies as `side` did when square
        first = np.floor((u[:, 4:6] + 1.0) / 2.0 * np.array([H, W]) - c / 2.0)   # (B, 2)
        rows = (np.arange(H) >= first[:, :1]) & (np.arange(H) < first[:, :1] + c)  # (B, H)
        cols = (np.arange(W) >= first[:, 1:]) & (np.arange(W) < first[:, 1:] + c)  # (B, W)
        square = rows[:, None, :, None] & cols[:, None, None, :]                  # (B, 1, H, W)
        images = out.reshape(-1, C, H, W)
        images[np.broadcast_to(square, images.shape)] = 0
    return out


def image_shape(x: np.ndarray, cfg: Config) -> tuple[int, int, int]:
    """(H, W, C) of the rows of x (B, D): cfg.shape, which must hold D values."""
    shape = cfg.shape
    if shape is None:
        raise ValueError(f"the warps need the images' height and width, and {cfg.input_dim} "
                         f"values per image are not a square: give image_shape.")
    if shape[0] * shape[1] * shape[2] != x.shape[1]:
        raise ValueError(f"images of shape {shape} (H, W, C) have {math.prod(shape)} values, "
                         f"but the rows hold {x.shape[1]}.")
    return shape
