"""From trained weights to the report's numbers and figures (spec sections 5-6).

    model_outputs(p, x, cfg)                      eval-mode q, mu, cls logits for every image
    predictors(p, cfg, outputs, y_seen)           {name: class probabilities (N, C)}
    summarize(p, cfg, x, y, splits, history, ...) the Summary Metrics (a flat dict)
    test_rows(p, cfg, x_test, y_test, y, splits, outputs)   the test set's rows, if any
    draw_figures(run_dir, p, cfg, x, y, splits, history)   the eight PNGs at the seed's paths
                                                  (images at cfg.shape, classes by name)

Both npvae/runs/runner.py (after training) and `python -m npvae.report RUN_DIR` (from a checkpoint)
use these, so a re-rendered report is the same report.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from npvae.core import gmm
from npvae.core import tau as T
from npvae.core.config import Config
from npvae.core.layers import sigmoid, softmax_forward
from npvae.core.model import evaluate, responsibilities
from npvae.core.params import Params
from npvae.training.data import Splits

from . import baselines as B
from . import metrics as M
from . import plots
from .images import class_names


def model_outputs(p: Params, x, cfg: Config) -> dict[str, np.ndarray]:
    """Eval mode (z = mu, no dropout) in chunks: q (N,K), mu (N,d), cls_logits (N,C), from
    the encoder and the classifier only: the decoder is not run (draw_figures decodes the
    few images its figures show)."""
    parts = {"q": [], "mu": [], "cls_logits": []}
    for s in range(0, x.shape[0], cfg.eval_batch_size):
        q, mu, cls_logits = responsibilities(p, x[s:s + cfg.eval_batch_size], cfg)
        parts["q"].append(q)
        parts["mu"].append(mu)
        parts["cls_logits"].append(cls_logits)
    return {k: np.concatenate(v).astype(np.float64) for k, v in parts.items()}


def predictors(p: Params, cfg: Config, outputs: dict, y_seen: np.ndarray) -> dict[str, np.ndarray]:
    """The run's ways of predicting a digit: {name: class probabilities (N, C)} for all N
    images. Each is scored on the held-out (validation) split in the report's extra rows, in
    summary.json's "heldout_accuracy" and in the sweep's table. Adding one is one entry here.

    outputs: model_outputs(p, x, cfg) (q (N,K), mu (N,d), cls_logits (N,C), float64).
    y_seen:  (N,) the training labels only (baselines.training_labels: labeled images of the
             training split, -1 elsewhere): a predictor that needs labels (e.g. a map from
             components to digits) takes them from here, never from the held-out images.
    """
    q = outputs["q"]
    if cfg.classifier == "tau":             # K >= C components mapped to classes by tau
        return {"components q(c|x) tau": T.predict(q, T.tau_map(q, y_seen, cfg.num_classes))}
    if cfg.model == "gmm":                  # the components are the classes: q is the classifier
        return {"components q(c|x)": q}
    return {
        "classifier head": softmax_forward(outputs["cls_logits"])[0],      # at z = mu
        "components (tau map)": q @ M.tau_map(q, y_seen, cfg.num_classes),
    }


def label_rows(p: Params, cfg: Config, x, y, splits: Splits, outputs: dict) -> dict:
    """The extra rows on labels: held-out accuracy of each predictor (on the validation
    images that have a label), the labeled-only logistic-regression baseline on the same
    split, and which classes had training labels."""
    seen = B.training_labels(y, splits)
    val = splits.val[np.asarray(y)[splits.val] >= 0]
    heldout = {}
    for name, probs in predictors(p, cfg, outputs, seen).items():
        ok = bool(np.isfinite(probs[val]).all())
        heldout[name] = M.accuracy(probs[val], y[val]) if ok else float("nan")
    counts = np.bincount(seen[seen >= 0], minlength=cfg.num_classes)
    return {
        "heldout_accuracy": heldout,
        "baseline_logistic_regression": B.logistic_regression(x, y, splits),
        "labeled_train_count": int(counts.sum()),
        "labeled_train_classes": np.flatnonzero(counts).tolist(),
        "labeled_train_per_class": counts.tolist(),
    }


def test_rows(p: Params, cfg: Config, x_test, y_test, y, splits: Splits,
              outputs: dict) -> dict:
    """The test set's rows (x_test (M, D), y_test (M,): the official test files), scored
    once with the weights the rest of the table uses. Every test image and label is unseen:
    a predictor that needs labels gets the training labels only (the test rows are appended
    to the training rows' outputs with label -1, so `predictors` sees exactly what it sees
    for the held-out rows). y, splits, outputs: the run's N images, as in summarize.

    test_accuracy {predictor: accuracy}; test_nmi, test_ari, test_cluster_accuracy of the
    components (argmax q); test_loss, test_recon_loss, test_kl_z, test_kl_c: eval-mode terms
    (weighted as in the loss), in chunks of eval_batch_size like the validation rows."""
    nan = float("nan")
    o = model_outputs(p, x_test, cfg)
    n = len(y)
    both = {k: np.concatenate([outputs[k], o[k]]) for k in ("q", "mu", "cls_logits")}
    seen = np.concatenate([B.training_labels(y, splits), np.full(len(y_test), -1)])
    accuracy = {}
    for name, probs in predictors(p, cfg, both, seen).items():
        ok = bool(np.isfinite(probs[n:]).all())
        accuracy[name] = M.accuracy(probs[n:], y_test) if ok else nan
    q_ok = bool(np.isfinite(o["q"]).all())
    nmi, ari = M.clustering_scores(o["q"], y_test) if q_ok else (nan, nan)
    terms = eval_terms(p, cfg, x_test)
    return {"test_images": len(y_test), "test_accuracy": accuracy, "test_nmi": nmi,
            "test_ari": ari,
            "test_cluster_accuracy": M.cluster_accuracy(o["q"], y_test) if q_ok else nan,
            "test_loss": terms["loss"], "test_recon_loss": terms["recon"],
            "test_kl_z": terms["kl_z"], "test_kl_c": terms["kl_c"]}


def eval_terms(p: Params, cfg: Config, x) -> dict:
    """Eval-mode loss terms of unlabeled images x (n, D) on the fast engine (as the
    per-epoch validation rows): chunks of eval_batch_size, each weighted by its size / n."""
    from npvae.training.loop import fast_engine

    terms, _ = fast_engine(cfg).evaluate_split(p, np.asarray(x, dtype=cfg.dtype), np.full(len(x), -1))
    return terms


def summarize(p: Params, cfg: Config, x, y, splits: Splits, history: dict,
              fit_seconds: float, outputs: dict | None = None) -> dict:
    """Every metric of the report. x, y: all N images with their true labels (-1: an image
    without one). 'Training' rows are the last epoch of `history` (eval of the training
    split).

    The rows that compare with the labels (accuracies, majority labels, NMI, ARI, the
    Hungarian accuracy, the held-out rows) score only the images that have a label; those
    that need none (losses, usage, pi, entropies) take every image. Data with images
    without a label gets "unlabeled_images", their number."""
    o = outputs if outputs is not None else model_outputs(p, x, cfg)
    q, logits = o["q"], o["cls_logits"]
    val, tr, lab = splits.val, splits.train, splits.labeled
    y = np.asarray(y)
    tau_rows = {}
    if cfg.classifier == "tau":     # the classes' scores are log p(y|x) = log q tau, not s
        tau = T.tau_map(q, B.training_labels(y, splits), cfg.num_classes)
        with np.errstate(divide="ignore", invalid="ignore"):
            logits = np.log(T.predict(q, tau))
        tau_rows = {"free_components": T.free_components(tau).tolist(),
                    "free_below": T.FREE_BELOW,
                    "ood_score_mean_val": float(T.ood_score(q[val], tau).mean())
                    if val.size else float("nan")}
    known = np.flatnonzero(y >= 0)                  # (n_known,) the images with a label
    q_known, y_known = q[known], y[known]
    val_known = val[y[val] >= 0]
    # A run that stopped early may have no finished epoch (no history row) or weights whose
    # outputs are not finite (divergence): those rows are NaN, never a misleading number.
    nan = float("nan")
    last = {k: (v[-1] if v else nan) for k, v in history.items()
            if k.startswith(("train_", "val_"))}
    q_ok, logits_ok = bool(np.isfinite(q).all()), bool(np.isfinite(logits).all())

    def on_q(metric, *args):
        return metric(*args) if q_ok else nan

    def on_logits(metric, *args):
        return metric(*args) if logits_ok else nan

    u_val = M.usage(q[val]) if q_ok else np.full(cfg.K, nan)
    pi = softmax_forward(p["pi_logits"].astype(np.float64))[0]
    pi_stats = (M.pi_stats(pi) if np.isfinite(pi).all() else
                dict.fromkeys(("pi_entropy", "pi_max", "pi_min", "pi_argmax"), nan))
    scored = q_ok and known.size > 0        # a subsample may hold no image with a label
    labels, conf = (M.majority_labels(q_known, y_known, cfg.num_classes) if scored
                    else (None, None))
    nmi, ari = M.clustering_scores(q_known, y_known) if scored else (nan, nan)
    epochs = len(history["epoch"])
    s = {
        "loss": last["train_loss"], "recon_loss": last["train_recon"],
        "kl_z": last["train_kl_z"], "kl_c": last["train_kl_c"],
        "training_time_sec": fit_seconds, "epochs_completed": epochs,
        "accuracy": on_logits(M.accuracy, logits[known], y_known),
        "classification_loss": last["train_cls"],
        "K": cfg.K,
        "component_entropy": on_q(M.component_entropy, q[tr]),
        **pi_stats,
        "k_eff": on_q(M.effective_components, u_val),
        "active_components": on_q(M.active_components, u_val),
        "responsibility_confidence_mean": on_q(M.responsibility_confidence, q[val]),
        "component_majority_labels": labels,
        "component_majority_confidence": conf,
        "nmi": nmi, "ari": ari,
        # rows we add (clearly named in the report)
        "dirichlet": last["train_dirichlet"], "diversity": last["train_diversity"],
        "seconds_per_epoch": fit_seconds / max(epochs, 1),
        "val_loss": last["val_loss"],
        "val_accuracy": on_logits(M.accuracy, logits[val_known], y[val_known]),
        "classification_ce_labeled": (on_logits(M.cross_entropy, logits[lab], y[lab])
                                      if lab.size else None),
        "cluster_accuracy": M.cluster_accuracy(q_known, y_known) if scored else nan,
        **label_rows(p, cfg, x, y, splits, o),
        # not in the table, kept in summary.json
        "loss_parts_sum": sum(last[f"train_{t}"] for t in
                              ("recon", "kl_z", "kl_c", "dirichlet", "diversity", "cls")),
        "usage": u_val.tolist(), "pi": pi.tolist(),
        **tau_rows,
    }
    if known.size < len(y):
        s["unlabeled_images"] = len(y) - known.size
    return {k: _plain(v) for k, v in s.items()}


def draw_figures(run_dir, p: Params, cfg: Config, x, y, splits: Splits, history: dict,
                 outputs: dict | None = None) -> list[Path]:
    """The eight figures of spec section 6 at the seed's relative paths; returns the paths
    drawn (all eight unless the outputs or the history cannot be plotted). Images are drawn at
    cfg.shape (grey or RGB; strips when it is unknown), classes by their names (the legend
    says "digit" unless the data names its classes); model gmm's components are its classes,
    so they are named too. A history with model gmm's per-epoch figures (held-out accuracy,
    confident targets, consistency term) also gets plots.CURVES_FIGURE."""
    run_dir = Path(run_dir)
    shape, classes = cfg.shape, class_names(cfg)
    what = "class" if cfg.class_names else "digit"
    comp_classes = classes if cfg.model == "gmm" else None
    o = outputs if outputs is not None else model_outputs(p, x, cfg)
    q, mu, val = o["q"], o["mu"], splits.val
    path = {k: run_dir / rel for k, rel in plots.FIGURES.items()}
    comp = q.argmax(axis=1)
    # a few validation images decoded by every component (z = mu)
    shown = val[:8]
    qs, by_comp, weighted = decoded_by_component(p, x[shown], cfg)
    if cfg.model == "gmm":
        means, means_what = p["prior_mu"], "Distances between the component means m_k"
        title = ("Each image's z moved to every component, z - m_c(x) + m_k, decoded; "
                 "titled with q(c=k|x)")
    else:
        means, means_what = p["embed"], "Component embedding distances"
        title = "Reconstruction by component: sigmoid(l_k) titled with q(c=k|x)"
    figures = {
        "loss_comparison": lambda f: plots.plot_loss_comparison(history, f),
        "latent_spaces": lambda f: plots.plot_latent_by_label(mu, y, f, classes, what),
        "latent_by_component": lambda f: plots.plot_latent_by_component(
            mu, comp, cfg.K, f, comp_classes),
        "responsibility_histogram": lambda f: plots.plot_responsibility_histogram(
            q[val].max(axis=1), f),
        "reconstructions": lambda f: plots.plot_reconstructions(x[shown], weighted, f,
                                                                shape=shape),
        "model_evolution": lambda f: plots.plot_model_evolution(
            np.asarray(history["pi"]), np.asarray(history["usage"]), f),
        "embedding_divergence": lambda f: plots.plot_embedding_divergence(
            means.astype(np.float64), f, means_what, comp_classes),
        "reconstruction_by_component": lambda f: plots.plot_reconstruction_by_component(
            x[shown[:3]], by_comp[:3], qs[:3], weighted[:3], f, title, shape),
    }
    if plots.has_curves(history):                       # model gmm's per-epoch figures
        figures["training_curves"] = lambda f: plots.plot_training_curves(history, f)
        path["training_curves"] = run_dir / plots.CURVES_FIGURE
    drawn = []
    for key, draw in figures.items():
        try:
            drawn.append(draw(path[key]))
        except (ValueError, IndexError, OverflowError, FloatingPointError):
            # A run that stopped early (no finished epoch, non-finite outputs) cannot have
            # every figure: skip it (and any stale file of that name); npvae/runs/runner.py lists
            # them.
            plots.plt.close("all")
            path[key].unlink(missing_ok=True)
    return drawn

def decoded_by_component(p: Params, x, cfg: Config):
    """Eval mode (z = mu) for n images: q (n, K), images decoded "by component" (n, K, D) and
    the weighted reconstruction (n, D), as probabilities in float64.
    Seed model: sigmoid(l_k) of its component-aware decoder, weighted = sigmoid(sum_k q_k l_k).
    Model gmm (one decoder): z_k = mu - m_c + m_k, the image's offset from its own component's
    mean (c = argmax q) put at every component's mean; weighted = the plain reconstruction."""
    out, _ = evaluate(p, x, cfg)
    qs, ls = out.q.astype(np.float64), out.logits.astype(np.float64)    # (n,K), (n,K|1,D)
    if cfg.model != "gmm":
        return qs, sigmoid(ls), sigmoid(np.einsum("nk,nkd->nd", qs, ls))
    m = p["prior_mu"].astype(np.float64)                                # (K, d)
    z = out.mu.astype(np.float64)[:, None, :] - m[qs.argmax(axis=1)][:, None, :] + m[None]
    n, K, d = z.shape
    l = gmm.decoder_forward(p.astype(np.float64), z.reshape(n * K, d), cfg)[0]
    return qs, sigmoid(l.reshape(n, K, -1)), sigmoid(ls[:, 0])


def _plain(v):
    """numpy scalars/arrays -> plain Python for JSON."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(e) for e in v]
    if isinstance(v, dict):
        return {k: _plain(e) for k, e in v.items()}
    return v
