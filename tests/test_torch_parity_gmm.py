"""Model gmm against an independent PyTorch implementation (benchmarks/torch_gmm.py), float64.

Same weights, same batch, same frozen noise: the loss, every weighted term and every parameter
gradient must agree, npvae's from its hand-written backward passes (npvae.core.model.
loss_and_grads, gmm.consistency_forward / backward, the engine's Consistency) and torch's
from autograd: the ELBO terms on batches with and without labeled rows, the consistency term
with its threshold splitting the rows at temperatures 0 (FixMatch) and 0.5, and their sum as
a training step composes it. Then a short run of fit_torch must follow npvae's fit step by
step. Skipped when torch is absent (CI does not install it).
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from npvae.core import gmm  # noqa: E402
from npvae.core.config import Config  # noqa: E402
from npvae.core.model import loss_and_grads  # noqa: E402
from npvae.core.noise import draw_noise  # noqa: E402
from npvae.core.params import init_params  # noqa: E402
from npvae.engine.augment import augment, strong_view  # noqa: E402
from npvae.engine.consistency import Consistency  # noqa: E402
from npvae.engine.reference import ReferenceEngine  # noqa: E402
from npvae.training import presets  # noqa: E402
from npvae.training.loop import fit, make_rngs  # noqa: E402
from benchmarks.torch_gmm import (TERMS, TorchGMM, consistency, fit_torch,  # noqa: E402
                                  gmm_terms, load_npvae_params, to_npvae_params)
from conftest import LABEL_CASES, make_batch, perturb, rel_err  # noqa: E402

LOSS_TOL = 1e-10     # relative, loss and each term
GRAD_TOL = 1e-8      # rel_err per parameter array (see conftest)
LARGEST = {}         # test -> (array, its error): the worst of each, for a report in-process


def small_gmm(**overrides) -> Config:
    """8 x 8 images (square: the strong view warps them), every weight non-zero."""
    base = dict(model="gmm", input_dim=64, hidden_dims=(8, 6), decoder_dims=(7, 5),
                latent_dim=3, K=4, num_classes=4, dtype="float64", w_kl=0.7, w_klc=0.9,
                w_dir=0.4, w_div=-0.3, w_cls=2.0, w_cons=1.7, strong_cutout=3,
                aug_rotate=10.0, aug_scale=0.1, aug_shift=1.0)
    return Config(**{**base, **overrides}).validate()


def ssl_gmm(**overrides) -> Config:
    """The ssl preset's shapes and weights (784 pixels, 10-D latent) with the term on."""
    return Config.from_dict({**presets.load("ssl"), "dtype": "float64", "w_cons": 30.0,
                             **overrides}).validate()


CONFIGS = {"small": small_gmm, "ssl": ssl_gmm}
BATCH = {"small": 9, "ssl": 16}
CONFIDENT = {"small": 1.5, "ssl": 1.0}   # perturbations that spread max_k q over (0.4, 1)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny batches: a second intra-op thread only adds wake-ups on a busy host."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def setup(cfg_name: str, seed: int, scale: float = 0.3, **overrides):
    cfg = CONFIGS[cfg_name](**overrides)
    rng = np.random.default_rng(seed)
    p = init_params(cfg, rng)
    perturb(p, rng, scale)
    return cfg, p, rng


def torch_model(cfg: Config, p) -> TorchGMM:
    return load_npvae_params(TorchGMM(cfg).to(torch.float64), p)


def torch_grads(module: TorchGMM):
    """The module's gradients as npvae Params, 0 where autograd left none (the decoder,
    which the consistency term never reaches)."""
    for q in module.parameters():
        if q.grad is None:
            q.grad = torch.zeros_like(q)
    return to_npvae_params(module, grads=True)


def t(a):
    return torch.as_tensor(a)


def num(v) -> float:
    return float(v.detach()) if torch.is_tensor(v) else float(v)


def check(name, loss_n, terms_n, g_n, loss_t, terms_t, module, p):
    """loss and terms to LOSS_TOL, each gradient array to GRAD_TOL; returns the errors."""
    assert abs(loss_n - num(loss_t)) <= LOSS_TOL * abs(loss_n), (loss_n, num(loss_t))
    for k in terms_n:
        a, b = terms_n[k], num(terms_t[k])
        assert abs(a - b) <= LOSS_TOL * max(abs(a), abs(b)), f"term {k}: npvae {a}, torch {b}"
    g_t = torch_grads(module)
    errs = {k: rel_err(g_n[k], g_t[k]) for k in p}
    bad = {k: e for k, e in errs.items() if not e <= GRAD_TOL}
    assert not bad, f"gradients disagree: {bad}"
    worst = max(errs, key=errs.get)
    LARGEST[name] = (worst, errs[worst])
    return errs


def split_threshold(cfg, p, x) -> Config:
    """cfg whose threshold lies halfway between two middle confidences of the batch, so that
    rows fall on both sides and none sits on it (a 1-ulp difference cannot flip a row)."""
    conf = np.sort(np.exp(gmm.class_log_posterior(p, x, cfg).max(axis=1)))
    mid = len(conf) // 2
    return cfg.replace(cons_threshold=float(conf[mid - 1] + conf[mid]) / 2)


def test_parameter_mapping_round_trips():
    cfg, p, _ = setup("ssl", 0)
    back = to_npvae_params(torch_model(cfg, p))
    assert back.layout == p.layout
    np.testing.assert_array_equal(back.flat, p.flat)


