"""The training loop (spec sections 4-5): shuffled mini-batches, clipped AdamW, and after every
epoch an eval-mode pass over the training and the validation split.

Randomness: one seed makes three independent Generators (SeedSequence.spawn): `init` for the
parameters, `shuffle` for the per-epoch order, `noise` for eps and dropout masks. Same seed,
same machine: the same run, bit for bit.

Stopping and resuming: `should_stop()` is asked after every completed step (after the
optimiser update) and after every epoch's evaluation; when it says yes, fit returns with
`interrupted=True` and a TrainState (parameters, optimiser moments, generator states, position,
best weights, history) from which `fit(..., state=...)` continues to exactly the same weights
as a run that never stopped. A non-finite loss or gradient stops training before that step's
update is applied (`diverged` names the epoch, step and term). `on_epoch_end(state)` receives
the TrainState after every epoch that training continues from (npvae/runs/runner.py writes it as the
resume point, so a kill -9 loses at most one epoch).

Two engines compute the steps and evaluations: "fast" (the default; npvae/engine/mixture.py, fused
kernels and reused buffers) and "reference" (npvae/core/model.py, the readable layer-by-layer
path). They draw the same random numbers in the same order and compute the same loss and
gradient; their histories agree to float32 rounding (tests/test_fast.py).
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from npvae.core.config import Config
from npvae.core.layers import softmax_forward
from npvae.core.model import TERMS, evaluate, loss_and_grads
from npvae.core.noise import draw_noise
from npvae.core.optim import AdamState, adamw_step
from npvae.core.params import Layout, Params, init_params
from npvae.engine.augment import augment
from npvae.engine.consistency import Consistency
from npvae.engine.gmm import GMMEngine
from npvae.engine.mixture import FastModel
from npvae.engine.optim import adamw_step_fast, grad_norm
from npvae.engine.threads import Team

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
    diverged: str = ""                  # the divergence that stopped training, or ""
    interrupted: bool = False           # should_stop() said yes; `state` resumes the run
    state: "TrainState | None" = field(default=None, repr=False)


@dataclass
class TrainState:
    """Everything fit needs to continue a run exactly where it stopped (saved by
    checkpoint.save_resume as checkpoints/resume.npz).

    Position: `epoch` is the epoch in progress and `step` the number of its steps already
    taken (1..steps per epoch; all of them means its evaluation has not run yet). step 0 means
    the epoch has not started: `order` is then None and the restored shuffle generator draws
    it; otherwise `order` is that epoch's shuffled order of the training split."""
    params: Params
    opt: AdamState
    rng_states: dict                    # generator name -> bit_generator.state (JSON-able)
    epoch: int
    step: int
    order: np.ndarray | None
    best_params: Params
    best_loss: float
    best_epoch: int
    history: dict
    fit_seconds: float

    def position_problem(self, n: int, batch_size: int) -> str:
        """Why this position cannot continue a training split of n images ("" if it can):
        the step must lie in 0..steps per epoch, and `order` (present exactly when step > 0)
        must be a permutation of the n training rows."""
        steps = -(-n // batch_size)
        if not 0 <= self.step <= steps or (self.step == 0) != (self.order is None):
            return f"step {self.step} does not fit an epoch of {steps} steps"
        if self.order is not None and (np.shape(self.order) != (n,) or
                                       not np.array_equal(np.sort(self.order), np.arange(n))):
            return (f"its shuffled order of {np.size(self.order)} rows is not a permutation of "
                    f"the {n} training images (has the data changed?)")
        return ""

    def where(self, steps_per_epoch: int) -> str:
        """'epoch E step S' plus what it means at the epoch boundaries."""
        at = f"epoch {self.epoch} step {self.step}"
        if self.step == 0:
            return f"{at} (after epoch {self.epoch - 1} and its evaluation)"
        if self.step == steps_per_epoch:
            return f"{at} of {steps_per_epoch} (before that epoch's evaluation)"
        return f"{at} of {steps_per_epoch}"


ENGINES = ("fast", "reference")


def fit(cfg: Config, x: np.ndarray, y_visible: np.ndarray, train_idx: np.ndarray,
        val_idx: np.ndarray, progress: bool = True, engine: str = "fast",
        profile: dict | None = None, state: TrainState | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_epoch_end: Callable[[TrainState], None] | None = None) -> FitResult:
    """Train on x[train_idx] (labels y_visible, -1 = unlabeled), validate on x[val_idx].

    engine: "fast" (default) or "reference" (see the module docstring). profile: a dict that,
    when given, receives the seconds spent per phase (batch, forward, backward, optimizer,
    evaluation, tracking; forward and backward are split only by the seed model's fast
    engine, the others record one "forward+backward"; "consistency" when w_cons > 0).
    state: None starts afresh; a TrainState (from an interrupted fit) continues that run.
    should_stop: asked after every step and every evaluation; True stops with a TrainState.
    on_epoch_end: called after every epoch not ending training early, with the TrainState
    that resumes right after it; its arrays are the live ones (copy what you keep)."""
    if engine not in ENGINES:
        raise ValueError(f"engine = {engine!r} is not known: use one of {', '.join(ENGINES)}.")
    dtype = np.dtype(cfg.dtype)
    rngs = make_rngs(cfg.seed)
    p = init_params(cfg, rngs["init"])
    opt = AdamState.zeros(p.flat)
    decay = p.layout.decay_mask(dtype)
    xtr, ytr = x[train_idx].astype(dtype), y_visible[train_idx]
    xva, yva = x[val_idx].astype(dtype), y_visible[val_idx]
    n = xtr.shape[0]
    history = {"epoch": [], "pi": [], "usage": [],
               **{f"{s}_{t}": [] for s in ("train", "val") for t in ALL_TERMS}}
    best, best_loss, best_epoch, stopped = p.copy(), np.inf, 0, ""
    first_epoch, first_step, order, seconds = 1, 0, None, 0.0
    if state is not None:                               # continue exactly where it stopped
        p, opt, best, history = _restore(state, cfg, rngs, n)
        best_loss, best_epoch, seconds = state.best_loss, state.best_epoch, state.fit_seconds
        first_epoch, first_step, order = state.epoch, state.step, state.order
    diverged, halt = "", None                           # halt: (epoch, step) to resume at
    fast = fast_engine(cfg) if engine == "fast" else None
    pool = np.flatnonzero(ytr >= 0)                     # labeled training rows
    extra = cfg.labeled_per_batch if pool.size else 0   # added to every batch
    xbuf = np.empty((cfg.batch_size + extra, cfg.input_dim), dtype)
    if fast is not None:
        grad = p.zeros_like()
        fast.laps = profile
    cons = None                                         # the consistency term, if any
    if cfg.w_cons > 0:
        cons = Consistency(cfg, fast.team if fast is not None else Team(1),
                           getattr(fast, "ops", None))
    clock = _Clock(profile)

    bar = tqdm(total=cfg.epochs, initial=first_epoch - 1, desc="epochs", unit="ep",
               disable=not progress, file=sys.stderr) if _is_tty() else None
    start = time.perf_counter() - seconds               # fit_seconds add up across resumes
    for epoch in range(first_epoch, cfg.epochs + 1):
        clock.lap("tracking")                           # the progress line of the last epoch
        if order is None:                               # (a resumed epoch keeps its order)
            order = rngs["shuffle"].permutation(n)
        step_cfg = _scheduled(cfg, epoch)               # the KL weights of this epoch
        if fast is not None and cfg.model == "gmm":
            fast.reweight(step_cfg)
        for s in range(first_step * cfg.batch_size, n, cfg.batch_size):  # last partial kept
            idx = order[s:s + cfg.batch_size]
            if extra:                                   # labeled rows, with replacement
                idx = np.concatenate([idx, rngs["shuffle"].choice(pool, extra)])
            noise = draw_noise(cfg, idx.size, rngs["noise"])
            if fast is None:
                xb = _batch(xtr, idx, noise, cfg, xbuf)
                clock.lap("batch")
                loss, g, terms = loss_and_grads(p, xb, ytr[idx], noise, step_cfg)
                clock.lap("forward+backward")
                loss += _consistency(cons, p, xtr, ytr, idx, noise, g, terms, clock)
                if not _finite(loss, g.flat) and (diverged := _diagnose(terms, loss, g)):
                    break                               # before the update: p stays good
                adamw_step(p.flat, g.flat, opt, decay, step_cfg)
            else:
                xb = _batch(xtr, idx, noise, cfg, xbuf, fast.team)
                clock.lap("batch")
                loss, terms = fast.loss_and_grads(p, xb, ytr[idx], noise, grad)  # laps fwd, bwd
                clock.lap(None)
                loss += _consistency(cons, p, xtr, ytr, idx, noise, grad, terms, clock)
                norm = grad_norm(grad.flat)             # NaN / inf if an entry is
                if not (math.isfinite(loss) and math.isfinite(norm)) and \
                        (diverged := _diagnose(terms, loss, grad)):
                    break                               # before the update: p stays good
                adamw_step_fast(p.flat, grad.flat, opt, decay, step_cfg, norm)
            clock.lap("optimizer")
            if should_stop is not None and should_stop():
                halt = (epoch, s // cfg.batch_size + 1)
                break
        if diverged:
            steps = -(-n // cfg.batch_size)
            diverged = (f"diverged at epoch {epoch} step {s // cfg.batch_size + 1} of {steps} "
                        f"(optimiser step {opt.t + 1}): {diverged}; the parameters from before "
                        f"that step are kept")
        if diverged or halt:
            break
        if fast is None:
            tr, usage = evaluate_split(p, xtr, ytr, cfg)
            va, _ = evaluate_split(p, xva, yva, cfg)
        else:
            tr, usage = fast.evaluate_split(p, xtr, ytr)
            va, _ = fast.evaluate_split(p, xva, yva)
        clock.lap("evaluation")
        _record(history, epoch, tr, va, p, usage)
        if not (math.isfinite(tr["loss"]) and math.isfinite(va["loss"])):
            diverged = (f"diverged at epoch {epoch}: its evaluation gave non-finite weighted "
                        f"terms ({_nonfinite_terms(tr, va)}); the parameters after its last "
                        f"step are kept")
            break
        if va["loss"] < best_loss:
            best, best_loss, best_epoch = p.copy(), va["loss"], epoch
        line = (f"epoch {epoch}/{cfg.epochs}  loss {tr['loss']:.3f}  recon {tr['recon']:.3f}  "
                f"kl_z {tr['kl_z']:.3f}  val_loss {va['loss']:.3f}")
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{tr['loss']:.2f}", val=f"{va['loss']:.2f}")
        elif progress:
            print(line, file=sys.stderr, flush=True)
        clock.lap("tracking")
        if epoch - best_epoch >= cfg.patience:
            stopped = f"early stopping: no validation improvement for {cfg.patience} epochs"
            break
        order, first_step = None, 0
        if on_epoch_end is not None:                    # a resume point after every epoch
            on_epoch_end(_state(p, opt, rngs, (epoch + 1, 0), None, best, best_loss, best_epoch,
                                history, time.perf_counter() - start))
        if should_stop is not None and should_stop():   # between epochs: resume at step 0
            halt = (epoch + 1, 0)
            break
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    paused = None
    if halt is not None:
        paused = _state(p, opt, rngs, halt, order, best, best_loss, best_epoch, history, seconds)
    return FitResult(p, best, history, len(history["epoch"]), seconds, best_epoch, stopped,
                     opt, diverged, halt is not None, paused)


def fast_engine(cfg: Config):
    """The fast engine of cfg's model: GMMEngine for model gmm (dense or conv), else
    FastModel (the seed's model)."""
    return GMMEngine(cfg) if cfg.model == "gmm" else FastModel(cfg)


def _scheduled(cfg: Config, epoch: int) -> Config:
    """cfg with w_kl and w_klc scaled by the staged schedule's factor for this epoch and lr by
    the learning-rate decay's (cfg itself when both are 1, as always in the seed's model)."""
    scale, lr = cfg.kl_scale(epoch), cfg.lr_scale(epoch)
    if scale == 1.0 and lr == 1.0:
        return cfg
    return cfg.replace(w_kl=cfg.w_kl * scale, w_klc=cfg.w_klc * scale, lr=cfg.lr * lr)


def _batch(xtr, idx, noise, cfg: Config, buf, team=None):
    """The step's images x[idx] in buf, warped by the step's augmentation draws if any (on
    the fast engine's threads when given)."""
    xb = np.take(xtr, idx, axis=0, out=buf[:idx.size])
    if noise.aug is not None:
        augment(xb.copy(), noise.aug, cfg, out=xb, team=team)
    return xb


def _consistency(cons, p, xtr, ytr, idx, noise, g, terms, clock) -> float:
    """The consistency term of the step's unlabeled images (0 without one): its gradient
    added to g, its value to terms["cons"] (named if it ever breaks) and returned."""
    if cons is None:
        return 0.0
    rows = ytr[idx] < 0
    terms["cons"], _ = cons.loss_and_grads(p, xtr[idx[rows]], noise.strong[rows], g)
    clock.lap("consistency")
    return terms["cons"]


def _state(p, opt, rngs, at, order, best, best_loss, best_epoch, history, seconds):
    """The TrainState that continues at position `at` = (epoch, step)."""
    return TrainState(p, opt, {k: r.bit_generator.state for k, r in rngs.items()}, *at, order,
                      best, float(best_loss), best_epoch, history, seconds)


def _restore(state: TrainState, cfg: Config, rngs: dict, n: int):
    """Copies of a TrainState's parameters, optimiser state, best weights and history (the
    state itself is not modified), with the generators set to its saved states."""
    if state.params.layout != Layout.from_config(cfg):
        raise ValueError("the TrainState's parameters do not match the config's layout.")
    problem = state.position_problem(n, cfg.batch_size)
    if problem:
        raise ValueError(f"the TrainState cannot continue this run: {problem}.")
    for name, st in state.rng_states.items():
        rngs[name].bit_generator.state = st
    opt = AdamState(state.opt.m.copy(), state.opt.v.copy(), int(state.opt.t))
    history = {k: list(v) for k, v in state.history.items()}
    return state.params.copy(), opt, state.best_params.copy(), history


def _finite(loss, g: np.ndarray) -> bool:
    """Are the loss and every gradient entry finite? One dot product and no temporary array:
    g.g is NaN or inf when any entry is (it can also overflow for huge finite entries, which
    _diagnose then clears)."""
    return math.isfinite(loss) and math.isfinite(np.dot(g, g))


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
