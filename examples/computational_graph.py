"""Draw the model's computational graph as a Mermaid flowchart (GitHub renders it), with the
shape of every array measured by running the model's own forward pass.

The nodes and edges follow npvae/core/model.py:forward. The shapes are not typed by hand: the
script runs npvae.core.model.forward (training mode) and the layer pairs on a model whose sizes
are all different numbers (B = 13, K = 7, D = 29, ...), reads the shapes of the arrays it
returns and of the parameter arrays, and writes each size back as its symbol (B, K, D, ...).
So a change of the model's shapes changes the drawing, and tests/test_docs.py fails until
docs/math.md shows the new one. Edge labels mark where the backward pass sums: a value used
by several consumers gets the sum of their adjoints; a broadcast forward (over K or over B)
is a sum over that axis backward.

What to expect: the Mermaid source on stdout, exactly the block in docs/math.md section 7;
--update FILE rewrites the block between the markers <!-- graph:begin --> and
<!-- graph:end --> in FILE instead. Takes about a second; writes nothing else.

    python examples/computational_graph.py [--update docs/math.md]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))       # examples/_common.py
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))   # npvae without installing

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
from npvae.core import layers as L  # noqa: E402
from npvae.core.config import Config  # noqa: E402
from npvae.core.model import forward  # noqa: E402
from npvae.core.noise import draw_noise  # noqa: E402
from npvae.core.params import init_params  # noqa: E402

# Every size a different number, so that each measured dimension names its symbol.
SIZES = dict(B=13, K=7, D=29, d=2, C=5, N1=23, N2=19, N3=17, E=11, P=3, G1=31, G2=37)


def measure() -> dict[str, tuple]:
    """Shapes of the graph's arrays, from one training-mode forward pass."""
    s = SIZES
    cfg = Config(input_dim=s["D"], hidden_dims=(s["N1"], s["N2"], s["N3"]), K=s["K"],
                 latent_dim=s["d"], embed_dim=s["E"], pathway_dim=s["P"],
                 decoder_dims=(s["G1"], s["G2"]), classifier_dims=(41, 43),
                 num_classes=s["C"], dtype="float64").validate()
    rng = np.random.default_rng(0)
    p = init_params(cfg, rng)
    x = rng.random((s["B"], s["D"]))
    y = np.full(s["B"], -1)
    noise = draw_noise(cfg, s["B"], rng)
    _, _, out, _ = forward(p, x, y, cfg, noise)
    bce, _ = L.bce_logits_forward(out.logits, x[:, None, :])
    B = s["B"]
    return {"x": x.shape, "h": (B, p["enc_c.W"].shape[0]), "a": out.q.shape, "q": out.q.shape,
            "mu": out.mu.shape, "lv": out.lv.shape, "eps": noise.eps.shape, "z": out.z.shape,
            "rho": p["pi_logits"].shape, "pi": out.pi.shape, "e": p["embed"].shape,
            "hz": (B, p["dec_z.W"].shape[1]), "he": (s["K"], p["dec_e.W"].shape[1]),
            "g": (B, s["K"], p["dec0.W"].shape[0]), "l": out.logits.shape,
            "bce": bce.shape, "o": out.cls_logits.shape, "usage": out.q.mean(axis=0).shape}


def symbolic(shape: tuple) -> str:
    """(13, 7, 6) -> '(B,K,2P)': each number named by the size it equals."""
    names = {v: k for k, v in SIZES.items()}
    names[2 * SIZES["P"]] = "2P"
    return "(" + ",".join(names[n] for n in shape) + ")" if shape else "()"


