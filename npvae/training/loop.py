"""The training loop (spec sections 4-5): shuffled mini-batches, clipped AdamW, and after every
epoch an eval-mode pass over the training and the validation split.

Every step, for every model and engine: draw the batch (its rows, then its noise), the engine's
loss and gradient, the consistency term's gradient added (when w_cons > 0), a finiteness check,
then the optimiser update. The engine is "fast" (the default: fast_engine, fused kernels and
reused buffers) or "reference" (npvae/engine/reference.py: the readable layer-by-layer path of
npvae/core). Both draw the same random numbers in the same order and compute the same loss and
gradient; their histories agree to float32 rounding (tests/test_fast.py).

Randomness: one seed makes three independent Generators (SeedSequence.spawn): `init` for the
parameters, `shuffle` for the per-epoch order and the labeled rows added to each batch, `noise`
for eps, dropout masks and augmentation. Same seed, same machine: the same run, bit for bit.

Stopping and resuming: `should_stop()` is asked after every completed step (after the
optimiser update) and after every epoch's evaluation; when it says yes, fit returns with
`interrupted=True` and a TrainState (npvae/training/state.py) from which `fit(..., state=...)`
continues to exactly the same weights as a run that never stopped. A non-finite loss or
gradient stops training before that step's update is applied (`diverged` names the epoch, step
and term). `on_epoch_end(state)` receives the TrainState after every epoch that training
continues from (npvae/runs/runner.py writes it as the resume point, so a kill -9 loses at most
one epoch).
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

import numpy as np
from tqdm.auto import tqdm

from npvae.core import gmm
from npvae.core.config import Config
from npvae.core.layers import softmax_forward
from npvae.core.model import TERMS
from npvae.core.noise import draw_noise
from npvae.core.params import Params
from npvae.engine.augment import augment
from npvae.engine.consistency import Consistency
from npvae.engine.gmm import GMMEngine
from npvae.engine.mixture import FastModel
from npvae.engine.optim import grad_norm
from npvae.engine.reference import ALL_TERMS, ReferenceEngine, evaluate_split
from npvae.training.monitor import Monitor
from npvae.training.state import FitResult, TrainState, new_state, restore, snapshot

__all__ = ["ENGINES", "FitResult", "TrainState", "evaluate_split", "fast_engine", "fit",
           "make_rngs"]

ENGINES = ("fast", "reference")


def make_rngs(seed: int) -> dict[str, np.random.Generator]:
    """Independent streams for initialisation, shuffling and step noise, all from one seed."""
    init, shuffle, noise = np.random.SeedSequence(seed).spawn(3)
    return {"init": np.random.default_rng(init), "shuffle": np.random.default_rng(shuffle),
            "noise": np.random.default_rng(noise)}


def fit(cfg: Config, x: np.ndarray, y_visible: np.ndarray, train_idx: np.ndarray,
        val_idx: np.ndarray, progress: bool = True, engine: str = "fast",
        profile: dict | None = None, state: TrainState | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_epoch_end: Callable[[TrainState], None] | None = None,
        val_labels: np.ndarray | None = None) -> FitResult:
    """Train on x[train_idx] (labels y_visible, -1 = unlabeled), validate on x[val_idx].

    engine: "fast" (default) or "reference" (see the module docstring). profile: a dict that,
    when given, receives the seconds spent per phase (batch, forward, backward, optimizer,
    evaluation, tracking; forward and backward are split only by the seed model's fast
    engine, the others record one "forward+backward"; "consistency" when w_cons > 0).
    state: None starts afresh; a TrainState (from an interrupted fit) continues that run.
    should_stop: asked after every step and every evaluation; True stops with a TrainState.
    on_epoch_end: called after every epoch not ending training early, with the TrainState
    that resumes right after it; its arrays are the live ones (copy what you keep).
    val_labels: the true labels of x[val_idx] (-1: none), never trained on: model gmm's
    history then gains heldout_acc, shown per epoch, never used to stop or pick weights
    (npvae/training/monitor.py; it also adds cons_loss and cons_confident when w_cons > 0)."""
    if engine not in ENGINES:
        raise ValueError(f"engine = {engine!r} is not known: use one of {', '.join(ENGINES)}.")
    dtype, rngs = np.dtype(cfg.dtype), make_rngs(cfg.seed)
    xtr, ytr = x[train_idx].astype(dtype), y_visible[train_idx]
    xva, yva = x[val_idx].astype(dtype), y_visible[val_idx]
    n, steps = xtr.shape[0], -(-xtr.shape[0] // cfg.batch_size)  # the last partial batch too
    # run: the position, weights, optimiser state, best weights and history, updated in place
    run = new_state(cfg, rngs) if state is None else restore(state, cfg, rngs, n)
    p, opt = run.params, run.opt
    grad, decay = p.zeros_like(), p.layout.decay_mask(dtype)
    model = make_engine(engine, cfg, profile)
    cons = Consistency(model) if cfg.w_cons > 0 else None
    monitor = Monitor(cfg, val_labels, model.ops)
    batches = _Batches(cfg, xtr, ytr, rngs, model.team)
    clock, show = _Clock(profile), _Progress(cfg, run.epoch, progress)
    begun = time.perf_counter() - run.fit_seconds       # fit_seconds add up across resumes
    diverged = stopped = ""
    halted = False
    while run.epoch <= cfg.epochs:
        clock.lap("tracking")                           # the progress line of the last epoch
        if run.order is None:                           # (a resumed epoch keeps its order)
            run.order = rngs["shuffle"].permutation(n)
        step_cfg = _scheduled(cfg, run.epoch)           # this epoch's KL weights and lr
        model.reweight(step_cfg)
        if cfg.classifier == "tau":                     # from the epoch's starting weights
            if run.step == 0 or run.tau is None:        # (a resumed epoch keeps its map)
                run.tau = gmm.fit_tau(p, xtr, ytr, cfg, model.ops, cfg.eval_batch_size)
            model.tau = run.tau
        while run.step < steps:
            idx, noise, xb = batches.draw(run.order, run.step)
            clock.lap("batch")
            loss, terms = model.loss_and_grads(p, xb, ytr[idx], noise, grad)  # laps its phases
            clock.lap(None)
            loss += _consistency(cons, p, xtr, ytr, idx, noise, grad, terms, clock,
                                 lambda *seen: monitor.step(run, *seen))
            norm = grad_norm(grad.flat)                 # NaN / inf if an entry is
            if diverged := _step_divergence(terms, loss, norm, grad, run, steps):
                break                                   # before the update: p stays good
            model.adamw_step(p.flat, grad.flat, opt, decay, step_cfg, norm)
            run.step += 1
            clock.lap("optimizer")
            if halted := _asked(should_stop):
                break
        if diverged or halted:
            break
        tr, usage = model.evaluate_split(p, xtr, ytr)
        va, _ = model.evaluate_split(p, xva, yva)
        clock.lap("evaluation")
        _record(run.history, run.epoch, tr, va, p, usage)
        shown = monitor.record(run, p, xva)             # read only: training is as it was
        if diverged := _evaluation_divergence(run.epoch, tr, va):
            break
        _keep_best(run, va["loss"])
        show.epoch(run.epoch, tr, va, shown)
        clock.lap("tracking")
        if stopped := _early_stop(cfg, run):
            break
        run.epoch, run.step, run.order = run.epoch + 1, 0, None
        if on_epoch_end is not None:                    # a resume point after every epoch
            on_epoch_end(snapshot(run, rngs, time.perf_counter() - begun))
        if halted := _asked(should_stop):               # between epochs: resume at step 0
            break
    show.close()
    seconds = time.perf_counter() - begun
    return FitResult(p, run.best_params, run.history, len(run.history["epoch"]), seconds,
                     run.best_epoch, stopped, opt, diverged, halted,
                     snapshot(run, rngs, seconds) if halted else None)


def fast_engine(cfg: Config):
    """The fast engine of cfg's model: GMMEngine for model gmm (dense or conv), else
    FastModel (the seed's model)."""
    return GMMEngine(cfg) if cfg.model == "gmm" else FastModel(cfg)


def make_engine(engine: str, cfg: Config, profile: dict | None = None):
    """The Engine (npvae/engine/engine.py) computing steps, evaluations and updates:
    loss_and_grads(p, x, y, noise, g) -> (loss, terms), evaluate_split(p, x, y) -> (terms,
    usage (K,)), reweight(cfg), adamw_step(...), its threads `team` and blocks `ops`;
    profile (a dict, or None) receives its forward / backward seconds."""
    model = fast_engine(cfg) if engine == "fast" else ReferenceEngine(cfg)
    model.laps = profile
    return model


def _scheduled(cfg: Config, epoch: int) -> Config:
    """cfg with w_kl and w_klc scaled by the staged schedule's factor for this epoch and lr by
    the learning-rate decay's (cfg itself when both are 1, as always in the seed's model)."""
    scale, lr = cfg.kl_scale(epoch), cfg.lr_scale(epoch)
    if scale == 1.0 and lr == 1.0:
        return cfg
    return cfg.replace(w_kl=cfg.w_kl * scale, w_klc=cfg.w_klc * scale, lr=cfg.lr * lr)


class _Batches:
    """The steps' mini-batches of the training split: rows of the epoch's order, plus
    labeled_per_batch labeled rows drawn with replacement, their noise and their images."""

    def __init__(self, cfg: Config, xtr, ytr, rngs: dict, team):
        self.cfg, self.xtr, self.rngs, self.team = cfg, xtr, rngs, team
        self.pool = np.flatnonzero(ytr >= 0)            # labeled training rows
        self.extra = cfg.labeled_per_batch if self.pool.size else 0
        self.buf = np.empty((cfg.batch_size + self.extra, cfg.input_dim), xtr.dtype)

    def draw(self, order: np.ndarray, step: int):
        """Step `step`'s rows (B,), Noise and images (B, D) (a view of the reused buffer),
        warped by the step's augmentation draws if any."""
        bs = self.cfg.batch_size
        idx = order[step * bs:(step + 1) * bs]
        if self.extra:
            idx = np.concatenate([idx, self.rngs["shuffle"].choice(self.pool, self.extra)])
        noise = draw_noise(self.cfg, idx.size, self.rngs["noise"])
        xb = np.take(self.xtr, idx, axis=0, out=self.buf[:idx.size])
        if noise.aug is not None:
            augment(xb.copy(), noise.aug, self.cfg, out=xb, team=self.team)
        return idx, noise, xb


def _consistency(cons, p, xtr, ytr, idx, noise, g, terms, clock, seen) -> float:
    """The consistency term of the step's unlabeled images (0 without one): its gradient
    added to g, its value to terms["cons"] (named if it ever breaks) and returned; seen(term,
    share of confident targets, unlabeled images) is told the step's figures."""
    if cons is None:
        return 0.0
    rows = ytr[idx] < 0
    terms["cons"], share = cons.loss_and_grads(p, xtr[idx[rows]], noise.strong[rows], g)
    seen(terms["cons"], share, int(rows.sum()))
    clock.lap("consistency")
    return terms["cons"]


def _step_divergence(terms: dict, loss, norm: float, g: Params, run: TrainState,
                     steps: int) -> str:
    """Why the step about to be applied must not be ("" when the loss and the gradient's
    norm are finite, or when _diagnose finds every entry finite after all)."""
    if math.isfinite(loss) and math.isfinite(norm):
        return ""
    what = _diagnose(terms, loss, g)
    if not what:
        return ""
    return (f"diverged at epoch {run.epoch} step {run.step + 1} of {steps} (optimiser step "
            f"{run.opt.t + 1}): {what}; the parameters from before that step are kept")


def _evaluation_divergence(epoch: int, tr: dict, va: dict) -> str:
    """Why training stops after this epoch's evaluation ("" when both losses are finite)."""
    if math.isfinite(tr["loss"]) and math.isfinite(va["loss"]):
        return ""
    return (f"diverged at epoch {epoch}: its evaluation gave non-finite weighted terms "
            f"({_nonfinite_terms(tr, va)}); the parameters after its last step are kept")


def _asked(should_stop: Callable[[], bool] | None) -> bool:
    """Does the caller want training to stop here (with a TrainState to resume from)?"""
    return should_stop is not None and bool(should_stop())


def _keep_best(run: TrainState, val_loss: float) -> None:
    """Remember the weights of the lowest validation loss so far."""
    if val_loss < run.best_loss:
        run.best_params, run.best_loss, run.best_epoch = run.params.copy(), val_loss, run.epoch


def _early_stop(cfg: Config, run: TrainState) -> str:
    """Why training stops after this epoch ("" unless patience epochs passed without a new
    best validation loss)."""
    if run.epoch - run.best_epoch >= cfg.patience:
        return f"early stopping: no validation improvement for {cfg.patience} epochs"
    return ""


def _diagnose(terms: dict, loss, g: Params) -> str:
    """What broke, in words: the non-finite weighted loss terms, else the first parameter
    array (layout order) with a non-finite gradient; "" when everything is finite."""
    bad = [f"{t} = {float(v)}" for t, v in terms.items() if not math.isfinite(v)]
    if bad:
        return (f"the weighted loss term{'s' if len(bad) > 1 else ''} {', '.join(bad)} "
                f"{'are' if len(bad) > 1 else 'is'} not finite")
    if not math.isfinite(loss):
        return f"the loss is {float(loss)} although each weighted term is finite"
    for name, v in g.items():
        count = v.size - int(np.count_nonzero(np.isfinite(v)))
        if count:
            return (f"the loss is finite ({float(loss):.6g}) but the gradient of {name} has "
                    f"{count} non-finite entr{'ies' if count > 1 else 'y'}")
    return ""


def _nonfinite_terms(tr: dict, va: dict) -> str:
    """'training recon = nan, validation recon = nan' (the losses when only a sum overflowed)."""
    splits = (("training", tr), ("validation", va))
    bad = [f"{split} {t} = {float(d[t])}" for split, d in splits for t in TERMS
           if not math.isfinite(d[t])]
    return ", ".join(bad or [f"{split} loss = {float(d['loss'])}" for split, d in splits])


def _record(history, epoch, tr, va, p, usage):
    history["epoch"].append(epoch)
    for t in ALL_TERMS:
        history[f"train_{t}"].append(tr[t])
        history[f"val_{t}"].append(va[t])
    history["pi"].append(softmax_forward(p["pi_logits"])[0].tolist())
    history["usage"].append(usage.tolist())


# the progress line's names of the Monitor's figures, and their decimals
_SHOWN = (("acc", "heldout_acc", 3), ("conf", "cons_confident", 2), ("cons", "cons_loss", 3))


class _Progress:
    """A tqdm bar of epochs on a terminal, else one line per epoch on stderr (when progress)."""

    def __init__(self, cfg: Config, first_epoch: int, progress: bool):
        self.cfg, self.progress = cfg, progress
        self.bar = tqdm(total=cfg.epochs, initial=first_epoch - 1, desc="epochs", unit="ep",
                        disable=not progress, file=sys.stderr) if _is_tty() else None

    def epoch(self, epoch: int, tr: dict, va: dict, shown: dict | None = None) -> None:
        """shown: the Monitor's row (held-out accuracy, confident share, consistency term),
        appended as "acc 0.912  conf 0.63  cons 0.21" when the run has them."""
        extra = {name: f"{shown[k]:.{d}f}" for name, k, d in _SHOWN if k in (shown or {})}
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{tr['loss']:.2f}", val=f"{va['loss']:.2f}", **extra)
        elif self.progress:
            more = "".join(f"  {name} {v}" for name, v in extra.items())
            print(f"epoch {epoch}/{self.cfg.epochs}  loss {tr['loss']:.3f}  recon "
                  f"{tr['recon']:.3f}  kl_z {tr['kl_z']:.3f}  val_loss {va['loss']:.3f}{more}",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Clock:
    """Adds the seconds since the previous lap to profile[name] (name None: drop them).
    Does nothing when profile is None."""

    def __init__(self, profile: dict | None):
        self.profile, self.t = profile, time.perf_counter()

    def lap(self, name: str | None) -> None:
        if self.profile is not None:
            t = time.perf_counter()
            if name is not None:
                self.profile[name] = self.profile.get(name, 0.0) + t - self.t
            self.t = t


def _is_tty() -> bool:
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
