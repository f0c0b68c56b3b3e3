"""The fast path (npvae/engine/mixture.py) against the readable one (npvae/core/model.py): same
loss, same weighted terms, same gradient array by array, same evaluation, same training history.

float64: equal to 1e-10 relative (the two differ only in summation order).
float32: both paths round; the fast one must be as close to the float64 truth as the readable
one is, array by array (within a factor F32_FACTOR, floor F32_FLOOR): "the same numbers up to
float32 rounding", measured rather than assumed.
"""
from __future__ import annotations

import numpy as np
import pytest

from npvae import AdamState, Config, adamw_step, draw_noise, evaluate, init_params, loss_and_grads
from npvae.engine.mixture import FastModel
from npvae.engine.optim import adamw_step_fast
from npvae.core.noise import Noise
from npvae.training.loop import evaluate_split, fit
from conftest import LABEL_CASES, make_batch, perturb, rel_err, small_config

F64_TOL = 1e-10
F32_FACTOR, F32_FLOOR = 5.0, 100 * np.finfo(np.float32).eps
CONFIGS = {"small": small_config, "default": lambda **kw: Config(**{"dtype": "float64", **kw})}
BATCHES = (20, 9)       # a partial last batch (4500 = 35 x 128 + 20) and an odd small one


def setup(cfg_name, seed, batch, labels):
    cfg = CONFIGS[cfg_name]()
    rng = np.random.default_rng(seed)
    p = init_params(cfg, rng)
    perturb(p, rng)                       # away from init: pi not uniform, biases not 0
    x, y = make_batch(cfg, batch, labels, rng)
    return cfg, p, x, y, draw_noise(cfg, batch, rng)


def fast_grads(cfg, p, x, y, noise):
    g = p.zeros_like()
    g.flat[:] = np.nan                    # every gradient array must be written
    loss, terms = FastModel(cfg).loss_and_grads(p, x, y, noise, g)
    return loss, g, terms


def as32(cfg, p, x, noise):
    return (cfg.replace(dtype="float32"), p.astype(np.float32), x.astype(np.float32),
            Noise(noise.eps.astype(np.float32), tuple(m.astype(np.float32) for m in noise.masks)))


@pytest.mark.parametrize("cfg_name", CONFIGS)
@pytest.mark.parametrize("labels", LABEL_CASES)
@pytest.mark.parametrize("batch", BATCHES)
def test_float64_loss_terms_and_gradients_equal_the_reference(cfg_name, labels, batch):
    cfg, p, x, y, noise = setup(cfg_name, 0, batch, labels)
    loss, g, terms = loss_and_grads(p, x, y, noise, cfg)
    loss_f, g_f, terms_f = fast_grads(cfg, p, x, y, noise)
    assert loss_f == pytest.approx(loss, rel=F64_TOL)
    for t in terms:
        assert terms_f[t] == pytest.approx(terms[t], rel=F64_TOL, abs=1e-300), t
    for name in p:
        assert rel_err(g_f[name], g[name]) < F64_TOL, name


@pytest.mark.parametrize("cfg_name", CONFIGS)
@pytest.mark.parametrize("labels", LABEL_CASES)
def test_float32_is_as_close_to_float64_as_the_reference(cfg_name, labels):
    cfg, p, x, y, noise = setup(cfg_name, 1, 20, labels)
    loss, g, terms = loss_and_grads(p, x, y, noise, cfg)                    # the truth
    c32, p32, x32, n32 = as32(cfg, p, x, noise)
    loss_r, g_r, _ = loss_and_grads(p32, x32, y, n32, c32)
    loss_f, g_f, terms_f = fast_grads(c32, p32, x32, y, n32)
    assert g_f.flat.dtype == np.float32
    assert abs(loss_f - loss) <= F32_FACTOR * max(abs(loss_r - loss), F32_FLOOR * abs(loss))
    for name in p:
        bound = F32_FACTOR * max(rel_err(g_r[name], g[name]), F32_FLOOR)
        assert rel_err(g_f[name], g[name]) <= bound, name


@pytest.mark.parametrize("cfg_name", CONFIGS)
@pytest.mark.parametrize("labels", LABEL_CASES)
def test_eval_mode_equals_the_reference(cfg_name, labels):
    """Terms, and every Outputs field the report reads (q, mu, lv, logits, classifier
    logits, pi), in eval mode (z = mu, no dropout)."""
    cfg, p, x, y, _ = setup(cfg_name, 2, 20, labels)
    out, terms = evaluate(p, x, cfg, y)
    terms_f, q_sum, out_f = FastModel(cfg).evaluate(p, x, y, outputs=True)
    for t in terms:
        assert terms_f[t] == pytest.approx(terms[t], rel=F64_TOL, abs=1e-300), t
    for field in ("q", "mu", "lv", "z", "logits", "cls_logits", "pi"):
        assert rel_err(getattr(out_f, field), getattr(out, field)) < F64_TOL, field
    assert rel_err(q_sum, out.q.sum(axis=0)) < F64_TOL


@pytest.mark.parametrize("threads", [1, 3])
def test_evaluate_split_equals_the_reference(threads):
    """Chunked evaluation with a partial last chunk: weighted terms and usage."""
    cfg = small_config(eval_batch_size=8)
    rng = np.random.default_rng(3)
    p = init_params(cfg, rng)
    perturb(p, rng)
    x, y = make_batch(cfg, 21, "several", rng)
    totals, usage = evaluate_split(p, x, y, cfg)
    totals_f, usage_f = FastModel(cfg, threads=threads).evaluate_split(p, x, y)
    for t in totals:
        assert totals_f[t] == pytest.approx(totals[t], rel=F64_TOL), t
    assert rel_err(usage_f, usage) < F64_TOL and usage_f.sum() == pytest.approx(1.0)


