"""python -m npvae.sweep: the grid, a tiny sweep end to end in worker processes, the statistics,
a failing grid point reported without stopping the others, bad flags refused before anything
runs."""
from __future__ import annotations

import csv
import json
import math
import os

import matplotlib.image as mpimg
import numpy as np
import pytest
from scipy import stats

from npvae.training import presets
from npvae.runs import runner as run
from npvae.experiments.sweep import command as sweep
from npvae.experiments.sweep import report as SR
from npvae.reporting.baselines import BASELINES
from npvae.training.cli import config_from_args, resolve
from npvae.training.data import load_data
from npvae.runs.rundir import read_config
from npvae.engine.threads import available_cores
from test_run import run_cli

TINY = ["--epochs", "1", "--num-samples", "300", "--batch-size", "64"]


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_grid_is_the_product_with_the_seed_varying_fastest():
    ns = sweep.build_parser().parse_args(["--seed", "1", "2", "--K", "3", "4", "--hidden-dims",
                                          "8,4", "--lr", "0.01"])
    points = sweep.grid(ns)
    assert [(p["K"], p["seed"]) for p in points] == [(3, 1), (3, 2), (4, 1), (4, 2)]
    assert all(p["hidden_dims"] == (8, 4) and p["lr"] == 0.01 for p in points)
    argv = sweep.run_argv(points[0])
    assert argv == ["--K", "3", "--hidden-dims", "8", "4", "--lr", "0.01", "--seed", "1"]
    cfg = config_from_args(run.build_parser().parse_args(argv))
    assert (cfg.K, cfg.hidden_dims, cfg.lr, cfg.seed) == (3, (8, 4), 0.01, 1)
    assert sweep.run_name(3, {"K": 4, "lr": 1e30, "seed": 2}, ["K", "lr", "seed"]) == \
        "003_K4_lr1e30_seed2"


def test_interval_matches_scipy():
    v = [0.71, 0.74, 0.69, 0.80, 0.77]
    st = SR.interval(v + [math.nan])                       # nan (a failed metric) is left out
    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=stats.sem(v))
    assert st["n"] == 5 and st["mean"] == pytest.approx(np.mean(v), rel=1e-12)
    assert st["std"] == pytest.approx(np.std(v, ddof=1), rel=1e-12)
    assert (st["lo"], st["hi"]) == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))
    assert SR.interval(v, level=0.99)["hi"] > st["hi"]
    one = SR.interval([0.5])
    assert one["mean"] == 0.5 and math.isnan(one["std"]) and math.isnan(one["lo"])
    assert SR.interval([])["n"] == 0


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "s"
    proc = run_cli("--seed", 42, 43, *TINY, "--out", out, module="npvae.sweep")
    return out, proc


def test_tiny_sweep_runs_every_point_in_workers_and_writes_its_files(tiny_sweep):
    out, proc = tiny_sweep
    assert proc.returncode == 0, proc.stderr
    jobs = min(2, available_cores())
    assert f"npvae.sweep: 2 runs, {jobs} at once x {available_cores() // jobs} thread(s)" \
        in proc.stderr
    assert "[1/2] " in proc.stderr and "[2/2] " in proc.stderr        # one line per run
    assert f"sweep: {out / 'SWEEP.md'}" in proc.stdout
    rows = read_csv(out / "sweep.csv")
    assert [(r["run"], r["seed"], r["status"]) for r in rows] == \
        [("000_seed42", "42", "ok"), ("001_seed43", "43", "ok")]
    for r in rows:
        folder = out / r["run"]
        summary = json.loads((folder / "summary.json").read_text())
        info = json.loads((folder / "run.json").read_text())
        # an ordinary run folder, made by npvae.run with the point's flags and its core share
        assert (folder / "REPORT.md").is_file() and info["threads"] == available_cores() // jobs
        assert info["command"] == ["python", "-m", "npvae.run", "--num-samples", "300",
                                   "--epochs", "1", "--batch-size", "64", "--seed", r["seed"],
                                   "--out", str(folder), "--no-progress"]
        assert float(r["accuracy: classifier head"]) == \
            summary["heldout_accuracy"]["classifier head"]
        assert float(r["nmi"]) == summary["nmi"] and float(r["fit_seconds"]) == info["fit_seconds"]
        # baselines on the run's own split
        x, y, splits = load_data(read_config(folder))
        for name, fn in BASELINES.items():
            assert float(r[f"baseline: {name}"]) == fn(x, y, splits), name
        assert int(r["labeled_train_count"]) == np.intersect1d(splits.labeled, splits.train).size
    assert mpimg.imread(out / "accuracy_by_seed.png").shape[0] > 200
    assert (out / "logs" / "000_seed42.log").read_text().startswith("report: ")


