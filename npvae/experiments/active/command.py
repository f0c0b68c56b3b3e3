"""`python -m npvae.active --seed 42 43 44 45 46`: which images to label next.

A simulated annotator (the data set's own labels, revealed only for the images queried) and
one model per seed: start from --initial labels drawn at random from the training split
(default 10), train (--init-epochs), then per round let a query strategy
(npvae/experiments/active/query.py) choose --batch images (default 10) among the unlabeled training
images, reveal their labels, continue training for --round-epochs (warm start) or retrain
(--retrain), and measure held-out accuracy (the validation split, never queried), until --budget
labels (default 100).

Cost: the first model of a seed is trained once and shared by every strategy of that seed
(same seed, same start). The seeds' first models, then every (seed, strategy) pair, run in
joblib worker processes (--jobs, default one per core), each on cores // jobs threads, as
in the sweep (npvae/experiments/sweep/command.py).

Settings: every run flag (and --config, --preset), with npvae.run's precedence (defaults <
preset < --config < flags); without --preset and --config the ssl preset is used (the
semi-supervised model; ssl-cons is more accurate but trains far longer: docs/presets.md).
--seed takes several values.

Writes, in --out (default results/active_<YYYYmmdd_HHMMSS>/), through
npvae/experiments/active/report.py: ACTIVE.md (table and curves of held-out accuracy against labels
per strategy: mean, std and 95% t-interval over the seeds, and the query grids), active.csv (every
point), curves.png, queries/<strategy>_seed<S>.png.

`--annotate` asks a person instead (npvae/experiments/active/annotate.py): one seed, one strategy
(--strategy).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from npvae.core.config import ConfigError
from npvae.engine.threads import available_cores, process_share
from npvae.runs import runner
from npvae.training.checkpoint import CheckpointError
from npvae.training.cli import add_config_flags, add_preset_flag, resolve
from npvae.training.data import (EVERY, DataError, every_label, fit_to_data, load_data,
                                 load_dataset)
from npvae.training.fileio import write_text

from .loop import STRATEGY_NAMES, LoopError, Options, initial_labels, run, simulated, train_model


ANSWERS = "npvae.active answers its queries with the images' own labels"


def build_parser() -> argparse.ArgumentParser:
    ap = runner._Parser(
        prog="python -m npvae.active",
        description="Active learning with a simulated annotator: per seed and query strategy, "
                    "reveal --batch labels per round up to --budget and write ACTIVE.md with "
                    "held-out accuracy against the number of labels.")
    g = ap.add_argument_group("active learning")
    d = Options()
    g.add_argument("--strategy", nargs="+", choices=STRATEGY_NAMES, default=list(STRATEGY_NAMES),
                   help="query strategies (default: all); --annotate uses the first")
    g.add_argument("--initial", type=int, default=d.initial, metavar="N",
                   help=f"labels to start from, at random (default: {d.initial})")
    g.add_argument("--batch", type=int, default=d.batch, metavar="B",
                   help=f"labels revealed per round (default: {d.batch})")
    g.add_argument("--budget", type=int, default=d.budget, metavar="N",
                   help=f"stop at this many labels (default: {d.budget})")
    g.add_argument("--init-epochs", type=int, default=d.init_epochs, metavar="N",
                   help=f"epochs of the first model and of every retrain (default: "
                        f"{d.init_epochs})")
    g.add_argument("--round-epochs", type=int, default=d.round_epochs, metavar="N",
                   help=f"epochs added per round, warm start (default: {d.round_epochs})")
    g.add_argument("--retrain", action="store_true",
                   help="train a new model every round (--init-epochs) instead of continuing")
    g.add_argument("--annotate", action="store_true",
                   help="ask a person in the terminal for the queried labels (one seed)")
    g.add_argument("--jobs", type=int, metavar="N", help="worker processes (default: cores)")
    g.add_argument("--out", metavar="DIR", help="output folder (default: "
                   "results/active_<YYYYmmdd_HHMMSS>)")
    g.add_argument("--overwrite", action="store_true",
                   help="allow writing into an existing, non-empty --out folder")
    g.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    g.add_argument("--config", metavar="FILE", help="TOML file of settings")
    add_preset_flag(g)
    add_config_flags(ap, many=True)             # --seed takes several values; others one
    return ap


def parse(argv) -> tuple[argparse.Namespace, list, Options]:
    """The arguments, one Config per seed (fitted to the data) and the Options; ConfigError
    or DataError for bad values."""
    args = build_parser().parse_args(argv)
    if not args.preset and not args.config:
        args.preset = "ssl"
    seeds = getattr(args, "seed", None)
    for key, value in list(vars(args).items()):  # many=True gave lists: one value each
        if key in runner.Config.__dataclass_fields__ and key != "seed":
            if len(value) != 1:
                raise ConfigError(f"--{key.replace('_', '-')} takes one value here "
                                  f"(only --seed takes several).")
            setattr(args, key, value[0])
    cfgs, data = [], None
    for seed in seeds or [None]:
        if seed is not None:
            args.seed = seed
        cfg, sources = resolve(args)
        if data is None:                                 # one Dataset: only the seed differs
            data = load_dataset(cfg, sources)
        cfgs.append(fit_to_data(cfg, data, sources))    # its shape and classes, from the data
    opt = Options(args.initial, args.batch, args.budget, args.init_epochs, args.round_epochs,
                  args.retrain)
    for name in ("initial", "batch", "budget", "init_epochs", "round_epochs"):
        if getattr(opt, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} {getattr(opt, name)} is not "
                              f"allowed: it must be at least 1.")
    if opt.initial > opt.budget:
        raise ConfigError(f"--initial {opt.initial} is above --budget {opt.budget}.")
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs} is not allowed: give at least 1.")
    return args, cfgs, opt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args, cfgs, opt = parse(argv)
        stamp = time.strftime("%Y%m%d_%H%M%S")
        out = runner.prepare_out(args.out or f"results/active_{stamp}", cfgs[0], stamp,
                                 args.overwrite)
        if args.annotate:
            from .annotate import annotate_main
            return annotate_main(cfgs[0], opt, args.strategy[0], out)
        for cfg in cfgs:
            # The simulated annotator answers each query with the image's own label, so
            # an image without one (unlabeled/) cannot be queried: refused, unlike npvae.run.
            ds = load_dataset(cfg, EVERY)
            every_label(ds, ANSWERS)
            load_data(cfg, ds)                  # bad data: refused before anything runs
    except (ConfigError, DataError, runner.UsageError, CheckpointError) as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return runner.EXIT_BAD_INPUT
    return experiment(cfgs, opt, args.strategy, out, args.jobs, ["python", "-m", "npvae.active",
                                                                  *argv])


def experiment(cfgs, opt: Options, strategies, out: Path, jobs=None, command=None) -> int:
    """Every seed's first model, then every (seed, strategy) loop, in worker processes;
    then the report. Returns the exit status (1 if a loop failed)."""
    from joblib import Parallel, delayed, parallel_config

    from . import report as AR

    cores = available_cores()
    tasks = [(c, s) for c in cfgs for s in strategies]
    jobs = jobs or max(1, min(cores, len(tasks)))
    threads = max(1, cores // jobs)
    out.mkdir(parents=True, exist_ok=True)
    say = lambda *a: print(*a, file=sys.stderr, flush=True)     # noqa: E731
    say(f"npvae.active: {len(cfgs)} seed(s) x {len(strategies)} strategies, {jobs} at once x "
        f"{threads} thread(s) -> {out}")
    t0 = time.perf_counter()
    with parallel_config(backend="loky", inner_max_num_threads=threads):
        starts = dict(Parallel(n_jobs=min(jobs, len(cfgs)))(
            delayed(_worker)(_first_model, threads, c, opt) for c in cfgs))
        say(f"first models trained in {time.perf_counter() - t0:.0f} s")
        rows, failed = [], []
        gen = Parallel(n_jobs=jobs, return_as="generator_unordered")(
            delayed(_worker)(_loop, threads, c, s, opt, starts[c.seed]) for c, s in tasks)
        for done, (seed, strategy, result) in enumerate(gen, start=1):
            if isinstance(result, str):
                failed.append(f"seed {seed}, {strategy}: {result}")
                say(f"[{done}/{len(tasks)}] seed {seed} {strategy}: failed: {result}")
                continue
            rows += result
            write_text(out / "active.csv", AR.csv_text(rows))    # so far (ACTIVE.md at the end)
            last = result[-1]
            say(f"[{done}/{len(tasks)}] seed {seed} {strategy}: accuracy "
                f"{result[0]['accuracy']:.3f} at {result[0]['labels']} labels -> "
                f"{last['accuracy']:.3f} at {last['labels']}")
    seconds = time.perf_counter() - t0
    images = {c.seed: load_data(c)[0] for c in cfgs}   # per seed: --num-samples draws by seed
    info = {"command": command or [], "options": opt, "seeds": [c.seed for c in cfgs],
            "strategies": list(strategies), "jobs": jobs, "threads": threads,
            "seconds": seconds, "cfg": cfgs[0], "failed": failed}
    report = AR.write_all(out, rows, images, info)
    print("\n".join(AR.table_lines(rows, strategies)))
    print(f"active: {report}")
    return 1 if failed else 0


def _worker(fn, threads, *args):
    """fn(*args) in a worker process with `threads` threads for the engine and BLAS."""
    with process_share(threads):      # (--jobs 1 runs in this process: restored after)
        return fn(*args)


def _first_model(cfg, opt: Options):
    """(seed, the model trained on the seed's first labels) in a worker."""
    x, y, splits = load_data(cfg)
    y_known = np.full(len(y), -1, np.int64)
    first = initial_labels(splits.train, opt.initial, cfg.seed)
    y_known[first] = y[first]
    start = train_model(cfg, x, y_known, splits, opt.init_epochs, None)
    start.extra["y_known"] = y_known
    return cfg.seed, start


def _loop(cfg, strategy: str, opt: Options, start):
    """(seed, strategy, rows) for one loop in a worker; rows is the error text if it failed."""
    x, y, splits = load_data(cfg)
    y_known = start.extra["y_known"].copy()
    rng = np.random.default_rng([cfg.seed, 15])   # the same draws for every strategy
    try:
        rounds = run(cfg, x, y, splits, strategy, opt, simulated(y), y_known, start, rng)
    except LoopError as err:
        return cfg.seed, strategy, str(err)
    rounds[-1].pop("params", None)
    return cfg.seed, strategy, [{"seed": cfg.seed, "strategy": strategy, **r} for r in rounds]


if __name__ == "__main__":
    sys.exit(main())
