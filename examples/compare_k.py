"""Compare numbers of mixture components K on a short run: 1, 5, 10, 20, or --K 2 4 8.

Same data, seed and settings for every K; only the number of components changes. For each
trained model the script measures (npvae.reporting.metrics, spec section 5):

  recon     final-epoch reconstruction term on the validation split (BCE nats per image)
  kl        kl_z + kl_c on the validation split, as weighted in the loss (w_kl = 0.5, ...)
  accuracy  classifier head at z = mu over all N images vs their true labels
  K_eff     exp(H(u / sum u)), u = mean q(c|x) over the validation split: components in use
  active    components with usage u_k > 0.01;  NMI of argmax_k q(c|x) against the labels

What to expect: K = 1 is a plain VAE (one decoder, kl_c = 0, K_eff = 1). Adding components
gives the decoder a discrete "style" input, so recon drops a little; the batch-usage entropy
term (w_div < 0) keeps K_eff close to K up to about K = 10, beyond which extra components
stay unused. After 10 epochs the differences are small; --epochs 50 shows the full run.
Decoder cost grows linearly in K (the loss decodes every image with every component),
which the fit_s column shows.

Writes compare_k.md and compare_k.csv (one table) and compare_k.png (four panels) to --out.
Default: 10 epochs per K on the 5000 embedded digits, about 30 seconds on 2 cores (time
grows with K: K = 20 costs about twice K = 10). NPVAE_EXAMPLE_TINY=1 or --tiny: a few
seconds (K = 1, 3; 1 epoch; 256 images).

    python examples/compare_k.py [--K 1 5 10 20] [--epochs 10] [--num-samples N]
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))       # examples/_common.py
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))   # npvae without installing

import _common as C  # noqa: E402
from _common import plt  # noqa: E402  (Agg backend already selected)
from npvae.reporting import metrics as M  # noqa: E402

COLUMNS = ("K", "recon", "kl", "accuracy", "K_eff", "active", "nmi", "fit_s")
PANELS = (("recon", "Reconstruction (val, nats/image)"), ("kl", "KL_z + KL_c (val, weighted)"),
          ("accuracy", "Classifier accuracy (all N)"), ("K_eff", "K_eff (val usage)"))


def run_one(K: int, args, data) -> dict:
    """Train with K components on the shared data; return one table row."""
    cfg = C.training_config(args, K=K)
    result, x, y, splits = C.train(cfg, progress=not args.no_progress, data=data)
    h = result.history
    out = C.eval_outputs(result.params, x, cfg)
    u = M.usage(out["q"][splits.val])
    nmi, _ = M.clustering_scores(out["q"], y)
    return {"K": K, "recon": h["val_recon"][-1], "kl": h["val_kl_z"][-1] + h["val_kl_c"][-1],
            "accuracy": M.accuracy(out["cls_logits"], y), "K_eff": M.effective_components(u),
            "active": M.active_components(u), "nmi": nmi, "fit_s": result.fit_seconds}


def write_tables(rows: list[dict], out: Path) -> tuple[Path, Path]:
    fmt = {"K": "{:d}", "active": "{:d}", "fit_s": "{:.1f}", "accuracy": "{:.3f}",
           "nmi": "{:.3f}", "K_eff": "{:.2f}", "recon": "{:.2f}", "kl": "{:.3f}"}
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt[c].format(r[c]) for c in COLUMNS) + " |" for r in rows]
    md = out / "compare_k.md"
    md.write_text("\n".join(lines) + "\n")
    path = out / "compare_k.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return md, path


def plot(rows: list[dict], path: Path, epochs: int) -> Path:
    ks = [r["K"] for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5))
    for ax, (key, title) in zip(axes.ravel(), PANELS):
        ax.plot(ks, [r[key] for r in rows], "o-")
        if key == "K_eff":                                   # the most K_eff can be
            ax.plot(ks, ks, "--", color="grey", label="K_eff = K (uniform usage)")
            ax.legend(fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("K")
        ax.set_xticks(ks)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Number of components K after {epochs} epoch{'s' * (epochs != 1)} "
                 f"(same data, seed, settings)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    ap = C.make_parser("compare_k", __doc__)
    C.add_training_flags(ap, several_K=True)
    args = C.resolve(ap.parse_args(argv), normal=dict(epochs=10, num_samples=None, K=[1, 5, 10, 20]),
                     tiny=dict(epochs=1, num_samples=256, K=[1, 3]))
    if min(args.K) < 1:
        raise SystemExit(f"error: --K {' '.join(map(str, args.K))}: every K must be at least 1.")
    with C.Timer() as t:
        data = C.load_data(C.training_config(args, K=1))    # the same images for every K
        rows = [run_one(K, args, data) for K in args.K]
        md, csv_path = write_tables(rows, args.out)
        png = plot(rows, args.out / "compare_k.png", args.epochs)
    print(md.read_text())
    print(f"wrote {md}, {csv_path}, {png} in {t.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
