"""One grid point of a sweep, in a worker process (a local joblib worker or a Dask worker):
the run command with the point's flags, its output to a log, then the baselines on its split.
"""
from __future__ import annotations

import contextlib
import json
import time
import traceback
from pathlib import Path

from npvae.engine.threads import process_share
from npvae.reporting.baselines import BASELINES
from npvae.runs import runner
from npvae.training.cli import resolve
from npvae.training.data import load_data, load_fitted


def run_one(argv: list[str], run_dir: str, log_path: str, threads: int) -> dict:
    """One grid point, in a worker process: npvae.runs.runner.main with the point's flags (its
    output to the log), then the baselines on its split. Never raises: a failure is in the
    returned dict's status and error."""
    t0 = time.perf_counter()
    row = {"status": "ok", "error": ""}
    with open(log_path, "w") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log), process_share(threads):
        try:
            code = runner.main([*argv, "--out", run_dir, "--no-progress"])
        except BaseException:                             # noqa: BLE001 - reported in its row
            traceback.print_exc()
            code = None
    row["seconds"] = time.perf_counter() - t0
    if code != 0:
        lines = Path(log_path).read_text().strip().splitlines() or ["(no output)"]
        errors = [line for line in lines if line.startswith("error:")]
        row["status"] = {3: "diverged", 130: "interrupted", 143: "interrupted"}.get(code, "error")
        row["error"] = errors[-1] if errors else lines[-1]
    summary = Path(run_dir) / "summary.json"
    if summary.is_file():
        row["summary"] = json.loads(summary.read_text())
        row["fit_seconds"] = json.loads((Path(run_dir) / "run.json").read_text())["fit_seconds"]
    try:                                                  # the same split as the run's
        cfg, sources = resolve(runner.build_parser().parse_args(argv))
        cfg, ds = load_fitted(cfg, sources)
        x, y, splits = load_data(cfg, ds)
        row["baselines"] = {name: fn(x, y, splits) for name, fn in BASELINES.items()}
    except Exception as err:                              # noqa: BLE001 - reported, not raised
        row["baselines"] = {}
        row["error"] = (row["error"] + f"; baselines failed: {err}").strip("; ")
    return row
