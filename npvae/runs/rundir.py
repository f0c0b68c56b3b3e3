"""The run folder: what a run writes, and how to read it back.

    <run>/REPORT.md            the report (seed layout)
    <run>/summary.json         every metric, usage per component, pi
    <run>/history.csv          one row per epoch: every term for train_ and val_, pi_k, usage_k
                               (model gmm: also heldout_acc, cons_loss, cons_confident)
    <run>/config.toml          the fully resolved config (re-runnable with --config), each
                               given setting's line ending in where it came from
    <run>/run.json             the command line, data source, timings, the settings' sources
    <run>/checkpoints/best.npz, final.npz      (npvae.training.checkpoint.load_checkpoint)
    <run>/checkpoints/resume.npz               from the first epoch end until the run ends
    <run>/*.png, visualizations/mixture/model_evolution.png    the eight figures
    <run>/.npvae.lock          the folder's lock (see RunLock), holding its last owner's pid

Every file is written atomically (temporary file, then rename).
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no folder locks
    fcntl = None

import numpy as np

from npvae.core.config import Config
from npvae.training.checkpoint import load_checkpoint
from npvae.training.fileio import WriteError, is_temporary, write_text
from npvae.training.tomlfile import config_from_toml, write_toml

HISTORY_FILE, SUMMARY_FILE, CONFIG_FILE, RUN_FILE = ("history.csv", "summary.json",
                                                      "config.toml", "run.json")
BEST, FINAL = "checkpoints/best.npz", "checkpoints/final.npz"
RESUME = "checkpoints/resume.npz"
LOCK_FILE = ".npvae.lock"


def write_json(path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, allow_nan=True) + "\n")


def write_config(run_dir, cfg: Config, preset: str | None = None,
                 sources: dict | None = None) -> Path:
    """The full resolved config; a run made with a preset names it in a first comment (the
    preset's values are among the settings, so `--config config.toml` reruns it). sources
    {setting: "preset" | "config" | "flag" | "data"} (npvae.training.cli.resolve, and
    from_data) end the lines of the settings given, so that a reader sees which ones the
    run chose and which the data decided."""
    head = (f"# preset {preset}: its settings are included below, so --config reruns this "
            f"run without --preset\n" if preset else "")
    said = {"preset": f"preset {preset}", "config": "--config", "flag": "flag",
            "data": "the data"}
    notes = {k: f"from {said[v]}" for k, v in (sources or {}).items()}
    return write_text(Path(run_dir) / CONFIG_FILE, head + write_toml(cfg, notes))


def from_data(asked: Config, fitted: Config) -> dict:
    """{setting: "data"} for the settings that fit_to_data changed (asked -> fitted)."""
    return {k: "data" for k, v in fitted.to_dict().items() if v != asked.to_dict()[k]}


def read_config(run_dir) -> Config:
    return config_from_toml(Path(run_dir) / CONFIG_FILE)


def write_history(run_dir, history: dict) -> Path:
    """history dict (lists per key; pi and usage (E, K)) -> one CSV row per epoch."""
    scalar = [k for k in history if k not in ("pi", "usage")]
    pi, usage = np.asarray(history["pi"]), np.asarray(history["usage"])
    K = pi.shape[1] if pi.ndim == 2 else 0
    header = scalar + [f"pi_{k}" for k in range(K)] + [f"usage_{k}" for k in range(K)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for e in range(len(history["epoch"])):
        w.writerow([history[k][e] for k in scalar] + list(pi[e]) + list(usage[e]))
    return write_text(Path(run_dir) / HISTORY_FILE, buf.getvalue())


def read_history(run_dir) -> dict:
    """Inverse of write_history."""
    with open(Path(run_dir) / HISTORY_FILE, newline="") as fh:
        rows = list(csv.DictReader(fh))
    keys = list(rows[0]) if rows else []
    hist = {k: [float(r[k]) for r in rows] for k in keys
            if not k.startswith(("pi_", "usage_"))}
    hist["epoch"] = [int(e) for e in hist.get("epoch", [])]
    for name in ("pi", "usage"):
        cols = [k for k in keys if k.startswith(name + "_")]
        hist[name] = [[float(r[c]) for c in cols] for r in rows]
    return hist


def rerender(run_dir) -> Path:
    """Re-draw the figures and REPORT.md of a finished run from its files (no training)."""
    run_dir = Path(run_dir)
    if not (run_dir / SUMMARY_FILE).is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no {SUMMARY_FILE}).")
    with RunLock(run_dir) as lock:                 # not while a run writes there
        lock.acquire()
        return _rerender(run_dir)


def _rerender(run_dir: Path) -> Path:
    from npvae.reporting import summary as S
    from npvae.reporting.plots import has_curves
    from npvae.reporting.report import write_report
    from npvae.training.data import load_data

    params, cfg = load_checkpoint(run_dir / FINAL)
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    run = json.loads((run_dir / RUN_FILE).read_text())
    history = read_history(run_dir)
    x, y, splits = load_data(cfg)
    S.draw_figures(run_dir, params, cfg, x, y, splits, history)
    return write_report(run_dir, summary, report_config(cfg, len(y)), run["header"],
                        run.get("notes"), curves=has_curves(history))


def report_config(cfg: Config, n: int) -> dict:
    """The config as the report shows it, with the resolved number of images."""
    return {**cfg.to_dict(), "num_samples": n}


# ------------------------------------------------------------------ one run per folder

class FolderInUse(ValueError):
    """Another live process holds the run folder's lock; the message names its pid."""


class RunLock:
    """An exclusive OS lock (flock) on <run>/.npvae.lock, held while a run or a resume
    writes into the folder. The kernel drops it when the process ends in any way (kill -9,
    a crash), so no stale lock is ever left; the file itself stays (deleting it could let
    two runs lock two different files) and holds the pid of its last owner.

        with RunLock(run_dir) as lock:    # nothing happens yet
            lock.acquire()                # FolderInUse naming the holder, or WriteError
    """

    def __init__(self, run_dir):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> None:
        if self.fd is not None or fcntl is None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise WriteError(self.path, err) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderInUse(self.busy_message()) from None
        except OSError as err:              # e.g. ENOLCK: a file system without locks
            os.close(fd)
            raise WriteError(self.path, err, verb="lock") from err
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as err:
            os.close(fd)
            raise WriteError(self.path, err) from err
        self.fd = fd

    def holder(self) -> str | None:
        """The pid holding the lock (as text; "unknown" if it has not written it yet), or
        None when the folder is free. Probes by taking and dropping a shared lock."""
        if fcntl is None or not self.path.is_file():
            return None
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:                     # unreadable: acquire() will say what is wrong
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)                    # (also drops the probe's lock)
        return None

    def busy_message(self) -> str:
        pid = self.holder() or "unknown"
        return (f"run folder {self.path.parent} is in use by another npvae run (pid {pid}); "
                f"wait for it to end (or stop it), or choose another folder.")

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def remove_temporary_files(run_dir) -> list[Path]:
    """Delete the temporary files of atomic writes that a killed process left in the run
    folder (only while holding its lock: then no write is in progress)."""
    stale = [p for p in Path(run_dir).rglob(".*.tmp") if p.is_file() and is_temporary(p)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def report_main(argv=None) -> int:
    """`python -m npvae.report RUN_DIR`: re-draw the figures and REPORT.md of a finished run
    from its checkpoint, history and summary, without retraining."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m npvae.report", description=report_main.__doc__)
    ap.add_argument("run_dir", help="a folder written by python -m npvae.run")
    args = ap.parse_args(argv)
    try:
        print(f"report: {rerender(args.run_dir)}")
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
