"""The app (npvae/app/, issue 24) as a process, without a browser: the command's refusals (one
sentence, exit status 2), the token, labels and undo through the API, and
training rounds in a worker process through the JSON API, with the worker and then the
server killed (SIGKILL) mid-round and restarted with nothing lost; a lasso selection as the
queue; the Components view. The page itself: tests/test_app_browser.py; the parts without
a process: tests/test_app_parts.py.

To stay fast the server tests share one app (module fixture, 300 images, a tiny model,
rounds of 1 epoch) and run in this file's order; the other apps start at the same time."""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("plotly", reason="the app extra (plotly) is not installed")

from benchmarks.app_driver import AppProcess, pid_alive, request, tiny_config  # noqa: E402
from benchmarks.app_driver import labels_csv as rows, wait_for  # noqa: E402

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


# ---------------------------------------------------------------------------- the apps

class Shared:
    """The app the server tests share (runs/one), and the others started with it: one
    beyond the loopback (a token) and two on data without labels."""

    def __init__(self, root: Path):
        from PIL import Image

        from npvae.training.data import load_digits

        self.root, self.cfg = root, tiny_config(root)
        x, _ = load_digits(None)
        self.images = np.rint(x[:150] * 255).astype(np.uint8).reshape(-1, 28, 28)
        (root / "pngs").mkdir()
        for i, im in enumerate(self.images):
            Image.fromarray(im).save(root / "pngs" / f"img{i:04d}.png")
        np.savez(root / "x.npz", x=self.images)
        (root / "cfg").mkdir()
        nolabels = tiny_config(root / "cfg", None)       # (and classes with names)
        nolabels.write_text(nolabels.read_text() + f"class_names = {NAMES}\n".replace("'", '"'))
        nolabels = str(nolabels)
        start = {"one": ("--config", str(self.cfg), "--out", "runs/one", "--round-epochs", "1"),
                 "token": ("--config", str(self.cfg), "--out", "tok", "--host", "0.0.0.0"),
                 "png-folder": ("--config", nolabels, "--data", str(root / "pngs"), "--out",
                                "runs/png"),
                 "npz-x-only": ("--config", nolabels, "--data", str(root / "x.npz"), "--out",
                                "runs/npz")}
        self.apps = {k: AppProcess(*a, cwd=root, wait=False) for k, a in start.items()}
        for proc in self.apps.values():
            proc.ready()
        for kind in ("one", "png-folder", "npz-x-only"):       # as the page does at once: the
            self.apps[kind].get("api/points")                   # fork server starts meanwhile
        self.proc = self.apps["one"]
        self.folder = root / "runs" / "one"

    def get(self, path):
        return self.proc.get(path)

    def post(self, path, body=None):
        return self.proc.post(path, body)

    def progress(self):
        return self.get("api/progress")[1]

    def round_ends(self, what="the round to end"):
        return wait_for(lambda: (p := self.progress())["status"] not in ("running",) and p,
                        what=what)

    def stop(self):
        for proc in self.apps.values():
            proc.stop()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    shared = Shared(tmp_path_factory.mktemp("apps"))
    yield shared
    shared.stop()


