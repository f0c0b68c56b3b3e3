"""How a run scales with the number of images N and of components K (issue 12).

    python benchmarks/bench_scale.py --data DIR [--rounds 2] [--epochs 2] [--no-torch]
    python benchmarks/bench_scale.py --data DIR --write-only     # just write the data set

1. Data: DIR receives (unless it already holds them) MNIST-format IDX files of full MNIST's
   sizes made from the 5000 embedded digits: 60,000 training images (the digits shifted by
   twelve different offsets of one or two pixels, zero-filled) and 10,000 test images (two
   more offsets). The test images are shifted copies of training digits, so their scores say
   nothing about generalisation: the data is for measuring scale, and for showing the test
   rows of a full-size run (`python -m npvae.run --data DIR`).
2. Runs: the whole `python -m npvae.run --data DIR --num-samples N --K K --epochs E` (the
   report with its test rows and figures included), each in a fresh process, for N = 5k,
   20k, 60k at K = 10 and K = 5, 10, 20, 40 at N = 5k, with E = epochs x 60000 / N (2 at
   60k, 24 at 5k: every run sees the same number of images, so each spans a similar
   stretch of the host's fast and slow spells); the list is walked forwards in odd
   rounds and backwards in even ones, so each size meets the machine's slow and fast spells
   alike. Each process reports fit seconds per epoch (steps + the per-epoch evaluation of
   the training and validation splits), of which evaluation, the seconds after the fit
   (final evaluation, test rows, figures, report) and its peak RSS (ru_maxrss).
3. PyTorch: benchmarks/torch_ref.py on the same 60k images for E epochs, in a fresh process
   alternating with npvae's 60k run.

Goals (issue 12, 2 cores): per-epoch time linear in N (60k within 1.15x of 12 x the 5k
epoch) and in K; a 60k run's peak RSS under 1.5 GB; npvae at most 0.65x PyTorch's fit
time at 60k.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npvae import Config  # noqa: E402  (npvae before numpy: its BLAS choice, as in a run)
import numpy as np  # noqa: E402
from npvae.training.idx import (IDX_IMAGES_NAME, IDX_LABELS_NAME, IDX_TEST_IMAGES_NAME,  # noqa: E402
                       IDX_TEST_LABELS_NAME, write_idx)

TRAIN_SHIFTS = [(0, 0), (0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1),
                (0, 2), (2, 0), (-2, 0)]            # 12 x 5000 = 60,000 training images
TEST_SHIFTS = [(0, -2), (2, 1)]                     # 2 x 5000 = 10,000 test images
SIZES = [(5000, 10), (20000, 10), (60000, 10), (5000, 5), (5000, 20), (5000, 40)]


# ------------------------------------------------------------------------------- data
def shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """images (n, 28, 28) moved dy rows down and dx columns right, zero-filled (no wrap)."""
    out = np.zeros_like(images)
    h, w = images.shape[1:]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        images[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def write_scale_data(folder) -> Path:
    """The 60,000 + 10,000 shifted digits as IDX files in folder (see the module docstring);
    files already there are kept. Returns the folder."""
    from npvae.training.data import load_digits

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    x, y = load_digits()
    grey = np.rint(x * 255).astype(np.uint8).reshape(-1, 28, 28)
    for (images, labels), shifts in (((IDX_IMAGES_NAME, IDX_LABELS_NAME), TRAIN_SHIFTS),
                                     ((IDX_TEST_IMAGES_NAME, IDX_TEST_LABELS_NAME), TEST_SHIFTS)):
        if not (folder / images).is_file() or not (folder / labels).is_file():
            write_idx(folder / images, np.concatenate([shifted(grey, *s) for s in shifts]))
            write_idx(folder / labels, np.tile(y.astype(np.uint8), len(shifts)))
    return folder


# ------------------------------------------------------------- workers (fresh processes)
def npvae_worker(data: str, n: int, K: int, epochs: int) -> dict:
    """The whole `python -m npvae.run` in this process; per-epoch evaluation timed by
    wrapping the fast engine's evaluate_split (the report's test rows call it once more,
    after the fit; those seconds are in report_seconds)."""
    from npvae.engine import mixture as fast
    from npvae.runs.runner import main

    spent = []                            # seconds of each evaluate_split call, in order
    real = fast.FastModel.evaluate_split

    def timed(self, *a, **k):
        t = time.perf_counter()
        try:
            return real(self, *a, **k)
        finally:
            spent.append(time.perf_counter() - t)

    fast.FastModel.evaluate_split = timed
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as out:
        t = time.perf_counter()
        status = main(["--data", data, "--num-samples", str(n), "--K", str(K), "--epochs",
                       str(epochs), "--patience", str(epochs + 1), "--out", out,
                       "--overwrite", "--no-progress"])
        wall = time.perf_counter() - t
        run = json.loads((Path(out) / "run.json").read_text())
        summary = json.loads((Path(out) / "summary.json").read_text())
    evals = 2 * epochs       # the training and validation split per epoch, then the test set
    return {"status": status, "fit_per_epoch": run["fit_seconds"] / epochs,
            "eval_per_epoch": sum(spent[:evals]) / epochs,
            "report_seconds": run["total_seconds"] - run["fit_seconds"], "wall_seconds": wall,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "test": {k: v for k, v in summary.items() if k.startswith("test_")}}


def torch_worker(data: str, n: int, K: int, epochs: int) -> dict:
    from benchmarks.torch_ref import train_torch
    from npvae.training.data import load_data, visible_labels

    cfg = Config(data=data, num_samples=n, K=K, epochs=epochs)
    x, y, s = load_data(cfg)
    fit = train_torch(cfg, x, visible_labels(y, s.labeled), s.train, s.val,
                      threads=os.cpu_count())
    return {"fit_per_epoch": sum(fit.epoch_seconds) / epochs,
            "eval_per_epoch": sum(fit.eval_seconds) / epochs,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_worker(engine: str, data, n: int, K: int, epochs: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", engine, "--data", str(data),
                          "--n", str(n), "--K", str(K), "--epochs", str(epochs)],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(f"{engine} worker N={n} K={K} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- report
def med(values) -> float:
    return float(np.median([v for v in values if v is not None]))


def table(results: dict, torch: list) -> list[str]:
    lines = ["| N | K | fit s/epoch (median, min-max) | of which evaluation | after the fit, s "
             "| peak RSS MB |", "| --- | --- | --- | --- | --- | --- |"]
    for (n, K), rs in results.items():
        fit = [r["fit_per_epoch"] for r in rs]
        lines.append(f"| {n} | {K} | {med(fit):.2f} ({min(fit):.2f}-{max(fit):.2f}) | "
                     f"{med(r['eval_per_epoch'] for r in rs):.2f} | "
                     f"{med(r['report_seconds'] for r in rs):.1f} | "
                     f"{max(r['peak_rss_mb'] for r in rs):.0f} |")
    if torch:
        fit = [r["fit_per_epoch"] for r in torch]
        lines.append(f"| 60000 (PyTorch) | 10 | {med(fit):.2f} ({min(fit):.2f}-{max(fit):.2f}) | "
                     f"{med(r['eval_per_epoch'] for r in torch):.2f} | - | "
                     f"{max(r['peak_rss_mb'] for r in torch):.0f} |")
    return lines


def goals(results: dict, torch: list) -> list[str]:
    t = {key: med(r["fit_per_epoch"] for r in rs) for key, rs in results.items()}
    lines = []
    if (5000, 10) in t and (60000, 10) in t:
        lines.append(f"60k epoch / (12 x 5k epoch): {t[60000, 10] / (12 * t[5000, 10]):.3f} "
                     f"(goal <= 1.15)")
    if (5000, 10) in t and (20000, 10) in t:
        lines.append(f"20k epoch / (4 x 5k epoch): {t[20000, 10] / (4 * t[5000, 10]):.3f}")
    ks = sorted(K for n, K in t if n == 5000)
    if len(ks) >= 3:                      # linear in K: a straight line through the points
        ts = [t[5000, K] for K in ks]
        slope, icpt = np.polyfit(ks, ts, 1)
        worst = max(abs(tk - (icpt + slope * K)) / tk for K, tk in zip(ks, ts))
        lines.append(f"per-epoch time in K at 5k: {icpt:.3f} s + {slope * 1000:.1f} ms x K, "
                     f"largest deviation from the line {100 * worst:.1f}%")
    if (60000, 10) in results:
        rss = max(r["peak_rss_mb"] for r in results[60000, 10])
        lines.append(f"60k run peak RSS: {rss:.0f} MB (goal < 1536 MB)")
        if torch:
            pairs = [a["fit_per_epoch"] / b["fit_per_epoch"]
                     for a, b in zip(results[60000, 10], torch)]
            lines.append(f"npvae / PyTorch fit at 60k (paired rounds): {med(pairs):.3f} "
                         f"({min(pairs):.3f}-{max(pairs):.3f}) (goal <= 0.65)")
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, metavar="DIR",
                    help="folder for the 60k + 10k IDX files (written if missing)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2,
                    help="epochs at N = 60k; N images train epochs x 60000 / N epochs")
    ap.add_argument("--no-torch", action="store_true", help="npvae only")
    ap.add_argument("--write-only", action="store_true", help="write the data set and stop")
    ap.add_argument("--json", metavar="FILE", help="also write every number here")
    ap.add_argument("--worker", choices=("npvae", "torch"), help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--K", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        work = npvae_worker if args.worker == "npvae" else torch_worker
        print(json.dumps(work(args.data, args.n, args.K, args.epochs)))
        return
    data = write_scale_data(args.data)
    print(f"data: {data} (60000 training + 10000 test images, IDX)", flush=True)
    if args.write_only:
        return
    print(f"load: {os.getloadavg()}", flush=True)
    results = {size: [] for size in SIZES}
    torch = []
    for r in range(args.rounds):
        for n, K in (SIZES if r % 2 == 0 else SIZES[::-1]):
            epochs = args.epochs * 60000 // n
            with_torch = (n, K) == (60000, 10) and not args.no_torch
            for engine in (("npvae", "torch") if r % 2 == 0 else ("torch", "npvae")):
                if engine == "npvae" or with_torch:
                    res = run_worker(engine, data, n, K, epochs)
                    (results[n, K] if engine == "npvae" else torch).append(res)
                    print(f"round {r + 1}: {engine} N={n} K={K} epochs={epochs}: "
                          f"{json.dumps(res)}", flush=True)
    print(f"load: {os.getloadavg()}\n")
    print("\n".join(table(results, torch)))
    print()
    print("\n".join(goals(results, torch)))
    if args.json:
        Path(args.json).write_text(json.dumps({"results": {f"{n},{K}": rs for (n, K), rs in
                                                           results.items()}, "torch": torch},
                                              indent=1))


if __name__ == "__main__":
    main()
