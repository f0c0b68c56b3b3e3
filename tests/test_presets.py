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


def test_flags_and_toml_may_add_settings_or_repeat_the_presets_values(folder, tmp_path):
    toml = {"seed": 3, "latent_dim": 3}                       # a repeat, and a free key
    merged = presets.apply("demo", toml, {"epochs": 2, "hidden_dims": (32, 16)}, "my.toml")
    assert merged == {"K": 4, "latent_dim": 3, "hidden_dims": (32, 16), "seed": 3, "epochs": 2}
    cfg = Config.from_dict(merged).validate()
    assert (cfg.K, cfg.seed, cfg.lr) == (4, 3, Config().lr)    # the rest: the defaults


def test_a_contradicting_flag_or_toml_key_is_one_sentence_with_the_way_out(folder, tmp_path,
                                                                          capsys):
    with pytest.raises(ConfigError) as err:
        presets.apply("demo", {}, {"K": 10})
    msg = str(err.value)
    assert msg.startswith("--K 10 contradicts preset demo, which sets K = 4; to vary it, copy "
                          f"the preset file {folder / 'demo.toml'}, ")
    assert msg.endswith("pass the copy with --config instead of --preset demo.")
    with pytest.raises(ConfigError, match=r"^hidden_dims = 64 in my\.toml contradicts preset "
                                          r"demo, which sets hidden_dims = 32 16;"):
        presets.apply("demo", {"hidden_dims": [64]}, {}, "my.toml")
    # through the command line: exit 2, one line, nothing written
    out = tmp_path / "never"
    status, err = main(capsys, "--preset", "demo", "--latent-dim", "2", "--out", out)
    assert status == 2 and err.count("\n") == 1 and not out.exists()
    assert err.startswith("error: --latent-dim 2 contradicts preset demo, which sets "
                          "latent_dim = 3;")
    my = tmp_path / "my.toml"
    my.write_text("K = 6\nseed = 1\n")
    status, err = main(capsys, "--preset", "demo", "--config", my, "--out", out)
    assert status == 2 and f"error: K = 6 in {my} contradicts preset demo" in err


def test_run_length_and_names_are_adjustable(folder):
    """epochs, patience, name, description and tags may differ from the preset's values: they
    say how long a run trains and what it is called, not which model it is."""
    (folder / "long.toml").write_text("# Long\nepochs = 150\npatience = 150\nname = 'long'\n"
                                      "K = 4\n")
    merged = presets.apply("long", {"name": "mine"}, {"epochs": 2, "patience": 1})
    assert (merged["epochs"], merged["patience"], merged["name"], merged["K"]) == \
        (2, 1, "mine", 4)
    with pytest.raises(ConfigError, match="--K 5 contradicts preset long"):
        presets.apply("long", {}, {"epochs": 2, "K": 5})


def test_help_lists_the_presets_with_their_descriptions(folder):
    text = " ".join(run.build_parser().format_help().split())
    assert "--preset NAME" in text
    assert "demo: Demo: a smaller model for tests; other: Other: only the seed" in text


def test_a_preset_run_records_it_and_its_config_reruns_it(folder, tmp_path, capsys):
    data = write_digits_npz(tmp_path / "digits.npz", 300)
    out = tmp_path / "run"
    status, err = main(capsys, "--preset", "demo", "--data", data, "--seed", 5, *TINY[:-1],
                       "--out", out)
    assert status == 0, err
    assert "preset demo" in err                              # the start line names it
    cfg = read_config(out)
    assert (cfg.K, cfg.latent_dim, cfg.hidden_dims, cfg.seed) == (4, 3, (32, 16), 5)
    assert (out / "config.toml").read_text().startswith("# preset demo:")
    info = json.loads((out / "run.json").read_text())
    assert info["preset"] == "demo" and info["header"]["preset"] == "demo"
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
