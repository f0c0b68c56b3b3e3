"""Every example runs end to end at tiny settings and writes what its docstring promises.

Each example is run as a subprocess (as a user would run it) with NPVAE_EXAMPLE_TINY=1 and
--out in a temporary folder; one run uses explicit command-line flags instead of the
environment variable. The decoder helper the pictures rely on is checked against the
model's own forward pass.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TINY = {"NPVAE_EXAMPLE_TINY": "1"}


def run(script: str, *args, env_extra=TINY, expect_ok: bool = True):
    env = {k: v for k, v in os.environ.items() if k != "NPVAE_EXAMPLE_TINY"}
    env.update({"PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", **env_extra})
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    if expect_ok:
        assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def check_png(path: Path, min_side: int = 150) -> np.ndarray:
    """Exists, decodes, is not tiny, and is not a blank canvas."""
    assert path.is_file(), f"{path} was not written"
    img = mpimg.imread(path)
    assert img.ndim == 3 and min(img.shape[:2]) >= min_side
    assert img[..., :3].std() > 0.01, f"{path} is blank"
    return img


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """One tiny run of generate_digits, shared: its checkpoint feeds latent_traversal."""
    out = tmp_path_factory.mktemp("generate_digits")
    proc = run("generate_digits.py", "--out", out)
    return out, proc


SCRIPTS = ["compare_k.py", "computational_graph.py", "elbo_gap.py", "generate_digits.py",
           "gradient_check.py", "image_sets.py", "latent_traversal.py", "sklearn_pipeline.py",
           "train_minimal.py", "worked_backward.py"]


def load_example(name: str):
    """Import examples/<name> as a module (it finds _common.py beside it)."""
    import importlib.util
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_file_location(f"_example_{name[:-3]}", EXAMPLES / name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXAMPLES))
    return module


def test_every_example_has_a_test_and_a_docstring():
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
    assert scripts == SCRIPTS
    for name in scripts:
        text = (EXAMPLES / name).read_text()
        doc = text.split('"""')[1]
        assert text.startswith('"""') and "second" in doc, \
            f"{name}: the module docstring must say what it shows and how long it takes"
        assert "What to expect" in doc, f"{name}: the docstring must say what to expect"


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_shows_what_it_does_and_what_to_expect(name, capsys):
    """--help prints the whole docstring, not only its first paragraph."""
    module = load_example(name)
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    doc = " ".join(module.__doc__.split())
    assert doc in out, f"{name} --help does not show its docstring"
    assert "What to expect" in out and f"python examples/{name}" in out


