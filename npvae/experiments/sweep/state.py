"""What a sweep keeps so that `python -m npvae.sweep --resume SWEEP_DIR` can finish it.

    <sweep>/sweep.json          the sweep's own command line, its run names and the data's
                                fingerprints (written before any run starts)
    <sweep>/rows/<run>.json     a finished run's result row (status, its summary, baselines,
                                times); written last, after the run's folder and log are
                                complete, so its presence is what "finished" means

    save_plan(out, argv, names, inputs)   sweep.json
    load_plan(sweep_dir)                  its dict; SweepStateError if there is none
    inputs(points, cfgs)                  SHA-256 of the data sets and --config files read
    changed_inputs(plan, now)             those that changed since sweep.json was written
    finished_rows(out, names)             {index: row} of the runs --resume skips
    save_row(out, name, row)              the marker of a finished run
    place_run(out, name, files, log)      a run folder made from a Dask task's files, atomically

A run that ended as ok or diverged is finished (running it again gives the same result); a
run that failed otherwise (an exception, an interruption) or never ended runs again, in a
fresh folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from npvae.training.fileio import WriteError, atomic_write, write_text

SWEEP_FILE, ROWS_DIR, LOGS_DIR = "sweep.json", "rows", "logs"
FINISHED = ("ok", "diverged")


class SweepStateError(ValueError):
    """sweep.json is missing, unreadable, or does not match the sweep it describes."""


def save_plan(out: Path, argv: list[str], names: list[str], inputs: dict[str, dict]) -> Path:
    """sweep.json; `inputs` is inputs()'s {"data_sha256": ..., "config_sha256": ...}."""
    plan = {"command": ["python", "-m", "npvae.sweep", *argv], "argv": list(argv),
            "runs": list(names), **inputs, "resumed": []}
    return _write_json(Path(out) / SWEEP_FILE, plan)


def load_plan(sweep_dir) -> dict:
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.is_file():
        raise SweepStateError(f"--resume {sweep_dir}: not a sweep folder (no {SWEEP_FILE} in "
                              f"it; a sweep writes it when it starts).")
    try:
        plan = json.loads(path.read_text())
        plan["argv"], plan["runs"], plan["data_sha256"]           # noqa: B018 - must exist
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SweepStateError(f"--resume {sweep_dir}: {path} is damaged ({err}); start the "
                              f"sweep again in a new folder.") from None
    return plan


def note_resumed(out: Path, plan: dict, argv: list[str]) -> None:
    plan.setdefault("resumed", []).append(["python", "-m", "npvae.sweep", *argv])
    _write_json(Path(out) / SWEEP_FILE, plan)


def inputs(points, cfgs) -> dict[str, dict[str, str]]:
    """What the grid reads, by SHA-256: "data_sha256" {source: npvae.training.data.fingerprint of
    the images and labels as loaded, before subsampling}, "config_sha256" {--config file: its
    bytes}. --resume refuses to go on when one changed."""
    from npvae.training.data import EMBEDDED, EVERY, fingerprint, load_dataset

    data = {}
    for cfg in cfgs:
        source = EMBEDDED if cfg.data is None else str(cfg.data)
        if source not in data:
            ds = load_dataset(cfg, EVERY)
            data[source] = fingerprint(ds.x, ds.y, cfg.data)["sha256"]
    configs = {str(p["config"]): hashlib.sha256(Path(p["config"]).read_bytes()).hexdigest()
               for p in points if "config" in p}
    return {"data_sha256": data, "config_sha256": configs}


def changed_inputs(plan: dict, now: dict) -> list[str]:
    """The inputs of sweep.json's `plan` that differ `now` (inputs()), in words."""
    return [f"the {what} {source} (sha256 {sha[:12]}... then, "
            f"{str(now[key].get(source))[:12]}... now)"
            for what, key in (("data", "data_sha256"), ("config file", "config_sha256"))
            for source, sha in plan.get(key, {}).items() if now[key].get(source) != sha]


def finished_rows(out: Path, names: list[str]) -> dict[int, dict]:
    """The runs to skip: {index: saved row} of those whose marker says ok or diverged."""
    done = {}
    for i, name in enumerate(names):
        path = Path(out) / ROWS_DIR / f"{name}.json"
        try:
            row = json.loads(path.read_text())
        except (OSError, ValueError):           # absent (or unreadable): run it again
            continue
        if row.get("status") in FINISHED and (Path(out) / name).is_dir():
            done[i] = row
    return done


def save_row(out: Path, name: str, row: dict) -> Path:
    return _write_json(Path(out) / ROWS_DIR / f"{name}.json", row)


def clear_run(out: Path, name: str) -> None:
    """Forget a run that must run again: its marker, then its folder (half-written or failed)."""
    (Path(out) / ROWS_DIR / f"{name}.json").unlink(missing_ok=True)
    shutil.rmtree(Path(out) / name, ignore_errors=True)


def place_run(out: Path, name: str, files: dict[str, bytes], log: str) -> Path:
    """Write a run folder from {relative path: bytes} (a Dask task's result): into a hidden
    staging folder first, then renamed to <out>/<name>, so that a folder under its final
    name is always complete; then its log."""
    out = Path(out)
    final, staging = out / name, out / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    for rel, data in files.items():
        target = staging / rel
        if not target.resolve().is_relative_to(staging.resolve()):
            raise ValueError(f"a run's file {rel!r} points outside its folder.")
        atomic_write(target, lambda fh, data=data: fh.write(data))
    staging.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(final, ignore_errors=True)
    try:
        os.replace(staging, final)
    except OSError as err:
        raise WriteError(final, err) from err
    write_text(out / LOGS_DIR / f"{name}.log", log)
    return final


def _write_json(path: Path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, allow_nan=True) + "\n")
