"""Each figure function writes a readable, reasonably sized PNG from synthetic arrays."""
from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest

from npvae.reporting import plots

SEED_PATHS = {
    "loss_comparison.png",
    "latent_spaces.png",
    "latent_by_component.png",
    "responsibility_histogram.png",
    "model_reconstructions.png",
    "visualizations/mixture/model_evolution.png",
    "component_embedding_divergence.png",
    "model_reconstruction_by_component.png",
}


def _check_png(path, min_side: int = 200) -> np.ndarray:
    """The file exists, decodes as an image and both sides are at least `min_side` px."""
    assert path.exists() and path.suffix == ".png"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] >= min_side and img.shape[1] >= min_side
    # A blank canvas would mean nothing was drawn.
    assert img[..., :3].std() > 0.01
    return img


def _history(E: int, K: int, rng: np.random.Generator) -> dict:
    hist = {"epoch": list(range(1, E + 1))}
    for split in ("train", "val"):
        for term in ("loss", "recon", "kl_z", "kl_c", "dirichlet", "diversity", "cls"):
            hist[f"{split}_{term}"] = list(rng.uniform(0.0, 10.0, size=E))
    pi = rng.dirichlet(np.ones(K), size=E)
    hist["pi"] = pi.tolist()  # lists of lists, as the training loop may store them
    hist["usage"] = rng.dirichlet(np.ones(K), size=E).tolist()
    return hist


def test_figures_table_has_the_seed_paths():
    assert set(plots.FIGURES.values()) == SEED_PATHS
    assert len(plots.FIGURES) == 8


def test_loss_comparison(tmp_path):
    rng = np.random.default_rng(0)
    out = plots.plot_loss_comparison(_history(3, 4, rng), tmp_path / "a" / "loss.png")
    _check_png(out)


@pytest.mark.parametrize("d", [2, 3])
def test_latent_plots(tmp_path, d):
    rng = np.random.default_rng(1)
    N, K = 300, 10
    mu = rng.normal(size=(N, d))
    y = rng.integers(0, 10, size=N)
    comp = rng.integers(0, K, size=N)
    _check_png(plots.plot_latent_by_label(mu, y, tmp_path / "lab.png"))
    _check_png(plots.plot_latent_by_component(mu, comp, K, tmp_path / "comp.png"))


def test_latent_by_component_many_components_and_bad_ids(tmp_path):
    rng = np.random.default_rng(2)
    mu = rng.normal(size=(200, 2))
    _check_png(plots.plot_latent_by_component(mu, rng.integers(0, 20, 200), 20,
                                              tmp_path / "k20.png"))
    with pytest.raises(ValueError, match="comp"):
        plots.plot_latent_by_component(mu, np.full(200, 4), 4, tmp_path / "bad.png")


def test_latent_rejects_a_bad_shape(tmp_path):
    with pytest.raises(ValueError, match="mu"):
        plots.plot_latent_by_label(np.zeros(5), np.zeros(5), tmp_path / "x.png")


def test_latent_points_project_a_larger_latent_with_pca_and_say_so():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(4)
    mu = rng.normal(size=(400, 5)) * [5.0, 0.2, 3.0, 0.1, 0.1]    # most variance in z0, z2
    pts, names = plots.latent_points(mu)
    assert names["what"] == "PCA projection of the 5-D latent means"
    assert np.allclose(pts, PCA(n_components=2).fit_transform(mu))
    assert names["x"].startswith("PC1 (") and "% of variance" in names["y"]
    # the projection keeps the two spread-out directions (z0, z2), unlike the first two axes
    assert pts.var(axis=0).sum() > 0.95 * mu.var(axis=0)[[0, 2]].sum()
    two = rng.normal(size=(10, 2))
    assert np.array_equal(plots.latent_points(two)[0], two)        # 2-D: mu itself


def test_latent_points_of_a_one_dim_latent_spread_the_groups():
    mu = np.linspace(-1, 1, 30)[:, None]
    groups = np.arange(30) % 3
    pts, names = plots.latent_points(mu, groups, "digit")
    assert np.array_equal(pts[:, 0], mu[:, 0]) and np.all(np.abs(pts[:, 1] - groups) <= 0.3)
    assert names["y"] == "digit (jittered)"
    assert np.array_equal(pts, plots.latent_points(mu, groups, "digit")[0])   # repeatable


@pytest.mark.parametrize("d", [1, 5])
def test_latent_plots_of_other_sizes(tmp_path, d):
    rng = np.random.default_rng(1)
    mu = rng.normal(size=(300, d))
    _check_png(plots.plot_latent_by_label(mu, rng.integers(0, 10, 300), tmp_path / "lab.png"))
    _check_png(plots.plot_latent_by_component(mu, rng.integers(0, 4, 300), 4,
                                              tmp_path / "comp.png"))


