"""Model gmm (npvae/core/gmm.py): its layers, every loss term's gradient, what the numbers mean,
the fast engine against the readable path, the augmentation and the staged schedule.

Gradient checks as in test_gradients.py: float64 central differences with the noise frozen,
each term alone (the other weights 0) and the total, batches with no labeled row, one and
several, every entry of every array of a small model; relative error at most 1e-6.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from npvae.core import layers as L
from npvae.core import gmm
from npvae.engine import kernels
from npvae.engine.augment import affine_matrices, augment
from npvae.core.config import Config, ConfigError
from npvae.engine.gmm import GMMEngine
from npvae.core.model import evaluate, loss_and_grads, responsibilities
from npvae.core.noise import draw_noise
from npvae.core.params import Layout, init_params
from npvae.training.loop import _scheduled, fit

from conftest import LABEL_CASES, check_engine, check_layer, make_batch, numerical_grad, perturb, rel_err

TOL = 1e-6
WEIGHTS = {"recon": "w_rec", "kl_z": "w_kl", "kl_c": "w_klc", "dirichlet": "w_dir",
           "diversity": "w_div", "cls": "w_cls"}


def gmm_config(**overrides) -> Config:
    """A small gmm model, every weight non-zero (w_dir, w_div too) so every path is used."""
    base = dict(model="gmm", input_dim=12, hidden_dims=(8, 6), decoder_dims=(7, 9),
                latent_dim=3, K=4, num_classes=4, dtype="float64", w_kl=0.7, w_klc=0.9,
                w_dir=0.4, w_div=-0.3, w_cls=2.0)
    return Config(**{**base, **overrides}).validate()


def setup(labels: str, seed: int = 0):
    rng = np.random.default_rng([seed, LABEL_CASES.index(labels)])
    cfg = gmm_config()
    p = init_params(cfg, rng)
    perturb(p, rng, 0.5)
    x, y = make_batch(cfg, 6, labels, rng)
    return cfg, p, x, y, draw_noise(cfg, 6, rng)


# ------------------------------------------------------------------------ layers
@pytest.mark.parametrize("pair,shapes,wrt", [
    ((L.log_softmax_forward, L.log_softmax_backward), [(5, 4)], [0]),
    ((L.gauss_logpdf_mix_forward, L.gauss_logpdf_mix_backward), [(5, 3), (4, 3), (4, 3)],
     [0, 1, 2]),
    ((L.gauss_kl_mix_forward, L.gauss_kl_mix_backward), [(5, 3), (5, 3), (4, 3), (4, 3)],
     [0, 1, 2, 3]),
])
def test_new_layers_gradients(pair, shapes, wrt):
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal(s) for s in shapes]
    assert max(check_layer(*pair, inputs, wrt, rng)) < 1e-7


def test_logpdf_matches_scipy():
    rng = np.random.default_rng(2)
    z, m, v = rng.standard_normal((5, 3)), rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    out, _ = L.gauss_logpdf_mix_forward(z, m, v)
    ref = np.stack([multivariate_normal(m[c], np.diag(np.exp(v[c]))).logpdf(z)
                    for c in range(4)], axis=1)
    np.testing.assert_allclose(out, ref, rtol=1e-12)


def test_kl_mix_matches_monte_carlo():
    """KL(N(mu, e^lv) || N(m_c, e^v_c)) = E_q[log q(z) - log p(z|c)], 200k samples."""
    rng = np.random.default_rng(3)
    mu, lv = rng.standard_normal((1, 2)), 0.5 * rng.standard_normal((1, 2))
    m, v = rng.standard_normal((3, 2)), 0.5 * rng.standard_normal((3, 2))
    kl, _ = L.gauss_kl_mix_forward(mu, lv, m, v)
    z = mu + np.exp(lv / 2) * rng.standard_normal((200_000, 2))
    logq = multivariate_normal(mu[0], np.diag(np.exp(lv[0]))).logpdf(z)
    logp = L.gauss_logpdf_mix_forward(z, m, v)[0]                        # (N, 3)
    mc = (logq[:, None] - logp).mean(axis=0)
    np.testing.assert_allclose(kl[0], mc, rtol=3e-3)
    assert np.all(kl >= 0)
    same, _ = L.gauss_kl_mix_forward(m[:1], v[:1], m[:1], v[:1])
    assert abs(same[0, 0]) < 1e-12                                       # KL(p || p) = 0


# --------------------------------------------------------- the loss's gradient
@pytest.mark.parametrize("labels", LABEL_CASES)
@pytest.mark.parametrize("term", tuple(WEIGHTS) + ("total",))
def test_gradient_of_each_term(term, labels):
    cfg, p, x, y, noise = setup(labels)
    if term != "total":
        cfg = cfg.replace(**{w: 0.0 for t, w in WEIGHTS.items() if t != term})
    loss, g, terms = loss_and_grads(p, x, y, noise, cfg)
    assert loss == pytest.approx(sum(terms.values()))
    num = numerical_grad(lambda: gmm.forward(p, x, y, cfg, noise)[0], p.flat, h=1e-5)
    worst = {n: rel_err(g[n].ravel(), num[o:o + g[n].size])
             for n, o in zip(p.layout.names, p.layout.offsets)}
    assert max(worst.values()) < TOL, worst


@pytest.mark.parametrize("labels", LABEL_CASES)
def test_gradient_eval_mode(labels):
    cfg, p, x, y, _ = setup(labels)
    fwd = lambda: gmm.forward(p, x, y, cfg, None)[0]                        # noqa: E731
    _, _, _, cache = gmm.forward(p, x, y, cfg, None)
    g = gmm.backward(p, cache, cfg)
    assert rel_err(g.flat, numerical_grad(fwd, p.flat, h=1e-5)) < TOL


# ------------------------------------------------------------- what it means
def test_responsibilities_are_bayes_rule():
    """q(c|x) = pi_c N(mu; m_c, e^v_c) / sum_c' (...), computed here with scipy."""
    cfg, p, x, _, _ = setup("none")
    q, mu, logits = responsibilities(p, x, cfg)
    pi = np.exp(L.log_softmax(p["pi_logits"]))
    dens = np.stack([pi[c] * multivariate_normal(p["prior_mu"][c], np.diag(np.exp(
        p["prior_lv"][c]))).pdf(mu) for c in range(cfg.K)], axis=1)
    np.testing.assert_allclose(q, dens / dens.sum(axis=1, keepdims=True), rtol=1e-10)
    np.testing.assert_allclose(np.exp(L.log_softmax(logits)), q, rtol=1e-12)


