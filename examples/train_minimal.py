"""The whole training loop on the readable path, in one screen: noise, loss and gradient,
clipping, AdamW, a loss per epoch.

This is what npvae/training/loop.py:fit does with engine="reference", without its bookkeeping
(progress bar, history, early stopping, divergence checks, resuming): the same seed gives the
same random streams (initialisation, shuffles, noise) and the same weights, which
tests/test_train_minimal.py checks. Every step is a pure function of (parameters, batch,
noise) followed by an in-place update of the flat parameter buffer:

    noise = draw_noise(...)                      eps ~ N(0, I), dropout masks
    loss, grads, terms = loss_and_grads(...)     npvae/core/model.py: forward, then backward
    clip_by_global_norm(grads.flat, 1.0)         ||grad|| <= 1
    adamw_step(params.flat, grads.flat, ...)     m, v, bias correction, decoupled decay

What to expect: first the loss of the first step, term by term: about 640, nearly all of it
the reconstruction (near 784 ln 2 = 543.4, the value for all-zero logits) and the constant
Dirichlet term 92.10 (docs/math.md section 4). Then one line per epoch with the mean
training loss of its steps and the validation loss (eval mode: z = mu, no dropout), both
falling: about 400 and 310 after the first epoch, below 300 from the second, about 260
after ten. Default: 10 epochs on the 5000 embedded digits, about 10 seconds on 2 cores;
NPVAE_EXAMPLE_TINY=1 or --tiny: 2 epochs on 300 images, about a second. Writes nothing.

    python examples/train_minimal.py [--epochs 10] [--num-samples N] [--K 10]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))       # examples/_common.py
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))   # npvae without installing

import _common as C  # noqa: E402
from npvae.core.model import evaluate, loss_and_grads  # noqa: E402
from npvae.core.noise import draw_noise  # noqa: E402
from npvae.core.optim import AdamState, adamw_step, clip_by_global_norm  # noqa: E402
from npvae.core.params import init_params  # noqa: E402
from npvae.training.loop import make_rngs  # noqa: E402


def train(cfg, x, y, x_val, y_val, say=print):
    """cfg.epochs epochs of clipped AdamW on x (N, 784), y (N,) with -1 = unlabeled.
    Returns the trained Params."""
    rngs = make_rngs(cfg.seed)                    # one seed: init, shuffle, noise streams
    params = init_params(cfg, rngs["init"])       # one flat buffer with named views
    opt = AdamState.zeros(params.flat)            # Adam's moments m, v and step count t
    decay = params.layout.decay_mask(params.flat.dtype)   # 1 on Dense weights, else 0
    for epoch in range(1, cfg.epochs + 1):
        order = rngs["shuffle"].permutation(len(x))
        losses = []
        for start in range(0, len(x), cfg.batch_size):       # the last partial batch too
            idx = order[start:start + cfg.batch_size]
            noise = draw_noise(cfg, idx.size, rngs["noise"])  # the step's only randomness
            loss, grads, terms = loss_and_grads(params, x[idx], y[idx], noise, cfg)
            clip_by_global_norm(grads.flat, cfg.grad_clip)   # (adamw_step's own clip is
            adamw_step(params.flat, grads.flat, opt, decay, cfg)  # then a no-op)
            losses.append(loss)
            if opt.t == 1:                                    # the sanity check of math.md 4
                say(f"first step: loss {loss:.2f}, the sum of " + ", ".join(
                    f"{name} {value:.2f}" for name, value in terms.items()))
        _, val = evaluate(params, x_val, cfg, y_val)          # eval mode: z = mu
        say(f"epoch {epoch}: train loss {sum(losses) / len(losses):.2f} (mean of "
            f"{len(losses)} steps), validation loss {val['loss']:.2f}")
    return params


def main(argv=None) -> int:
    ap = C.make_parser("train_minimal", __doc__)
    C.add_training_flags(ap)
    args = C.resolve(ap.parse_args(argv), normal=dict(epochs=10, num_samples=None, K=10),
                     tiny=dict(epochs=2, num_samples=300, K=10), make_out=False)
    cfg = C.training_config(args)
    x, _, splits, y_visible = C.load_data(cfg)
    x = x.astype(cfg.dtype)
    with C.Timer() as t:
        train(cfg, x[splits.train], y_visible[splits.train], x[splits.val], y_visible[splits.val],
              say=(lambda line: None) if args.no_progress else print)
    print(f"{cfg.epochs} epochs in {t.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