def test_bad_input_is_one_sentence_and_status_2(app, tmp_path, capsys):
    from npvae.app.command import main
    from npvae.core.config import Config
    from npvae.runs import rundir as R

    other = tmp_path / "photos"
    other.mkdir()
    (other / "notes.txt").write_text("not a run")
    broken = tmp_path / "broken"
    broken.mkdir()
    R.write_config(broken, Config())
    (broken / "labels.csv").write_text("what,ever\n1,2\n")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    res = subprocess.Popen([sys.executable, "-m", "npvae.app", str(tmp_path / "nowhere")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        cases = {"not an npvae run folder": [str(other)],
                 "cannot listen": ["--config", str(app.cfg), "--out", str(tmp_path / "new"),
                                   "--port", str(port)],
                 "Data path": ["--data", str(tmp_path / "missing.npz"), "--out",
                               str(tmp_path / "new2")],
                 "in use by another npvae run": [str(app.folder), "--port", "0"],
                 "not a labels file": [str(broken), "--port", "0"]}
        for expected, args in cases.items():
            assert main(args) == 2, args
            lines = capsys.readouterr().err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
        assert not (tmp_path / "new").exists() and not (tmp_path / "new2").exists()
        _, err = res.communicate(timeout=120)                 # the same as a process
        assert res.returncode == 2 and err.count("\n") == 1 and "does not exist" in err
    finally:
        taken.close()


def test_a_token_is_needed_beyond_the_loopback(app):
    proc = app.apps["token"]
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
    proc.stop()


def test_without_a_token_only_loopback_names_and_json_posts(app):
    def send(path, data=None, headers=()):
        req = urllib.request.Request(app.proc.base + path, data=data, headers=dict(headers))
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
    assert app.post("api/train", {"epochs": 1})[0] == 200
    assert app.post("api/train", {"epochs": 1})[0] == 409           # one round at a time
    prog = app.round_ends()
    assert prog["status"] == "done" and prog["labels"] == 2 and prog["round"] == 1
    assert prog["epoch"] == 1 and 0 <= prog["accuracy"] <= 1 and prog["version"] == 1
    _, after = app.get("api/points")
    assert after["version"] == 1 and after["x"] != before["x"]
    assert app.post("api/train", {"epochs": 1})[0] == 200            # warm start
    prog = app.round_ends("the second round")
    assert (prog["status"], prog["first_epoch"], prog["epoch"], prog["round"]) == \
        ("done", 2, 2, 2)
    status, data = app.get("api/export.npz")
    assert status == 200 and (app.folder / "labeled.npz").is_file()
    with np.load(app.folder / "labeled.npz") as f:
        assert sorted(f["y"].tolist()) == [3, 5]
        assert f["x"].shape == (2, 28, 28) and f["x"].dtype == np.uint8
        assert f["classes"].tolist() == [str(c) for c in range(10)]


def test_a_lasso_selection_is_inspected_then_labelled_as_the_queue(app):
    labelled = {r[0] for r in rows(app.folder)}
    _, state = app.get("api/state")
    held_out = next(i for i in range(state["n"]) if app.get(f"api/info/{i}")[1]["split"]
                    == "held-out")
    pick = [i for i in range(40) if i not in labelled and i != held_out][:5]
    chosen = pick + [held_out, next(iter(labelled))]
    status, seen = app.post("api/inspect", {"indices": chosen + [pick[0]]})
    assert status == 200 and seen["selected"] == 7 and seen["to_label"] == 5
    assert [it["index"] for it in seen["items"]] == chosen
    assert all(len(it["top3"]) == 3 for it in seen["items"])
    assert seen["items"][-1]["label"] is not None              # already labelled: shown
    assert app.post("api/select", {"indices": [held_out]})[0] == 400   # nothing to label
    assert app.post("api/select", {"indices": [10**6]})[0] == 400
    assert app.post("api/inspect", {"indices": "all"})[0] == 400
    status, queue = app.post("api/select", {"indices": chosen})
    assert status == 200 and [it["index"] for it in queue["items"]] == pick
    assert [it["index"] for it in app.get("api/queue")[1]["items"]] == pick
    assert app.post("api/label", {"index": pick[0], "label": 8})[1]["source"] == "lasso"
    app.post("api/skip", {"index": pick[1]})
    assert app.post("api/undo")[1]["undone"]["index"] == pick[1]
    assert [it["index"] for it in app.get("api/queue")[1]["items"]] == pick[1:]
    assert rows(app.folder)[-1] == (pick[0], 8, "lasso")
    assert app.post("api/strategy", {"name": "margin"})[0] == 200     # back to the strategy
    queue = app.get("api/queue")[1]["items"]
    assert len(queue) == 12 and {it["index"] for it in queue}.isdisjoint(labelled | {pick[0]})
    app.post("api/strategy", {"name": "typical"})


def test_the_next_batch_is_chosen_while_a_batch_is_labelled(app):
    batch = [it["index"] for it in app.get("api/queue")[1]["items"]]
    for k, i in enumerate(batch):                       # from the 7th on, the next is ready
        assert app.post("api/label" if k % 4 else "api/skip", {"index": i, "label": 1})[0] == 200
    after = [it["index"] for it in app.get("api/queue")[1]["items"]]
    given = {r[0] for r in rows(app.folder)}
    assert len(after) == 12 and not set(after) & (set(batch) | given)
    for _ in batch:
        app.post("api/undo")
    assert not set(batch) & {r[0] for r in rows(app.folder)}


def test_the_components_view_through_the_api(app):
    status, view = app.get("api/components")
    assert status == 200 and view["K"] == 10 and len(view["components"]) == 10
    assert view["version"] == 1 or view["version"] == 2
    given = np.array(view["given"])
    assert given.sum() == len(rows(app.folder)) == view["labels"]
    assert np.array(view["truth"]).sum() == 300                  # every image: its own label
    assert sum(c["count"] for c in view["components"]) == 300
    assert abs(sum(c["usage"] for c in view["components"]) - 1) < 1e-3
    for c in view["components"]:
        assert c["image"].startswith("data:image/png;base64,")
        row = given[c["component"]]
        assert c["majority"] == (int(row.argmax()) if row.sum() else None)
    app.post("api/label", {"index": app.get("api/queue")[1]["items"][0]["index"], "label": 2})
    assert np.array(app.get("api/components")[1]["given"]).sum() == given.sum() + 1
    app.post("api/undo")


def test_data_without_labels(app):
    procs = {k: app.apps[k] for k in ("png-folder", "npz-x-only")}
    for proc in procs.values():
        _, state = proc.get("api/state")
        assert state["n"] == 150 and state["has_truth"] is False
        assert state["class_names"] == NAMES and state["image_shape"] == [28, 28, 1]
        assert proc.get("api/components")[1]["classes"] == NAMES
        _, points = proc.get("api/points")
        assert points["truth"] is None and len(points["x"]) == 150
        status, png = proc.get("api/image/0.png")
        from PIL import Image
        assert status == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(png))),
                                                app.images[0])
        assert proc.get("api/components")[1]["truth"] is None
        _, queue = proc.get("api/queue")
        proc.post("api/label", {"index": queue["items"][0]["index"], "label": 4})
        proc.post("api/train", {"epochs": 1})
    for kind, proc in procs.items():
        prog = wait_for(lambda: (p := proc.get("api/progress")[1])["status"] == "done" and p,
                        what=f"a round on data without labels ({kind})")
        assert prog["labels"] == 1 and prog["accuracy"] is None
        with np.load(io.BytesIO(proc.get("api/export.npz")[1])) as f:
            assert f["classes"].tolist() == NAMES and f["y"].tolist() == [4]
        proc.stop()


