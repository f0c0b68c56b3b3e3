"""Every bad input is refused through the real command line, before training: exit status 2,
one sentence on stderr naming the culprit and what is accepted, no traceback, and nothing
written (no run folder, no checkpoint). Most cases fail before the digits are even loaded,
so each subprocess takes a fraction of a second."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from test_data import IMAGES, LABELS, fake_digits, idx_dir, write_idx
from test_run import run_cli


def refused(tmp_path, *args, out=None):
    """Run the CLI in tmp_path (so a default results/ folder would show) and check the refusal;
    returns the one line of stderr."""
    out = tmp_path / "run" if out is None else out
    proc = run_cli(*args, "--out", out, "--no-progress", cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "results").exists()
    assert not list(tmp_path.rglob("checkpoints")) and not list(tmp_path.rglob("*.tmp"))
    return lines[0]


# ------------------------------------------------------------------------ flags

@pytest.mark.parametrize("args, words", [
    (["--no-such-flag"], ["unrecognized arguments: --no-such-flag", "--help"]),
    (["--K", "ten"], ["argument --K", "invalid int value: 'ten'"]),
    (["--lr", "fast"], ["argument --lr", "invalid float value: 'fast'"]),
    (["--epochs", "2.5"], ["argument --epochs", "invalid int value"]),
    (["--dtype", "float16"], ["argument --dtype", "float32", "float64"]),
    (["--hidden-dims"], ["argument --hidden-dims", "expected at least one argument"]),
    (["--K", "0"], ["K = 0 (--K)", "at least 1"]),
    (["--latent-dim", "0"], ["latent_dim = 0 (--latent-dim)", "at least 1"]),
    (["--hidden-dims", "256", "0"], ["hidden_dims = (256, 0)", "positive layer widths"]),
    (["--hidden-dims", "-4"], ["hidden_dims = (-4,)", "positive layer widths"]),
    (["--num-labeled", "-1"], ["num_labeled = -1", "0 or more"]),
    (["--num-samples", "0"], ["num_samples = 0", "at least 1"]),
    (["--batch-size", "0"], ["batch_size = 0 (--batch-size)", "at least 1"]),
    (["--lr", "0"], ["lr = 0.0 (--lr)", "> 0"]),
    (["--lr", "-0.001"], ["lr = -0.001", "> 0"]),
    (["--lr", "nan"], ["lr = nan", "finite"]),
    (["--w-div", "inf"], ["w_div = inf", "finite"]),
    (["--epochs", "-1"], ["epochs = -1 (--epochs)", "0 or more"]),
    (["--seed", "-1"], ["seed = -1", "0..2**32 - 1"]),
    (["--name", "a/b"], ["name = 'a/b'", "without '/'"]),
])
def test_bad_flag(tmp_path, args, words):
    line = refused(tmp_path, *args)
    for w in words:
        assert w in line


@pytest.mark.parametrize("weight", ["w_rec", "w_kl", "w_klc", "w_dir", "w_cls"])
def test_negative_weight_is_refused_but_w_div_may_be_negative(tmp_path, weight):
    line = refused(tmp_path, f"--{weight.replace('_', '-')}", "-0.5")
    assert f"{weight} = -0.5" in line and "only w_div may be negative" in line


@pytest.mark.parametrize("args, words", [
    (["--num-samples", "61"], ["num_samples=61", "60 images", "1..60"]),
    (["--num-labeled", "61"], ["num_labeled=61", "60 images", "0..60"]),
    (["--num-samples", "5", "--num-labeled", "0"], ["no validation image", "--val-fraction"]),
    (["--input-dim", "100"], ["input_dim = 100", "28 x 28 grey", "784 values"]),
    (["--num-classes", "5"], ["num_classes = 5", "has 10 classes"]),
    (["--image-shape", "14,56"], ["image_shape = 14,56", "28,28,1 (H,W,C)"]),
    (["--class-names", "a", "b"], ["class_names = ('a', 'b')", "one name per class"]),
])
def test_setting_that_does_not_fit_the_data(tmp_path, args, words):
    """On 60 digits in an npz file (the embedded 5000 behave the same, only slower to load)."""
    line = refused(tmp_path, "--data", _npz(tmp_path), *args)
    for w in words:
        assert w in line


# ------------------------------------------------------------------------ TOML file

@pytest.mark.parametrize("text, words", [
    ("K = 3\nbogus = 1\n", ["c.toml, line 2: unknown setting bogus", "known settings: K"]),
    ('[model]\nK = "ten"\n', ["c.toml, line 2: K = 'ten' has the wrong type", "expected int"]),
    ("# a comment\n\nK = 2.5\n", ["c.toml, line 3: K = 2.5 has the wrong type", "expected int"]),
    ("epochs = true\n", ["c.toml, line 1: epochs = True has the wrong type", "expected int"]),
    ('lr = "fast"\n', ["c.toml, line 1: lr = 'fast' has the wrong type", "expected float"]),
    ("K = 3\nhidden_dims = [256, 0]\n", ["c.toml, line 2: hidden_dims = (256, 0)",
                                          "positive layer widths"]),
    ("[loss]\nw_rec = 1.0\nw_kl = -1.0\n", ["c.toml, line 3: w_kl = -1.0",
                                            "only w_div may be negative"]),
    ("model.K = 0\n", ["c.toml, line 1: K = 0", "at least 1"]),
    ("K = 3\nlr = = 1\n", ["c.toml is not valid TOML", "line 2"]),
    ("[a]\nK = 3\n[b]\nK = 4\n", ["c.toml, line 4 sets K more than once"]),
])
def test_bad_toml_file(tmp_path, text, words):
    """Every refusal of a TOML value names the file, the setting and its line."""
    (tmp_path / "c.toml").write_text(text)
    line = refused(tmp_path, "--config", tmp_path / "c.toml")
    for w in words:
        assert w in line


def test_bad_toml_value_overridden_by_a_flag_is_not_blamed(tmp_path):
    """A flag typed on the command line wins over the file, so its bad value is named as
    the flag's, without the file."""
    (tmp_path / "c.toml").write_text("K = 3\n")
    line = refused(tmp_path, "--config", tmp_path / "c.toml", "--K", "0")
    assert "K = 0 (--K) is not allowed" in line and "c.toml" not in line


