"""The app (npvae/app/, issue 24) without a browser: labels.csv written atomically at every
label with undo, the command's refusals (one sentence, exit status 2), the token, and
training rounds in a worker process through the JSON API, with the server killed (SIGKILL)
mid-round and restarted with nothing lost. The page itself: tests/test_app_browser.py."""
from __future__ import annotations

import csv
import io
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest

pytest.importorskip("plotly", reason="the app extra (plotly) is not installed")

from benchmarks.app_driver import (AppProcess, pid_alive, request, tiny_config,  # noqa: E402
                                   wait_for)

from npvae.app import labels as L  # noqa: E402
from npvae.app.images import png_bytes, project_2d  # noqa: E402
from npvae.training import fileio  # noqa: E402


# ---------------------------------------------------------------------------- labels.csv

def rows(folder):
    with open(folder / "labels.csv", newline="") as fh:
        return [(int(r["index"]), int(r["label"]), r["source"]) for r in csv.DictReader(fh)]


def test_every_label_is_written_atomically_and_undo_takes_it_back(tmp_path, monkeypatch):
    replaced = []
    real = os.replace
    monkeypatch.setattr(fileio.os, "replace",
                        lambda a, b: (replaced.append((str(a), str(b))), real(a, b))[1])
    store = L.LabelStore(tmp_path, 100, 10)
    store.label(7, 3, "queue:typical")
    assert rows(tmp_path) == [(7, 3, "queue:typical")]
    assert len(replaced) == 1 and replaced[0][1] == str(tmp_path / "labels.csv")
    assert os.path.basename(replaced[0][0]).startswith(".labels.csv.")     # a temporary file
    store.label(9, 1, "queue:typical")
    store.skip(11)
    store.label(7, 4, "queue:margin")                     # a relabel replaces the row
    assert rows(tmp_path) == [(9, 1, "queue:typical"), (7, 4, "queue:margin")]
    assert store.undo() == {"undone": "label", "index": 7}
    assert rows(tmp_path) == [(9, 1, "queue:typical"), (7, 3, "queue:typical")]
    assert store.undo() == {"undone": "skip", "index": 11} and store.skipped == set()
    again = L.LabelStore(tmp_path, 100, 10)               # a restart reads the file back
    assert again.y_known()[[7, 9, 0]].tolist() == [3, 1, -1]
    assert again.undo() == {"undone": "label", "index": 7}   # the file's last label
    assert rows(tmp_path) == [(9, 1, "queue:typical")]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_bad_labels_are_refused_in_one_sentence(tmp_path):
    store = L.LabelStore(tmp_path, 10, 10)
    with pytest.raises(L.LabelError, match="does not exist"):
        store.label(10, 1, "x")
    with pytest.raises(L.LabelError, match="not a class"):
        store.label(1, 10, "x")
    (tmp_path / "labels.csv").write_text("a,b\n1,2\n")
    with pytest.raises(L.LabelError, match="not a labels file"):
        L.LabelStore(tmp_path, 10, 10)


def test_png_and_projection():
    img = np.linspace(0, 1, 784)
    data = png_bytes(img)
    from PIL import Image
    back = np.asarray(Image.open(io.BytesIO(data)), np.float64).reshape(-1) / 255
    assert np.abs(back - img).max() <= 0.5 / 255 + 1e-9
    mu = np.random.default_rng(0).normal(size=(200, 6)) * [5, 1, 0.1, 0.1, 0.1, 0.1]
    xy = project_2d(mu)
    assert xy.shape == (200, 2) and np.std(xy[:, 0]) > 4 and np.allclose(xy.mean(0), 0)
    assert np.allclose(project_2d(mu[:, :2]), mu[:, :2])


# ---------------------------------------------------------------------------- the command

