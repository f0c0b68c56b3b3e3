"""Shared helpers for the model tests: a small configuration, parameter perturbation, batches,
the relative error used by every gradient check, and float64 central differences.

The gradient checks compare an analytic gradient `a` with a numerical one `n` through

    rel_err(a, n) = max_i |a_i - n_i| / max(1e-8, max_i (|a_i| + |n_i|))

one number per array: the largest discrepancy measured against the largest gradient entry,
so a few near-zero entries (where any relative measure is noise) cannot dominate it.
"""
from __future__ import annotations

# npvae before numpy, as in `python -m npvae.run`, so that tests comparing this process with a
# CLI subprocess run the same BLAS kernels (npvae/engine/blas.py)
import npvae  # noqa: F401
import numpy as np
import pytest

from npvae.core.config import Config

# Batches named by how many of their rows carry a label (y = -1 marks an unlabeled image).
LABEL_CASES = ("none", "one", "several")


def small_config(**overrides) -> Config:
    """A model with every part of the full one (3-layer trunk, 2 decoder and 2 classifier
    hidden layers) but a few hundred parameters, in float64 for gradient checks."""
    base = dict(input_dim=12, hidden_dims=(8, 6, 4), K=3, embed_dim=3, pathway_dim=5,
                decoder_dims=(7, 6), classifier_dims=(5, 4), num_classes=4, dtype="float64")
    return Config(**{**base, **overrides}).validate()


def rel_err(a, n) -> float:
    """max|a - n| / max(1e-8, max(|a| + |n|)) over all entries (see the module docstring)."""
    a, n = np.asarray(a, dtype=np.float64), np.asarray(n, dtype=np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - n)) / max(1e-8, float(np.max(np.abs(a) + np.abs(n)))))


def numerical_grad(f, x: np.ndarray, idx=None, h: float = 1e-6) -> np.ndarray:
    """Central differences (f(x + h e_i) - f(x - h e_i)) / 2h with respect to the entries of
    x, which f reads (x is modified in place and restored bit for bit).

    f() returns a scalar, or a 1-D array of several scalars differentiated at once (trailing
    axis of the result). idx: flat indices to differentiate (default: every entry). Returns
    x.shape (+ trailing axis) when idx is None, else one row per index."""
    flat = x.reshape(-1)                # a view: writing it perturbs x itself
    assert np.shares_memory(flat, x), "x must be contiguous so that it can be perturbed in place"
    indices = range(flat.size) if idx is None else idx
    rows = []
    for i in indices:
        old = flat[i]
        flat[i] = old + h
        fp = np.asarray(f(), dtype=np.float64)
        flat[i] = old - h
        fm = np.asarray(f(), dtype=np.float64)
        flat[i] = old
        rows.append((fp - fm) / (2 * h))
    out = np.array(rows)
    return out.reshape(x.shape + out.shape[1:]) if idx is None else out


def check_layer(forward, backward, inputs, wrt, rng, h: float = 1e-6) -> list[float]:
    """Gradient check of one forward/backward pair with a random upstream gradient dy.

    forward(*inputs) -> (out, cache); backward(dy, cache) -> gradients of the inputs listed in
    `wrt` (indices into inputs), in that order. The scalar checked is sum(dy * out), whose
    gradient is exactly what backward returns. Returns one rel_err per checked input."""
    out, cache = forward(*inputs)
    dy = rng.standard_normal(np.shape(out))
    grads = backward(dy, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    assert len(grads) == len(wrt)

    def scalar():
        return float(np.sum(dy * forward(*inputs)[0]))

    errs = []
    for g, i in zip(grads, wrt):
        assert np.shape(g) == np.shape(inputs[i]), f"gradient of input {i} has the wrong shape"
        errs.append(rel_err(g, numerical_grad(scalar, inputs[i], h=h)))
    return errs


def check_engine(engine, p, x, y, noise, cfg, steps: int = 1) -> None:
    """A fast engine against the readable path (npvae/core/model.py) in float64: loss, terms
    and every gradient (each must be written: g starts NaN) of `steps` training steps on the
    same batch (buffers are reused), then the eval-mode terms, q and its sum, to 1e-10."""
    from npvae.core.model import evaluate, loss_and_grads

    loss, g, terms = loss_and_grads(p, x, y, noise, cfg)
    for _ in range(steps):
        g2 = p.zeros_like()
        g2.flat[:] = np.nan
        loss2, terms2 = engine.loss_and_grads(p, x, y, noise, g2)
        assert abs(loss - loss2) <= 1e-10 * abs(loss)
        for k in terms:
            assert abs(terms[k] - terms2[k]) <= 1e-10 * max(1.0, abs(terms[k]))
        assert rel_err(g.flat, g2.flat) < 1e-10
    out, ev = evaluate(p, x, cfg, y)
    ev2, q_sum, out2 = engine.evaluate(p, x, y, outputs=True)
    assert max(abs(ev[k] - ev2[k]) for k in ev) < 1e-10 * max(1.0, abs(ev["loss"]))
    np.testing.assert_allclose(out2.q, out.q, rtol=1e-12)
    np.testing.assert_allclose(q_sum, out.q.sum(axis=0), rtol=1e-12)


def perturb(p, rng: np.random.Generator, scale: float = 0.3) -> None:
    """Move parameters away from their initialisation, in place: scale * N(0, 1) added to
    biases, pi_logits and embed (so pi is not uniform and biases are not 0), and
    scale * N(0, 1/fan_in) to weight matrices (so activations keep their size)."""
    for name, v in p.items():
        noise = scale * rng.standard_normal(v.shape)
        v += noise / np.sqrt(v.shape[0]) if name.endswith(".W") else noise


def make_batch(cfg: Config, batch_size: int, labels: str, rng: np.random.Generator):
    """x (B, D) uniform in [0, 1] (every pixel informative) and y (B,) with no labeled row,
    exactly one, or several (half the rows), the others -1."""
    x = rng.random((batch_size, cfg.input_dim)).astype(cfg.dtype)
    y = np.full(batch_size, -1, dtype=np.int64)
    n_lab = {"none": 0, "one": 1, "several": max(2, batch_size // 2)}[labels]
    rows = rng.choice(batch_size, n_lab, replace=False)
    y[rows] = rng.integers(0, cfg.num_classes, n_lab)
    return x, y


def write_digits_npz(path, n: int, seed: int = 42):
    """n of the embedded digits (the ones --num-samples n --seed seed would draw) as an npz
    data file: CLI tests that pass it with --data skip the slower load of the embedded sample."""
    from npvae.training.data import load_digits, subsample

    x, y = subsample(*load_digits(), n, seed)
    np.savez(path, x=x, y=y)
    return path


@pytest.fixture(scope="session")
def digits():
    """300 of the embedded MNIST digits (float32 in [0, 1]), 30 labels visible, 10% held out:
    (x, y_visible, train_idx, val_idx), loaded once for every test module that trains."""
    from npvae.training.data import load_digits, make_splits, subsample, visible_labels

    x, y = subsample(*load_digits(), 300, seed=0)
    splits = make_splits(300, 30, seed=0)
    return x, visible_labels(y, splits.labeled), splits.train, splits.val


def load_example(name: str):
    """Import examples/<name>.py as a module (its folder on sys.path while it loads, as when
    the script is run), for tests of the examples' functions."""
    import importlib.util
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    sys.path.insert(0, str(script.parent))
    try:
        spec = importlib.util.spec_from_file_location(f"_{name}", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(script.parent))
    return module
