"""One training round in a worker process, so the page never waits.

    start_round(folder, epochs, until) -> Process   trains `epochs` more epochs on labels.csv
    prepare() -> None                        start the fork server (in the background)
    read_progress(folder) -> dict            progress.json ("interrupted" when its process is gone)
    write_outputs(folder, p, cfg, x, y_known, ...)   outputs.npz, the scatter's and queue's input

The round loads config.toml and the data, reads exactly the labels in labels.csv, and
continues the model where the last round stopped (warm start: checkpoints/app_state.npz holds
the npvae.training.loop.TrainState, so weights, AdamW moments, generator states and the epoch count carry
over, as in npvae.active); the first round starts from scratch. After every epoch it writes
the state and progress.json (epoch, loss, held-out accuracy when the data has labels)
atomically, so a kill -9 of anything loses at most the epoch in progress. It stops after a
step when the file `stop` appears or the app's process is gone, keeping its state; at the
end it writes outputs.npz (latent means and their 2-D view, class probabilities,
responsibilities, the components' decoded images) and checkpoints/final.npz.
"""
from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
import traceback
from pathlib import Path

import numpy as np

from npvae.experiments.active.loop import scores
from npvae.reporting import metrics as M
from npvae.runs import rundir as R
from npvae.training.fileio import atomic_write, write_text

from .components import component_images
from .images import load_app_data, project_2d
from .labels import LabelStore

PROGRESS, OUTPUTS, STATE, STOP = ("progress.json", "outputs.npz", "checkpoints/app_state.npz",
                                  "stop")


def read_progress(folder) -> dict:
    """progress.json ({"status": "idle"} when none); a "running" round whose process is gone
    (the app or the worker was killed) reads as "interrupted"."""
    try:
        prog = json.loads((Path(folder) / PROGRESS).read_text())
    except (OSError, ValueError):
        return {"status": "idle", "round": 0}
    if prog.get("status") == "running" and not _alive(prog.get("pid")):
        prog["status"] = "interrupted"
    return prog


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    try:                                           # a zombie child (not reaped yet) is gone
        with open(f"/proc/{int(pid)}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def write_outputs(folder, p, cfg, x, y_known, round_no: int = 0, epoch: int = 0) -> dict:
    """Model outputs of every image, written atomically to outputs.npz; returns them."""
    name, probs, q, mu = scores(p, cfg, x, y_known)
    images = component_images(p, cfg, mu, q.argmax(axis=1))
    arrays = {"xy": project_2d(mu).astype(np.float32),
              "mu": mu.astype(np.float32), "probs": probs.astype(np.float32),
              "q": q.astype(np.float32),
              "comp_images": images.astype(np.float32), "round": np.array(round_no),
              "epoch": np.array(epoch), "predictor": np.array(name)}
    atomic_write(Path(folder) / OUTPUTS, lambda fh: np.savez(fh, **arrays))
    return arrays


def read_outputs(folder) -> dict | None:
    path = Path(folder) / OUTPUTS
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _context():
    """multiprocessing's forkserver: a clean process (no threads) that has imported this module
    once forks every round's worker, so a round starts at once instead of importing numpy,
    scipy and scikit-learn in a fresh interpreter first (docs/app.md, How it is built)."""
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():     # (Windows): a fresh interpreter
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__, "npvae.app.command", "npvae.training.loop",
                                "npvae.training.checkpoint"])
    return ctx


PREPARED = threading.Event()      # the app asked for the fork server to start


def prepare() -> None:
    """Start the fork server now (the app calls it in a thread when the page opens), not at
    the first round."""
    if _context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def start_round(folder, epochs: int, until: int | None = None):
    """Start a round in a new process (forked by the fork server); returns the
    multiprocessing.Process. Until the worker writes its own, progress.json says "running"
    under this process's pid. until: the last epoch of a stopped round to finish (then
    `epochs` is only what progress shows)."""
    folder = Path(folder)
    (folder / STOP).unlink(missing_ok=True)
    last = read_progress(folder)
    again = last.get("status") in ("stopped", "interrupted")     # Continue: the same round
    round_no = int(last.get("round", 0)) + (not again)
    _write_progress(folder, {"status": "running", "pid": os.getpid(), "round": round_no,
                             "epochs": epochs, "history": [], "message": "starting"})
    proc = _context().Process(target=train_round, name="npvae-app-round", daemon=False,
                              args=(str(folder), int(epochs), round_no, os.getpid(), until))
    proc.start()
    return proc


