"""Train the model, then generate digits from every mixture component.

The generative model is c ~ Categorical(pi), z ~ N(0, I), x ~ p(x | z, c) with logits
l = decoder(z, e_c). Here c is not sampled: every row of the grid is one component k, and
every column one draw z_j ~ N(0, I), the SAME z_j in every row. Reading down a column shows
what the component embedding alone changes for a fixed z; reading along a row shows what z
does inside one component. Images are the Bernoulli means sigmoid(l), not binary samples.

What to expect: the digit is decided mostly by z (a column often shows one digit in every
row) and the component changes its style, stroke or slant. Nothing forces components to be
digit classes: p(z | c) is the same N(0, I) for every c, so the mixture lives only in the
decoder (docs/math.md, section 1).

Row labels give pi_k, the usage u_k (mean q(c=k|x) over all images) and the digit the
component mostly explains (soft majority of the true labels, for display only). Unused
components (u_k ~ 0) were never trained to draw anything and show it.

Writes to --out: generate_digits.png (K rows x --samples columns) and model.npz (a
checkpoint that examples/latent_traversal.py --checkpoint can reuse). Default: 30 epochs on
the 5000 embedded digits, about 30 seconds on 2 cores; NPVAE_EXAMPLE_TINY=1 or --tiny: a few
seconds.

    python examples/generate_digits.py [--epochs 30] [--samples 10] [--checkpoint FILE]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))       # examples/_common.py
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))   # npvae without installing

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
from npvae.training.checkpoint import save_checkpoint  # noqa: E402
from npvae.core.layers import sigmoid, softmax_forward  # noqa: E402
from npvae.reporting.metrics import majority_labels, usage  # noqa: E402


def main(argv=None) -> int:
    ap = C.make_parser("generate_digits", __doc__)
    C.add_training_flags(ap)
    ap.add_argument("--samples", type=int, default=None, help="z draws = grid columns")
    ap.add_argument("--checkpoint", help="skip training: use this checkpoint (.npz from "
                                         "npvae.run or from this example)")
    args = C.resolve(ap.parse_args(argv), normal=dict(epochs=30, num_samples=None, K=10, samples=10),
                     tiny=dict(epochs=1, num_samples=256, K=4, samples=4))
    with C.Timer() as t:
        p, cfg, x, y, _ = C.load_or_train(args)
        if not args.checkpoint:
            save_checkpoint(args.out / "model.npz", p, cfg)

        # z ~ N(0, I): the prior p(z | c) is the same standard normal for every component.
        rng = np.random.default_rng(args.seed)
        z = rng.standard_normal((args.samples, cfg.latent_dim))
        logits = C.decode(p, z, cfg)                         # (samples, K, 784)
        images = sigmoid(logits).transpose(1, 0, 2)          # (K, samples, 784): rows = k

        q = C.eval_outputs(p, x, cfg)["q"]                   # (N, K) responsibilities
        u = usage(q)
        labels, _ = majority_labels(q, y, cfg.num_classes)
        pi = softmax_forward(p["pi_logits"].astype(np.float64))[0]
        rows = [f"c{k}  pi={pi[k]:.2f}\nu={u[k]:.2f}  ~{labels[k]}" for k in range(cfg.K)]
        cols = [f"z{j}" for j in range(args.samples)]
        path = C.save_grid(images, args.out / "generate_digits.png", rows, cols,
                           title="sigmoid(decoder(z_j, e_k)): rows = components, "
                                 "columns = the same z_j ~ N(0, I)")
    for k in np.argsort(-u):
        print(f"component {k}: usage {u[k]:.3f}, pi {pi[k]:.3f}, mostly digit {labels[k]}")
    print(f"wrote {path} ({cfg.K} x {args.samples} images) in {t.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