def test_gradient_check(tmp_path):
    from npvae import Config, Layout
    proc = run("gradient_check.py", "--out", tmp_path)
    table = (tmp_path / "gradient_check.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "rel_err" not in line]
    names = {row.split("|")[1].strip() for row in rows}
    # every parameter array of the model and the layers named in the docstring are checked
    assert set(Layout.from_config(Config()).names) <= names
    assert {"bce_logits", "softmax"} <= names
    errors = [float(row.split("|")[3]) for row in rows]
    assert max(errors) <= 1e-5 and "**NO**" not in table
    assert "largest rel_err" in proc.stdout


def test_gradient_check_fails_loudly_on_a_tight_tolerance(tmp_path):
    """The exit status really depends on the errors (a tolerance below float64 noise fails)."""
    proc = run("gradient_check.py", "--out", tmp_path, "--tol", "1e-300", expect_ok=False)
    assert proc.returncode == 1 and "**NO**" in (tmp_path / "gradient_check.md").read_text()


def test_generate_digits(digits_run):
    from npvae.training.checkpoint import load_checkpoint
    out, proc = digits_run
    check_png(out / "generate_digits.png")
    params, cfg = load_checkpoint(out / "model.npz")
    # the environment variable switched to the tiny settings (K=4, 256 images, 1 epoch)
    assert (cfg.K, cfg.num_samples, cfg.epochs) == (4, 256, 1)
    assert proc.stdout.count("component ") == cfg.K        # one usage line per component


def test_latent_traversal_from_checkpoint(digits_run, tmp_path):
    out, _ = digits_run
    proc = run("latent_traversal.py", "--out", tmp_path, "--checkpoint", out / "model.npz",
               "--component", 2, "--span", 2.5)
    check_png(tmp_path / "latent_traversal_c2.png")
    assert "z[0] in [-2.50, 2.50]" in proc.stdout


def test_latent_traversal_rejects_a_bad_component(digits_run, tmp_path):
    out, _ = digits_run
    proc = run("latent_traversal.py", "--out", tmp_path, "--checkpoint", out / "model.npz",
               "--component", 9, expect_ok=False)
    assert proc.returncode != 0 and "0..3" in proc.stderr


def test_latent_traversal_refuses_a_latent_that_is_not_2d(tmp_path):
    from npvae import Config, init_params
    from npvae.training.checkpoint import save_checkpoint

    cfg = Config(latent_dim=5, num_samples=200, K=3).validate()
    save_checkpoint(tmp_path / "d5.npz", init_params(cfg, np.random.default_rng(0)), cfg)
    proc = run("latent_traversal.py", "--out", tmp_path, "--checkpoint", tmp_path / "d5.npz",
               expect_ok=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "error: the checkpoint's latent_dim is 5; this example decodes a grid over a 2-D " \
           "latent, so it needs a model trained with --latent-dim 2." in proc.stderr
    assert not list(tmp_path.glob("*.png"))


def test_latent_traversal_trains_with_command_line_settings(tmp_path):
    """Tiny settings typed as flags, without the environment variable."""
    run("latent_traversal.py", "--out", tmp_path, "--epochs", 1, "--num-samples", 200,
        "--K", 3, "--steps", 4, "--component", 0, "--no-progress", env_extra={})
    check_png(tmp_path / "latent_traversal_c0.png")


def test_compare_k(tmp_path):
    """--K names the values to compare (it was once refused); the rest at tiny settings."""
    proc = run("compare_k.py", "--out", tmp_path, "--K", 3, 1)   # not the tiny default 1 3
    with open(tmp_path / "compare_k.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["K"]) for r in rows] == [3, 1]
    for r in rows:
        K, k_eff = int(r["K"]), float(r["K_eff"])
        assert 1.0 - 1e-9 <= k_eff <= K + 1e-9 and 1 <= int(r["active"]) <= K
        assert 0.0 <= float(r["accuracy"]) <= 1.0 and float(r["recon"]) > 0
    assert abs(float(rows[1]["K_eff"]) - 1.0) < 1e-9      # one component: K_eff is exactly 1
    table = (tmp_path / "compare_k.md").read_text().splitlines()
    assert table[0].startswith("| K | recon | kl | accuracy | K_eff") and len(table) == 4
    assert table[0] in proc.stdout
    check_png(tmp_path / "compare_k.png")
    proc = run("compare_k.py", "--out", tmp_path, "--K", 0, expect_ok=False)
    assert proc.returncode != 0 and "every K must be at least 1" in proc.stderr


def test_decode_matches_the_model():
    """examples/_common.py:decode(mu) gives the eval-mode logits of npvae.core.model.evaluate,
    for all components and for a chosen subset."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import _common
    finally:
        sys.path.remove(str(EXAMPLES))
    from npvae import Config, evaluate, init_params
    cfg = Config(input_dim=12, hidden_dims=(8, 6), K=3, embed_dim=3, pathway_dim=5,
                 decoder_dims=(7,), classifier_dims=(4,), dtype="float64")
    rng = np.random.default_rng(3)
    p = init_params(cfg, rng)
    p.flat[...] += 0.3 * rng.standard_normal(p.flat.shape)
    x = rng.random((5, 12))
    out, _ = evaluate(p, x, cfg)
    np.testing.assert_allclose(_common.decode(p, out.mu, cfg), out.logits, rtol=1e-12)
    np.testing.assert_allclose(_common.decode(p, out.mu, cfg, components=[2, 0]),
                               out.logits[:, [2, 0]], rtol=1e-12)
    with pytest.raises(ValueError, match="0..2"):
        _common.decode(p, out.mu, cfg, components=[3])


def test_elbo_gap_from_a_checkpoint(digits_run, tmp_path):
    """The departures account for the whole difference between the loss and -ELBO, and the
    parts are what they claim to be (KLs >= 0, the grey-level floor below the BCE)."""
    out, _ = digits_run
    proc = run("elbo_gap.py", "--out", tmp_path, "--checkpoint", out / "model.npz")
    rows = {}
    for line in (tmp_path / "elbo_gap.md").read_text().splitlines()[2:]:
        name, value = [c.strip() for c in line.strip("|").split("|")]
        rows[name] = float(value)
    recon, klz, klc = (rows["reconstruction sum_k q_ik BCE_ik"], rows["KL_z (unweighted)"],
                       rows["KL_c (unweighted)"])
    neg_elbo = rows["**-ELBO** (Bernoulli likelihood)"]
    assert neg_elbo == pytest.approx(recon + klz + klc, rel=1e-5)
    assert klz >= 0 and klc >= 0
    departures = sum(v for k, v in rows.items() if k.startswith("departure:"))
    assert rows["**loss** (the objective)"] == pytest.approx(neg_elbo + departures, rel=1e-5)
    assert 0 < rows["grey-level entropy sum_j H(x_ij): the least BCE possible"] < recon
    assert "loss = -ELBO + departures to" in proc.stdout


def test_continuous_bernoulli_normaliser_integrates_to_one():
    """exp(log C) normalises lam^x (1 - lam)^(1 - x) over x in [0, 1] (elbo_gap.py)."""
    from scipy.integrate import quad
    module = load_example("elbo_gap.py")
    for logit in (-7.0, -1.5, -1e-4, 0.0, 3e-4, 0.8, 4.0):
        lam = 1.0 / (1.0 + np.exp(-logit))
        mass, _ = quad(lambda x: lam ** x * (1 - lam) ** (1 - x), 0.0, 1.0)
        c = float(np.exp(module.log_cb_normaliser(np.array(logit))))
        assert c * mass == pytest.approx(1.0, rel=1e-7), logit


def test_computational_graph_measures_the_shapes():
    """The drawing's shapes come from running the model: its logits are (B, K, D)."""
    module = load_example("computational_graph.py")
    shapes = module.measure()
    s = module.SIZES
    assert shapes["l"] == (s["B"], s["K"], s["D"]) and shapes["g"] == (s["B"], s["K"], 2 * s["P"])
    assert module.symbolic(shapes["g"]) == "(B,K,2P)" and module.symbolic(shapes["pi"]) == "(K)"
    assert 'logits["l (B,K,D)<br/>logits"]' in module.mermaid()


def test_worked_backward_runs(tmp_path):
    proc = run("worked_backward.py", env_extra={})
    assert proc.stdout.count("below 1e-9") == 2 and "L_rec = (1/B) sum_ik" in proc.stdout


def test_sklearn_pipeline(tmp_path):
    """Three models on the CLI's split, one table row each with accuracies in [0, 1];
    LabelSpreading on pixels is far above chance even at tiny settings."""
    proc = run("sklearn_pipeline.py", "--out", tmp_path)
    table = (tmp_path / "sklearn_pipeline.md").read_text().splitlines()
    assert table[0] == "| model | held-out accuracy | unlabeled-train accuracy | fit seconds |"
    rows = {r.split("|")[1].strip(): [float(v) for v in r.split("|")[2:5]] for r in table[2:]}
    assert len(rows) == 3 and all(0.0 <= a <= 1.0 and 0.0 <= b <= 1.0 for a, b, _ in
                                   rows.values())
    assert rows["LabelSpreading (pixels, knn 7)"][0] > 0.4
    assert "300 images: 270 training" in proc.stdout


def test_image_sets_writes_the_stated_shapes(tmp_path):
    """digits8: scikit-learn's 1797 8 x 8 digits; colour: tinted RGB digits channel-last with
    class names; folder: the ImageFolder layout, a folder per class plus unlabeled/."""
    run("image_sets.py", "digits8", tmp_path / "d8.npz", env_extra={})
    run("image_sets.py", "colour", tmp_path / "c.npz", "--n", 40, "--side", 12, env_extra={})
    run("image_sets.py", "folder", tmp_path / "f", "--n", 60, "--side", 10, "--unlabeled", 10,
        env_extra={})
    with np.load(tmp_path / "d8.npz") as d:
        assert d["x"].shape == (1797, 8, 8) and d["x"].dtype == np.uint8 and d["x"].max() == 255
        assert sorted(np.unique(d["y"])) == list(range(10))
    with np.load(tmp_path / "c.npz") as c:
        assert c["x"].shape == (40, 12, 12, 3) and len(c["classes"]) == 10
        # every class's strokes have their own colour: the channels differ
        assert np.abs(c["x"][..., 0].astype(int) - c["x"][..., 1]).max() > 50
    folders = sorted(p.name for p in (tmp_path / "f").iterdir())
    assert "unlabeled" in folders and len(list((tmp_path / "f" / "unlabeled").glob("*.png"))) == 10
    assert sum(len(list((tmp_path / "f" / name).glob("*.png"))) for name in folders) == 60