def mermaid() -> str:
    """The flowchart source (without the ``` fence)."""
    S = {k: symbolic(v) for k, v in measure().items()}
    D = Config()                                   # the default model's layer counts
    trunk = f"{len(D.hidden_dims)} × (dense, lrelu)"
    dec = ", ".join(["dense, lrelu"] * len(D.decoder_dims) + ["dense"])
    cls = f"{len(D.classifier_dims)} × (dense, lrelu, dropout), dense"
    # Node ids are words: Mermaid reads a node called o or x after --> as an edge style.
    nodes = {
        "img": f"x {S['x']}<br/>images", "trunk": f"encoder trunk<br/>{trunk}",
        "h": f"h {S['h']}", "a": f"a = h W_c + b_c {S['a']}", "q": f"q = softmax(a) {S['q']}",
        "mu": f"μ {S['mu']}", "lv": f"lv {S['lv']}", "eps": f"ϵ {S['eps']}<br/>noise",
        "masks": "χ dropout masks<br/>noise",
        "z": f"z = μ + exp(lv/2) ⊙ ϵ {S['z']}",
        "rho": f"ρ = pi_logits {S['rho']}", "pi": f"π = softmax(ρ) {S['pi']}",
        "emb": f"e {S['e']}<br/>embeddings",
        "hz": f"hᶻ = lrelu(z W_z + b_z) {S['hz']}", "he": f"hᵉ = lrelu(e W_e + b_e) {S['he']}",
        "g": f"g = [hᶻ_i, hᵉ_k] {S['g']}", "dec": f"decoder MLP<br/>{dec}",
        "logits": f"l {S['l']}<br/>logits", "bce": f"BCE {S['bce']}",
        "cls": f"classifier MLP<br/>{cls}", "clslogits": f"o {S['o']}<br/>class logits",
        "phat": f"p̂ = mean over i of q {S['usage']}",
        "Lrec": "L_rec", "Lklz": "L_klz", "Lklc": "L_klc", "Ldir": "L_dir", "Ldiv": "L_div",
        "Lcls": "L_cls", "loss": "L",
    }
    edges = [
        ("img", "trunk", ""), ("trunk", "h", ""),
        ("h", "a", "h feeds 3 heads: adjoints add"), ("a", "q", ""),
        ("h", "mu", ""), ("h", "lv", ""),
        ("mu", "z", ""), ("lv", "z", ""), ("eps", "z", ""),
        ("z", "hz", "z used twice: adjoints add"), ("z", "cls", ""), ("masks", "cls", ""),
        ("emb", "he", ""), ("rho", "pi", ""),
        ("hz", "g", "broadcast over K → backward Σ over K"),
        ("he", "g", "broadcast over B → backward Σ over B"),
        ("g", "dec", "B·K rows share the weights → Σ over B·K"), ("dec", "logits", ""),
        ("logits", "bce", ""), ("img", "bce", "x broadcast over K (data: no adjoint)"),
        ("bce", "Lrec", ""), ("q", "Lrec", "q used 3 times: adjoints add"),
        ("q", "Lklc", ""), ("pi", "Lklc", "π shared by B rows → Σ over B"),
        ("pi", "Ldir", ""), ("q", "phat", ""), ("phat", "Ldiv", ""),
        ("mu", "Lklz", ""), ("lv", "Lklz", ""), ("cls", "clslogits", ""),
        ("clslogits", "Lcls", ""),
        *((t, "loss", "") for t in ("Lrec", "Lklz", "Lklc", "Ldir", "Ldiv", "Lcls")),
    ]
    lines = ["flowchart TD"]
    lines += [f'    {k}["{v}"]' for k, v in nodes.items()]
    lines += [f'    {a} -->|"{t}"| {b}' if t else f"    {a} --> {b}" for a, b, t in edges]
    lines += ["    classDef param fill:#fde2c8,stroke:#c06000",
              "    classDef term fill:#d8ecd8,stroke:#2a7a2a",
              "    classDef noise fill:#e6e0f5,stroke:#5a3fa0",
              "    class rho,emb param", "    class Lrec,Lklz,Lklc,Ldir,Ldiv,Lcls,loss term",
              "    class eps,masks noise"]
    return "\n".join(lines)


def markdown() -> str:
    """The fenced Mermaid block, as docs/math.md holds it between the graph markers."""
    return f"```mermaid\n{mermaid()}\n```"


def main(argv=None) -> int:
    ap = C.make_parser("computational_graph", __doc__)
    ap.add_argument("--update", type=Path, metavar="FILE",
                    help="rewrite the marked block of FILE (e.g. docs/math.md)")
    args = ap.parse_args(argv)
    if args.update:
        changed = C.update_block(args.update, "graph", markdown())
        print(f"{args.update}: {'updated' if changed else 'already up to date'}")
    else:
        print(C.marked_block("graph", markdown()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