def test_labeled_rows_use_their_class():
    """A labeled row's posterior is onehot(y): its KL_c is -log pi_y, its KL_z the KL to
    component y alone, and the loss does not depend on its q (no gradient through it)."""
    cfg, p, x, _, _ = setup("none")
    y = np.array([2, -1, -1, -1, -1, -1])
    mu, lv, _ = gmm.encoder_forward(p, x, cfg)
    sums, q, _, pi, _ = gmm.latent_forward(p, mu, lv, mu, y, cfg.replace(w_kl=0.0))
    sums_unl, *_ = gmm.latent_forward(p, mu[1:], lv[1:], mu[1:], y[1:], cfg.replace(w_kl=0.0))
    assert sums["kl_c"] - sums_unl["kl_c"] == pytest.approx(-cfg.w_klc * np.log(pi[2]))
    kl = L.gauss_kl_mix_forward(mu[:1], lv[:1], p["prior_mu"], p["prior_lv"])[0][0, 2]
    only_kl = cfg.replace(w_klc=0.0, w_dir=0.0, w_div=0.0, w_cls=0.0)
    s1 = gmm.latent_forward(p, mu[:1], lv[:1], mu[:1], y[:1], only_kl)[0]["kl_z"]
    assert s1 == pytest.approx(cfg.w_kl * kl)


