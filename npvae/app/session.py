"""One open run folder: its data, the model's outputs, the labelling queue and training.

The server holds one Session at a time (opening another run replaces it) and calls it from
several threads; a lock keeps its state consistent. The model's outputs (outputs.npz) change
only when a training round ends; `progress()` notices the new file and bumps `version`, the
page then fetches the points and the queue again.
"""
from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

import numpy as np

from npvae.core.params import init_params
from npvae.experiments.active.loop import STRATEGY_NAMES, pool_mask
from npvae.experiments.active.query import STRATEGIES, candidates
from npvae.reporting.images import class_names
from npvae.runs import rundir as R
from npvae.training.checkpoint import CheckpointError, load_checkpoint
from npvae.training.fileio import atomic_write
from npvae.training.loop import make_rngs

from . import worker as W
from .components import components_view
from .images import load_app_data
from .labels import LabelStore

DEFAULT_STRATEGY = "typical"      # best at small budgets (docs/active-learning.md)
CANDIDATES = 5000    # the strategies choose among this many random unlabelled images at most
SELECTION = 200      # a lasso selection queues at most this many images


class Busy(RuntimeError):
    """A training round is running; the request must wait for it (HTTP 409)."""


class Session:
    def __init__(self, folder, round_epochs: int = 10, batch: int = 12,
                 strategy: str = DEFAULT_STRATEGY):
        self.folder = Path(folder)
        self.cfg = R.read_config(self.folder)
        self.x, self.y, self.splits = load_app_data(self.cfg)
        self.shape = image_shape(self.cfg, self.x.shape[1])
        self.classes = class_names(self.cfg)
        self.labels = LabelStore(self.folder, len(self.x), self.cfg.num_classes)
        self.pool = pool_mask(len(self.x), self.splits.train)
        self.round_epochs, self.batch, self.strategy = round_epochs, batch, strategy
        self.lock = threading.RLock()
        self.proc = None
        self.queue: list[int] = []
        self.selected: set[int] = set()      # the queue is a lasso selection: source "lasso"
        self._components: bytes | None = None
        self._ahead: list | None = None        # the next batch: [(version, strategy), Event, batch]
        self.version, self._stamp = 0, None
        self._points: bytes | None = None
        self.outputs = W.read_outputs(self.folder)
        if (self.outputs is None or len(self.outputs["xy"]) != len(self.x)
                or "comp_images" not in self.outputs):
            self.outputs = self._first_outputs()
        self._stamp = self._outputs_stamp()

    # ------------------------------------------------------------------ model outputs
    def _first_outputs(self) -> dict:
        """Outputs of the last weights in the folder (checkpoints/final.npz), or of the
        untrained model (the seed's initial weights) before any round."""
        try:
            p, _ = load_checkpoint(self.folder / R.FINAL)
        except CheckpointError:
            p = init_params(self.cfg, make_rngs(self.cfg.seed)["init"])   # what training starts from
        return W.write_outputs(self.folder, p, self.cfg, self.x, self.labels.y_known())

    def _outputs_stamp(self):
        try:
            return (self.folder / W.OUTPUTS).stat().st_mtime_ns
        except OSError:
            return None

    def _reload_if_new(self) -> None:
        stamp = self._outputs_stamp()
        if stamp != self._stamp:
            out = W.read_outputs(self.folder)
            if out is not None and len(out["xy"]) == len(self.x):
                self.outputs, self._stamp = out, stamp
                self.version += 1
                self._points, self._components, self.queue = None, None, []
                self.selected = set()

    def points_json(self) -> bytes:
        """The scatter's data (cached until the outputs change): 2-D coordinates, predicted
        class, component, uncertainty (1 - largest probability) and the data's own labels
        when it has them; the labels given are in state(). The page asks for the queue next:
        its batch starts being chosen now; and the process that forks training rounds starts
        (once), so that the first Train starts at once."""
        with self.lock:
            self._prefetch()
            if not W.PREPARED.is_set():
                W.PREPARED.set()
                threading.Thread(target=W.prepare, name="npvae-forkserver", daemon=True).start()
            if self._points is None:
                o = self.outputs
                probs = o["probs"].astype(np.float64)
                data = {"version": self.version, "n": len(self.x),
                        "x": np.round(o["xy"][:, 0].astype(np.float64), 4).tolist(),
                        "y": np.round(o["xy"][:, 1].astype(np.float64), 4).tolist(),
                        "pred": probs.argmax(axis=1).tolist(),
                        "comp": o["q"].argmax(axis=1).tolist(),
                        "unc": np.round(1.0 - probs.max(axis=1), 3).tolist(),
                        "truth": None if self.y is None else self.y.tolist()}
                self._points = json.dumps(data, separators=(",", ":")).encode()
            return self._points

    def components_json(self) -> bytes:
        """The Components view (npvae/app/components.py), cached until the outputs or the
        labels change."""
        with self.lock:
            if self._components is None:
                view = components_view(self.outputs, self.labels.y_known(), self.y,
                                       self.cfg.num_classes, self.shape, self.classes)
                view.update(version=self.version, labels=len(self.labels.rows))
                self._components = json.dumps(view, separators=(",", ":")).encode()
            return self._components

    def info(self, i: int) -> dict:
        """One image's model view: its top-3 classes, component and label (if given)."""
        if not 0 <= i < len(self.x):
            raise IndexError(f"image {i} does not exist (0..{len(self.x) - 1}).")
        probs = self.outputs["probs"][i].astype(np.float64)
        top = np.argsort(-probs, kind="stable")[:3]
        known = int(self.labels.y_known()[i])
        return {"index": i, "guess": int(top[0]),
                "top3": [[int(c), round(float(probs[c]), 4)] for c in top],
                "component": int(self.outputs["q"][i].argmax()),
                "label": known if known >= 0 else None,
                "split": "train" if self.pool[i] else "held-out"}

    # ------------------------------------------------------------------ the queue
    def _next_batch(self, taken=()) -> list[int]:
        with self.lock:
            y_known = self.labels.y_known()
            free = self.pool.copy()
            free[list(self.labels.skipped) + list(taken)] = False
            o = self.outputs
        rng = np.random.default_rng([self.cfg.seed, 24, int((y_known >= 0).sum())])
        cand = candidates(y_known, free)
        if cand.size > CANDIDATES:          # `typical` on every image of a large set takes
                                            # seconds a batch (docs/app.md, Speed)
            free[:] = False
            free[rng.choice(cand, CANDIDATES, replace=False)] = True
        idx = STRATEGIES[self.strategy](o["probs"], o["q"], y_known, free, self.batch, rng,
                                        emb=o["mu"])
        return [int(i) for i in idx]

    def queue_items(self) -> list[dict]:
        """The images to label next; a used-up batch is replaced by the strategy's next one
        (computed outside the lock: `typical` takes seconds on 60,000 images, and labels,
        progress and hovers must not wait for it)."""
        with self.lock:
            self.queue = self._labellable(self.queue)
            version, strategy = self.version, self.strategy
        if not self.queue:
            with self.lock:
                ahead, self._ahead = self._ahead, None
            batch = []
            if ahead is not None and ahead[0] == (version, strategy):
                ahead[1].wait()                 # chosen while the last images were labelled
                with self.lock:
                    batch = self._labellable(ahead[2] or [])
            batch = batch or self._next_batch()
            with self.lock:
                if not self.queue and (version, strategy) == (self.version, self.strategy):
                    self.queue, self.selected = batch, set()
        with self.lock:
            return [self.info(i) for i in self.queue]

    def _prefetch(self) -> None:
        """(With the lock held.) When half the queue is used up, start choosing the batch
        after it in a thread, the images still in the queue counting as taken: the page then
        need not wait for the strategy at the end of a batch."""
        key = (self.version, self.strategy)
        left = self._labellable(self.queue)
        if 2 * len(left) > self.batch or (self._ahead is not None and self._ahead[0] == key):
            return
        ahead = self._ahead = [key, threading.Event(), None]

        def choose():
            try:
                ahead[2] = self._next_batch(left)
            except Exception:     # noqa: BLE001 - the queue then chooses when it needs to
                ahead[2] = None
            finally:
                ahead[1].set()

        threading.Thread(target=choose, name="npvae-next-batch", daemon=True).start()

    def set_strategy(self, name: str) -> None:
        if name not in STRATEGIES:
            raise ValueError(f"strategy {name!r} is not known: use one of "
                             f"{', '.join(STRATEGY_NAMES)}.")
        with self.lock:
            self.strategy, self.queue, self.selected = name, [], set()

    def inspect(self, indices) -> dict:
        """A lasso or box selection of the scatter: every selected image's model view (the
        first SELECTION of them) and how many of them could be labelled."""
        idx = _indices(indices, len(self.x))
        with self.lock:
            return {"selected": len(idx), "items": [self.info(i) for i in idx[:SELECTION]],
                    "to_label": len(self._labellable(idx))}

    def select(self, indices) -> list[dict]:
        """Make a selection the queue: its training-split images not labelled or skipped yet
        (at most SELECTION), labelled one by one with the usual keys (source "lasso"); when
        it is used up the strategy's batches come back."""
        idx = _indices(indices, len(self.x))
        with self.lock:
            todo = self._labellable(idx)[:SELECTION]
            if not todo:
                raise ValueError("the selection holds no training image left to label.")
            self.queue, self.selected = todo, set(todo)
            return [self.info(i) for i in self.queue]

    def _labellable(self, idx: list[int]) -> list[int]:
        y_known = self.labels.y_known()
        return [i for i in idx if self.pool[i] and y_known[i] < 0
                and i not in self.labels.skipped]

    def label(self, i: int, label: int) -> dict:
        with self.lock:
            source = "lasso" if i in self.selected else f"queue:{self.strategy}"
            self.labels.label(i, label, source)
            self._components = None
            self._prefetch()
            return {"index": i, "label": label, "source": source}

    def skip(self, i: int) -> dict:
        with self.lock:
            self.labels.skip(i)
            self._prefetch()
            return {"index": i, "skipped": True}

    def undo(self) -> dict | None:
        """Take back the last label or skip; its image goes back to the front of the queue."""
        with self.lock:
            done = self.labels.undo()
            self._components = None
            if done is not None:
                i = done["index"]
                known = int(self.labels.y_known()[i])
                done["label"] = known if known >= 0 else None
                if known < 0 and i not in self.labels.skipped:
                    self.queue = [i] + [j for j in self.queue if j != i]
            return done

    # ------------------------------------------------------------------ training
    def _progress(self) -> dict:
        """progress.json, read as W.read_progress does; a round this app started whose process
        ended before writing anything (it failed to start) reads as "failed"."""
        prog = W.read_progress(self.folder)
        if prog["status"] == "running" and prog.get("pid") == os.getpid() and not (
                self.proc is not None and self.proc.is_alive()):
            prog = W.read_progress(self.folder)          # (it may have just written)
            if prog["status"] == "running" and prog.get("pid") == os.getpid():
                prog.update(status="failed", message="the training process ended before it "
                                                     "started; the terminal says why")
        return prog

    def busy(self) -> bool:
        """A round is running (or starting). A worker that wrote its last progress but has
        not exited yet is not busy."""
        return self._progress()["status"] == "running"

    def train(self, epochs: int | None = None, resume: bool = False) -> dict:
        """Start a round of `epochs` epochs (default round_epochs); resume: finish the stopped
        or interrupted round (up to its last epoch, whatever epoch its state is at)."""
        with self.lock:
            last = self._progress()
            if last["status"] == "running":
                raise Busy("a training round is running; stop it first or wait for it.")
            until = None
            if resume and last["status"] in ("stopped", "interrupted") and "last_epoch" in last:
                until = int(last["last_epoch"])
                epochs = max(1, until - int(last["epoch"]))
            if resume and not epochs:                   # cut before its first epoch ended
                epochs = last.get("epochs")
            epochs = int(epochs or self.round_epochs)
            if not 1 <= epochs <= 10_000:
                raise ValueError(f"epochs {epochs} is not allowed: give 1 to 10000.")
            self.proc = W.start_round(self.folder, epochs, until)
            return {"started": True, "epochs": epochs, "pid": self.proc.pid}

    def stop(self) -> dict:
        (self.folder / W.STOP).touch()
        return {"stopping": self.busy()}

    def progress(self) -> dict:
        with self.lock:
            self._reload_if_new()
            return {**self._progress(), "version": self.version}

    def state(self) -> dict:
        with self.lock:
            y_known = self.labels.y_known()
            cfg = self.cfg
            return {"folder": str(self.folder), "name": self.folder.name, "n": len(self.x),
                    "num_classes": cfg.num_classes, "class_names": list(self.classes),
                    "image_shape": None if self.shape is None else list(self.shape),
                    "model": cfg.model, "K": cfg.K,
                    "latent_dim": cfg.latent_dim, "has_truth": self.y is not None,
                    "train_images": int(self.pool.sum()), "strategy": self.strategy,
                    "strategies": list(STRATEGY_NAMES), "round_epochs": self.round_epochs,
                    "labels": [[r["index"], r["label"]] for r in self.labels.rows],
                    "skipped": len(self.labels.skipped), "version": self.version,
                    "counts": np.bincount(y_known[y_known >= 0],
                                          minlength=cfg.num_classes).tolist()}

    # ------------------------------------------------------------------ export
    def export(self) -> bytes:
        """The labelled images as a .npz, also written to the run folder as labeled.npz, so
        that `python -m npvae.run --data` reads it: x uint8 (n, H, W) for grey images,
        (n, H, W, C) channel-last for colour ((n, D) when the shape is unknown), y (n,),
        index (n,) into the run's images, classes (C,) the classes' names."""
        rows = sorted(self.labels.rows, key=lambda r: r["index"])
        idx = np.array([r["index"] for r in rows], np.int64)
        x = np.rint(self.x[idx] * 255).astype(np.uint8)                # (n, D), channel-first
        if self.shape is not None:
            H, W, C = self.shape
            x = x.reshape(len(idx), C, H, W).transpose(0, 2, 3, 1)      # (n, H, W, C)
            x = x[..., 0] if C == 1 else x
        buf = io.BytesIO()
        np.savez(buf, x=x, y=np.array([r["label"] for r in rows], np.int64), index=idx,
                 classes=np.array(self.classes, dtype=str))
        data = buf.getvalue()
        atomic_write(self.folder / "labeled.npz", lambda fh: fh.write(data))
        return data


def open_session(folder, round_epochs: int, batch: int, strategy: str):
    """(Session, RunLock) of a run folder: the folder locked (FolderInUse says who holds it),
    a killed process's temporary files removed, the session built; the lock is released
    again when that fails."""
    lock = R.RunLock(folder)
    lock.acquire()
    try:
        R.remove_temporary_files(folder)
        return Session(folder, round_epochs, batch, strategy), lock
    except BaseException:
        lock.release()                  # (the app's process may go on, e.g. with another run)
        raise


def image_shape(cfg, D: int) -> tuple[int, int, int] | None:
    """(H, W, C) of the run's images of D values: cfg.shape when it fits D, else None (the
    images are then drawn as strips)."""
    shape = cfg.shape
    return shape if shape is not None and int(np.prod(shape)) == D else None


def _indices(indices, n: int) -> list[int]:
    """A selection's image indices, checked, in their order without repeats."""
    if not isinstance(indices, list):
        raise ValueError("indices must be a list of image numbers.")
    idx = list(dict.fromkeys(int(i) for i in indices))
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise IndexError(f"image {bad[0]} does not exist (0..{n - 1}).")
    return idx