def test_buffers_reused_across_batch_sizes_leave_no_trace():
    """A full batch, then a partial one on the same FastModel, gives what a fresh model gives
    for the partial batch: stale rows of the reused buffers never leak into a result."""
    cfg, p, x, y, noise = setup("small", 4, 20, "several")
    model = FastModel(cfg, max_batch=20)
    model.loss_and_grads(p, x, y, noise, p.zeros_like())
    model.evaluate(p, x, y)
    part = slice(0, 7)
    small_noise = Noise(noise.eps[part], tuple(m[part] for m in noise.masks))
    g1, g2 = p.zeros_like(), p.zeros_like()
    l1, _ = model.loss_and_grads(p, x[part], y[part], small_noise, g1)
    l2, _ = FastModel(cfg).loss_and_grads(p, x[part], y[part], small_noise, g2)
    assert l1 == l2 and np.array_equal(g1.flat, g2.flat)
    with pytest.raises(ValueError, match="max_batch"):
        model.loss_and_grads(p, np.vstack([x, x]), np.concatenate([y, y]),
                             draw_noise(cfg, 40, np.random.default_rng(0)), g1)


def test_thread_count_changes_only_rounding_and_repeats_bit_for_bit():
    """One thread or three (rows, columns and partial sums split differently): the same
    loss and gradient up to float64 rounding; the same thread count twice: the same bits."""
    cfg, p, x, y, noise = setup("default", 6, 20, "several")
    runs = {}
    for threads in (1, 3, 3):
        g = p.zeros_like()
        loss, _ = FastModel(cfg, train_threads=threads).loss_and_grads(p, x, y, noise, g)
        runs.setdefault(threads, []).append((loss, g.flat.copy()))
    (l1, g1), = runs[1]
    (l3, g3), (l3b, g3b) = runs[3]
    assert l3 == pytest.approx(l1, rel=1e-12) and rel_err(g3, g1) < 1e-12
    assert l3 == l3b and np.array_equal(g3, g3b)


@pytest.mark.parametrize("grad_norm", (10.0, 1e-3))
def test_adamw_step_equals_the_reference(grad_norm):
    """Clipped (norm 10 > 1) and unclipped (1e-3) steps: the same parameters, moments and
    returned norm as optim.adamw_step."""
    cfg = small_config()
    rng = np.random.default_rng(5)
    p = init_params(cfg, rng)
    perturb(p, rng)
    g = rng.standard_normal(p.flat.size)
    g *= grad_norm / np.linalg.norm(g)
    decay = p.layout.decay_mask(np.float64)
    ref, fast = p.copy(), p.copy()
    s_ref, s_fast = AdamState.zeros(p.flat), AdamState.zeros(p.flat)
    for _ in range(3):                   # bias corrections depend on the step count
        n_ref = adamw_step(ref.flat, g.copy(), s_ref, decay, cfg)
        n_fast = adamw_step_fast(fast.flat, g, s_fast, decay, cfg)
    assert n_fast == pytest.approx(n_ref, rel=1e-12) and n_fast == pytest.approx(grad_norm)
    assert s_fast.t == s_ref.t == 3
    for a, b in ((fast.flat, ref.flat), (s_fast.m, s_ref.m), (s_fast.v, s_ref.v)):
        assert rel_err(a, b) < 1e-12


# ------------------------------------------------------------------ whole training runs
@pytest.fixture(scope="module")
def fits(digits):
    """Two epochs on 300 digits (batches of 32, the last one partial), by engine and dtype.
    Both engines draw the same noise in the same order and take the same steps."""
    cfg = Config(epochs=2, batch_size=32).validate()
    return {(engine, dtype): fit(cfg.replace(dtype=dtype), *digits, progress=False,
                                 engine=engine)
            for engine in ("fast", "reference") for dtype in ("float32", "float64")}


def deviation(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / (np.abs(b) + 1e-6)))


def test_fit_history_in_float64_equals_the_reference_engine(fits):
    fast, ref = fits["fast", "float64"], fits["reference", "float64"]
    assert fast.history.keys() == ref.history.keys()
    assert fast.history["epoch"] == ref.history["epoch"] == [1, 2]
    for key, values in ref.history.items():
        assert deviation(fast.history[key], values) < 1e-9, key
    assert rel_err(fast.params.flat, ref.params.flat) < 1e-9


def test_fit_history_in_float32_is_within_float32_rounding(fits):
    """Training amplifies rounding a little: a float32 run drifts from the float64 run. The
    fast run drifts no more than the readable run does, key by key (within F32_FACTOR). (It
    usually drifts less: its loss-term kernel works in float64 internally.)"""
    truth, fast, ref = (fits[e, d].history for e, d in
                        (("reference", "float64"), ("fast", "float32"), ("reference", "float32")))
    assert fits["fast", "float32"].params.flat.dtype == np.float32
    for key in truth:
        drift = deviation(ref[key], truth[key])
        assert deviation(fast[key], truth[key]) <= F32_FACTOR * max(drift, F32_FLOOR), key


def test_fit_profile_names_the_phases(digits):
    prof = {}
    fit(Config(epochs=1, batch_size=64).validate(), *digits, progress=False, profile=prof)
    assert set(prof) == {"batch", "forward", "backward", "optimizer", "evaluation", "tracking"}
    assert all(v >= 0 for v in prof.values())
    with pytest.raises(ValueError, match="engine"):
        fit(Config(epochs=1), *digits, progress=False, engine="turbo")
