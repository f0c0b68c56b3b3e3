"""The training loop (spec sections 4-5): shuffled mini-batches, clipped AdamW, and after every
epoch an eval-mode pass over the training and the validation split.

Randomness: one seed makes three independent Generators (SeedSequence.spawn): `init` for the
parameters, `shuffle` for the per-epoch order, `noise` for eps and dropout masks. Same seed,
same machine: the same run, bit for bit.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from .config import Config
from .layers import softmax_forward
from .model import TERMS, evaluate, loss_and_grads
from .noise import draw_noise
from .optim import AdamState, adamw_step
from .params import Params, init_params

ALL_TERMS = ("loss",) + TERMS


def make_rngs(seed: int) -> dict[str, np.random.Generator]:
    """Independent streams for initialisation, shuffling and step noise, all from one seed."""
    init, shuffle, noise = np.random.SeedSequence(seed).spawn(3)
    return {"init": np.random.default_rng(init), "shuffle": np.random.default_rng(shuffle),
            "noise": np.random.default_rng(noise)}


def evaluate_split(p: Params, x, y, cfg: Config) -> tuple[dict, np.ndarray]:
    """Eval-mode terms over a split in chunks of eval_batch_size, each averaged with weight
    chunk size / N (spec section 5); also the mean responsibilities q(c|x) over the split (K,)."""
    n, bs = x.shape[0], cfg.eval_batch_size
    totals = dict.fromkeys(ALL_TERMS, 0.0)
    usage = np.zeros(cfg.K)
    for s in range(0, n, bs):
        out, terms = evaluate(p, x[s:s + bs], cfg, y[s:s + bs])
        w = out.q.shape[0] / n
        for k in ALL_TERMS:
            totals[k] += w * terms[k]
        usage += out.q.sum(axis=0)
    return totals, usage / n


@dataclass
class FitResult:
    params: Params                      # final weights (the report uses these)
    best_params: Params                 # weights at the lowest validation loss
    history: dict                       # epoch, train_<term>, val_<term>, pi (E,K), usage (E,K)
    epochs_completed: int
    fit_seconds: float                  # steps + per-epoch evaluations + tracking
    best_epoch: int = 0
    stopped: str = ""                   # why training ended before `epochs`, or ""
    opt_state: AdamState | None = field(default=None, repr=False)


def fit(cfg: Config, x: np.ndarray, y_visible: np.ndarray, train_idx: np.ndarray,
        val_idx: np.ndarray, progress: bool = True) -> FitResult:
    """Train on x[train_idx] (labels y_visible, -1 = unlabeled), validate on x[val_idx]."""
    dtype = np.dtype(cfg.dtype)
    rngs = make_rngs(cfg.seed)
    p = init_params(cfg, rngs["init"])
    state = AdamState.zeros(p.flat)
    decay = p.layout.decay_mask(dtype)
    xtr, ytr = x[train_idx].astype(dtype), y_visible[train_idx]
    xva, yva = x[val_idx].astype(dtype), y_visible[val_idx]
    n = xtr.shape[0]
    history = {"epoch": [], "pi": [], "usage": [],
               **{f"{s}_{t}": [] for s in ("train", "val") for t in ALL_TERMS}}
    best, best_loss, best_epoch, stopped = p.copy(), np.inf, 0, ""

    bar = tqdm(range(1, cfg.epochs + 1), desc="epochs", unit="ep", disable=not progress,
               file=sys.stderr) if _is_tty() else None
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        order = rngs["shuffle"].permutation(n)
        for s in range(0, n, cfg.batch_size):           # the last partial batch is kept
            idx = order[s:s + cfg.batch_size]
            noise = draw_noise(cfg, idx.size, rngs["noise"])
            loss, g, _ = loss_and_grads(p, xtr[idx], ytr[idx], noise, cfg)
            adamw_step(p.flat, g.flat, state, decay, cfg)
        tr, usage = evaluate_split(p, xtr, ytr, cfg)
        va, _ = evaluate_split(p, xva, yva, cfg)
        _record(history, epoch, tr, va, p, usage)
        if va["loss"] < best_loss:
            best, best_loss, best_epoch = p.copy(), va["loss"], epoch
        line = (f"epoch {epoch}/{cfg.epochs}  loss {tr['loss']:.3f}  recon {tr['recon']:.3f}  "
                f"kl_z {tr['kl_z']:.3f}  val_loss {va['loss']:.3f}")
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{tr['loss']:.2f}", val=f"{va['loss']:.2f}")
        elif progress:
            print(line, file=sys.stderr, flush=True)
        if epoch - best_epoch >= cfg.patience:
            stopped = f"early stopping: no validation improvement for {cfg.patience} epochs"
            break
    if bar is not None:
        bar.close()
    return FitResult(p, best, history, len(history["epoch"]), time.perf_counter() - start,
                     best_epoch, stopped, state)


def _record(history, epoch, tr, va, p, usage):
    history["epoch"].append(epoch)
    for t in ALL_TERMS:
        history[f"train_{t}"].append(tr[t])
        history[f"val_{t}"].append(va[t])
    history["pi"].append(softmax_forward(p["pi_logits"])[0].tolist())
    history["usage"].append(usage.tolist())


def _is_tty() -> bool:
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
