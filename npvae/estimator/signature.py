"""The estimator's parameters, read from Config: its fields minus NOT_PARAMS, with Config's
defaults, between the estimator's own extras.

scikit-learn reads an estimator's parameters from an explicit `__init__` signature, so
MixtureVAEClassifier spells it out; tests/test_estimator.py checks it against `parameters()`,
and `python -m npvae.estimator.signature` prints the signature to paste after a new setting.
"""
from __future__ import annotations

import textwrap
from dataclasses import fields

from npvae.core.config import Config

# Config fields the estimator does not take: the data is X and y (the labeled rows are those
# of y that are not -1; `resize` is for folders of image files of several sizes, and the
# names of the classes are y's own labels, classes_), `seed` is random_state, and a fit writes
# no report.
NOT_PARAMS = ("data", "num_samples", "num_labeled", "resize", "class_names", "seed", "name",
              "description", "tags")
BEFORE = {"preset": None}                      # applied to the settings left at their defaults
CHANGED = {"input_dim": None}                  # None: the number of columns of X
AFTER = {"scaling": "pixels", "random_state": Config().seed, "verbose": False}


def config_params() -> list[str]:
    """The Config fields that are parameters, in field order."""
    return [f.name for f in fields(Config) if f.name not in NOT_PARAMS]


def parameters() -> dict:
    """{name: default} of MixtureVAEClassifier.__init__, in signature order."""
    default = Config()
    own = {name: CHANGED.get(name, getattr(default, name)) for name in config_params()}
    return {**BEFORE, **own, **AFTER}


def source(indent: int = 4, width: int = 100) -> str:
    """`def __init__(self, *, ...):` as it stands in npvae/estimator/classifier.py."""
    head = " " * indent + "def __init__("
    args = ", ".join(["self", "*", *(f"{k}={_literal(v)}" for k, v in parameters().items())]) + "):"
    return textwrap.fill(args, width=width, initial_indent=head,
                         subsequent_indent=" " * len(head), break_on_hyphens=False,
                         break_long_words=False)



def _literal(value) -> str:
    """repr with double quotes around strings, as the code is written."""
    return f'"{value}"' if isinstance(value, str) else repr(value)


if __name__ == "__main__":
    print(source())
