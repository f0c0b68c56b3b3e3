"""Checkpoints: the named parameter arrays plus the config, in one .npz file.

    save_checkpoint(path, params, cfg)   ->  path   (atomic: temp file, then rename)
    load_checkpoint(path)                ->  (params, cfg)
    save_resume(path, state, cfg, data)  ->  path   an interrupted run's TrainState
    load_resume(path, cfg, n_train, data) -> TrainState, checked against cfg and the data
    ResumeWriter(path, cfg, data)        the per-epoch resume point, written in the background

A checkpoint is plain NumPy: `np.load(path)["enc0.W"]` works without npvae; the config is
stored as JSON text under the key `__config__`. A resume checkpoint adds the optimiser
moments, the best weights, the epoch's shuffled order and, as JSON text, the rest of the
TrainState (step counts, generator states, best loss, history, seconds so far) and the
fingerprint of the data it was trained on (npvae.training.data.fingerprint).
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np

from npvae.core.config import Config
from npvae.core.optim import AdamState
from npvae.core.params import Layout, Params

from .data import data_changes
from .fileio import atomic_write

CONFIG_KEY = "__config__"
RESUME_KEYS = ("__resume__", "__opt_m__", "__opt_v__", "__best__")   # + "__order__" if drawn


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not match its config."""


def save_checkpoint(path, params: Params, cfg: Config, **extra_arrays) -> Path:
    """Write params (named arrays), cfg and any extra arrays (e.g. optimiser state)."""
    arrays = params.to_dict()
    arrays[CONFIG_KEY] = np.array(json.dumps(cfg.to_dict(compact=True)))
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

def save_resume(path, state, cfg: Config, data: dict | None = None) -> Path:
    """Write an npvae.training.loop.TrainState (an interrupted run) so that load_resume gives
    it back bit for bit: arrays stay arrays, the rest is JSON (floats round-trip exactly, NaN
    and inf included). data: the fingerprint of the data trained on, checked by load_resume."""
    return _save_arrays(path, _resume_arrays(state, cfg, data))


def _resume_arrays(state, cfg: Config, data: dict | None) -> dict:
    """Every array of a resume checkpoint, by name (views of the state's arrays)."""
    meta = {"epoch": state.epoch, "step": state.step, "t": state.opt.t,
            "rng_states": state.rng_states, "best_loss": float(state.best_loss),
            "best_epoch": state.best_epoch, "fit_seconds": state.fit_seconds,
            "history": {k: _floats(v) if k != "epoch" else list(map(int, v))
                        for k, v in state.history.items()},
            "data": data}
    if state.epoch_sums:            # model gmm's per-epoch figures mid-epoch (monitor.py)
        meta["epoch_sums"] = state.epoch_sums
    arrays = {**state.params.to_dict(),
              CONFIG_KEY: np.array(json.dumps(cfg.to_dict(compact=True))),
              "__resume__": np.array(json.dumps(meta)), "__opt_m__": state.opt.m,
              "__opt_v__": state.opt.v, "__best__": state.best_params.flat}
    if state.order is not None:
        arrays["__order__"] = np.asarray(state.order, dtype=np.int64)
    if state.tau is not None and state.step > 0:    # at step 0 the map is formed afresh
        arrays["__tau__"] = np.asarray(state.tau, dtype=np.float64)
    return arrays


def _save_arrays(path, arrays: dict) -> Path:
    return atomic_write(path, lambda fh: np.savez(fh, **arrays))


