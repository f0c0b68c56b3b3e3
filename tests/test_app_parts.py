"""The app's parts without a process (npvae/app/, issue 24): labels.csv written atomically at
every label with undo, PNG bytes and the 2-D projection, the Components view's tables and
images, the Compare view's rows of an npvae.run folder. The app as a process:
tests/test_app.py; in a browser: tests/test_app_browser.py."""
from __future__ import annotations

import base64
import io
import os

import numpy as np
import pytest

pytest.importorskip("plotly", reason="the app extra (plotly) is not installed")

from benchmarks.app_driver import labels_csv as rows  # noqa: E402

from npvae.app import labels as L  # noqa: E402
from npvae.app.images import png_bytes, project_2d  # noqa: E402
from npvae.training import fileio  # noqa: E402


# ---------------------------------------------------------------------------- labels.csv

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


@pytest.mark.parametrize("shape", [(8, 12, 1), (8, 12, 3)], ids=["grey", "RGB"])
def test_png_bytes_round_trips_grey_and_colour_images_at_their_shape(shape):
    """A row of channel-first values comes back from the PNG as an (H, W) grey or (H, W, 3)
    RGB image, to the nearest of 256 levels."""
    from PIL import Image

    H, W, C = shape
    row = np.random.default_rng(0).random(C * H * W, dtype=np.float32)
    with Image.open(io.BytesIO(png_bytes(row, shape))) as im:
        assert im.mode == ("L" if C == 1 else "RGB") and im.size == (W, H)
        back = np.asarray(im, np.float64) / 255
    want = row.reshape(C, H, W).transpose(1, 2, 0).squeeze(-1 if C == 1 else ())
    assert back.shape == want.shape and np.abs(back - want).max() <= 0.5 / 255 + 1e-6
    with Image.open(io.BytesIO(png_bytes(row))) as im:         # unknown shape: a strip
        assert im.size == (C * H * W, 1)                     # (96 and 288: no squares)


def _export_session(folder, x, shape, classes):
    """A Session holding just what export() reads (the data helper loads real ones)."""
    from npvae.app.session import Session

    s = Session.__new__(Session)
    s.folder, s.x, s.shape, s.classes = folder, x, shape, classes
    s.labels = L.LabelStore(folder, len(x), len(classes))
    return s


def test_export_writes_colour_images_channel_last_with_the_class_names(tmp_path):
    H, W = 8, 12
    x = np.random.default_rng(0).random((6, 3 * H * W), dtype=np.float32)
    s = _export_session(tmp_path, x, (H, W, 3), ("cat", "dog", "fox"))
    s.labels.label(4, 2, "queue:typical")
    s.labels.label(1, 0, "queue:typical")
    with np.load(io.BytesIO(s.export())) as f:
        assert f["x"].shape == (2, H, W, 3) and f["x"].dtype == np.uint8
        assert f["classes"].tolist() == ["cat", "dog", "fox"]
        assert f["y"].tolist() == [0, 2] and f["index"].tolist() == [1, 4]
        want = np.rint(x[1].reshape(3, H, W).transpose(1, 2, 0) * 255)
        assert np.array_equal(f["x"][0], want)
    with np.load(tmp_path / "labeled.npz") as f:          # no pickles needed to read it
        assert f["x"].shape == (2, H, W, 3)
    (tmp_path / "g").mkdir()
    grey = _export_session(tmp_path / "g", x[:, :H * W], (H, W, 1), ("0", "1"))
    grey.labels.label(3, 1, "lasso")
    with np.load(io.BytesIO(grey.export())) as f:
        assert f["x"].shape == (1, H, W) and f["classes"].tolist() == ["0", "1"]


def test_the_components_view_names_classes_and_draws_colour_images():
    from PIL import Image

    from npvae.app.components import components_view

    q = np.eye(3)[[0, 1, 2, 2]]
    images = np.random.default_rng(0).random((3, 3 * 8 * 12))
    view = components_view({"q": q, "comp_images": images}, np.array([0, 1, -1, 2]), None, 3,
                           (8, 12, 3), ("cat", "dog", "fox"))
    assert view["classes"] == ["cat", "dog", "fox"]
    png = base64.b64decode(view["components"][0]["image"].split(",", 1)[1])
    assert np.asarray(Image.open(io.BytesIO(png))).shape == (8, 12, 3)
    assert components_view({"q": q}, np.full(4, -1), None, 3)["classes"] == ["0", "1", "2"]


def test_the_components_view_from_outputs():
    from npvae.app.components import component_images, components_view
    from npvae.core.config import Config
    from npvae.core.params import init_params

    q = np.eye(3)[[0, 0, 1, 2, 2, 2]] * 0.9 + 0.1 / 3          # argmax: 0 0 1 2 2 2
    images = np.linspace(0, 1, 3 * 784).reshape(3, 784)
    view = components_view({"q": q, "comp_images": images}, np.array([4, -1, -1, 1, 1, 0]),
                           np.array([4, 4, 3, 1, 1, 0]), 5)
    assert view["given"][0] == [0, 0, 0, 0, 1] and view["given"][2] == [1, 2, 0, 0, 0]
    assert view["truth"][0] == [0, 0, 0, 0, 2] and view["truth"][1] == [0, 0, 0, 1, 0]
    c = view["components"]
    assert [r["count"] for r in c] == [2, 1, 3] and c[2]["usage"] == 0.5
    assert [r["majority"] for r in c] == [4, None, 1] and c[2]["labelled"] == 3
    assert [r["truth_majority"] for r in c] == [4, 3, 1]
    assert c[0]["image"].startswith("data:image/png;base64,")
    png = base64.b64decode(c[0]["image"].split(",", 1)[1])
    from PIL import Image
    assert np.asarray(Image.open(io.BytesIO(png))).shape == (28, 28)
    assert components_view({"q": q}, np.full(6, -1), None, 5)["truth"] is None
    for model, K in (("gmm", 10), ("mixture", 3)):        # both models decode K images
        cfg = Config(model=model, K=K, latent_dim=2, hidden_dims=(8,), decoder_dims=(8,),
                     classifier_dims=(4,)).validate()
        p = init_params(cfg, np.random.default_rng(0))
        mu = np.random.default_rng(1).normal(size=(20, 2))
        out = component_images(p, cfg, mu, np.arange(20) % K)
        assert out.shape == (K, 784) and 0 <= out.min() and out.max() <= 1


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
