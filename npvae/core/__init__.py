"""The settings and the model math, in plain NumPy: the one Config dataclass (every setting
with its default, help text and check, declared with settings.py), the layer pairs
(layers.py) and the convolutional ones (conv.py), the flat parameter buffer (params.py), the
frozen noise (noise.py), AdamW (optim.py), the pieces both models share (blocks.py), the
seed's mixture model and model "gmm" (model.py, gmm.py; model.py also picks one by
cfg.model), gmm's conv encoder and decoder (convnet.py), the consistency term between two
views of an image and the mean teacher (consistency.py), gmm's tau classifier mapping
K >= C components to the classes (tau.py) and sampling from the prior
(sampling.py). This is the readable reference every faster path is tested against.
It imports only NumPy and itself: nothing else in npvae.
"""
