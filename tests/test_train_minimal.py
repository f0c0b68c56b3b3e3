"""examples/train_minimal.py is the training loop, not a sketch of it: with the same seed it
gives the weights of npvae/training/loop.py:fit on the readable path, and it runs as a script."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from npvae.core.config import Config
from npvae.training.data import make_splits, visible_labels
from npvae.training.loop import fit
from conftest import load_example

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "train_minimal.py"


def load_script():
    return load_example("train_minimal")


def test_same_weights_as_fit_on_the_reference_engine():
    """Float64, two epochs of a small model on random images with a few labels: the loop's
    weights equal fit's (the only difference, clipping once more, changes ~1e-16)."""
    cfg = Config(input_dim=20, hidden_dims=(12, 8), K=3, embed_dim=3, pathway_dim=4,
                 decoder_dims=(10,), classifier_dims=(6,), num_classes=4, batch_size=16,
                 epochs=2, num_labeled=10, dtype="float64").validate()
    rng = np.random.default_rng(0)
    x = rng.random((90, cfg.input_dim))
    y = rng.integers(0, cfg.num_classes, 90)
    splits = make_splits(90, cfg.num_labeled, cfg.seed, cfg.val_fraction)
    y_vis = visible_labels(y, splits.labeled)
    lines = []
    params = load_script().train(cfg, x[splits.train], y_vis[splits.train], x[splits.val],
                                 y_vis[splits.val], say=lines.append)
    ref = fit(cfg, x, y_vis, splits.train, splits.val, progress=False, engine="reference")
    np.testing.assert_allclose(params.flat, ref.params.flat, rtol=0, atol=1e-12)
    assert not np.allclose(params.flat, fit(cfg.replace(epochs=1), x, y_vis, splits.train,
                                            splits.val, progress=False,
                                            engine="reference").params.flat)
    assert lines[0].startswith("first step: loss ") and len(lines) == 1 + cfg.epochs
    # the per-epoch validation loss is the one fit records (eval mode, whole split at once
    # here, in chunks of 128 there: one chunk for 9 images)
    val = [float(line.rsplit(" ", 1)[1]) for line in lines[1:]]
    np.testing.assert_allclose(val, ref.history["val_loss"], atol=5e-3)


def test_runs_as_a_script():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    env.pop("NPVAE_EXAMPLE_TINY", None)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny"], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    first = float(lines[0].split()[3].rstrip(","))
    assert 600 < first < 700                     # 92.1 (Dirichlet) + about 784 ln 2
    epochs = [float(line.split()[4]) for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2 and epochs[1] < epochs[0]     # the loss falls
    assert lines[-1].startswith("2 epochs in ")
