"""Your own images through every entry point's loading: npvae.sweep checks each grid point
fitted to its data, npvae.active fits each seed's Config, the app writes a fitted
config.toml, and --resume refuses data whose shape changed since the run started (exit 2,
one sentence), all before any training."""
from __future__ import annotations

import numpy as np
import pytest

from npvae.runs import rundir as R
from npvae.runs import runner
from npvae.training.data import fit_to_data, read_dataset
from test_images_data import npz, save

RNG = np.random.default_rng(2)


def images(tmp_path, shape=(8, 8, 3), n=60):
    x = RNG.integers(0, 256, (n, *shape), dtype=np.uint8)
    return npz(tmp_path, x=x, y=np.resize([2, 5], n))


def test_sweep_points_are_fitted_to_their_data(tmp_path):
    from npvae.experiments.sweep import command as sweep

    path = images(tmp_path)
    ns = sweep.build_parser().parse_args(["--data", str(path), "--num-labeled", "10",
                                          "--model", "gmm", "--latent-dim", "2", "3"])
    cfgs = sweep.check(sweep.grid(ns))
    assert [(c.latent_dim, c.input_dim, c.image_shape, c.num_classes, c.K, c.class_names)
            for c in cfgs] == [(d, 192, (8, 8, 3), 2, 2, ("2", "5")) for d in (2, 3)]


def test_active_fits_every_seed(tmp_path):
    from npvae.experiments.active import command as active

    path = images(tmp_path, shape=(6, 10))
    _, cfgs, _ = active.parse(["--data", str(path), "--num-labeled", "10", "--seed", "1", "2"])
    assert [(c.seed, c.input_dim, c.image_shape, c.num_classes) for c in cfgs] == \
        [(1, 60, (6, 10), 2), (2, 60, (6, 10), 2)]


def test_the_app_writes_a_fitted_config(tmp_path):
    pytest.importorskip("plotly", reason="the app extra (plotly) is not installed")
    from npvae.app import command as app
    from npvae.app.images import load_app_data

    for i in range(20):
        save(tmp_path / "flat" / f"{i:02d}.png", RNG.integers(0, 256, (6, 6, 3)))
    args = app.build_parser().parse_args(["--data", str(tmp_path / "flat"), "--out",
                                          str(tmp_path / "app")])
    folder = app.open_folder(args)
    cfg = R.read_config(folder)
    assert (cfg.input_dim, cfg.image_shape) == (108, (6, 6, 3))
    assert "image_shape = [6, 6, 3]  # from the data" in (folder / R.CONFIG_FILE).read_text()
    x, y, _ = load_app_data(cfg)
    assert x.shape == (20, 108) and y is None


def test_resume_refuses_data_of_another_shape(tmp_path, capsys):
    """The run's config.toml says 8 x 8 grey; the file now holds 8 x 8 RGB images. The data
    is checked before the resume point is read, so an empty stand-in for it is enough."""
    path = images(tmp_path, shape=(8, 8))
    out = tmp_path / "run"
    out.mkdir()
    cfg = fit_to_data(runner.Config(data=str(path), num_labeled=10), read_dataset(path))
    R.write_config(out, cfg)
    (out / "checkpoints").mkdir()
    (out / R.RESUME).write_bytes(b"")
    images(tmp_path, shape=(8, 8, 3))
    assert runner.main(["--resume", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "settings are for 8 x 8 grey images, but the images from" in err[0]
    assert "are 8 x 8 RGB" in err[0]
    assert sorted(p.name for p in out.rglob("*") if p.name != R.LOCK_FILE) == \
        ["checkpoints", "config.toml", "resume.npz"]          # nothing written