def test_cls_term_is_cross_entropy_of_q():
    cfg, p, x, _, _ = setup("none")
    y = np.array([0, 3, -1, -1, 1, -1])
    out, terms = evaluate(p, x, cfg, y)
    rows = y >= 0
    ce = -np.log(out.q[rows, y[rows]]).mean()
    assert terms["cls"] == pytest.approx(cfg.w_cls * ce, rel=1e-12)


def test_negative_elbo_at_init_is_recon_plus_kls():
    """With w_rec = w_kl = w_klc = 1 and no other term the loss is the negative ELBO; at
    initialisation (decoder logits near 0) the reconstruction is near D ln 2."""
    cfg = gmm_config(w_dir=0.0, w_div=0.0, w_cls=0.0, w_kl=1.0, w_klc=1.0)
    rng = np.random.default_rng(5)
    p = init_params(cfg, rng)
    x = np.full((6, cfg.input_dim), 0.5)
    _, terms = evaluate(p, x, cfg)
    assert terms["recon"] == pytest.approx(cfg.input_dim * np.log(2), rel=0.2)
    assert terms["kl_z"] > 0 and terms["kl_c"] >= -1e-12
    assert terms["dirichlet"] == terms["diversity"] == terms["cls"] == 0.0


# -------------------------------------------------------- fast engine parity
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("labels", LABEL_CASES)
def test_fast_engine_matches_readable_float64(labels, threads):
    cfg, p, x, y, noise = setup(labels)
    check_engine(GMMEngine(cfg, threads=threads), p, x, y, noise, cfg)


def test_fast_engine_float32_close():
    cfg, p, x, y, noise = setup("several")
    cfg32 = cfg.replace(dtype="float32")
    p32 = p.astype(np.float32)
    n32 = type(noise)(noise.eps.astype(np.float32), ())
    loss, g, _ = loss_and_grads(p, x, y, noise, cfg)
    g2 = p32.zeros_like()
    loss2, _ = GMMEngine(cfg32).loss_and_grads(p32, x.astype(np.float32), y, n32, g2)
    assert loss2 == pytest.approx(loss, rel=1e-5)
    assert rel_err(g.flat, g2.flat) < 1e-4


# -------------------------------------------------------------- augmentation
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_warp_kernel_matches_numpy_twin(dtype):
    rng = np.random.default_rng(6)
    cfg = Config(aug_rotate=30, aug_scale=0.2, aug_shift=3)
    x = rng.random((7, 784))
    A = affine_matrices(rng.uniform(-1, 1, (7, 4)), cfg)
    a, b = np.empty_like(x), np.empty_like(x)
    kernels.warp(x, A, 28, 28, a)
    kernels.warp_np(x, A, 28, 28, b)
    np.testing.assert_allclose(a, b, atol=1e-12)
    out = augment(x.astype(dtype), rng.uniform(-1, 1, (7, 4)), cfg)
    assert out.dtype == dtype and out.min() >= 0 and out.max() <= 1


def test_augment_identity_shift_and_rotation():
    rng = np.random.default_rng(7)
    x = rng.random((1, 784))
    cfg = Config(aug_rotate=90, aug_scale=0.5, aug_shift=2)
    same = augment(x, np.zeros((1, 4)), cfg)
    np.testing.assert_allclose(same, x, atol=1e-12)
    right = augment(x, np.array([[0.0, 0.0, 0.5, 0.0]]), cfg)            # 1 px to the right
    im, out = x.reshape(28, 28), right.reshape(28, 28)
    np.testing.assert_allclose(out[:, 1:], im[:, :-1], atol=1e-12)
    assert np.all(out[:, 0] == 0)
    quarter = augment(x, np.array([[1.0, 0.0, 0.0, 0.0]]), cfg).reshape(28, 28)  # 90 degrees
    assert np.allclose(quarter, np.rot90(im, k=1), atol=1e-9) or \
        np.allclose(quarter, np.rot90(im, k=-1), atol=1e-9)


