"""Presets: named sets of settings shipped inside the package, `python -m npvae.run --preset NAME`.

A preset is the TOML file `npvae/training/presets/<NAME>.toml` (a flat table of Config fields, as a
`--config` file; [sections] are flattened). Its first comment line is its one-line
description, shown by `--help`:

    # Semi-supervised: labels steer the components
    K = 10
    latent_dim = 10

A preset is applied over the Config defaults, and a `--config` file and flags typed on the
command line override it: defaults < preset < --config < flags, whatever the setting (a
variant of a preset is the preset plus the flags that differ). Where each given setting came
from is recorded in the run's config.toml and run.json (npvae/training/cli.py:resolve).

    names()                        the presets available, sorted
    describe(name)                 the one-line description
    path(name)                     the preset's file (refuses an unknown name)
    load(name)                     {setting: value}, every key a Config field
    apply(name, toml, flags)       the merged settings, the later ones overriding

DIR is the folder searched; tests point it at a temporary folder (every function also takes
`folder=`).
"""
from __future__ import annotations

from pathlib import Path

from npvae.core.config import Config, ConfigError

from ..tomlfile import read_toml

DIR = Path(__file__).resolve().parent


def _folder(folder) -> Path:
    return Path(folder) if folder is not None else Path(DIR)


def names(folder=None) -> list[str]:
    """The preset names (file stems of *.toml in the folder), sorted."""
    d = _folder(folder)
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


def path(name: str, folder=None) -> Path:
    """The file of preset `name`; ConfigError naming the known presets if there is none."""
    known = names(folder)
    if name not in known:
        listed = ", ".join(known) if known else "none are installed"
        raise ConfigError(f"unknown preset {name!r} (--preset); known presets: {listed}.")
    return _folder(folder) / f"{name}.toml"


def describe(name: str, folder=None) -> str:
    """The first comment line of the preset's file, without the '#' (empty if none)."""
    for line in path(name, folder).read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("#"):
            return line.strip().lstrip("#").strip()
        if line.strip():
            break                   # the description must come before the first setting
    return ""


def load(name: str, folder=None) -> dict:
    """The preset's settings {field: value}; ConfigError for an unknown key or bad value."""
    file = path(name, folder)
    values = read_toml(file)
    try:
        Config.from_dict(values).validate()
    except ConfigError as err:
        raise ConfigError(f"preset {name} ({file}) is broken: {err}") from None
    return values


def help_text(folder=None) -> str:
    """`--preset`'s help: every preset with its description."""
    listed = "; ".join(f"{n}: {describe(n, folder)}" for n in names(folder))
    return ("apply a named set of settings shipped with npvae over the defaults; --config and "
            "the flags typed override its values (" +
            (f"available: {listed}" if listed else "none are installed") + ")")


def apply(name: str, toml: dict | None = None, flags: dict | None = None,
          folder=None) -> dict:
    """The settings of a run with preset `name`: the preset's values, overridden by `toml`
    (the --config file's settings), overridden by `flags` (typed flags). Returns
    {field: value} (Config.from_dict-ready; not validated)."""
    return {**load(name, folder), **(toml or {}), **(flags or {})}
