"""Model gmm's convolutional encoder and decoder (Config.encoder / decoder = "conv"), built
from the layer pairs of conv.py (docs/math.md, sections 15 and 16).

Symbols: B images of S x S pixels (D = S^2), L = len(conv_channels) layers with channels
Ch[0..L-1] (Ch[-1] := 1, the image), s = S / 2^L the side of the smallest feature maps.
Every layer is a 3x3 kernel at stride 2 with padding 1, which maps a side n to n / 2 (n even),
and its transpose, which maps n / 2 back to n (out_hw = 2 n / 2; its default would be n - 1).

    encoder   x (B, D) -> (B, 1, S, S) -> [conv2d -> lrelu] for i = 0..L-1
              -> (B, Ch[L-1], s, s) -> flatten (B, Ch[L-1] s s)         then the dense trunk
    decoder   the decoder MLP, its last layer d.. -> Ch[L-1] s s followed by lrelu, then
              (B, Ch[L-1] s s) -> (B, Ch[L-1], s, s) -> [conv2d_transpose -> lrelu] for
              i = L-1..1 -> conv2d_transpose i = 0 (no lrelu: logits) (B, 1, S, S) -> (B, D)

At 28 x 28 with conv_channels (32, 64): the encoder makes 32 x 14 x 14, then 64 x 7 x 7 = 3136
features for the trunk; the decoder mirrors it, 3136 -> 64 x 7 x 7 -> 32 x 14 x 14 -> 1 x 28 x 28.
Stride-2 convolutions instead of pooling: the down- and upsampling is learned, and the decoder's
transposed convolutions are exactly the encoder's layers run backwards (the same kernel shapes).

Parameters: enc_conv{i}.W (Ch[i], Ch[i-1], 3, 3), enc_conv{i}.b (Ch[i],); dec_conv{i}.W
(Ch[i], Ch[i-1], 3, 3) in conv2d's layout (the transposed layer's input channels first),
dec_conv{i}.b (Ch[i-1],). `ops` are conv.py's keyword arguments gather= and scatter= (the
engine passes its Numba im2col / col2im); by default conv.py's NumPy ones.
"""
from __future__ import annotations

from . import conv as C
from . import layers as L

KERNEL, STRIDE, PAD = 3, 2, 1


def _sides(cfg) -> tuple[int, int]:
    """(S, s): the image side and the side of the smallest feature maps, S / 2^L."""
    S = round(cfg.input_dim ** 0.5)
    return S, S // 2 ** len(cfg.conv_channels)


def features(cfg) -> int:
    """Ch[L-1] s s: the width of the flattened smallest feature maps."""
    return cfg.conv_channels[-1] * _sides(cfg)[1] ** 2


def encoder_out(cfg) -> int:
    """The dense trunk's input width: the features with a conv encoder, else the D pixels."""
    return features(cfg) if cfg.encoder == "conv" else cfg.input_dim


def decoder_in(cfg) -> int:
    """The decoder MLP's output width: the features with a conv decoder, else the D logits."""
    return features(cfg) if cfg.decoder == "conv" else cfg.input_dim


def arrays(cfg, prefix: str):
    """(name, shape) of the kernels and biases of prefix "enc_conv" or "dec_conv", i = 0..L-1."""
    chans = (1, *cfg.conv_channels)
    for i in range(len(cfg.conv_channels)):
        yield f"{prefix}{i}.W", (chans[i + 1], chans[i], KERNEL, KERNEL)
        yield f"{prefix}{i}.b", ((chans[i + 1],) if prefix == "enc_conv" else (chans[i],))


# ------------------------------------------------------------------------- encoder
def encoder_forward(p, x, cfg, **ops):
    """x (B, D) -> the flattened features (B, Ch[L-1] s s) and the cache."""
    S = _sides(cfg)[0]
    h, c_in = C.unflatten_forward(x, (1, S, S))                          # (B, 1, S, S)
    layers = []
    for i in range(len(cfg.conv_channels)):
        h, c_conv = C.conv2d_forward(h, p[f"enc_conv{i}.W"], p[f"enc_conv{i}.b"], STRIDE, PAD,
                                     **ops)                              # (B, Ch[i], n/2, n/2)
        h, c_act = L.lrelu_forward(h)
        layers.append((c_conv, c_act))
    h, c_out = C.flatten_forward(h)                                      # (B, Ch[L-1] s s)
    return h, (c_in, layers, c_out)


def encoder_backward(dh, cache, g):
    """dh (B, Ch[L-1] s s) -> writes the enc_conv gradients into g; returns dx (B, D)."""
    c_in, layers, c_out = cache
    dh = C.flatten_backward(dh, c_out)                                   # (B, Ch[L-1], s, s)
    for i in reversed(range(len(layers))):
        c_conv, c_act = layers[i]
        dh = L.lrelu_backward(dh, c_act)                                 # (B, Ch[i], n/2, n/2)
        dh, g[f"enc_conv{i}.W"][...], g[f"enc_conv{i}.b"][...] = C.conv2d_backward(
            dh, c_conv)                                                  # (B, Ch[i-1], n, n)
    return C.unflatten_backward(dh, c_in)                                # (B, D)


# ------------------------------------------------------------------------- decoder
def decoder_forward(p, h, cfg, **ops):
    """h (B, Ch[L-1] s s), the decoder MLP's output after its lrelu -> logits (B, D) and
    the cache."""
    s = _sides(cfg)[1]
    h, c_in = C.unflatten_forward(h, (cfg.conv_channels[-1], s, s))      # (B, Ch[L-1], s, s)
    layers = []
    for i in reversed(range(len(cfg.conv_channels))):
        n = 2 * h.shape[2]
        h, c_conv = C.conv2d_transpose_forward(h, p[f"dec_conv{i}.W"], p[f"dec_conv{i}.b"],
                                               STRIDE, PAD, (n, n), **ops)  # (B, Ch[i-1], n, n)
        c_act = None
        if i > 0:
            h, c_act = L.lrelu_forward(h)
        layers.append((i, c_conv, c_act))
    l, c_out = C.flatten_forward(h)                                      # (B, D)
    return l, (c_in, layers, c_out)


def decoder_backward(dl, cache, g):
    """dl (B, D) -> writes the dec_conv gradients into g; returns the gradient of the decoder
    MLP's output (B, Ch[L-1] s s)."""
    c_in, layers, c_out = cache
    dh = C.flatten_backward(dl, c_out)                                   # (B, 1, S, S)
    for i, c_conv, c_act in reversed(layers):                            # i = 0, 1, .., L-1
        if c_act is not None:
            dh = L.lrelu_backward(dh, c_act)                             # (B, Ch[i-1], n, n)
        dh, g[f"dec_conv{i}.W"][...], g[f"dec_conv{i}.b"][...] = C.conv2d_transpose_backward(
            dh, c_conv)                                                  # (B, Ch[i], n/2, n/2)
    return C.unflatten_backward(dh, c_in)                                # (B, Ch[L-1] s s)