def test_augment_colour_images_every_channel_alike():
    """8 x 12 RGB images (rows channel after channel): a 1-pixel shift to the right moves
    each channel as a grey image of its own moves, a 90-degree turn about the centre of a
    square one turns each channel, and the identity keeps the image."""
    rng = np.random.default_rng(8)
    H, W, C = 8, 12, 3
    x = rng.random((2, C * H * W))
    cfg = Config(input_dim=C * H * W, image_shape=(H, W, C), aug_rotate=90, aug_shift=2)
    np.testing.assert_allclose(augment(x, np.zeros((2, 4)), cfg), x, atol=1e-12)
    right = augment(x, np.array([[0.0, 0.0, 0.5, 0.0]] * 2), cfg).reshape(2, C, H, W)
    im = x.reshape(2, C, H, W)
    np.testing.assert_allclose(right[..., 1:], im[..., :-1], atol=1e-12)
    assert np.all(right[..., 0] == 0)
    grey = Config(input_dim=H * W, image_shape=(H, W), aug_rotate=30, aug_scale=0.2,
                  aug_shift=2)
    u = rng.uniform(-1, 1, (2, 4))
    each = [augment(np.ascontiguousarray(im[:, c].reshape(2, H * W)), u, grey)
            for c in range(C)]
    np.testing.assert_array_equal(augment(x, u, cfg.replace(aug_scale=0.2, aug_rotate=30))
                                  .reshape(2, C, H * W), np.stack(each, axis=1))
    S = 6
    sq = rng.random((1, C * S * S))
    quarter = augment(sq, np.array([[1.0, 0.0, 0.0, 0.0]]),
                      Config(input_dim=C * S * S, image_shape=(S, S, C), aug_rotate=90))
    turned = [np.rot90(sq.reshape(C, S, S), k=k, axes=(1, 2)) for k in (1, -1)]
    assert any(np.allclose(quarter.reshape(C, S, S), t, atol=1e-9) for t in turned)


def test_augment_needs_the_shape():
    """A row length that is not the configured images' is refused."""
    with pytest.raises(ValueError, match="have 192 values, but the rows hold 64"):
        augment(np.zeros((1, 64)), np.zeros((1, 4)),
                Config(input_dim=192, image_shape=(8, 8, 3), aug_shift=1))


# ------------------------------------------------------- schedule and config
def test_kl_schedule():
    cfg = Config(warmup_epochs=2, anneal_epochs=4)
    assert [cfg.kl_scale(e) for e in range(1, 8)] == [0, 0, 0.25, 0.5, 0.75, 1, 1]
    assert Config().kl_scale(1) == 1.0 and _scheduled(Config(), 1) == Config()
    s = _scheduled(cfg.replace(w_kl=0.5, w_klc=0.2), 4)
    assert (s.w_kl, s.w_klc, s.w_rec) == (0.25, 0.1, 1.0)


def test_config_checks():
    with pytest.raises(ConfigError, match="K must equal num_classes"):
        Config(model="gmm", K=5).validate()
    with pytest.raises(ConfigError, match="model"):
        Config(model="vade").validate()
    with pytest.raises(ConfigError, match="labeled_per_batch"):
        Config(labeled_per_batch=-1).validate()
    with pytest.raises(ConfigError, match="staged KL schedule is part of model gmm"):
        Config(warmup_epochs=3).validate()
    names = Layout.from_config(gmm_config()).names
    assert "prior_mu" in names and "embed" not in names and "enc_c.W" not in names


def test_default_noise_draws_unchanged():
    """The seed's model draws eps then the dropout masks and nothing else: the new
    augmentation draws exist only when a config augments."""
    cfg = Config(dtype="float64")
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    n = draw_noise(cfg, 5, a)
    assert np.array_equal(n.eps, b.standard_normal((5, cfg.latent_dim))) and n.aug is None
    for mask, width in zip(n.masks, cfg.classifier_dims, strict=True):
        assert np.array_equal(mask, (b.random((5, width)) < 0.8) / 0.8)
    assert a.random() == b.random()                      # nothing else was drawn


