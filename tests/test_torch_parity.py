"""npvae against an independent PyTorch implementation (benchmarks/torch_ref.py), float64.

Same weights, same batch, same frozen noise: the loss, every weighted term and every
parameter gradient must agree, the gradients coming from npvae's hand-written backward on
one side and from autograd on the other. Then one AdamW step from the same state must give
the same parameters. Skipped when torch is absent (CI does not install it).
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from npvae import (AdamState, Config, adamw_step, backward, draw_noise, forward,  # noqa: E402
                   init_params)
from benchmarks.torch_ref import (TERMS, TorchVAE, load_npvae_params,  # noqa: E402
                                  make_optimizer, to_npvae_params, torch_loss, train_step)
from conftest import LABEL_CASES, make_batch, perturb, rel_err, small_config  # noqa: E402

LOSS_TOL = 1e-10     # relative, loss and each term
GRAD_TOL = 1e-8      # rel_err per parameter array (see conftest)
STEP_TOL = 1e-12     # absolute, parameters after AdamW (they are O(1))
CONFIGS = {"small": small_config, "full": lambda **kw: Config(dtype="float64", **kw).validate()}
BATCH = {"small": 9, "full": 16}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These batches are tiny: a second intra-op thread only adds wake-up latency (tens of
    ms per op when the cores are busy), so run torch single-threaded and restore after."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def setup(cfg_name: str, seed: int, **overrides):
    cfg = CONFIGS[cfg_name](**overrides)
    rng = np.random.default_rng(seed)
    p = init_params(cfg, rng)
    perturb(p, rng)
    return cfg, p, rng


def torch_model(cfg: Config, p) -> TorchVAE:
    return load_npvae_params(TorchVAE(cfg).to(torch.float64), p)


def compare(cfg, p, x, y, noise):
    """Loss, terms and gradients of both implementations; noise None means eval mode."""
    loss_n, terms_n, _, cache = forward(p, x, y, cfg, noise)
    grads_n = backward(p, cache, cfg)
    module = torch_model(cfg, p)
    train = noise is not None
    loss_t, terms_t = torch_loss(module, x, y, noise.eps if train else None,
                                 noise.masks if train else None, cfg, train=train)
    loss_t.backward()
    grads_t = to_npvae_params(module, grads=True)

    assert abs(loss_n - loss_t.item()) <= LOSS_TOL * abs(loss_n)
    for k in TERMS:
        a, b = terms_n[k], terms_t[k].item()
        assert abs(a - b) <= LOSS_TOL * max(abs(a), abs(b)), f"term {k}: npvae {a}, torch {b}"
    errs = {name: rel_err(grads_n[name], grads_t[name]) for name in p}
    bad = {n: e for n, e in errs.items() if not e <= GRAD_TOL}
    assert not bad, f"gradients disagree: {bad}"
    return terms_n, errs


def test_parameter_mapping_round_trips():
    cfg, p, _ = setup("full", 0)
    back = to_npvae_params(torch_model(cfg, p))
    assert back.layout == p.layout
    np.testing.assert_array_equal(back.flat, p.flat)


@pytest.mark.parametrize("cfg_name", ["small", "full"])
@pytest.mark.parametrize("labels", LABEL_CASES)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_loss_terms_and_gradients_match(cfg_name, labels, mode):
    cfg, p, rng = setup(cfg_name, 10 + LABEL_CASES.index(labels))
    x, y = make_batch(cfg, BATCH[cfg_name], labels, rng)
    noise = draw_noise(cfg, x.shape[0], rng) if mode == "train" else None
    terms, _ = compare(cfg, p, x, y, noise)
    assert (terms["cls"] == 0.0) == (labels == "none")


def test_gradients_match_where_the_clip_is_active():
    """Saturated responsibilities (some q < EPS) and one prior weight pi_0 < EPS: both sides
    must give the clip's zero derivative there and agree elsewhere."""
    cfg, p, rng = setup("small", 7)
    p["enc_c.W"][...] *= 80.0
    p["pi_logits"][0] = -40.0
    x, y = make_batch(cfg, 9, "several", rng)
    q, pi = forward(p, x, y, cfg, None)[2].q, forward(p, x, y, cfg, None)[2].pi
    assert (q < 1e-8).any() and pi[0] < 1e-8, "the case must actually reach the clip floor"
    compare(cfg, p, x, y, draw_noise(cfg, 9, rng))


def adamw_both(cfg, p, x, y, noises):
    """Run len(noises) AdamW steps from the same state in npvae and in torch; return both
    flat parameter vectors and npvae's gradient norms before clipping."""
    module = torch_model(cfg, p)
    opt = make_optimizer(module, cfg)
    p = p.copy()
    state, decay, norms = AdamState.zeros(p.flat), p.layout.decay_mask(np.float64), []
    for noise in noises:
        _, _, _, cache = forward(p, x, y, cfg, noise)
        norms.append(adamw_step(p.flat, backward(p, cache, cfg).flat, state, decay, cfg))
        train_step(module, opt, x, y, noise.eps, noise.masks, cfg)
    return p.flat, to_npvae_params(module).flat, norms


@pytest.mark.parametrize("cfg_name", ["small", "full"])
def test_adamw_steps_match_without_clipping(cfg_name):
    """grad_clip far above the gradient norm, so both clippers are the identity; three steps
    exercise the bias corrections at t > 1."""
    cfg, p, rng = setup(cfg_name, 3, grad_clip=1e9)
    x, y = make_batch(cfg, BATCH[cfg_name], "several", rng)
    noises = [draw_noise(cfg, x.shape[0], rng) for _ in range(3)]
    flat_n, flat_t, norms = adamw_both(cfg, p, x, y, noises)
    assert max(norms) < cfg.grad_clip
    assert np.max(np.abs(flat_n - p.flat)) > 1e-4, "the steps must move the parameters"
    assert np.max(np.abs(flat_n - flat_t)) <= STEP_TOL


@pytest.mark.parametrize("cfg_name", ["small", "full"])
def test_adamw_step_matches_with_clipping(cfg_name):
    """One clipped step (norm > 1). torch's clip_grad_norm_ scales by c / (norm + 1e-6), the
    spec (and npvae) by c / norm: the gradients differ by the factor 1 - delta,
    delta = 1e-6 / norm. The first Adam update g / (|g| + eps) then moves by at most
    delta / 4 (at |g| = eps), so the parameters may differ by lr * delta / 4 and no more."""
    cfg, p, rng = setup(cfg_name, 4)
    x, y = make_batch(cfg, BATCH[cfg_name], "several", rng)
    flat_n, flat_t, norms = adamw_both(cfg, p, x, y, [draw_noise(cfg, x.shape[0], rng)])
    assert norms[0] > cfg.grad_clip, "the case must actually clip"
    bound = cfg.lr * (1e-6 / norms[0]) / 4
    assert np.max(np.abs(flat_n - flat_t)) <= bound + STEP_TOL
