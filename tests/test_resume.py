"""Interruption and resume: a run stopped at any step (or between epochs), saved to
checkpoints/resume.npz and resumed, ends with exactly the weights of the same run left alone;
through the CLI, SIGINT / SIGTERM give exit status 130 / 143 and `--resume` finishes the run;
a damaged or mismatched resume checkpoint is refused with one sentence."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from npvae import Config
from npvae.training.checkpoint import load_checkpoint, load_resume, save_resume
from npvae.training.data import load_digits, make_splits, subsample, visible_labels
from npvae.runs.rundir import RESUME, read_history, write_config
from npvae.training.loop import fit
from conftest import write_digits_npz
from test_run import ROOT, run_cli

N, BATCH, EPOCHS = 150, 32, 3          # 135 training images: 5 steps per epoch (4 x 32 + 7)
STEPS = 5
# should_stop is asked after every step and after every evaluation: 6 calls per epoch
STOPS = {2: "epoch 1 step 2 of 5",
         5: "epoch 1 step 5 of 5 (before that epoch's evaluation)",
         6: "epoch 2 step 0 (after epoch 1 and its evaluation)",
         14: "epoch 3 step 2 of 5",
         18: "epoch 4 step 0 (after epoch 3 and its evaluation)"}

CFG = Config(num_samples=N, epochs=EPOCHS, batch_size=BATCH).validate()


def data_of(cfg):
    """What the CLI trains on for cfg: x, visible labels, train and validation indices."""
    x, y = subsample(*load_digits(cfg.data), cfg.num_samples, cfg.seed)
    splits = make_splits(len(y), cfg.num_labeled, cfg.seed, cfg.val_fraction)
    return x, visible_labels(y, splits.labeled), splits.train, splits.val


def on_file(cfg, digits_file):
    """cfg reading the same N digits from an npz file (quicker to load in a subprocess)."""
    return cfg.replace(data=str(digits_file), num_samples=None)


@pytest.fixture(scope="module")
def digits_file(tmp_path_factory):
    return write_digits_npz(tmp_path_factory.mktemp("data") / "digits.npz", N)


@pytest.fixture(scope="module")
def digits(digits_file):
    return data_of(on_file(CFG, digits_file))


# The readable engine is slow (about a second per epoch here): two epochs for it.
CFGS = {"fast": CFG, "reference": CFG.replace(epochs=2)}


@pytest.fixture(scope="module")
def uninterrupted(digits):
    return {engine: fit(cfg, *digits, progress=False, engine=engine)
            for engine, cfg in CFGS.items()}


def stop_at(call: int):
    calls = iter(range(1, 10**6))
    return lambda: next(calls) == call


def assert_same_run(a, b):
    assert np.array_equal(a.params.flat, b.params.flat)              # bit for bit
    assert np.array_equal(a.best_params.flat, b.best_params.flat)
    assert np.array_equal(a.opt_state.m, b.opt_state.m) and np.array_equal(a.opt_state.v,
                                                                           b.opt_state.v)
    assert a.opt_state.t == b.opt_state.t and a.best_epoch == b.best_epoch
    assert a.history.keys() == b.history.keys()
    for k in a.history:
        np.testing.assert_array_equal(np.asarray(a.history[k]), np.asarray(b.history[k]), k)


@pytest.mark.parametrize("engine, call", [("fast", call) for call in sorted(STOPS)]
                         + [("reference", 2), ("reference", 6)])
def test_interrupted_and_resumed_equals_uninterrupted(digits, uninterrupted, tmp_path, engine,
                                                      call):
    cfg = CFGS[engine]
    part = fit(cfg, *digits, progress=False, engine=engine, should_stop=stop_at(call))
    assert part.interrupted and not part.diverged
    assert part.state.where(STEPS) == STOPS[call]
    save_resume(tmp_path / "resume.npz", part.state, cfg)            # through the file
    state = load_resume(tmp_path / "resume.npz", cfg, len(digits[2]))
    t0 = time.perf_counter()
    rest = fit(cfg, *digits, progress=False, engine=engine, state=state)
    seconds = time.perf_counter() - t0
    assert not rest.interrupted and rest.epochs_completed == cfg.epochs
    assert_same_run(rest, uninterrupted[engine])
    # fit_seconds add up across the two sessions
    assert part.fit_seconds < rest.fit_seconds <= part.fit_seconds + seconds


def test_interrupted_twice(digits, uninterrupted):
    first = fit(CFG, *digits, progress=False, should_stop=stop_at(3))
    second = fit(CFG, *digits, progress=False, state=first.state, should_stop=stop_at(8))
    assert second.state.where(STEPS) == "epoch 2 step 5 of 5 (before that epoch's evaluation)"
    assert first.state.opt.t == 3 and second.state.opt.t == 10     # first state left as it was
    rest = fit(CFG, *digits, progress=False, state=second.state)
    assert_same_run(rest, uninterrupted["fast"])


# ------------------------------------------------------------------- damaged checkpoints

def interrupted_run_folder(digits, tmp_path, cfg):
    """A run folder as an interrupted CLI run of cfg leaves it (config.toml + resume.npz)."""
    part = fit(cfg, *digits, progress=False, should_stop=stop_at(2))
    write_config(tmp_path, cfg)
    return save_resume(tmp_path / RESUME, part.state, cfg)


def test_truncated_resume_checkpoint_is_refused(digits, digits_file, tmp_path):
    path = interrupted_run_folder(digits, tmp_path, on_file(CFG, digits_file))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    proc = run_cli("--resume", tmp_path, "--no-progress")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line, = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: checkpoint {path} is unreadable (truncated or not an npz")
    assert path.read_bytes() == data[: len(data) * 2 // 3]           # left as it was
    assert not (tmp_path / "checkpoints/final.npz").exists()


def test_resume_checkpoint_of_another_config_is_refused(digits, digits_file, tmp_path):
    cfg = on_file(CFG, digits_file)
    interrupted_run_folder(digits, tmp_path, cfg)
    write_config(tmp_path, cfg.replace(lr=0.01))                     # config.toml edited since
    proc = run_cli("--resume", tmp_path, "--no-progress")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "was written for another config (lr is 0.001 there but 0.01 in the run's " \
           "config.toml)" in proc.stderr


# ------------------------------------------------------------------- real signals

# Long enough that the signal, sent when epoch 1 is reported, lands while training: with 20
# epochs of these 135 images an idle machine finished the run first (exit 0, no resume point).
# patience = epochs: early stopping would end the run before its last epoch.
SIGNAL_EPOCHS = 60


def start_and_signal(data, out, sig, epochs):
    """Start a CLI run, send `sig` once its first epoch is reported; return the exit status,
    stdout and stderr."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "npvae.run", "--data", str(data),
                             "--epochs", str(epochs), "--patience", str(epochs),
                             "--batch-size", str(BATCH), "--out",
                             str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:                     # epoch lines go to stderr (not a terminal)
        seen.append(line)
        if line.startswith("epoch 1/"):
            proc.send_signal(sig)
            break
    stdout, rest = proc.communicate(timeout=300)
    return proc.returncode, stdout, "".join(seen) + rest