def test_missing_toml_file(tmp_path):
    assert "nope.toml does not exist" in refused(tmp_path, "--config", tmp_path / "nope.toml")


# ------------------------------------------------------------------------ data files

def _idx(tmp_path, images=None, labels=None, image_magic=0x803, label_magic=0x801, gz=False):
    d = tmp_path / "idx"
    d.mkdir()
    default_images, default_labels = fake_digits(n=60)
    write_idx(d / IMAGES, default_images if images is None else images, image_magic, gz)
    write_idx(d / LABELS, default_labels if labels is None else labels, label_magic, gz)
    return d


def _cut(path, keep):
    path.write_bytes(path.read_bytes()[:keep])


def _npz(tmp_path, x=None, y=None, **change):
    images, labels = fake_digits(n=60)
    x = images.astype(np.float32) / 255 if x is None else x
    y = labels if y is None else y
    path = tmp_path / "d.npz"
    np.savez(path, **{"x": x, "y": y, **change})
    return path


def _with(a, index, value):
    a = np.array(a)
    a.flat[index] = value
    return a


def _missing(tmp_path):
    return tmp_path / "no_such_data"


def _wrong_magic_images(tmp_path):
    return _idx(tmp_path, image_magic=0x804)


def _wrong_magic_labels(tmp_path):
    return _idx(tmp_path, label_magic=0x803)


def _truncated_pixels(tmp_path):
    d = _idx(tmp_path)
    _cut(d / IMAGES, 16 + 1000)
    return d


def _truncated_header(tmp_path):
    d = _idx(tmp_path)
    _cut(d / LABELS, 6)
    return d