def test_sweep_md_summarises_the_seeds(tiny_sweep):
    out, _ = tiny_sweep
    text = (out / "SWEEP.md").read_text()
    rows = read_csv(out / "sweep.csv")
    acc = [float(r["baseline: LabelSpreading (knn 10)"]) for r in rows]
    st = SR.interval(acc)
    assert (f"| all runs | LabelSpreading (knn 10) | 2/2 | {st['mean']:.3f} | {st['std']:.3f} | "
            f"[{st['lo']:.3f}, {st['hi']:.3f}] |  |") in text
    head = [float(r["accuracy: classifier head"]) for r in rows]
    above = sum(h > a for h, a in zip(head, acc))
    assert f"| all runs | classifier head | 2/2 | {np.mean(head):.3f} |" in text
    assert f"| {above}/2 |" in text
    assert "| 000_seed42 | 42 | ok |" in text and "![accuracy by seed](accuracy_by_seed.png)" in text


def test_a_failing_point_is_reported_and_the_others_run(tmp_path, monkeypatch, capsys):
    """--jobs 1 runs the points in this process, so a failure can be planted: an exception
    inside one run; another point diverges (exit 3) on its own."""
    real_train = run._train

    def train(out, cfg, *args):
        if cfg.seed == 43 and cfg.lr < 1:
            raise RuntimeError("planted failure")
        return real_train(out, cfg, *args)

    monkeypatch.setattr(run, "_train", train)
    out = tmp_path / "s"
    status = sweep.main(["--lr", "0.001", "1e30", "--seed", "42", "43", *TINY, "--jobs", "1",
                         "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 1 and "3 of 4 runs failed" in err and "[4/4] " in err
    rows = {r["run"]: r for r in read_csv(out / "sweep.csv")}
    assert list(rows) == ["000_lr0.001_seed42", "001_lr0.001_seed43", "002_lr1e30_seed42",
                          "003_lr1e30_seed43"]
    assert [r["status"] for r in rows.values()] == ["ok", "error", "diverged", "diverged"]
    assert rows["001_lr0.001_seed43"]["error"] == "RuntimeError: planted failure"
    assert rows["002_lr1e30_seed42"]["error"].startswith("error: training diverged at epoch 1")
    assert float(rows["000_lr0.001_seed42"]["accuracy: classifier head"]) >= 0
    for r in rows.values():                                  # baselines need no model
        assert 0 < float(r["baseline: LabelSpreading (knn 10)"]) <= 1
    text = (out / "SWEEP.md").read_text()
    assert "- 001_lr0.001_seed43: error: RuntimeError: planted failure" in text
    assert "| lr=0.001 | classifier head | 1/2 |" in text
    assert "NPVAE_THREADS" not in os.environ            # the worker's share was put back


@pytest.mark.parametrize("flags, message", [
    (["--K", "3", "0"], "error: K = 0 (--K) is not allowed: the number of components must be "
                        "at least 1."),
    (["--preset", "nope"], "error: unknown preset 'nope' (--preset); known presets: demo."),
    (["--preset", "demo", "--K", "4", "0"], "error: K = 0 (--K) is not allowed: the number of "
                                            "components must be at least 1."),
    (["--num-labeled", "10", "400"], "error: num_labeled=400 is not possible with 300 images"),
    (["--jobs", "0"], "error: --jobs 0 is not allowed"),
])
def test_bad_flags_exit_2_before_anything_runs(tmp_path, monkeypatch, capsys, flags, message):
    (tmp_path / "demo.toml").write_text("# Demo\nK = 4\n")
    monkeypatch.setattr(presets, "DIR", tmp_path)
    out = tmp_path / "never"
    assert sweep.main([*TINY, *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not out.exists()


def test_the_grid_overrides_the_preset(tmp_path, monkeypatch):
    """Grid values are flags of each run, so they override the preset's (and a --config
    file's) values; the rest of the preset stays."""
    (tmp_path / "demo.toml").write_text("# Demo\nK = 4\nlatent_dim = 3\nlr = 0.002\n")
    (tmp_path / "my.toml").write_text("lr = 0.003\nseed = 7\n")
    monkeypatch.setattr(presets, "DIR", tmp_path)
    ns = sweep.build_parser().parse_args(["--preset", "demo", "--config",
                                          str(tmp_path / "my.toml"), "--K", "6", "8",
                                          "--num-samples", "300", "--seed", "1", "2"])
    points = sweep.grid(ns)
    cfgs = sweep.check(points)
    assert [(c.K, c.seed) for c in cfgs] == [(6, 1), (6, 2), (8, 1), (8, 2)]
    assert {(c.latent_dim, c.lr) for c in cfgs} == {(3, 0.003)}
    _, sources = resolve(run.build_parser().parse_args(sweep.run_argv(points[0])))
    assert sources == {"num_samples": "flag", "seed": "flag", "K": "flag",
                       "latent_dim": "preset", "lr": "config"}


def test_a_malformed_value_is_argparses_one_sentence(capsys):
    with pytest.raises(SystemExit) as exit_:
        sweep.main(["--seed", "42", "x"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("error: argument --seed: invalid int value: 'x'")
