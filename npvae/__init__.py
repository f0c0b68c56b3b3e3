"""npvae: a semi-supervised mixture-prior VAE in NumPy with hand-written backprop.

Public API (shapes in the docstrings):
    Config                      every setting, defaults = the mixture_k10 run
    init_params(cfg, rng)       -> Params (flat buffer with named views)
    draw_noise(cfg, B, rng)     -> Noise (reparameterisation eps, dropout masks)
    loss_and_grads(p, x, y, noise, cfg) -> (loss, grads, terms)
    evaluate(p, x, cfg)         -> (Outputs, terms) in eval mode (z = mu, no dropout)
    MixtureVAEClassifier(...)   scikit-learn estimator: fit(X, y with -1 = unlabeled), predict, ...
"""
from npvae.engine import blas

blas.choose_kernels()  # before anything loads numpy: see npvae/engine/blas.py

from npvae.core.config import Config, ConfigError  # noqa: E402
from npvae.core.model import Outputs, evaluate, forward, backward, loss_and_grads, TERMS  # noqa: E402
from npvae.core.noise import Noise, draw_noise  # noqa: E402
from npvae.core.optim import AdamState, adamw_step, clip_by_global_norm  # noqa: E402
from npvae.core.params import Layout, Params, init_params  # noqa: E402
from npvae.estimator.classifier import MixtureVAEClassifier  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "Outputs", "evaluate", "forward", "backward",
           "loss_and_grads", "TERMS", "Noise", "draw_noise", "AdamState", "adamw_step",
           "clip_by_global_norm", "Layout", "Params", "init_params", "MixtureVAEClassifier"]
