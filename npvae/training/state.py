"""What a training run carries from step to step and what fit returns: TrainState (everything
needed to continue a run exactly where it stopped) and FitResult, with the helpers that start a
run, restore one and take a resume point.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from npvae.core.config import Config
from npvae.core.optim import AdamState
from npvae.core.params import Layout, Params, init_params
from npvae.engine.reference import ALL_TERMS


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
    # the epoch in progress's running sums of the per-epoch figures (training/monitor.py)
    epoch_sums: dict = field(default_factory=dict)
    # model gmm, classifier tau: the epoch's map (K, C), formed at its step 0 from the weights
    # of that moment; kept so that a run stopped inside the epoch resumes with the same map
    tau: np.ndarray | None = None

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


def new_state(cfg: Config, rngs: dict) -> TrainState:
    """Epoch 1 before its first step: parameters drawn from rngs["init"], zero moments, an
    empty history."""
    p = init_params(cfg, rngs["init"])
    history = {"epoch": [], "pi": [], "usage": [],
               **{f"{s}_{t}": [] for s in ("train", "val") for t in ALL_TERMS}}
    return TrainState(p, AdamState.zeros(p.flat), {}, 1, 0, None, p.copy(), np.inf, 0,
                      history, 0.0)


def restore(state: TrainState, cfg: Config, rngs: dict, n: int) -> TrainState:
    """A copy of `state` to train on (its parameters, optimiser state, best weights and history
    copied; `state` itself is not modified), with the generators set to its saved states.
    n: the number of training images."""
    if state.params.layout != Layout.from_config(cfg):
        raise ValueError("the TrainState's parameters do not match the config's layout.")
    problem = state.position_problem(n, cfg.batch_size)
    if problem:
        raise ValueError(f"the TrainState cannot continue this run: {problem}.")
    for name, st in state.rng_states.items():
        rngs[name].bit_generator.state = st
    opt = AdamState(state.opt.m.copy(), state.opt.v.copy(), int(state.opt.t))
    return replace(state, params=state.params.copy(), opt=opt,
                   best_params=state.best_params.copy(),
                   history={k: list(v) for k, v in state.history.items()},
                   epoch_sums=dict(state.epoch_sums))


def snapshot(run: TrainState, rngs: dict, seconds: float) -> TrainState:
    """The TrainState that continues from run's position: run's live arrays, the generators'
    current states and the seconds trained so far."""
    return replace(run, rng_states={k: r.bit_generator.state for k, r in rngs.items()},
                   best_loss=float(run.best_loss), fit_seconds=seconds,
                   epoch_sums=dict(run.epoch_sums))
