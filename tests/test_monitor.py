"""The per-epoch figures of model gmm runs (npvae/training/monitor.py): the consistency term,
the share of confident targets and the held-out accuracy, in the history, the progress line,
the resume point and the report's training curves; and that watching them changes nothing.
"""
from __future__ import annotations

import numpy as np
import pytest

from npvae.core.config import Config
from npvae.training.loop import fit
from npvae.training.monitor import CONS_KEYS, HELDOUT_KEY

NEW = CONS_KEYS + (HELDOUT_KEY,)


@pytest.fixture(scope="module")
def labelled():
    """300 embedded digits as the conftest's `digits`, with the validation split's true labels."""
    from npvae.training.data import load_digits, make_splits, subsample, visible_labels

    x, y = subsample(*load_digits(), 300, seed=0)
    splits = make_splits(300, 30, seed=0)
    return (x, visible_labels(y, splits.labeled), splits.train, splits.val), y[splits.val]


def tiny(**changes) -> Config:
    base = dict(model="gmm", latent_dim=4, hidden_dims=(16,), decoder_dims=(16,), epochs=3,
                batch_size=64, labeled_per_batch=8, w_cons=1.0, cons_threshold=0.5)
    return Config(**{**base, **changes}).validate()


def test_columns_in_range_and_training_unchanged(labelled, capsys):
    data, yva = labelled
    cfg = tiny()
    watched = fit(cfg, *data, progress=True, val_labels=yva)
    plain = fit(cfg, *data, progress=False)
    # watching reads values already computed: the weights and every other column are the same
    np.testing.assert_array_equal(watched.params.flat, plain.params.flat)
    np.testing.assert_array_equal(watched.best_params.flat, plain.best_params.flat)
    assert HELDOUT_KEY not in plain.history
    for k, v in plain.history.items():
        np.testing.assert_array_equal(np.asarray(v), np.asarray(watched.history[k]), k)
    h = watched.history
    for k in NEW:
        assert len(h[k]) == 3, k
        assert np.isfinite(h[k]).all(), k
    assert all(0 <= v <= 1 for v in h[HELDOUT_KEY] + h["cons_confident"])
    assert all(v >= 0 for v in h["cons_loss"])
    assert list(h)[-3:] == list(NEW)            # after the seed's columns
    err = capsys.readouterr().err
    assert "  acc " in err and "  conf " in err and "  cons " in err


def test_without_the_term_only_the_accuracy(labelled):
    data, yva = labelled
    h = fit(tiny(w_cons=0.0, epochs=1), *data, progress=False, val_labels=yva).history
    assert HELDOUT_KEY in h and not set(CONS_KEYS) & set(h)


def test_seed_model_has_no_new_columns(labelled):
    data, yva = labelled
    cfg = Config(latent_dim=2, hidden_dims=(16,), epochs=1, batch_size=64).validate()
    h = fit(cfg, *data, progress=False, val_labels=yva).history
    assert not set(NEW) & set(h)


def test_stopped_mid_epoch_resumes_to_the_same_rows(labelled, tmp_path):
    from npvae.training.checkpoint import load_resume, save_resume

    data, yva = labelled
    cfg = tiny(epochs=2)
    whole = fit(cfg, *data, progress=False, val_labels=yva)
    calls = iter(range(10**6))
    stopped = fit(cfg, *data, progress=False, val_labels=yva,
                  should_stop=lambda: next(calls) == 7)             # inside epoch 2
    assert stopped.interrupted and stopped.state.step > 0 and stopped.state.epoch_sums
    path = save_resume(tmp_path / "resume.npz", stopped.state, cfg)
    state = load_resume(path, cfg, len(data[2]))
    resumed = fit(cfg, *data, progress=False, val_labels=yva, state=state)
    np.testing.assert_array_equal(whole.params.flat, resumed.params.flat)
    for k in NEW:
        assert whole.history[k] == resumed.history[k], k



# ------------------------------------------------------------------ the run and its report
def _run(tmp_path, *args):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "npvae.run", "--num-samples", "300", "--epochs", "3",
         "--batch-size", "64", "--latent-dim", "4", "--hidden-dims", "16", "--out", str(out),
         *args], env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_gmm_consistency_run_shows_the_curves(tmp_path):
    from npvae.reporting.plots import CURVES_FIGURE
    from npvae.runs.rundir import read_history, rerender

    out, proc = _run(tmp_path, "--model", "gmm", "--w-cons", "1.0", "--cons-threshold", "0.5")
    h = read_history(out)
    assert list(h)[-5:-2] == list(NEW)          # the scalar columns, then pi_k and usage_k
    assert all(0 <= v <= 1 for v in h[HELDOUT_KEY] + h["cons_confident"])
    assert all(v >= 0 for v in h["cons_loss"]) and len(h["cons_loss"]) == 3
    assert "  acc " in proc.stderr and "  cons " in proc.stderr
    # the last row's accuracy is the report's held-out accuracy (the final weights)
    import json
    summary = json.loads((out / "summary.json").read_text())
    assert summary["heldout_accuracy"]["components q(c|x)"] == pytest.approx(h[HELDOUT_KEY][-1],
                                                                             abs=0.04)
    assert (out / CURVES_FIGURE).is_file()
    report = (out / "REPORT.md").read_text()
    assert f"![Training Curves]({CURVES_FIGURE})" in report
    (out / CURVES_FIGURE).unlink()
    rerender(out)                               # from the files: the same figure and report
    assert (out / CURVES_FIGURE).is_file() and (out / "REPORT.md").read_text() == report


def test_seed_model_run_has_neither(tmp_path):
    from npvae.reporting.plots import CURVES_FIGURE
    from npvae.runs.rundir import read_history

    out, _ = _run(tmp_path, "--no-progress")
    assert not set(NEW) & set(read_history(out))
    assert not (out / CURVES_FIGURE).exists()
    assert "Training Curves" not in (out / "REPORT.md").read_text()
