"""The consistency term in model gmm and its training loop (npvae/core/gmm.py:
consistency_forward / backward, npvae/engine/consistency.py, the strong view in
npvae/engine/augment.py, Config.w_cons and friends).

Gradient checks as everywhere: float64 central differences with the target frozen (it is a
constant by definition), every array of a small model, dense and conv encoders, rows both
above and below the threshold; the term alone and the total with the ELBO's terms. Then what
it means (zero when the strong view is the image itself, a step against it lowers it, no
decoder gradient), the threaded engine against the readable path, the strong view, the noise
stream, and training: same seed same run, a stopped run resumes to the same weights, the
default run and the settings' checks.
"""
from __future__ import annotations

import numpy as np
import pytest

from npvae.core import gmm
from npvae.core.config import Config, ConfigError
from npvae.core.noise import draw_noise
from npvae.core.params import init_params
from npvae.engine.augment import augment, strong_view
from npvae.engine.consistency import Consistency
from npvae.engine.gmm import GMMEngine
from npvae.training.loop import fit

from conftest import make_batch, numerical_grad, perturb, rel_err

TOL = 1e-6


def cons_config(encoder="dense", **overrides) -> Config:
    """8 x 8 images (so the conv encoder has two stride-2 layers), every ELBO weight non-zero,
    the consistency term on."""
    base = dict(model="gmm", input_dim=64, conv_channels=(2, 3), hidden_dims=(6,),
                decoder_dims=(5,), latent_dim=3, K=4, num_classes=4, dtype="float64",
                w_kl=0.7, w_klc=0.9, w_dir=0.4, w_div=-0.3, w_cls=2.0, encoder=encoder,
                w_cons=1.7, cons_threshold=0.0, cons_temperature=0.5, strong_cutout=3)
    return Config(**{**base, **overrides}).validate()


def setup(encoder="dense", rows=6, seed=0, **overrides):
    cfg = cons_config(encoder, **overrides)
    rng = np.random.default_rng([seed, encoder == "conv"])
    p = init_params(cfg, rng)
    perturb(p, rng, 1.5)                # confident posteriors: the threshold splits the rows
    x, y = make_batch(cfg, rows, "none", rng)
    xs = strong_view(x, rng.uniform(-1, 1, (rows, 6)), cfg)
    return cfg, p, x, xs, rng


