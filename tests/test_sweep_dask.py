"""python -m npvae.sweep --dask: a tiny sweep on a real Dask LocalCluster (2 worker processes on
127.0.0.1), one worker killed with SIGKILL in the middle of a task; the sweep still ends with
every run, with the same numbers as the local sweep of the same grid. The workers read the
data from the copy the client scattered (the file is gone from disk before any task runs)."""
from __future__ import annotations

import csv
import json
import os
import signal
import sys
import threading
import time

import dask
import numpy as np
import pytest
from distributed import Client, LocalCluster

from npvae.experiments.sweep import command as sweep
from npvae.experiments.sweep import cluster as SD
from npvae.training.data import load_digits
from npvae.engine.threads import THREADS_ENV

GRID = ["--seed", "42", "43", "44", "--epochs", "1", "--batch-size", "64"]
TIMINGS = {"seconds", "fit_seconds"}


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """2 worker processes x 1 thread, every address on 127.0.0.1; closed (with its
    processes) whatever the tests do."""
    scratch = tmp_path_factory.mktemp("dask")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", local_directory=str(scratch),
                      env={THREADS_ENV: "1"}) as lc, \
            Client(lc) as client:
        yield lc, client, scratch


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """300 of the embedded digits as a --data file, and 100 others as its test set (x_test,
    y_test: read too where the data has a test set)."""
    x, y = load_digits()
    x = (x * 255).round().astype(np.uint8)
    pick = np.random.default_rng(0).permutation(len(y))     # (the digits are sorted by class)
    train, test = pick[:300], pick[300:400]
    path = tmp_path_factory.mktemp("data") / "digits300.npz"
    np.savez(path, x=x[train], y=y[train], x_test=x[test], y_test=y[test])
    return path


class Killer(threading.Thread):
    """Waits for a task's run to start on a worker (its run folder's lock file names the
    worker's pid), then kills that worker process with SIGKILL."""

    def __init__(self, scratch):
        super().__init__(daemon=True)
        self.scratch, self.killed, self.stop = scratch, None, threading.Event()

    def run(self):
        while not self.stop.is_set():
            for lock in self.scratch.rglob(".npvae.lock"):
                pid = lock.read_text().strip()
                if lock.parent.parent.name.startswith("npvae-task-") and pid.isdigit():
                    os.kill(int(pid), signal.SIGKILL)
                    self.killed = (int(pid), (lock.parent / "REPORT.md").exists())
                    return
            time.sleep(0.01)


def test_a_worker_killed_mid_task_costs_a_retry_and_the_numbers_are_the_local_ones(
        cluster, digits, tmp_path, monkeypatch, capsys):
    lc, client, scratch = cluster
    monkeypatch.setenv(THREADS_ENV, "1")      # the local sweep: 1 thread per run, as a worker's
    local = tmp_path / "local"
    assert sweep.main([*GRID, "--data", str(digits), "--out", str(local)]) == 0
    pids = set(client.run(os.getpid).values())

    real_blob = SD.data_blob

    def read_then_remove(path):                # no shared file system: the workers never see it
        blob = real_blob(path)
        moved.append(digits.rename(digits.with_suffix(".away")))
        return blob

    moved = []
    monkeypatch.setattr(SD, "data_blob", read_then_remove)
    killer = Killer(scratch)
    killer.start()
    capsys.readouterr()
    out = tmp_path / "dask"
    try:
        status = sweep.main([*GRID, "--data", str(digits), "--out", str(out),
                             "--dask", lc.scheduler_address])
    finally:
        killer.stop.set()
        killer.join()
        for m in moved:
            m.rename(digits)
    err = capsys.readouterr().err
    assert status == 0, err
    # the kill landed on a worker of this cluster, in the middle of a task (its run had
    # started and not yet written its report)
    assert killer.killed is not None
    pid, reported = killer.killed
    assert pid in pids and not reported
    assert f"npvae.sweep: 3 runs, Dask cluster {lc.scheduler_address}: 2 worker(s)" in err
    assert all(f"[{k}/3] " in err for k in (1, 2, 3))
    # every run, with the local sweep's numbers to the last bit
    rows, expected = read_csv(out / "sweep.csv"), read_csv(local / "sweep.csv")
    assert [r["run"] for r in rows] == ["000_seed42", "001_seed43", "002_seed44"]
    assert all(r["status"] == "ok" for r in rows)
    for got, want in zip(rows, expected):
        assert {k: v for k, v in got.items() if k not in TIMINGS} == \
            {k: v for k, v in want.items() if k not in TIMINGS}
        for ckpt in ("final", "best"):
            a = np.load(out / got["run"] / "checkpoints" / f"{ckpt}.npz")
            b = np.load(local / got["run"] / "checkpoints" / f"{ckpt}.npz")
            assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
        info = json.loads((out / got["run"] / "run.json").read_text())
        assert info["data_fingerprint"]["source"] == str(digits)     # the path as given
        assert info["threads"] == 1
        assert info["command"][-3:] == ["--out", str(out / got["run"]), "--no-progress"]
        assert (out / "logs" / f"{got['run']}.log").read_text() == \
            f"report: {out / got['run'] / 'REPORT.md'}\n"
        assert sorted(p.relative_to(out / got["run"]) for p in (out / got["run"]).rglob("*")
                      if p.is_file()) == \
            sorted(p.relative_to(local / got["run"]) for p in (local / got["run"]).rglob("*")
                   if p.is_file() and p.name != ".npvae.lock")
    assert not list(out.glob(".*.partial"))
    assert (f"**Runs:** 3 (3 finished), Dask cluster {lc.scheduler_address}: 2 worker(s) x 1 "
            f"thread(s); one run folder each") in (out / "SWEEP.md").read_text()


