"""The eight report figures (spec section 6), drawn from plain NumPy arrays.

Every function takes arrays (never a model), saves exactly one PNG, closes its figure,
creates the parent folders and returns the path it wrote. The Agg backend is forced so
plotting works on machines without a display.

Shapes used below: N images, K components, E epochs, D = H * W * C values per image (784 for
the 28 x 28 grey digits), each row channel after channel (images.image_of draws one). The
image figures take `shape` = (H, W, C) (cfg.shape; None: square grey when D is a square,
else each image as a strip); the label figures take the classes' names.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (must follow the backend choice)
import numpy as np  # noqa: E402

from npvae.training.fileio import atomic_write  # noqa: E402

from .images import image_of, square_shape  # noqa: E402

DPI = 110

# Figure key -> path relative to the run folder, exactly as in the seed report.
FIGURES: dict[str, str] = {
    "loss_comparison": "loss_comparison.png",
    "latent_spaces": "latent_spaces.png",
    "latent_by_component": "latent_by_component.png",
    "responsibility_histogram": "responsibility_histogram.png",
    "reconstructions": "model_reconstructions.png",
    "model_evolution": "visualizations/mixture/model_evolution.png",
    "embedding_divergence": "component_embedding_divergence.png",
    "reconstruction_by_component": "model_reconstruction_by_component.png",
}


def _save(fig, path) -> Path:
    """Tight-layout, write `fig` to `path` atomically (making parent folders), close it."""
    fig.tight_layout()
    try:
        return atomic_write(path, lambda fh: fig.savefig(fh, dpi=DPI, format="png"))
    finally:
        plt.close(fig)


def latent_points(mu, groups=None, group_name: str = "group") -> tuple[np.ndarray, dict]:
    """The 2-D points a latent scatter plots for the means mu (N, d), and how to name them.

    d = 2: mu itself. d > 2: the PCA projection of mu on its first two principal components
    (scikit-learn PCA), named in the title. d = 1: z[0] against the plot's groups (N,) (the
    digit or the component), jittered by +-0.3 so that points of one group do not overlap
    (a fixed generator: the same figure every time).
    Returns (points (N, 2), {"what": title text, "x": x-axis label, "y": y-axis label})."""
    mu = np.asarray(mu, dtype=float)
    if mu.ndim != 2 or mu.shape[1] < 1:
        raise ValueError(f"mu must have shape (N, d) with d >= 1, got {mu.shape}.")
    d = mu.shape[1]
    if d == 2:
        return mu, {"what": "Latent means", "x": "z[0] (mean)", "y": "z[1] (mean)"}
    if d == 1:
        g = np.zeros(len(mu)) if groups is None else np.asarray(groups, dtype=float)
        jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(mu))
        return np.column_stack([mu[:, 0], g + jitter]), {
            "what": "1-D latent means", "x": "z[0] (mean)", "y": f"{group_name} (jittered)"}
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2).fit(mu)
    share = 100 * pca.explained_variance_ratio_
    return pca.transform(mu), {"what": f"PCA projection of the {d}-D latent means",
                               "x": f"PC1 ({share[0]:.0f}% of variance)",
                               "y": f"PC2 ({share[1]:.0f}% of variance)"}


def _component_colors(K: int) -> np.ndarray:
    """K distinct colours: tab10 up to 10, tab20 up to 20, then a sampled hsv wheel."""
    if K <= 10:
        return plt.get_cmap("tab10")(np.arange(K))
    if K <= 20:
        return plt.get_cmap("tab20")(np.arange(K))
    return plt.get_cmap("hsv")(np.linspace(0, 1, K, endpoint=False))


def _legend_columns(n: int) -> int:
    """Columns of a legend of n entries: one up to 10, then about 20 entries a column."""
    return 1 if n <= 10 else max(2, -(-n // 20))


def _aspect(shape, D: int) -> float:
    """Width / height of one drawn image (a figure's cells follow it), kept within 1/4..4
    (an image of unknown shape is drawn as a strip: 4)."""
    shape = shape if shape is not None else square_shape(D)
    if shape is None:
        return 4.0
    return float(np.clip(shape[1] / shape[0], 0.25, 4.0))


def _image(ax, flat, shape=None, title: str | None = None, fontsize: int = 9) -> None:
    """Show one image row (D,) with values in [0, 1] at `shape` (see images.image_of): grey
    (C = 1) or colour (C = 3), without axes."""
    img = image_of(np.asarray(flat, dtype=float), shape)
    if img.ndim == 2:
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, aspect="equal" if img.shape[0] > 1
                  else "auto")                           # a strip fills its cell
    else:
        ax.imshow(np.clip(img, 0.0, 1.0))               # RGB: imshow takes [0, 1] as it is
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def plot_loss_comparison(history: dict, path) -> Path:
    """2x2 panels over epochs: total loss, reconstruction, KL (kl_z + kl_c), classification.

    history: {"epoch": [1..E], f"{split}_{term}": [E floats]} for split in (train, val).
    Both the training-split and validation-split curves are drawn in every panel.
    """
    epochs = np.asarray(history["epoch"])
    panels = [
        ("Total loss", lambda s: np.asarray(history[f"{s}_loss"], dtype=float)),
        ("Reconstruction", lambda s: np.asarray(history[f"{s}_recon"], dtype=float)),
        ("KL (KL_z + KL_c)", lambda s: np.asarray(history[f"{s}_kl_z"], dtype=float)
         + np.asarray(history[f"{s}_kl_c"], dtype=float)),
        ("Classification", lambda s: np.asarray(history[f"{s}_cls"], dtype=float)),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (title, series) in zip(axes.ravel(), panels):
        for split, style in (("train", "-"), ("val", "--")):
            label = "train" if split == "train" else "validation"
            ax.plot(epochs, series(split), style, marker="o", markersize=2.5, label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Loss terms per epoch (eval mode, weighted)")
    return _save(fig, path)


# The figure of model gmm runs' per-epoch figures (npvae/training/monitor.py), beside the
# eight: drawn and linked only when the history has those columns.
CURVES_FIGURE = "training_curves.png"
CURVES_COLUMNS = (("heldout_acc", "Held-out accuracy (shown, never used to choose)"),
                  ("cons_confident", "Share of confident targets (>= cons_threshold)"),
                  ("cons_loss", "Consistency term (weighted, per unlabeled image)"))


def has_curves(history: dict) -> bool:
    """Does the history hold any of training_curves.png's columns?"""
    return any(k in history for k, _ in CURVES_COLUMNS)


def plot_training_curves(history: dict, path) -> Path:
    """One panel per column of CURVES_COLUMNS the history holds, over epochs: the held-out
    accuracy, the share of unlabeled images whose target was confident and the consistency
    term as trained. history: {"epoch": [1..E], column: [E floats]}."""
    shown = [(k, title) for k, title in CURVES_COLUMNS if k in history]
    if not shown:
        raise ValueError("the history has none of the training curves' columns.")
    epochs = np.asarray(history["epoch"])
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.4), squeeze=False)
    for ax, (k, title) in zip(axes[0], shown):
        ax.plot(epochs, np.asarray(history[k], dtype=float), "-", marker="o", markersize=2.5)
        if k != "cons_loss":
            ax.set_ylim(-0.02, 1.02)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle("Per epoch, while training")
    return _save(fig, path)


