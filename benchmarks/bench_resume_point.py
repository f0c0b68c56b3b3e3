"""What the per-epoch resume point (checkpoints/resume.npz, npvae/training/checkpoint.py
ResumeWriter) costs the default run.

    python benchmarks/bench_resume_point.py [--pairs 40] [--epochs 5]     # in one process
    python benchmarks/bench_resume_point.py --cli [--pairs 4] [--epochs 50]   # fresh processes

1. Pairs, in one process (the default): the default run's fit with the resume point written
   at every epoch end and without, alternately (the order flips each pair). On a shared,
   noisy machine the difference within a pair, run back to back, is steadier than the
   difference of two medians, and many short pairs steadier than a few long ones (the cost
   per epoch is the same in a 5-epoch fit as in a 50-epoch one). Also measured: the time the
   training thread spends in ResumeWriter.submit (copying the state) and the CPU time of the
   background writer, whose sum per epoch bounds the cost from above (if every writer cycle were
   taken from training).
2. --cli: `python -m npvae.run --K 10` in fresh processes, with and without
   `--no-resume-point`; fit_seconds from run.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def paired(pairs: int, epochs: int) -> dict:
    from npvae import Config
    from npvae.training import checkpoint
    from npvae.training.data import load_data, visible_labels
    from npvae.training.loop import fit

    cfg = Config(epochs=epochs)
    x, y, s = load_data(cfg)
    data = (x, visible_labels(y, s.labeled), s.train, s.val)
    submit, writer_cpu, writer_wall = [], [], []
    save = checkpoint._save_arrays

    def timed_save(path, arrays):             # runs on the writer thread
        c, w = time.thread_time(), time.perf_counter()
        save(path, arrays)
        writer_cpu.append(time.thread_time() - c)
        writer_wall.append(time.perf_counter() - w)

    checkpoint._save_arrays = timed_save
    fit(cfg.replace(epochs=1), *data, progress=False)     # compile / load the kernels
    times: dict = {"with": [], "without": []}
    with tempfile.TemporaryDirectory() as tmp, \
            checkpoint.ResumeWriter(Path(tmp) / "resume.npz", cfg) as writer:
        # one writer for every fit, as one run has: its copy buffers are made once

        def hook(state):
            t = time.perf_counter()
            writer.submit(state)
            submit.append(time.perf_counter() - t)

        for r in range(pairs):
            for arm in (("with", "without") if r % 2 == 0 else ("without", "with")):
                hooks = {"on_epoch_end": hook} if arm == "with" else {}
                times[arm].append(fit(cfg, *data, progress=False, **hooks).fit_seconds)
                writer.wait()                  # (the last write is not part of the next fit)
                print(f"pair {r + 1} {arm:7s}: fit {times[arm][-1]:.2f} s", file=sys.stderr)
    checkpoint._save_arrays = save
    diffs = [100 * (w - wo) / wo for w, wo in zip(times["with"], times["without"])]
    med = {arm: statistics.median(v) for arm, v in times.items()}
    per_epoch = statistics.median(times["without"]) / epochs
    return {"epochs": epochs, "fit_seconds": times, "median": med,
            "pair_cost_percent": diffs, "median_pair_cost_percent": statistics.median(diffs),
            "submit_ms_median": 1e3 * statistics.median(submit),
            "writer_cpu_ms_median": 1e3 * statistics.median(writer_cpu),
            "writer_wall_ms_median": 1e3 * statistics.median(writer_wall),
            "upper_bound_percent": 100 * (statistics.median(submit)
                                          + statistics.median(writer_cpu)) / per_epoch}


def cli(pairs: int, epochs: int) -> dict:
    times: dict = {"with": [], "without": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(pairs):
            for arm in (("with", "without") if r % 2 == 0 else ("without", "with")):
                out = Path(tmp) / f"{arm}{r}"
                subprocess.run([sys.executable, "-m", "npvae.run", "--K", "10", "--epochs",
                                str(epochs), "--no-progress", "--out", str(out),
                                *([] if arm == "with" else ["--no-resume-point"])],
                               cwd=ROOT, check=True, capture_output=True)
                times[arm].append(json.loads((out / "run.json").read_text())["fit_seconds"])
                print(f"pair {r + 1} {arm:7s}: fit {times[arm][-1]:.2f} s", file=sys.stderr)
    diffs = [100 * (w - wo) / wo for w, wo in zip(times["with"], times["without"])]
    return {"epochs": epochs, "fit_seconds": times,
            "median": {arm: statistics.median(v) for arm, v in times.items()},
            "pair_cost_percent": diffs, "median_pair_cost_percent": statistics.median(diffs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, help="default: 40 in one process, 4 with --cli")
    ap.add_argument("--epochs", type=int, help="default: 5 in one process, 50 with --cli")
    ap.add_argument("--cli", action="store_true", help="fresh `python -m npvae.run` processes")
    args = ap.parse_args()
    if args.cli:
        res = cli(args.pairs or 4, args.epochs or 50)
    else:
        res = paired(args.pairs or 40, args.epochs or 5)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
