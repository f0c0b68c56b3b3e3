"""`python -m npvae.active --annotate`: a person labels the queried images in the terminal.

Every round the queried images are saved as a grid (queries/round_NN.png, each titled with
its index), its path is printed, and the label of each image is asked on stdin:

    label of image #1234 (0-9; s = skip, q = quit):

A non-number or a number outside 0..num_classes-1 is asked again; `s` skips the image (it is
never asked again and stays unlabeled); `q` (or the end of the input) stops: the labels given
so far are kept and written. The run folder gets annotations.csv (round, index, label of every
image labeled, in the order answered; round 0 = the first --initial images), the grids, and
checkpoints/final.npz (the model trained on those labels, when one was trained).

Data without labels: a .npz with only an array x (any image shape npvae.run accepts) or a
flat folder of images is accepted in this mode (`--data images.npz`), and so is a folder
with an unlabeled/ part; held-out accuracy is then not measured. With every label present
they are read for the held-out (validation) split's accuracy only, never for the queried
images.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from npvae.training.data import (EVERY, check_fits, load_data, load_dataset, make_splits,
                                 subsample)

from .loop import Options, initial_labels, run, train_model


def load_images(cfg, ds=None):
    """x, y (None when some image has no label) and the splits, as load_data gives them;
    cfg fitted to its data (npvae/training/data.py:fit_to_data), ds its Dataset when
    already loaded."""
    ds = load_dataset(cfg, EVERY) if ds is None else ds
    if ds.truth is not None:
        return load_data(cfg, ds)
    check_fits(cfg, ds)
    x, _ = subsample(ds.x, np.zeros(len(ds.x)), cfg.num_samples, cfg.seed)
    return x, None, make_splits(len(x), min(cfg.num_labeled, len(x)), cfg.seed,
                                cfg.val_fraction)


class Annotator:
    """reveal(indices) for the loop: saves the grid, asks each label on `inp`, prints to `out`.
    After a `q` (or the end of the input) `stopped` is True."""

    def __init__(self, x, folder: Path, num_classes: int, inp=None, out=None):
        self.x, self.folder, self.C = x, Path(folder), num_classes
        self.inp, self.out = inp or sys.stdin, out or sys.stdout
        self.round, self.stopped = 0, False
        self.given: list[tuple[int, int, int]] = []     # (round, index, label), as answered

    def __call__(self, idx) -> np.ndarray:
        from .report import plot_queries

        idx = np.asarray(idx, np.int64)
        grid = self.folder / "queries" / f"round_{self.round:02d}.png"
        plot_queries(self.x, [{"round": self.round, "queried": idx,
                               "revealed": np.full(idx.size, -1)}], grid,
                     f"round {self.round}: label these images (#index)")
        self.round += 1
        print(f"{idx.size} images to label, shown in {grid}", file=self.out, flush=True)
        labels = np.full(idx.size, -1, np.int64)
        for j, i in enumerate(idx):
            answer = self.ask(int(i))
            if answer is None:
                self.stopped = True
                break
            labels[j] = answer
            if answer >= 0:
                self.given.append((self.round - 1, int(i), answer))
        return labels

    def ask(self, i: int) -> int | None:
        """The label of image i: 0..C-1, -1 (skip) or None (quit / end of input)."""
        while True:
            print(f"label of image #{i} (0-{self.C - 1}; s = skip, q = quit): ", end="",
                  file=self.out, flush=True)
            line = self.inp.readline()
            if line == "":
                return None
            text = line.strip().lower()
            if text == "q":
                return None
            if text == "s":
                return -1
            if text.isdigit() and int(text) < self.C:
                return int(text)
            print(f"'{line.strip()}' is not a label: type a number 0-{self.C - 1}, s or q.",
                  file=self.out, flush=True)


def annotate_main(cfg, opt: Options, strategy: str, out: Path, inp=None, outp=None) -> int:
    """The interactive loop: first labels at random, then `strategy`, up to opt.budget."""
    from npvae.training.checkpoint import save_checkpoint
    from npvae.training.fileio import write_text

    x, y, splits = load_images(cfg)
    out.mkdir(parents=True, exist_ok=True)
    ask = Annotator(x, out, cfg.num_classes, inp, outp)
    y_known = np.full(len(x), -1, np.int64)
    first = initial_labels(splits.train, opt.initial, cfg.seed)
    y_known[first] = ask(first)
    rounds = []
    if not ask.stopped:
        say = lambda r: print(f"round {r['round']}: {r['labels']} labels, held-out accuracy "  # noqa: E731
                              f"{r['accuracy']:.3f}", file=ask.out, flush=True)
        start = train_model(cfg, x, y_known, splits, opt.init_epochs, None)
        rounds = run(cfg, x, y, splits, strategy, opt, ask, y_known, start,
                     np.random.default_rng([cfg.seed, 15]), on_round=say)
        save_checkpoint(out / "checkpoints" / "final.npz", rounds[-1]["params"], cfg)
    write_text(out / "annotations.csv", "round,index,label\n" + "".join(
        f"{r},{i},{label}\n" for r, i, label in ask.given))
    print(f"{len(ask.given)} labels written to {out / 'annotations.csv'}", file=ask.out)
    return 0