class ResumeWriter:
    """The resume point written at every epoch end (npvae.training.loop.fit's on_epoch_end),
    so that a kill -9 or a power cut loses at most the epoch in progress.

    Writing it and waiting for the disk (fsync) at the epoch end would hold training up for a
    noticeable share of an epoch; so `submit` only copies the state and a background thread
    writes it while training goes on (the costs: benchmarks/README.md, bench_resume_point.py).
    Writes happen one at a time and in order: `submit` and `wait` first wait for the previous
    write and raise its error (a WriteError), so a full disk ends the run at the next epoch
    end at the latest. Leaving the `with` block waits for the last write (and raises its
    error unless another exception is on its way)."""

    def __init__(self, path, cfg: Config, data: dict | None = None):
        self.path, self.cfg, self.data = Path(path), cfg, data
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._copies: dict = {}            # reused: fresh buffers would cost page faults

    def submit(self, state) -> None:
        arrays = _resume_arrays(state, self.cfg, self.data)
        self.wait()                        # (the previous write reads the copies)
        snapshot = {}
        for name, value in arrays.items():  # copies: training goes on changing the arrays
            value = np.asarray(value)
            copy = self._copies.get(name)
            if copy is None or copy.shape != value.shape or copy.dtype != value.dtype:
                copy = self._copies[name] = np.empty_like(value)
            np.copyto(copy, value)
            snapshot[name] = copy
        # not a daemon: an interpreter that exits mid-write first finishes the file
        self._thread = threading.Thread(target=self._write, args=(snapshot,),
                                        name="npvae-resume-point")
        self._thread.start()

    def _write(self, arrays: dict) -> None:
        _yield_cpu()
        try:
            _save_arrays(self.path, arrays)
        except BaseException as err:       # handed to the training thread by wait()
            self._error = err

    def wait(self) -> None:
        """Wait for the write in progress; raise its error, if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def __enter__(self) -> "ResumeWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.wait()
        elif self._thread is not None:     # the exception on its way is the one to report
            self._thread.join()


def _yield_cpu() -> None:
    """Lowest CPU priority for the calling thread (Linux: nice is per thread), so that the
    CPU time a resume point takes (zip CRC, copying into the page cache) fills the idle
    moments of the training threads instead of taking a core from them."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def load_resume(path, cfg: Config, n_train: int, data: dict | None = None):
    """The TrainState saved at `path`, refused with CheckpointError unless it was written for
    exactly `cfg`, a training split of n_train images and (when both fingerprints are known)
    the same data: `data` is npvae.training.data.fingerprint of the data loaded now."""
    from .loop import TrainState  # here: loop imports the engine and its numba kernels

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
    meta = json.loads(str(extra["__resume__"]))
    changes = data_changes(meta.get("data"), data)
    if changes:
        raise CheckpointError(f"the data changed since {path} was written: "
                              f"{'; '.join(changes)}; --resume needs the data the run started "
                              f"with (put it back, or start a new run).")
    layout, dtype = params.layout, np.dtype(cfg.dtype)
    for key in ("__opt_m__", "__opt_v__", "__best__"):
        if extra[key].shape != (layout.size,) or extra[key].dtype != dtype:
            raise CheckpointError(f"checkpoint {path}: {key} has shape {extra[key].shape} and "
                                  f"dtype {extra[key].dtype}; expected ({layout.size},) {dtype}.")
    state = TrainState(
        params=params, opt=AdamState(extra["__opt_m__"], extra["__opt_v__"], int(meta["t"])),
        rng_states=meta["rng_states"], epoch=int(meta["epoch"]), step=int(meta["step"]),
        order=extra.get("__order__"), best_params=Params(layout, extra["__best__"].copy()),
        best_loss=float(meta["best_loss"]), best_epoch=int(meta["best_epoch"]),
        history=meta["history"], fit_seconds=float(meta["fit_seconds"]),
        epoch_sums=meta.get("epoch_sums", {}), tau=extra.get("__tau__"))
    problem = state.position_problem(n_train, cfg.batch_size)
    if problem:
        raise CheckpointError(f"checkpoint {path} cannot be resumed: {problem}.")
    return state


def _floats(values: list) -> list:
    """History lists (of floats, or of lists of floats for pi and usage) as plain floats."""
    return [_floats(v) if isinstance(v, (list, tuple)) else float(v) for v in values]
