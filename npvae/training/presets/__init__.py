"""Presets: named sets of settings shipped inside the package, `python -m npvae.run --preset NAME`.

A preset is the TOML file `npvae/training/presets/<NAME>.toml` (a flat table of Config fields, as a
`--config` file; [sections] are flattened). Its first comment line is its one-line
description, shown by `--help`:

    # Semi-supervised: labels steer the components
    K = 10
    latent_dim = 10

A preset is applied over the Config defaults. A `--config` file and typed flags may set the
keys the preset does not set (seed, num_labeled, data, out, ...), the run's length and labels
(ADJUSTABLE: epochs, patience, name, description, tags), or repeat a preset key with the
same value; giving any other preset key a different value is a contradiction, refused with
ConfigError (exit status 2): to vary it, copy the preset file and pass the copy with --config
instead of --preset.

    names()                        the presets available, sorted
    describe(name)                 the one-line description
    path(name)                     the preset's file (refuses an unknown name)
    load(name)                     {setting: value}, every key a Config field
    apply(name, toml, flags, toml_path)   the merged settings, contradictions refused

DIR is the folder searched; tests point it at a temporary folder (every function also takes
`folder=`).
"""
from __future__ import annotations

from pathlib import Path

from npvae.core.config import Config, ConfigError

from ..tomlfile import read_toml

DIR = Path(__file__).resolve().parent
# What a run may change without being another setting: how long it trains, what it is called.
ADJUSTABLE = frozenset({"epochs", "patience", "name", "description", "tags"})


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
    return ("apply a named set of settings shipped with npvae over the defaults; other flags "
            "and --config may set what it does not set (" +
            (f"available: {listed}" if listed else "none are installed") + ")")


def _same(a, b) -> bool:
    """Equal as settings: lists and tuples alike, 1 == 1.0."""
    seq = (list, tuple)
    if isinstance(a, seq) or isinstance(b, seq):
        return isinstance(a, seq) and isinstance(b, seq) and list(a) == list(b)
    return a == b


def apply(name: str, toml: dict | None = None, flags: dict | None = None,
          toml_path=None, folder=None) -> dict:
    """The settings of a run with preset `name`: the preset's values, then the keys `toml`
    (the --config file's settings) and `flags` (typed flags) add. A key the preset sets that
    either gives a different value raises ConfigError naming the flag or TOML key, the
    preset's value and how to vary it. Returns {field: value} (Config.from_dict-ready)."""
    preset = load(name, folder)
    file = path(name, folder)
    for source, given in (("toml", toml or {}), ("flag", flags or {})):
        for key, value in given.items():
            if key in preset and key not in ADJUSTABLE and not _same(value, preset[key]):
                where = (f"--{key.replace('_', '-')} {_show(value)}" if source == "flag" else
                         f"{key} = {_show(value)} in {toml_path}")
                raise ConfigError(
                    f"{where} contradicts preset {name}, which sets {key} = "
                    f"{_show(preset[key])}; to vary it, copy the preset file {file}, edit "
                    f"it and pass the copy with --config instead of --preset {name}.")
    return {**preset, **(toml or {}), **(flags or {})}


def _show(value) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return repr(value) if isinstance(value, str) else str(value)
