"""The model computes what the spec says, not only consistent derivatives: each quantity is
compared with an independent formula, a brute-force loop or a Monte Carlo estimate.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from npvae import Config, draw_noise, evaluate, forward, init_params
from npvae.core import layers as L
from npvae.core.params import Layout

from conftest import make_batch, perturb, small_config


# ------------------------------------------------------------- Gaussian latent
def test_reparam_samples_have_mean_mu_and_variance_exp_lv():
    rng = np.random.default_rng(0)
    n = 200_000
    mu, lv = np.array([0.5, -1.0, 2.0]), np.array([-1.0, 0.0, 1.5])
    z, _ = L.reparam_forward(np.tile(mu, (n, 1)), np.tile(lv, (n, 1)),
                             rng.standard_normal((n, 3)))
    sd = np.exp(lv / 2)
    assert np.all(np.abs(z.mean(axis=0) - mu) < 5 * sd / np.sqrt(n))        # 5 standard errors
    assert np.all(np.abs(z.var(axis=0) / np.exp(lv) - 1) < 5 * np.sqrt(2 / n))


def test_gauss_kl_equals_monte_carlo_estimate():
    """KL(q || p) = E_q[log q(z) - log p(z)], q = N(mu, e^lv), p = N(0, I), z from q."""
    rng = np.random.default_rng(1)
    n = 100_000
    mu, lv = np.array([[0.7, -1.2], [0.0, 0.3]]), np.array([[-0.8, 0.4], [1.1, -2.0]])
    kl, _ = L.gauss_kl_forward(mu, lv)
    for row in range(2):
        eps = rng.standard_normal((n, 2))
        z = mu[row] + np.exp(lv[row] / 2) * eps
        log_q = (-0.5 * np.log(2 * np.pi) - 0.5 * lv[row] - 0.5 * eps ** 2).sum(axis=1)
        log_p = (-0.5 * np.log(2 * np.pi) - 0.5 * z ** 2).sum(axis=1)
        diff = log_q - log_p
        assert abs(diff.mean() - kl[row]) < 5 * diff.std() / np.sqrt(n), row


# ------------------------------------------------------------- initial values
@pytest.fixture(scope="module")
def at_init():
    """The default model at initialisation, eval mode, on 512 random images, all labeled.
    Eval mode (z = mu, small at init) is where the classifier is uninformed; a training step
    samples z = mu + eps with |z| ~ 1, which spreads the logits (CE ~ 2.6 at init)."""
    cfg = Config(dtype="float64")
    rng = np.random.default_rng(2)
    p = init_params(cfg, rng)
    x = rng.random((512, cfg.input_dim))
    y = rng.integers(0, cfg.num_classes, 512)
    out, terms = evaluate(p, x, cfg, y)
    return cfg, p, out, terms


def test_classifier_loss_at_init_is_log_num_classes(at_init):
    cfg, _, _, terms = at_init
    assert abs(terms["cls"] - math.log(cfg.num_classes)) < 0.15      # an uninformed guess


def test_usage_entropy_at_init_is_log_k(at_init):
    cfg, _, out, terms = at_init
    usage = out.q.mean(axis=0)
    entropy = -(usage * np.log(usage)).sum()
    assert abs(entropy - math.log(cfg.K)) < 0.05                    # components used evenly
    assert terms["diversity"] == pytest.approx(cfg.w_div * entropy, rel=1e-10)


def test_dirichlet_term_at_init_is_the_spec_constant(at_init):
    """pi_logits = 0 at init, so pi is uniform and L_dir = -4 * 10 * ln 0.1 = 92.103."""
    _, p, out, terms = at_init
    assert not p["pi_logits"].any()
    np.testing.assert_allclose(out.pi, 0.1, rtol=1e-12)
    assert terms["dirichlet"] == pytest.approx(92.103, abs=5e-4)


@pytest.mark.parametrize("K", [3, 10])
def test_dirichlet_with_uniform_pi(K):
    value, _ = L.dirichlet_forward(np.full(K, 1.0 / K), 5.0)
    assert value == pytest.approx(-4 * K * math.log(1.0 / K), rel=1e-12)


# ------------------------------------------------------- loss terms, directly
def test_reconstruction_term_equals_brute_force_loop():
    """L_rec = w_rec / B sum_i sum_k q_ik BCE(x_i, l_ik), BCE with the plain formula
    -sum_d [x log s + (1 - x) log(1 - s)], s = sigmoid(l), one pixel at a time."""
    cfg = small_config(w_rec=2.5)
    rng = np.random.default_rng(3)
    p = init_params(cfg, rng)
    perturb(p, rng, 0.3)
    x, y = make_batch(cfg, 4, "one", rng)
    _, terms, out, _ = forward(p, x, y, cfg, draw_noise(cfg, 4, rng))
    assert np.abs(out.logits).max() < 10, "keep the logits moderate for the plain formula"
    total = 0.0
    for i in range(x.shape[0]):
        for k in range(cfg.K):
            bce = 0.0
            for d in range(cfg.input_dim):
                s = 1.0 / (1.0 + math.exp(-out.logits[i, k, d]))
                bce -= x[i, d] * math.log(s) + (1.0 - x[i, d]) * math.log(1.0 - s)
            total += out.q[i, k] * bce
    assert terms["recon"] == pytest.approx(cfg.w_rec * total / x.shape[0], rel=1e-10)


def test_bce_from_logits_is_stable_for_large_logits():
    value, _ = L.bce_logits_forward(np.array([[-800.0, 800.0]]), np.array([[0.0, 1.0]]))
    assert np.isfinite(value).all() and value[0] == pytest.approx(0.0, abs=1e-300)


def test_categorical_kl_against_direct_formula():
    rng = np.random.default_rng(4)
    q = rng.dirichlet(np.ones(5), size=6)
    pi = rng.dirichlet(np.ones(5))
    value, _ = L.cat_kl_forward(q, pi)
    direct = [sum(q[i, k] * math.log(q[i, k] / pi[k]) for k in range(5)) for i in range(6)]
    np.testing.assert_allclose(value, direct, rtol=1e-12)


def test_model_kl_terms_against_direct_formulas():
    """kl_z and kl_c of the model, recomputed from its own outputs mu, lv, q, pi."""
    cfg = small_config()
    rng = np.random.default_rng(5)
    p = init_params(cfg, rng)
    perturb(p, rng, 0.3)
    x, y = make_batch(cfg, 6, "several", rng)
    _, terms, out, _ = forward(p, x, y, cfg, draw_noise(cfg, 6, rng))
    klz = 0.5 * (out.mu ** 2 + np.exp(out.lv) - 1 - out.lv).sum() / 6
    klc = (out.q * np.log(out.q / out.pi)).sum() / 6
    assert terms["kl_z"] == pytest.approx(cfg.w_kl * klz, rel=1e-12)
    assert terms["kl_c"] == pytest.approx(cfg.w_klc * klc, rel=1e-12)


# ------------------------------------------------------- parameters and init
SPEC_SHAPES = {                                  # spec section 2, K = 10, d = 2
    "enc0.W": (784, 256), "enc0.b": (256,), "enc1.W": (256, 128), "enc1.b": (128,),
    "enc2.W": (128, 64), "enc2.b": (64,),
    "enc_c.W": (64, 10), "enc_c.b": (10,), "enc_mu.W": (64, 2), "enc_mu.b": (2,),
    "enc_lv.W": (64, 2), "enc_lv.b": (2,),
    "pi_logits": (10,), "embed": (10, 8),
    "dec_z.W": (2, 32), "dec_z.b": (32,), "dec_e.W": (8, 32), "dec_e.b": (32,),
    "dec0.W": (64, 128), "dec0.b": (128,), "dec1.W": (128, 256), "dec1.b": (256,),
    "dec2.W": (256, 784), "dec2.b": (784,),
    "cls0.W": (2, 64), "cls0.b": (64,), "cls1.W": (64, 64), "cls1.b": (64,),
    "cls2.W": (64, 10), "cls2.b": (10,),
}


def test_default_parameter_names_shapes_and_count():
    layout = Layout.from_config(Config())
    assert dict(zip(layout.names, layout.shapes)) == SPEC_SHAPES
    assert layout.size == 491_330 == sum(math.prod(s) for s in SPEC_SHAPES.values())


@pytest.fixture(scope="module")
def default_init():
    return init_params(Config(dtype="float64"), np.random.default_rng(6))


def test_lecun_truncated_normal_init(default_init):
    """enc0.W: std sqrt(1/784) (LeCun normal), and N(0,1) cut at +-2 then rescaled by
    std / 0.8796, so no entry exceeds 2 std / 0.8796 (and some come close)."""
    for name, W in default_init.items():
        if not name.endswith(".W"):
            continue
        std = math.sqrt(1.0 / W.shape[0])
        bound = 2 * std / 0.87962566103423978
        assert np.abs(W).max() <= bound * (1 + 1e-12), name
    W = default_init["enc0.W"]
    std = math.sqrt(1.0 / 784)
    assert abs(W.std() / std - 1) < 0.03
    assert abs(W.mean()) < 0.01 * std
    assert np.abs(W).max() > 0.99 * 2 * std / 0.87962566103423978


def test_biases_and_prior_start_at_zero(default_init):
    for name, v in default_init.items():
        if name.endswith(".b") or name == "pi_logits":
            assert not v.any(), name


def test_embedding_init_std():
    p = init_params(Config(K=100, embed_dim=50, dtype="float64"), np.random.default_rng(7))
    assert abs(p["embed"].std() / 0.02 - 1) < 0.05        # 5000 entries: sd of the ratio 1%
    assert abs(p["embed"].mean()) < 0.002


def test_decay_mask_covers_exactly_the_weight_matrices():
    layout = Layout.from_config(Config())
    mask = layout.decay_mask()
    assert mask.shape == (layout.size,) and set(np.unique(mask)) == {0.0, 1.0}
    for name, shape, off in zip(layout.names, layout.shapes, layout.offsets):
        segment = mask[off:off + math.prod(shape)]
        assert np.all(segment == (1.0 if name.endswith(".W") else 0.0)), name
    assert mask.sum() == sum(math.prod(s) for n, s in SPEC_SHAPES.items() if n.endswith(".W"))
