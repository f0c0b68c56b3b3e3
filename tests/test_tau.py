"""The tau classifier of model gmm (npvae/core/tau.py, docs/math.md section 18): its term's
gradient (float64 central differences, random upstream gradients), what tau and the term mean,
the whole gmm loss with K = 15 > C = 10 components, fit re-forming tau every epoch, and the
config rules."""
from __future__ import annotations

import numpy as np
import pytest

from npvae.core import gmm
from npvae.core import layers as L
from npvae.core import tau as T
from npvae.core.config import Config, ConfigError
from npvae.core.model import loss_and_grads
from npvae.core.noise import draw_noise
from npvae.core.params import init_params
from npvae.training.loop import fit

from conftest import LABEL_CASES, check_layer, make_batch, numerical_grad, perturb, rel_err

TOL = 1e-6


def random_tau(rng, K, C):
    """A tau as tau_map makes one: positive rows that sum to 1."""
    return T.tau_map(rng.random((40, K)), rng.integers(0, C, 40), C)


def tau_config(**overrides) -> Config:
    """A small gmm model with classifier tau, K = 15 components for C = 10 classes, every
    weight non-zero so every path is used."""
    base = dict(model="gmm", classifier="tau", input_dim=12, hidden_dims=(8, 6),
                decoder_dims=(7, 9), latent_dim=3, K=15, num_classes=10, dtype="float64",
                w_kl=0.7, w_klc=0.9, w_dir=0.4, w_div=-0.3, w_cls=2.0)
    return Config(**{**base, **overrides}).validate()


# ------------------------------------------------------------------ the term's gradient
@pytest.mark.parametrize("labels", LABEL_CASES)
def test_tau_term_gradient_wrt_log_responsibilities(labels):
    rng = np.random.default_rng([1, LABEL_CASES.index(labels)])
    lq = L.log_softmax(rng.standard_normal((6, 5)))
    cfg = Config(K=5, num_classes=3)
    _, y = make_batch(cfg, 6, labels, rng)
    tau = random_tau(rng, 5, 3)
    err = check_layer(lambda a: T.tau_ce_forward(a, y, tau), T.tau_ce_backward, [lq], [0], rng)
    assert max(err) < 1e-7


def test_tau_term_gradient_wrt_the_scores_through_log_softmax():
    """The chain latent_backward uses: s -> lq = log softmax(s) -> the term."""
    rng = np.random.default_rng(2)
    y = np.array([0, -1, 2, 1, 2, -1])
    tau = random_tau(rng, 5, 3)

    def fwd(s):
        lq, c_lq = L.log_softmax_forward(s)
        ce, c_ce = T.tau_ce_forward(lq, y, tau)
        return ce, (c_lq, c_ce)

    def bwd(dy, cache):
        c_lq, c_ce = cache
        return L.log_softmax_backward(T.tau_ce_backward(dy, c_ce), c_lq)

    assert max(check_layer(fwd, bwd, [rng.standard_normal((6, 5))], [0], rng)) < 1e-7


def setup(labels: str, seed: int = 0, **overrides):
    rng = np.random.default_rng([seed, LABEL_CASES.index(labels)])
    cfg = tau_config(**overrides)
    p = init_params(cfg, rng)
    perturb(p, rng, 0.5)
    x, y = make_batch(cfg, 6, labels, rng)
    return cfg, p, x, y, draw_noise(cfg, 6, rng), random_tau(rng, cfg.K, cfg.num_classes)


@pytest.mark.parametrize("labels", LABEL_CASES)
@pytest.mark.parametrize("term", ("cls", "total"))
def test_whole_gmm_loss_gradient_with_tau(term, labels):
    """Every parameter of the model (encoder through q, prior, decoder), K = 15 > C = 10."""
    cfg, p, x, y, noise, tau = setup(labels)
    if term == "cls":
        cfg = cfg.replace(w_rec=0.0, w_kl=0.0, w_klc=0.0, w_dir=0.0, w_div=0.0)
    loss, g, terms = loss_and_grads(p, x, y, noise, cfg, tau)
    assert loss == pytest.approx(sum(terms.values()))
    num = numerical_grad(lambda: gmm.forward(p, x, y, cfg, noise, tau=tau)[0], p.flat, h=1e-5)
    worst = {n: rel_err(g[n].ravel(), num[o:o + g[n].size])
             for n, o in zip(p.layout.names, p.layout.offsets)}
    if term == "cls" and labels != "none":
        assert np.abs(g["enc0.W"]).max() > 0      # the term reaches the encoder through q
    assert max(worst.values()) < TOL, worst


