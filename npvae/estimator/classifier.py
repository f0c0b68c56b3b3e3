"""MixtureVAEClassifier: npvae as a scikit-learn estimator (semi-supervised, -1 = unlabeled).

    clf = MixtureVAEClassifier(preset="ssl", epochs=50).fit(X, y)   # y: -1 for unlabeled rows
    clf.predict(X) (n,)   clf.predict_proba(X) (n, C)   clf.score(X, y)   (labeled rows only)
    clf.transform(X) (n, d) latent means   clf.responsibilities(X) (n, K) q(c|x)
    clf.sample(n, component=None, random_state=None) (n, D) images in [0, 1]
    clf.save(path); MixtureVAEClassifier.load(path); MixtureVAEClassifier.from_run(RUN_DIR)

The constructor takes every Config field that describes the model and its training, with
Config's defaults, except those that describe the data, which here is X and y: `data`,
`num_samples` and `num_labeled` (the labeled rows are those of y that are not -1), `seed`
(named `random_state`, as in scikit-learn) and the report header (`name`, `description`,
`tags`), `resize` (X's images all have one size) and `class_names` (classes_ holds y's own
labels); npvae/estimator/signature.py derives the list from Config. Three follow the data
unless set:
  input_dim    None: the number of columns of X (784 for MNIST images); a number: X must have it.
  image_shape  (): square grey images of as many pixels as X has columns (784: 28 x 28, 64:
               8 x 8), or none when that is not a square (dense networks without warps only);
               (H, W) grey or (H, W, C) with C 1 or 3: each row of X one image's C H W values,
               channel after channel (an RGB image's red H x W, then green, then blue).
  num_classes  10: labels are the integers 0..num_classes-1 and classes_ = 0..num_classes-1,
               whether or not every class has a labeled row; None: the classes are the distinct
               labels of y (any sortable values, as in scikit-learn) and num_classes their count.
preset=None or a preset name ("ssl"): each setting the preset sets applies when the argument
for it was left at its default; a setting given a non-default value keeps that value. For
model "gmm" (one component per class) K follows the number of classes when num_classes is None.

Inputs: the Bernoulli decoder models intensities in [0, 1]. scaling="pixels" (the default):
X (n, D) holds float pixels in [0, 1] or integer grey levels 0..255 (divided by 255), other
values are refused, as are NaN and inf. scaling="minmax" (for data that is not pixels, e.g.
scikit-learn's 8x8 digits with values 0..16): fit learns the smallest and largest value of X
(data_min_, data_max_) and maps X linearly onto [0, 1]; new data is mapped the same way and
clipped to [0, 1].
Augmentation (aug_*), the consistency term's strong view (w_cons > 0) and the conv networks
need the images' shape: square grey images, or image_shape. Their sizes in pixels (aug_shift,
strong_shift, strong_cutout) are scaled by the images' shorter side / aug_side when aug_side
is set, as the presets set it (28: their sizes are for 28 x 28 digits).

Validation: fit holds out val_fraction of the rows (at least one; seeded by random_state, the
recipe of npvae.training.data.make_splits) for early stopping, as the command line does; their
labels are not trained on. With fewer than 1 / val_fraction rows, every row trains and validates.
The fitted weights are the final ones (as the report's), and fit always uses the fast engine.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from npvae.core.config import Config

from .inputs import holdout, is_unlabeled, rows, to_unit
from .signature import NOT_PARAMS, config_params  # noqa: F401  (NOT_PARAMS: imported from here)


class MixtureVAEClassifier(ClassifierMixin, TransformerMixin, BaseEstimator):
    """A semi-supervised mixture-prior VAE (npvae) with scikit-learn's interface; see the
    module docstring for the parameters. Fitted attributes: params_ (npvae.Params),
    config_ (the Config trained with), classes_ (C,), n_features_in_, history_, n_iter_
    (epochs completed), fit_seconds_."""

    def __init__(self, *, preset=None, val_fraction=0.1, image_shape=(), model="mixture", K=10,
                 classifier="component", latent_dim=2, hidden_dims=(256, 128, 64), embed_dim=8,
                 pathway_dim=32, decoder_dims=(128, 256), classifier_dims=(64, 64), dropout=0.2,
                 num_classes=10, input_dim=None, encoder="dense", decoder="dense",
                 conv_channels=(32, 64), w_rec=1.0, w_kl=0.5, w_klc=0.001, w_dir=1.0,
                 dirichlet_alpha=5.0, w_div=-0.05, w_cls=1.0, labeled_per_batch=0, warmup_epochs=0,
                 anneal_epochs=0, aug_rotate=0.0, aug_scale=0.0, aug_shift=0.0, aug_side=None,
                 w_cons=0.0, cons_threshold=0.95, cons_temperature=0.0, strong_rotate=30.0,
                 strong_scale=0.2, strong_shift=4.0, strong_cutout=12, lr=0.001, lr_decay="none",
                 beta1=0.9, beta2=0.999, adam_eps=1e-08, weight_decay=0.0001, grad_clip=1.0,
                 epochs=50, batch_size=128, eval_batch_size=128, patience=30, dtype="float32",
                 scaling="pixels", random_state=42, verbose=False):
        for key, value in locals().items():         # scikit-learn: store, do not check
            if key not in ("self", "__class__"):
                setattr(self, key, value)

    # ------------------------------------------------------------------ settings
    def _config(self, n_features: int, n_classes: int | None) -> Config:
        """The Config of a fit on n_features columns (n_classes: distinct labels when
        num_classes is None): preset applied, then validated (ConfigError names the setting)."""
        own = {k: getattr(self, k) for k in config_params()}
        if self.preset is not None:
            from npvae.training import presets
            default = Config()
            for key, value in presets.load(self.preset).items():
                if key in own and _same(own[key], getattr(default, key)):
                    own[key] = tuple(value) if isinstance(value, list) else value
        if own["input_dim"] is None:
            own["input_dim"] = n_features
        elif own["input_dim"] != n_features:
            raise ValueError(f"X has {n_features} features, but input_dim = "
                             f"{own['input_dim']}; give X with that many columns or leave "
                             f"input_dim=None to follow X.")
        shape = tuple(own["image_shape"] or ())
        if shape and int(np.prod(shape)) != n_features:
            raise ValueError(f"image_shape = {shape} makes {int(np.prod(shape))} values per "
                             f"image, but X has {n_features} columns; each row holds one "
                             f"image's C x H x W values, channel after channel.")
        if own["num_classes"] is None:
            own["num_classes"] = n_classes
            if own["model"] == "gmm" and own["classifier"] == "component":
                own["K"] = n_classes            # one component per class
        seed = self.random_state
        if seed is None:                            # fresh entropy, never the global state
            seed = int(np.random.SeedSequence().entropy % 2**32)
        own.update(seed=seed, num_labeled=0, name="estimator")
        cfg = Config(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in own.items()})
        return cfg.validate()

    # ------------------------------------------------------------------- inputs
    def _pixels(self, X, reset: bool) -> np.ndarray:
        """X validated by scikit-learn (2-D, finite, n_features_in_) and as pixels in [0, 1]."""
        X = validate_data(self, X, reset=reset, dtype=None, ensure_min_samples=1)
        return self._scaled(X, self._dtype())

    def _scaled(self, X, dtype, fitting: bool = False) -> np.ndarray:
        """X mapped to [0, 1] by the `scaling` rule (fitting: learn data_min_, data_max_)."""
        if self.scaling == "pixels":
            return to_unit(X, dtype)
        if self.scaling != "minmax":
            raise ValueError(f"scaling = {self.scaling!r} is not known: use 'pixels' (floats "
                             f"in [0, 1] or integers 0..255) or 'minmax'.")
        X = np.asarray(X, dtype=np.float64)
        if fitting:
            self.data_min_, self.data_max_ = float(X.min()), float(X.max())
        span = self.data_max_ - self.data_min_
        return np.clip((X - self.data_min_) / (span if span > 0 else 1.0), 0.0, 1.0).astype(dtype)

    def _dtype(self):
        cfg = getattr(self, "config_", None)
        return np.dtype(cfg.dtype if cfg is not None else self.dtype)

    def _labels(self, y) -> tuple[np.ndarray, np.ndarray]:
        """(classes_, codes): y with -1 for unlabeled rows -> codes 0..C-1 and -1."""
        y = np.asarray(y)
        kind = type_of_target(y)
        if kind not in ("binary", "multiclass", "unknown") or y.ndim != 1:
            raise ValueError(f"y must be a 1-D array of class labels with -1 for unlabeled "
                             f"rows; got target type {kind!r} of shape {y.shape}.")
        if self.num_classes is None:
            unlabeled = is_unlabeled(y)
            enc = LabelEncoder().fit(y[~unlabeled])
            codes = np.full(y.shape, -1, dtype=np.int64)
            codes[~unlabeled] = enc.transform(y[~unlabeled])
            if len(enc.classes_) < 2:
                raise ValueError(f"y has {len(enc.classes_)} class(es) besides -1 (unlabeled); "
                                 f"a classifier needs at least 2 classes (or set num_classes).")
            return enc.classes_, codes
        if not (np.issubdtype(y.dtype, np.integer) or
                (np.issubdtype(y.dtype, np.floating) and np.all(y == np.rint(y)))):
            raise ValueError(f"y must hold integer labels 0..{self.num_classes - 1} or -1 "
                             f"(unlabeled); got dtype {y.dtype} (with num_classes=None any "
                             f"labels are accepted).")
        codes = y.astype(np.int64)
        bad = (codes < -1) | (codes >= self.num_classes)
        if bad.any():
            raise ValueError(f"y holds label {codes[bad][0]}, outside 0..{self.num_classes - 1} "
                             f"and not -1 (unlabeled); labels must be class numbers below "
                             f"num_classes = {self.num_classes}.")
        return np.arange(self.num_classes), codes

    # --------------------------------------------------------------------- fit
    def fit(self, X, y):
        """Train on X (n, D) with labels y (n,), -1 = unlabeled. Returns self."""
        from npvae.training.loop import fit as train

        X, y = validate_data(self, X, y, reset=True, dtype=None, ensure_min_samples=2,
                             y_numeric=False)
        classes, codes = self._labels(y)
        cfg = self._config(X.shape[1], len(classes))
        x = self._scaled(X, np.dtype(cfg.dtype), fitting=True)
        train_idx, val_idx = holdout(len(x), cfg.val_fraction, cfg.seed)
        result = train(cfg, x, codes, train_idx, val_idx, progress=bool(self.verbose),
                       engine="fast")
        if result.diverged:
            raise FloatingPointError(f"training {result.diverged}.")
        self.params_, self.config_, self.classes_ = result.params, cfg, classes
        self.history_, self.n_iter_ = result.history, result.epochs_completed
        self.fit_seconds_ = result.fit_seconds
        if cfg.classifier == "tau":     # the map from the final weights and training labels
            from npvae.core.gmm import fit_tau
            self.tau_ = fit_tau(result.params, x[train_idx], codes[train_idx], cfg)
        return self

    # ---------------------------------------------------------------- outputs
    def _outputs(self, X) -> dict:
        from npvae.reporting.summary import model_outputs
        check_is_fitted(self)
        return model_outputs(self.params_, self._pixels(X, reset=False), self.config_)

    def predict_proba(self, X) -> np.ndarray:
        """(n, C) class probabilities from the run's best predictor
        (npvae.reporting.summary.predictors): softmax of the classifier head at z = mu for the
        seed's model, q(c|x) for model gmm (its components are the classes), q(c|x) tau with
        classifier tau."""
        from npvae.core.layers import softmax_forward
        o = self._outputs(X)
        if self.config_.classifier == "tau":
            if getattr(self, "tau_", None) is None:
                raise ValueError("this classifier-tau model has no map tau_ (it comes from "
                                 "fit or a file written by save); refit it to predict.")
            return o["q"] @ self.tau_
        return o["q"] if self.config_.model == "gmm" else softmax_forward(o["cls_logits"])[0]

    def predict(self, X) -> np.ndarray:
        """(n,) the most probable class of each row, as a label of classes_."""
        proba = self.predict_proba(X)                   # NotFittedError before classes_
        return self.classes_[np.argmax(proba, axis=1)]

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy on the rows of y that are labeled (rows with -1 are left out)."""
        y = np.asarray(y)
        keep = ~is_unlabeled(y)
        if not keep.any():
            raise ValueError("score needs at least one labeled row (y other than -1).")
        w = None if sample_weight is None else np.asarray(sample_weight)[keep]
        return super().score(rows(X, keep), y[keep], sample_weight=w)

    def transform(self, X) -> np.ndarray:
        """(n, latent_dim) the latent means mu(x) (the encoder's output at z = mu)."""
        return self._outputs(X)["mu"]

    def responsibilities(self, X) -> np.ndarray:
        """(n, K) q(c|x): the posterior over mixture components."""
        return self._outputs(X)["q"]

    def sample(self, n_samples: int = 1, component=None, random_state=None) -> np.ndarray:
        """(n_samples, D) images in [0, 1]: Bernoulli means of the decoder at z drawn from the
        prior. component: None draws each row's component from pi; an int picks one.
        Seed model: z ~ N(0, I) decoded by component k; gmm: z ~ N(m_k, e^{v_k})."""
        from npvae.core.sampling import sample_images
        check_is_fitted(self)
        return sample_images(self.params_, self.config_, n_samples, component,
                             np.random.default_rng(random_state))

    # -------------------------------------------------------------- files
    def save(self, path) -> Path:
        """Write the fitted model to one .npz file (an npvae checkpoint plus the estimator's
        parameters and classes_); load with MixtureVAEClassifier.load(path)."""
        from npvae.training.checkpoint import save_checkpoint
        check_is_fitted(self)
        extra = {"__estimator__": np.array(json.dumps(_plain(self.get_params()))),
                 "__classes__": np.asarray(self.classes_)}
        if getattr(self, "tau_", None) is not None:
            extra["__tau__"] = np.asarray(self.tau_)
        return save_checkpoint(path, self.params_, self.config_, **extra)

    @classmethod
    def load(cls, path) -> "MixtureVAEClassifier":
        """A fitted estimator from save(path) or from any npvae checkpoint."""
        from npvae.training.checkpoint import load_checkpoint_full
        params, cfg, extra = load_checkpoint_full(path)
        if "__estimator__" in extra:
            saved = json.loads(str(extra["__estimator__"]))
            est = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
            classes = extra["__classes__"]
        else:
            est, classes = _from_config(cls, cfg), np.arange(cfg.num_classes)
        est.params_, est.config_, est.classes_ = params, cfg, classes
        est.n_features_in_, est.history_, est.n_iter_ = cfg.input_dim, None, None
        if "__tau__" in extra:
            est.tau_ = np.asarray(extra["__tau__"])
        return est

    @classmethod
    def from_run(cls, run_dir) -> "MixtureVAEClassifier":
        """The model a command-line run trained (RUN_DIR/checkpoints/final.npz, the weights
        its report uses): same weights, same predictions as the report's."""
        from npvae.runs.rundir import FINAL
        return cls.load(Path(run_dir) / FINAL)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = self.scaling == "pixels"   # [0, 1] or 0..255
        tags.classifier_tags.poor_score = True      # a few epochs learn little
        tags.target_tags.required = True
        tags.transformer_tags.preserves_dtype = []  # transform gives float64 always
        return tags