def run_app(*args, cwd):
    return subprocess.run([sys.executable, "-m", "npvae.app", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_bad_input_is_one_sentence_and_status_2(tmp_path):
    other = tmp_path / "photos"
    other.mkdir()
    (other / "notes.txt").write_text("not a run")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        cases = {"does not exist": ["nowhere"], "not an npvae run folder": [str(other)],
                 "cannot listen": ["--config", str(tiny_config(tmp_path)), "--out", "new",
                                   "--port", str(port)],
                 "Data path": ["--data", "missing.npz", "--out", "new2"]}
        for expected, args in cases.items():
            res = run_app(*args, cwd=tmp_path)
            assert res.returncode == 2, (args, res.stderr)
            lines = res.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
        assert not (tmp_path / "new").exists() and not (tmp_path / "new2").exists()
    finally:
        taken.close()


# ---------------------------------------------------------------------------- the server

@pytest.fixture
def app(tmp_path):
    proc = AppProcess("--config", str(tiny_config(tmp_path)), "--out", "runs/one",
                      "--round-epochs", "2", cwd=tmp_path)
    proc.folder = tmp_path / "runs" / "one"
    yield proc
    proc.stop()


def test_a_token_is_needed_beyond_the_loopback(tmp_path):
    proc = AppProcess("--config", str(tiny_config(tmp_path)), "--out", "tok", "--host",
                      "0.0.0.0", cwd=tmp_path)
    try:
        token = proc.url.split("?token=")[1]
        assert len(token) >= 20
        base = proc.base.replace("0.0.0.0", "127.0.0.1")
        assert request(base + "api/state")[0] == 403
        assert request(base + "api/state?token=wrong")[0] == 403
        assert request(base)[0] == 403
        assert request(base + "api/state", token=token)[0] == 200
        assert request(base + f"api/state?token={token}")[0] == 200
        status, page = request(base + f"?token={token}")
        assert status == 200 and b"scatter" in page
    finally:
        proc.stop()


def test_without_a_token_only_loopback_names_and_json_posts(app):
    def send(path, data=None, headers=()):
        req = urllib.request.Request(app.base + path, data=data, headers=dict(headers))
        try:
            with urllib.request.urlopen(req, timeout=30) as res:
                return res.status
        except urllib.error.HTTPError as err:
            return err.code

    assert send("api/state") == 200
    assert send("api/state", headers={"Host": "localhost:1"}) == 200
    assert send("api/state", headers={"Host": "evil.example:8050"}) == 403   # DNS rebinding
    form = b"index=1&label=2"                                                  # a plain form
    assert send("api/label", form, {"Content-Type": "text/plain"}) == 415
    assert not (app.folder / "labels.csv").exists()


def test_label_undo_train_through_the_api(app):
    status, queue = app.get("api/queue")
    assert status == 200 and len(queue["items"]) == 12 and queue["strategy"] == "typical"
    first = [it["index"] for it in queue["items"][:3]]
    assert all(len(it["top3"]) == 3 for it in queue["items"])
    for i, label in zip(first, (3, 5, 7)):
        assert app.post("api/label", {"index": i, "label": label})[0] == 200
    assert app.post("api/undo")[1]["undone"]["index"] == first[2]
    assert [r[:2] for r in rows(app.folder)] == [(first[0], 3), (first[1], 5)]
    assert app.get("api/queue")[1]["items"][0]["index"] == first[2]   # back at the front
    assert app.post("api/label", {"index": 10**6, "label": 1})[0] == 400
    assert app.post("api/strategy", {"name": "nope"})[0] == 400
    _, before = app.get("api/points")
    assert app.post("api/train", {"epochs": 2})[0] == 200
    assert app.post("api/train", {"epochs": 2})[0] == 409           # one round at a time
    prog = wait_for(lambda: (p := app.get("api/progress")[1])["status"] == "done" and p,
                    what="the round to end")
    assert prog["labels"] == 2 and prog["epoch"] == 2 and prog["round"] == 1
    assert 0 <= prog["accuracy"] <= 1 and prog["version"] == 1
    _, after = app.get("api/points")
    assert after["version"] == 1 and after["x"] != before["x"]
    assert app.post("api/train", {"epochs": 1})[0] == 200            # warm start
    prog = wait_for(lambda: (p := app.get("api/progress")[1])["status"] == "done" and p,
                    what="the second round")
    assert (prog["first_epoch"], prog["epoch"], prog["round"]) == (3, 3, 2)
    status, data = app.get("api/export.npz")
    assert status == 200 and (app.folder / "labeled.npz").is_file()
    with np.load(app.folder / "labeled.npz") as f:
        assert f["y"].tolist() == [5, 3] or f["y"].tolist() == [3, 5]
        assert f["x"].shape == (2, 28, 28) and f["x"].dtype == np.uint8
    _, runs = app.get("api/runs")
    assert [(r["name"], r["kind"], r["labels"], r["current"]) for r in runs["runs"]] == \
        [("one", "app", 2, True)]


def test_a_server_killed_mid_round_loses_nothing(app, tmp_path):
    _, queue = app.get("api/queue")
    for it, label in zip(queue["items"][:3], (1, 2, 3)):
        app.post("api/label", {"index": it["index"], "label": label})
    app.post("api/train", {"epochs": 500})
    prog = wait_for(lambda: (p := app.get("api/progress")[1]).get("epoch", 0) >= 2 and p,
                    what="two epochs")
    app.kill()                                              # SIGKILL: no clean-up at all
    wait_for(lambda: not pid_alive(prog["pid"]), 60, what="the worker to notice and stop")
    again = AppProcess(str(app.folder), cwd=tmp_path)
    try:
        assert len(rows(app.folder)) == 3
        _, state = again.get("api/state")
        assert len(state["labels"]) == 3
        _, prog = again.get("api/progress")
        assert prog["status"] in ("stopped", "interrupted") and prog["epoch"] >= 2
        done = prog["epoch"]
        status, started = again.post("api/train", {"resume": True})
        assert status == 200
        again.post("api/stop")
        prog = wait_for(lambda: (p := again.get("api/progress")[1])["status"] == "stopped"
                        and p, what="the continued round to stop")
        assert prog["first_epoch"] == done + 1 and prog["round"] == 1
    finally:
        again.stop()


@pytest.mark.parametrize("kind", ["png-folder", "npz-x-only"])
def test_data_without_labels(tmp_path, kind):
    from PIL import Image

    from npvae.training.data import load_digits

    x, _ = load_digits(None)
    images = np.rint(x[:150] * 255).astype(np.uint8).reshape(-1, 28, 28)
    if kind == "png-folder":
        data = tmp_path / "pngs"
        data.mkdir()
        for i, im in enumerate(images):
            Image.fromarray(im).save(data / f"img{i:04d}.png")
    else:
        data = tmp_path / "x.npz"
        np.savez(data, x=images)
    proc = AppProcess("--config", str(tiny_config(tmp_path, None)), "--data", str(data),
                      "--out", "nolabels", cwd=tmp_path)
    try:
        _, state = proc.get("api/state")
        assert state["n"] == 150 and state["has_truth"] is False
        _, points = proc.get("api/points")
        assert points["truth"] is None and len(points["x"]) == 150
        status, png = proc.get("api/image/0.png")
        assert status == 200 and np.array_equal(
            np.asarray(Image.open(io.BytesIO(png))), images[0])
        _, queue = proc.get("api/queue")
        proc.post("api/label", {"index": queue["items"][0]["index"], "label": 4})
        proc.post("api/train", {"epochs": 1})
        prog = wait_for(lambda: (p := proc.get("api/progress")[1])["status"] == "done" and p,
                        what="a round on data without labels")
        assert prog["labels"] == 1 and prog["accuracy"] is None
    finally:
        proc.stop()


def test_the_compare_view_opens_another_run(app, tmp_path):
    other = AppProcess("--config", str(tiny_config(tmp_path)), "--out", "runs/two",
                       cwd=tmp_path)
    other.stop()                                  # (its folder lock goes with it)
    _, runs = app.get("api/runs")
    assert sorted(r["name"] for r in runs["runs"]) == ["one", "two"]
    assert app.post("api/open", {"name": "../one"})[0] == 400
    assert app.post("api/open", {"name": "two"})[0] == 200
    assert app.get("api/state")[1]["name"] == "two"
    busy = AppProcess(str(tmp_path / "runs" / "one"), cwd=tmp_path)   # one is free again
    try:
        status, answer = app.post("api/open", {"name": "one"})
        assert status == 409 and "in use by another npvae run" in answer["error"]
    finally:
        busy.stop()


def test_the_compare_rows_of_an_npvae_run_folder(tmp_path):
    from npvae.app.runs import list_runs
    from npvae.core.config import Config
    from npvae.runs import rundir as R

    run = tmp_path / "baseline"
    run.mkdir()
    R.write_config(run, Config(num_labeled=50))
    R.write_json(run / "summary.json", {"epochs_completed": 7,
                                        "heldout_accuracy": {"classifier head": 0.8}})
    (tmp_path / "photos").mkdir()                       # not a run: not listed
    rows = list_runs(tmp_path, current=None)
    assert [(r["name"], r["kind"], r["labels"], r["epochs"], r["accuracy"], r["status"])
            for r in rows] == [("baseline", "run", 50, 7, 0.8, "finished")]


def test_a_killed_worker_reads_as_interrupted_and_continues(app):
    _, queue = app.get("api/queue")
    app.post("api/label", {"index": queue["items"][0]["index"], "label": 1})
    app.post("api/train", {"epochs": 500})
    prog = wait_for(lambda: (p := app.get("api/progress")[1]).get("epoch", 0) >= 1 and p,
                    what="an epoch")
    os.kill(prog["pid"], 9)                             # the worker itself, mid-round
    prog = wait_for(lambda: (p := app.get("api/progress")[1])["status"] == "interrupted"
                    and p, 30, what="the round to read as interrupted")
    assert app.post("api/train", {"resume": True})[0] == 200
    again = wait_for(lambda: (p := app.get("api/progress")[1]).get("first_epoch") and
                     p["pid"] != prog["pid"] and p, 60, what="the continued round")
    assert again["round"] == prog["round"] and again["last_epoch"] == prog["last_epoch"]
    assert again["first_epoch"] <= prog["epoch"] + 1       # at most the epoch in progress lost
    app.post("api/stop")
    wait_for(lambda: app.get("api/progress")[1]["status"] == "stopped", 60, what="the stop")


def test_a_round_that_cannot_start_reads_as_failed(app):
    (app.folder / "config.toml").write_text("K = 'ten'\n")     # the worker cannot read it
    assert app.post("api/train", {"epochs": 1})[0] == 200
    prog = wait_for(lambda: (p := app.get("api/progress")[1])["status"] != "running" and p,
                    60, what="the failed round")
    assert prog["status"] == "failed" and "config" in prog["message"].lower()
    assert app.post("api/train", {"epochs": 1})[0] == 200      # not stuck as busy


def test_a_folder_in_use_or_with_a_broken_labels_file_is_refused(app, tmp_path):
    res = run_app(str(app.folder), "--port", "0", cwd=tmp_path)
    assert res.returncode == 2 and "in use by another npvae run" in res.stderr
    app.stop()
    (app.folder / "labels.csv").write_text("what,ever\n1,2\n")
    res = run_app(str(app.folder), "--port", "0", cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "not a labels file" in res.stderr
