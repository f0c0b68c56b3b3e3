"""REPORT.md rendering in the seed report's layout.

The layout (header lines, Configuration bullets, Summary Metrics table, Visualizations
headings/captions/paths) copies the seed report we reproduce. Numbers come in as a flat
`summary` dict; this module only formats them.

Formatting rules (as in the seed): floats with 4 decimals, ints plain, lists as Python lists
(elements as plain Python ints/floats, full precision), strings as given. Data whose classes
have names (config's class_names) shows them in the rows that list classes (CLASS_ROWS), and
data other than the seed's 28 x 28 grey digits of classes 0..9 gets a line saying what its
images and classes are.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from npvae.training.fileio import write_text

from .images import SEED_SHAPE, data_text, square_shape
from .plots import CURVES_FIGURE, FIGURES

# The seed's table, row for row: (category, metric label, summary key). Always shown.
SEED_ROWS: list[tuple[str, str, str]] = [
    ("Training", "Loss", "loss"),
    ("Training", "Recon Loss", "recon_loss"),
    ("Training", "Kl Z", "kl_z"),
    ("Training", "Kl C", "kl_c"),
    ("Training", "Training Time Sec", "training_time_sec"),
    ("Training", "Epochs Completed", "epochs_completed"),
    ("Classification", "Accuracy", "accuracy"),
    ("Classification", "Classification Loss", "classification_loss"),
    ("Mixture", "K", "K"),
    ("Mixture", "Component Entropy", "component_entropy"),
    ("Mixture", "Pi Entropy", "pi_entropy"),
    ("Mixture", "K Eff", "k_eff"),
    ("Mixture", "Active Components", "active_components"),
    ("Mixture", "Responsibility Confidence Mean", "responsibility_confidence_mean"),
    ("Mixture", "Component Majority Labels", "component_majority_labels"),
    ("Mixture", "Component Majority Confidence", "component_majority_confidence"),
    ("Mixture", "Pi Max", "pi_max"),
    ("Mixture", "Pi Min", "pi_min"),
    ("Mixture", "Pi Argmax", "pi_argmax"),
    ("Clustering", "NMI", "nmi"),
    ("Clustering", "ARI", "ari"),
]

# Rows we add after the seed's rows; each is shown only when its key is in `summary`.
EXTRA_ROWS: list[tuple[str, str, str]] = [
    ("Training", "Dirichlet Penalty", "dirichlet"),
    ("Training", "Usage Entropy Term", "diversity"),
    ("Training", "Seconds Per Epoch", "seconds_per_epoch"),
    ("Validation", "Validation Loss", "val_loss"),
    ("Validation", "Validation Accuracy", "val_accuracy"),
    ("Classification", "Classification CE (labeled, plain mean)", "classification_ce_labeled"),
    ("Clustering", "Cluster Accuracy (Hungarian)", "cluster_accuracy"),
    # what the labels give, and which there were; a dict value gives one row per entry:
    # "Held-out Accuracy: <name>"
    ("Held-out (extra)", "Held-out Accuracy", "heldout_accuracy"),
    ("Held-out (extra)", "Labeled-only Logistic Regression (pixels)",
     "baseline_logistic_regression"),
    ("Labels (extra)", "Labeled Training Images", "labeled_train_count"),
    ("Labels (extra)", "Classes With Training Labels", "labeled_train_classes"),
    ("Labels (extra)", "Labeled Training Images Per Class", "labeled_train_per_class"),
    # the official test set, only when the data has one
    ("Test", "Test Images", "test_images"),
    ("Test", "Test Accuracy", "test_accuracy"),
    ("Test", "Test NMI", "test_nmi"),
    ("Test", "Test ARI", "test_ari"),
    ("Test", "Test Cluster Accuracy (Hungarian)", "test_cluster_accuracy"),
    ("Test", "Test Loss", "test_loss"),
    ("Test", "Test Recon Loss", "test_recon_loss"),
    ("Test", "Test Kl Z", "test_kl_z"),
    ("Test", "Test Kl C", "test_kl_c"),
]

# Rows whose values are classes (lists of class numbers), or one count per class: shown by
# name when the classes have names.
CLASS_ROWS = {"component_majority_labels": "classes", "labeled_train_classes": "classes",
              "labeled_train_per_class": "per_class"}

# The single ordered table definition.
TABLE: list[tuple[str, str, str]] = SEED_ROWS + EXTRA_ROWS
_SEED_KEYS = {key for _, _, key in SEED_ROWS}

FIXED_NOTES: list[str] = [
    "Training rows are the final-epoch evaluation of the training split in eval mode "
    "(z = mu, no dropout), with the final weights; they are not running averages of the "
    "training steps.",
    "Loss = Recon + KL_z + KL_c + Dirichlet + Usage entropy term + Classification, each term "
    "already multiplied by its weight (the usage entropy weight is negative).",
    "Component majority labels/confidence, NMI and ARI are computed on all N images with "
    "their true labels (a fix relative to the seed, which used the 6 labeled validation "
    "images).",
    "Rows from Dirichlet Penalty on are not in the seed's report. Held-out rows score the "
    "validation split: each predictor of the model, and a logistic regression "
    "(scikit-learn, max_iter=1000) on the pixels of the labeled training images only. "
    "Labels rows: the labeled images in the training split (the only labels any predictor "
    "or baseline uses).",
]

TEST_NOTE = ("Test rows score the data's test set (t10k files or x_test/y_test), whose "
             "images and labels no part of training, validation or early stopping sees: each "
             "predictor (label maps from the training labels only), the components' NMI, ARI "
             "and Hungarian accuracy, and the eval-mode loss terms of its images as unlabeled.")

UNLABELED_NOTE = ("{} images have no label (the data's unlabeled/ folder): they train as "
                  "unlabeled images and count in the rows that need no label (losses, usage, "
                  "pi, entropies), but every row that compares with a label (accuracies, "
                  "majority labels, NMI, ARI, Hungarian, held-out) leaves them out; the "
                  "latent plot by class label draws them grey.")

# Visualizations section: (heading, text lines before the image, alt text, figure key).
VISUALIZATIONS: list[tuple[str, list[str], str, str]] = [
    ("### Loss Curves", [], "Loss Comparison", "loss_comparison"),
    ("### Latent Space", ["**By Class Label:**"], "Latent Spaces", "latent_spaces"),
    (None, ["**By Component Assignment:**"], "Latent by Component", "latent_by_component"),
    ("### Responsibility Confidence", ["Distribution of max_c q(c|x):"],
     "Responsibility Histogram", "responsibility_histogram"),
    ("### Reconstructions", [], "Reconstructions", "reconstructions"),
    ("### Mixture Evolution", [], "Mixture Evolution", "model_evolution"),
    ("### Component Embedding Divergence",
     ["Pairwise distances between learned component embeddings:"],
     "Component Embedding Divergence", "embedding_divergence"),
    ("### Reconstruction by Component",
     ["How each component reconstructs individual inputs:"],
     "Reconstruction by Component", "reconstruction_by_component"),
]


def format_value(value) -> str:
    """Seed formatting: floats -> 4 decimals, ints plain, sequences -> Python list repr."""
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4f}"
    if isinstance(value, (list, tuple, np.ndarray)):
        # .tolist() turns numpy scalars into Python ones so the repr is "[1, 2]", not np.int64.
        return str(np.asarray(value).tolist())
    return str(value)


def _hidden_dims(dims) -> str:
    """(256, 128, 64) style, also for a single layer (no trailing comma)."""
    return "(" + ", ".join(str(int(d)) for d in dims) + ")"


def _header_lines(header: dict, summary: dict) -> list[str]:
    lines = [
        "# Experiment Report",
        "",
        f"**Experiment:** {header['name']}",
        "",
        f"**Description:** {header['description']}",
        "",
        f"**Tags:** {', '.join(header['tags'])}",
        "",
        f"**Generated:** {header['generated']}",
        "",
    ]
    if header.get("preset"):
        lines += [f"**Preset:** {header['preset']} (npvae/training/presets/{header['preset']}.toml)", ""]
    if summary.get("stopped_early"):
        lines += [f"**Stopped early:** {summary['stopped_early']}", ""]
    return lines


# The seed's line says "mixture"; model gmm's prior has a learned Gaussian per component.
PRIORS = {"mixture": "mixture",
          "gmm": "Gaussian mixture (learned means and variances; q(c|x) = p(c|z))"}


def images_and_classes(config: dict) -> tuple[tuple | None, tuple[str, ...]] | None:
    """(shape (H, W, C) or None, class names) of a config dict (Config.to_dict()), as
    cfg.shape and images.class_names give them; None when the dict does not say (no
    input_dim)."""
    if "input_dim" not in config:
        return None
    given = tuple(config.get("image_shape") or ())
    shape = (*given, 1)[:3] if given else square_shape(int(config["input_dim"]))
    names = tuple(config.get("class_names") or ()) or tuple(
        str(c) for c in range(int(config.get("num_classes", 10))))
    return shape, names


def class_names_of(config: dict) -> tuple[str, ...] | None:
    """The classes' names when the data gives them (config's class_names), else None (the
    table then shows class numbers, as the seed's)."""
    return tuple(config.get("class_names") or ()) or None


def _images_lines(config: dict) -> list[str]:
    """'- Images: 32 x 32 RGB, 3 classes: cat, dog, fox', for any data but the seed's 28 x 28
    grey digits of classes 0..9 (whose report keeps the seed's lines)."""
    found = images_and_classes(config)
    if found is None:
        return []
    shape, names = found
    if shape == SEED_SHAPE and names == tuple(str(c) for c in range(10)):
        return []
    return [f"- Images: {data_text(shape, names)}"]


def _unlabeled_lines(summary: dict) -> list[str]:
    """'- Unlabeled images: 100 (...)', for data with images without a label (an unlabeled/
    folder): summarize counts them as "unlabeled_images"."""
    count = summary.get("unlabeled_images")
    if not count:
        return []
    return [f"- Unlabeled images: {count} (trained on as unlabeled, scored nowhere)"]


def _config_lines(config: dict, summary: dict | None = None) -> list[str]:
    return [
        "## Configuration",
        "",
        "### Data",
        "",
        f"- num_samples: {config['num_samples']}",
        f"- num_labeled: {config['num_labeled']}",
        f"- seed: {config['seed']}",
        *_images_lines(config),
        *_unlabeled_lines(summary or {}),
        "",
        "### Model",
        "",
        f"- Prior: {PRIORS.get(config.get('model', 'mixture'), 'mixture')}",
        f"- Latent dim: {config['latent_dim']}",
        f"- Hidden dims: {_hidden_dims(config['hidden_dims'])}",
        f"- Components (K): {config['K']}",
        "- Reconstruction loss: bce",
        f"- Learning rate: {config['lr']}",
        f"- Batch size: {config['batch_size']}",
        f"- Max epochs: {config['epochs']}",
        "",
    ]


def format_classes(value, kind: str, names) -> str:
    """A CLASS_ROWS value with the classes named: kind "classes" (class numbers, e.g. each
    component's majority label) -> "[cat, dog, cat]"; "per_class" (one count per class) ->
    "[cat: 3, dog: 5, fox: 0]". A '|' in a name is escaped (it would end the table's cell)."""
    names = [str(n).replace("|", "\\|") for n in names]
    values = np.asarray(value).tolist()
    if kind == "classes":
        items = [names[c] if 0 <= c < len(names) else str(c) for c in values]
    else:
        items = [f"{names[c] if c < len(names) else c}: {n}" for c, n in enumerate(values)]
    return "[" + ", ".join(items) + "]"


def table_lines(summary: dict, class_names=None) -> list[str]:
    """The Summary Metrics table (markdown lines): the seed's rows, then the extra rows present.
    class_names: the classes' names (CLASS_ROWS show them), None: class numbers."""
    missing = [key for key in _SEED_KEYS if key not in summary]
    if missing:
        raise ValueError(f"summary is missing the seed table keys {sorted(missing)}; "
                         f"every key of SEED_ROWS must be present.")
    lines = [
        "| Category | Metric | Value |",
        "|----------|--------|-------|",
    ]
    for category, label, key in TABLE:
        if key not in summary:
            continue
        items = summary[key].items() if isinstance(summary[key], dict) else [(None, summary[key])]
        for name, value in items:
            shown = label if name is None else f"{label}: {name}"
            text = (format_classes(value, CLASS_ROWS[key], class_names)
                    if class_names and key in CLASS_ROWS and value is not None
                    else format_value(value))
            lines.append(f"| {category} | {shown} | {text} |")
    return lines


def _notes_lines(summary: dict, notes: list[str] | None) -> list[str]:
    all_notes = list(notes or [])
    if "loss_parts_sum" in summary:
        all_notes.append(
            f"Sum of the weighted loss parts = {format_value(summary['loss_parts_sum'])} "
            f"(Loss row = {format_value(summary['loss'])}).")
    all_notes += FIXED_NOTES
    if summary.get("unlabeled_images"):
        all_notes.append(UNLABELED_NOTE.format(summary["unlabeled_images"]))
    if "test_images" in summary:
        all_notes.append(TEST_NOTE)
    return ["**Notes:**", ""] + [f"- {note}" for note in all_notes] + [""]


def latent_caption(latent_dim: int) -> str | None:
    """What the latent scatter plots show when the latent is not 2-D (plots.latent_points)."""
    if latent_dim == 1:
        return "The latent is 1-D: z[0] (x) against the digit or the component (y, jittered)."
    if latent_dim > 2:
        return (f"PCA projection of the {latent_dim}-D latent means onto their first two "
                f"principal components (scikit-learn PCA).")
    return None


# Model gmm runs' per-epoch figures (plots.plot_training_curves), after the loss curves.
CURVES_LINES = ["### Training Curves", "",
                "Per epoch: the held-out accuracy (argmax q(c|x) on the validation split; "
                "shown, never used for early stopping or to choose the weights), the share of "
                "unlabeled images whose consistency target reached cons_threshold and the "
                "consistency term as trained (weighted, per unlabeled image), when it is on:",
                "", f"![Training Curves]({CURVES_FIGURE})", ""]


def _visualization_lines(latent_dim: int = 2, curves: bool = False) -> list[str]:
    lines = ["## Visualizations", ""]
    for heading, text, alt, key in VISUALIZATIONS:
        if key == "latent_spaces" and curves:
            lines += CURVES_LINES
        if heading:
            lines += [heading, ""]
        if key == "latent_spaces" and latent_caption(latent_dim):
            lines += [latent_caption(latent_dim), ""]
        for t in text:
            lines += [t, ""]
        lines += [f"![{alt}]({FIGURES[key]})", ""]
    return lines


def render_report(summary: dict, config: dict, header: dict,
                  notes: list[str] | None = None, curves: bool = False) -> str:
    """REPORT.md text: header, Configuration, Results (table + notes), Visualizations.

    summary: flat metric dict (every SEED_ROWS key required; EXTRA_ROWS keys optional;
             optional "stopped_early" reason string and "loss_parts_sum").
    config:  flat resolved config (num_samples, num_labeled, seed, latent_dim, hidden_dims,
             K, lr, batch_size, epochs; with input_dim, image_shape, num_classes and
             class_names, the images and classes). header: name, description, tags,
             generated.
    notes:   extra lines printed as bullets under the table, before the fixed notes.
    curves:  link the training curves (model gmm's history columns; plots.has_curves).
    """
    lines = _header_lines(header, summary)
    lines += _config_lines(config, summary)
    lines += ["## Results", "", "### Summary Metrics", ""]
    lines += table_lines(summary, class_names_of(config))
    lines += [""]
    lines += _notes_lines(summary, notes)
    lines += _visualization_lines(int(config.get("latent_dim", 2)), curves)
    return "\n".join(lines) + "\n"


def write_report(run_dir, summary: dict, config: dict, header: dict,
                 notes: list[str] | None = None, curves: bool = False) -> Path:
    """Render and write run_dir/REPORT.md atomically (temp file in run_dir, then os.replace)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    text = render_report(summary, config, header, notes, curves)
    return write_text(run_dir / "REPORT.md", text)
