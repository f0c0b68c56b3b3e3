"""npvae as a scikit-learn estimator, next to scikit-learn's LabelSpreading on the same split.

Both models take fit(X, y) with y = -1 for the unlabeled rows. The data and the split are the
command line's (npvae.training.data.make_splits with --seed): --num-labeled images keep their
labels, the validation rows are held out, and every model trains on the training rows only:

    MixtureVAEClassifier(preset="ssl", epochs=50)    the semi-supervised VAE (model gmm)
    LabelSpreading(kernel="knn", n_neighbors=7)      graph-based label propagation on pixels
    make_pipeline(MixtureVAEClassifier(...), LabelSpreading(...))
                                                     LabelSpreading on the VAE's latent means
                                                     (the VAE as a transformer: fit_transform)

It prints one table: the accuracy of each on the held-out rows and on the unlabeled training
rows (whose labels the models never saw), and the seconds each took to fit.

What to expect: with the defaults (5000 digits, 46 of the 50 labels in the training rows,
50 epochs of the ssl preset) one run printed held-out accuracies of 0.838 for the VAE, 0.764
for LabelSpreading on pixels and 0.888 for LabelSpreading on the VAE's latent means; the
VAEs took about 85 seconds each on 2 busy cores, LabelSpreading about one second (the full
preset is `--epochs 150`). NPVAE_EXAMPLE_TINY=1 or --tiny: 300 images, 1 epoch, small
layers: a few seconds, the VAEs near chance. Writes sklearn_pipeline.md (the table) to --out.

    python examples/sklearn_pipeline.py [--epochs 50] [--num-samples N] [--num-labeled 50]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))       # examples/_common.py
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))   # npvae without installing

import numpy as np  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.semi_supervised import LabelSpreading  # noqa: E402

import _common as C  # noqa: E402
from npvae import MixtureVAEClassifier  # noqa: E402
from npvae.training.data import load_digits, make_splits, subsample, visible_labels  # noqa: E402


def models(args) -> dict:
    """The three models, by name; tiny settings shrink the VAE's layers."""
    small = dict(hidden_dims=(32,), decoder_dims=(32,)) if args.tiny else {}
    vae = dict(preset="ssl", epochs=args.epochs, random_state=args.seed, **small)
    return {
        "npvae MixtureVAEClassifier (ssl)": MixtureVAEClassifier(**vae),
        "LabelSpreading (pixels, knn 7)": LabelSpreading(kernel="knn", n_neighbors=7),
        "npvae latent -> LabelSpreading": make_pipeline(
            MixtureVAEClassifier(**vae), LabelSpreading(kernel="knn", n_neighbors=7)),
    }


def main(argv=None) -> int:
    ap = C.make_parser("sklearn_pipeline", __doc__)
    C.add_training_flags(ap)
    ap.add_argument("--num-labeled", type=int, default=50, help="images that keep their label")
    args = C.resolve(ap.parse_args(argv), normal=dict(epochs=50, num_samples=None, K=10),
                     tiny=dict(epochs=1, num_samples=300, K=10))
    x, y = load_digits()
    x, y = subsample(x, y, args.num_samples, args.seed)
    splits = make_splits(len(y), args.num_labeled, args.seed)     # the CLI's split
    y_semi = visible_labels(y, splits.labeled)
    tr, val = splits.train, splits.val
    unlabeled = tr[y_semi[tr] < 0]
    print(f"{len(y)} images: {len(tr)} training ({int((y_semi[tr] >= 0).sum())} labeled), "
          f"{len(val)} held out")
    rows = ["| model | held-out accuracy | unlabeled-train accuracy | fit seconds |",
            "|---|---|---|---|"]
    for name, model in models(args).items():
        t0 = time.perf_counter()
        model.fit(x[tr], y_semi[tr])
        seconds = time.perf_counter() - t0
        acc_val = float(np.mean(model.predict(x[val]) == y[val]))
        acc_unl = float(np.mean(model.predict(x[unlabeled]) == y[unlabeled]))
        rows.append(f"| {name} | {acc_val:.3f} | {acc_unl:.3f} | {seconds:.1f} |")
        print(rows[-1], flush=True)
    table = "\n".join(rows) + "\n"
    (args.out / "sklearn_pipeline.md").write_text(table)
    print("\n" + table + f"written to {args.out / 'sklearn_pipeline.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
