"""The runs beside the open one, for the page's Compare view: every folder of `root` holding
a config.toml (made by npvae.app or npvae.run), with its settings and latest metrics.

    app folder   labels = rows of labels.csv; epochs and held-out accuracy from progress.json
    run folder   labels = num_labeled; epochs and held-out accuracy from summary.json
"""
from __future__ import annotations

import json
from pathlib import Path

from npvae.core.config import ConfigError
from npvae.runs import rundir as R

from .labels import LABELS_FILE, LabelError, read_labels
from .worker import PROGRESS, read_progress


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def describe_run(folder: Path) -> dict | None:
    """One row of the Compare view, or None for a folder that is not a run."""
    if not (folder / R.CONFIG_FILE).is_file():
        return None
    try:
        cfg = R.read_config(folder)
    except (ConfigError, OSError, ValueError):
        return {"name": folder.name, "kind": "unreadable config.toml"}
    row = {"name": folder.name, "model": cfg.model, "K": cfg.K, "latent_dim": cfg.latent_dim,
           "hidden_dims": list(cfg.hidden_dims), "lr": cfg.lr, "seed": cfg.seed,
           "data": cfg.data or "embedded digits"}
    if (folder / LABELS_FILE).is_file() or (folder / PROGRESS).is_file():
        prog = read_progress(folder)              # a killed round reads as interrupted
        try:
            labels = len(read_labels(folder / LABELS_FILE))
        except LabelError:
            labels = None
        row.update(kind="app", labels=labels, epochs=prog.get("epoch"),
                   accuracy=prog.get("accuracy"), status=prog.get("status", "idle"))
    else:
        summary = _json(folder / R.SUMMARY_FILE)
        acc = summary.get("heldout_accuracy") or {}
        row.update(kind="run", labels=cfg.num_labeled, epochs=summary.get("epochs_completed"),
                   accuracy=next(iter(acc.values()), None) if isinstance(acc, dict) else None,
                   status="finished" if summary else "no summary")
    return row


def list_runs(root, current=None) -> list[dict]:
    """Rows for every run folder in root (newest first), the open one marked current."""
    root = Path(root)
    folders = sorted((p for p in root.iterdir() if p.is_dir()),
                     key=lambda p: p.stat().st_mtime, reverse=True) if root.is_dir() else []
    rows = []
    for folder in folders:
        row = describe_run(folder)
        if row is not None:
            row["current"] = current is not None and folder.resolve() == Path(current).resolve()
            rows.append(row)
    return rows
