"""The labels a person gave, kept in the run folder as labels.csv and written atomically (a
temporary file, then os.replace, through npvae.training.fileio) at every change, so closing
the tab, a crash or kill -9 loses nothing that was answered.

    labels.csv    index,label,time,source   one row per labelled image, in the order given
                  (index into the run's images; label 0..C-1; time as Unix seconds; source,
                  e.g. "queue:typical")
    skipped.json  the images skipped with `s` (never proposed again); undo can bring one back

Training reads exactly the rows of labels.csv (LabelStore.y_known).
"""
from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import numpy as np

from npvae.training.fileio import write_text

LABELS_FILE, SKIPPED_FILE = "labels.csv", "skipped.json"
HEADER = ("index", "label", "time", "source")


class LabelError(ValueError):
    """labels.csv cannot be read, or a label / index is out of range."""


def read_labels(path) -> list[dict]:
    """The rows of a labels.csv ([] when there is none), checked."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != HEADER:
            raise LabelError(f"{path} is not a labels file: its header is "
                             f"{reader.fieldnames}, not {','.join(HEADER)}.")
        try:
            return [{"index": int(r["index"]), "label": int(r["label"]),
                     "time": float(r["time"]), "source": r["source"]} for r in reader]
        except (TypeError, ValueError) as err:
            raise LabelError(f"{path} has a row that is not index,label,time,source "
                             f"({err}).") from None


def labels_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    for r in rows:
        w.writerow([r["index"], r["label"], f"{r['time']:.3f}", r["source"]])
    return buf.getvalue()


class LabelStore:
    """labels.csv and skipped.json of one run folder, for n images and C classes. Every
    change is written before the method returns; `undo` takes back the last label or skip
    (of this session, or the last label in the file after a restart)."""

    def __init__(self, folder, n: int, num_classes: int):
        self.folder, self.n, self.C = Path(folder), n, num_classes
        self.rows = read_labels(self.folder / LABELS_FILE)
        bad = [r for r in self.rows if not (0 <= r["index"] < n and 0 <= r["label"] < num_classes)]
        if bad:
            raise LabelError(f"{self.folder / LABELS_FILE} has index {bad[0]['index']} label "
                             f"{bad[0]['label']}, outside the {n} images and {num_classes} "
                             f"classes of this run.")
        skipped = self.folder / SKIPPED_FILE
        self.skipped = set(json.loads(skipped.read_text())) if skipped.is_file() else set()
        self.actions: list[tuple] = [("label", r["index"], None) for r in self.rows]

    def y_known(self) -> np.ndarray:
        """(n,) int64: the label of every labelled image, -1 elsewhere."""
        y = np.full(self.n, -1, np.int64)
        for r in self.rows:
            y[r["index"]] = r["label"]
        return y

    def _find(self, index: int):
        return next((r for r in self.rows if r["index"] == index), None)

    def _check(self, index: int) -> None:
        if not 0 <= index < self.n:
            raise LabelError(f"image {index} does not exist (0..{self.n - 1}).")

    def label(self, index: int, label: int, source: str) -> None:
        self._check(index)
        if not 0 <= label < self.C:
            raise LabelError(f"label {label} is not a class (0..{self.C - 1}).")
        before = self._find(index)
        if before is not None:
            self.rows.remove(before)
        self.rows.append({"index": index, "label": label, "time": time.time(),
                          "source": source})
        self.actions.append(("label", index, before))
        self._write_labels()

    def skip(self, index: int) -> None:
        self._check(index)
        self.skipped.add(index)
        self.actions.append(("skip", index, None))
        self._write_skipped()

    def undo(self) -> dict | None:
        """Take back the last action; returns {"undone": "label"|"skip", "index": i} or None."""
        if not self.actions:
            return None
        kind, index, before = self.actions.pop()
        if kind == "skip":
            self.skipped.discard(index)
            self._write_skipped()
        else:
            row = self._find(index)
            if row is not None:
                self.rows.remove(row)
            if before is not None:
                self.rows.append(before)
            self._write_labels()
        return {"undone": kind, "index": index}

    def _write_labels(self) -> None:
        write_text(self.folder / LABELS_FILE, labels_text(self.rows))

    def _write_skipped(self) -> None:
        write_text(self.folder / SKIPPED_FILE, json.dumps(sorted(self.skipped)) + "\n")
