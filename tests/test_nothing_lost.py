"""Nothing is lost, whatever happens, with real processes where it matters: a run killed with
SIGKILL resumes from its last epoch to bit-identical weights; --resume refuses data that
changed since; two runs cannot share a folder (the lock dies with its process); a full disk,
a read-only file system or a refused permission end the run with one sentence, exit status 4,
and every file written before complete (a real small tmpfs when we may mount one, and an
injected OSError at every write site)."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from npvae import Config
from npvae.training import fileio
from npvae.runs import runner as run
from npvae.training.checkpoint import ResumeWriter, load_checkpoint, load_resume, save_resume
from npvae.training.tomlfile import read_toml
from npvae.training.data import data_changes, fingerprint, load_digits
from npvae.training.fileio import WriteError
from npvae.core.params import Layout
from npvae.runs.rundir import LOCK_FILE, RESUME, FolderInUse, RunLock, read_history
from npvae.training.loop import fit
from conftest import write_digits_npz
from test_resume import data_of, on_file
from test_run import ROOT, run_cli

N, EPOCHS = 600, 6                  # 540 training images: 5 steps of 128 per epoch
FINAL, BEST = "checkpoints/final.npz", "checkpoints/best.npz"


@pytest.fixture(scope="module")
def digits_file(tmp_path_factory):
    return write_digits_npz(tmp_path_factory.mktemp("data") / "digits.npz", N)


def config_for(data) -> Config:
    """The Config a CLI run of `start(out, data)` trains with."""
    return on_file(Config(num_samples=N, epochs=EPOCHS).validate(), data)


@pytest.fixture(scope="module")
def uninterrupted(digits_file):
    """The same run left alone, in this process (conftest imports npvae first, so the BLAS
    kernels are those of a CLI subprocess)."""
    cfg = config_for(digits_file)
    return fit(cfg, *data_of(cfg), progress=False)


def start(out, data, *extra):
    """A CLI run in the background (its epoch lines discarded)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "npvae.run", "--data", str(data), "--epochs",
                             str(EPOCHS), "--out", str(out), *extra], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def resume_epoch(out) -> int:
    """The epoch the run folder's resume point continues at (0: none readable yet)."""
    try:
        with np.load(Path(out) / RESUME) as f:
            return int(json.loads(str(f["__resume__"]))["epoch"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return 0


def wait_for_resume_point(proc, out, epoch: int, timeout: float = 120.0) -> None:
    """Wait until the run has saved a resume point at `epoch` or later."""
    deadline = time.monotonic() + timeout
    while resume_epoch(out) < epoch:
        assert proc.poll() is None, f"the run ended (status {proc.returncode}) first"
        assert time.monotonic() < deadline, "no resume point in time"
        time.sleep(0.002)


def kill_after_epoch(out, data, epochs_done: int, *extra):
    proc = start(out, data, *extra)
    wait_for_resume_point(proc, out, epochs_done + 1)
    proc.kill()                                          # SIGKILL: no handler runs
    assert proc.wait() == -signal.SIGKILL
    assert not (out / FINAL).exists(), "the run finished before it could be killed"
    return resume_epoch(out)


def files_of(folder) -> dict:
    """Every file's bytes, except the lock (which holds its last owner's pid)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and p.name != LOCK_FILE}


def same_weights(path, params) -> bool:
    return np.array_equal(load_checkpoint(path)[0].flat, params.flat)


def one_error_line(proc) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


# ----------------------------------------------------------------- kill -9 and resume

def test_kill_9_after_the_second_epoch_then_resume_is_bit_identical(tmp_path, digits_file,
                                                                     uninterrupted):
    out = tmp_path / "run"
    at = kill_after_epoch(out, digits_file, 2)
    assert 3 <= at <= EPOCHS
    with np.load(out / RESUME) as f:                    # complete: every array readable
        assert {"__opt_m__", "__opt_v__", "__best__", "__config__"} <= set(f.files)
    stale = out / "checkpoints" / ".resume.npz.abc123.tmp"   # as a kill mid-write leaves one
    stale.write_bytes(b"half a file")

    proc = run_cli("--resume", out)
    assert proc.returncode == 0, proc.stderr
    assert f"resuming at epoch {at} step 0 (after epoch {at - 1} and its evaluation)" in proc.stderr
    assert same_weights(out / FINAL, uninterrupted.params)                  # bit for bit
    assert same_weights(out / BEST, uninterrupted.best_params)
    history = read_history(out)
    assert history["epoch"] == list(range(1, EPOCHS + 1))
    for key in ("train_loss", "val_loss", "val_recon", "pi", "usage"):
        assert history[key] == uninterrupted.history[key], key
    # the run has ended: not resumable by mistake, and nothing half-written is left
    assert not (out / RESUME).exists() and not stale.exists()
    again = run_cli("--resume", out, "--no-progress")
    assert again.returncode == 2 and "there is nothing to resume" in one_error_line(again)
    # the data's fingerprint is in run.json and the report
    x, y = load_digits(digits_file)
    fp = fingerprint(x, y, str(digits_file))
    assert json.loads((out / "run.json").read_text())["data_fingerprint"] == fp
    assert f"fingerprint {fp['sha256'][:16]}" in (out / "REPORT.md").read_text()


def test_no_resume_point_flag_writes_none(tmp_path, digits_file):
    out = tmp_path / "run"
    proc = start(out, digits_file, "--no-resume-point", "--no-progress")
    try:
        deadline = time.monotonic() + 120
        while not (out / "run.json").is_file():          # training is under way
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        while proc.poll() is None and not (out / FINAL).exists():     # until training ends
            assert not (out / RESUME).exists()
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()
    assert not (out / RESUME).exists()


def test_every_epoch_end_resumes_to_the_uninterrupted_run(digits, tmp_path):
    """The state handed to on_epoch_end after each epoch (the last one included) continues,
    through the file, to exactly the weights of the run left alone."""
    cfg = Config(num_samples=300, epochs=3, batch_size=64).validate()
    saved = []

    def keep(state):
        saved.append(save_resume(tmp_path / f"e{state.epoch}.npz", state, cfg))

    alone = fit(cfg, *digits, progress=False, on_epoch_end=keep)
    assert [p.name for p in saved] == ["e2.npz", "e3.npz", "e4.npz"]
    for path in saved:
        rest = fit(cfg, *digits, progress=False, state=load_resume(path, cfg, len(digits[2])))
        assert np.array_equal(rest.params.flat, alone.params.flat), path.name
        assert np.array_equal(rest.best_params.flat, alone.best_params.flat)
        assert rest.history == alone.history and rest.opt_state.t == alone.opt_state.t


def test_resume_writer_hands_a_failed_write_to_the_training_thread(digits, tmp_path):
    (tmp_path / "file").write_text("a file, not a folder")
    cfg = Config(num_samples=300, epochs=1, batch_size=64).validate()
    with pytest.raises(WriteError, match=r"cannot write .*file/sub/resume.npz: not a "
                                         r"directory \(ENOTDIR\)"):
        with ResumeWriter(tmp_path / "file" / "sub" / "resume.npz", cfg) as writer:
            fit(cfg, *digits, progress=False, on_epoch_end=writer.submit)


# ----------------------------------------------------------------- changed data

def test_resume_refuses_data_that_changed_keeping_its_count(tmp_path, digits_file):
    data = tmp_path / "digits.npz"
    shutil.copy(digits_file, data)
    out = tmp_path / "run"
    kill_after_epoch(out, data, 1, "--no-progress")
    before = files_of(out)
    with np.load(data) as f:
        x, y = f["x"].copy(), f["y"].copy()
    label, pixel = y.copy(), x.copy()
    label[7] = (label[7] + 1) % 10
    pixel[3, 400] = 1.0 - pixel[3, 400]
    for part, x_new, y_new in (("labels", x, label), ("images", pixel, y)):
        np.savez(data, x=x_new, y=y_new)                 # the same 600 images, one changed
        proc = run_cli("--resume", out, "--no-progress")
        assert proc.returncode == 2
        line = one_error_line(proc)
        assert line.startswith(f"error: the data changed since {out / RESUME} was written: "
                               f"the {part} from {data} differ (sha256 ")
        assert "--resume needs the data the run started with" in line
        assert files_of(out) == before                   # the run folder is left as it was


def test_fingerprint_names_what_changed():
    rng = np.random.default_rng(0)
    x, y = rng.random((20, 784), dtype=np.float32), rng.integers(0, 10, 20)
    a = fingerprint(x, y, "d.npz")
    assert a == fingerprint(x.copy(), y.copy(), "d.npz") and data_changes(a, a) == []
    x2 = x.copy()
    x2[5, 5] = np.nextafter(x2[5, 5], 2)                 # one pixel, by one ulp
    b = fingerprint(x2, y, "d.npz")
    assert b["labels_sha256"] == a["labels_sha256"] and b["images_sha256"] != a["images_sha256"]
    assert data_changes(a, b) == [f"the images from d.npz differ (sha256 "
                                  f"{a['images_sha256'][:12]}... then, "
                                  f"{b['images_sha256'][:12]}... now)"]
    c = fingerprint(x[:19], y[:19], "other.npz")
    assert data_changes(a, c) == ["other.npz (the run started on d.npz) now gives 19 images, "
                                  "not 20"]
    assert data_changes(a, fingerprint(x, y, "moved.npz")) == []     # same bytes elsewhere
    assert data_changes(None, a) == []                                # an older resume point


# ----------------------------------------------------------------- one run per folder

def test_a_second_run_or_resume_on_a_busy_folder_names_the_holder(tmp_path, digits_file):
    out = tmp_path / "run"
    first = start(out, digits_file)
    try:
        wait_for_resume_point(first, out, 2)
        first.send_signal(signal.SIGSTOP)                # frozen mid-run, holding the lock
        before = files_of(out)
        for args in (["--data", digits_file, "--out", out],
                     ["--data", digits_file, "--out", out, "--overwrite"],
                     ["--resume", out]):
            proc = run_cli(*args, "--no-progress")
            assert proc.returncode == 2
            assert one_error_line(proc) == (
                f"error: run folder {out} is in use by another npvae run (pid {first.pid}); "
                f"wait for it to end (or stop it), or choose another folder.")
        assert files_of(out) == before
    finally:
        first.kill()                                     # kill -9 (also ends a stopped process)
        first.wait()
    assert RunLock(out).holder() is None                 # the dead run's lock is gone with it
    with RunLock(out) as lock:
        lock.acquire()


def test_the_lock_is_exclusive_and_released(tmp_path):
    with RunLock(tmp_path) as lock:
        lock.acquire()
        assert RunLock(tmp_path).holder() == str(os.getpid())
        with pytest.raises(FolderInUse, match=f"in use by another npvae run \\(pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    assert RunLock(tmp_path).holder() is None
    with RunLock(tmp_path) as again:
        again.acquire()


# ----------------------------------------------------------------- a full disk, for real

def mount(*args):
    return subprocess.run(["mount", *map(str, args)], capture_output=True, text=True)


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs with room for one resume point of the default model but not for two."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; test_injected_write_failure covers "
                    "every write site instead")
    disk = tmp_path / "disk"
    disk.mkdir()
    point = 16 * Layout.from_config(Config()).size       # params, m, v, best: float32
    made = mount("-t", "tmpfs", "-o", f"size={point * 3 // 2 // 1024}k", "tmpfs", disk)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()}); "
                    f"test_injected_write_failure covers every write site instead")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_full_disk_then_read_only_then_room_again(small_disk, digits_file, uninterrupted):
    out = small_disk / "run"
    proc = run_cli("--data", digits_file, "--epochs", EPOCHS, "--out", out, "--no-progress")
    assert proc.returncode == 4
    assert one_error_line(proc) == (
        f"error: cannot write {out / RESUME}: no space left on device (ENOSPC); every file "
        f"written before it is complete, and once the cause is fixed, python -m npvae.run "
        f"--resume {out} continues from the last finished epoch.")
    assert sorted(files_of(out)) == ["checkpoints/resume.npz", "config.toml", "run.json"]
    assert read_toml(out / "config.toml")["epochs"] == EPOCHS
    assert json.loads((out / "run.json").read_text())["num_images"] == N
    assert resume_epoch(out) == 2                        # the first epoch's, complete

    assert mount("-o", "remount,ro", small_disk).returncode == 0
    proc = run_cli("--resume", out, "--no-progress")
    assert proc.returncode == 4
    assert one_error_line(proc).startswith(
        f"error: cannot write {out / LOCK_FILE}: read-only file system (EROFS); ")

    assert mount("-o", "remount,rw,size=64m", small_disk).returncode == 0
    proc = run_cli("--resume", out, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert same_weights(out / FINAL, uninterrupted.params)


# ----------------------------------------------------------------- every write site

# (file, errno): each place the CLI writes, with a full disk; and the other causes once each
SITES = [("config.toml", errno.ENOSPC), ("run.json", errno.ENOSPC),
         ("checkpoints/resume.npz", errno.ENOSPC), ("checkpoints/best.npz", errno.ENOSPC),
         ("checkpoints/final.npz", errno.EROFS), ("history.csv", errno.ENOSPC),
         ("loss_comparison.png", errno.EACCES), ("summary.json", errno.ENOSPC)]
# (REPORT.md, the second run.json and the other figures are written by the same functions
# as summary.json and loss_comparison.png; test_every_file_goes_through_the_atomic_write)
TINY = ["--epochs", "1", "--batch-size", "64", "--no-progress"]


class FailingFile:
    """A temporary file that takes part of the first write, then fails as a full disk does."""

    def __init__(self, fh, code):
        self.fh, self.code = fh, code

    def write(self, data):
        self.fh.write(bytes(memoryview(data).cast("B")[: max(1, len(data) // 2)]))
        raise OSError(self.code, os.strerror(self.code))

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def watch_writes(monkeypatch, out, fail=None):
    """Record the files atomic_write writes (relative to out); make `fail` = (file, errno)
    fail on its first write."""
    real, written = fileio._open_temp, []

    def open_temp(path):
        fh, tmp = real(path)
        rel = str(Path(path).relative_to(out))
        if fail and rel == fail[0] and rel not in written:
            written.append(rel)
            return FailingFile(fh, fail[1]), tmp
        written.append(rel)
        return fh, tmp

    monkeypatch.setattr(fileio, "_open_temp", open_temp)
    return written


@pytest.fixture(scope="module")
def write_sites(digits_file, tmp_path_factory):
    """The files a successful tiny run writes, in order."""
    out = tmp_path_factory.mktemp("sites") / "run"
    with pytest.MonkeyPatch.context() as mp:
        written = watch_writes(mp, out)
        assert run.main(["--data", str(digits_file), "--out", str(out), *TINY]) == 0
    return written, out


def test_every_file_goes_through_the_atomic_write(write_sites):
    written, out = write_sites
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert on_disk - {LOCK_FILE} <= set(written)         # (resume.npz: removed at the end)
    assert {site for site, _ in SITES} <= set(written)


@pytest.mark.parametrize("site, code", SITES)
def test_injected_write_failure(site, code, write_sites, digits_file, tmp_path, monkeypatch,
                                capsys):
    written_ok, _ = write_sites
    out = tmp_path / "run"
    watch_writes(monkeypatch, out, fail=(site, code))
    assert run.main(["--data", str(digits_file), "--out", str(out), *TINY]) == 4
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    cause = f"{os.strerror(code)[0].lower()}{os.strerror(code)[1:]} ({errno.errorcode[code]})"
    assert line.startswith(f"error: cannot write {out / site}: {cause}; every file written "
                           f"before it is complete")
    assert not list(out.rglob("*.tmp"))                  # the half-written file is gone
    before = written_ok[: written_ok.index(site)]
    for rel in before:                                   # each one complete
        assert_complete(out / rel)
    assert not (out / site).exists() or site == "run.json"   # (run.json: its first version)


def assert_complete(path: Path) -> None:
    if path.suffix == ".npz":
        load_checkpoint(path)
    elif path.suffix == ".json":
        json.loads(path.read_text())
    elif path.suffix == ".toml":
        read_toml(path)
    elif path.suffix == ".png":
        assert mpimg.imread(path).ndim == 3
    else:
        assert path.read_text().endswith("\n")


def test_debug_shows_the_write_failure_traceback(digits_file, tmp_path, monkeypatch):
    out = tmp_path / "run"
    watch_writes(monkeypatch, out, fail=("config.toml", errno.ENOSPC))
    with pytest.raises(WriteError, match="cannot write .*config.toml: no space left"):
        run.main(["--data", str(digits_file), "--out", str(out), "--debug", *TINY])
