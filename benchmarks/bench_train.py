"""npvae against the PyTorch reference (benchmarks/torch_ref.py), side by side, same machine.

    python benchmarks/bench_train.py [--rounds 3] [--epochs 50] [--no-torch] [--json FILE]
    python benchmarks/bench_train.py --process      # `python -m npvae.run`: cold and warm JIT

1. Same work: both get the same float64 weights and batch, and must give the same loss, terms
   and gradients (autograd against npvae's hand-written backward).
2. Floor: float32 products of the decoder's shapes are timed on the spot, BLAS on all cores
   and, as the fit runs them, single-threaded BLAS on one Python thread per core at once;
   the model's FLOPs (formula below) at the best rate is the shortest fit this machine allows.
   The header names the host's vector width, what Numba compiles for and the BLAS kernels
   (benchmarks/host.py, which also times the products); the end shows each phase's GFLOP/s
   against the product rate.
3. Rounds: a fresh process per run, npvae and torch alternately (the order flips each round),
   the default run (5000 digits, 50 epochs, evaluation every epoch). Fit time = steps +
   per-epoch evaluation (+ npvae's tracking); JIT compilation is not in it (see --process).

FLOPs (2 per multiply-add). Per image, the forward pass makes
    F = E + d P + K Dm + C multiply-adds, with
    E  = sum_i H[i-1] H[i] + H[-1] (K + 2d)   (trunk from D pixels, then the three heads)
    Dm = 2P G[0] + sum_j G[j-1] G[j] + G[-1] D (decoder, per (image, component) pair)
    C  = d C[0] + sum_i C[i-1] C[i] + C[-1] n_classes   (classifier)
A training image costs 2 (3F - D H[0]) (forward, input gradients but the pixels', weight
gradients), an evaluated image 2F. A run: epochs x (N_train train + N_train + N_val eval).
Default config: 15.6 MFLOP per training image, 5.3 per evaluated image, 4.84 TFLOP in all.
Per phase: forward 2F per training image, backward the other 2 (2F - D H[0]), evaluation 2F
per evaluated image.
These are the model's FLOPs; npvae's split first decoder layer does about 3% fewer.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# npvae before numpy: the floor's products then run on the BLAS kernels npvae runs on
# (npvae/engine/blas.py), as in the workers and in `python -m npvae.run`
from npvae import Config  # noqa: E402
import numpy as np  # noqa: E402
from npvae.training.data import load_digits, make_splits, visible_labels  # noqa: E402
from benchmarks import host  # noqa: E402
from benchmarks.host import gemm_rate  # noqa: E402


def model_flops(cfg: Config, n_train: int, n_val: int) -> dict:
    """FLOPs per training image, per evaluated image, and of a whole run (formula above)."""
    H, G, C, d, P, K, D = (cfg.hidden_dims, cfg.decoder_dims, cfg.classifier_dims,
                           cfg.latent_dim, cfg.pathway_dim, cfg.K, cfg.input_dim)
    chain = lambda dims: sum(a * b for a, b in zip(dims[:-1], dims[1:]))     # noqa: E731
    E = chain((D, *H)) + H[-1] * (K + 2 * d)
    Dm = chain((2 * P, *G, D))
    F = E + d * P + K * Dm + chain((d, *C, cfg.num_classes))
    train, evaluate = 2 * (3 * F - D * H[0]), 2 * F
    phases = {"forward": cfg.epochs * n_train * evaluate,
              "backward": cfg.epochs * n_train * (train - evaluate),
              "evaluation": cfg.epochs * (n_train + n_val) * evaluate}
    return {"train_per_image": train, "eval_per_image": evaluate,
            "total": sum(phases.values()), "phases": phases}


def default_run(cfg: Config):
    x, y = load_digits()
    s = make_splits(len(y), cfg.num_labeled, cfg.seed, cfg.val_fraction)
    return x, visible_labels(y, s.labeled), s.train, s.val


# ----------------------------------------------------------------- workers (subprocesses)
def worker(engine: str, epochs: int) -> dict:
    cfg = Config(epochs=epochs)
    data = default_run(cfg)
    if engine == "torch":
        from benchmarks.torch_ref import train_torch
        import torch
        fit = train_torch(cfg, *data, threads=os.cpu_count())
        return {"fit_seconds": sum(fit.epoch_seconds), "steps": sum(fit.step_seconds),
                "eval": sum(fit.eval_seconds), "torch_threads": torch.get_num_threads()}
    from npvae.training.loop import fit
    prof: dict = {}
    t, cpu = time.perf_counter(), time.process_time()
    result = fit(cfg, *data, progress=False, profile=prof)
    total, cpu = time.perf_counter() - t, time.process_time() - cpu
    return {"fit_seconds": result.fit_seconds, "setup_seconds": total - result.fit_seconds,
            "cpu_seconds": cpu,
            "phases": prof, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            / 1024, "final_train_loss": result.history["train_loss"][-1]}


def run_worker(engine: str, epochs: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", engine, "--epochs", str(epochs)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------- the whole process, JIT
_RUN = """import resource, runpy, sys, time
sys.argv = ["npvae.run"] + sys.argv[1:]
try:
    runpy.run_module("npvae.run", run_name="__main__")
