"""Settings files: a flat TOML table of Config fields, read with the line of each setting
(so an error names the file and the line), and a resolved Config written back as TOML.

    read_toml(path)              {setting: value}; [sections] flattened, unknown keys refused
    config_from_toml(path)       the validated Config of one file (a run folder's config.toml)
    write_toml(cfg, notes)       TOML text that read_toml reads back (None values omitted),
                                 a setting's note as a comment at the end of its line
"""
from __future__ import annotations

import re
import sys
from dataclasses import fields
from pathlib import Path

from npvae.core.config import Config, ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


def config_from_toml(path) -> Config:
    """The validated Config of a TOML file alone (a run folder's config.toml)."""
    values, lines = _read_toml_lines(path)
    return _validated(values, path, lines)


def read_toml(path) -> dict:
    """A flat TOML table of Config fields; [sections] are flattened (their names ignored).
    Unknown settings and settings given twice are refused (ConfigError naming the line)."""
    return _read_toml_lines(path)[0]


def _read_toml_lines(path) -> tuple[dict, dict]:
    """read_toml's dict, and the line of each setting in the file (None if not found)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist.")
    try:
        text = path.read_bytes().decode("utf-8")
        doc = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}.") from None
    except OSError as err:
        raise ConfigError(f"config file {path} cannot be read: {err.strerror}.") from None
    known = {f.name for f in fields(Config)}
    flat: dict = {}
    lines: dict = {}
    for key, value in doc.items():
        section = key if isinstance(value, dict) else None
        for name, v in (value.items() if section else [(key, value)]):
            at = _line_of(text, section, name)
            if isinstance(v, dict):
                raise ConfigError(f"config file {path}{at}: table [{key}.{name}] is nested too "
                                  f"deeply; use [section] tables of settings, one level deep.")
            if name in flat:
                raise ConfigError(f"config file {path}{at} sets {name} more than once; set "
                                  f"each setting in one place.")
            if name not in known:
                raise ConfigError(f"config file {path}{at}: unknown setting {name}; known "
                                  f"settings: {', '.join(sorted(known))}.")
            flat[name], lines[name] = v, at
    return flat, lines


def _line_of(text: str, section: str | None, name: str) -> str:
    """', line N' for the line setting `name` (in [section], if given), else ''."""
    pattern = re.compile(r"""\s*(?:["']?([\w.-]+)["']?\s*\.\s*)?["']?%s["']?\s*="""
                         % re.escape(name))
    current = None
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"\s*\[\s*([^\]]+?)\s*\]", line)
        if header:
            current = header.group(1).strip("\"'")
            continue
        match = pattern.match(line)
        if match and (match.group(1) or current) == section:
            return f", line {number}"
    return ""


def _validated(values: dict, path, lines: dict, shape: bool = True) -> Config:
    """Config.from_dict(values).validate(shape); when the error comes from one setting read
    from the file (`lines`: setting -> ', line N'), the message names the file and the line.
    shape False: without the rules that need the images' shape (data not loaded yet)."""
    try:
        return Config.from_dict(values).validate(shape)
    except ConfigError as err:
        for name, at in lines.items():
            try:
                Config.from_dict({name: values[name]}).validate(shape)
            except ConfigError as alone:
                if str(alone) == str(err):
                    raise ConfigError(f"config file {path}{at}: {err}") from None
        raise


def write_toml(cfg: Config, notes: dict | None = None) -> str:
    """The resolved config as TOML text that read_toml reads back (None values omitted);
    notes {setting: text} end their settings' lines as comments."""
    notes = notes or {}
    lines = []
    for key, value in cfg.to_dict().items():
        if value is None:
            continue
        if isinstance(value, str):
            value = _quoted(value)
        elif isinstance(value, list):               # class names may hold any character
            value = "[" + ", ".join(_quoted(v) if isinstance(v, str) else repr(v)
                                    for v in value) + "]"
        elif isinstance(value, bool):
            value = str(value).lower()
        lines.append(f"{key} = {value}" + (f"  # {notes[key]}" if key in notes else ""))
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    """A TOML basic string: backslashes and quotes escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
