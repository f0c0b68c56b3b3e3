"""Your own images, fitting a run to them: fit_to_data's precedence (a setting the user gave
must agree with the data, any other is taken from it), the flags, check_fits and the
fingerprint's shape for --resume, the app's and --annotate's loading, the bad inputs through
the command line (exit 2, one sentence, nothing written), and one tiny run on 8 x 8 images."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from npvae.core.config import Config, ConfigError
from npvae.runs import runner
from npvae.training.cli import resolve
from npvae.training.data import (DataError, check_fits, data_changes, data_fingerprint,
                                 fit_to_data, load_data, read_dataset)
from test_bad_input import refused
from test_images_data import npz, save

RNG = np.random.default_rng(1)


def colour_npz(tmp_path, n=60, side=8, labels=(0, 1, 2)):
    x = RNG.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    return npz(tmp_path, x=x, y=np.resize(labels, n))


def resolved(*argv):
    return resolve(runner.build_parser().parse_args([str(a) for a in argv]))


# ------------------------------------------------------------------ fit_to_data

def test_the_embedded_digits_change_nothing():
    ds = read_dataset(None)
    assert ds.shape == (28, 28, 1) and ds.label_map is None
    cfg = fit_to_data(Config(), ds)
    assert cfg == Config() and cfg.image_shape == () and cfg.class_names == ()
    assert fit_to_data(Config(), ds, {}) == Config()


def test_settings_not_given_are_taken_from_the_data(tmp_path):
    ds = read_dataset(colour_npz(tmp_path, labels=(3, 7, 9)))
    cfg, sources = resolved("--data", tmp_path / "d.npz")
    fitted = fit_to_data(cfg, ds, sources)
    assert (fitted.input_dim, fitted.image_shape, fitted.num_classes) == (192, (8, 8, 3), 3)
    assert fitted.class_names == ("3", "7", "9") and fitted.K == 10   # mixture: K is its own
    gmm = fit_to_data(Config(data="d", model="gmm"), ds)
    assert gmm.K == 3 == gmm.num_classes                            # gmm: one per class
    grey = read_dataset(npz(tmp_path, "g.npz", x=np.zeros((4, 6, 6)), y=[0, 1, 0, 1]))
    square = fit_to_data(Config(), grey)
    assert square.image_shape == () and square.input_dim == 36 and square.class_names == ()
    wide = read_dataset(npz(tmp_path, "w.npz", x=np.zeros((4, 2, 6)), y=[0, 1, 0, 1]))
    assert fit_to_data(Config(), wide).image_shape == (2, 6)


@pytest.mark.parametrize("argv, message", [
    (["--num-classes", "5"], r"num_classes = 5 \(--num-classes\) does not match the data: "
                             r".* has 3 classes \(3, 7, 9\)"),
    (["--input-dim", "64"], r"input_dim = 64 .* are 8 x 8 RGB, 192 values each"),
    (["--image-shape", "16,4,3"], r"image_shape = 16,4,3 .* are 8,8,3 \(H,W,C\)"),
    (["--class-names", "a", "b", "c"], r"class_names = a b c .* names its classes 3, 7, 9"),
])
def test_a_given_setting_must_agree_with_the_data(tmp_path, argv, message):
    ds = read_dataset(colour_npz(tmp_path, labels=(3, 7, 9)))
    cfg, sources = resolved("--data", tmp_path / "d.npz", *argv)
    with pytest.raises(DataError, match=message):
        fit_to_data(cfg, ds, sources)


def test_given_names_for_numbered_classes_and_one_class_only(tmp_path):
    ds = read_dataset(colour_npz(tmp_path, labels=(0, 1)))
    cfg, sources = resolved("--data", tmp_path / "d.npz", "--num-classes", "2",
                            "--class-names", "cat", "dog")
    assert fit_to_data(cfg, ds, sources).class_names == ("cat", "dog")
    one = read_dataset(npz(tmp_path, "one.npz", x=np.zeros((4, 4, 4)), y=[5, 5, 5, 5]))
    with pytest.raises(DataError, match=r"one.npz has one class only \(5\); the model needs "
                                        r"at least 2 classes"):
        fit_to_data(Config(), one)


def test_shape_rules_wait_for_the_data(tmp_path):
    """A conv stack too deep for 8 x 8 images passes resolve (the shape is unknown there)
    and is refused by fit_to_data with validate()'s sentence."""
    argv = ["--data", colour_npz(tmp_path), "--model", "gmm", "--encoder", "conv",
            "--conv-channels", "4", "4", "4", "4"]
    cfg, sources = resolved(*argv)
    with pytest.raises(ConfigError, match=r"divisible by 2\*\*4 = 16, and the images are 8 x 8"):
        fit_to_data(cfg, read_dataset(cfg.data), sources)


def test_image_shape_flag_takes_commas_or_spaces():
    for argv in (["--image-shape", "8,8,3"], ["--image-shape", "8", "8", "3"]):
        assert resolved("--data", "x.npz", "--input-dim", "192", *argv)[0].image_shape == \
            (8, 8, 3)
    assert resolved("--hidden-dims", "64,32")[0].hidden_dims == (64, 32)
    assert resolved("--resize", "32", "--data", "f")[0].resize == 32