def plot_latent_by_label(mu, y, path, classes=None, what: str = "digit") -> Path:
    """Scatter of the latent means mu (N, d) coloured by the true class y (N,); an image
    without a label (y = -1) is a grey point, "unlabeled" in the legend.

    classes: the classes' names (C,) (images.class_names); None: "0".."9" (or up to the
    largest label). what: the legend's title ("digit", "class")."""
    y = np.asarray(y).astype(int)
    if classes is None:
        classes = [str(c) for c in range(max(10, int(y.max(initial=-1)) + 1))]
    C = len(classes)
    pts, names = latent_points(mu, y, what)
    fig, ax = plt.subplots(figsize=(7.5, 6) if C <= 10 else (9, 6))
    colors = _component_colors(C)                       # tab10 for up to 10 classes
    unlabeled = y < 0
    if unlabeled.any():                  # drawn first, so the labeled points stay on top
        ax.scatter(pts[unlabeled, 0], pts[unlabeled, 1], s=4, alpha=0.4, color="0.6",
                   label="unlabeled")
    for c in range(C):
        sel = y == c
        if sel.any():
            ax.scatter(pts[sel, 0], pts[sel, 1], s=4, alpha=0.6, color=colors[c],
                       label=classes[c])
    # Legend outside the axes so it never hides points.
    ax.legend(title=what, markerscale=3, fontsize=8 if C <= 10 else 7, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), ncol=_legend_columns(C))
    if np.asarray(mu).shape[1] == 1:                     # y is the class (jittered): name it
        ticks = (["unlabeled"] if unlabeled.any() else []) + list(classes)
        ax.set_yticks(np.arange(-1 if unlabeled.any() else 0, C), ticks,
                      fontsize=7 if C <= 10 else 5)
    ax.set_xlabel(names["x"])
    ax.set_ylabel(names["y"])
    ax.set_title(f"{names['what']} by true label, N={len(y)}")
    return _save(fig, path)


