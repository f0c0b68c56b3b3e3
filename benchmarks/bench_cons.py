"""npvae's fit against PyTorch's (benchmarks/torch_gmm.py) on model gmm with the consistency
term, same data, same config, same thread count.

    python benchmarks/bench_cons.py [--config PRESET_OR_TOML] [--set KEY=VALUE ...]
                                    [--epochs 5] [--rounds 3] [--threads 2] [--json FILE]

--config: a preset name (npvae/training/presets) or a TOML file of Config fields. Default: a
preset whose w_cons > 0 if there is one, else the preset ssl with w_cons = 30. --set changes
a field (TOML value syntax: --set cons_temperature=0.5). --epochs replaces the config's (and
its patience, so no run stops early).

1. Same work: on one float64 batch of the run's data (labeled and unlabeled rows, the
   threshold at 0 so every unlabeled row counts), npvae's loss and gradient (ELBO and
   consistency) against autograd's; the largest relative difference is printed.
2. Rounds: each side in a fresh process, npvae and torch alternately (the order flips each
   round, so a drift of the host hits both alike). The data and split are a run's
   (load_data: the 5000 embedded digits unless the config names others, the seed's split,
   num_labeled visible labels). npvae: npvae.training.loop.fit with $NPVAE_THREADS and BLAS
   limited to --threads (progress off, its per-phase profile on); torch: fit_torch with
   torch.set_num_threads(--threads). Both time steps plus the per-epoch evaluation of both
   splits.
3. s/epoch: the mean of epochs 2..N (epoch 1 alone when N = 1; the first epoch, which may
   load or compile Numba kernels, is shown apart). Ratio npvae / torch per round, median
   and range.

Data preparation is npvae's numpy on both sides (draws, warps: torch_gmm.py's docstring);
npvae warps on its threads, fit_torch on one. Needs a Python with npvae and torch
(`pip install -e .[bench]`).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import npvae  # noqa: E402,F401  (before numpy: npvae picks the BLAS kernels, as in a run)
import numpy as np  # noqa: E402
from npvae.core.config import Config, ConfigError  # noqa: E402
from npvae.training import presets  # noqa: E402
from npvae.training.tomlfile import read_toml, tomllib  # noqa: E402

PHASES = ("batch", "forward", "backward", "forward+backward", "consistency", "optimizer",
          "evaluation", "tracking")


# ------------------------------------------------------------------------ the config
def resolve_config(spec: str | None, sets: list[str], epochs: int) -> tuple[Config, str]:
    """The benchmark's Config and a label saying where it came from."""
    if spec is None:
        with_cons = [n for n in presets.names() if presets.load(n).get("w_cons", 0) > 0]
        spec = with_cons[0] if with_cons else "ssl"
        if not with_cons:
            sets = ["w_cons=30", *sets]
    values = read_toml(spec) if Path(spec).is_file() else presets.load(spec)
    label = spec
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: write KEY=VALUE")
        try:
            values[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            values[key.strip()] = raw                       # a bare string
        label += f" {key.strip()}={raw}"
    cfg = Config.from_dict({**values, "epochs": epochs, "patience": epochs}).validate()
    if cfg.model != "gmm" or cfg.convolutional or cfg.w_cons <= 0:
        raise ConfigError(f"{label}: the benchmark needs model gmm with dense nets and w_cons "
                          f"> 0 (got model {cfg.model}, encoder {cfg.encoder}, decoder "
                          f"{cfg.decoder}, w_cons {cfg.w_cons}).")
    return cfg, label


def run_data(cfg: Config):
    """x, the visible labels, train and val indices: what python -m npvae.run trains on."""
    from npvae.training.data import load_data, visible_labels

    x, y, s = load_data(cfg)
    return x, visible_labels(y, s.labeled), s.train, s.val


# ---------------------------------------------------------------------- same work
def same_work(cfg: Config, data) -> dict:
    """Float64, one batch (16 training rows and 4 labeled ones): the largest relative
    difference of the loss and of any gradient array, npvae against autograd."""
    import torch

    from benchmarks.torch_gmm import TorchGMM, consistency, gmm_terms, load_npvae_params
    from benchmarks.torch_gmm import to_npvae_params
    from npvae.core.model import loss_and_grads
    from npvae.core.noise import draw_noise
    from npvae.core.params import init_params
    from npvae.engine.augment import augment, strong_view
    from npvae.engine.consistency import Consistency
    from npvae.engine.reference import ReferenceEngine

    x, yv, train, _ = data
    cfg = cfg.replace(dtype="float64", cons_threshold=0.0)
    rng = np.random.default_rng(cfg.seed)
    p = init_params(cfg, rng)
    labeled = train[yv[train] >= 0]
    idx = np.concatenate([train[:16], labeled[:4]])
    xb, yb = x[idx].astype(np.float64), yv[idx]
    noise = draw_noise(cfg, idx.size, rng)
    xa = augment(xb, noise.aug, cfg) if noise.aug is not None else xb
    unl = yb < 0
    loss_n, g_n, _ = loss_and_grads(p, xa, yb, noise, cfg)
    loss_n += Consistency(ReferenceEngine(cfg)).loss_and_grads(p, xb[unl], noise.strong[unl],
                                                              g_n)[0]
    m = load_npvae_params(TorchGMM(cfg).to(torch.float64), p)
    t = torch.as_tensor
    loss_t = sum(gmm_terms(m, t(xa), t(yb), t(noise.eps), cfg).values()) + consistency(
        m, t(xb[unl]), t(strong_view(xb[unl], noise.strong[unl], cfg)), cfg)[0]
    loss_t.backward()
    g_t = to_npvae_params(m, grads=True)
    errs = [float(np.abs(g_n[k] - g_t[k]).max() / max(1e-8, np.abs(g_n[k]).max() +
                                                      np.abs(g_t[k]).max())) for k in p]
    return {"loss_rel": abs(loss_n - loss_t.item()) / abs(loss_n), "grad_rel": max(errs)}


# ------------------------------------------------------------------------ workers
def worker(side: str, cfg: Config, threads: int) -> dict:
    """One fit in this process; its seconds per epoch (list), phases and final loss."""
    data = run_data(cfg)
    _load_warp_kernel(cfg)
    if side == "torch":
        from threadpoolctl import threadpool_limits

        from benchmarks.torch_gmm import fit_torch
        with threadpool_limits(threads, user_api="blas"):       # numpy's share: data prep
            fit = fit_torch(cfg, *data[:3], threads=threads, val_idx=data[3])
        return {"epochs": fit.epoch_seconds, "phases": fit.phases,
                "train_loss": fit.train_terms["loss"]}
    from npvae.engine.threads import process_share
    from npvae.training.loop import fit

    marks, prof = [0.0], {}
    with process_share(threads):
        result = fit(cfg, *data, progress=False, profile=prof,
                     on_epoch_end=lambda state: marks.append(state.fit_seconds))
    return {"epochs": list(np.diff(marks)), "phases": prof,
            "train_loss": result.history["train_loss"][-1]}


def _load_warp_kernel(cfg: Config) -> None:
    """Both sides prepare batches with npvae's Numba warp: load it before either fit's clock
    starts, so that neither pays it in its first epoch."""
    from npvae.engine.augment import strong_view

    strong_view(np.zeros((2, cfg.input_dim), cfg.dtype), np.zeros((2, 6)), cfg)


def run_worker(side: str, argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *argv, "--worker", side],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        sys.exit(f"the {side} worker failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def per_epoch(epochs: list[float]) -> float:
    """The mean of epochs 2..N (the first alone if it is the only one)."""
    return statistics.fmean(epochs[1:] or epochs)


def spread(values) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def phase_line(runs: list[dict]) -> str:
    """Each phase's seconds per epoch, median over the rounds."""
    parts = []
    for name in PHASES:
        vals = [r["phases"][name] / len(r["epochs"]) for r in runs if name in r["phases"]]
        if vals:
            parts.append(f"{name} {statistics.median(vals):.3f}")
    return ", ".join(parts)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", help="preset name or TOML file (default: see the docstring)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--json", metavar="FILE", help="also write every round's numbers here")
    ap.add_argument("--worker", choices=("npvae", "torch"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    try:
        cfg, label = resolve_config(a.config, a.set, a.epochs)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if a.worker:
        print(json.dumps(worker(a.worker, cfg, a.threads)))
        return 0
    try:
        import torch
    except ImportError:
        print("error: PyTorch is not installed here (pip install -e .[bench]).", file=sys.stderr)
        return 2
    data = run_data(cfg)
    print(f"bench_cons: {label} (w_cons {cfg.w_cons}, threshold {cfg.cons_threshold}, T "
          f"{cfg.cons_temperature}), {cfg.dtype}; {len(data[2])} train / {len(data[3])} val "
          f"images, {int((data[1] >= 0).sum())} labeled; {a.epochs} epochs, {a.rounds} rounds, "
          f"{a.threads} threads; torch {torch.__version__}, numpy {np.__version__}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.1f}", flush=True)
    same = same_work(cfg, data)
    print(f"same work (float64, one batch): loss rel diff {same['loss_rel']:.1e}, largest "
          f"gradient rel err {same['grad_rel']:.1e}", flush=True)
    runs = {"npvae": [], "torch": []}
    for r in range(a.rounds):
        for side in (("npvae", "torch") if r % 2 == 0 else ("torch", "npvae")):
            runs[side].append(run_worker(side, argv))
        n, t = (per_epoch(runs[s][-1]["epochs"]) for s in ("npvae", "torch"))
        print(f"round {r + 1}: npvae {n:.3f} s/epoch (first {runs['npvae'][-1]['epochs'][0]:.3f}),"
              f" torch {t:.3f} s/epoch (first {runs['torch'][-1]['epochs'][0]:.3f}), ratio "
              f"{n / t:.3f}; load {os.getloadavg()[0]:.1f}", flush=True)
    sec = {s: [per_epoch(run["epochs"]) for run in runs[s]] for s in runs}
    ratios = [n / t for n, t in zip(sec["npvae"], sec["torch"])]
    print(f"s/epoch, median (min-max): npvae {spread(sec['npvae'])}, torch {spread(sec['torch'])}")
    print(f"ratio npvae / torch: {spread(ratios)}")
    print(f"npvae per phase, s/epoch: {phase_line(runs['npvae'])}")
    print(f"torch per phase, s/epoch: {phase_line(runs['torch'])}")
    print(f"final training loss (eval mode): npvae {runs['npvae'][-1]['train_loss']:.4f}, "
          f"torch {runs['torch'][-1]['train_loss']:.4f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"config": label, "runs": runs, "same_work": same,
                                            "ratios": ratios}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