# Estimator checks of scikit-learn that cannot apply, with the reason. scikit-learn >= 1.6
# takes them through parametrize_with_checks(..., expected_failed_checks=expected_failed_checks)
# (it replaced the old `_xfail_checks` tag); tests/test_estimator.py runs the checks that way.
NOT_APPLICABLE = {
    "check_classifiers_classes": (
        "its last case trains with the class labels -1 and 1, but -1 marks an unlabeled row "
        "(scikit-learn's semi-supervised convention; it exempts its own LabelSpreading, "
        "LabelPropagation and SelfTrainingClassifier from this case by name); string labels, "
        "the rest of the check, are tested in tests/test_estimator.py"),
}


def expected_failed_checks(estimator) -> dict[str, str]:
    """{check name: reason} of the scikit-learn estimator checks that cannot apply."""
    return dict(NOT_APPLICABLE)


# ------------------------------------------------------------------ helpers
def _from_config(cls, cfg: Config) -> MixtureVAEClassifier:
    """An estimator whose parameters are a Config's (seed -> random_state)."""
    return cls(**{k: getattr(cfg, k) for k in config_params()}, random_state=cfg.seed)


def _same(a, b) -> bool:
    seq = (list, tuple)
    if isinstance(a, seq) or isinstance(b, seq):
        return isinstance(a, seq) and isinstance(b, seq) and list(a) == list(b)
    return type(a) is type(b) and a == b


def _plain(d: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


__all__ = ["MixtureVAEClassifier", "expected_failed_checks", "NOT_APPLICABLE"]