# ------------------------------------------------------------------------ meaning
def test_rows_of_tau_sum_to_one_and_follow_the_counts():
    q = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.0, 0.1, 0.9], [0.3, 0.3, 0.4]])
    y = np.array([0, 0, 1, -1])
    S = T.soft_counts(q, y, 2)
    np.testing.assert_allclose(S, [[1.7, 0.0], [0.3, 0.1], [0.0, 0.9]])
    tau = T.tau_map(q, y, 2)
    np.testing.assert_allclose(tau.sum(axis=1), 1.0)
    np.testing.assert_allclose(tau[0], [1.8 / 1.9, 0.1 / 1.9])
    np.testing.assert_allclose(tau[2], [0.1 / 1.1, 1.0 / 1.1])
    np.testing.assert_allclose(T.predict(q, tau).sum(axis=1), 1.0)
    # every largest entry is above 0.5 (component 1's is 0.4 / 0.6); no labels: rows of 1/3
    assert list(T.free_components(tau)) == []
    assert list(T.free_components(T.tau_map(q, np.full(4, -1), 3))) == [0, 1, 2]


def test_ood_score():
    tau = np.array([[1.0, 0.0], [0.5, 0.5]])
    q = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    np.testing.assert_allclose(T.ood_score(q, tau), [0.0, 0.5, 0.5])


def test_identity_tau_is_the_component_cross_entropy():
    """K = C and tau = I: -log sum_c q_c tau[c, y] = -log q_y, the component CE on the scores,
    and the gradients agree too."""
    rng = np.random.default_rng(3)
    s, y = rng.standard_normal((7, 4)), np.array([0, 3, -1, 2, 2, -1, 1])
    lq, c_lq = L.log_softmax_forward(s)
    ce_tau, c_tau = T.tau_ce_forward(lq, y, np.eye(4))
    ce, c_ce = L.labeled_ce_forward(s, y)
    assert ce_tau == pytest.approx(ce, rel=1e-13)
    ds_tau = L.log_softmax_backward(T.tau_ce_backward(1.7, c_tau), c_lq)
    np.testing.assert_allclose(ds_tau, L.labeled_ce_backward(1.7, c_ce), atol=1e-14)


def test_identity_tau_gives_the_component_loss():
    """The whole gmm loss with classifier tau, K = C, tau = I equals the component loss on
    batches with no label (gamma = q on every row either way)."""
    cfg, p, x, y, noise, _ = setup("none", K=10)
    loss_tau, g_tau, _ = loss_and_grads(p, x, y, noise, cfg, np.eye(10))
    loss, g, _ = loss_and_grads(p, x, y, noise, cfg.replace(classifier="component"))
    assert loss_tau == pytest.approx(loss, rel=1e-13)
    np.testing.assert_allclose(g_tau.flat, g.flat, atol=1e-13)


def test_a_small_step_against_the_gradient_lowers_the_term():
    rng = np.random.default_rng(4)
    s, y = rng.standard_normal((8, 6)), rng.integers(0, 3, 8)
    tau = random_tau(rng, 6, 3)

    def term(s):
        lq, c_lq = L.log_softmax_forward(s)
        ce, c_ce = T.tau_ce_forward(lq, y, tau)
        return ce, L.log_softmax_backward(T.tau_ce_backward(1.0, c_ce), c_lq)

    before, ds = term(s)
    assert term(s - 1e-2 * ds)[0] < before


def test_tau_is_needed_on_labeled_rows_only():
    cfg, p, x, y, noise, _ = setup("several")
    with pytest.raises(ValueError, match="tau"):
        gmm.forward(p, x, y, cfg, noise)
    assert gmm.forward(p, x, np.full_like(y, -1), cfg, noise)[1]["cls"] == 0.0


# ---------------------------------------------------------------------- config rules
@pytest.mark.parametrize("overrides,field", [
    (dict(model="mixture", classifier="tau"), "classifier"),
    (dict(model="gmm", K=12, num_classes=10), "K"),
    (dict(model="gmm", classifier="tau", K=8, num_classes=10), "K"),
])
def test_config_rules(overrides, field):
    with pytest.raises(ConfigError, match=field):
        Config(**overrides).validate()


def test_config_allows_more_components_with_tau():
    assert Config(model="gmm", classifier="tau", K=15).validate().K == 15