def test_sigint_writes_a_resume_point_and_resume_finishes_bit_identical(tmp_path, digits_file):
    epochs, out = SIGNAL_EPOCHS, tmp_path / "run"
    code, _, err = start_and_signal(digits_file, out, signal.SIGINT, epochs)
    assert code == 130, err
    assert "Traceback" not in err
    assert f"resume with python -m npvae.run --resume {out}" in err
    assert (out / RESUME).is_file()
    report = (out / "REPORT.md").read_text()
    assert "**Stopped early:** interrupted at epoch" in report
    done = len(read_history(out)["epoch"])
    assert 1 <= done < epochs
    assert json.loads((out / "summary.json").read_text())["epochs_completed"] == done

    proc = run_cli("--resume", out, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert not (out / RESUME).exists()
    assert read_history(out)["epoch"] == list(range(1, epochs + 1))
    assert "Stopped early" not in (out / "REPORT.md").read_text()
    run = json.loads((out / "run.json").read_text())
    assert run["resumed"] == [["python", "-m", "npvae.run", "--resume", str(out), "--no-progress"]]

    # the same run, never interrupted, in this process
    cfg = on_file(CFG, digits_file).replace(epochs=epochs, patience=epochs)
    alone = fit(cfg, *data_of(cfg), progress=False)
    final, saved = load_checkpoint(out / "checkpoints/final.npz")
    assert saved == cfg and np.array_equal(final.flat, alone.params.flat)
    best, _ = load_checkpoint(out / "checkpoints/best.npz")
    assert np.array_equal(best.flat, alone.best_params.flat)


def test_sigterm_exits_143_with_a_resume_point(tmp_path, digits_file):
    out = tmp_path / "run"
    code, _, err = start_and_signal(digits_file, out, signal.SIGTERM, SIGNAL_EPOCHS)
    assert code == 143, err
    assert (out / RESUME).is_file() and (out / "checkpoints/final.npz").is_file()
    assert "interrupted at epoch" in (out / "REPORT.md").read_text()
