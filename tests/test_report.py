"""REPORT.md rendering: seed layout, seed table rows and formatting, extras, atomic write."""
from __future__ import annotations

import numpy as np
import pytest

from npvae.reporting import plots
from npvae.reporting import report

# The seed report's table, kept here (tests must not read the shared seed file).
SEED_TABLE = [
    ("Training", "Loss"), ("Training", "Recon Loss"), ("Training", "Kl Z"),
    ("Training", "Kl C"), ("Training", "Training Time Sec"), ("Training", "Epochs Completed"),
    ("Classification", "Accuracy"), ("Classification", "Classification Loss"),
    ("Mixture", "K"), ("Mixture", "Component Entropy"), ("Mixture", "Pi Entropy"),
    ("Mixture", "K Eff"), ("Mixture", "Active Components"),
    ("Mixture", "Responsibility Confidence Mean"), ("Mixture", "Component Majority Labels"),
    ("Mixture", "Component Majority Confidence"), ("Mixture", "Pi Max"), ("Mixture", "Pi Min"),
    ("Mixture", "Pi Argmax"), ("Clustering", "NMI"), ("Clustering", "ARI"),
]

SEED_VIS = """## Visualizations

### Loss Curves

![Loss Comparison](loss_comparison.png)

### Latent Space

**By Class Label:**

![Latent Spaces](latent_spaces.png)

**By Component Assignment:**

![Latent by Component](latent_by_component.png)

### Responsibility Confidence

Distribution of max_c q(c|x):

![Responsibility Histogram](responsibility_histogram.png)

### Reconstructions

![Reconstructions](model_reconstructions.png)

### Mixture Evolution

![Mixture Evolution](visualizations/mixture/model_evolution.png)

### Component Embedding Divergence

Pairwise distances between learned component embeddings:

![Component Embedding Divergence](component_embedding_divergence.png)

### Reconstruction by Component

How each component reconstructs individual inputs:

![Reconstruction by Component](model_reconstruction_by_component.png)
"""

SEED_CONFIG = """## Configuration

### Data

- num_samples: 5000
- num_labeled: 50
- seed: 42

### Model

- Prior: mixture
- Latent dim: 2
- Hidden dims: (256, 128, 64)
- Components (K): 10
- Reconstruction loss: bce
- Learning rate: 0.001
- Batch size: 128
- Max epochs: 50
"""

HEADER = {"name": "mixture_k10",
          "description": "Mixture VAE with K=10 components, usage sparsity, and full tracking",
          "tags": ["mixture", "k10", "2d-latent"], "generated": "20251109_131455"}

CONFIG = {"num_samples": 5000, "num_labeled": 50, "seed": 42, "latent_dim": 2,
          "hidden_dims": [256, 128, 64], "K": 10, "lr": 0.001, "batch_size": 128,
          "epochs": 50, "w_div": -0.05, "alpha": 5.0}


def _summary(rng: np.random.Generator) -> dict:
    """Synthetic values with the types the evaluation code produces (numpy scalars too)."""
    K = 10
    return {
        "loss": np.float64(228.73441), "recon_loss": np.float32(132.917), "kl_z": 3.421,
        "kl_c": 0.00216, "training_time_sec": 31.42441, "epochs_completed": 50,
        "accuracy": 0.44957, "classification_loss": 0.37721,
        "K": K, "component_entropy": rng.uniform(), "pi_entropy": float(np.log(K)),
        "k_eff": 5.60119, "active_components": np.int64(6),
        "responsibility_confidence_mean": 0.92331,
        "component_majority_labels": np.array([1, 1, 8, 1, 0, 6, 0, 1, 1, 9]),
        "component_majority_confidence": list(rng.uniform(size=K)),
        "pi_max": 0.1, "pi_min": 0.1, "pi_argmax": np.int64(5),
        "nmi": 0.93109, "ari": 0.0,
    }


