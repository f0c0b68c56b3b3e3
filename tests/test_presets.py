"""Presets (npvae/training/presets): a named set of settings, `python -m npvae.run --preset NAME`.

Test presets live in a temporary folder (presets.DIR is pointed at it); the shipped ones are
checked for validity at the end."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from npvae.training import presets
from npvae.runs import runner as run
from npvae.core.config import Config, ConfigError
from npvae.runs.rundir import read_config
from npvae.training.cli import resolve as resolve_args
from conftest import write_digits_npz

DEMO = "# Demo: a smaller model for tests\n\n[model]\nK = 4\nlatent_dim = 3\nhidden_dims = [32, 16]\n"
TINY = ["--epochs", "1", "--batch-size", "64", "--no-progress"]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    d = tmp_path / "presets"
    d.mkdir()
    (d / "demo.toml").write_text(DEMO)
    (d / "other.toml").write_text("# Other: only the seed\nseed = 7\n")
    monkeypatch.setattr(presets, "DIR", d)
    return d


def main(capsys, *argv):
    """npvae.run in this process (so presets.DIR is the test folder): status, stderr."""
    status = run.main([str(a) for a in argv])
    return status, capsys.readouterr().err


def test_names_describe_load(folder):
    assert presets.names() == ["demo", "other"]
    assert presets.describe("demo") == "Demo: a smaller model for tests"
    assert presets.load("demo") == {"K": 4, "latent_dim": 3, "hidden_dims": [32, 16]}
    assert presets.path("other") == folder / "other.toml"
    assert presets.names(folder / "missing") == []


def test_unknown_preset_names_the_known_ones(folder, capsys):
    with pytest.raises(ConfigError, match=r"unknown preset 'ssl' \(--preset\); known presets: "
                                          r"demo, other\."):
        presets.load("ssl")
    status, err = main(capsys, "--preset", "ssl")
    assert status == 2 and err.count("\n") == 1 and "known presets: demo, other" in err


def test_a_broken_preset_names_its_file(folder):
    (folder / "bad.toml").write_text("# Bad\nK = 0\n")
    with pytest.raises(ConfigError, match=r"preset bad \(.*bad\.toml\) is broken: K = 0"):
        presets.load("bad")
    (folder / "typo.toml").write_text("Kk = 3\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        presets.load("typo")


def test_apply_merges_the_preset_the_toml_and_the_flags_later_ones_overriding(folder):
    merged = presets.apply("demo", {"seed": 3, "K": 6, "latent_dim": 5},
                           {"epochs": 2, "latent_dim": 2})
    assert merged == {"K": 6, "latent_dim": 2, "hidden_dims": [32, 16], "seed": 3, "epochs": 2}
    cfg = Config.from_dict(merged).validate()
    assert (cfg.K, cfg.seed, cfg.lr) == (6, 3, Config().lr)    # the rest: the defaults


def resolve(*argv):
    return resolve_args(run.build_parser().parse_args([str(a) for a in argv]))


def test_config_overrides_the_preset_and_flags_override_both(folder, tmp_path):
    """defaults < preset < --config < flags, for every setting (model settings included),
    and the sources say which one gave each setting that was given."""
    cfg, sources = resolve("--preset", "demo", "--K", 10)             # a flag over the preset
    assert (cfg.K, cfg.latent_dim, cfg.hidden_dims) == (10, 3, (32, 16))
    assert sources == {"K": "flag", "latent_dim": "preset", "hidden_dims": "preset"}
    my = tmp_path / "my.toml"
    my.write_text("[model]\nK = 6\nlatent_dim = 5\n[data]\nseed = 1\n")
    cfg, sources = resolve("--preset", "demo", "--config", my)       # the file over the preset
    assert (cfg.K, cfg.latent_dim, cfg.hidden_dims, cfg.seed) == (6, 5, (32, 16), 1)
    assert sources == {"seed": "config", "K": "config", "latent_dim": "config",
                       "hidden_dims": "preset"}                       # Config's field order
    cfg, sources = resolve("--preset", "demo", "--config", my, "--latent-dim", 2,
                           "--hidden-dims", 64, "--lr", 0.01)       # flags over both
    assert (cfg.K, cfg.latent_dim, cfg.hidden_dims, cfg.seed, cfg.lr) == (6, 2, (64,), 1, 0.01)
    assert sources == {"seed": "config", "K": "config", "latent_dim": "flag",
                       "hidden_dims": "flag", "lr": "flag"}
    cfg, sources = resolve("--config", my, "--K", 10)                # no preset
    assert (cfg.K, sources["K"], sources["latent_dim"]) == (10, "flag", "config")
    cfg, sources = resolve()                                         # nothing given
    assert cfg == Config() and sources == {}
    cfg, sources = resolve("--preset", "demo", "--K", Config().K)    # a default, typed: given
    assert cfg.K == Config().K and sources["K"] == "flag"


def test_a_shipped_presets_setting_is_varied_with_a_flag():
    ssl_cons = presets.load("ssl-cons")
    cfg, sources = resolve("--preset", "ssl-cons", "--strong-cutout", 3)
    assert cfg.strong_cutout == 3 != ssl_cons["strong_cutout"]
    assert sources["strong_cutout"] == "flag"
    assert cfg.w_cons == ssl_cons["w_cons"] and sources["w_cons"] == "preset"


def test_a_bad_overriding_value_is_one_sentence_and_exit_2(folder, tmp_path, capsys):
    out = tmp_path / "never"
    status, err = main(capsys, "--preset", "demo", "--latent-dim", 0, "--out", out)
    assert status == 2 and err.count("\n") == 1 and not out.exists()
    assert err.startswith("error: latent_dim = 0 (--latent-dim) is not allowed:")
    my = tmp_path / "my.toml"
    my.write_text("seed = 1\nK = 0\n")
    status, err = main(capsys, "--preset", "demo", "--config", my, "--out", out)
    assert status == 2 and err.count("\n") == 1 and not out.exists()
    assert err.startswith(f"error: config file {my}, line 2: K = 0 (--K) is not allowed:")
    # a value that is fine alone but not with the preset's others
    (folder / "classes.toml").write_text("# Classes\nmodel = 'gmm'\nK = 10\n")
    status, err = main(capsys, "--preset", "classes", "--K", 5, "--out", out)
    assert status == 2 and err.count("\n") == 1 and not out.exists()
    assert err.startswith("error: K = 5 (--K) is not allowed: model gmm uses one component "
                          "per class")


def test_help_lists_the_presets_with_their_descriptions(folder):
    text = " ".join(run.build_parser().format_help().split())
    assert "--preset NAME" in text
    assert "demo: Demo: a smaller model for tests; other: Other: only the seed" in text


def test_a_preset_run_records_it_and_its_config_reruns_it(folder, tmp_path, capsys):
    data = write_digits_npz(tmp_path / "digits.npz", 300)
    out = tmp_path / "run"
    my = tmp_path / "my.toml"
    my.write_text("K = 6\nlatent_dim = 5\n")
    status, err = main(capsys, "--preset", "demo", "--config", my, "--data", data, "--seed", 5,
                       "--latent-dim", 2, *TINY[:-1], "--out", out)
    assert status == 0, err
    assert "preset demo" in err                              # the start line names it
    cfg = read_config(out)
    assert (cfg.K, cfg.latent_dim, cfg.hidden_dims, cfg.seed) == (6, 2, (32, 16), 5)
    text = (out / "config.toml").read_text()
    assert text.startswith("# preset demo:")
    for line in ("K = 6  # from --config", "latent_dim = 2  # from flag",
                 "hidden_dims = [32, 16]  # from preset demo", "seed = 5  # from flag",
                 f"lr = {Config().lr}"):                    # a default: no source
        assert line + "\n" in text
    info = json.loads((out / "run.json").read_text())
    assert info["preset"] == "demo" and info["header"]["preset"] == "demo"
    assert list(info["sources"].items()) == [
        ("data", "flag"), ("seed", "flag"), ("K", "config"), ("latent_dim", "flag"),
        ("hidden_dims", "preset"), ("epochs", "flag"), ("batch_size", "flag")]
    assert list(info)[:4] == ["command", "preset", "sources", "header"]
    assert "**Preset:** demo" in (out / "REPORT.md").read_text()
    # the resolved config is the full config: alone, or with the same preset
    from npvae.training.cli import config_from_args
    for extra in ([], ["--preset", "demo"]):
        ns = run.build_parser().parse_args(["--config", str(out / "config.toml"), *extra])
        assert config_from_args(ns) == cfg
    # --resume uses the run's own config: --preset cannot be added
    status, err = main(capsys, "--resume", out, "--preset", "demo")
    assert status == 2 and "cannot be combined with --preset" in err


def test_the_presets_ship_as_package_data():
    """A non-editable install (wheel) carries npvae/training/presets/*.toml."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert "training/presets/*.toml" in project["tool"]["setuptools"]["package-data"]["npvae"]
    assert presets.DIR == root / "npvae" / "training" / "presets" and (presets.DIR / "__init__.py").is_file()


@pytest.mark.parametrize("name", presets.names())
def test_every_shipped_preset_is_valid_and_described(name):
    assert presets.describe(name), f"{name}.toml needs a first comment line (its description)"
    Config.from_dict(presets.load(name)).validate()
