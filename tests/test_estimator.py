"""npvae.MixtureVAEClassifier behaves as a scikit-learn estimator and as the model it wraps.

Everything trains tiny models (one 16-unit layer, 1-3 epochs, a few hundred images), so the
file runs in seconds. scikit-learn's own estimator checks run on both models with
scaling="minmax" and num_classes=None, since they feed small random data (arbitrary feature
counts and values, string labels); the checks that cannot apply are listed with their reason
in npvae.estimator.classifier.NOT_APPLICABLE.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import numpy as np
import pytest

from npvae.training import presets
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from npvae import Config, MixtureVAEClassifier
from npvae.training.data import load_digits, subsample
from npvae.estimator import signature
from npvae.estimator.classifier import NOT_PARAMS, expected_failed_checks

TINY = dict(hidden_dims=(16,), decoder_dims=(16,), classifier_dims=(8,), embed_dim=2,
            pathway_dim=4, K=3, epochs=2, batch_size=32)
CHECKED = [MixtureVAEClassifier(**TINY, num_classes=None, scaling="minmax"),
           MixtureVAEClassifier(**{**TINY, "K": 10}, model="gmm", num_classes=None,
                                scaling="minmax")]


@parametrize_with_checks(CHECKED, expected_failed_checks=expected_failed_checks)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    """400 MNIST digits as uint8 grey levels; y_semi keeps 80 labels (-1 elsewhere)."""
    x, y = load_digits()
    x, y = subsample(x, y, 400, 0)
    x8 = np.rint(x * 255).astype(np.uint8)
    y_semi = y.copy()
    y_semi[80:] = -1
    return x8, y, y_semi


@pytest.fixture(scope="module")
def fitted(digits):
    x8, _, y_semi = digits
    return {"mixture": MixtureVAEClassifier(**TINY).fit(x8, y_semi),
            "gmm": MixtureVAEClassifier(**{**TINY, "K": 10}, model="gmm").fit(x8, y_semi)}


def test_parameters_are_the_config_fields_with_its_defaults():
    est = MixtureVAEClassifier()
    params = est.get_params()
    wanted = {f.name for f in dataclasses.fields(Config)} - set(NOT_PARAMS)
    assert set(params) == wanted | {"preset", "scaling", "random_state", "verbose"}
    default = Config()
    for name in wanted - {"input_dim"}:              # input_dim=None: follow X's columns
        assert params[name] == getattr(default, name), name
    assert params["random_state"] == default.seed and params["input_dim"] is None


def test_signature_is_the_one_config_gives():
    """The explicit __init__ (scikit-learn needs one) cannot drift from Config: its keyword
    parameters, in order and with their defaults, are Config's fields minus NOT_PARAMS between
    the estimator's own (npvae.estimator.signature; `python -m npvae.estimator.signature`
    prints it after a new setting)."""
    params = list(inspect.signature(MixtureVAEClassifier.__init__).parameters.values())[1:]
    assert all(p.kind is p.KEYWORD_ONLY for p in params)
    assert {p.name: p.default for p in params} == signature.parameters()
    assert [p.name for p in params] == list(signature.parameters())
    expected = ["preset", *(f.name for f in dataclasses.fields(Config)
                            if f.name not in NOT_PARAMS), "scaling", "random_state", "verbose"]
    assert [p.name for p in params] == expected
    namespace: dict = {}
    exec("class Printed:\n" + signature.source() + "\n        pass\n", namespace)
    printed = inspect.signature(namespace["Printed"].__init__)   # what the script prints
    assert printed == inspect.signature(MixtureVAEClassifier.__init__)


@pytest.mark.parametrize("model", ["mixture", "gmm"])
def test_outputs_have_the_promised_shapes_and_meaning(fitted, digits, model):
    x8, y, _ = digits
    est = fitted[model]
    assert est.n_features_in_ == 784 and list(est.classes_) == list(range(10))
    assert est.n_iter_ == 2 and est.config_.input_dim == 784
    proba = est.predict_proba(x8[:50])
    assert proba.shape == (50, 10) and np.allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(est.predict(x8[:50]), proba.argmax(axis=1))
    q = est.responsibilities(x8[:50])
    assert q.shape == (50, est.config_.K) and np.allclose(q.sum(axis=1), 1.0)
    if model == "gmm":                                # the components are the classes
        np.testing.assert_array_equal(q, proba)
    assert est.transform(x8[:50]).shape == (50, est.config_.latent_dim)
    # float pixels in [0, 1] and the same images as grey levels give the same outputs
    np.testing.assert_allclose(est.predict_proba(x8[:50] / 255.0), proba, atol=1e-6)


def test_score_counts_the_labeled_rows_only(fitted, digits):
    x8, y, _ = digits
    est = fitted["mixture"]
    y_part = y.copy()
    y_part[::2] = -1
    acc = np.mean(est.predict(x8[1::2]) == y[1::2])
    assert est.score(x8, y_part) == pytest.approx(acc)
    with pytest.raises(ValueError, match="at least one labeled row"):
        est.score(x8[:5], np.full(5, -1))


@pytest.mark.parametrize("model", ["mixture", "gmm"])
def test_sample_gives_images_reproducibly(fitted, model):
    est = fitted[model]
    a = est.sample(6, random_state=3)
    assert a.shape == (6, 784) and a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, est.sample(6, random_state=3))
    assert not np.array_equal(a, est.sample(6, random_state=4))
    one = est.sample(4, component=1, random_state=0)
    assert one.shape == (4, 784)
    with pytest.raises(ValueError, match=r"0\.\.%d" % (est.config_.K - 1)):
        est.sample(2, component=est.config_.K)


def test_random_state_makes_fit_reproducible(digits):
    x8, _, y_semi = digits
    a = MixtureVAEClassifier(**{**TINY, "epochs": 1}, random_state=7).fit(x8[:150], y_semi[:150])
    b = MixtureVAEClassifier(**{**TINY, "epochs": 1}, random_state=7).fit(x8[:150], y_semi[:150])
    c = MixtureVAEClassifier(**{**TINY, "epochs": 1}, random_state=8).fit(x8[:150], y_semi[:150])
    np.testing.assert_array_equal(a.params_.flat, b.params_.flat)
    assert not np.array_equal(a.params_.flat, c.params_.flat)


def test_not_fitted_and_bad_input_errors(fitted, digits):
    x8, y, y_semi = digits
    fresh = MixtureVAEClassifier(**TINY)
    for call in (lambda: fresh.predict(x8[:2]), lambda: fresh.transform(x8[:2]),
                 lambda: fresh.sample(2), lambda: fresh.save("never.npz")):
        with pytest.raises(NotFittedError):
            call()
    nan = x8[:20] / 255.0
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fresh.fit(nan, y_semi[:20])
    with pytest.raises(ValueError, match="784 features"):
        fitted["mixture"].predict(x8[:3, :100])
    with pytest.raises(ValueError, match=r"label 10, outside 0\.\.9"):
        fresh.fit(x8[:20], np.r_[10, y[1:20]])
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        fresh.fit(x8[:20] * 2.0, y[:20])
    with pytest.raises(ValueError, match=r"0\.\.255"):
        fresh.fit(x8[:20].astype(np.int64) + 300, y[:20])
    with pytest.raises(ValueError, match="input_dim = 100"):
        MixtureVAEClassifier(**TINY, input_dim=100).fit(x8[:20], y[:20])
    with pytest.raises(ValueError, match="K = 3"):       # Config.validate's sentence
        MixtureVAEClassifier(**TINY, model="gmm").fit(x8[:20], y[:20])


def test_string_labels_and_minmax_scaling():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5)) * 4.0 + np.repeat([[0.0], [6.0]], 30, axis=0)
    y = np.array(["a"] * 30 + ["b"] * 30, dtype=object)
    y[::3] = -1
    est = MixtureVAEClassifier(**TINY, num_classes=None, scaling="minmax").fit(X, y)
    assert list(est.classes_) == ["a", "b"] and set(est.predict(X)) <= {"a", "b"}
    assert (est.data_min_, est.data_max_) == (X.min(), X.max())


def test_preset_fills_only_the_settings_left_at_their_defaults(digits):
    x8, _, y_semi = digits
    est = MixtureVAEClassifier(preset="ssl", hidden_dims=(16,), decoder_dims=(16,), epochs=1,
                               labeled_per_batch=4, latent_dim=3)
    est.fit(x8[:100], y_semi[:100])
    cfg = est.config_
    ssl = presets.load("ssl")
    assert (cfg.model, cfg.w_cls, cfg.aug_rotate) == \
        ("gmm", ssl["w_cls"], ssl["aug_rotate"])                          # from the preset
    assert (cfg.hidden_dims, cfg.epochs, cfg.latent_dim, cfg.labeled_per_batch) == \
        ((16,), 1, 3, 4)                                                   # given here
    assert cfg.aug_side == 28 and cfg.pixels("aug_shift") == ssl["aug_shift"]  # at side 28
    with pytest.raises(ValueError, match="5 pixels are not a square: give image_shape"):
        clone(est).fit(np.random.default_rng(0).random((20, 5)), y_semi[:20])  # warps


def _small_images(rng, n, H, W, C, classes=3):
    """n images of C x H x W values per row (channel after channel): class k a bright
    square in one of three places, the same in every channel, plus noise; 12 labels."""
    x = 0.2 * rng.random((n, C, H, W))
    y = np.arange(n) % classes
    for i, k in enumerate(y):
        x[i, :, k * H // 4:k * H // 4 + H // 2, k * W // 4:k * W // 4 + W // 2] += 0.7
    y_semi = np.where(np.arange(n) < 12, y, -1)
    return x.reshape(n, -1), y, y_semi


def test_small_grey_images_with_warps_and_consistency():
    """64 columns are 8 x 8 grey images: the ssl-cons preset's warps, cutout and consistency
    run on them, their pixel sizes scaled from side 28 to side 8 (aug_side 28)."""
    rng = np.random.default_rng(0)
    x, y, y_semi = _small_images(rng, 60, 8, 8, 1)
    est = MixtureVAEClassifier(preset="ssl-cons", num_classes=None, hidden_dims=(16,),
                               decoder_dims=(16,), latent_dim=3, epochs=2, batch_size=20,
                               labeled_per_batch=4, warmup_epochs=0, anneal_epochs=0,
                               cons_threshold=0.0)
    est.fit(x, y_semi)
    cfg = est.config_
    assert cfg.shape == (8, 8, 1) and cfg.w_cons > 0 and cfg.aug_side == 28
    assert cfg.cutout_pixels() == 3 and cfg.pixels("strong_shift") == pytest.approx(4 * 8 / 28)
    assert est.predict_proba(x).shape == (60, 3) and np.isfinite(est.history_["train_loss"]).all()


@pytest.mark.parametrize("encoder", ["dense", "conv"])
def test_colour_images_with_image_shape(encoder):
    """(n, 3 8 8) rows of RGB images with image_shape (8, 8, 3): warps, consistency and (conv)
    the convolutional networks read each row as 3 channels of 8 x 8."""
    rng = np.random.default_rng(1)
    x, y, y_semi = _small_images(rng, 60, 8, 8, 3)
    est = MixtureVAEClassifier(model="gmm", num_classes=None, image_shape=(8, 8, 3),
                               encoder=encoder, decoder=encoder, conv_channels=(4, 8),
                               hidden_dims=(16,), decoder_dims=(16,), latent_dim=3, epochs=2,
                               batch_size=20, aug_rotate=10.0, aug_shift=2.0, w_cons=1.0,
                               cons_threshold=0.0, strong_cutout=12, aug_side=28)
    est.fit(x, y_semi)
    assert est.config_.shape == (8, 8, 3) and est.n_features_in_ == 192
    assert est.predict(x).shape == (60,) and est.sample(2).shape == (2, 192)
    if encoder == "conv":
        assert est.params_["enc_conv0.W"].shape == (4, 3, 3, 3)
    with pytest.raises(ValueError, match=r"image_shape = \(8, 8, 3\) makes 192 values per "
                                         r"image, but X has 64 columns"):
        clone(est).fit(x[:, :64], y_semi)


@pytest.mark.parametrize("model", ["mixture", "gmm"])
def test_save_and_load_give_the_same_model(fitted, digits, tmp_path, model):
    x8, _, _ = digits
    est = fitted[model]
    path = est.save(tmp_path / "m.npz")
    back = MixtureVAEClassifier.load(path)
    assert back.get_params() == est.get_params()
    np.testing.assert_array_equal(back.classes_, est.classes_)
    np.testing.assert_array_equal(back.predict_proba(x8), est.predict_proba(x8))


def test_from_run_reproduces_the_cli_predictions(tmp_path):
    from npvae.training.checkpoint import load_checkpoint
    from npvae.training.data import load_data
    from npvae.runs.runner import main
    from npvae.reporting.summary import model_outputs, predictors

    out = tmp_path / "run"
    assert main(["--num-samples", "300", "--epochs", "1", "--hidden-dims", "16",
                 "--decoder-dims", "16", "--classifier-dims", "8", "--out", str(out),
                 "--no-progress", "--no-resume-point"]) == 0
    est = MixtureVAEClassifier.from_run(out)
    params, cfg = load_checkpoint(out / "checkpoints" / "final.npz")
    x, y, splits = load_data(cfg)
    head = predictors(params, cfg, model_outputs(params, x, cfg), y)["classifier head"]
    np.testing.assert_array_equal(est.predict_proba(x), head)         # exactly, every image
    x8 = np.rint(x * 255).astype(np.uint8)                            # as grey levels: the same
    np.testing.assert_array_equal(est.predict_proba(x8), head)
    summary = json.loads((out / "summary.json").read_text())
    val = splits.val
    assert est.score(x[val], y[val]) == summary["heldout_accuracy"]["classifier head"]
    assert est.score(x[val], y[val]) == summary["val_accuracy"]
    assert est.get_params()["hidden_dims"] == (16,) and est.n_features_in_ == 784


def test_pipeline_cross_val_score_and_grid_search(digits):
    x8, y, y_semi = digits
    X, Y = x8[:150], y_semi[:150].copy()
    Y[:60] = y[:60]                                 # every fold has labeled rows to score
    pipe = make_pipeline(FunctionTransformer(lambda a: a / 255.0),
                         MixtureVAEClassifier(**{**TINY, "epochs": 1}))
    scores = cross_val_score(pipe, X, Y, cv=2)
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))
    grid = GridSearchCV(MixtureVAEClassifier(**{**TINY, "epochs": 1}), {"K": [2, 3]}, cv=2)
    grid.fit(X, Y)
    assert grid.best_params_["K"] in (2, 3) and grid.best_estimator_.config_.K in (2, 3)
    assert len(grid.cv_results_["mean_test_score"]) == 2
