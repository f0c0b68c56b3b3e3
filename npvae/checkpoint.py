"""Checkpoints: the named parameter arrays plus the config, in one .npz file.

    save_checkpoint(path, params, cfg)   ->  path   (atomic: temp file, then rename)
    load_checkpoint(path)                ->  (params, cfg)
    save_resume(path, state, cfg)        ->  path   an interrupted run: train.TrainState
    load_resume(path, cfg, n_train)      ->  TrainState, checked against cfg and the data

A checkpoint is plain NumPy: `np.load(path)["enc0.W"]` works without npvae; the config is
stored as JSON text under the key `__config__`. A resume checkpoint adds the optimiser
moments, the best weights, the epoch's shuffled order and, as JSON text, the rest of the
TrainState (step counts, generator states, best loss, history, seconds so far).
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .config import Config
from .fileio import atomic_write
from .optim import AdamState
from .params import Layout, Params

CONFIG_KEY = "__config__"
RESUME_KEYS = ("__resume__", "__opt_m__", "__opt_v__", "__best__")   # + "__order__" if drawn


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not match its config."""


def save_checkpoint(path, params: Params, cfg: Config, **extra_arrays) -> Path:
    """Write params (named arrays), cfg and any extra arrays (e.g. optimiser state)."""
    arrays = params.to_dict()
    arrays[CONFIG_KEY] = np.array(json.dumps(cfg.to_dict()))
    arrays.update(extra_arrays)
    return atomic_write(path, lambda fh: np.savez(fh, **arrays))


def load_checkpoint(path) -> tuple[Params, Config]:
    """Read a checkpoint written by save_checkpoint; check every array against the config."""
    params, cfg, _ = load_checkpoint_full(path)
    return params, cfg


def load_checkpoint_full(path) -> tuple[Params, Config, dict]:
    """As load_checkpoint, plus the extra arrays stored beside the parameters."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist.")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated or not an npz "
                              f"file): {err}.") from None
    if CONFIG_KEY not in arrays:
        raise CheckpointError(f"checkpoint {path} holds no config ({CONFIG_KEY}).")
    cfg = Config.from_dict(json.loads(str(arrays.pop(CONFIG_KEY)))).validate()
    layout = Layout.from_config(cfg)
    try:
        params = Params.from_dict(layout, arrays, dtype=cfg.dtype)
    except ValueError as err:
        raise CheckpointError(f"checkpoint {path} does not match its config: {err}") from None
    extra = {k: v for k, v in arrays.items() if k not in layout.names}
    return params, cfg, extra


# ------------------------------------------------------------------ resumable checkpoints

def save_resume(path, state, cfg: Config) -> Path:
    """Write a train.TrainState (an interrupted run) so that load_resume gives it back bit
    for bit: arrays stay arrays, the rest is JSON (floats round-trip exactly, NaN and inf
    included)."""
    meta = {"epoch": state.epoch, "step": state.step, "t": state.opt.t,
            "rng_states": state.rng_states, "best_loss": float(state.best_loss),
            "best_epoch": state.best_epoch, "fit_seconds": state.fit_seconds,
            "history": {k: _floats(v) if k != "epoch" else list(map(int, v))
                        for k, v in state.history.items()}}
    extra = {"__resume__": np.array(json.dumps(meta)), "__opt_m__": state.opt.m,
             "__opt_v__": state.opt.v, "__best__": state.best_params.flat}
    if state.order is not None:
        extra["__order__"] = np.asarray(state.order, dtype=np.int64)
    return save_checkpoint(path, state.params, cfg, **extra)


def load_resume(path, cfg: Config, n_train: int):
    """The TrainState saved at `path`, refused with CheckpointError unless it was written for
    exactly `cfg` and a training split of n_train images."""
    from .train import TrainState  # here: train imports the numba kernels

    params, saved, extra = load_checkpoint_full(path)
    if saved != cfg:
        diff = [f"{k} is {v!r} there but {getattr(cfg, k)!r} in the run's config.toml"
                for k, v in saved.to_dict().items() if v != cfg.to_dict()[k]]
        raise CheckpointError(f"checkpoint {path} was written for another config "
                              f"({'; '.join(diff)}); resume needs the config.toml of the run "
                              f"that wrote it.")
    missing = [k for k in RESUME_KEYS if k not in extra]
    if missing:
        raise CheckpointError(f"checkpoint {path} is not a resume checkpoint (it lacks "
                              f"{', '.join(missing)}); only checkpoints/resume.npz can be resumed.")
    layout, dtype = params.layout, np.dtype(cfg.dtype)
    for key in ("__opt_m__", "__opt_v__", "__best__"):
        if extra[key].shape != (layout.size,) or extra[key].dtype != dtype:
            raise CheckpointError(f"checkpoint {path}: {key} has shape {extra[key].shape} and "
                                  f"dtype {extra[key].dtype}; expected ({layout.size},) {dtype}.")
    meta = json.loads(str(extra["__resume__"]))
    state = TrainState(
        params=params, opt=AdamState(extra["__opt_m__"], extra["__opt_v__"], int(meta["t"])),
        rng_states=meta["rng_states"], epoch=int(meta["epoch"]), step=int(meta["step"]),
        order=extra.get("__order__"), best_params=Params(layout, extra["__best__"].copy()),
        best_loss=float(meta["best_loss"]), best_epoch=int(meta["best_epoch"]),
        history=meta["history"], fit_seconds=float(meta["fit_seconds"]))
    problem = state.position_problem(n_train, cfg.batch_size)
    if problem:
        raise CheckpointError(f"checkpoint {path} cannot be resumed: {problem}.")
    return state


def _floats(values: list) -> list:
    """History lists (of floats, or of lists of floats for pi and usage) as plain floats."""
    return [_floats(v) if isinstance(v, (list, tuple)) else float(v) for v in values]
