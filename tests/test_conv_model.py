"""Model gmm with a convolutional encoder and/or decoder (Config.encoder / decoder = "conv",
npvae/core/convnet.py; the engine npvae/engine/gmm.py:GMMEngine).

Gradient checks as in test_gmm.py: float64 central differences of the full loss with the noise
frozen, every weight non-zero, batches with no labeled row and several, every entry of every
array of a small model on 8 x 8 grey images (input_dim 64, conv_channels (2, 3)) and on 8 x 12
RGB ones (image_shape (8, 12, 3), the rows channel after channel); relative error at most 1e-6
per array. Then the engine against the readable path, training end to end (the
library and the command line), the settings' checks, and the default run left as it was.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from npvae.core import convnet, gmm
from npvae.core.config import EXTENSIONS, Config, ConfigError
from npvae.core.model import loss_and_grads
from npvae.core.noise import draw_noise
from npvae.core.params import Layout, fan_in, init_params
from npvae.core.sampling import sample_images
from npvae.engine.gmm import GMMEngine
from npvae.training.loop import evaluate_split, fast_engine, fit

from conftest import check_engine, make_batch, numerical_grad, perturb, rel_err

TOL = 1e-6
NETS = [("conv", "dense"), ("dense", "conv"), ("conv", "conv")]
GREY, RGB = (8, 8, 1), (8, 12, 3)                  # (H, W, C); GREY from input_dim alone


def conv_config(encoder="conv", decoder="conv", shape=GREY, **overrides) -> Config:
    """8 x 8 grey images (or `shape`, e.g. 8 x 12 RGB), two stride-2 layers of 2 and 3
    channels (8 -> 4 -> 2 rows), every loss weight non-zero so that every path of the loss
    is used."""
    base = dict(model="gmm", input_dim=int(np.prod(shape)),
                image_shape=() if shape == GREY else shape, conv_channels=(2, 3),
                hidden_dims=(6,), decoder_dims=(5,), latent_dim=3, K=4, num_classes=4,
                dtype="float64", w_kl=0.7, w_klc=0.9, w_dir=0.4, w_div=-0.3, w_cls=2.0,
                encoder=encoder, decoder=decoder)
    return Config(**{**base, **overrides}).validate()


def setup(encoder, decoder, labels="several", seed=0, rows=5, shape=GREY):
    cfg = conv_config(encoder, decoder, shape)
    rng = np.random.default_rng([seed, NETS.index((encoder, decoder)), shape[2]])
    p = init_params(cfg, rng)
    perturb(p, rng, 0.5)
    x, y = make_batch(cfg, rows, labels, rng)
    return cfg, p, x, y, draw_noise(cfg, rows, rng)


# --------------------------------------------------------- the loss's gradient
@pytest.mark.parametrize("shape", [GREY, RGB])
@pytest.mark.parametrize("labels", ["none", "several"])
@pytest.mark.parametrize("encoder,decoder", NETS)
def test_gradient_of_the_loss(encoder, decoder, labels, shape):
    cfg, p, x, y, noise = setup(encoder, decoder, labels, shape=shape)
    loss, g, terms = loss_and_grads(p, x, y, noise, cfg)
    assert loss == pytest.approx(sum(terms.values()))
    num = numerical_grad(lambda: gmm.forward(p, x, y, cfg, noise)[0], p.flat, h=1e-5)
    worst = {n: rel_err(g[n].ravel(), num[o:o + g[n].size])
             for n, o in zip(p.layout.names, p.layout.offsets)}
    assert any(n.startswith(("enc_conv", "dec_conv")) for n in worst)
    assert max(worst.values()) < TOL, worst


@pytest.mark.parametrize("shape", [GREY, RGB, (16, 8, 3)])
@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_gradient_of_each_network(part, shape):
    """convnet's encoder and decoder alone, with a random upstream gradient: the input's
    gradient and every kernel's and bias's, against central differences of sum(dy * out)."""
    cfg = conv_config("conv", "conv", shape)
    rng = np.random.default_rng([len(part), *shape])
    p = init_params(cfg, rng)
    perturb(p, rng, 0.5)
    forward, backward = ((convnet.encoder_forward, convnet.encoder_backward) if part == "encoder"
                         else (convnet.decoder_forward, convnet.decoder_backward))
    x = rng.random((3, cfg.input_dim if part == "encoder" else convnet.features(cfg)))
    out, cache = forward(p, x, cfg)
    dy = rng.standard_normal(out.shape)
    g = p.zeros_like()
    dx = backward(dy, cache, g)
    scalar = lambda: float(np.sum(dy * forward(p, x, cfg)[0]))          # noqa: E731
    assert rel_err(dx, numerical_grad(scalar, x)) < TOL
    prefix = "enc_conv" if part == "encoder" else "dec_conv"
    names = [n for n in p.layout.names if n.startswith(prefix)]
    assert len(names) == 4
    for n in names:
        assert rel_err(g[n], numerical_grad(scalar, p[n])) < TOL, n


@pytest.mark.parametrize("shape", [GREY, RGB])
def test_gradient_eval_mode(shape):
    cfg, p, x, y, _ = setup("conv", "conv", shape=shape)
    _, _, _, cache = gmm.forward(p, x, y, cfg, None)
    g = gmm.backward(p, cache, cfg)
    num = numerical_grad(lambda: gmm.forward(p, x, y, cfg, None)[0], p.flat, h=1e-5)
    assert rel_err(g.flat, num) < TOL


# ------------------------------------------------------------------- shapes
def test_layout_at_28_by_28():
    """The default channels on MNIST: 1 x 28 x 28 -> 32 x 14 x 14 -> 64 x 7 x 7 = 3136
    features for the trunk; the decoder maps back 3136 -> 64 x 7 x 7 -> 32 x 14 x 14 ->
    1 x 28 x 28."""
    cfg = Config(model="gmm", encoder="conv", decoder="conv").validate()
    shapes = dict(zip(*(lambda lay: (lay.names, lay.shapes))(Layout.from_config(cfg))))
    assert shapes["enc_conv0.W"] == (32, 1, 3, 3) and shapes["enc_conv1.W"] == (64, 32, 3, 3)
    assert shapes["enc_conv0.b"] == (32,) and shapes["enc_conv1.b"] == (64,)
    assert shapes["enc0.W"] == (3136, 256)
    assert shapes["dec2.W"] == (256, 3136)
    assert shapes["dec_conv1.W"] == (64, 32, 3, 3) and shapes["dec_conv1.b"] == (32,)
    assert shapes["dec_conv0.W"] == (32, 1, 3, 3) and shapes["dec_conv0.b"] == (1,)
    p = init_params(cfg, np.random.default_rng(0))
    x = np.random.default_rng(1).random((2, 784))
    feats, _ = convnet.encoder_forward(p, x, cfg)
    logits, _ = gmm.decoder_forward(p, np.zeros((2, cfg.latent_dim)), cfg)
    assert feats.shape == (2, 3136) and logits.shape == (2, 784)


def test_layout_of_colour_images_not_square():
    """32 x 48 RGB images, rows channel after channel: 3 x 32 x 48 -> 32 x 16 x 24 -> 64 x 8 x
    12 = 6144 features; the decoder's last layer makes the 3 channels' logits, and a row's
    first H W values are the red channel, which the encoder reads as channel 0."""
    cfg = Config(model="gmm", encoder="conv", decoder="conv", input_dim=3 * 32 * 48,
                 image_shape=(32, 48, 3)).validate()
    shapes = dict(zip(*(lambda lay: (lay.names, lay.shapes))(Layout.from_config(cfg))))
    assert shapes["enc_conv0.W"] == (32, 3, 3, 3) and shapes["enc0.W"] == (6144, 256)
    assert shapes["dec2.W"] == (256, 6144)
    assert shapes["dec_conv0.W"] == (32, 3, 3, 3) and shapes["dec_conv0.b"] == (3,)
    p = init_params(cfg, np.random.default_rng(0))
    x = np.zeros((2, 3 * 32 * 48))
    x[:, :32 * 48] = np.random.default_rng(1).random(32 * 48)           # red only
    feats, cache = convnet.encoder_forward(p, x, cfg)
    assert feats.shape == (2, 6144)
    first = cache[1][0][0][1]                                            # enc_conv0's columns
    assert first.shape == (2, 3 * 9, 16 * 24) and first[:, 9:].max() == 0 < first[:, :9].max()
    logits, _ = gmm.decoder_forward(p, np.zeros((2, cfg.latent_dim)), cfg)
    assert logits.shape == (2, 3 * 32 * 48)


def test_init_and_weight_decay():
    """Kernels: LeCun normal with their own fan-in (C 9 for a conv, F 9/4 for a transposed one);
    decayed as weights, their biases not."""
    cfg = Config(model="gmm", encoder="conv", decoder="conv", dtype="float64").validate()
    p = init_params(cfg, np.random.default_rng(0))
    assert fan_in("enc_conv1.W", (64, 32, 3, 3)) == 288
    assert fan_in("dec_conv1.W", (64, 32, 3, 3)) == 64 * 9 / 4
    assert p["enc_conv1.W"].std() == pytest.approx(np.sqrt(1 / 288), rel=0.05)
    assert p["dec_conv1.W"].std() == pytest.approx(np.sqrt(4 / (9 * 64)), rel=0.05)
    assert not p["enc_conv0.b"].any() and not p["dec_conv0.b"].any()
    mask = p.layout.decay_mask()
    views = dict(zip(p.layout.names, p.layout.offsets))
    assert mask[views["enc_conv0.W"]] == 1 and mask[views["dec_conv1.W"]] == 1
    assert mask[views["enc_conv0.b"]] == 0 and mask[views["dec_conv0.b"]] == 0


# ------------------------------------------------------- the engine, the readable path
@pytest.mark.parametrize("shape", [GREY, RGB])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("encoder,decoder", NETS)
def test_engine_matches_readable_float64(encoder, decoder, threads, shape):
    cfg, p, x, y, noise = setup(encoder, decoder, rows=7, shape=shape)
    check_engine(GMMEngine(cfg, threads=threads), p, x, y, noise, cfg, steps=2)
    small = cfg.replace(eval_batch_size=3)
    tot, usage = evaluate_split(p, x, y, small)
    tot2, usage2 = GMMEngine(small, threads=threads).evaluate_split(p, x, y)
    assert max(abs(tot[k] - tot2[k]) for k in tot) < 1e-10 * abs(tot["loss"])
    np.testing.assert_allclose(usage2, usage, rtol=1e-12)


@pytest.mark.parametrize("shape", [GREY, RGB])
def test_engine_float32_close(shape):
    cfg, p, x, y, noise = setup("conv", "conv", shape=shape)
    p32 = p.astype(np.float32)
    n32 = type(noise)(noise.eps.astype(np.float32), ())
    loss, g, _ = loss_and_grads(p, x, y, noise, cfg)
    g2 = p32.zeros_like()
    loss2, _ = GMMEngine(cfg.replace(dtype="float32")).loss_and_grads(
        p32, x.astype(np.float32), y, n32, g2)
    assert g2.flat.dtype == np.float32
    assert loss2 == pytest.approx(loss, rel=1e-5)
    assert rel_err(g.flat, g2.flat) < 1e-4


def test_fast_engine_dispatch():
    """One engine runs model gmm, dense or conv, on the fused blocks."""
    from npvae.engine.blocks import FAST
    from npvae.engine.mixture import FastModel
    for enc, dec in (("conv", "dense"), ("dense", "conv"), ("dense", "dense")):
        engine = fast_engine(conv_config(enc, dec))
        assert type(engine) is GMMEngine and engine.ops is FAST
    assert type(fast_engine(Config())) is FastModel


# ---------------------------------------------------------------- training runs
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tiny_fit_learns(digits, dtype):
    """28 x 28 digits through conv layers of 4 and 8 channels: the loss falls, the fast and
    the reference engines agree, images can be sampled from the prior, and a run stopped
    midway resumes to the very same weights."""
    x, yv, tr, va = digits
    cfg = Config(model="gmm", encoder="conv", decoder="conv", conv_channels=(4, 8),
                 latent_dim=4, hidden_dims=(32,), decoder_dims=(32,), epochs=3,
                 labeled_per_batch=8, w_dir=0.0, w_div=0.0, dtype=dtype, batch_size=64,
                 lr=3e-3).validate()
    a = fit(cfg, x, yv, tr, va, progress=False)
    assert a.epochs_completed == 3 and not a.diverged
    loss = a.history["train_loss"]
    assert loss[-1] < loss[0], loss
    assert a.params.flat.dtype == np.dtype(dtype)
    if dtype == "float64":
        b = fit(cfg, x, yv, tr, va, progress=False, engine="reference")
        np.testing.assert_allclose(a.history["train_loss"], b.history["train_loss"], rtol=1e-8)
    images = sample_images(a.params, cfg, 3, 1, np.random.default_rng(0))
    assert images.shape == (3, 784) and 0 <= images.min() and images.max() <= 1
    calls = iter(range(10**6))                       # stop after the 7th step, then resume
    part = fit(cfg, x, yv, tr, va, progress=False, should_stop=lambda: next(calls) == 6)
    rest = fit(cfg, x, yv, tr, va, progress=False, state=part.state)
    assert part.interrupted and np.array_equal(rest.params.flat, a.params.flat)


def test_command_line_run(tmp_path, capsys):
    """python -m npvae.run --model gmm --encoder conv --decoder conv: one epoch on 300
    digits, its report and a checkpoint that keeps the conv settings."""
    from npvae.runs import runner as run
    from npvae.training.checkpoint import load_checkpoint

    from conftest import write_digits_npz

    data = write_digits_npz(tmp_path / "digits.npz", 300)
    out = tmp_path / "run"
    status = run.main(["--model", "gmm", "--encoder", "conv", "--decoder", "conv",
                       "--conv-channels", "4", "8", "--hidden-dims", "32",
                       "--decoder-dims", "32", "--latent-dim", "4", "--epochs", "1",
                       "--data", str(data), "--num-samples", "300", "--out", str(out),
                       "--no-progress"])
    assert status == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert 0.0 <= summary["heldout_accuracy"]["components q(c|x)"] <= 1.0
    assert (out / "REPORT.md").is_file()
    p, cfg = load_checkpoint(out / "checkpoints" / "final.npz")
    assert (cfg.encoder, cfg.decoder, cfg.conv_channels) == ("conv", "conv", (4, 8))
    assert p["enc_conv1.W"].shape == (8, 4, 3, 3)


# ------------------------------------------------------------------- settings
@pytest.mark.parametrize("changes,words", [
    (dict(model="gmm", encoder="cnn"), "encoder = 'cnn' (--encoder) is not allowed: use one of"),
    (dict(model="gmm", decoder="deconv"), "decoder = 'deconv'"),
    (dict(encoder="conv"), "the convolutional networks are part of model gmm"),
    (dict(decoder="conv"), "decoder = 'conv' (--decoder)"),
    (dict(model="gmm", encoder="conv", input_dim=700), "700 pixels are not a square: give "
     "image_shape"),
    (dict(model="gmm", decoder="conv", conv_channels=(8, 8, 8)), "divisible by 2**3 = 8, and "
     "the images are 28 x 28"),
    (dict(model="gmm", encoder="conv", input_dim=3 * 8 * 12, image_shape=(8, 12, 3),
          conv_channels=(2, 3, 4)), "divisible by 2**3 = 8, and the images are 8 x 12"),
    (dict(model="gmm", conv_channels=(8, 0)), "give one or more positive channel counts"),
    (dict(model="gmm", conv_channels=()), "conv_channels = ()"),
])
def test_config_checks(changes, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")
                       .replace("*", r"\*")):
        Config(**changes).validate()


def test_default_run_unchanged():
    """No conv arrays in the default layouts, the new settings left out of the default
    checkpoint's config, and set ones kept."""
    for cfg in (Config(), Config(model="gmm")):
        assert not [n for n in Layout.from_config(cfg).names if "conv" in n]
    assert {"encoder", "decoder", "conv_channels"} <= set(EXTENSIONS)
    assert not {"encoder", "decoder", "conv_channels"} & set(Config().to_dict(compact=True))
    compact = conv_config("conv", "dense").to_dict(compact=True)
    assert compact["encoder"] == "conv" and compact["conv_channels"] == [2, 3]
    assert "decoder" not in compact


def test_estimator_takes_the_settings():
    """MixtureVAEClassifier(model="gmm", encoder="conv", decoder="conv") fits and predicts."""
    from npvae.estimator.classifier import MixtureVAEClassifier

    rng = np.random.default_rng(0)
    x, y = rng.random((40, 64)), np.where(np.arange(40) < 12, np.arange(40) % 4, -1)
    clf = MixtureVAEClassifier(model="gmm", encoder="conv", decoder="conv",
                               conv_channels=(2, 3), num_classes=4, K=4, latent_dim=3,
                               hidden_dims=(8,), decoder_dims=(8,), epochs=2, batch_size=16)
    clf.fit(x, y)
    assert clf.config_.encoder == "conv" and clf.predict_proba(x).shape == (40, 4)
    assert clf.sample(2).shape == (2, 64)
