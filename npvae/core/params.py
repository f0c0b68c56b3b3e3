"""All parameters in one flat buffer, with named views (llm.c style).

The optimiser, gradient clipping and checkpoints work on `params.flat` as single operations;
the model reads and writes `params["enc0.W"]` etc., which are views into that buffer.
Gradients use the same layout (`params.zeros_like()`).

Names and shapes (B = batch, D = input_dim, H = hidden_dims, d = latent_dim, K, E = embed_dim,
P = pathway_dim, G = decoder_dims, C = classifier_dims):

    encoder trunk   enc{i}.W (H[i-1], H[i])   enc{i}.b (H[i],)       with H[-1] := D
    encoder heads   enc_c.W (H[-1], K)  enc_mu.W (H[-1], d)  enc_lv.W (H[-1], d)  (+ .b)
    prior           pi_logits (K,)      embed (K, E)
    decoder         dec_z.W (d, P)      dec_e.W (E, P)   (+ .b)      the two pathways
                    dec{i}.W  first (2P, G[0]) on concat(hz, hc), then G[i-1] -> G[i],
                    last G[-1] -> D (logits)
    classifier      cls{i}.W  d -> C[0] -> ... -> num_classes  (+ .b)

Model "gmm" (npvae/core/gmm.py) keeps the trunk and the mu / lv heads and has instead:

    prior           pi_logits (K,)      prior_mu (K, d)     prior_lv (K, d)   p(z|c) = N(m_c, e^lv_c)
    decoder         dec{i}.W  d -> G[0] -> ... -> D (logits), one decoder shared by all c

and, with encoder / decoder "conv" (npvae/core/convnet.py; images of cfg.shape = (Hi, Wi, Ci),
D = Ci Hi Wi, L = len(conv_channels), Ch = conv_channels, Ch[-1] := Ci, h = Hi / 2^L,
w = Wi / 2^L):

    conv encoder    enc_conv{i}.W (Ch[i], Ch[i-1], 3, 3)  enc_conv{i}.b (Ch[i],)   before enc0,
                    whose input is then Ch[L-1] h w wide
    conv decoder    the last dec{i} maps G[-1] -> Ch[L-1] h w, then dec_conv{i}.W (Ch[i],
                    Ch[i-1], 3, 3) (conv2d's layout)  dec_conv{i}.b (Ch[i-1],), i = L-1 .. 0
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import convnet
from .config import Config


@dataclass(frozen=True)
class Layout:
    """Where each named array lives in the flat buffer."""
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]
    size: int

    @classmethod
    def from_config(cls, cfg: Config) -> "Layout":
        names, shapes = [], []

        def dense(name, n_in, n_out):
            names.extend([f"{name}.W", f"{name}.b"])
            shapes.extend([(n_in, n_out), (n_out,)])

        def conv(prefix):                   # model gmm, encoder / decoder "conv"
            for name, shape in convnet.arrays(cfg, prefix):
                names.append(name)
                shapes.append(shape)

        if cfg.encoder == "conv":
            conv("enc_conv")
        dims = (convnet.encoder_out(cfg), *cfg.hidden_dims)
        for i in range(len(cfg.hidden_dims)):
            dense(f"enc{i}", dims[i], dims[i + 1])
        h = cfg.hidden_dims[-1]
        if cfg.model == "gmm":
            dense("enc_mu", h, cfg.latent_dim)
            dense("enc_lv", h, cfg.latent_dim)
            names.extend(["pi_logits", "prior_mu", "prior_lv"])
            shapes.extend([(cfg.K,), (cfg.K, cfg.latent_dim), (cfg.K, cfg.latent_dim)])
            dims = (cfg.latent_dim, *cfg.decoder_dims, convnet.decoder_in(cfg))
            for i in range(len(dims) - 1):
                dense(f"dec{i}", dims[i], dims[i + 1])
            if cfg.decoder == "conv":
                conv("dec_conv")
            return cls._packed(names, shapes)
        dense("enc_c", h, cfg.K)
        dense("enc_mu", h, cfg.latent_dim)
        dense("enc_lv", h, cfg.latent_dim)
        names.extend(["pi_logits", "embed"])
        shapes.extend([(cfg.K,), (cfg.K, cfg.embed_dim)])
        dense("dec_z", cfg.latent_dim, cfg.pathway_dim)
        dense("dec_e", cfg.embed_dim, cfg.pathway_dim)
        dims = (2 * cfg.pathway_dim, *cfg.decoder_dims, cfg.input_dim)
        for i in range(len(dims) - 1):
            dense(f"dec{i}", dims[i], dims[i + 1])
        dims = (cfg.latent_dim, *cfg.classifier_dims, cfg.num_classes)
        for i in range(len(dims) - 1):
            dense(f"cls{i}", dims[i], dims[i + 1])

        return cls._packed(names, shapes)

    @classmethod
    def _packed(cls, names, shapes) -> "Layout":
        sizes = [int(np.prod(s)) for s in shapes]
        offsets = tuple(int(o) for o in np.cumsum([0] + sizes[:-1]))
        return cls(tuple(names), tuple(shapes), offsets, int(sum(sizes)))

    def decay_mask(self, dtype=np.float32) -> np.ndarray:
        """(size,) 1 on Dense weight matrices, 0 on biases, pi_logits and embed (spec section 4).
        Convolution kernels (`*_conv{i}.W`) decay too: a kernel is the weight matrix W2
        (F, C kh kw) of its im2col product (docs/math.md, section 15), doing for every image
        position what a Dense matrix does for a row, so the same pull towards 0 regularises it
        (as in AdamW's usual setting, every weight but biases and norms); the prior's arrays
        and the biases stay free. The default config has no kernels, so its mask is the spec's."""
        mask = np.zeros(self.size, dtype=dtype)
        for name, shape, off in zip(self.names, self.shapes, self.offsets):
            if name.endswith(".W"):
                mask[off:off + int(np.prod(shape))] = 1
        return mask


class Params:
    """A flat buffer `flat` (size,) plus named views: `p["dec0.W"]` is a (64, 128) view."""

    def __init__(self, layout: Layout, flat: np.ndarray):
        assert flat.shape == (layout.size,)
        self.layout, self.flat = layout, flat
        self._views = {n: flat[o:o + int(np.prod(s))].reshape(s)
                       for n, s, o in zip(layout.names, layout.shapes, layout.offsets)}

    def __getitem__(self, name: str) -> np.ndarray:
        return self._views[name]

    def __iter__(self):
        return iter(self.layout.names)

    def items(self):
        return self._views.items()

    def zeros_like(self) -> "Params":
        return Params(self.layout, np.zeros_like(self.flat))

    def copy(self) -> "Params":
        return Params(self.layout, self.flat.copy())

    def astype(self, dtype) -> "Params":
        return Params(self.layout, self.flat.astype(dtype))

    def to_dict(self) -> dict[str, np.ndarray]:
        """Copies of the named arrays (for checkpoints and other frameworks)."""
        return {n: v.copy() for n, v in self._views.items()}

    @classmethod
    def from_dict(cls, layout: Layout, arrays: dict, dtype=np.float32) -> "Params":
        p = cls(layout, np.zeros(layout.size, dtype=dtype))
        for n, s in zip(layout.names, layout.shapes):
            if n not in arrays or tuple(np.shape(arrays[n])) != s:
                got = np.shape(arrays[n]) if n in arrays else "missing"
                raise ValueError(f"parameter {n}: expected shape {s}, got {got}.")
            p[n][...] = arrays[n]
        return p


def truncated_normal(rng: np.random.Generator, shape, std: float) -> np.ndarray:
    """N(0, 1) cut at +-2, rescaled so the result has standard deviation `std`.

    Resampling outside [-2, 2] leaves a distribution with std 0.8796; dividing by that
    constant restores the requested std (the variance-scaling convention of LeCun normal).
    """
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2
    return out * (std / 0.87962566103423978)


def fan_in(name: str, shape) -> float:
    """How many inputs each output entry of the layer sums (on average): n_in for a Dense
    (n_in, n_out); C kh kw for a conv2d kernel (F, C, kh, kw); F kh kw / s^2 for a transposed
    one (npvae/core/convnet.py: its F input channels, each pixel reached by kh kw / s^2 of the
    kernel's taps on average, 9/4 for 3x3 at stride 2)."""
    if len(shape) == 2:
        return shape[0]
    F, C, kh, kw = shape
    if name.startswith("dec_conv"):
        return F * kh * kw / convnet.STRIDE ** 2
    return C * kh * kw


def init_params(cfg: Config, rng: np.random.Generator) -> Params:
    """LeCun-normal Dense weights (std sqrt(1/fan_in), truncated at 2 std), zero biases,
    pi_logits = 0 (uniform pi), embeddings ~ N(0, 0.02^2) (spec section 2); model gmm:
    component means ~ N(0, I), log-variances 0. Convolution kernels as the Dense weights, with
    their own fan_in: std sqrt(1/fan_in) keeps each layer's outputs about as large as its
    inputs (a sum of fan_in products of unit-variance terms), whichever layer kind; the same
    rule as the Dense layers, so a conv and a dense network start at the same scale."""
    layout = Layout.from_config(cfg)
    p = Params(layout, np.zeros(layout.size, dtype=cfg.dtype))
    for name, shape in zip(layout.names, layout.shapes):
        if name.endswith(".W"):
            p[name][...] = truncated_normal(rng, shape, np.sqrt(1.0 / fan_in(name, shape)))
        elif name == "embed":
            p[name][...] = 0.02 * rng.standard_normal(shape)
        elif name == "prior_mu":           # model gmm: component means spread like N(0, I)
            p[name][...] = rng.standard_normal(shape)
    return p
