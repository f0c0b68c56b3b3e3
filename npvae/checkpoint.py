"""Checkpoints: the named parameter arrays plus the config, in one .npz file.

    save_checkpoint(path, params, cfg)   ->  path   (atomic: temp file, then rename)
    load_checkpoint(path)                ->  (params, cfg)

A checkpoint is plain NumPy: `np.load(path)["enc0.W"]` works without npvae; the config is
stored as JSON text under the key `__config__`.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .config import Config
from .fileio import atomic_write
from .params import Layout, Params

CONFIG_KEY = "__config__"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not match its config."""


def save_checkpoint(path, params: Params, cfg: Config, **extra_arrays) -> Path:
    """Write params (named arrays), cfg and any extra arrays (e.g. optimiser state)."""
    arrays = params.to_dict()
    arrays[CONFIG_KEY] = np.array(json.dumps(cfg.to_dict()))
    arrays.update(extra_arrays)
    return atomic_write(path, lambda fh: np.savez(fh, **arrays))


def load_checkpoint(path) -> tuple[Params, Config]:
    """Read a checkpoint written by save_checkpoint; check every array against the config."""
    params, cfg, _ = load_checkpoint_full(path)
    return params, cfg


def load_checkpoint_full(path) -> tuple[Params, Config, dict]:
    """As load_checkpoint, plus the extra arrays stored beside the parameters."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist.")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated or not an npz "
                              f"file): {err}.") from None
    if CONFIG_KEY not in arrays:
        raise CheckpointError(f"checkpoint {path} holds no config ({CONFIG_KEY}).")
    cfg = Config.from_dict(json.loads(str(arrays.pop(CONFIG_KEY)))).validate()
    layout = Layout.from_config(cfg)
    try:
        params = Params.from_dict(layout, arrays, dtype=cfg.dtype)
    except ValueError as err:
        raise CheckpointError(f"checkpoint {path} does not match its config: {err}") from None
    extra = {k: v for k, v in arrays.items() if k not in layout.names}
    return params, cfg, extra