def _table_rows(text: str) -> list[tuple[str, str, str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| Category"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows.append(tuple(cells))
    return rows


def test_seed_rows_in_seed_order_with_seed_formatting():
    s = _summary(np.random.default_rng(0))
    text = report.render_report(s, CONFIG, HEADER)
    rows = _table_rows(text)
    assert [(c, m) for c, m, _ in rows] == SEED_TABLE  # no extras without their keys
    values = {m: v for _, m, v in rows}
    assert values["Loss"] == "228.7344"
    assert values["Recon Loss"] == "132.9170"
    assert values["Kl C"] == "0.0022"
    assert values["Pi Max"] == "0.1000"
    assert values["ARI"] == "0.0000"
    assert values["Epochs Completed"] == "50"
    assert values["Active Components"] == "6"  # numpy int -> plain
    assert values["Pi Argmax"] == "5"
    assert values["Component Majority Labels"] == "[1, 1, 8, 1, 0, 6, 0, 1, 1, 9]"
    conf = s["component_majority_confidence"]
    assert values["Component Majority Confidence"] == str([float(c) for c in conf])
    assert "| Category | Metric | Value |\n|----------|--------|-------|" in text


def test_header_config_and_visualizations_match_the_seed():
    text = report.render_report(_summary(np.random.default_rng(1)), CONFIG, HEADER)
    assert text.startswith(
        "# Experiment Report\n\n**Experiment:** mixture_k10\n\n"
        "**Description:** Mixture VAE with K=10 components, usage sparsity, and full "
        "tracking\n\n**Tags:** mixture, k10, 2d-latent\n\n**Generated:** 20251109_131455\n")
    assert SEED_CONFIG in text
    assert text.rstrip("\n").endswith(SEED_VIS.rstrip("\n"))
    for rel in plots.FIGURES.values():
        assert f"({rel})" in text
    assert "## Results\n\n### Summary Metrics\n" in text
    assert "Stopped early" not in text


def test_extra_rows_follow_the_seed_rows_only_when_present():
    s = _summary(np.random.default_rng(2))
    s.update(val_accuracy=0.51234, classification_ce_labeled=1.23456,
             cluster_accuracy=0.6, seconds_per_epoch=0.62849, dirichlet=92.10340,
             diversity=-0.0857)
    rows = _table_rows(report.render_report(s, CONFIG, HEADER))
    assert [(c, m) for c, m, _ in rows[:len(SEED_TABLE)]] == SEED_TABLE
    extras = {m: v for _, m, v in rows[len(SEED_TABLE):]}
    assert extras == {
        "Validation Accuracy": "0.5123", "Classification CE (labeled, plain mean)": "1.2346",
        "Cluster Accuracy (Hungarian)": "0.6000", "Seconds Per Epoch": "0.6285",
        "Dirichlet Penalty": "92.1034", "Usage Entropy Term": "-0.0857"}


def test_notes_and_stopped_early():
    s = _summary(np.random.default_rng(3))
    s["stopped_early"] = "validation loss did not improve for 30 epochs"
    s["loss_parts_sum"] = 228.73449
    text = report.render_report(s, CONFIG, HEADER, notes=["Data: embedded 5000 digits."])
    line = "**Stopped early:** validation loss did not improve for 30 epochs"
    assert line in text
    assert text.index(line) < text.index("## Configuration")  # near the top
    notes = text[text.index("**Notes:**"):text.index("## Visualizations")]
    assert "- Data: embedded 5000 digits." in notes
    assert "228.7345" in notes
    assert "final-epoch" in notes and "training split" in notes
    assert "Dirichlet" in notes and "Usage entropy term" in notes
    assert "all N images" in notes and "6 labeled validation images" in notes
    # Notes sit between the table and the figures.
    assert text.index("| Clustering | ARI |") < text.index("**Notes:**")


def test_missing_seed_key_is_a_clear_error():
    s = _summary(np.random.default_rng(4))
    del s["nmi"], s["k_eff"]
    with pytest.raises(ValueError, match=r"\['k_eff', 'nmi'\]"):
        report.render_report(s, CONFIG, HEADER)


def test_hidden_dims_single_layer_and_tuple():
    s = _summary(np.random.default_rng(5))
    assert "- Hidden dims: (512)" in report.render_report(
        s, {**CONFIG, "hidden_dims": [512]}, HEADER)
    assert "- Hidden dims: (512)" in report.render_report(
        s, {**CONFIG, "hidden_dims": (512,)}, HEADER)


def test_write_report_is_atomic_and_overwrites(tmp_path):
    s = _summary(np.random.default_rng(6))
    run = tmp_path / "run"
    path = report.write_report(run, s, CONFIG, HEADER)
    assert path == run / "REPORT.md"
    assert path.read_text() == report.render_report(s, CONFIG, HEADER)
    s["accuracy"] = 0.99999
    report.write_report(run, s, CONFIG, HEADER)
    assert "| Classification | Accuracy | 1.0000 |" in path.read_text()
    assert [p.name for p in run.iterdir()] == ["REPORT.md"]  # no temp file left behind


def test_failed_render_leaves_existing_report_untouched(tmp_path):
    s = _summary(np.random.default_rng(7))
    path = report.write_report(tmp_path, s, CONFIG, HEADER)
    before = path.read_text()
    with pytest.raises(ValueError):
        report.write_report(tmp_path, {"loss": 1.0}, CONFIG, HEADER)
    assert path.read_text() == before


def test_other_images_and_named_classes_are_said_and_shown_by_name():
    """Data of named classes: a line under Data names the images and classes, and the rows
    that list classes show their names (summary.json keeps the numbers)."""
    s = _summary(np.random.default_rng(6))
    s.update(component_majority_labels=[0, 2, 2, 1], labeled_train_classes=[0, 2],
             labeled_train_per_class=[3, 0, 5], labeled_train_count=8)
    config = {**CONFIG, "input_dim": 8 * 12 * 3, "image_shape": [8, 12, 3], "num_classes": 3,
              "class_names": ["cat", "dog", "fox"]}
    text = report.render_report(s, config, HEADER)
    assert "- seed: 42\n- Images: 8 x 12 RGB, 3 classes: cat, dog, fox\n\n### Model" in text
    values = {m: v for _, m, v in _table_rows(text)}
    assert values["Component Majority Labels"] == "[cat, fox, fox, dog]"
    assert values["Classes With Training Labels"] == "[cat, fox]"
    assert values["Labeled Training Images Per Class"] == "[cat: 3, dog: 0, fox: 5]"
    assert values["Labeled Training Images"] == "8"


def test_the_seed_digits_keep_the_seed_lines_and_other_shapes_say_theirs():
    s = _summary(np.random.default_rng(7))
    digits = {**CONFIG, "input_dim": 784, "image_shape": [], "num_classes": 10,
              "class_names": []}
    text = report.render_report(s, digits, HEADER)
    assert SEED_CONFIG in text and "Images:" not in text
    assert "[1, 1, 8, 1, 0, 6, 0, 1, 1, 9]" in text
    assert SEED_CONFIG in report.render_report(s, {**digits, "image_shape": [28, 28, 1]},
                                               HEADER)
    grey = report.render_report(s, {**digits, "input_dim": 64, "num_classes": 15}, HEADER)
    assert ("- Images: 8 x 8 grey, 15 classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, "
            "13, 14\n") in grey
    many = report.render_report(s, {**digits, "num_classes": 30,
                                    "class_names": [f"k{c}" for c in range(30)]}, HEADER)
    assert "30 classes: k0, k1," in many and "k19, ... (10 more)" in many