# ------------------------------------------------------------------ a tiny training run
@pytest.mark.parametrize("engine", ("fast", "reference"))
def test_fit_forms_tau_every_epoch(digits, monkeypatch, engine):
    """2 epochs, K = 15 components for 10 classes: tau is formed at each epoch's start from the
    weights of that moment, so it changes; the fast engine runs core's latent block then, and
    the two engines agree."""
    x, yv, tr, va = digits
    cfg = Config(model="gmm", classifier="tau", K=15, latent_dim=4, hidden_dims=(32,),
                 decoder_dims=(32,), epochs=2, labeled_per_batch=8, dtype="float64",
                 batch_size=64).validate()
    seen = []
    fit_tau = gmm.fit_tau
    monkeypatch.setattr(gmm, "fit_tau", lambda *a, **k: seen.append(fit_tau(*a, **k)) or seen[-1])
    res = fit(cfg, x, yv, tr, va, progress=False, engine=engine)
    assert res.epochs_completed == 2 and not res.diverged
    assert len(seen) == 2 and all(t.shape == (15, 10) for t in seen)
    np.testing.assert_allclose(seen[1].sum(axis=1), 1.0)
    assert np.abs(seen[1] - seen[0]).max() > 1e-3
    if engine == "fast":
        ref = fit(cfg, x, yv, tr, va, progress=False, engine="reference")
        np.testing.assert_allclose(res.history["train_loss"], ref.history["train_loss"],
                                   rtol=1e-8)


def test_the_worked_example_of_the_docs():
    """docs/math.md section 18: K = 3, C = 2, one image of class 1."""
    q, tau, y = np.array([[0.6, 0.3, 0.1]]), np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]), \
        np.array([1])
    ce, cache = T.tau_ce_forward(np.log(q), y, tau)
    assert ce == pytest.approx(1.0498, abs=1e-4)
    ds = L.log_softmax_backward(T.tau_ce_backward(1.0, cache), np.log(q))
    np.testing.assert_allclose(ds, [[0.4286, -0.3857, -0.0429]], atol=1e-4)
    np.testing.assert_allclose(T.predict(q, tau), [[0.65, 0.35]])
    np.testing.assert_allclose(T.ood_score(q, tau), [0.46])
    assert T.free_components(tau).size == 0


def test_the_report_predicts_with_q_tau():
    """reporting: classifier tau's one predictor is p(y|x) = q tau, tau from the training
    labels only (y_seen)."""
    from npvae.reporting.summary import predictors

    rng = np.random.default_rng(5)
    q = L.softmax_forward(rng.standard_normal((20, 15)))[0]
    seen = np.where(rng.random(20) < 0.5, rng.integers(0, 10, 20), -1)
    cfg = tau_config()
    probs = predictors(None, cfg, {"q": q}, seen)
    assert list(probs) == ["components q(c|x) tau"]
    np.testing.assert_allclose(probs["components q(c|x) tau"], q @ T.tau_map(q, seen, 10))


def test_the_estimator_predicts_with_its_tau_and_keeps_it(digits, tmp_path):
    from npvae import MixtureVAEClassifier

    x, yv, tr, _ = digits
    clf = MixtureVAEClassifier(model="gmm", classifier="tau", K=12, latent_dim=3,
                               hidden_dims=(16,), decoder_dims=(16,), epochs=1,
                               batch_size=64, dtype="float64").fit(x[tr], yv[tr])
    assert clf.config_.K == 12 and clf.tau_.shape == (12, 10)
    proba = clf.predict_proba(x[:5])
    np.testing.assert_allclose(proba, clf.responsibilities(x[:5]) @ clf.tau_)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    back = MixtureVAEClassifier.load(clf.save(tmp_path / "m.npz"))
    np.testing.assert_array_equal(back.predict_proba(x[:5]), proba)


def test_a_run_stopped_inside_an_epoch_resumes_with_that_epochs_tau(digits, tmp_path):
    """The map is formed at step 0 from the weights of that moment; a run stopped inside the
    epoch (and written to and read from a resume file) carries it, so it ends where the
    uninterrupted run ends."""
    from npvae.training.checkpoint import load_resume, save_resume

    x, yv, tr, va = digits
    cfg = Config(model="gmm", classifier="tau", K=12, latent_dim=3, hidden_dims=(16,),
                 decoder_dims=(16,), epochs=2, labeled_per_batch=8, dtype="float64",
                 batch_size=64).validate()
    a = fit(cfg, x, yv, tr, va, progress=False)
    calls = iter(range(10**6))
    stopped = fit(cfg, x, yv, tr, va, progress=False, should_stop=lambda: next(calls) == 7)
    assert stopped.interrupted and stopped.state.epoch == 2 and stopped.state.step > 0
    path = save_resume(tmp_path / "resume.npz", stopped.state, cfg)
    state = load_resume(path, cfg, len(tr))
    np.testing.assert_array_equal(state.tau, stopped.state.tau)
    c = fit(cfg, x, yv, tr, va, progress=False, state=state)
    np.testing.assert_array_equal(a.params.flat, c.params.flat)
