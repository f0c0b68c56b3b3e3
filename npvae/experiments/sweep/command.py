"""`python -m npvae.sweep --seed 42 43 44 45 46 [--K 5 10] [--preset ssl]`: a grid of runs.

Every run flag (generated from Config, plus --preset and --config) takes one or more values;
the grid is the product of them. A point's values are flags of its run, so they override its
preset and --config file (`--preset ssl-cons --w-cons 10 30` varies w_cons on ssl-cons). Each
grid point is an ordinary run, `python -m npvae.run` with that point's flags
(npvae.runs.runner.main, called in a worker process), in its own folder under the sweep folder
(--out, default results/sweep_<YYYYmmdd_HHMMSS>/). Several run at once in joblib's loky worker
processes, each with its share of the cores: --jobs J processes (default: one per core, at most
one per run) x max(1, cores // J) threads, set through $NPVAE_THREADS (the fast engine's thread
count) and a BLAS limit. With --dask ADDRESS the runs are tasks on a Dask cluster instead
(npvae/experiments/sweep/cluster.py; --dask local starts one on this machine).

Every grid point is checked (flags, presets, data) before anything runs: a bad one stops the
sweep with the run command's one-sentence error, exit status 2. A run that fails (an exception,
divergence) is reported in its row of sweep.csv and SWEEP.md; the others go on; the sweep then
exits with status 1. Next to each run, the scikit-learn baselines on that run's own split
(npvae/reporting/baselines.py). The files are written by npvae/experiments/sweep/report.py:

    <sweep>/sweep.csv                  one row per run: settings, accuracies, NMI, ARI, ...
    <sweep>/SWEEP.md                   per-run table, per-setting mean/std/95% interval
    <sweep>/accuracy_by_seed.png       held-out accuracy per seed, one line per method
    <sweep>/<NNN_settings>/            the run folders (REPORT.md, ...)
    <sweep>/logs/<NNN_settings>.log    what each run printed
    <sweep>/sweep.json, rows/          the grid and the finished runs, for --resume SWEEP_DIR
                                       (npvae/experiments/sweep/state.py)
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import re
import sys
import time
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

from npvae.core.config import Config, ConfigError
from npvae.engine.threads import available_cores
from npvae.runs import runner
from npvae.runs.rundir import FolderInUse, RunLock
from npvae.training.checkpoint import CheckpointError
from npvae.training.cli import add_config_flags, add_preset_flag, resolve
from npvae.training.data import DataError, fit_to_data, load_data, load_dataset

from .worker import run_one

FIELDS = [f.name for f in fields(Config)]


def build_parser() -> argparse.ArgumentParser:
    ap = runner._Parser(
        prog="python -m npvae.sweep",
        description="Run a grid of npvae runs (the product of every flag's values) in worker "
                    "processes and write sweep.csv, SWEEP.md and accuracy_by_seed.png: "
                    "held-out accuracy per run and per setting (mean, std, 95% t-interval) "
                    "beside scikit-learn baselines on each run's own split.")
    g = ap.add_argument_group("sweep")
    g.add_argument("--out", metavar="DIR", help="sweep folder (default: "
                   "results/sweep_<YYYYmmdd_HHMMSS>)")
    g.add_argument("--overwrite", action="store_true",
                   help="allow writing into an existing, non-empty --out folder")
    g.add_argument("--jobs", type=int, metavar="N",
                   help="runs at once, each in its own process with cores // N threads "
                        "(default: one per core, at most one per run)")
    g.add_argument("--dask", metavar="ADDRESS",
                   help="run on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786), "
                        "or 'local': a LocalCluster on 127.0.0.1 with --jobs workers; needs "
                        "pip install 'npvae[dist]'")
    g.add_argument("--resume", metavar="SWEEP_DIR",
                   help="finish the sweep in SWEEP_DIR with its own grid (its sweep.json): the "
                        "runs that finished are skipped, the others run; --dask, --jobs and "
                        "--debug may be added")
    g.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    g.add_argument("--config", metavar="FILE", nargs="+",
                   help="TOML file(s) of settings; several files are a grid dimension")
    add_preset_flag(g, nargs="+")
    add_config_flags(ap, many=True)
    return ap


def grid(ns: argparse.Namespace) -> list[dict]:
    """The grid points in order (preset, config, Config's field order, the seed last; the
    last dimension varies fastest, so a setting's seeds are neighbours): one {key: value}
    per point, with every given key."""
    order = ["preset", "config", *(f for f in FIELDS if f != "seed"), "seed"]
    dims = [(k, getattr(ns, k)) for k in order if getattr(ns, k, None) is not None]
    keys = [k for k, _ in dims]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(v for _, v in dims))]


def run_argv(point: dict) -> list[str]:
    """The `python -m npvae.run` flags of one grid point (without --out)."""
    argv = []
    for key, value in point.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, (tuple, list)):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, "none" if value is None else str(value)]
    return argv


def run_name(index: int, point: dict, varied: list[str]) -> str:
    """Folder name of a run: its index and the values of the dimensions that vary."""
    parts = [f"{i:03d}" for i in [index]]
    for key in varied:
        value = point[key]
        if isinstance(value, (tuple, list)):
            value = "-".join(map(str, value))
        elif key == "config":
            value = Path(value).stem
        parts.append(re.sub(r"[^A-Za-z0-9.-]+", "-", f"{key}{value}".replace("+", "")))
    return "_".join(parts)[:80]


def check(points: list[dict]) -> list[Config]:
    """Every point's Config through run's own parser and checks, fitted to its data (each
    data source read once): the first problem raises (ConfigError, DataError, SystemExit
    from the parser) before anything runs."""
    parser, cfgs, datasets, seen = runner.build_parser(), [], {}, set()
    for point in points:
        cfg, sources = resolve(parser.parse_args(run_argv(point)))
        read = (cfg.data, cfg.resize, cfg.image_shape,
                cfg.num_classes if "num_classes" in sources else None)
        if read not in datasets:
            datasets[read] = load_dataset(cfg, sources)
        cfg = fit_to_data(cfg, datasets[read], sources)
        key = (read, cfg.num_samples, cfg.num_labeled, cfg.seed, cfg.val_fraction)
        if key not in seen:
            load_data(cfg, datasets[read])
            seen.add(key)
        cfgs.append(cfg)
    return cfgs


def main(argv: list[str] | None = None) -> int:
    from . import cluster as SD
    from . import report as SR
    from . import state as SS

    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    bad_input = (ConfigError, DataError, runner.UsageError, CheckpointError, SS.SweepStateError,
                 FolderInUse, SD.DaskMissing, ConnectionError)
    with contextlib.ExitStack() as stack:
        try:
            _check_engine(args)
            sw = _resume_plan(args, argv) if args.resume else _new_plan(args, argv)
            client = where = None
            if args.dask:
                client, (where, dashboard) = stack.enter_context(
                    SD.connect(args.dask, sw.jobs, sw.threads))
            sw.out.mkdir(parents=True, exist_ok=True)
            stack.enter_context(RunLock(sw.out)).acquire()    # one sweep process per folder
        except bad_input as err:
            if args.debug:
                raise
            print(f"error: {err}", file=sys.stderr)
            return runner.EXIT_BAD_INPUT
        if args.resume:
            SS.note_resumed(sw.out, sw.plan, argv)
        else:
            SS.save_plan(sw.out, argv, sw.names, sw.inputs)
        (sw.out / SS.LOGS_DIR).mkdir(parents=True, exist_ok=True)
        rows = [sw.done.get(i) for i in range(len(sw.points))]
        todo = [(i, sw.names[i], run_argv(p)) for i, p in enumerate(sw.points) if i not in sw.done]
        for _, name, _ in todo:                       # a failed or half-written earlier try
            SS.clear_run(sw.out, name)
        engine = f"{where}; {dashboard}" if where else \
            f"{sw.jobs} at once x {sw.threads} thread(s)"
        before = f" ({len(sw.done)} finished before, {len(todo)} to run)" if args.resume else ""
        print(f"npvae.sweep: {len(sw.points)} runs{before}, {engine} -> {sw.out}",
              file=sys.stderr, flush=True)
        results = (SD.run_all(client, sw.out, todo, sw.cfgs, sw.points) if args.dask else
                   _run_local(sw.out, todo, sw.jobs, sw.threads))
        for done, (i, row) in enumerate(results, start=1):
            rows[i] = row
            SS.save_row(sw.out, sw.names[i], row)        # last: the run counts as finished
            print(f"[{done}/{len(todo)}] {sw.names[i]}: {SR.progress_line(row)}",
                  file=sys.stderr, flush=True)
    table = SR.build_rows(sw.points, sw.cfgs, sw.names, rows)
    files = SR.write_all(sw.out, table, sw.varied,
                         {"command": sw.plan["command"], "jobs": sw.jobs, "threads": sw.threads,
                          "engine": where, "resumed": sw.plan.get("resumed", [])})
    print("\n".join(SR.setting_lines(table, sw.varied)))
    print(f"sweep: {files['SWEEP.md']}")
    failed = [r for r in table if r["status"] != "ok"]
    if failed:
        print(f"npvae.sweep: {len(failed)} of {len(table)} runs failed (see their rows and "
              f"{sw.out / 'logs'})", file=sys.stderr)
    return 1 if failed else 0


def _run_local(out: Path, todo: list, jobs: int, threads: int):
    """(index, row) of each run as it finishes, in joblib's loky worker processes."""
    from joblib import Parallel, delayed, parallel_config

    tasks = (delayed(_indexed)(i, argv, str(out / name), str(out / "logs" / f"{name}.log"),
                               threads) for i, name, argv in todo)
    with parallel_config(backend="loky", inner_max_num_threads=threads):
        yield from Parallel(n_jobs=jobs, return_as="generator_unordered")(tasks)


def _check_engine(args) -> None:
    """--jobs and --dask, before anything slow."""
    from .cluster import need_dask

    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs} is not allowed: give at least 1 run at once.")
    if args.dask:
        need_dask()
        if args.dask != "local" and args.jobs is not None:
            raise runner.UsageError(f"--jobs sets the workers of a local sweep or of --dask "
                                    f"local; on the cluster at {args.dask} its workers decide "
                                    f"(dask worker --nworkers N --nthreads T).")