except SystemExit:
    pass
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"""
_COMPILE = """import time
t = time.perf_counter()
from npvae import Config
from npvae.engine.mixture import FastModel
t1 = time.perf_counter()
FastModel(Config())
print(t1 - t, time.perf_counter() - t1)"""


def process_times() -> dict:
    """`python -m npvae.run --K 10` (figures and report included) in fresh processes, first
    with an empty Numba cache (every kernel compiled), then with the cache it filled: wall
    time, fit time and peak RSS of each. And the compile cost alone: building a FastModel
    (which compiles or loads every kernel) with an empty cache and with a full one."""
    res = {}
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("cold", "warm"):
            run_dir = Path(out) / label
            t = time.perf_counter()
            p = subprocess.run([sys.executable, "-c", _RUN, "--K", "10", "--no-progress",
                                "--out", str(run_dir)], env=env, cwd=ROOT, check=True,
                               capture_output=True, text=True)
            wall = time.perf_counter() - t
            info = json.loads((run_dir / "run.json").read_text())
            res[f"run_{label}"] = {"wall_seconds": wall, "fit_seconds": info["fit_seconds"],
                                   "peak_rss_mb": float(p.stdout.split()[-1])}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("cold", "warm"):
            p = subprocess.run([sys.executable, "-c", _COMPILE], env=env, cwd=ROOT, check=True,
                               capture_output=True, text=True)
            imp, build = map(float, p.stdout.split()[-2:])
            res[f"kernels_{label}"] = {"import_seconds": imp, "compile_or_load_seconds": build}
    return res


# ------------------------------------------------------------------ same-work proof
def same_work() -> dict:
    """float64: same weights and batch into npvae (fast path) and torch -> same loss, terms
    and gradients. Returns the largest relative differences."""
    import torch
    from benchmarks.torch_ref import TorchVAE, load_npvae_params, to_npvae_params, torch_loss
    from npvae import draw_noise, init_params
    from npvae.engine.mixture import FastModel
    cfg = Config(dtype="float64")
    x, y, train, _ = default_run(cfg)
    rng = np.random.default_rng(0)
    p = init_params(cfg, rng)
    xb, yb = x[train[:cfg.batch_size]].astype(np.float64), y[train[:cfg.batch_size]]
    noise = draw_noise(cfg, cfg.batch_size, rng)
    g = p.zeros_like()
    loss, terms = FastModel(cfg).loss_and_grads(p, xb, yb, noise, g)
    module = load_npvae_params(TorchVAE(cfg).to(torch.float64), p)
    loss_t, terms_t = torch_loss(module, xb, yb, noise.eps, noise.masks, cfg)
    loss_t.backward()                                    # autograd's gradient
    gt = to_npvae_params(module, grads=True)
    rel = lambda a, b: float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))  # noqa
    loss_t, terms_t = loss_t.item(), {k: v.item() for k, v in terms_t.items()}
    return {"loss_npvae": loss, "loss_torch": loss_t,
            "loss_rel_diff": abs(loss - loss_t) / abs(loss_t),
            "terms_max_rel_diff": max(abs(terms[k] - terms_t[k]) / max(abs(terms_t[k]), 1e-300)
                                      for k in terms),
            "grads_max_rel_diff": max(rel(g[n], gt[n]) for n in p)}


# ---------------------------------------------------------------------------- report
def machine() -> dict:
    import numba
    try:                                   # (not imported here: no torch threads in this process)
        tv = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        tv = "absent"
    return {**host.describe(), "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__, "torch": tv,
            "load_average": os.getloadavg()}


def phase_table(seconds: dict, flops: dict, rate: float) -> str:
    """npvae's phases: seconds, GFLOP/s and that rate against the product rate (markdown)."""
    rows = ["| phase | s | GFLOP/s | of the product rate |", "| --- | --- | --- | --- |"]
    for k, v in seconds.items():
        r = flops.get(k, 0) / v / 1e9 if v > 0 else 0.0
        rows.append(f"| {k} | {v:.2f} | {r:.0f} | {r / rate:.0%} |" if k in flops
                    else f"| {k} | {v:.2f} | - | - |")
    total = sum(seconds.values())
    r = sum(flops.values()) / total / 1e9
    rows.append(f"| all | {total:.2f} | {r:.0f} | {r / rate:.0%} |")
    return "\n".join(rows)