def plot_latent_by_component(mu, comp, K: int, path, classes=None) -> Path:
    """Scatter of mu (N, d) coloured by the hard assignment comp = argmax_k q(c=k|x) (N,).
    classes: (K,) names of the components' classes when component k is class k (model gmm),
    shown beside c{k} in the legend; None: the components only."""
    comp = np.asarray(comp).astype(int)
    pts, names = latent_points(mu, comp, "component")
    if comp.size and (comp.min() < 0 or comp.max() >= K):
        raise ValueError(f"comp values must lie in 0..{K - 1}, got {comp.min()}..{comp.max()}.")
    colors = _component_colors(K)
    fig, ax = plt.subplots(figsize=(8, 6) if K <= 10 else (9, 6))
    for k in range(K):
        sel = comp == k
        if sel.any():  # empty components get no legend entry: the legend lists used ones
            name = f"c{k}" if classes is None else f"c{k} {classes[k]}"
            ax.scatter(pts[sel, 0], pts[sel, 1], s=4, alpha=0.6, color=colors[k],
                       label=f"{name} ({sel.sum()})")
    ax.legend(title="component (count)", markerscale=3, fontsize=7, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), ncol=1 if K <= 10 else 2)
    ax.set_xlabel(names["x"])
    ax.set_ylabel(names["y"])
    ax.set_title(f"{names['what']} by argmax_k q(c=k|x), K={K}")
    return _save(fig, path)


def plot_responsibility_histogram(conf, path) -> Path:
    """Histogram (50 bins) of conf = max_k q(c=k|x) (N,), dashed vertical line at the mean."""
    conf = np.asarray(conf, dtype=float)
    mean = float(conf.mean())
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.hist(conf, bins=50, range=(0.0, 1.0), color="tab:blue", alpha=0.8, edgecolor="white")
    ax.axvline(mean, color="black", linestyle="--", label=f"mean = {mean:.3f}")
    ax.set_xlabel("max_k q(c=k|x)")
    ax.set_ylabel("count")
    ax.set_title(f"Responsibility confidence, N={conf.size}")
    ax.legend()
    return _save(fig, path)


def plot_reconstructions(x, recon, path, n: int = 8, shape=None) -> Path:
    """Originals (row 1) above weighted reconstructions sigmoid(sum_k q_k l_k) (row 2).

    x, recon: (m, D) in [0, 1]; the first min(n, m) images are drawn at shape (H, W, C).
    """
    x, recon = np.asarray(x), np.asarray(recon)
    n = min(n, len(x))
    wide = _aspect(shape, x.shape[1])
    fig, axes = plt.subplots(2, n, figsize=(1.4 * wide * n + 0.4, 3.4), squeeze=False)
    for j in range(n):
        _image(axes[0, j], x[j], shape)
        _image(axes[1, j], recon[j], shape)
    # Row labels on the left (titles would collide with the row below).
    axes[0, 0].set_ylabel("original")
    axes[1, 0].set_ylabel("weighted")
    fig.suptitle("Originals (top) and weighted reconstructions (bottom)")
    return _save(fig, path)