@pytest.mark.parametrize("d", [1, 5])
def test_a_run_with_another_latent_size_draws_every_figure(tmp_path, capsys, d):
    from npvae.runs import runner as run
    from npvae.reporting.report import latent_caption
    from conftest import write_digits_npz

    data = write_digits_npz(tmp_path / "digits.npz", 300)
    out = tmp_path / "run"
    status = run.main(["--data", str(data), "--latent-dim", str(d), "--epochs", "1",
                       "--batch-size", "64", "--no-progress", "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    for rel in SEED_PATHS:
        _check_png(out / rel, min_side=100)
    report = (out / "REPORT.md").read_text()
    assert latent_caption(d) in report and "Figures not drawn" not in report
    assert ("PCA projection of the 5-D latent means" in report) == (d == 5)


def test_responsibility_histogram(tmp_path):
    rng = np.random.default_rng(3)
    conf = rng.uniform(0.25, 1.0, size=500)
    _check_png(plots.plot_responsibility_histogram(conf, tmp_path / "hist.png"))


def test_reconstructions(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.uniform(size=(10, 784))
    recon = rng.uniform(size=(10, 784))
    img = _check_png(plots.plot_reconstructions(x, recon, tmp_path / "rec.png"))
    assert img.shape[1] > img.shape[0]  # a wide strip of 8 columns over 2 rows


@pytest.mark.parametrize("K", [4, 10])
def test_model_evolution(tmp_path, K):
    rng = np.random.default_rng(5)
    hist = _history(3, K, rng)
    out = plots.plot_model_evolution(hist["pi"], hist["usage"],
                                     tmp_path / "visualizations" / "mixture" / "evo.png")
    _check_png(out)


@pytest.mark.parametrize("K", [4, 10])
def test_embedding_divergence(tmp_path, K):
    rng = np.random.default_rng(6)
    embed = rng.normal(0.0, 0.02, size=(K, 8))
    _check_png(plots.plot_embedding_divergence(embed, tmp_path / "div.png"))


@pytest.mark.parametrize("K", [4, 10])
def test_reconstruction_by_component(tmp_path, K):
    rng = np.random.default_rng(7)
    n = 3
    x = rng.uniform(size=(n, 784))
    logits = rng.normal(size=(n, K, 784))
    q = rng.dirichlet(np.ones(K), size=n)
    comp_probs = 1.0 / (1.0 + np.exp(-logits))
    weighted = 1.0 / (1.0 + np.exp(-(q[:, :, None] * logits).sum(1)))
    img = _check_png(plots.plot_reconstruction_by_component(x, comp_probs, q, weighted,
                                                            tmp_path / "rbc.png"))
    assert img.shape[1] > img.shape[0]  # K + 2 columns, 3 rows
    with pytest.raises(ValueError, match="comp_probs"):
        plots.plot_reconstruction_by_component(x, comp_probs[:, :-1], q, weighted,
                                               tmp_path / "bad.png")


def test_all_figures_into_a_run_folder(tmp_path):
    """Writing every figure to its FIGURES path reproduces the seed's folder layout."""
    rng = np.random.default_rng(8)
    N, K = 120, 4
    hist = _history(3, K, rng)
    mu = rng.normal(size=(N, 2))
    q = rng.dirichlet(np.ones(K), size=N)
    x = rng.uniform(size=(N, 784))
    logits = rng.normal(size=(3, K, 784))
    F = {k: tmp_path / v for k, v in plots.FIGURES.items()}
    plots.plot_loss_comparison(hist, F["loss_comparison"])
    plots.plot_latent_by_label(mu, rng.integers(0, 10, N), F["latent_spaces"])
    plots.plot_latent_by_component(mu, q.argmax(1), K, F["latent_by_component"])
    plots.plot_responsibility_histogram(q.max(1), F["responsibility_histogram"])
    plots.plot_reconstructions(x[:8], x[8:16], F["reconstructions"])
    plots.plot_model_evolution(hist["pi"], hist["usage"], F["model_evolution"])
    plots.plot_embedding_divergence(rng.normal(size=(K, 8)), F["embedding_divergence"])
    plots.plot_reconstruction_by_component(x[:3], 1 / (1 + np.exp(-logits)), q[:3], x[3:6],
                                           F["reconstruction_by_component"])
    for rel in SEED_PATHS:
        _check_png(tmp_path / rel)


# ------------------------------------------------------------ other images, other classes

def _drawn_images(fig) -> list[np.ndarray]:
    """The arrays of every image a figure shows (AxesImage), in axes order."""
    return [im.get_array() for ax in fig.axes for im in ax.get_images()]


@pytest.fixture
def keep_figures(monkeypatch):
    """The figures the plot functions draw, kept open (they close them after saving) so
    that a test can read their matplotlib objects; closed at the end."""
    figures, close = [], plots.plt.close
    monkeypatch.setattr(plots.plt, "close", lambda fig=None: figures.append(fig))
    yield figures
    for fig in figures:
        close(fig)


SHAPES = {"grey 8x8": (8, 8, 1), "RGB 8x12": (8, 12, 3)}
CLASSES = {3: ("cat", "dog", "fox"), 15: tuple(f"kind{c:02d}" for c in range(15))}


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_image_figures_draw_at_the_data_shape(tmp_path, keep_figures, shape):
    """Reconstructions and reconstruction by component show (H, W) grey or (H, W, 3) colour
    images, each the row's channel-first values put back channel-last."""
    H, W, C = shape
    rng = np.random.default_rng(0)
    x = rng.random((8, C * H * W), dtype=np.float32)
    _check_png(plots.plot_reconstructions(x, x[::-1], tmp_path / "rec.png", shape=shape),
               min_side=100)
    drawn = _drawn_images(keep_figures[-1])
    want = (H, W) if C == 1 else (H, W, 3)
    assert len(drawn) == 16 and all(a.shape == want for a in drawn)
    assert np.allclose(drawn[0], x[0].reshape(C, H, W).transpose(1, 2, 0).squeeze())
    K = 3
    probs = rng.random((3, K, C * H * W))
    q = rng.dirichlet(np.ones(K), size=3)
    _check_png(plots.plot_reconstruction_by_component(x[:3], probs, q, x[3:6],
                                                      tmp_path / "rbc.png", shape=shape),
               min_side=100)
    drawn = _drawn_images(keep_figures[-1])
    assert len(drawn) == 3 * (K + 2) and all(a.shape == want for a in drawn)


def test_an_image_of_unknown_shape_is_drawn_as_a_strip(tmp_path, keep_figures):
    x = np.random.default_rng(0).random((4, 30))
    _check_png(plots.plot_reconstructions(x, x, tmp_path / "rec.png"), min_side=50)
    assert _drawn_images(keep_figures[-1])[0].shape == (1, 30)


@pytest.mark.parametrize("C", CLASSES, ids=lambda c: f"{c} classes")
@pytest.mark.parametrize("d", [1, 2])
def test_the_latent_legend_names_the_classes(tmp_path, keep_figures, C, d):
    rng = np.random.default_rng(1)
    names = CLASSES[C]
    y = np.arange(300) % C
    _check_png(plots.plot_latent_by_label(rng.normal(size=(300, d)), y, tmp_path / "lab.png",
                                          names, "class"))
    legend = keep_figures[-1].axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == list(names)
    assert legend.get_title().get_text() == "class"
    colours = {tuple(h.get_facecolor()[0]) for h in legend.legend_handles}
    assert len(colours) == C                              # one colour per class
    if d == 1:                                            # the classes name the y axis
        ticks = [t.get_text() for t in keep_figures[-1].axes[0].get_yticklabels()]
        assert ticks == list(names)


def test_model_gmm_names_its_components_by_class(tmp_path, keep_figures):
    rng = np.random.default_rng(2)
    names = CLASSES[3]
    plots.plot_latent_by_component(rng.normal(size=(90, 2)), np.arange(90) % 3, 3,
                                   tmp_path / "comp.png", names)
    texts = [t.get_text() for t in keep_figures[-1].axes[0].get_legend().get_texts()]
    assert texts == ["c0 cat (30)", "c1 dog (30)", "c2 fox (30)"]
    plots.plot_embedding_divergence(rng.normal(size=(3, 2)), tmp_path / "div.png",
                                    classes=names)
    ticks = [t.get_text() for t in keep_figures[-1].axes[0].get_xticklabels()]
    assert ticks == ["c0 cat", "c1 dog", "c2 fox"]


@pytest.mark.parametrize("shape,C", [((8, 12, 3), 3), ((8, 8, 1), 15)])
def test_draw_figures_of_a_run_on_other_images(tmp_path, shape, C):
    """summarize's figures for a model on 8x12 RGB images of 3 named classes, or 8x8 grey
    images of 15: every figure drawn, the legend naming the classes."""
    from npvae.core.config import Config
    from npvae.core.params import init_params
    from npvae.reporting import summary as S
    from npvae.training.data import make_splits

    H, W, Ch = shape
    cfg = Config(input_dim=Ch * H * W, image_shape=shape, num_classes=C, K=C, model="gmm",
                 class_names=CLASSES[C], latent_dim=2, hidden_dims=(8,), decoder_dims=(8,),
                 classifier_dims=(4,)).validate()
    rng = np.random.default_rng(0)
    N = 60
    x = rng.random((N, cfg.input_dim), dtype=np.float32)
    y = np.arange(N) % C
    splits = make_splits(N, 6, 0, 0.2)
    p = init_params(cfg, rng)
    hist = _history(2, C, rng)
    drawn = S.draw_figures(tmp_path, p, cfg, x, y, splits, hist)
    assert len(drawn) == 8
    for rel in SEED_PATHS:
        _check_png(tmp_path / rel, min_side=100)
