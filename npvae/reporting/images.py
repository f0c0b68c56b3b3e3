"""How to draw one row of x, and what to call the classes: shared by the figures, the report
and the app (no matplotlib here, so that the app's server does not import it).

    image_of(row, shape)       one image (D,) -> (H, W) grey or (H, W, 3) colour, for imshow
                               or a PNG
    class_names(cfg)           the classes' names: cfg.class_names, else "0".."C-1"
    shape_text(shape)          "28 x 28 grey", "32 x 32 RGB"
    data_text(shape, names)    "32 x 32 RGB, 3 classes: cat, dog, fox" (the report's line)

The layout of x (the data helper's contract): x is (N, D) in [0, 1] with D = H * W * C, each
row one image's values channel after channel (C x H x W, flattened), shape = cfg.shape =
(H, W, C) with C 1 (grey) or 3 (red, green, blue).
"""
from __future__ import annotations

import numpy as np

SEED_SHAPE = (28, 28, 1)        # the embedded digits


def square_shape(D: int) -> tuple[int, int, int] | None:
    """(s, s, 1) when D = s * s (square grey images, as cfg.shape guesses), else None."""
    side = round(D ** 0.5)
    return (side, side, 1) if side * side == D else None


def image_of(row, shape=None) -> np.ndarray:
    """One image as an array to draw: row (D,) of values channel after channel, shape
    (H, W, C) or (H, W) with H * W * C = D. Returns (H, W) for grey (C = 1), (H, W, C)
    for colour. shape None (unknown): square grey when D is a square, else the values as a
    (1, D) grey strip, so that something can always be drawn."""
    row = np.asarray(row).reshape(-1)
    if shape is None:
        shape = square_shape(row.size)
        if shape is None:
            return row.reshape(1, -1)
    H, W, C = (*shape, 1)[:3]
    if H * W * C != row.size:
        raise ValueError(f"an image of {row.size} values cannot be drawn as {H} x {W} x {C}.")
    if C == 1:
        return row.reshape(H, W)
    return row.reshape(C, H, W).transpose(1, 2, 0)      # channel-first rows, channel-last image


def class_names(cfg) -> tuple[str, ...]:
    """The names of classes 0..num_classes-1: cfg.class_names when given, else the numbers."""
    return tuple(cfg.class_names) or tuple(str(c) for c in range(cfg.num_classes))


def shape_text(shape) -> str:
    """'28 x 28 grey', '32 x 32 RGB' for shape (H, W[, C]); 'unknown shape' for None."""
    if shape is None:
        return "unknown shape"
    H, W, C = (*shape, 1)[:3]
    kind = {1: "grey", 3: "RGB"}.get(C, f"{C} channels")
    return f"{H} x {W} {kind}"


def data_text(shape, names, at_most: int = 20) -> str:
    """'32 x 32 RGB, 3 classes: cat, dog, fox': the images' shape and the classes' names
    (the first `at_most` of them, then how many more)."""
    names = list(names)
    shown = ", ".join(names[:at_most])
    if len(names) > at_most:
        shown += f", ... ({len(names) - at_most} more)"
    return f"{shape_text(shape)}, {len(names)} classes: {shown}"
