"""End to end through the real command line, in a subprocess, on a tiny config."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from npvae import Config
from npvae.training.checkpoint import CheckpointError, load_checkpoint
from npvae.training.tomlfile import read_toml
from npvae.reporting.plots import FIGURES
from npvae.reporting.report import SEED_ROWS
from npvae.runs.rundir import read_history

TINY = ["--num-samples", "300", "--epochs", "2", "--batch-size", "64", "--no-progress"]
ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, module="npvae.run", cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    proc = run_cli(*TINY, "--out", out, "--name", "tiny_test", "--tags", "a", "b")
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_every_output_file_exists(tiny_run):
    out, proc = tiny_run
    for rel in ["REPORT.md", "summary.json", "history.csv", "config.toml", "run.json",
                "checkpoints/best.npz", "checkpoints/final.npz", *FIGURES.values()]:
        assert (out / rel).is_file(), rel
    assert str(out / "REPORT.md") in proc.stdout
    assert not list(out.rglob("*.tmp")), "temporary files left behind"


def test_run_json_names_the_blas_kernels(tiny_run):
    """The kernels decide the last bits of a run (npvae/engine/blas.py), so run.json records them:
    the ones npvae asked for in this process (the CLI inherits the choice) when it chose."""
    from npvae.engine import blas

    info = json.loads((tiny_run[0] / "run.json").read_text())
    assert info["blas"] and all("kernels)" in b for b in info["blas"])
    if os.environ.get("OPENBLAS_CORETYPE") == blas.ALTERNATIVE:     # asked for them
        assert all(f"({blas.ALTERNATIVE} kernels)" in b for b in info["blas"])


def test_a_run_without_preset_records_none(tiny_run):
    info = json.loads((tiny_run[0] / "run.json").read_text())
    assert info["preset"] is None and "preset" not in info["header"]
    assert info["threads"] >= 1
    assert "**Preset:**" not in (tiny_run[0] / "REPORT.md").read_text()
    assert not (tiny_run[0] / "config.toml").read_text().startswith("#")
    # the settings typed are the run's, from flags; the others are Config's defaults
    assert info["sources"] == dict.fromkeys(["num_samples", "epochs", "batch_size", "name",
                                             "tags"], "flag")
    assert "name = \"tiny_test\"  # from flag\n" in (tiny_run[0] / "config.toml").read_text()


def test_every_metric_is_finite(tiny_run):
    summary = json.loads((tiny_run[0] / "summary.json").read_text())
    for key, value in summary.items():
        values = value.values() if isinstance(value, dict) else value
        for v in (values if isinstance(value, (list, dict)) else [value]):
            if v is not None:
                assert math.isfinite(v), key
    assert summary["epochs_completed"] == 2
    assert len(summary["usage"]) == summary["K"] == 10
    # the report's Loss is the sum of its weighted parts
    assert summary["loss"] == pytest.approx(summary["loss_parts_sum"], rel=1e-9)


def test_report_has_every_seed_row_and_figure(tiny_run):
    text = (tiny_run[0] / "REPORT.md").read_text()
    assert "| Held-out (extra) | Held-out Accuracy: classifier head |" in text
    for category, label, _ in SEED_ROWS:
        assert f"| {category} | {label} |" in text
    for rel in FIGURES.values():
        assert f"({rel})" in text
    assert "**Experiment:** tiny_test" in text and "**Tags:** a, b" in text
    assert "- num_samples: 300" in text


def test_figures_are_readable_pngs(tiny_run):
    for rel in FIGURES.values():
        img = mpimg.imread(tiny_run[0] / rel)
        assert img.shape[0] >= 200 and img.shape[1] >= 200, rel
        assert img[..., :3].std() > 0.01, f"{rel} looks blank"


def test_history_and_config_round_trip(tiny_run):
    out = tiny_run[0]
    hist = read_history(out)
    assert hist["epoch"] == [1, 2]
    assert np.asarray(hist["pi"]).shape == (2, 10) and np.asarray(hist["usage"]).shape == (2, 10)
    assert all(f"{s}_{t}" in hist for s in ("train", "val") for t in ("loss", "recon", "cls"))
    cfg = Config.from_dict(read_toml(out / "config.toml"))
    assert (cfg.num_samples, cfg.epochs, cfg.batch_size, cfg.name) == (300, 2, 64, "tiny_test")
    params, cfg2 = load_checkpoint(out / "checkpoints/final.npz")
    assert cfg2 == cfg and np.isfinite(params.flat).all()


def test_report_rerenders_without_training(tiny_run, tmp_path):
    out = tiny_run[0]
    before = (out / "REPORT.md").read_text()
    (out / "REPORT.md").unlink()
    (out / FIGURES["latent_spaces"]).unlink()
    proc = run_cli(out, module="npvae.report")
    assert proc.returncode == 0, proc.stderr
    assert (out / "REPORT.md").read_text() == before
    assert (out / FIGURES["latent_spaces"]).is_file()


def test_toml_file_then_flags_override(tmp_path):
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text('[model]\nK = 3\nlatent_dim = 2\n[training]\nepochs = 1\n'
                        'num_samples = 200\n')
    out = tmp_path / "run"
    proc = run_cli("--config", cfg_file, "--K", "4", "--no-progress", "--out", out)
    assert proc.returncode == 0, proc.stderr
    cfg = Config.from_dict(read_toml(out / "config.toml"))
    assert (cfg.K, cfg.epochs, cfg.num_samples) == (4, 1, 200)


def test_help_lists_every_flag_with_default():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for flag in ("--K", "--latent-dim", "--hidden-dims", "--epochs", "--batch-size", "--lr",
                 "--w-rec", "--w-div", "--num-labeled", "--seed", "--data", "--config",
                 "--name", "--description", "--tags", "--out"):
        assert flag in proc.stdout, flag
    assert "(default: 256 128 64)" in proc.stdout.replace("\n", " ").replace("  ", " ")


@pytest.mark.parametrize("args, words", [
    (["--no-such-flag"], "unrecognized arguments"),
    (["--K", "0"], "K"),
    (["--lr", "-1"], "lr"),
    (["--w-kl", "-0.5"], "w_kl"),
    (["--epochs", "two"], "epochs"),
])
def test_bad_input_exits_2_without_traceback(tmp_path, args, words):
    proc = run_cli(*args, "--out", tmp_path / "never")
    assert proc.returncode == 2
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "never").exists()


def test_existing_output_folder_is_refused(tmp_path):
    (tmp_path / "old.txt").write_text("keep me")
    proc = run_cli(*TINY, "--out", tmp_path)
    assert proc.returncode == 2 and "--overwrite" in proc.stderr
    assert (tmp_path / "old.txt").read_text() == "keep me"


def test_truncated_checkpoint_is_refused(tiny_run, tmp_path):
    data = (tiny_run[0] / "checkpoints/final.npz").read_bytes()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="bad.npz"):
        load_checkpoint(bad)
