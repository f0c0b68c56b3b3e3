"""How far is the loss npvae minimises from the ELBO? Each departure, measured on a trained model.

The negative ELBO of image i (docs/math.md section 3) is

    -ELBO_i = sum_k q_ik BCE(x_i, l_ik) + KL(q(z|x_i) || N(0, I)) + KL(q(c|x_i) || pi)

and the loss adds weights and terms to it (section 4). This script runs the training-mode
forward pass (z sampled, dropout on, noise from --seed) over the training split in batches
of 128, as training does, and prints per image:

  -ELBO and its three parts, unweighted;
  each departure: the nats the weights w_kl = 0.5 and w_klc = 0.001 remove, the Dirichlet
  term, the batch-usage entropy term and the classification term it adds; their sum is
  exactly loss - (-ELBO), which the script checks;
  two facts about the likelihood: the part of the reconstruction no model can remove (the
  entropy of the grey levels themselves, sum_j H(x_ij)) and how much lower -ELBO would be
  under the normalised continuous Bernoulli likelihood (minus sum_j log C(l_ikj));
  how far pi is from uniform (the per-batch Dirichlet term pins it).

What to expect (the default run, `python -m npvae.run --K 10`, its final.npz): -ELBO about
134, loss about 225; the Dirichlet term (+92.1) is by far the largest departure, halving the
Gaussian KL removes about 3.5 nats, the categorical KL about 2; pi within 1e-5 of uniform.
Default: trains the default run (50 epochs, about 35 s on 2 cores) unless --checkpoint names
a trained model (then a few seconds); NPVAE_EXAMPLE_TINY=1 or --tiny: a few seconds. Writes
elbo_gap.md (the table) to --out.

    python examples/elbo_gap.py [--checkpoint results/<run>/checkpoints/final.npz]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))       # examples/_common.py
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))   # npvae without installing

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
from npvae.core import layers as L  # noqa: E402
from npvae.training.data import visible_labels  # noqa: E402
from npvae.core.model import forward  # noqa: E402
from npvae.core.noise import draw_noise  # noqa: E402


def log_cb_normaliser(l: np.ndarray) -> np.ndarray:
    """log C for the continuous Bernoulli with mean parameter sigmoid(l):
    C = 2 artanh(1 - 2 lam) / (1 - 2 lam) = l / tanh(l / 2), and 2 at l = 0."""
    small = np.abs(l) < 1e-3
    safe = np.where(small, 1.0, l)
    return np.where(small, np.log(2.0) + l * l / 12.0,
                    np.log(np.abs(safe)) - np.log(np.abs(np.tanh(safe / 2.0))))


def measure(p, cfg, x, y_visible, rng) -> dict[str, float]:
    """Per-image averages over x (N, D) in training mode, batches of cfg.batch_size."""
    p, cfg = p.astype(np.float64), cfg.replace(dtype="float64")
    n = len(x)
    acc = dict.fromkeys(("recon", "kl_z", "kl_c", "dirichlet", "diversity", "cls", "floor",
                         "log_c", "loss"), 0.0)
    order = rng.permutation(n)
    for s in range(0, n, cfg.batch_size):
        idx = order[s:s + cfg.batch_size]
        xb = x[idx].astype(np.float64)
        loss, terms, out, _ = forward(p, xb, y_visible[idx], cfg, draw_noise(cfg, idx.size, rng))
        bce, _ = L.bce_logits_forward(out.logits, xb[:, None, :])            # (B, K)
        parts = {
            "recon": (out.q * bce).sum(),
            "kl_z": L.gauss_kl_forward(out.mu, out.lv)[0].sum(),
            "kl_c": L.cat_kl_forward(out.q, out.pi)[0].sum(),
            # batch-level terms count once per batch: weight them by the batch's share
            **{t: terms[t] * idx.size for t in ("dirichlet", "diversity", "cls")},
            "floor": _binary_entropy(xb).sum(),
            "log_c": (out.q * log_cb_normaliser(out.logits).sum(axis=2)).sum(),
            "loss": loss * idx.size,
        }
        for k, v in parts.items():
            acc[k] += float(v) / n
    acc["pi_dev"] = float(np.max(np.abs(out.pi - 1.0 / cfg.K)))
    return acc


def _binary_entropy(x):
    """sum over pixels of -x log x - (1 - x) log(1 - x): the smallest BCE any logit reaches."""
    xc = np.clip(x, 1e-12, 1 - 1e-12)
    return -(xc * np.log(xc) + (1 - xc) * np.log1p(-xc)).sum(axis=1)


def table(m: dict, cfg) -> tuple[str, float]:
    """The markdown table and the reconciliation error |loss - (-ELBO + departures)|."""
    neg_elbo = m["recon"] + m["kl_z"] + m["kl_c"]
    departures = [
        (f"w_kl = {cfg.w_kl:g} on KL_z", (cfg.w_kl - 1) * m["kl_z"]),
        (f"w_klc = {cfg.w_klc:g} on KL_c", (cfg.w_klc - 1) * m["kl_c"]),
        (f"Dirichlet term, once per batch (w_dir = {cfg.w_dir:g}, alpha = "
         f"{cfg.dirichlet_alpha:g})", m["dirichlet"]),
        (f"batch-usage entropy (w_div = {cfg.w_div:g})", m["diversity"]),
        (f"classification on labeled rows (w_cls = {cfg.w_cls:g})", m["cls"]),
    ]
    gap = m["loss"] - neg_elbo - sum(v for _, v in departures)
    rows = [("reconstruction sum_k q_ik BCE_ik", m["recon"]), ("KL_z (unweighted)", m["kl_z"]),
            ("KL_c (unweighted)", m["kl_c"]), ("**-ELBO** (Bernoulli likelihood)", neg_elbo),
            *((f"departure: {name}", v) for name, v in departures),
            ("**loss** (the objective)", m["loss"]),
            ("grey-level entropy sum_j H(x_ij): the least BCE possible", m["floor"]),
            ("-E[sum_j log C]: the change of -ELBO under the continuous Bernoulli", -m["log_c"]),
            ("max_k abs(pi_k - 1/K)", m["pi_dev"])]
    width = max(len(r) for r, _ in rows)
    lines = ["| quantity (nats per image) | value |", "|---|---|"]
    lines += [f"| {name:{width}s} | {value:12.6g} |" for name, value in rows]
    return "\n".join(lines) + "\n", abs(gap)


def main(argv=None) -> int:
    ap = C.make_parser("elbo_gap", __doc__)
    C.add_training_flags(ap)
    ap.add_argument("--checkpoint", help="a trained model (.npz from npvae.run or an example)")
    args = C.resolve(ap.parse_args(argv), normal=dict(epochs=50, num_samples=None, K=10),
                     tiny=dict(epochs=1, num_samples=256, K=4))
    with C.Timer() as t:
        p, cfg, x, y, splits = C.load_or_train(args)
        y_visible = visible_labels(y, splits.labeled)
        m = measure(p, cfg, x[splits.train], y_visible[splits.train],
                    np.random.default_rng(args.seed))
        text, gap = table(m, cfg)
    print(text)
    path = args.out / "elbo_gap.md"
    path.write_text(text)
    print(f"loss = -ELBO + departures to {gap:.1e}; {len(splits.train)} training images, "
          f"{t.seconds:.1f} s; wrote {path}")
    return 0 if gap < 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