@pytest.mark.parametrize("cfg_name", ["small", "ssl"])
@pytest.mark.parametrize("labels", LABEL_CASES)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_elbo_terms_and_gradients_match(cfg_name, labels, mode):
    cfg, p, rng = setup(cfg_name, 10 + LABEL_CASES.index(labels))
    x, y = make_batch(cfg, BATCH[cfg_name], labels, rng)
    if mode == "train":
        noise = draw_noise(cfg, x.shape[0], rng)
        loss_n, g_n, terms_n = loss_and_grads(p, x, y, noise, cfg)
    else:
        noise = None
        loss_n, terms_n, _, cache = gmm.forward(p, x, y, cfg, None)
        g_n = gmm.backward(p, cache, cfg)
    module = torch_model(cfg, p)
    terms_t = gmm_terms(module, t(x), t(y), None if noise is None else t(noise.eps), cfg)
    loss_t = sum(terms_t.values())
    loss_t.backward()
    assert set(terms_n) == set(TERMS)
    check(f"elbo {cfg_name} {labels} {mode}", loss_n, terms_n, g_n, loss_t, terms_t,
          module, p)
    assert (terms_n["cls"] == 0.0) == (labels == "none")


@pytest.mark.parametrize("cfg_name", ["small", "ssl"])
@pytest.mark.parametrize("T", [0.0, 0.5])
def test_consistency_term_and_gradients_match(cfg_name, T):
    cfg, p, rng = setup(cfg_name, 20, CONFIDENT[cfg_name], cons_temperature=T)
    x, _ = make_batch(cfg, 12, "none", rng)
    xs = strong_view(x, rng.uniform(-1, 1, (12, 6)), cfg)
    cfg = split_threshold(cfg, p, x)
    target = gmm.class_log_posterior(p, x, cfg)
    loss_n, confident, cache = gmm.consistency_forward(p, target, xs, cfg)
    g_n = p.zeros_like()
    gmm.consistency_backward(cache, g_n)
    module = torch_model(cfg, p)
    loss_t, confident_t = consistency(module, t(x), t(xs), cfg)   # its own target
    loss_t.backward()
    assert 0 < confident == confident_t < x.shape[0]                # both kinds of rows
    check(f"consistency {cfg_name} T={T}", loss_n, {}, g_n, loss_t, {}, module, p)
    assert loss_n > 0
    assert not any(g_n[k].any() for k in p if k.startswith("dec"))


@pytest.mark.parametrize("cfg_name", ["small", "ssl"])
def test_step_total_matches(cfg_name):
    """A training step's total as fit composes it: the ELBO on the augmented batch (labeled
    and unlabeled rows), plus the engine's Consistency on the unlabeled rows as they are,
    its gradient added to the ELBO's (npvae/training/loop.py:_consistency)."""
    cfg, p, rng = setup(cfg_name, 30, CONFIDENT[cfg_name], cons_temperature=0.5)
    x, y = make_batch(cfg, BATCH[cfg_name], "several", rng)
    cfg = split_threshold(cfg, p, x[y < 0])
    noise = draw_noise(cfg, x.shape[0], rng)
    xb = augment(x, noise.aug, cfg)
    loss_n, g_n, terms_n = loss_and_grads(p, xb, y, noise, cfg)
    unl = y < 0
    terms_n["cons"], _ = Consistency(ReferenceEngine(cfg)).loss_and_grads(
        p, x[unl], noise.strong[unl], g_n)
    loss_n += terms_n["cons"]
    module = torch_model(cfg, p)
    terms_t = gmm_terms(module, t(xb), t(y), t(noise.eps), cfg)
    xs = strong_view(x[unl], noise.strong[unl], cfg)
    terms_t["cons"], confident = consistency(module, t(x[unl]), t(xs), cfg)
    assert 0 < confident < unl.sum()
    loss_t = sum(terms_t.values())
    loss_t.backward()
    check(f"sum {cfg_name}", loss_n, terms_n, g_n, loss_t, terms_t, module, p)


def test_fit_torch_follows_npvae_fit():
    """Three float64 epochs of both loops (labeled rows per batch, warm-up then anneal,
    augmentation, the consistency term, clipped AdamW with decay on the Dense weights), from
    the same seed: the same weights at the end, and the same evaluation."""
    cfg = small_gmm(batch_size=8, labeled_per_batch=3, warmup_epochs=1, anneal_epochs=2,
                    epochs=3, cons_threshold=0.3, cons_temperature=0.0, lr=3e-3)
    rng = np.random.default_rng(5)
    x, y = make_batch(cfg, 40, "none", rng)
    y[:6] = np.arange(6) % cfg.num_classes
    train, val = np.arange(4, 36), np.r_[0:4, 36:40]
    res = fit(cfg, x, y, train, val, progress=False, engine="reference")
    ours = fit_torch(cfg, x, y, train, val_idx=val)
    flat = to_npvae_params(ours.module).flat
    start = init_params(cfg, make_rngs(cfg.seed)["init"]).flat
    assert np.max(np.abs(res.params.flat - start)) > 1e-2          # the steps moved them
    err = float(np.max(np.abs(res.params.flat - flat)))
    LARGEST["fit: weights, absolute"] = ("flat", err)
    assert err < 1e-9
    for split, terms in (("train", ours.train_terms), ("val", ours.val_terms)):
        for k in ("loss",) + TERMS:
            a, b = res.history[f"{split}_{k}"][-1], terms[k]
            assert abs(a - b) <= 1e-9 * max(1.0, abs(a)), (split, k, a, b)
    # the consistency term took part: without it the weights end elsewhere
    other = fit_torch(cfg.replace(w_cons=1e-3), x, y, train)
    assert np.max(np.abs(to_npvae_params(other.module).flat - flat)) > 1e-4