# ------------------------------------------------------------------ recorded settings

def test_check_fits_and_the_fingerprint_notice_another_shape(tmp_path):
    ds = read_dataset(colour_npz(tmp_path))
    cfg = fit_to_data(Config(data="d.npz", num_labeled=10), ds)
    check_fits(cfg, ds)
    x, y, _ = load_data(cfg, ds)
    then = data_fingerprint(cfg, ds, x, y)
    assert then["shape"] == [8, 8, 3]
    grey = read_dataset(npz(tmp_path, "g.npz", x=np.zeros((60, 8, 24)), y=np.resize([0, 1, 2],
                                                                                   60)))
    with pytest.raises(DataError, match=r"settings are for 8 x 8 RGB images, but the images "
                                        r"from .*g.npz are 8 x 24 grey"):
        check_fits(cfg, grey)
    now = {**then, "shape": [8, 24, 1]}
    assert data_changes(then, now) == ["d.npz now gives 8 x 24 x 1 images (H x W x C), not "
                                       "8 x 8 x 3"]
    fewer = read_dataset(npz(tmp_path, "f.npz", x=np.zeros((60, 8, 8, 3)),
                             y=np.resize([0, 1], 60)))
    with pytest.raises(DataError, match=r"settings are for 3 classes \(0, 1, 2\), but .* has 2"):
        check_fits(cfg, fewer)


def test_app_and_annotate_read_unlabelled_images(tmp_path):
    from npvae.app.images import load_app_data
    from npvae.experiments.active.annotate import load_images

    for i in range(20):
        save(tmp_path / "flat" / f"{i:02d}.png", RNG.integers(0, 256, (6, 6, 3)))
    cfg = fit_to_data(Config(data=str(tmp_path / "flat")), read_dataset(tmp_path / "flat"))
    assert cfg.image_shape == (6, 6, 3) and cfg.num_classes == 10     # no labels: kept
    x, y, splits = load_app_data(cfg)
    assert x.shape == (20, 108) and y is None and len(splits.val) == 2
    path = npz(tmp_path, x=np.zeros((20, 5, 5)))                      # x only
    x, y, _ = load_images(fit_to_data(Config(data=str(path)), read_dataset(path)))
    assert x.shape == (20, 25) and y is None


# ------------------------------------------------------------------ the command line

def _mixed_sizes(tmp_path):
    save(tmp_path / "imgs" / "cat" / "a.png", np.zeros((8, 8)))
    save(tmp_path / "imgs" / "dog" / "b.png", np.zeros((9, 8)))
    return tmp_path / "imgs", ["a.png is 8x8", "b.png is 8x9", "--resize"]


def _truncated(tmp_path):
    save(tmp_path / "imgs" / "cat" / "a.png", np.zeros((8, 8)))
    p = save(tmp_path / "imgs" / "dog" / "b.png", RNG.integers(0, 256, (30, 30)))
    p.write_bytes(p.read_bytes()[:-40])
    return tmp_path / "imgs", ["b.png is not a readable image"]


def _one_class(tmp_path):
    for i in range(12):
        save(tmp_path / "imgs" / "cat" / f"{i}.png", np.zeros((8, 8)))
    return tmp_path / "imgs", ["has one class only (cat)", "at least 2 classes"]


def _empty_class(tmp_path):
    save(tmp_path / "imgs" / "cat" / "a.png", np.zeros((8, 8)))
    (tmp_path / "imgs" / "dog").mkdir()
    return tmp_path / "imgs", ["Class folder", "dog holds no images"]


@pytest.mark.parametrize("make", [_mixed_sizes, _truncated, _one_class, _empty_class],
                         ids=lambda f: f.__name__.strip("_"))
def test_bad_folders_are_refused_before_anything_is_written(tmp_path, make, capsys):
    data, words = make(tmp_path)
    code = runner.main(["--data", str(data), "--num-labeled", "2", "--out",
                        str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert all(w in err[0] for w in words), err[0]
    assert not (tmp_path / "run").exists()


def test_mixed_sizes_through_a_subprocess(tmp_path):
    data, words = _mixed_sizes(tmp_path)
    line = refused(tmp_path, "--data", data)
    assert all(w in line for w in words), line


def test_a_tiny_run_on_8x8_images(tmp_path):
    x = RNG.integers(0, 256, (60, 8, 8), dtype=np.uint8)
    path = npz(tmp_path, x=x, y=np.resize([3, 7, 9], 60))
    out = tmp_path / "run"
    assert runner.main(["--data", str(path), "--epochs", "1", "--num-labeled", "10",
                        "--hidden-dims", "16", "--decoder-dims", "16", "--out", str(out),
                        "--no-progress"]) == 0
    text = (out / "config.toml").read_text()
    assert "input_dim = 64  # from the data" in text and "num_classes = 3  # from" in text
    assert 'class_names = ["3", "7", "9"]  # from the data' in text
    fp = json.loads((out / "run.json").read_text())["data_fingerprint"]
    assert fp["shape"] == [8, 8, 1] and fp["label_map"] == {"3": 0, "7": 1, "9": 2}
    assert (out / "REPORT.md").is_file() and (out / "checkpoints" / "final.npz").is_file()