def _gzip_truncated(tmp_path):
    d = _idx(tmp_path, gz=True)
    p = d / (IMAGES + ".gz")
    _cut(p, len(p.read_bytes()) // 2)
    return d


def _gzip_crc(tmp_path):
    d = _idx(tmp_path, gz=True)
    p = d / (IMAGES + ".gz")
    raw = bytearray(p.read_bytes())
    raw[-8] ^= 0xFF                                       # the stored CRC32 no longer matches
    p.write_bytes(bytes(raw))
    return d


def _gzip_not_gzip(tmp_path):
    d = _idx(tmp_path, gz=True)
    (d / (LABELS + ".gz")).write_bytes(b"plain text, not gzip")
    return d


def _idx_counts(tmp_path):
    return _idx(tmp_path, labels=fake_digits(n=60)[1][:50])


def _idx_too_large(tmp_path):
    """Two grey images of 1 x 196609 values, one more than the model's limit."""
    return _idx(tmp_path, images=np.zeros((2, 1, 196609), np.uint8),
                labels=fake_digits(n=2)[1])


def _npz_counts(tmp_path):
    return _npz(tmp_path, y=fake_digits(n=60)[1][:50])


def _npz_no_shape_rule(tmp_path):
    return _npz(tmp_path, x=np.zeros((60, 20, 20, 2), np.float32))


def _npz_700_pixels(tmp_path):
    return _npz(tmp_path, x=np.zeros((60, 700), np.float32))


def _npz_nan(tmp_path):
    return _npz(tmp_path, x=_with(np.zeros((60, 784), np.float32), 1234, np.nan))


def _npz_inf(tmp_path):
    return _npz(tmp_path, x=_with(np.zeros((60, 784), np.float32), 99, np.inf))


def _npz_above_1(tmp_path):
    return _npz(tmp_path, x=_with(np.zeros((60, 784), np.float32), 5, 1.5))


def _npz_negative(tmp_path):
    return _npz(tmp_path, x=_with(np.zeros((60, 784), np.float32), 5, -0.25))


def _npz_grey_256(tmp_path):
    return _npz(tmp_path, x=_with(np.zeros((60, 784), np.int32), 5, 256))


def _npz_label_10(tmp_path):
    """Labels up to 10 but only 10 class names: a label beyond the classes."""
    return _npz(tmp_path, y=_with(fake_digits(n=60)[1].astype(int), 3, 10),
                classes=np.array([f"c{i}" for i in range(10)]))


def _npz_label_negative(tmp_path):
    return _npz(tmp_path, y=_with(fake_digits(n=60)[1].astype(int), 3, -1))


def _npz_label_fraction(tmp_path):
    return _npz(tmp_path, y=_with(fake_digits(n=60)[1].astype(float), 3, 2.5))


def _npz_no_x(tmp_path):
    images, labels = fake_digits(n=60)
    np.savez(tmp_path / "d.npz", images=images, y=labels)
    return tmp_path / "d.npz"


T10K_IMAGES, T10K_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"


def _idx_with_test(tmp_path, images=None, labels=None, image_magic=0x803, which="both"):
    """A good training pair plus test files (40 images) that may be bad; `which` says
    which of the two test files to write."""
    d = _idx(tmp_path)
    default_images, default_labels = fake_digits(n=40, seed=1)
    if which in ("both", "images"):
        write_idx(d / T10K_IMAGES, default_images if images is None else images, image_magic)
    if which in ("both", "labels"):
        write_idx(d / T10K_LABELS, default_labels if labels is None else labels)
    return d


def _test_wrong_magic(tmp_path):
    return _idx_with_test(tmp_path, image_magic=0x801)


def _test_counts(tmp_path):
    return _idx_with_test(tmp_path, labels=fake_digits(n=40)[1][:30])


def _test_truncated(tmp_path):
    d = _idx_with_test(tmp_path)
    _cut(d / T10K_IMAGES, 16 + 500)
    return d


def _test_images_only(tmp_path):
    return _idx_with_test(tmp_path, which="images")


def _test_labels_only(tmp_path):
    return _idx_with_test(tmp_path, which="labels")


def _test_label_12(tmp_path):
    return _idx_with_test(tmp_path, labels=_with(fake_digits(n=40)[1], 3, 12))


def _npz_x_test_only(tmp_path):
    return _npz(tmp_path, x_test=np.zeros((5, 784), np.float32))


def _npz_y_test_only(tmp_path):
    return _npz(tmp_path, y_test=np.zeros(5, np.int64))


def _npz_test_counts(tmp_path):
    return _npz(tmp_path, x_test=np.zeros((5, 784), np.float32), y_test=np.zeros(4, np.int64))


def _npz_test_nan(tmp_path):
    return _npz(tmp_path, x_test=_with(np.zeros((5, 784), np.float32), 7, np.nan),
                y_test=np.zeros(5, np.int64))


def _npz_not_zip(tmp_path):
    (tmp_path / "d.npz").write_bytes(gzip.compress(b"not a zip"))
    return tmp_path / "d.npz"


@pytest.mark.parametrize("make, words", [
    (_missing, ["no_such_data does not exist", ".npz"]),
    (_wrong_magic_images, [IMAGES, "magic number 0x00000804", "0x00000803"]),
    (_wrong_magic_labels, [LABELS, "magic number 0x00000803", "0x00000801"]),
    (_truncated_pixels, [IMAGES, "truncated", "47040 bytes"]),
    (_truncated_header, [LABELS, "truncated", "header"]),
    (_gzip_truncated, [IMAGES + ".gz", "not a valid gzip file"]),
    (_gzip_crc, [IMAGES + ".gz", "not a valid gzip file", "CRC"]),
    (_gzip_not_gzip, [LABELS + ".gz", "not a valid gzip file"]),
    (_idx_counts, ["60 images", "50 labels", "same count"]),
    (_idx_too_large, ["1 x 196609 x 1 = 196609 values", "256 x 256 x 3 = 196608",
                      "--resize"]),
    (_npz_counts, ["60 images but 50 labels"]),
    (_npz_no_shape_rule, ["(60, 20, 20, 2)", "matches no accepted shape"]),
    (_npz_700_pixels, ["(60, 700)", "not a square", "--image-shape H,W or H,W,C"]),
    (_npz_nan, ["NaN or inf", "finite"]),
    (_npz_inf, ["NaN or inf", "finite"]),
    (_npz_above_1, ["[0, 1.5]", "[0, 1]"]),
    (_npz_negative, ["[-0.25, 0]", "[0, 1]"]),
    (_npz_grey_256, ["0..256", "0..255"]),
    (_npz_label_10, ["..10", "names 10 classes", "0..9"]),
    (_npz_label_negative, ["-1..", "0 or more"]),
    (_npz_label_fraction, ["non-integer", "integers or strings"]),
    (_npz_no_x, ["'images', 'y'", "arrays 'x'"]),
    (_npz_not_zip, ["not a readable .npz", "not a zip file"]),
    (_test_wrong_magic, [T10K_IMAGES, "magic number 0x00000801", "0x00000803"]),
    (_test_counts, [T10K_IMAGES, T10K_LABELS, "40 images", "30 labels", "same count"]),
    (_test_truncated, [T10K_IMAGES, "truncated", "31360 bytes"]),
    (_test_images_only, [T10K_IMAGES, "no partner", T10K_LABELS, "both t10k files"]),
    (_test_labels_only, [T10K_LABELS, "no partner", T10K_IMAGES, "both t10k files"]),
    (_test_label_12, ["test files", "..12", "0..9", "10 classes"]),
    (_npz_x_test_only, ["has x_test but no y_test", "or neither"]),
    (_npz_y_test_only, ["has y_test but no x_test", "or neither"]),
    (_npz_test_counts, ["(x_test, y_test)", "5 images but 4 labels"]),
    (_npz_test_nan, ["(x_test, y_test)", "NaN or inf"]),
], ids=lambda v: v.__name__.strip("_") if callable(v) else None)
def test_bad_data(tmp_path, make, words):
    path = make(tmp_path)
    line = refused(tmp_path, "--data", path, "--num-labeled", "10")
    assert path.name in line                             # the culprit is named
    for w in words:
        assert w in line, line


# ------------------------------------------------------------------------ output folder

def test_existing_output_folder_is_refused_and_left_alone(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "REPORT.md").write_text("keep me")
    line = refused(tmp_path, out=old)
    assert "old already exists" in line and "--overwrite" in line
    assert [p.name for p in old.iterdir()] == ["REPORT.md"]
    assert (old / "REPORT.md").read_text() == "keep me"


def test_output_path_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("a file")
    line = refused(tmp_path, out=tmp_path / "f")
    assert "exists and is not a folder" in line


def test_output_folder_that_cannot_be_created(tmp_path):
    """We may run as root, where permission bits do not stop a write: a parent that is a
    regular file does."""
    (tmp_path / "f").write_text("a file")
    line = refused(tmp_path, out=tmp_path / "f" / "run")
    assert "cannot create output folder" in line and "is a file, not a folder" in line
    assert (tmp_path / "f").read_text() == "a file"


# ------------------------------------------------------------------------ --resume misuse

def test_resume_refuses_other_flags(tmp_path):
    proc = run_cli("--resume", tmp_path, "--K", "3", "--overwrite", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cannot be combined with --K, --overwrite" in proc.stderr
    assert "only --no-progress, --debug and --no-resume-point may be added" in proc.stderr


@pytest.mark.parametrize("config", [False, True])
def test_resume_needs_an_interrupted_run(tmp_path, config):
    if config:
        (tmp_path / "config.toml").write_text("K = 3\n")
    proc = run_cli("--resume", tmp_path, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    words = "nothing to resume" if config else "not a run folder"
    assert words in proc.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_debug_shows_the_traceback(tmp_path):
    proc = run_cli("--K", "0", "--debug", "--out", tmp_path / "run", cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr
