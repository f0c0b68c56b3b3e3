"""The model's exact gradient (model.backward) against float64 central differences.

For each loss term alone (the other weights set to 0), and for the total loss, the gradient
with respect to every parameter array must match central differences of the loss with the
noise frozen (eps and dropout masks drawn once): rel_err (conftest) at most 1e-6 per array.

* small model (conftest.small_config, ~540 parameters): every entry of every array;
* full-size default model (Config(dtype="float64"), 491,330 parameters): 4 random entries of
  every array, plus the entry of largest |gradient| of each term (see checked_entries);
* batches with no labeled row, one, and several; plus the eval-mode forward (noise=None).

Parameters are perturbed away from their initialisation first, so pi is not uniform, biases
are not 0 and no gradient vanishes by symmetry. Run with `-s` to see the largest relative
error per loss term (test_largest_error_per_term prints a table).
"""
from __future__ import annotations

import zlib
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import pytest

from npvae import Config, Noise, TERMS, draw_noise, forward, backward, init_params, loss_and_grads
from npvae.core import layers as L
from npvae.core.params import Layout

from conftest import LABEL_CASES, make_batch, perturb, rel_err, small_config

TOL = 1e-6
WEIGHT_OF = {"recon": "w_rec", "kl_z": "w_kl", "kl_c": "w_klc", "dirichlet": "w_dir",
             "diversity": "w_div", "cls": "w_cls"}
CASES = TERMS + ("total",)
# h: the (largest) step of the central differences, see central_difference.
# perturb: scale of the move away from init (conftest.perturb); on the small model it must be
# large enough that mu differs between images, or the eval-mode classifier gradient cancels.
MODELS = {"small": dict(batch=5, entries=None, h=1e-4, perturb=1.0),
          "full": dict(batch=6, entries=4, h=1e-4, perturb=0.3)}
SEED = 0
NAMES = Layout.from_config(small_config()).names
assert NAMES == Layout.from_config(Config()).names   # same arrays, so one parametrisation


def term_config(cfg: Config, term: str) -> Config:
    """cfg with every loss weight but `term`'s set to 0 ("total": cfg unchanged)."""
    if term == "total":
        return cfg
    return cfg.replace(**{w: 0.0 for t, w in WEIGHT_OF.items() if t != term})


@lru_cache(maxsize=None)
def setup(model: str, labels: str, mode: str = "train"):
    """(cfg, params, x, y, noise) for one model and label case; noise None in eval mode."""
    rng = np.random.default_rng([SEED, list(MODELS).index(model), LABEL_CASES.index(labels)])
    cfg = small_config() if model == "small" else Config(dtype="float64")
    p = init_params(cfg, rng)
    perturb(p, rng, MODELS[model]["perturb"])
    x, y = make_batch(cfg, MODELS[model]["batch"], labels, rng)
    noise = draw_noise(cfg, x.shape[0], rng) if mode == "train" else None
    return cfg, p, x, y, noise


@lru_cache(maxsize=None)
def analytic(model: str, labels: str, term: str, mode: str = "train"):
    """(loss, terms, grads) of the term-only loss (forward and backward with term_config)."""
    cfg, p, x, y, noise = setup(model, labels, mode)
    loss, terms, _, cache = forward(p, x, y, term_config(cfg, term), noise)
    return loss, terms, backward(p, cache, term_config(cfg, term))


@lru_cache(maxsize=None)
def checked_entries(model: str, labels: str, name: str, mode: str = "train") -> np.ndarray:
    """Flat indices within array `name`: all of them on the small model; on the full model a
    fixed random sample plus, per case, the entry of largest analytic |gradient| (rel_err is
    measured against the array's largest entry, as when every entry is checked)."""
    p = setup(model, labels, mode)[1]
    size = p[name].size
    if MODELS[model]["entries"] is None:
        return np.arange(size)
    rng = np.random.default_rng(zlib.crc32(f"{labels}/{name}".encode()))
    sample = rng.choice(size, min(size, MODELS[model]["entries"]), replace=False)
    largest = [np.argmax(np.abs(analytic(model, labels, t, mode)[2][name])) for t in CASES]
    return np.unique(np.concatenate([sample, largest]))


@contextmanager
def lrelu_signs():
    """Record the sign pattern of every lrelu input (the kinks of the loss) while active."""
    signs, original = [], L.lrelu_forward

    def spy(a):
        signs.append((a > 0).ravel())
        return original(a)

    L.lrelu_forward = spy          # model.py looks layers up at call time (L.lrelu_forward)
    try:
        yield signs
    finally:
        L.lrelu_forward = original


def central_difference(f, flat: np.ndarray, i: int, h: float) -> np.ndarray:
    """(f(x + h e_i) - f(x - h e_i)) / 2h, where f() -> (values, lrelu signs). h is divided by
    10 until no lrelu input changes sign across the step: a difference straddling a kink
    measures neither slope, and no fixed h is both small enough to avoid every kink of the
    full model (~25k lrelu inputs) and large enough to keep its float64 rounding small."""
    old = flat[i]
    for _ in range(4):
        flat[i] = old + h
        fp, sp = f()
        flat[i] = old - h
        fm, sm = f()
        flat[i] = old
        if np.array_equal(sp, sm):
            return (fp - fm) / (2 * h)
        h /= 10
    raise AssertionError(f"entry {i} of the flat parameters keeps an lrelu input within "
                         f"{10 * h:g} of its kink")


