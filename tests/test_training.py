"""Training works end to end on real digits: the loss goes down, and a run is a pure function
of its seed (same seed, same machine: bit-identical weights; another seed: other weights)."""
from __future__ import annotations

import numpy as np
import pytest

from npvae import Config
from npvae.training.loop import fit

N, LABELED, EPOCHS, BATCH = 300, 30, 3, 32


def run(digits, seed):
    x, y_visible, train_idx, val_idx = digits
    cfg = Config(seed=seed, epochs=EPOCHS, batch_size=BATCH).validate()
    return fit(cfg, x, y_visible, train_idx, val_idx, progress=False)


@pytest.fixture(scope="module")
def first_run(digits):
    return run(digits, seed=0)


def test_digits_are_what_the_model_expects(digits):
    x, y_visible, train_idx, val_idx = digits
    assert x.shape == (N, 784) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert (y_visible >= 0).sum() == LABELED
    assert len(train_idx) == 270 and len(val_idx) == 30


def test_training_lowers_the_loss(first_run):
    h = first_run.history
    assert first_run.epochs_completed == EPOCHS and h["epoch"] == [1, 2, 3]
    loss = h["train_loss"]
    assert np.isfinite(loss).all()
    assert loss[-1] < loss[0], f"training loss did not decrease: {loss}"
    assert h["train_recon"][-1] < h["train_recon"][0]
    assert first_run.params.flat.dtype == np.float32 and np.isfinite(first_run.params.flat).all()


def test_same_seed_gives_bitwise_identical_weights(digits, first_run):
    again = run(digits, seed=0)
    assert np.array_equal(again.params.flat, first_run.params.flat)
    assert again.history["train_loss"] == first_run.history["train_loss"]


def test_other_seed_gives_other_weights(digits, first_run):
    other = run(digits, seed=1)
    assert not np.array_equal(other.params.flat, first_run.params.flat)