def test_a_killed_worker_then_a_killed_server_lose_nothing(app):
    given = rows(app.folder)
    app.post("api/train", {"epochs": 500})
    prog = wait_for(lambda: (p := app.progress()).get("epoch", 0) >= 3 and p, what="an epoch")
    os.kill(prog["pid"], 9)                             # the worker itself, mid-round
    prog = wait_for(lambda: (p := app.progress())["status"] == "interrupted" and p, 30,
                    what="the round to read as interrupted")
    assert app.post("api/train", {"resume": True})[0] == 200
    again = wait_for(lambda: (p := app.progress()).get("first_epoch") and
                     p["pid"] != prog["pid"] and p.get("epoch", 0) >= p["first_epoch"] and p,
                     60, what="the continued round's first epoch")
    assert again["round"] == prog["round"] and again["last_epoch"] == prog["last_epoch"]
    assert again["first_epoch"] <= prog["epoch"] + 1       # at most the epoch in progress lost

    app.proc.kill()                                     # SIGKILL the server: no clean-up
    wait_for(lambda: not pid_alive(again["pid"]), 60, what="the worker to notice and stop")
    app.proc = app.apps["one"] = AppProcess(str(app.folder), cwd=app.root)
    assert rows(app.folder) == given
    assert len(app.get("api/state")[1]["labels"]) == len(given)
    prog = app.progress()
    assert prog["status"] in ("stopped", "interrupted") and prog["epoch"] >= again["epoch"]
    done = prog["epoch"]
    assert app.post("api/train", {"resume": True})[0] == 200
    app.post("api/stop")
    prog = wait_for(lambda: (p := app.progress())["status"] == "stopped" and p.get("pid") !=
                    again["pid"] and p, 60, what="the continued round to stop")
    assert prog["first_epoch"] == done + 1 and prog["round"] == again["round"]


def test_the_compare_view_opens_another_run(app):
    from npvae.runs import rundir as R

    _, runs = app.get("api/runs")
    assert sorted((r["name"], r["kind"], r["current"]) for r in runs["runs"]) == \
        [("npz", "app", False), ("one", "app", True), ("png", "app", False)]
    assert next(r for r in runs["runs"] if r["name"] == "one")["labels"] == \
        len(rows(app.folder))
    assert app.post("api/open", {"name": "../one"})[0] == 400
    assert app.post("api/open", {"name": "npz"})[0] == 200
    assert app.get("api/state")[1]["name"] == "npz"
    busy = R.RunLock(app.folder)                        # one is free again: hold it here
    busy.acquire()
    try:
        status, answer = app.post("api/open", {"name": "one"})
        assert status == 409 and "in use by another npvae run" in answer["error"]
    finally:
        busy.release()


def test_a_round_that_cannot_start_reads_as_failed(app):
    folder = app.root / "runs" / "npz"                  # opened by the test above
    (folder / "config.toml").write_text("K = 'ten'\n")    # the worker cannot read it
    assert app.post("api/train", {"epochs": 1})[0] == 200
    prog = wait_for(lambda: (p := app.progress())["status"] != "running" and p,
                    60, what="the failed round")
    assert prog["status"] == "failed" and "config" in prog["message"].lower()
    assert app.post("api/train", {"epochs": 1})[0] == 200      # not stuck as busy
