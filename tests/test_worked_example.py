"""The worked backward pass of docs/math.md section 9 (examples/worked_backward.py): its
adjoints are the library's and the finite differences', and the facts its text draws from
the numbers hold. Also the page's sanity check of the loss at initialisation."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from npvae.core.config import Config
from npvae.core.model import evaluate
from npvae.core.params import init_params
from conftest import load_example

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "worked_backward.py"


def load_script():
    return load_example("worked_backward")


W = load_script()


def test_the_adjoints_agree_with_the_library_and_central_differences():
    text, worst = W.report()
    assert worst < 1e-9 and text.count("below 1e-9") == 2


def test_the_facts_the_text_states():
    f = W.forward(W.H, W.W_A, W.B_A, W.X, W.LOGITS)
    b = W.backward(f, W.H, W.W_A, W.X, W.LOGITS)
    # logits 0 give D ln 2 whatever the image (components (1, 2) and (2, 1))
    np.testing.assert_allclose([f["bce"][0, 1], f["bce"][1, 0]], 2 * math.log(2), rtol=1e-15)
    # for the grey image that is the least BCE possible: sigmoid(0) = x, so bar_l = 0 ...
    assert not b["bar_l"][1, 0].any()
    # ... and the floor is the binary entropy of the grey levels, not 0
    grey = W.X[1]
    floor = -(grey * np.log(grey) + (1 - grey) * np.log(1 - grey)).sum()
    assert abs(f["bce"][1, 0] - floor) < 1e-15
    np.testing.assert_allclose(b["bar_a"].sum(axis=1), 0, atol=1e-15)   # softmax: rows sum to 0
    best = np.argmin(f["bce"], axis=1)                 # the best component of each image ...
    assert (b["bar_a"][np.arange(2), best] < 0).all()  # ... gets its logit raised by descent
    assert np.argmin(f["bce"][0]) == 0 and abs(b["bar_a"][0]).max() > abs(b["bar_a"][1]).max()


def test_the_loss_at_initialisation_sanity_check():
    """docs/math.md section 4: all-zero decoder logits give a reconstruction term of exactly
    D ln 2 = 784 ln 2 = 543.43 per image, whatever the images and the responsibilities."""
    cfg = Config(dtype="float64")
    rng = np.random.default_rng(5)
    p = init_params(cfg, rng)
    last = len(cfg.decoder_dims)
    p[f"dec{last}.W"][...] = 0.0
    p[f"dec{last}.b"][...] = 0.0
    x = rng.random((16, cfg.input_dim))
    out, terms = evaluate(p, x, cfg)
    assert not out.logits.any()
    assert abs(terms["recon"] - cfg.input_dim * math.log(2)) < 1e-9
    assert abs(cfg.input_dim * math.log(2) - 543.43) < 0.005
