"""Helpers shared by the examples: arguments, tiny settings, data + training, decoding, grids.

Every example takes `--out DIR` (default results/examples/<name>/) and a few size flags.
Tiny settings (for tests and a quick look) come from `--tiny` or from the environment
variable NPVAE_EXAMPLE_TINY=1; flags typed on the command line always win over both.

The one piece of model code here is `decode`, the decoder alone: logits of p(x | z, c=k)
for given z and components; it checks its arguments and calls npvae/core/model.py:decoder_forward.
`update_block` writes the generated blocks of docs/math.md (graph, worked example, exercises).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (must follow the backend choice)

from npvae.core.config import Config  # noqa: E402
from npvae.training.data import load_digits, make_splits, subsample, visible_labels  # noqa: E402
from npvae.core.model import decoder_forward, evaluate  # noqa: E402
from npvae.core.params import Params  # noqa: E402
from npvae.training.loop import fit  # noqa: E402

TINY_ENV = "NPVAE_EXAMPLE_TINY"


def tiny_requested(args: argparse.Namespace) -> bool:
    """True when --tiny was given or NPVAE_EXAMPLE_TINY is set to 1 (or true/yes)."""
    env = os.environ.get(TINY_ENV, "").strip().lower()
    return bool(getattr(args, "tiny", False)) or env in ("1", "true", "yes")


def make_parser(name: str, doc: str) -> argparse.ArgumentParser:
    """A parser with the flags every example shares; --help prints the whole module docstring
    `doc` (what the example does, what to expect, how long it takes). Size flags default to
    None so that `resolve` can tell "typed" from "not typed" and fill in normal or tiny values."""
    ap = argparse.ArgumentParser(prog=f"python examples/{name}.py", description=doc.strip(),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path("results") / "examples" / name),
                    help="output folder (default: %(default)s)")
    ap.add_argument("--tiny", action="store_true",
                    help=f"tiny settings for a smoke test (same as {TINY_ENV}=1)")
    ap.add_argument("--seed", type=int, default=42, help="one seed for data, init and noise")
    return ap


def add_training_flags(ap: argparse.ArgumentParser, several_K: bool = False) -> None:
    """--epochs, --num-samples, --K, --no-progress. several_K: --K takes one or more values
    (a list in args.K; --ks is the same flag), for examples that compare values of K."""
    ap.add_argument("--epochs", type=int, default=None, help="training epochs")
    ap.add_argument("--num-samples", type=int, default=None,
                    help="use this many of the 5000 embedded digits (default: all)")
    if several_K:
        ap.add_argument("--K", "--ks", dest="K", type=int, nargs="+", default=None,
                        metavar="K", help="the values of K to compare (default 1 5 10 20)")
    else:
        ap.add_argument("--K", type=int, default=None, help="mixture components (default 10)")
    ap.add_argument("--no-progress", action="store_true", help="no per-epoch lines")


def resolve(args: argparse.Namespace, normal: dict, tiny: dict,
            make_out: bool = True) -> argparse.Namespace:
    """Fill every flag left at None with its tiny or normal default; report which. Creates
    the --out folder unless make_out is False (for examples that write nothing)."""
    chosen = tiny if tiny_requested(args) else normal
    for key, value in chosen.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.tiny = tiny_requested(args)
    args.out = Path(args.out)
    if make_out:
        args.out.mkdir(parents=True, exist_ok=True)
    return args


# ------------------------------------------------------------------------ data and training
def load_data(cfg: Config):
    """The embedded digits, subsampled and split exactly as npvae.run does.
    Returns x (N, 784) float32, y (N,) true labels, splits, y_visible (-1 = unlabeled)."""
    x, y = load_digits(cfg.data)
    x, y = subsample(x, y, cfg.num_samples, cfg.seed)
    splits = make_splits(len(y), cfg.num_labeled, cfg.seed, cfg.val_fraction)
    return x, y, splits, visible_labels(y, splits.labeled)


def train(cfg: Config, progress: bool = True, data=None):
    """Run npvae.training.loop.fit on `data` (the output of load_data; loaded from cfg when None).
    Returns (FitResult, x, y, splits)."""
    x, y, splits, y_visible = load_data(cfg) if data is None else data
    say(f"training: {len(y)} images, K={cfg.K}, {cfg.epochs} epochs", progress)
    result = fit(cfg, x, y_visible, splits.train, splits.val, progress=progress)
    say(f"trained in {result.fit_seconds:.1f} s", progress)
    return result, x, y, splits


def training_config(args: argparse.Namespace, **overrides) -> Config:
    """A Config from the shared training flags (num_labeled shrinks with a tiny dataset);
    keyword arguments override any field."""
    n = args.num_samples
    settings = dict(epochs=args.epochs, num_samples=n, K=args.K, seed=args.seed,
                    num_labeled=min(50, n // 4) if n is not None else 50)
    return Config(**{**settings, **overrides}).validate()


def load_or_train(args: argparse.Namespace):
    """(params, cfg, x, y, splits): from --checkpoint when given (the data are reloaded with
    the checkpoint's config), else by training with the example's settings."""
    if getattr(args, "checkpoint", None):
        from npvae.training.checkpoint import load_checkpoint   # written by `python -m npvae.run`
        params, cfg = load_checkpoint(args.checkpoint)
        x, y, splits, _ = load_data(cfg)
        say(f"loaded {args.checkpoint} (K={cfg.K})", not args.no_progress)
        return params, cfg, x, y, splits
    cfg = training_config(args)
    result, x, y, splits = train(cfg, progress=not args.no_progress)
    return result.params, cfg, x, y, splits


def eval_outputs(p: Params, x, cfg: Config) -> dict[str, np.ndarray]:
    """Eval mode (z = mu, no dropout) over all rows in chunks: q (N,K), mu (N,d),
    cls_logits (N,C), as float64."""
    parts = {"q": [], "mu": [], "cls_logits": []}
    for s in range(0, len(x), cfg.eval_batch_size):
        out, _ = evaluate(p, x[s:s + cfg.eval_batch_size], cfg)
        for key in parts:
            parts[key].append(getattr(out, key))
    return {key: np.concatenate(v).astype(np.float64) for key, v in parts.items()}


# --------------------------------------------------------------------------------- decoding
def decode(p: Params, z: np.ndarray, cfg: Config, components=None) -> np.ndarray:
    """Decoder logits for every pair (row of z, component): the generative half alone.

        hz = lrelu(z W_z + b_z)                (B, P)   z pathway
        hc = lrelu(e_k W_e + b_e)              (K', P)  component pathway, k in components
        l  = MLP_dec(concat(hz_i, hc_k))       (B, K', D)

    z (B, d); components: indices into 0..K-1 (default: all K). sigmoid(l) is the mean image.
    It checks its arguments and calls npvae/core/model.py:decoder_forward, the decoder the loss
    trains, so the pictures show exactly what was trained."""
    z = np.asarray(z, dtype=p.flat.dtype)
    ks = np.arange(cfg.K) if components is None else np.atleast_1d(components)
    if ks.size and (ks.min() < 0 or ks.max() >= cfg.K):
        raise ValueError(f"components {ks.tolist()} must lie in 0..{cfg.K - 1}.")
    if z.ndim != 2 or z.shape[1] != cfg.latent_dim:
        raise ValueError(f"z has shape {z.shape}; it must be (B, {cfg.latent_dim}).")
    return decoder_forward(p, z, cfg, ks)[0]


# ----------------------------------------------------------------------------------- output
def marked_block(name: str, content: str) -> str:
    """`content` between the markers <!-- name:begin --> and <!-- name:end --> (the blocks of
    docs/math.md that scripts write and tests/test_docs.py compares)."""
    return f"<!-- {name}:begin -->\n{content}\n<!-- {name}:end -->"


def update_block(path, name: str, content: str) -> bool:
    """Replace the marked block `name` of a markdown file; True if the file changed."""
    path = Path(path)
    text = path.read_text()
    pattern = re.compile(rf"<!-- {name}:begin -->.*?<!-- {name}:end -->", re.S)
    if not pattern.search(text):
        raise SystemExit(f"error: {path} has no <!-- {name}:begin --> ... <!-- {name}:end --> "
                         f"block to update.")
    new = pattern.sub(lambda _: marked_block(name, content), text)
    path.write_text(new)
    return new != text


def save_grid(images: np.ndarray, path, row_labels=None, col_labels=None, title=None) -> Path:
    """Save an (R, C, 784) array of images in [0, 1] as one R x C grid PNG."""
    images = np.asarray(images, dtype=float)
    R, C = images.shape[:2]
    fig, axes = plt.subplots(R, C, figsize=(0.9 * C + 1.2, 0.9 * R + 0.8), squeeze=False)
    for r in range(R):
        for c in range(C):
            ax = axes[r, c]
            ax.imshow(images[r, c].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=8)
            if r == R - 1 and col_labels is not None:
                ax.set_xlabel(col_labels[c], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def say(message: str, show: bool = True) -> None:
    if show:
        print(message, file=sys.stderr, flush=True)


class Timer:
    """`with Timer() as t: ...; t.seconds` (wall time, printed by the examples)."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False
