"""Check the hand-written gradients against central differences, in float64, noise frozen.

Part 1 checks single layer pairs from npvae/core/layers.py (bce_logits, softmax, and the other
pieces of the loss): with a random upstream gradient dy, the scalar s = sum(dy * f(inputs))
has gradient backward(dy) exactly, and central differences of s estimate it.

Part 2 checks the whole loss, npvae/core/model.py:loss_and_grads, one parameter array at a time
(a random sample of entries per array), on the full-size default model. The noise (eps and
dropout masks) is drawn once and reused: the loss is then a deterministic function of the
parameters, which finite differences need. Parameters are moved away from their
initialisation first (pi not uniform, biases not 0) so no gradient vanishes by symmetry.

    rel_err = max |analytic - numeric| / max(|analytic| + |numeric|)   (per array)

How small is small? A central difference has truncation error O(h^2) and rounding error
about 1e-16 |L| / h: for the whole loss (|L| ~ 650, h = 1e-5) that is ~1e-8 in absolute
terms, so a sampled entry whose gradient is ~1e-3 can show a rel_err near 1e-5 from rounding
alone. Correct gradients give 1e-11..1e-6 here; a wrong backward pass gives errors near 1
(a missing factor 2 gives 1/3).

What to expect: two tables with every rel_err below the tolerance (1e-5), the line "largest
rel_err ..." and exit status 0; gradient_check.md (both tables) in --out. About 2 seconds
(--entries 8); NPVAE_EXAMPLE_TINY=1 or --tiny: about 1 second.

Exercises (docs/math.md, section 12): --break NAME swaps one line of the library for a
wrong one while the check runs (the files are not touched), then prints the prediction
and whether the tables match it; the exit status is then 1, as for any failed check.
Predict the numbers before you run it. The breaks:

{breaks}

    python examples/gradient_check.py [--entries 8] [--batch 8] [--out DIR] [--break NAME]
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))       # examples/_common.py
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))   # npvae without installing

import numpy as np  # noqa: E402

import _breaks  # noqa: E402
import _common as C  # noqa: E402
from npvae.core import layers as L  # noqa: E402
from npvae.core.config import Config  # noqa: E402
from npvae.core.model import forward, loss_and_grads  # noqa: E402
from npvae.core.noise import draw_noise  # noqa: E402
from npvae.core.params import init_params  # noqa: E402

H = 1e-5
__doc__ = __doc__.format(breaks="\n".join(f"  {name:16s} {b.where}: {b.mistake}"
                                          for name, b in _breaks.BREAKS.items()))


def rel_err(a, n) -> float:
    a, n = np.ravel(a), np.ravel(n)
    return float(np.max(np.abs(a - n)) / max(1e-12, float(np.max(np.abs(a) + np.abs(n)))))


def numerical(f, x: np.ndarray, idx) -> np.ndarray:
    """Central differences (f(x + h e_i) - f(x - h e_i)) / 2h at the flat indices idx of x
    (x is perturbed in place and restored)."""
    flat = x.reshape(-1)
    out = np.empty(len(idx))
    for j, i in enumerate(idx):
        old = flat[i]
        flat[i] = old + H
        fp = f()
        flat[i] = old - H
        fm = f()
        flat[i] = old
        out[j] = (fp - fm) / (2 * H)
    return out


# ------------------------------------------------------------------------ part 1: layers
def layer_cases(rng):
    """(name, forward, backward, inputs, which inputs get a gradient). Inputs stay away from
    kinks: lrelu at 0, the probability clip at EPS and 1."""
    def probs(shape):
        p = np.exp(rng.standard_normal(shape))
        return p / p.sum(axis=-1, keepdims=True)

    eps = rng.standard_normal((4, 2))                       # frozen reparameterisation noise
    a = rng.standard_normal((4, 5))
    a += np.sign(a) * 0.1                                   # |a| >= 0.1: no kink within h
    y = np.array([2, -1, 0, -1])                            # two labeled rows, two unlabeled
    mask = (rng.random((4, 5)) < 0.8) / 0.8
    return [
        ("bce_logits", L.bce_logits_forward, L.bce_logits_backward,
         [rng.standard_normal((4, 3, 6)) * 3, rng.random((4, 1, 6))], [0]),
        ("softmax", L.softmax_forward, L.softmax_backward, [rng.standard_normal((4, 5))], [0]),
        ("linear", L.linear_forward, L.linear_backward,
         [rng.standard_normal((4, 3)), rng.standard_normal((3, 5)), rng.standard_normal(5)],
         [0, 1, 2]),
        ("lrelu", L.lrelu_forward, L.lrelu_backward, [a], [0]),
        ("dropout", lambda x: L.dropout_forward(x, mask), L.dropout_backward, [a.copy()], [0]),
        ("gauss_kl", L.gauss_kl_forward, L.gauss_kl_backward,
         [rng.standard_normal((4, 2)), rng.standard_normal((4, 2))], [0, 1]),
        ("reparam", lambda mu, lv: L.reparam_forward(mu, lv, eps), L.reparam_backward,
         [rng.standard_normal((4, 2)), rng.standard_normal((4, 2))], [0, 1]),
        ("cat_kl", L.cat_kl_forward, L.cat_kl_backward, [probs((4, 5)), probs(5)], [0, 1]),
        ("entropy", L.entropy_forward, L.entropy_backward, [probs(5)], [0]),
        ("dirichlet", lambda pi: L.dirichlet_forward(pi, 5.0), L.dirichlet_backward,
         [probs(5)], [0]),
        ("labeled_ce", lambda o: L.labeled_ce_forward(o, y), L.labeled_ce_backward,
         [rng.standard_normal((4, 5))], [0]),
    ]


def check_layers(rng) -> list[tuple[str, str, str, float]]:
    """One row (key, layer, which input, rel_err) per differentiated input; key is
    "<layer> input <i>"."""
    rows = []
    for name, fwd, bwd, inputs, wrt in layer_cases(rng):
        out, cache = fwd(*inputs)
        dy = rng.standard_normal(np.shape(out))
        grads = bwd(dy if np.ndim(out) else float(dy), cache)
        grads = grads if isinstance(grads, tuple) else (grads,)
        scalar = lambda: float(np.sum(dy * fwd(*inputs)[0]))   # noqa: E731
        for g, i in zip(grads, wrt):
            num = numerical(scalar, inputs[i], range(inputs[i].size))
            rows.append((f"{name} input {i}", name, f"input {i} {tuple(np.shape(inputs[i]))}",
                         rel_err(g, num)))
    return rows


# -------------------------------------------------------------------- part 2: whole loss
def check_model(batch: int, entries: int, rng) -> tuple[list[tuple[str, str, str, float]], float]:
    """One row (key, array, entries checked, rel_err) per parameter array (key = its name)."""
    cfg = Config(dtype="float64")                          # the full-size default model
    p = init_params(cfg, rng)
    for name, v in p.items():                              # leave the symmetric init point
        noise = 0.3 * rng.standard_normal(v.shape)
        v += noise / np.sqrt(v.shape[0]) if name.endswith(".W") else noise
    x = rng.random((batch, cfg.input_dim))
    y = np.full(batch, -1)
    y[: max(1, batch // 2)] = rng.integers(0, cfg.num_classes, max(1, batch // 2))
    noise = draw_noise(cfg, batch, rng)                    # drawn ONCE: frozen for all calls
    loss, grads, terms = loss_and_grads(p, x, y, noise, cfg)
    C.say("loss terms at the check point: " + ", ".join(f"{k} {v:.4g}" for k, v in terms.items()))
    f = lambda: forward(p, x, y, cfg, noise)[0]             # noqa: E731  the loss alone
    rows = []
    for name, shape, off in zip(p.layout.names, p.layout.shapes, p.layout.offsets):
        size = int(np.prod(shape))
        local = rng.choice(size, min(size, entries), replace=False)
        num = numerical(f, p.flat, off + local)
        rows.append((name, name, f"{len(local)} of {size} entries {shape}",
                     rel_err(grads[name].reshape(-1)[local], num)))
    return rows, loss


def table(title: str, rows, tol: float) -> str:
    lines = [f"### {title}", "", "| array / layer | checked | rel_err | ok |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {e:.2e} | {'yes' if e <= tol else '**NO**'} |" for _, a, b, e in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = C.make_parser("gradient_check", __doc__)
    ap.add_argument("--entries", type=int, default=None, help="entries checked per array")
    ap.add_argument("--batch", type=int, default=None, help="batch size of the check")
    ap.add_argument("--tol", type=float, default=1e-5, help="largest accepted rel_err")
    ap.add_argument("--break", dest="break_", choices=list(_breaks.BREAKS), metavar="NAME",
                    help="run the check with one library line broken (an exercise): "
                         + ", ".join(_breaks.BREAKS))
    ap.add_argument("--update", type=Path, metavar="FILE",
                    help="only rewrite the exercises block of FILE (docs/math.md) from the breaks")
    args = ap.parse_args(argv)
    if args.update:
        changed = C.update_block(args.update, "exercises", _breaks.exercises_markdown())
        print(f"{args.update}: {'updated' if changed else 'already up to date'}")
        return 0
    args = C.resolve(args, normal=dict(entries=8, batch=8), tiny=dict(entries=2, batch=4))
    rng = np.random.default_rng(args.seed)
    with C.Timer() as t, _broken(args.break_) as b:
        layer_rows = check_layers(rng)
        model_rows, loss = check_model(args.batch, args.entries, rng)
    text = (f"# Gradient check (float64, central differences h = {H:g}, frozen noise)\n\n"
            + (f"**Broken on purpose** (`--break {args.break_}`): `{b.where}`, "
               f"`{b.line}` replaced by `{b.wrong}`.\n\n" if b else "")
            + table("Layer pairs (npvae/core/layers.py)", layer_rows, args.tol) + "\n"
            + table("Whole loss per parameter array (npvae/core/model.py:loss_and_grads)",
                    model_rows, args.tol))
    print(text)
    path = args.out / "gradient_check.md"
    path.write_text(text)
    worst = max(e for *_, e in layer_rows + model_rows)
    print(f"largest rel_err {worst:.2e} (tolerance {args.tol:g}; rounding floor of the "
          f"whole-loss check ~{1e-16 * abs(loss) / H:.0e} absolute); {t.seconds:.1f} s; wrote {path}")
    if b:
        K = Config().K
        problems = _breaks.verdict(b, layer_rows + model_rows, args.tol, args.batch, K)
        print(f"\nbroken: {b.where}\n  - {b.line}\n  + {b.wrong}\n({b.mistake})\n"
              f"question: {b.question}\nprediction: {b.answer}.")
        print("the tables match the prediction" if not problems else
              "the tables do NOT match the prediction:\n  " + "\n  ".join(problems))
    return 0 if worst <= args.tol else 1


def _broken(name):
    """_breaks.broken(name), or a no-op giving None when no break was asked for."""
    return _breaks.broken(name) if name else contextlib.nullcontext(None)


if __name__ == "__main__":
    sys.exit(main())
