"""Decode a grid over the 2-D latent space for one component: what does z mean there?

z is shared by all components (one z per image, spec section 2), so the same point z can be
decoded by every component: this example fixes one component k (--component) and decodes
sigmoid(decoder(z, e_k)) at every point of a --steps x --steps grid. Columns move z[0] left
to right, rows move z[1] bottom to top (the picture's axes are z coordinates). It needs a
2-D latent (a checkpoint with another latent_dim is refused: fixing the other coordinates at
some value would show one arbitrary slice, not the latent space).

Range: by default the 1st..99th percentile of the encoder means mu over all images, so
the grid covers where the data actually sit (with w_kl = 0.5 the means spread wider than
the prior N(0, I)); --span S gives the square [-S, S]^2 instead.

What to expect: a smooth picture, neighbouring tiles differing a little; the digit changes
across the grid (z carries the digit's identity and shape) while the component's style
stays the same. Different --component values on the same grid show the same digits in the
components' styles. Prints the z ranges of the grid.

Writes latent_traversal_c<k>.png to --out. Trains like examples/generate_digits.py
(30 epochs, about 35 seconds on 2 cores) unless --checkpoint reuses a trained model, e.g.
results/examples/generate_digits/model.npz (then a few seconds). NPVAE_EXAMPLE_TINY=1 or
--tiny: a few seconds.

    python examples/latent_traversal.py --component 3 [--steps 15] [--span 3] [--checkpoint F]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))       # examples/_common.py
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))   # npvae without installing

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
from _common import plt  # noqa: E402  (Agg backend already selected)
from npvae.core.layers import sigmoid  # noqa: E402


def main(argv=None) -> int:
    ap = C.make_parser("latent_traversal", __doc__)
    C.add_training_flags(ap)
    ap.add_argument("--component", type=int, default=None,
                    help="component to decode with (default: the most used one)")
    ap.add_argument("--steps", type=int, default=None, help="grid points per axis")
    ap.add_argument("--span", type=float, default=None,
                    help="decode over [-span, span]^2 (default: 1st..99th percentile of mu)")
    ap.add_argument("--checkpoint", help="skip training: use this checkpoint (.npz)")
    args = C.resolve(ap.parse_args(argv), normal=dict(epochs=30, num_samples=None, K=10, steps=15),
                     tiny=dict(epochs=1, num_samples=256, K=4, steps=5))
    with C.Timer() as t:
        p, cfg, x, y, _ = C.load_or_train(args)
        if cfg.latent_dim != 2:
            raise SystemExit(f"error: the checkpoint's latent_dim is {cfg.latent_dim}; this "
                             f"example decodes a grid over a 2-D latent, so it needs a model "
                             f"trained with --latent-dim 2.")
        out = C.eval_outputs(p, x, cfg)
        u = out["q"].mean(axis=0)
        k = int(np.argmax(u)) if args.component is None else args.component
        if not 0 <= k < cfg.K:
            raise SystemExit(f"error: --component {k} is out of range; use 0..{cfg.K - 1}.")

        if args.span is not None:
            lo, hi = np.array([-args.span] * 2), np.array([args.span] * 2)
        else:
            lo, hi = np.percentile(out["mu"][:, :2], [1, 99], axis=0)
        n = args.steps
        a = np.linspace(lo[0], hi[0], n)                    # z[0], left to right
        b = np.linspace(hi[1], lo[1], n)                    # z[1], top to bottom
        z = np.zeros((n * n, cfg.latent_dim))
        z[:, 0] = np.tile(a, n)
        z[:, 1] = np.repeat(b, n)
        img = sigmoid(C.decode(p, z, cfg, components=[k]))[:, 0]      # (n*n, 784)
        # Tile into one (28n, 28n) picture: row r holds z[1] = b[r], column c z[0] = a[c].
        tiles = img.reshape(n, n, 28, 28).transpose(0, 2, 1, 3).reshape(28 * n, 28 * n)

        half = (hi - lo) / (2 * max(n - 1, 1))             # grid points are tile centres
        fig, ax = plt.subplots(figsize=(7, 7))
        ax.imshow(tiles, cmap="gray", vmin=0, vmax=1, aspect="auto",
                  extent=(lo[0] - half[0], hi[0] + half[0], lo[1] - half[1], hi[1] + half[1]))
        ax.set_xlabel("z[0]")
        ax.set_ylabel("z[1]")
        ax.set_title(f"Component {k} (usage {u[k]:.2f}): sigmoid(decoder(z, e_{k})) "
                     f"on a {n}x{n} grid")
        fig.tight_layout()
        path = args.out / f"latent_traversal_c{k}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
    print(f"component {k}: z[0] in [{lo[0]:.2f}, {hi[0]:.2f}], z[1] in [{lo[1]:.2f}, "
          f"{hi[1]:.2f}]; wrote {path} in {t.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