def with_threshold_at_median(cfg, p, x):
    """cfg whose threshold keeps about half the rows, and the frozen target."""
    target = gmm.class_log_posterior(p, x, cfg)
    conf = np.sort(np.exp(target.max(axis=1)))
    cfg = cfg.replace(cons_threshold=float(conf[len(conf) // 2]))
    return cfg, target


# ------------------------------------------------------------- gradient checks
@pytest.mark.parametrize("encoder", ["dense", "conv"])
@pytest.mark.parametrize("T", [0.0, 0.5, 1.0])
def test_gradient_of_the_term(encoder, T):
    cfg, p, x, xs, _ = setup(encoder, cons_temperature=T)
    cfg, target = with_threshold_at_median(cfg, p, x)
    loss, confident, cache = gmm.consistency_forward(p, target, xs, cfg)
    assert 0 < confident < x.shape[0]              # both kinds of rows are checked
    g = p.zeros_like()
    gmm.consistency_backward(cache, g)
    num = numerical_grad(lambda: gmm.consistency_forward(p, target, xs, cfg)[0], p.flat, h=1e-5)
    for name, off in zip(p.layout.names, p.layout.offsets):
        n = num[off:off + g[name].size]
        if name.startswith("dec"):                 # the term never reaches the decoder
            assert not g[name].any() and np.abs(n).max() < 1e-9, name
        else:
            assert rel_err(g[name].ravel(), n) < TOL, (name, rel_err(g[name].ravel(), n))
    assert loss > 0


@pytest.mark.parametrize("encoder", ["dense", "conv"])
def test_gradient_of_the_total(encoder):
    """The ELBO's terms on a labeled batch plus the consistency term on its unlabeled rows:
    what a training step adds up."""
    cfg, p, _, _, rng = setup(encoder)
    x, y = make_batch(cfg, 6, "several", rng)
    noise = draw_noise(cfg, 6, rng)
    rows = y < 0
    target = gmm.class_log_posterior(p, x[rows], cfg)
    xs = strong_view(x[rows], noise.strong[rows], cfg)

    def total():
        return (gmm.forward(p, x, y, cfg, noise)[0]
                + gmm.consistency_forward(p, target, xs, cfg)[0])

    _, _, _, cache = gmm.forward(p, x, y, cfg, noise)
    g = gmm.backward(p, cache, cfg)
    gc = p.zeros_like()
    gmm.consistency_backward(gmm.consistency_forward(p, target, xs, cfg)[2], gc)
    assert rel_err(g.flat + gc.flat, numerical_grad(total, p.flat, h=1e-5)) < TOL


# ------------------------------------------------------------------- meaning
def test_zero_when_the_strong_view_is_the_image():
    """No warp, no cutout and T = 1: the target is q itself, so KL(q || q) = 0 and the
    gradient vanishes."""
    cfg, p, x, _, _ = setup(cons_temperature=1.0)
    target = gmm.class_log_posterior(p, x, cfg)
    loss, confident, cache = gmm.consistency_forward(p, target, x, cfg)
    g = p.zeros_like()
    gmm.consistency_backward(cache, g)
    assert confident == x.shape[0]
    assert abs(loss) < 1e-12 and np.abs(g.flat).max() < 1e-12


def test_a_step_against_the_gradient_lowers_it():
    cfg, p, x, xs, _ = setup(cons_temperature=0.0)
    target = gmm.class_log_posterior(p, x, cfg)
    loss, _, cache = gmm.consistency_forward(p, target, xs, cfg)
    g = p.zeros_like()
    gmm.consistency_backward(cache, g)
    p.flat -= 1e-3 * g.flat / np.linalg.norm(g.flat)
    assert gmm.consistency_forward(p, target, xs, cfg)[0] < loss


def test_fixmatch_at_T_0_is_the_pseudo_label_cross_entropy():
    cfg, p, x, xs, _ = setup(cons_temperature=0.0, cons_threshold=0.0)
    target = gmm.class_log_posterior(p, x, cfg)
    loss, _, _ = gmm.consistency_forward(p, target, xs, cfg)
    lq = gmm.class_log_posterior(p, xs, cfg)
    ce = -lq[np.arange(x.shape[0]), target.argmax(axis=1)].mean()
    assert loss == pytest.approx(cfg.w_cons * ce, rel=1e-12)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("encoder", ["dense", "conv"])
def test_engine_matches_the_readable_path(encoder, threads):
    """engine/consistency.py on T threads: the readable term, its gradient added to what g
    held, in float64 to 1e-10."""
    cfg, p, x, _, rng = setup(encoder, rows=7)
    cfg, target = with_threshold_at_median(cfg, p, x)
    u = rng.uniform(-1, 1, (7, 6))
    loss, confident, cache = gmm.consistency_forward(p, target, strong_view(x, u, cfg), cfg)
    g = p.zeros_like()
    gmm.consistency_backward(cache, g)
    held = rng.standard_normal(p.flat.shape)
    g2 = p.zeros_like()
    g2.flat[:] = held
    loss2, share = Consistency(GMMEngine(cfg, threads)).loss_and_grads(p, x, u, g2)
    assert loss2 == pytest.approx(loss, rel=1e-10) and share == confident / 7
    assert rel_err(g2.flat - held, g.flat) < 1e-10


def test_strong_view():
    """The warp of the strong ranges, then a zero square of side strong_cutout placed by
    u[:, 4:6] (clipped at the border); u = 0 with no cutout is the image itself."""
    cfg = Config(model="gmm", w_cons=1.0, strong_cutout=6)
    rng = np.random.default_rng(3)
    x = rng.random((5, 784)) + 0.5                       # no zero pixel of its own
    u = rng.uniform(-1, 1, (5, 6))
    u[:, :4] = 0                                         # identity warp
    out = strong_view(x, u, cfg).reshape(5, 28, 28)
    for i in range(5):
        zero = np.argwhere(out[i] == 0)
        top, left = np.floor((u[i, 4:6] + 1) / 2 * 28 - 3).astype(int)
        rows = range(max(top, 0), min(top + 6, 28))
        cols = range(max(left, 0), min(left + 6, 28))
        assert len(zero) == len(rows) * len(cols)
        assert set(map(tuple, zero)) == {(r, c) for r in rows for c in cols}
        keep = out[i] != 0
        np.testing.assert_array_equal(out[i][keep], x[i].reshape(28, 28)[keep])
    u = rng.uniform(-1, 1, (5, 6))                       # the warp is augment's, strong ranges
    warped = strong_view(x, u, cfg.replace(strong_cutout=0))
    np.testing.assert_array_equal(warped, augment(x, u[:, :4], cfg.replace(
        aug_rotate=cfg.strong_rotate, aug_scale=cfg.strong_scale, aug_shift=cfg.strong_shift)))


def test_strong_view_colour_not_square():
    """On 6 x 10 RGB images the cutout is the same square in every channel, its centre drawn
    over the rows by u[:, 4] and over the columns by u[:, 5]; and aug_side scales it with the
    shorter side (5 pixels given for side 12 are 2.5, rounded to 2, at side 6)."""
    H, W, C = 6, 10, 3
    cfg = Config(model="gmm", input_dim=C * H * W, image_shape=(H, W, C), w_cons=1.0,
                 strong_cutout=5, aug_side=12)
    assert cfg.cutout_pixels() == 2 and cfg.replace(aug_side=None).cutout_pixels() == 5
    rng = np.random.default_rng(4)
    x = rng.random((6, C * H * W)) + 0.5
    u = rng.uniform(-1, 1, (6, 6))
    u[:, :4] = 0
    out = strong_view(x, u, cfg).reshape(6, C, H, W)
    for i in range(6):
        top = int(np.floor((u[i, 4] + 1) / 2 * H - 1))
        left = int(np.floor((u[i, 5] + 1) / 2 * W - 1))
        square = np.zeros((H, W), bool)
        square[max(top, 0):max(top + 2, 0), max(left, 0):max(left + 2, 0)] = True
        for c in range(C):
            np.testing.assert_array_equal(out[i, c] == 0, square)
        np.testing.assert_array_equal(out[i][:, ~square], x[i].reshape(C, H, W)[:, ~square])


def test_noise_stream_unchanged_without_the_term():
    """The strong draws come last: eps and the augmentation draws are those of a run without
    the term, and a run without it draws none."""
    cfg = Config(model="gmm", latent_dim=10, aug_rotate=15.0)
    a = draw_noise(cfg, 9, np.random.default_rng(5))
    b = draw_noise(cfg.replace(w_cons=1.0), 9, np.random.default_rng(5))
    assert a.strong is None and b.strong.shape == (9, 6)
    np.testing.assert_array_equal(a.eps, b.eps)
    np.testing.assert_array_equal(a.aug, b.aug)


# ------------------------------------------------------------------ training
def tiny(digits, **changes):
    x, yv, tr, va = digits
    base = dict(model="gmm", latent_dim=4, hidden_dims=(32,), decoder_dims=(32,), epochs=2,
                batch_size=64, labeled_per_batch=8, w_cons=1.0, cons_threshold=0.5,
                aug_rotate=10.0)
    cfg = Config(**{**base, **changes}).validate()
    return cfg, (x, yv, tr, va)


def test_same_seed_same_run_and_resume(digits):
    cfg, data = tiny(digits)
    a = fit(cfg, *data, progress=False)
    b = fit(cfg, *data, progress=False)
    np.testing.assert_array_equal(a.params.flat, b.params.flat)
    calls = iter(range(10**6))
    stopped = fit(cfg, *data, progress=False, should_stop=lambda: next(calls) == 3)
    assert stopped.interrupted
    c = fit(cfg, *data, progress=False, state=stopped.state)
    np.testing.assert_array_equal(a.params.flat, c.params.flat)
    d = fit(cfg.replace(w_cons=0.0), *data, progress=False)    # the term does move the weights
    assert not np.array_equal(a.params.flat, d.params.flat)


def test_reference_engine_takes_the_term_too(digits):
    cfg, data = tiny(digits, dtype="float64", epochs=1)
    a = fit(cfg, *data, progress=False, engine="reference")
    b = fit(cfg, *data, progress=False)
    assert rel_err(a.params.flat, b.params.flat) < 1e-9


@pytest.mark.parametrize("changes,words", [
    (dict(w_cons=1.0), "model gmm"),
    (dict(model="gmm", w_cons=-1.0), "w_cons"),
    (dict(model="gmm", w_cons=1.0, cons_threshold=1.5), "cons_threshold"),
    (dict(model="gmm", w_cons=1.0, cons_temperature=-0.1), "cons_temperature"),
    (dict(model="gmm", w_cons=1.0, strong_cutout=28), "strong_cutout"),
    (dict(model="gmm", w_cons=1.0, strong_shift=20.0), "strong_shift"),
    (dict(model="gmm", w_cons=1.0, input_dim=50), "square"),
    (dict(model="gmm", w_cons=1.0, input_dim=64, aug_side=4), "strong_shift = 4.0 .* it is "
     "8 pixels at the data's side 8, scaled from aug_side 4"),
    (dict(model="gmm", w_cons=1.0, input_dim=64, strong_shift=1.0), "strong_cutout = 12 .* "
     "from 0 to less than the image's \\(8\\)"),
])
def test_config_checks(changes, words):
    with pytest.raises(ConfigError, match=words):
        Config(**changes).validate()


def test_sizes_unused_are_not_checked():
    """The strong view's default sizes (a 4-pixel shift, a 12-pixel square) do not refuse
    small images when the term is off; the ELBO's shift only when it warps."""
    Config(input_dim=4).validate()
    Config(model="gmm", input_dim=4, strong_shift=30.0, strong_cutout=20).validate()
    Config(model="gmm", input_dim=64, aug_rotate=10, strong_shift=30.0).validate()
    with pytest.raises(ConfigError, match="aug_shift"):
        Config(model="gmm", input_dim=4, aug_shift=2.0).validate()


def test_default_config_stores_none_of_it():
    """Checkpoints of runs without the term keep the bytes they had (Config.EXTENSIONS)."""
    assert not {"w_cons", "strong_cutout", "cons_threshold"} & set(Config().to_dict(compact=True))


# ------------------------------------------------------------ the learning-rate decay
def test_cosine_decay_factor():
    cfg = Config(epochs=10, lr_decay="cosine")
    f = [cfg.lr_scale(e) for e in range(1, 12)]
    assert f[0] == 1.0 and f[10] == pytest.approx(0.0, abs=1e-15)      # epoch epochs + 1
    assert f[5] == pytest.approx(0.5) and all(a > b for a, b in zip(f, f[1:]))
    assert all(Config(epochs=10).lr_scale(e) == 1.0 for e in range(1, 12))


def test_cosine_decay_is_the_learning_rate_of_each_epoch(digits):
    """Two epochs with the decay = epoch 1 at lr, then (resumed) epoch 2 at lr / 2."""
    cfg, data = tiny(digits, lr_decay="cosine")
    whole = fit(cfg, *data, progress=False)
    states: list = []
    first = fit(cfg.replace(lr_decay="none"), *data, progress=False,
                on_epoch_end=lambda s: states.append(s), should_stop=lambda: bool(states))
    assert first.interrupted and states[0].epoch == 2
    second = fit(cfg.replace(lr_decay="none", lr=cfg.lr * 0.5), *data, progress=False,
                 state=first.state)
    np.testing.assert_array_equal(whole.params.flat, second.params.flat)
    with pytest.raises(ConfigError, match="lr_decay"):
        Config(lr_decay="linear").validate()


def test_preset_ssl_cons_is_ssl_plus_the_new_settings():
    """What its file's comment says: preset ssl's model and training, plus consistency,
    balanced class use and a longer run; and the ablation files differ from it in one key."""
    from pathlib import Path

    from npvae.training import presets
    from npvae.training.tomlfile import read_toml

    ssl, cons = presets.load("ssl"), presets.load("ssl-cons")
    label = {"name", "description", "tags", "epochs", "patience"}
    assert {k: v for k, v in ssl.items() if k not in label | {"w_div"}} == \
        {k: cons[k] for k in ssl if k not in label | {"w_div"}}
    assert cons["w_cons"] > 0 and cons["w_div"] < 0 and cons["epochs"] > ssl["epochs"]
    Config.from_dict(cons).validate()
    folder = Path(__file__).resolve().parents[1] / "benchmarks" / "ablation"
    for path in sorted(folder.glob("*.toml")):
        variant = read_toml(path)
        changed = {k for k in cons if k not in label and variant[k] != cons[k]}
        assert len(changed) == 1 and set(variant) == set(cons), (path.name, changed)