def train_round(folder: str, epochs: int, round_no: int = 1, parent: int | None = None,
                until: int | None = None) -> None:
    """The worker: see the module doc. Every failure ends as progress.json status "failed"."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the app; the round then sees
    folder = Path(folder)                         # it gone and stops after its step, cleanly
    prog = {"status": "running", "pid": os.getpid(), "epochs": epochs, "history": [],
            "started": time.time(), "round": round_no}
    try:
        _train(folder, epochs, parent, prog, until)
    except Exception as err:       # noqa: BLE001 - the page shows it
        prog.update(status="failed", message=f"{type(err).__name__}: {err}",
                    trace=traceback.format_exc(limit=5))
        _write_progress(folder, prog)


def _write_progress(folder: Path, prog: dict) -> None:
    prog["time"] = time.time()
    write_text(folder / PROGRESS, json.dumps(prog, allow_nan=False,
                                             default=lambda v: None) + "\n")


def _train(folder: Path, epochs: int, parent, prog: dict, until: int | None) -> None:
    from npvae.training.checkpoint import (ResumeWriter, load_resume, save_checkpoint,
                                           save_resume)
    from npvae.training.loop import fit

    cfg = R.read_config(folder)
    x, y, splits = load_app_data(cfg)
    y_known = LabelStore(folder, len(x), cfg.num_classes).y_known()
    prog["labels"] = int((y_known >= 0).sum())
    state_path = folder / STATE
    state = load_resume(state_path, cfg, len(splits.train)) if state_path.is_file() else None
    first = 1 if state is None else state.epoch
    end = max(until or 0, first - 1 + (0 if until else epochs))   # a cut epoch counts
    prog.update(first_epoch=first, last_epoch=end, epoch=first - 1)
    _write_progress(folder, prog)
    stop = folder / STOP

    def should_stop() -> bool:
        return stop.exists() or (parent is not None and not _alive(parent))

    def epoch_end(st) -> None:
        writer.submit(st)                          # the state, written in the background
        h = st.history
        row = {"epoch": h["epoch"][-1], "loss": h["train_loss"][-1],
               "val_loss": h["val_loss"][-1], "accuracy": _accuracy(st.params, cfg, x, y,
                                                                    splits.val)}
        prog["history"].append({**{k: _finite(v) for k, v in row.items()}, "epoch": st.epoch - 1})
        prog.update(epoch=st.epoch - 1, loss=_finite(row["loss"]),
                    val_loss=_finite(row["val_loss"]), accuracy=_finite(row["accuracy"]))
        _write_progress(folder, prog)

    with ResumeWriter(state_path, cfg) as writer:
        res = fit(cfg.replace(epochs=end, patience=max(end, 1)), x, y_known, splits.train,
                  splits.val, progress=False, state=state, should_stop=should_stop,
                  on_epoch_end=epoch_end)
    if res.diverged:
        raise RuntimeError(f"training {res.diverged}")
    if res.interrupted:
        save_resume(state_path, res.state, cfg)
    done_epoch = res.history["epoch"][-1] if res.history["epoch"] else first - 1
    write_outputs(folder, res.params, cfg, x, y_known, prog["round"], done_epoch)
    save_checkpoint(folder / R.FINAL, res.params, cfg)
    gone = parent is not None and not _alive(parent)
    prog["status"] = "done" if not res.interrupted else "stopped"
    if res.interrupted:
        prog["message"] = ("the app closed; continue this round from the page"
                           if gone else "stopped; Continue finishes the round")
    _write_progress(folder, prog)


def _accuracy(p, cfg, x, y, val) -> float:
    """Held-out accuracy of the model's first predictor on the validation images, or NaN
    when the data has no labels."""
    if y is None:
        return float("nan")
    _, probs, _, _ = scores(p, cfg, x[val], np.full(len(val), -1))
    return M.accuracy(probs, np.asarray(y)[val])


def _finite(v):
    v = float(v)
    return v if math.isfinite(v) else None
