"""Command-line flags generated from the Config dataclass, plus `--config FILE` (TOML).

Every Config field becomes a flag (`latent_dim` -> `--latent-dim`) in the argparse group of
its concern, with the help text and default of its `setting(...)` line in `--help`
(npvae/core/settings.py). Precedence, for every setting: Config defaults < `--preset NAME`
(npvae/training/presets) < the `--config` TOML file < flags typed on the command line. The
checks run on the resolved settings, so a bad value is refused wherever it came from.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import fields

from npvae.core.config import Config
from npvae.core.settings import GROUPS, flag

from . import presets
from .tomlfile import _read_toml_lines, _validated


def _none_or(kind):
    def parse(text: str):
        return None if text.lower() in ("none", "all") else kind(text)
    parse.__name__ = kind.__name__
    return parse


def add_config_flags(parser: argparse.ArgumentParser, many: bool = False) -> None:
    """One flag per Config field. Defaults are SUPPRESSed so that only the flags the user
    typed reach the namespace (they must override the TOML file, not be overridden by it).

    many (python -m npvae.sweep): every flag takes one or more values, each parsed as the
    field's type, and a list-valued setting is one comma-separated value per entry
    (`--hidden-dims 256,128,64 512,256`)."""
    groups = {key: parser.add_argument_group(title) for key, title in GROUPS.items()}
    for f in fields(Config):
        ann, default = str(f.type), f.default
        kw: dict = {"default": argparse.SUPPRESS, "dest": f.name}
        if ann.startswith("tuple[int"):       # 256 128 64, or 256,128,64 (--image-shape 32,32,3)
            kw.update(type=_comma_list(int), nargs="+", metavar="N", action=_Joined)
            shown = " ".join(map(str, default))
        elif ann.startswith("tuple[str"):
            kw.update(type=str, nargs="*", metavar="NAME" if f.name == "class_names" else "TAG")
            shown = " ".join(default)
        elif ann.startswith("int"):
            kw.update(type=_none_or(int) if "None" in ann else int,
                      metavar="S" if f.name == "resize" else "N")
            shown = default
        elif ann == "float":
            kw.update(type=float, metavar="X")
            shown = default
        else:
            kw.update(type=str, metavar="TEXT")
            shown = default
        if f.metadata["choices"]:
            kw["choices"] = list(f.metadata["choices"])
        if many:
            if ann.startswith("tuple"):
                kw.pop("action", None)
                kind = int if ann.startswith("tuple[int") else str
                kw.update(type=_comma_list(kind), metavar=f"{kw['metavar']},..")
                shown = ",".join(map(str, default))
            kw["nargs"] = "+"
        # argparse formats help with %, so a literal % must be doubled
        kw["help"] = f"{f.metadata['help']} (default: {shown})".replace("%", "%%")
        groups[f.metadata["group"]].add_argument(flag(f.name), **kw)


class _Joined(argparse.Action):
    """Stores the values of several comma lists as one tuple: `8 8 3` or `8,8,3` -> (8, 8, 3)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, tuple(v for part in values for v in part))


def _comma_list(kind):
    def parse(text: str) -> tuple:
        return tuple(kind(part) for part in text.split(",") if part.strip() != "")
    parse.__name__ = f"comma-separated {kind.__name__}"
    return parse


def add_preset_flag(parser: argparse.ArgumentParser, nargs=None) -> None:
    """`--preset NAME`, its help listing the shipped presets with their descriptions."""
    parser.add_argument("--preset", metavar="NAME", nargs=nargs, help=presets.help_text())


SOURCES = ("preset", "config", "flag")      # lowest precedence first


def config_from_args(ns: argparse.Namespace) -> Config:
    """The resolved, validated Config of the parsed arguments (see resolve)."""
    return resolve(ns)[0]


def resolve(ns: argparse.Namespace) -> tuple[Config, dict]:
    """Defaults, then the preset (if --preset), then the TOML file (if --config), then the
    typed flags, each overriding the ones before; validated. Returns the Config and the
    source ("preset", "config" or "flag") of every setting one of them gave, in Config's
    field order. A bad value from the file is named with the file and its line.

    With data (cfg.data), the rules that need the images' shape wait for the data
    (validate(shape=False); npvae/training/data.py:fit_to_data checks them once it is
    loaded). Settings that follow from others unless given: _follow."""
    names = [f.name for f in fields(Config)]
    flags = {k: v for k, v in vars(ns).items() if k in names}
    path = getattr(ns, "config", None)
    toml, lines = _read_toml_lines(path) if path else ({}, {})
    preset = presets.load(ns.preset) if getattr(ns, "preset", None) else {}
    values, given = {}, {}
    for source, layer in zip(SOURCES, (preset, toml, flags)):
        values.update(layer)
        given.update(dict.fromkeys(layer, source))
    sources = {k: given[k] for k in names if k in given}
    _follow(values)
    shape = values.get("data") is None             # the shape is known: the embedded digits
    if not path:
        return Config.from_dict(values).validate(shape), sources
    return _validated(values, path, {k: lines[k] for k in toml if k not in flags},
                      shape), sources


def _follow(values: dict) -> None:
    """Settings that follow from other given ones unless they were given themselves:
    input_dim from image_shape (H * W * C), num_classes from class_names (one name each),
    and model gmm's K from num_classes (one component per class)."""
    if values.get("image_shape") and "input_dim" not in values:
        values["input_dim"] = math.prod(values["image_shape"])
    if values.get("class_names") and "num_classes" not in values:
        values["num_classes"] = len(values["class_names"])
    if values.get("model") == "gmm" and "K" not in values and "num_classes" in values:
        values["K"] = values["num_classes"]
