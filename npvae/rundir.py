"""The run folder: what a run writes, and how to read it back.

    <run>/REPORT.md            the report (seed layout)
    <run>/summary.json         every metric, usage per component, pi
    <run>/history.csv          one row per epoch: every term for train_ and val_, pi_k, usage_k
    <run>/config.toml          the fully resolved config (re-runnable with --config)
    <run>/run.json             the command line, data source, timings
    <run>/checkpoints/best.npz, final.npz      (npvae.checkpoint.load_checkpoint)
    <run>/checkpoints/resume.npz               only while the run is interrupted (--resume)
    <run>/*.png, visualizations/mixture/model_evolution.png    the eight figures

Every file is written atomically (temporary file, then rename).
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from .checkpoint import load_checkpoint
from .cli import read_toml, write_toml
from .config import Config
from .fileio import write_text

HISTORY_FILE, SUMMARY_FILE, CONFIG_FILE, RUN_FILE = ("history.csv", "summary.json",
                                                      "config.toml", "run.json")
BEST, FINAL = "checkpoints/best.npz", "checkpoints/final.npz"
RESUME = "checkpoints/resume.npz"


def write_json(path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, allow_nan=True) + "\n")


def write_config(run_dir, cfg: Config, preset: str | None = None) -> Path:
    """The full resolved config; a run made with a preset names it in a first comment (the
    preset's values are among the settings, so `--config config.toml` reruns it)."""
    head = (f"# preset {preset}: its settings are included below, so --config reruns this "
            f"run without --preset\n" if preset else "")
    return write_text(Path(run_dir) / CONFIG_FILE, head + write_toml(cfg))


def read_config(run_dir) -> Config:
    return Config.from_dict(read_toml(Path(run_dir) / CONFIG_FILE)).validate()


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
    from . import summary as S
    from .data import load_data
    from .report import write_report

    run_dir = Path(run_dir)
    if not (run_dir / SUMMARY_FILE).is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no {SUMMARY_FILE}).")
    params, cfg = load_checkpoint(run_dir / FINAL)
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    run = json.loads((run_dir / RUN_FILE).read_text())
    history = read_history(run_dir)
    x, y, splits = load_data(cfg)
    S.draw_figures(run_dir, params, cfg, x, y, splits, history)
    return write_report(run_dir, summary, report_config(cfg, len(y)), run["header"],
                        run.get("notes"))


def report_config(cfg: Config, n: int) -> dict:
    """The config as the report shows it, with the resolved number of images."""
    return {**cfg.to_dict(), "num_samples": n}
