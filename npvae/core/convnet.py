"""Model gmm's convolutional encoder and decoder (Config.encoder / decoder = "conv"), built
from the layer pairs of conv.py (docs/math.md, sections 15 and 16).

Symbols: B images of H x W pixels with C channels (cfg.shape = (H, W, C); C 1 grey, 3 RGB),
each a row of D = C H W values channel after channel; L = len(conv_channels) layers with
channels Ch[0..L-1] (Ch[-1] := C, the image's); h = H / 2^L and w = W / 2^L the height and
width of the smallest feature maps. Every layer is a 3x3 kernel at stride 2 with padding 1,
which maps a side n to n / 2 (n even), and its transpose, which maps n / 2 back to n
(out_hw = 2 n / 2 along each axis; its default would be n - 1). In the comments m x n is
the larger of a layer's two sizes (its input in the encoder, its output in the decoder).

    encoder   x (B, D) -> (B, C, H, W) -> [conv2d -> lrelu] for i = 0..L-1
              -> (B, Ch[L-1], h, w) -> flatten (B, Ch[L-1] h w)         then the dense trunk
    decoder   the decoder MLP, its last layer d.. -> Ch[L-1] h w followed by lrelu, then
              (B, Ch[L-1] h w) -> (B, Ch[L-1], h, w) -> [conv2d_transpose -> lrelu] for
              i = L-1..1 -> conv2d_transpose i = 0 (no lrelu: logits) (B, C, H, W) -> (B, D)

At 28 x 28 grey with conv_channels (32, 64): the encoder makes 32 x 14 x 14, then 64 x 7 x 7 =
3136 features for the trunk; the decoder mirrors it, 3136 -> 64 x 7 x 7 -> 32 x 14 x 14 ->
1 x 28 x 28. On 32 x 48 RGB images: 3 x 32 x 48 -> 32 x 16 x 24 -> 64 x 8 x 12 = 6144 features.
Stride-2 convolutions instead of pooling: the down- and upsampling is learned, and the decoder's
transposed convolutions are exactly the encoder's layers run backwards (the same kernel shapes).

Parameters: enc_conv{i}.W (Ch[i], Ch[i-1], 3, 3), enc_conv{i}.b (Ch[i],) (enc_conv0.W is
(Ch[0], C, 3, 3)); dec_conv{i}.W (Ch[i], Ch[i-1], 3, 3) in conv2d's layout (the transposed
layer's input channels first), dec_conv{i}.b (Ch[i-1],) (dec_conv0 makes the C channels of
the logits). `ops` are conv.py's keyword arguments gather= and scatter= (the engine passes its
Numba im2col / col2im); by default conv.py's NumPy ones.
"""
from __future__ import annotations

from . import conv as C
from . import layers as L

KERNEL, STRIDE, PAD = 3, 2, 1


def _sides(cfg) -> tuple[int, int, int, int, int]:
    """(C, H, W, h, w): the image's channels, height and width, and the height and width of
    the smallest feature maps, H / 2^L and W / 2^L."""
    H, W, C = cfg.shape
    halvings = 2 ** len(cfg.conv_channels)
    return C, H, W, H // halvings, W // halvings


def features(cfg) -> int:
    """Ch[L-1] h w: the width of the flattened smallest feature maps."""
    _, _, _, h, w = _sides(cfg)
    return cfg.conv_channels[-1] * h * w


def encoder_out(cfg) -> int:
    """The dense trunk's input width: the features with a conv encoder, else the D values."""
    return features(cfg) if cfg.encoder == "conv" else cfg.input_dim


def decoder_in(cfg) -> int:
    """The decoder MLP's output width: the features with a conv decoder, else the D logits."""
    return features(cfg) if cfg.decoder == "conv" else cfg.input_dim