def spread(values) -> str:
    v = np.asarray(values, float)
    return f"{np.median(v):.2f} (min {v.min():.2f}, max {v.max():.2f})"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--no-torch", action="store_true", help="npvae only")
    ap.add_argument("--process", action="store_true",
                    help="time `python -m npvae.run --K 10` with a cold and a warm JIT cache")
    ap.add_argument("--json", metavar="FILE", help="also write every number here")
    ap.add_argument("--worker", choices=("npvae", "torch", "same-work"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(same_work() if args.worker == "same-work"
                         else worker(args.worker, args.epochs)))
        return
    if args.process:
        report = {"machine": machine(), "process": process_times()}
        print(json.dumps(report, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1))
        return
    cfg = Config(epochs=args.epochs)
    _, _, train, val = default_run(cfg)
    flops = model_flops(cfg, len(train), len(val))
    report = {"machine": machine(), "flops": flops}
    print(host.one_line(report["machine"]))
    print("machine:", json.dumps(report["machine"]))
    rate = gemm_rate(cfg)              # first: no other library's threads around yet
    rate_t = gemm_rate(cfg, per_thread=True)
    if not args.no_torch:              # torch in its own process, like every timed run
        report["same_work"] = run_worker("same-work", 0)
        print("same work (float64, one batch, same weights):", json.dumps(report["same_work"]))
    floor = flops["total"] / (rate * 1e9)
    print(f"model FLOPs: {flops['total'] / 1e12:.2f} TFLOP; decoder-shape float32 products: "
          f"{rate:.0f} GFLOP/s with BLAS on all cores, {rate_t:.0f} on one thread per core "
          f"-> floor {floor:.1f} s")
    rounds = []
    for r in range(args.rounds):
        order = ["npvae", "torch"] if r % 2 == 0 else ["torch", "npvae"]
        res = {e: run_worker(e, args.epochs) for e in order if e == "npvae" or not args.no_torch}
        res["load_average"] = os.getloadavg()[0]     # other processes share the cores?
        rounds.append(res)
        line = f"round {r + 1}: npvae {res['npvae']['fit_seconds']:.2f} s"
        if "torch" in res:
            line += (f", torch {res['torch']['fit_seconds']:.2f} s, ratio "
                     f"{res['npvae']['fit_seconds'] / res['torch']['fit_seconds']:.3f}")
        print(f"{line} (load average {res['load_average']:.1f})", flush=True)
    rates = [rate, rate_t, gemm_rate(cfg), gemm_rate(cfg, per_thread=True)]
    best_rate = max(rates)
    cpu_rate = gemm_rate(cfg, per_thread=True, cpu=True)
    report.update(gemm_gflops=rates, gemm_cpu_gflops=cpu_rate,
                  floor_seconds=flops["total"] / best_rate / 1e9,
                  rounds=rounds)
    floor = report["floor_seconds"]
    npv = [r["npvae"]["fit_seconds"] for r in rounds]
    print(f"\nproducts, GFLOP/s (all-core BLAS, one thread per core; start, end): "
          + ", ".join(f"{r:.0f}" for r in rates))
    print(f"floor (best product timing, {best_rate:.0f} GFLOP/s): {floor:.1f} s")
    print(f"npvae fit s:        {spread(npv)}   per epoch {np.median(npv) / args.epochs:.3f} s")
    print(f"npvae GFLOP/s:      {spread([flops['total'] / s / 1e9 for s in npv])}")
    print(f"npvae / floor:      {spread([s / floor for s in npv])}")
    cpu = [r["npvae"]["cpu_seconds"] / os.cpu_count() for r in rounds]
    cpu_floor = flops["total"] / cpu_rate / 1e9
    print(f"npvae CPU s / cores: {spread(cpu)}   (well below the fit: the threads waited, "
          f"for each other or for other processes)")
    print(f"  ... / CPU floor:  {spread([c / cpu_floor for c in cpu])}   (CPU floor "
          f"{cpu_floor:.1f} s: the products at {cpu_rate:.0f} GFLOP/s of thread CPU time; "
          f"other processes barely move it; idle, fit / floor is this plus the waits)")
    print(f"npvae peak RSS MB:  {spread([r['npvae']['peak_rss_mb'] for r in rounds])}")
    if not args.no_torch:
        tor = [r["torch"]["fit_seconds"] for r in rounds]
        print(f"torch fit s:        {spread(tor)}   per epoch {np.median(tor) / args.epochs:.3f} s")
        print(f"torch GFLOP/s:      {spread([flops['total'] / s / 1e9 for s in tor])}")
        print(f"npvae / torch:      {spread([a / b for a, b in zip(npv, tor)])}")
    phases = {k: np.median([r["npvae"]["phases"][k] for r in rounds])
              for k in rounds[0]["npvae"]["phases"]}
    print("npvae phases (s, median):", {k: round(v, 2) for k, v in phases.items()})
    print(phase_table(phases, flops["phases"], best_rate))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
