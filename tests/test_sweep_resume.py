"""python -m npvae.sweep --resume SWEEP_DIR (local runs): the finished runs are skipped, the
unfinished and failed ones run again in fresh folders, sweep.csv and SWEEP.md cover every run;
other flags, another folder or changed data are refused in one sentence before anything runs."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from npvae.experiments.sweep import command as sweep
from npvae.experiments.sweep import state as SS
from npvae.training.data import load_digits

TINY = ["--epochs", "1", "--batch-size", "64"]
TIMINGS = {"seconds", "fit_seconds"}


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def numbers(rows):
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 3-run sweep on 200 digits given with --data (run in this process)."""
    root = tmp_path_factory.mktemp("resume")
    x, y = load_digits()
    pick = np.random.default_rng(0).permutation(len(y))[:200]     # (sorted by class)
    np.savez(root / "d.npz", x=x[pick], y=y[pick])
    out = root / "s"
    argv = ["--seed", "42", "43", "44", "--data", str(root / "d.npz"), *TINY, "--jobs", "1",
            "--out", str(out)]
    assert sweep.main(argv) == 0
    return out, argv


@pytest.fixture
def sweep_copy(finished, tmp_path):
    out, argv = finished
    copy = tmp_path / "s"
    shutil.copytree(out, copy)
    return copy, argv


def test_resume_reruns_only_the_unfinished_runs(finished, sweep_copy, capsys):
    out, _ = finished
    s, argv = sweep_copy
    plan = json.loads((s / "sweep.json").read_text())
    assert plan["runs"] == ["000_seed42", "001_seed43", "002_seed44"]
    assert plan["argv"] == argv and list(plan["data_sha256"]) == [argv[5]]
    assert plan["config_sha256"] == {}
    # 001 died mid-run (no marker, a half-written folder); 002 failed (an exception)
    (s / "rows" / "001_seed43.json").unlink()
    (s / "001_seed43" / "summary.json").unlink()
    failed = json.loads((s / "rows" / "002_seed44.json").read_text())
    (s / "rows" / "002_seed44.json").write_text(json.dumps({**failed, "status": "error"}))
    kept = (s / "000_seed42" / "summary.json").stat().st_mtime_ns
    capsys.readouterr()
    assert sweep.main(["--resume", str(s), "--jobs", "1"]) == 0
    err = capsys.readouterr().err
    assert "npvae.sweep: 3 runs (1 finished before, 2 to run)" in err
    assert "[1/2] 001_seed43: ok" in err and "[2/2] 002_seed44: ok" in err
    assert "000_seed42" not in err
    assert (s / "000_seed42" / "summary.json").stat().st_mtime_ns == kept
    assert numbers(read_csv(s / "sweep.csv")) == numbers(read_csv(out / "sweep.csv"))
    for name in ("001_seed43", "002_seed44"):
        assert (s / name / "REPORT.md").is_file()
        assert json.loads((s / "rows" / f"{name}.json").read_text())["status"] == "ok"
    plan = json.loads((s / "sweep.json").read_text())
    assert plan["resumed"] == [["python", "-m", "npvae.sweep", "--resume", str(s), "--jobs", "1"]]
    text = (s / "SWEEP.md").read_text()
    assert f"**Resumed:** `python -m npvae.sweep --resume {s} --jobs 1`" in text
    assert "| all runs | classifier head | 3/3 |" in text
    # nothing left to do: nothing runs, the files are written again
    capsys.readouterr()
    assert sweep.main(["--resume", str(s)]) == 0
    assert "(3 finished before, 0 to run)" in capsys.readouterr().err


def test_resume_accepts_the_sweeps_own_flags_again(sweep_copy, capsys):
    s, argv = sweep_copy
    grid = [a for a in argv[:argv.index("--jobs")]]
    assert sweep.main(["--resume", str(s), *grid]) == 0
    assert "(3 finished before, 0 to run)" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--seed", "42", "45"], "the grid flags given (--seed) make another grid than the "
                             "sweep's own (sweep.json: "),
    (["--K", "5"], "the grid flags given (--K) make another grid"),
    (["--out", "elsewhere"], "--resume continues a sweep in its own folder, so it cannot be "
                             "combined with --out."),
])
def test_resume_refuses_other_flags(sweep_copy, capsys, extra, message):
    s, _ = sweep_copy
    before = sorted(p.relative_to(s) for p in s.rglob("*"))
    assert sweep.main(["--resume", str(s), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert sorted(p.relative_to(s) for p in s.rglob("*")) == before


def test_resume_refuses_a_folder_without_a_sweep(tmp_path, capsys):
    assert sweep.main(["--resume", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"error: --resume {tmp_path}: not a sweep folder (no "
                                       f"sweep.json in it; a sweep writes it when it starts).\n")


def test_resume_refuses_changed_data(sweep_copy, capsys):
    s, argv = sweep_copy
    data = argv[argv.index("--data") + 1]
    saved = np.load(data)
    x, y = saved["x"].copy(), saved["y"].copy()
    try:
        np.savez(data, x=x, y=(y + 1) % 10)                 # same images, other labels
        assert sweep.main(["--resume", str(s)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --resume {s}: the data {data} (sha256 ")
        assert err.endswith(" now) changed since the sweep started; --resume needs what it "
                            "started with.\n")
    finally:
        np.savez(data, x=x, y=y)


def test_a_changed_config_file_is_named(tmp_path):
    toml = tmp_path / "a.toml"
    toml.write_text("epochs = 1\n")
    points = [{"config": str(toml), "seed": 42}]
    then = SS.inputs(points, [])
    assert SS.changed_inputs(then, SS.inputs(points, [])) == []
    toml.write_text("epochs = 2\n")
    now = SS.inputs(points, [])
    assert SS.changed_inputs(then, now) == [
        f"the config file {toml} (sha256 {then['config_sha256'][str(toml)][:12]}... then, "
        f"{now['config_sha256'][str(toml)][:12]}... now)"]
