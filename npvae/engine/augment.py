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
"""
from __future__ import annotations

import numpy as np

from npvae.core.config import Config

from .kernels import ACTIVE as kern
from .threads import Team, split


def affine_matrices(u: np.ndarray, cfg: Config, strong: bool = False) -> np.ndarray:
    """u (B, 4) in [-1, 1) -> (B, 2, 3) float64 maps from output to source pixel coordinates:
    theta = u0 aug_rotate degrees, s = 1 + u1 aug_scale, shift (u2, u3) aug_shift pixels
    (strong: the strong view's strong_rotate, strong_scale, strong_shift)."""
    rotate, scale, shift = ((cfg.strong_rotate, cfg.strong_scale, cfg.strong_shift) if strong
                            else (cfg.aug_rotate, cfg.aug_scale, cfg.aug_shift))
    theta = np.deg2rad(u[:, 0] * rotate)
    s = 1.0 + u[:, 1] * scale
    cos, sin = np.cos(theta) / s, np.sin(theta) / s
    A = np.empty((u.shape[0], 2, 3))
    A[:, 0, 0], A[:, 0, 1], A[:, 0, 2] = cos, sin, -u[:, 2] * shift
    A[:, 1, 0], A[:, 1, 1], A[:, 1, 2] = -sin, cos, -u[:, 3] * shift
    return A


def augment(x: np.ndarray, u: np.ndarray, cfg: Config, out: np.ndarray | None = None,
            team: Team | None = None, strong: bool = False):
    """The batch x (B, D) warped image by image with the draws u (B, 4); a new array unless
    `out` (B, D) is given (it must not be x). team: threads (npvae/engine/threads.py) that share the
    images; every image is warped alone, so the result does not depend on the split.
    strong: warp by the strong view's ranges (strong_*) instead of aug_*."""
    side = _side(x)
    out = np.empty_like(x) if out is None else out
    x, A = np.ascontiguousarray(x), affine_matrices(u, cfg, strong)
    rows = split(x.shape[0], team.size if team is not None else 1)
    if len(rows) == 1:
        kern.warp(x, A, side, out)
    else:
        team.run(lambda t, r, _: kern.warp(x[r[0]:r[1]], A[r[0]:r[1]], side, out[r[0]:r[1]]),
                 rows)
    return out


def strong_view(x: np.ndarray, u: np.ndarray, cfg: Config, team: Team | None = None):
    """The consistency term's strong view of x (B, D): warped by the strong ranges with the
    draws u[:, :4], then a square of side strong_cutout set to 0 (cutout, DeVries & Taylor
    2017), its centre at u[:, 4:6] scaled to the image, clipped at the border. u (B, 6) in
    [-1, 1). A person still reads the digit; a model that reads it the same way has learnt
    its shape, not its pixels."""
    out = augment(x, u[:, :4], cfg, team=team, strong=True)
    side, c = _side(x), cfg.strong_cutout
    if c:
        first = np.floor((u[:, 4:6] + 1.0) / 2.0 * side - c / 2.0)[:, :, None]  # (B, 2, 1)
        pix = np.arange(side)
        inside = (pix >= first) & (pix < first + c)             # (B, 2, side): rows, columns
        out.reshape(-1, side, side)[inside[:, 0, :, None] & inside[:, 1, None, :]] = 0
    return out


def _side(x: np.ndarray) -> int:
    side = int(round(np.sqrt(x.shape[1])))
    if side * side != x.shape[1]:
        raise ValueError(f"augmentation needs square images; got {x.shape[1]} pixels per row.")
    return side
