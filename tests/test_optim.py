"""AdamW with global-norm clipping (spec section 4), against values worked out by hand."""
from __future__ import annotations

import math

import numpy as np

from npvae import AdamState, Config, adamw_step, clip_by_global_norm, init_params

from conftest import small_config


def test_two_adamw_steps_by_hand():
    """Three parameters, entry 1 not decayed. Step 1 has a small gradient (norm < 1, not
    clipped); step 2 a large one (norm 5, clipped to norm 1 before the moments see it)."""
    lr, b1, b2, eps, wd = 0.1, 0.9, 0.999, 1e-8, 0.5
    cfg = Config(lr=lr, beta1=b1, beta2=b2, adam_eps=eps, weight_decay=wd, grad_clip=1.0)
    mask = [1.0, 0.0, 1.0]
    grads = [[0.3, -0.4, 0.2], [3.0, 0.0, -4.0]]          # norms 0.539 and 5

    # by hand, one entry at a time, in plain Python floats
    p, m, v = [1.0, -2.0, 0.5], [0.0] * 3, [0.0] * 3
    expected_params, expected_norms = [], []
    for t, g in enumerate(grads, start=1):
        norm = math.sqrt(sum(gi * gi for gi in g))
        scale = 1.0 / norm if norm > 1.0 else 1.0           # clip to global norm 1
        new_p = []
        for j in range(3):
            gj = g[j] * scale
            m[j] = b1 * m[j] + (1 - b1) * gj
            v[j] = b2 * v[j] + (1 - b2) * gj * gj
            m_hat = m[j] / (1 - b1 ** t)                    # bias corrections
            v_hat = v[j] / (1 - b2 ** t)
            adam = m_hat / (math.sqrt(v_hat) + eps)
            decay = wd * mask[j] * p[j]                     # decoupled: not part of the gradient
            new_p.append(p[j] - lr * (adam + decay))
        p = new_p
        expected_params.append(list(p))
        expected_norms.append(norm)

    flat = np.array([1.0, -2.0, 0.5])
    state = AdamState.zeros(flat)
    for t, g in enumerate(grads):
        norm = adamw_step(flat, np.array(g), state, np.array(mask), cfg)
        assert state.t == t + 1
        assert abs(norm - expected_norms[t]) < 1e-15        # the norm before clipping
        np.testing.assert_allclose(flat, expected_params[t], rtol=1e-13, atol=0)


def test_first_step_moves_by_lr_times_sign():
    """With bias correction the first Adam step is lr * g / (|g| + eps) per entry: a step of
    about lr against the sign of the gradient, whatever its size (no decay here)."""
    cfg = Config(lr=0.01, weight_decay=0.0, grad_clip=1e9)
    flat = np.zeros(4)
    g = np.array([1e-3, -2.0, 5.0, -1e-5])
    adamw_step(flat, g.copy(), AdamState.zeros(flat), np.ones(4), cfg)
    np.testing.assert_allclose(flat, -0.01 * g / (np.abs(g) + 1e-8), rtol=1e-12)
    np.testing.assert_allclose(flat, -0.01 * np.sign(g), rtol=2e-3)   # |g| >> eps: lr steps


def test_clipping_rescales_a_large_gradient_to_norm_one():
    g = np.array([3.0, -4.0, 12.0])                         # norm 13
    direction = g / 13.0
    assert clip_by_global_norm(g, 1.0) == 13.0
    assert abs(np.linalg.norm(g) - 1.0) < 1e-15                  # 1 up to float64 rounding
    np.testing.assert_allclose(g, direction, rtol=1e-15)


def test_clipping_leaves_a_small_gradient_untouched():
    g = np.array([0.3, -0.4, 0.1])                          # norm 0.51
    before = g.copy()
    assert clip_by_global_norm(g, 1.0) == np.sqrt(0.26)
    np.testing.assert_array_equal(g, before)


def test_float32_clipping_keeps_dtype():
    g = np.full(100, 2.0, dtype=np.float32)                 # norm 20
    clip_by_global_norm(g, 1.0)
    assert g.dtype == np.float32 and abs(np.linalg.norm(g.astype(np.float64)) - 1.0) < 1e-6


def test_decay_mask_leaves_biases_pi_logits_and_embed_alone():
    """Zero gradient, weight decay on: Adam's part is exactly 0, so only decay moves
    parameters, and it must move the .W entries (by lr * wd * p) and nothing else."""
    cfg = small_config(lr=0.1, weight_decay=0.3)
    p = init_params(cfg, np.random.default_rng(0))
    for name, v in p.items():                               # every entry non-zero
        v[...] = np.random.default_rng(1).uniform(0.5, 1.5, v.shape)
    before = p.copy()
    state = AdamState.zeros(p.flat)
    adamw_step(p.flat, np.zeros_like(p.flat), state, p.layout.decay_mask(p.flat.dtype), cfg)
    for name, v in p.items():
        if name.endswith(".W"):
            np.testing.assert_allclose(v, before[name] * (1 - 0.1 * 0.3), rtol=1e-14,
                                       err_msg=name)
        else:
            np.testing.assert_array_equal(v, before[name], err_msg=name)
    assert {n for n in p if not n.endswith(".W")} >= {"pi_logits", "embed", "enc0.b"}