def arrays(cfg, prefix: str):
    """(name, shape) of the kernels and biases of prefix "enc_conv" or "dec_conv", i = 0..L-1."""
    chans = (_sides(cfg)[0], *cfg.conv_channels)                        # Ch[-1] = C
    for i in range(len(cfg.conv_channels)):
        yield f"{prefix}{i}.W", (chans[i + 1], chans[i], KERNEL, KERNEL)
        yield f"{prefix}{i}.b", ((chans[i + 1],) if prefix == "enc_conv" else (chans[i],))


# ------------------------------------------------------------------------- encoder
def encoder_forward(p, x, cfg, **ops):
    """x (B, D) -> the flattened features (B, Ch[L-1] h w) and the cache."""
    Cin, H, W, _, _ = _sides(cfg)
    h, c_in = C.unflatten_forward(x, (Cin, H, W))                        # (B, C, H, W)
    layers = []
    for i in range(len(cfg.conv_channels)):
        h, c_conv = C.conv2d_forward(h, p[f"enc_conv{i}.W"], p[f"enc_conv{i}.b"], STRIDE, PAD,
                                     **ops)                              # (B, Ch[i], m/2, n/2)
        h, c_act = L.lrelu_forward(h)
        layers.append((c_conv, c_act))
    h, c_out = C.flatten_forward(h)                                      # (B, Ch[L-1] h w)
    return h, (c_in, layers, c_out)


def encoder_backward(dh, cache, g):
    """dh (B, Ch[L-1] h w) -> writes the enc_conv gradients into g; returns dx (B, D)."""
    c_in, layers, c_out = cache
    dh = C.flatten_backward(dh, c_out)                                   # (B, Ch[L-1], h, w)
    for i in reversed(range(len(layers))):
        c_conv, c_act = layers[i]
        dh = L.lrelu_backward(dh, c_act)                                 # (B, Ch[i], m/2, n/2)
        dh, g[f"enc_conv{i}.W"][...], g[f"enc_conv{i}.b"][...] = C.conv2d_backward(
            dh, c_conv)                                                  # (B, Ch[i-1], m, n)
    return C.unflatten_backward(dh, c_in)                                # (B, D)


# ------------------------------------------------------------------------- decoder
def decoder_forward(p, h, cfg, **ops):
    """h (B, Ch[L-1] h w), the decoder MLP's output after its lrelu -> logits (B, D) and
    the cache."""
    _, _, _, hs, ws = _sides(cfg)
    h, c_in = C.unflatten_forward(h, (cfg.conv_channels[-1], hs, ws))    # (B, Ch[L-1], h, w)
    layers = []
    for i in reversed(range(len(cfg.conv_channels))):
        m, n = 2 * h.shape[2], 2 * h.shape[3]
        h, c_conv = C.conv2d_transpose_forward(h, p[f"dec_conv{i}.W"], p[f"dec_conv{i}.b"],
                                               STRIDE, PAD, (m, n), **ops)  # (B, Ch[i-1], m, n)
        c_act = None
        if i > 0:
            h, c_act = L.lrelu_forward(h)
        layers.append((i, c_conv, c_act))
    l, c_out = C.flatten_forward(h)                                      # (B, D)
    return l, (c_in, layers, c_out)


def decoder_backward(dl, cache, g):
    """dl (B, D) -> writes the dec_conv gradients into g; returns the gradient of the decoder
    MLP's output (B, Ch[L-1] h w)."""
    c_in, layers, c_out = cache
    dh = C.flatten_backward(dl, c_out)                                   # (B, C, H, W)
    for i, c_conv, c_act in reversed(layers):                            # i = 0, 1, .., L-1
        if c_act is not None:
            dh = L.lrelu_backward(dh, c_act)                             # (B, Ch[i-1], m, n)
        dh, g[f"dec_conv{i}.W"][...], g[f"dec_conv{i}.b"][...] = C.conv2d_transpose_backward(
            dh, c_conv)                                                  # (B, Ch[i], m/2, n/2)
    return C.unflatten_backward(dh, c_in)                                # (B, Ch[L-1] h w)