def _new_plan(args, argv) -> SimpleNamespace:
    from .state import inputs

    points = grid(args)
    cfgs = check(points)
    stamp = time.strftime("%Y%m%d_%H%M%S")
    out = runner.prepare_out(args.out or f"results/sweep_{stamp}", cfgs[0], stamp,
                             args.overwrite)
    command = ["python", "-m", "npvae.sweep", *argv]
    return _plan(args, out, points, cfgs, {"command": command}, inputs(points, cfgs), {})


def _resume_plan(args, argv) -> SimpleNamespace:
    """--resume SWEEP_DIR: the sweep's own grid (sweep.json), checked against the data it
    started with; its finished runs are skipped."""
    from . import state as SS

    extra = [flag for flag, on in (("--out", args.out), ("--overwrite", args.overwrite)) if on]
    if extra:
        raise runner.UsageError(f"--resume continues a sweep in its own folder, so it cannot be "
                                f"combined with {' and '.join(extra)}.")
    out = Path(args.resume)
    plan = SS.load_plan(out)
    points = grid(build_parser().parse_args(plan["argv"]))
    given = [k for k in ("preset", "config", *FIELDS) if getattr(args, k, None) is not None]
    if given and grid(args) != points:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise runner.UsageError(f"--resume {out}: the grid flags given ({flags}) make another "
                                f"grid than the sweep's own ({SS.SWEEP_FILE}: "
                                f"{' '.join(plan['argv'])}); give --resume alone (with --dask, "
                                f"--jobs or --debug if wanted).")
    cfgs = check(points)
    sw = _plan(args, out, points, cfgs, plan, SS.inputs(points, cfgs), {})
    if sw.names != plan["runs"]:
        raise SS.SweepStateError(f"--resume {out}: its grid now gives other runs than "
                                 f"{SS.SWEEP_FILE} lists; start the sweep again in a new folder.")
    changed = SS.changed_inputs(plan, sw.inputs)
    if changed:
        raise SS.SweepStateError(f"--resume {out}: {'; '.join(changed)} changed since the sweep "
                                 f"started; --resume needs what it started with.")
    sw.done = SS.finished_rows(out, sw.names)
    return sw


def _plan(args, out, points, cfgs, plan, inputs, done) -> SimpleNamespace:
    cores = available_cores()
    jobs = args.jobs or max(1, min(cores, len(points)))     # the whole grid's, also on resume
    varied = [k for k in points[0] if len({repr(p[k]) for p in points}) > 1]
    return SimpleNamespace(out=out, points=points, cfgs=cfgs, plan=plan, inputs=inputs,
                           done=done, jobs=jobs, threads=max(1, cores // jobs), varied=varied,
                           names=[run_name(i, p, varied) for i, p in enumerate(points)])


def _indexed(i, *args):
    return i, run_one(*args)


if __name__ == "__main__":
    sys.exit(main())