@lru_cache(maxsize=None)
def numerical(model: str, labels: str, name: str, mode: str = "train") -> np.ndarray:
    """(entries, len(CASES)) central differences of every weighted term and of the total loss,
    all from the same forward passes (a term-only loss is exactly that term of the total)."""
    cfg, p, x, y, noise = setup(model, labels, mode)

    def values_and_signs():
        with lrelu_signs() as signs:
            loss, terms, _, _ = forward(p, x, y, cfg, noise)
        return np.array([terms[t] for t in TERMS] + [loss]), np.concatenate(signs)

    offset = p.layout.offsets[p.layout.names.index(name)]
    return np.array([central_difference(values_and_signs, p.flat, offset + i, MODELS[model]["h"])
                     for i in checked_entries(model, labels, name, mode)])


def array_error(model: str, labels: str, term: str, name: str, mode: str = "train") -> float:
    """rel_err of d(term-only loss)/d(array `name`), analytic vs central differences."""
    a = analytic(model, labels, term, mode)[2][name].reshape(-1)
    entries = checked_entries(model, labels, name, mode)
    return rel_err(a[entries], numerical(model, labels, name, mode)[:, CASES.index(term)])


GRID = [(m, t, lab, n) for m in MODELS for t in CASES for lab in LABEL_CASES for n in NAMES]


@pytest.mark.parametrize("model,term,labels,name", GRID, ids=["-".join(g) for g in GRID])
def test_loss_gradient(model, term, labels, name):
    err = array_error(model, labels, term, name)
    assert err <= TOL, f"{model} model, {term} term, {labels} labeled: d/d{name} rel_err {err:.2e}"


@pytest.mark.parametrize("name", NAMES)
def test_eval_mode_gradient(name):
    """z = mu, no dropout (noise=None): the other branch of the graph."""
    err = array_error("small", "several", "total", name, mode="eval")
    assert err <= TOL, f"eval mode: d/d{name} rel_err {err:.2e}"


@pytest.mark.parametrize("model,mode", [("small", "train"), ("small", "eval"),
                                        ("full", "train")])
def test_checks_are_meaningful(model, mode):
    """The perturbed setup exercises every term and every array: pi is not uniform, each
    term-only loss equals its term and is non-zero, and every gradient array has entries far
    above the float64 rounding of the central differences (~1e-11 absolute, so an array
    whose largest entry is 1e-4 is still resolved to ~1e-7 relative)."""
    p = setup(model, "several", mode)[1]
    pi = np.exp(p["pi_logits"]) / np.exp(p["pi_logits"]).sum()
    assert pi.max() - pi.min() > 0.05, "pi is (nearly) uniform: the checks would be weak"
    _, all_terms, g = analytic(model, "several", "total", mode)
    for term in TERMS:
        loss, terms, _ = analytic(model, "several", term, mode)
        assert loss == pytest.approx(terms[term]) and loss == pytest.approx(all_terms[term])
        assert abs(loss) > 1e-6, f"the {term} term is ~0: its gradient check would be empty"
    weak = {n: float(np.abs(g[n]).max()) for n in NAMES if np.abs(g[n]).max() < 1e-4}
    assert not weak, f"(nearly) vanishing gradients: {weak}"


def test_largest_error_per_term():
    """Every check above, summarised: the largest rel_err per model and loss term (printed
    with -s; shares the cached results of the parametrised tests)."""
    rows = []
    for model in MODELS:
        for term in CASES:
            errs = {(lab, n): array_error(model, lab, term, n)
                    for lab in LABEL_CASES for n in NAMES}
            (lab, n), worst = max(errs.items(), key=lambda kv: kv[1])
            rows.append((model, term, worst, f"{n} ({lab} labeled)"))
    rows.append(("small", "total, eval mode",
                 max(array_error("small", "several", "total", n, "eval") for n in NAMES), ""))
    print("\nlargest relative error per loss term (analytic vs central differences)")
    for model, term, worst, where in rows:
        print(f"  {model:5s}  {term:16s}  {worst:.2e}  {where}")
    assert max(r[2] for r in rows) <= TOL


@pytest.mark.parametrize("state", ["init", "perturbed"])
def test_float32_matches_float64(state):
    """The default (float32) config gives float32, finite gradients that agree with the same
    computation in float64 to float32 precision (float32 eps = 1.2e-7; sums over ~1e5 terms)."""
    cfg32 = Config()
    rng = np.random.default_rng(7)
    p32 = init_params(cfg32, rng)
    if state == "perturbed":
        perturb(p32, rng, 0.3)
    x, y = make_batch(cfg32, 16, "several", rng)
    noise32 = draw_noise(cfg32, 16, rng)
    loss32, g32, _ = loss_and_grads(p32, x, y, noise32, cfg32)
    assert g32.flat.dtype == np.float32 and np.isfinite(g32.flat).all()

    noise64 = Noise(noise32.eps.astype(np.float64), tuple(m.astype(np.float64)
                                                           for m in noise32.masks))
    loss64, g64, _ = loss_and_grads(p32.astype(np.float64), x.astype(np.float64), y, noise64,
                                    cfg32.replace(dtype="float64"))
    assert g64.flat.dtype == np.float64
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    assert rel_err(g32.flat, g64.flat) < 1e-5
    if state == "perturbed":
        # Per array only away from init: at init pi is uniform and q nearly so, and the
        # gradients of pi_logits and enc_c are tiny differences of O(1) float32 numbers.
        for name in NAMES:
            assert rel_err(g32[name], g64[name]) < 1e-4, name