def plot_model_evolution(pi_hist, usage_hist, path) -> Path:
    """Top: prior weights pi_k per epoch (E, K). Bottom: mean q(c=k|x) on the training split."""
    pi_hist = np.asarray(pi_hist, dtype=float)
    usage_hist = np.asarray(usage_hist, dtype=float)
    E, K = pi_hist.shape
    epochs = np.arange(1, E + 1)
    colors = _component_colors(K)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    for k in range(K):
        top.plot(epochs, pi_hist[:, k], color=colors[k], label=f"c{k}")
        bottom.plot(epochs, usage_hist[:, k], color=colors[k], label=f"c{k}")
    top.set_title("Prior weights pi_k")
    top.set_ylabel("pi_k")
    bottom.set_title("Mean usage q(c=k|x) over the training split")
    bottom.set_ylabel("mean q(c=k|x)")
    bottom.set_xlabel("epoch")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="y", useOffset=False)
    # pi often stays within float noise of uniform (the Dirichlet term pins it): give the
    # panel a visible span instead of letting matplotlib zoom into 1e-8 wiggles.
    lo, hi = float(pi_hist.min()), float(pi_hist.max())
    if hi - lo < 0.02:
        mid = 0.5 * (lo + hi)
        top.set_ylim(mid - 0.02, mid + 0.02)
    # One shared legend to the right keeps both panels readable for K up to ~20.
    top.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
               ncol=1 if K <= 10 else 2)
    return _save(fig, path)


def plot_embedding_divergence(embed, path, what: str = "Component embedding distances",
                              classes=None) -> Path:
    """Heatmap of the K x K Euclidean distances ||e_i - e_j|| between embeddings e (K, 8)
    (model gmm: between the component means m_k, `what` naming them in the title).
    classes: (K,) names beside the components' ticks when component k is class k (model gmm).

    The title gives mean/std/min/max over the K(K-1)/2 distinct pairs (i < j).
    """
    e = np.asarray(embed, dtype=float)
    K = e.shape[0]
    dist = np.sqrt(((e[:, None, :] - e[None, :, :]) ** 2).sum(-1))
    pairs = dist[np.triu_indices(K, k=1)]
    if pairs.size:
        stats = (f"pairwise (i<j): mean {pairs.mean():.4f}, std {pairs.std():.4f}, "
                 f"min {pairs.min():.4f}, max {pairs.max():.4f}")
    else:
        stats = "only one component: no pairs"
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(dist, cmap="viridis")
    fig.colorbar(im, ax=ax, label="Euclidean distance")
    ticks = np.arange(K)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    names = [f"c{k}" if classes is None else f"c{k} {classes[k]}" for k in ticks]
    ax.set_xticklabels(names, fontsize=7, rotation=90 if K > 10 or classes is not None else 0)
    ax.set_yticklabels(names, fontsize=7)
    ax.set_title(f"{what}\n{stats}", fontsize=10)
    return _save(fig, path)


def plot_reconstruction_by_component(x, comp_probs, q, weighted, path,
                                     title: str = "Reconstruction by component: sigmoid(l_k) "
                                                  "titled with q(c=k|x)",
                                     shape=None) -> Path:
    """Per-component decodings of n images (model gmm: each image's z moved to every
    component, z - m_c(x) + m_k, `title` saying so).

    x (n, D); comp_probs (n, K, D) = sigmoid(l_k); q (n, K); weighted (n, D); images drawn
    at shape (H, W, C). Row i: original, then sigmoid(l_ik) for every k titled with q_ik,
    then the weighted reconstruction sigmoid(sum_k q_ik l_ik).
    """
    x, comp_probs = np.asarray(x), np.asarray(comp_probs)
    q, weighted = np.asarray(q, dtype=float), np.asarray(weighted)
    n, K = q.shape
    D = x.shape[1]
    if comp_probs.shape[:2] != (n, K):
        raise ValueError(f"comp_probs must have shape (n, K, D) = ({n}, {K}, {D}), "
                         f"got {comp_probs.shape}.")
    cols = K + 2
    wide = max(1.0, _aspect(shape, D))          # narrower cells would crowd their titles
    fig, axes = plt.subplots(n, cols, figsize=(1.15 * wide * cols, 1.35 * n + 0.6),
                             squeeze=False)
    for i in range(n):
        _image(axes[i, 0], x[i], shape, "original", fontsize=8)
        for k in range(K):
            _image(axes[i, k + 1], comp_probs[i, k], shape, f"c{k} q={q[i, k]:.2f}",
                   fontsize=7)
        _image(axes[i, cols - 1], weighted[i], shape, "weighted", fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)
