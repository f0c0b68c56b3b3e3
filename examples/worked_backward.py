"""A backward pass small enough to redo by hand: B = 2 images, K = 3 components, D = 2 pixels.

The piece of the model where this VAE differs from a textbook one: the component head
a = h W_a + b_a, the responsibilities q = softmax(a), and the q-weighted reconstruction

    L_rec = (1/B) sum_i sum_k q_ik BCE(x_i, l_ik),   BCE(x, l) = sum_j softplus(l_j) - x_j l_j

(w_rec = 1). The trunk output h (2, 2), the head's weights and the decoder logits l (2, 3, 2)
are fixed small numbers instead of network outputs, so every intermediate fits on a line.
The script prints the forward pass, then each adjoint (bar v = dL_rec/dv, docs/math.md
section 9) by its formula, then checks each adjoint twice: against the library's own layer
pairs (npvae/core/layers.py) and against float64 central differences.

What to expect: the same numbers as the worked example in docs/math.md, section 9 (a test
keeps the two identical), then "library" and "central differences" rows with errors below
1e-9. Takes well under a second. It writes nothing (--out and --tiny are accepted and
ignored, as the other examples take them); --update FILE rewrites the block of FILE between
<!-- worked:begin --> and <!-- worked:end --> with this output instead of printing it.

    python examples/worked_backward.py [--update docs/math.md]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))       # examples/_common.py
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))   # npvae without installing

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
from npvae.core import layers as L  # noqa: E402

# The inputs: chosen so that the BCE rows show the three typical cases (a component that
# fits, one that says "0.5 everywhere" (l = 0: BCE = D ln 2 whatever x is), one that is wrong).
H = np.array([[1.0, 0.0],
              [0.5, -1.0]])                      # trunk output h (B, 2)
W_A = np.array([[1.0, 0.0, -1.0],
                [0.0, 1.0, 0.0]])                # component head weights (2, K)
B_A = np.array([0.0, 0.0, 0.5])                  # component head bias (K,)
X = np.array([[1.0, 0.0],
              [0.5, 0.5]])                       # images x (B, D), grey levels in [0, 1]
LOGITS = np.array([[[2.0, -2.0], [0.0, 0.0], [-1.0, 1.0]],
                   [[0.0, 0.0], [1.0, -1.0], [0.0, 2.0]]])   # decoder logits l (B, K, D)


def fmt(v) -> str:
    """A number or array with 4 decimals, rows separated by ' | ' (one line per array)."""
    v = np.round(np.asarray(v, dtype=float), 4) + 0.0     # + 0.0: no "-0.0000"
    if v.ndim == 0:
        return f"{v:.4f}"
    if v.ndim == 1:
        return "[" + " ".join(f"{e:8.4f}" for e in v) + " ]"
    return " | ".join(fmt(row) for row in v)


def forward(h, w_a, b_a, x, l):
    """The loss and every intermediate, by the formulas of docs/math.md (no library calls)."""
    a = h @ w_a + b_a                                             # (B, K)
    e = np.exp(a)              # small inputs: no need to subtract the row maximum here
    q = e / e.sum(axis=1, keepdims=True)                          # (B, K)
    softplus = np.log1p(np.exp(l))
    bce = (softplus - x[:, None, :] * l).sum(axis=2)              # (B, K)
    B = x.shape[0]
    loss = (q * bce).sum() / B
    return {"a": a, "exp": e, "q": q, "softplus": softplus, "bce": bce, "loss": loss}


def backward(f, h, w_a, x, l):
    """Every adjoint, one formula per line (docs/math.md sections 8.1, 8.5-8.7)."""
    B = x.shape[0]
    q, bce = f["q"], f["bce"]
    sig = 1.0 / (1.0 + np.exp(-l))
    bar_l = (q / B)[:, :, None] * (sig - x[:, None, :])          # (B, K, D)
    bar_q = bce / B                                               # (B, K)
    r = (q * bar_q).sum(axis=1, keepdims=True)                    # (B, 1) sum_k q_ik bar_q_ik
    bar_a = q * (bar_q - r)                                       # (B, K)
    bar_w = h.T @ bar_a                                           # (2, K)
    bar_b = bar_a.sum(axis=0)                                     # (K,)
    bar_h = bar_a @ w_a.T                                         # (B, 2)
    return {"sigmoid": sig, "bar_l": bar_l, "bar_q": bar_q, "r": r[:, 0], "bar_q-r": bar_q - r,
            "bar_a": bar_a, "bar_w": bar_w, "bar_b": bar_b, "bar_h": bar_h}


def library(h, w_a, b_a, x, l):
    """The same adjoints from npvae/core/layers.py's forward/backward pairs, as npvae/core/model.py
    chains them (w_rec = 1)."""
    B = x.shape[0]
    a, c_a = L.linear_forward(h, w_a, b_a)
    q, c_q = L.softmax_forward(a)
    bce, c_bce = L.bce_logits_forward(l, x[:, None, :])
    bar_l = L.bce_logits_backward(q / B, c_bce)
    bar_a = L.softmax_backward(bce / B, c_q)
    bar_h, bar_w, bar_b = L.linear_backward(bar_a, c_a)
    return {"bar_l": bar_l, "bar_a": bar_a, "bar_w": bar_w, "bar_b": bar_b, "bar_h": bar_h}


def central_differences(name: str, step: float = 1e-6) -> np.ndarray:
    """dL_rec/d(name) by (L(v + step) - L(v - step)) / (2 step), entry by entry."""
    args = {"h": H.copy(), "w_a": W_A.copy(), "b_a": B_A.copy(), "x": X.copy(), "l": LOGITS.copy()}
    v = args[name]
    out = np.empty_like(v)
    for idx in np.ndindex(v.shape):
        old = v[idx]
        v[idx] = old + step
        up = forward(**args)["loss"]
        v[idx] = old - step
        down = forward(**args)["loss"]
        v[idx] = old
        out[idx] = (up - down) / (2 * step)
    return out


def verdict(err: float) -> str:
    """'below 1e-9' (the exact value depends on the machine's rounding), else the value."""
    return "below 1e-9" if err < 1e-9 else f"{err:.1e}: TOO LARGE"


def report() -> tuple[str, float]:
    """The printed text and the largest error of the two checks."""
    f = forward(H, W_A, B_A, X, LOGITS)
    b = backward(f, H, W_A, X, LOGITS)
    rows = [
        "inputs (rows: image i = 1, 2; columns: component k = 1, 2, 3 or pixel j = 1, 2)",
        f"  h                                      (B,2)  {fmt(H)}",
        f"  W_a                                    (2,K)  {fmt(W_A)}",
        f"  b_a                                    (K)    {fmt(B_A)}",
        f"  x                                      (B,D)  {fmt(X)}",
        f"  l_1k (image 1, k = 1, 2, 3)            (K,D)  {fmt(LOGITS[0])}",
        f"  l_2k (image 2, k = 1, 2, 3)            (K,D)  {fmt(LOGITS[1])}",
        "forward",
        f"  a = h W_a + b_a                        (B,K)  {fmt(f['a'])}",
        f"  exp(a)                                 (B,K)  {fmt(f['exp'])}",
        f"  sum_k exp(a_ik)                        (B)    {fmt(f['exp'].sum(axis=1))}",
        f"  q = exp(a) / sum_k exp(a_ik)           (B,K)  {fmt(f['q'])}",
        f"  softplus(l_1k)                         (K,D)  {fmt(f['softplus'][0])}",
        f"  softplus(l_2k)                         (K,D)  {fmt(f['softplus'][1])}",
        f"  BCE_ik = sum_j softplus(l) - x l       (B,K)  {fmt(f['bce'])}",
        f"  q_ik BCE_ik                            (B,K)  {fmt(f['q'] * f['bce'])}",
        f"  L_rec = (1/B) sum_ik q_ik BCE_ik       ()     {fmt(f['loss'])}",
        "backward",
        f"  bar_q = BCE / B                        (B,K)  {fmt(b['bar_q'])}",
        f"  q_ik bar_q_ik                          (B,K)  {fmt(f['q'] * b['bar_q'])}",
        f"  r_i = sum_k q_ik bar_q_ik              (B)    {fmt(b['r'])}",
        f"  bar_q - r                              (B,K)  {fmt(b['bar_q-r'])}",
        f"  bar_a = q (bar_q - r)                  (B,K)  {fmt(b['bar_a'])}",
        f"  row sums of bar_a                      (B)    {fmt(b['bar_a'].sum(axis=1))}",
        f"  bar_W_a = h^T bar_a                    (2,K)  {fmt(b['bar_w'])}",
        f"  bar_b_a = sum_i bar_a_i                (K)    {fmt(b['bar_b'])}",
        f"  bar_h = bar_a W_a^T                    (B,2)  {fmt(b['bar_h'])}",
        f"  sigmoid(l_1k)                          (K,D)  {fmt(b['sigmoid'][0])}",
        f"  sigmoid(l_2k)                          (K,D)  {fmt(b['sigmoid'][1])}",
        f"  bar_l_1k = (q_1k / B)(sigmoid - x_1)   (K,D)  {fmt(b['bar_l'][0])}",
        f"  bar_l_2k = (q_2k / B)(sigmoid - x_2)   (K,D)  {fmt(b['bar_l'][1])}",
    ]
    lib = library(H, W_A, B_A, X, LOGITS)
    worst_lib = max(float(np.max(np.abs(lib[k] - b[k]))) for k in lib)
    numeric = {"bar_l": central_differences("l"), "bar_w": central_differences("w_a"),
               "bar_b": central_differences("b_a"), "bar_h": central_differences("h")}
    worst_num = max(float(np.max(np.abs(numeric[k] - b[k]))) for k in numeric)
    rows += ["checks: largest absolute difference from the adjoints above",
             f"  library layer pairs (npvae/core/layers.py)                  {verdict(worst_lib)}",
             f"  central differences (bar_l, bar_W_a, bar_b_a, bar_h)   {verdict(worst_num)}"]
    return "\n".join(rows), max(worst_lib, worst_num)


def markdown() -> str:
    """The fenced block docs/math.md holds between the worked markers: the printed text."""
    return f"```\n{report()[0]}\n```"


def main(argv=None) -> int:
    ap = C.make_parser("worked_backward", __doc__)
    ap.add_argument("--update", type=Path, metavar="FILE",
                    help="rewrite the marked block of FILE (docs/math.md) with this output")
    args = ap.parse_args(argv)
    text, worst = report()
    if args.update:
        changed = C.update_block(args.update, "worked", markdown())
        print(f"{args.update}: {'updated' if changed else 'already up to date'}")
    else:
        print(text)
    return 0 if worst < 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
