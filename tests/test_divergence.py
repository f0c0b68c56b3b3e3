"""Divergence: a NaN or inf in the loss or the gradient stops training at that step, names the
step and what broke, keeps the weights from before the bad update, and (through the CLI) writes
the checkpoints, history and a report marked "stopped early", with exit status 3."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from npvae import Config
from npvae.training.checkpoint import load_checkpoint
from npvae.engine import reference
from npvae.engine.mixture import FastModel
from npvae.runs.rundir import read_history
from npvae.training.loop import fit, make_rngs
from conftest import write_digits_npz
from test_run import run_cli

N, LABELED, BATCH = 300, 30, 64          # 270 training images: 5 steps per epoch
ENGINES = ("fast", "reference")


def cfg(**kw):
    return Config(**{"seed": 0, "epochs": 2, "batch_size": BATCH, **kw}).validate()


def stopped_after(digits, steps, engine):
    """The weights of the same run stopped (cleanly) after `steps` optimiser steps."""
    calls = iter(range(1, 10**6))
    return fit(cfg(), *digits, progress=False, engine=engine,
               should_stop=lambda: next(calls) == steps).params


@pytest.mark.parametrize("engine", ENGINES)
def test_nan_pixel_stops_at_its_step_and_keeps_the_weights_before_it(digits, engine):
    x, y_visible, train_idx, val_idx = digits
    # put a NaN pixel into the first image of the third batch of epoch 1
    order = make_rngs(0)["shuffle"].permutation(len(train_idx))
    x = x.copy()
    x[train_idx[order[2 * BATCH]], 400] = np.nan
    result = fit(cfg(), x, y_visible, train_idx, val_idx, progress=False, engine=engine)
    assert not result.interrupted and result.epochs_completed == 0
    assert result.diverged.startswith("diverged at epoch 1 step 3 of 5 (optimiser step 3): "
                                      "the weighted loss terms recon = nan")
    assert result.opt_state.t == 2                       # the bad step was not applied
    assert np.isfinite(result.params.flat).all()
    assert np.array_equal(result.params.flat, stopped_after(digits, 2, engine).flat)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_non_finite_gradient_alone_names_the_first_bad_parameter(digits, engine, monkeypatch):
    """Finite loss, but an inf in two gradient arrays at step 4: the first in layout order
    (dec1.W comes before cls0.b) is named."""
    calls = {"n": 0}

    def poison(g):
        calls["n"] += 1
        if calls["n"] == 4:
            g["cls0.b"][0] = np.inf
            g["dec1.W"][1, 2] = -np.inf

    if engine == "reference":
        real = reference.loss_and_grads

        def fake(*a):
            loss, g, terms = real(*a)
            poison(g)
            return loss, g, terms
        monkeypatch.setattr(reference, "loss_and_grads", fake)
    else:
        real = FastModel.loss_and_grads

        def fake(self, p, x, y, noise, g):
            out = real(self, p, x, y, noise, g)
            poison(g)
            return out
        monkeypatch.setattr(FastModel, "loss_and_grads", fake)
    result = fit(cfg(), *digits, progress=False, engine=engine)
    assert re.fullmatch(r"diverged at epoch 1 step 4 of 5 \(optimiser step 4\): the loss is "
                        r"finite \([0-9.]+\) but the gradient of dec1\.W has 1 non-finite entry; "
                        r"the parameters from before that step are kept", result.diverged)
    monkeypatch.undo()
    assert np.array_equal(result.params.flat, stopped_after(digits, 3, engine).flat)


def test_a_non_finite_evaluation_stops_after_that_epoch(digits, monkeypatch):
    real = FastModel.evaluate_split

    def fake(self, p, x, y):
        terms, usage = real(self, p, x, y)
        if len(fake.seen) >= 2:                           # epoch 2, training split
            terms = {**terms, "kl_z": math.inf, "loss": math.inf}
        fake.seen.append(1)
        return terms, usage
    fake.seen = []
    monkeypatch.setattr(FastModel, "evaluate_split", fake)
    result = fit(cfg(epochs=4), *digits, progress=False)
    assert result.diverged.startswith("diverged at epoch 2: its evaluation gave non-finite "
                                      "weighted terms (training kl_z = inf")
    assert result.epochs_completed == 2 and result.history["train_kl_z"][1] == math.inf
    assert result.best_epoch == 1


def test_absurd_learning_rate_through_the_cli(tmp_path):
    out = tmp_path / "run"
    data = write_digits_npz(tmp_path / "digits.npz", N)
    proc = run_cli("--data", data, "--epochs", 2, "--batch-size", BATCH, "--lr", "1e30",
                   "--no-progress", "--out", out)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr
    assert re.search(r"error: training diverged at epoch 1 step \d of 5 \(optimiser step \d\): "
                     r"the weighted loss terms? (recon|kl_z|kl_c|dirichlet|diversity|cls) = "
                     r"(nan|inf|-inf)", proc.stderr), proc.stderr
    assert str(out / "checkpoints/final.npz") in proc.stderr
    params, saved = load_checkpoint(out / "checkpoints/final.npz")   # the last good weights
    assert np.isfinite(params.flat).all() and saved.lr == 1e30
    assert np.isfinite(load_checkpoint(out / "checkpoints/best.npz")[0].flat).all()
    assert not (out / "checkpoints/resume.npz").exists()
    assert read_history(out)["epoch"] == []              # no epoch finished
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_early"].startswith("diverged at epoch 1 step")
    assert summary["epochs_completed"] == 0 and math.isnan(summary["loss"])
    assert math.isnan(summary["accuracy"])               # not a number made up from NaN logits
    report = (out / "REPORT.md").read_text()
    assert "**Stopped early:** diverged at epoch 1 step" in report
    assert "| Training | Loss | nan |" in report and "| Training | Epochs Completed | 0 |" in report
    assert not list(out.rglob("*.tmp"))
