"""The pieces a Config field is declared with: `setting(default, group, help, check)`.

A field's default, its concern (GROUPS), its one-line help and its check live in one
`dataclasses.field`, whose metadata the rest of npvae reads: Config.validate runs the checks,
npvae/training/cli.py makes the flags (help text and argparse groups), and
npvae/estimator/signature.py lists the estimator's parameters.

A check is a Rule (or a tuple of Rules, tried in order): a predicate on the value and what is
accepted, the end of the sentence "name = value (--flag) is not allowed: <says>."
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

# Concern -> the title of its group in --help, in the order --help shows them.
GROUPS = {
    "data": "data: the images, the labels the model sees, the split",
    "model": "model: the networks and their sizes",
    "loss": "loss: the weight of each term and the KL schedule",
    "augmentation": "augmentation and consistency: warped training batches, strong views",
    "optimiser": "optimiser: AdamW and its learning rate",
    "run": "training loop, precision and report header",
}


class ConfigError(ValueError):
    """A setting is unknown or has a bad value; the message names it and what is accepted."""


@dataclass(frozen=True)
class Rule:
    ok: Callable[[Any], bool]
    says: str


def setting(default, group: str, help: str, check: Rule | tuple[Rule, ...] = (), *,
            extension: bool = False, choices: tuple[str, ...] | None = None):
    """A Config field. extension: a setting added after the seed's model, left out of
    compact dicts (checkpoints) while at its default. choices: the values argparse offers."""
    if group not in GROUPS:
        raise ValueError(f"unknown settings group {group!r}; known: {', '.join(GROUPS)}")
    rules = check if isinstance(check, tuple) else (check,)
    return dataclasses.field(default=default, metadata={
        "group": group, "help": help, "rules": rules, "extension": extension,
        "choices": choices})


# ------------------------------------------------------------------ rules
def at_least(n: int, says: str | None = None) -> Rule:
    """v >= n; says "it must be at least n" ("0 or more" for n = 0) unless given."""
    default = "it must be 0 or more" if n == 0 else f"it must be at least {n}"
    return Rule(lambda v: v >= n, says or default)


def positive(says: str = "it must be > 0") -> Rule:
    return Rule(lambda v: v > 0, says)


def one_of(choices: tuple[str, ...], says: str | None = None) -> Rule:
    return Rule(lambda v: v in choices, says or f"use one of {', '.join(choices)}")


def widths(what: str, example: str) -> Rule:
    """A non-empty tuple of positive integers (layer widths, channel counts)."""
    return Rule(lambda v: len(v) > 0 and all(d >= 1 for d in v),
                f"give one or more positive {what}, e.g. {example}")


# Shared by several fields.
WEIGHT = Rule(lambda v: v >= 0, "it must be >= 0 (only w_div may be negative)")
FRACTION = Rule(lambda v: 0.0 <= v < 1.0, "it must lie in [0, 1)")
DEGREES = Rule(lambda v: 0.0 <= v <= 180.0, "give degrees in [0, 180]")
PIXELS = Rule(lambda v: v >= 0.0, "give pixels, 0 or more")   # the upper bound: Config._check_sizes
FINITE = Rule(lambda v: v == v and abs(v) != float("inf"), "it must be a finite number")


# ------------------------------------------------------------------ checking
def flag(name: str) -> str:
    """The command-line flag of a setting: latent_dim -> --latent-dim."""
    return "--" + name.replace("_", "-")


def refuse(name: str, value, says: str):
    """The one sentence every bad value is refused with."""
    raise ConfigError(f"{name} = {value!r} ({flag(name)}) is not allowed: {says}.")


def check_fields(cfg) -> None:
    """Every field's type, then every float's finiteness (NaN passes no comparison
    unnoticed otherwise), then every field's own rules, in field order."""
    fs = dataclasses.fields(cfg)
    for f in fs:
        check_type(f, getattr(cfg, f.name))
    for f in fs:
        if str(f.type) == "float" and not FINITE.ok(getattr(cfg, f.name)):
            refuse(f.name, getattr(cfg, f.name), FINITE.says)
    for f in fs:
        value = getattr(cfg, f.name)
        for r in f.metadata["rules"]:
            if not r.ok(value):
                refuse(f.name, value, r.says)


def check_type(f: dataclasses.Field, value) -> None:
    """Check a value against the field's annotation (the handful of types Config uses)."""
    ann = str(f.type)
    ok = True
    if ann.startswith("tuple[int"):
        ok = isinstance(value, tuple) and all(_is_int(v) for v in value)
    elif ann.startswith("tuple[str"):
        ok = isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    elif ann.startswith("int"):  # "int" or "int | None"
        ok = _is_int(value) or (value is None and "None" in ann)
    elif ann == "float":
        ok = _is_int(value) or isinstance(value, float)
    elif ann.startswith("str"):
        ok = isinstance(value, str) or (value is None and "None" in ann)
    if not ok:
        raise ConfigError(f"{f.name} = {value!r} has the wrong type: expected {ann}.")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