# ------------------------------------------------------------ a tiny training run
def test_tiny_fit_fast_and_reference_agree(digits):
    x, yv, tr, va = digits
    cfg = Config(model="gmm", latent_dim=4, hidden_dims=(32,), decoder_dims=(32,), epochs=3,
                 warmup_epochs=1, anneal_epochs=1, labeled_per_batch=8, aug_rotate=10,
                 aug_shift=1, w_dir=0.0, w_div=0.0, dtype="float64", batch_size=64).validate()
    a = fit(cfg, x, yv, tr, va, progress=False, engine="fast")
    b = fit(cfg, x, yv, tr, va, progress=False, engine="reference")
    assert a.epochs_completed == 3 and not a.diverged
    np.testing.assert_allclose(a.history["train_loss"], b.history["train_loss"], rtol=1e-8)
    assert rel_err(a.params.flat, b.params.flat) < 1e-8
    c = fit(cfg, x, yv, tr, va, progress=False, engine="fast")
    assert np.array_equal(a.params.flat, c.params.flat)                  # same seed, same run
    assert a.history["train_kl_z"][0] > 0                               # eval uses full weights


# ----------------------------------------------------- the ssl preset, end to end
def test_ssl_preset_run_writes_the_report(tmp_path, capsys):
    """`--preset ssl` on 300 digits for 2 epochs (the preset's model, schedule and
    augmentation): the run ends, the report names the prior and the held-out accuracy of
    the components, the 10-D latent is drawn as a PCA projection, every figure exists."""
    import json
    from npvae.runs import runner as run
    from npvae.reporting.plots import FIGURES
    from conftest import write_digits_npz

    data = write_digits_npz(tmp_path / "digits.npz", 300)
    out = tmp_path / "run"
    status = run.main(["--preset", "ssl", "--data", str(data), "--epochs", "2",
                       "--out", str(out), "--no-progress"])
    assert status == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["heldout_accuracy"]) == {"components q(c|x)"}
    assert 0.0 <= summary["heldout_accuracy"]["components q(c|x)"] <= 1.0
    report = (out / "REPORT.md").read_text()
    assert "Gaussian mixture" in report and "Held-out Accuracy: components q(c|x)" in report
    for rel in FIGURES.values():
        assert (out / rel).is_file(), rel
    from npvae.training.checkpoint import load_checkpoint
    p, cfg = load_checkpoint(out / "checkpoints" / "final.npz")
    assert cfg.model == "gmm" and p["prior_mu"].shape == (10, 10)


def test_checkpoints_store_extensions_only_when_set(tmp_path):
    """The default run's checkpoint config has exactly the seed model's settings (so its
    final.npz keeps its bytes); a gmm config keeps every setting it changed, and both load."""
    from npvae.training.checkpoint import load_checkpoint, save_checkpoint
    from npvae.core.config import EXTENSIONS

    assert not set(EXTENSIONS) & set(Config().to_dict(compact=True))
    assert set(Config().to_dict()) - set(Config().to_dict(compact=True)) == set(EXTENSIONS)
    cfg = gmm_config(labeled_per_batch=4, aug_shift=1.0, image_shape=(3, 4))
    compact = cfg.to_dict(compact=True)
    assert compact["model"] == "gmm" and compact["aug_shift"] == 1.0
    assert "aug_rotate" not in compact and "warmup_epochs" not in compact
    for c in (cfg, Config(dtype="float64")):
        p = init_params(c, np.random.default_rng(0))
        save_checkpoint(tmp_path / "c.npz", p, c)
        p2, c2 = load_checkpoint(tmp_path / "c.npz")
        assert c2 == c and np.array_equal(p2.flat, p.flat)