def test_resume_on_the_cluster_runs_only_the_unfinished(cluster, tmp_path, capsys):
    lc, client, _ = cluster
    out, toml = tmp_path / "s", tmp_path / "tiny.toml"
    toml.write_text("epochs = 1\nnum_samples = 200\nbatch_size = 64\n")
    tiny = ["--seed", "42", "43", "--config", str(toml)]      # the TOML travels as text
    assert sweep.main([*tiny, "--out", str(out), "--dask", lc.scheduler_address]) == 0
    info = json.loads((out / "001_seed43" / "run.json").read_text())
    assert info["command"][3:7] == ["--config", str(toml), "--seed", "43"]
    assert "epochs = 1  # from --config\n" in (out / "001_seed43" / "config.toml").read_text()
    before = read_csv(out / "sweep.csv")
    (out / "rows" / "001_seed43.json").unlink()          # as if the sweep died before it
    (out / "001_seed43" / "REPORT.md").unlink()
    keep = (out / "000_seed42" / "summary.json").stat().st_mtime_ns
    capsys.readouterr()
    assert sweep.main(["--resume", str(out), "--dask", lc.scheduler_address]) == 0
    err = capsys.readouterr().err
    assert "2 runs (1 finished before, 1 to run)" in err and "[1/1] 001_seed43: ok" in err
    assert (out / "001_seed43" / "REPORT.md").is_file()
    assert (out / "000_seed42" / "summary.json").stat().st_mtime_ns == keep
    after = read_csv(out / "sweep.csv")
    assert [{k: v for k, v in r.items() if k not in TIMINGS} for r in after] == \
        [{k: v for k, v in r.items() if k not in TIMINGS} for r in before]


def test_without_dask_the_flag_is_refused_in_one_sentence(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)      # as if not installed
    out = tmp_path / "never"
    assert sweep.main(["--seed", "42", "--dask", "local", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --dask needs Dask's distributed scheduler, which is not "
                          "installed; install it with pip install 'npvae[dist]'")
    assert err.count("\n") == 1 and not out.exists()


def test_an_unreachable_scheduler_is_one_sentence(tmp_path, capsys):
    out = tmp_path / "never"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        assert sweep.main(["--seed", "42", "--dask", "tcp://127.0.0.1:9", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")
    assert err.count("\n") == 1 and not out.exists()


def test_a_sweep_waits_for_its_first_worker(digits, tmp_path, capsys):
    """A scheduler without workers yet: the sweep says so and goes on once one joins."""
    with LocalCluster(n_workers=0, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0",
                      local_directory=str(tmp_path / "scratch")) as lc:
        joiner = threading.Timer(2.0, lc.scale, args=(1,))
        joiner.start()
        try:
            status = sweep.main(["--seed", "42", "--epochs", "1", "--data", str(digits),
                                 "--out", str(tmp_path / "s"), "--dask", lc.scheduler_address])
        finally:
            joiner.cancel()
    err = capsys.readouterr().err
    assert status == 0, err
    assert f"Dask cluster {lc.scheduler_address}: 0 worker(s);" in err
    assert "the cluster has no worker yet; waiting for one" in err and "[1/1] 000: ok" in err


def test_data_lost_with_its_only_worker_is_scattered_again(digits, tmp_path, capsys):
    """One worker, killed mid-task: the scattered data dies with it (Dask cannot recover
    scattered data); the sweep scatters it again to the restarted worker and the run ends."""
    scratch = tmp_path / "scratch"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", local_directory=str(scratch),
                      env={THREADS_ENV: "1"}) as lc:
        killer = Killer(scratch)
        killer.start()
        try:
            status = sweep.main(["--seed", "42", "--epochs", "1", "--data", str(digits),
                                 "--out", str(tmp_path / "s"), "--dask", lc.scheduler_address])
        finally:
            killer.stop.set()
            killer.join()
    err = capsys.readouterr().err
    assert status == 0, err
    assert killer.killed is not None and not killer.killed[1]
    assert "[1/1] 000: ok" in err
