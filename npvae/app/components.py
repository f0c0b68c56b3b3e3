"""The Components view: what each mixture component draws and which labels fall in it.

    component_images(p, cfg, mu, comp) -> (K, D)     one decoded image per component
    components_view(out, y_known, y, C, shape, classes) -> dict
                                                     usage, majority labels, confusion tables

The image of component c (probabilities in [0, 1]):
    model gmm (one decoder, prior N(m_c, diag)):   sigmoid(decoder(m_c)), the prior mean;
    the seed's model (a component-aware decoder):  sigmoid(l_c(z_c)) at z_c, the mean latent
        of the images assigned to c (argmax q), z = 0 for a component no image is assigned to.
These are the report's "reconstruction by component" decodings (npvae/reporting/summary.py,
decoded_by_component) taken at one z per component instead of per image.
"""
from __future__ import annotations

import base64

import numpy as np

from npvae.core import gmm
from npvae.core.layers import sigmoid
from npvae.core.model import decoder_forward

from .images import png_bytes


def component_images(p, cfg, mu, comp) -> np.ndarray:
    """(K, D) decoded image of every component (see the module doc)."""
    K = cfg.K
    if cfg.model == "gmm":
        z = p["prior_mu"].astype(np.float64)
        return sigmoid(gmm.decoder_forward(p.astype(np.float64), z, cfg)[0])   # (K, D)
    mu, comp = np.asarray(mu, np.float64), np.asarray(comp)
    z = np.zeros((K, mu.shape[1]))
    for c in range(K):
        if (comp == c).any():
            z[c] = mu[comp == c].mean(axis=0)
    logits, _ = decoder_forward(p.astype(np.float64), z, cfg)         # (K, K, D)
    return sigmoid(logits[np.arange(K), np.arange(K)])


def confusion(comp, labels, K: int, C: int) -> list[list[int]]:
    """(K, C) counts of images assigned to component k with label c (labels -1: unknown)."""
    comp, labels = np.asarray(comp), np.asarray(labels)
    known = labels >= 0
    table = np.zeros((K, C), np.int64)
    np.add.at(table, (comp[known], labels[known]), 1)
    return table.tolist()


def _majority(row: list[int]) -> int | None:
    return int(np.argmax(row)) if sum(row) else None


def components_view(out: dict, y_known, y, num_classes: int, shape=None,
                    classes=None) -> dict:
    """The view's JSON: per component its image (a PNG data URL at shape (H, W, C)), usage
    (share of all images whose most likely component it is), count, majority label among the
    labels given (and among the data's own labels when it has them); the confusion tables
    components x labels: "given" from labels.csv, "truth" from the data's own labels (None
    without); and "classes", the names of the labels (None: "0".."C-1")."""
    q = out["q"]
    K = q.shape[1]
    comp = q.argmax(axis=1)
    counts = np.bincount(comp, minlength=K)
    given = confusion(comp, y_known, K, num_classes)
    truth = None if y is None else confusion(comp, y, K, num_classes)
    images = out.get("comp_images")
    rows = []
    for c in range(K):
        img = None if images is None else (
            "data:image/png;base64," + base64.b64encode(png_bytes(images[c], shape)).decode())
        rows.append({"component": c, "image": img, "count": int(counts[c]),
                     "usage": round(float(counts[c]) / max(1, len(comp)), 4),
                     "majority": _majority(given[c]), "labelled": int(sum(given[c])),
                     "truth_majority": None if truth is None else _majority(truth[c])})
    names = list(classes) if classes else [str(c) for c in range(num_classes)]
    return {"K": K, "num_classes": num_classes, "classes": names, "components": rows,
            "given": given, "truth": truth}
