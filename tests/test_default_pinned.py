"""The default model is the seed's model: its float64 loss, terms and gradient on one fixed
batch are pinned to values recorded from the seed model (commit 701027a, before the
semi-supervised work of issue 10), for the readable path (npvae/core/model.py) and the fast engine
(npvae/engine/mixture.py). A change that alters the default model (a new term with a non-zero
default weight, a changed init, a new parameter array, ...) fails here; new settings must leave the
default's numbers exactly as they were.

The batch: 32 of the embedded digits, every 157th image (the file is sorted by digit, so this
gives 3-4 of each class), the first 6 rows' labels visible and the rest -1; parameters from
init_params(cfg, default_rng(0)), noise from draw_noise(cfg, 32, default_rng(1)).

Each gradient array is summarised by its L2 norm, its L1 norm, its sum, its projection on fixed
random weights (default_rng(2)), and its largest entry (index and value), compared with
relative tolerance 1e-10. Sums and projections are compared relative to the L1 / L2 norm, plus
1e-12: some sums cancel to ~1e-14 by construction (pi_logits' gradient, a softmax's, sums to
0), and what is left is rounding, ~1e-16 x the size of the loss (~600). Not bit-for-bit:
float64 summation order differs between BLAS builds, thread counts and the kernels' Numba
and NumPy versions (NUMBA_DISABLE_JIT=1) by ~1e-16 relative.

These are deliberate pinned values, recorded once; never re-record them to make a change pass.
"""
from __future__ import annotations

import numpy as np
import pytest

from npvae import Config, draw_noise, evaluate, init_params, loss_and_grads
from npvae.training.data import load_digits
from npvae.engine.mixture import FastModel

REL = 1e-10
CANCELLED = 1e-12        # what rounding leaves of a sum that is 0 by construction (see above)
LABELED_ROWS = 6


def fixed_batch():
    x, y = load_digits()
    idx = np.arange(0, len(y), 157)[:32]
    x, y = x[idx].astype(np.float64), y[idx].copy()
    y[LABELED_ROWS:] = -1
    return x, y


def summarise(g: np.ndarray, weights: np.ndarray) -> tuple:
    """(L2 norm, L1 norm, sum, weighted sum, argmax |g|, g at that index) of one array."""
    a = g.ravel().astype(np.float64)
    i = int(np.argmax(np.abs(a)))
    return (float(np.linalg.norm(a)), float(np.abs(a).sum()), float(a.sum()),
            float(a @ weights), i, float(a[i]))


def fingerprint(engine: str) -> dict:
    """loss, terms, eval-mode terms and the per-array gradient summaries of one engine."""
    cfg = Config(dtype="float64")
    x, y = fixed_batch()
    p = init_params(cfg, np.random.default_rng(0))
    noise = draw_noise(cfg, len(y), np.random.default_rng(1))
    if engine == "readable":
        loss, g, terms = loss_and_grads(p, x, y, noise, cfg)
        _, eval_terms = evaluate(p, x, cfg, y)
    else:
        fast = FastModel(cfg)
        g = p.zeros_like()
        g.flat[:] = np.nan                          # every array must be written
        loss, terms = fast.loss_and_grads(p, x, y, noise, g)
        eval_terms = fast.evaluate(p, x, y)[0]
    wrng = np.random.default_rng(2)
    grads = {name: summarise(v, wrng.standard_normal(v.size)) for name, v in g.items()}
    return {"loss": float(loss), "terms": {k: float(v) for k, v in terms.items()},
            "eval_terms": {k: float(v) for k, v in eval_terms.items()}, "grads": grads}


def check(found: dict, pinned: dict) -> None:
    assert found["loss"] == pytest.approx(pinned["loss"], rel=REL)
    for kind in ("terms", "eval_terms"):
        for name, value in pinned[kind].items():
            assert found[kind][name] == pytest.approx(value, rel=REL), (kind, name)
        # a term added later must contribute nothing to the default model
        for name in set(found[kind]) - set(pinned[kind]):
            assert found[kind][name] == 0.0, (kind, name)
    assert list(found["grads"]) == list(pinned["grads"]), "the default's parameter arrays changed"
    for name, (l2, l1, total, proj, i, entry) in pinned["grads"].items():
        f_l2, f_l1, f_total, f_proj, f_i, f_entry = found["grads"][name]
        assert f_l2 == pytest.approx(l2, rel=REL), name
        assert f_l1 == pytest.approx(l1, rel=REL), name
        assert abs(f_total - total) <= REL * l1 + CANCELLED, name
        assert abs(f_proj - proj) <= REL * l2 * 10 + CANCELLED, name   # |w . g| ~ ||g||
        assert f_i == i, name
        assert f_entry == pytest.approx(entry, rel=REL), name


def test_fixed_batch_has_labeled_and_unlabeled_rows_of_every_digit():
    x, y = fixed_batch()
    _, y_true = load_digits()
    assert x.shape == (32, 784) and set(y_true[np.arange(0, 5000, 157)[:32]]) == set(range(10))
    assert (y[:LABELED_ROWS] >= 0).all() and (y[LABELED_ROWS:] == -1).all()


def test_readable_default_model_matches_the_seed():
    check(fingerprint("readable"), READABLE)


def test_fast_default_model_matches_the_seed():
    check(fingerprint("fast"), FAST)


# ---- recorded from commit 701027a (the seed model), Python 3.11, numpy 2.4, OpenBLAS ----
READABLE = {
    "loss": 644.7009215139107,
    "terms": {"recon": 550.1481686602397, "kl_z": 0.015656652054041535, "kl_c": 6.8765727655677905e-06, "dirichlet": 92.10340371976184, "diversity": -0.11488278267019976, "cls": 2.548568387952441},
    "eval_terms": {"recon": 543.8611179929715, "kl_z": 0.015656652054041535, "kl_c": 6.8765727655677905e-06, "dirichlet": 92.10340371976184, "diversity": -0.11488278267019976, "cls": 2.3244766906209584, "loss": 638.189779149311},
    "grads": {
        "enc0.W": (10.255366934895488, 1901.0228978204782, -167.820406050916, -6.44752935086867, 104502, -0.2845667953969251),
        "enc0.b": (1.2197678374953225, 13.656088874716318, -1.1456553242305465, -2.5577397201392453, 54, -0.34677433037150457),
        "enc1.W": (6.18357722087386, 560.4989030008982, 11.735536457469276, -2.369201555763872, 10734, 0.3988659580677637),
        "enc1.b": (1.9303103218746243, 15.160202044839348, 0.16879759716899503, 1.9115178069939844, 110, 0.6811878793912562),
        "enc2.W": (4.647024381628025, 197.18611255481002, -12.417313582885852, -5.72005773746705, 3762, 0.7337139350360022),
        "enc2.b": (2.8551053219340745, 15.052518647210126, -1.766593414826592, 1.5690538322829721, 50, 1.186461386115436),
        "enc_c.W": (0.016483197577496105, 0.204595462998592, 9.208183261028013e-14, 0.0005957967704268066, 111, 0.0061219063457998435),
        "enc_c.b": (0.02018239132084195, 0.049242089462381684, 2.60512098004817e-14, 0.007707357106120767, 1, 0.015519540420771943),
        "enc_mu.W": (1.4270382789927374, 9.046907951392143, -7.288689463330509, -1.438321511380574, 22, -0.8343961326047777),
        "enc_mu.b": (1.3398084423171235, 1.866427046535951, -1.866427046535951, 0.23711085765612125, 0, -1.0964797201425585),
        "enc_lv.W": (3.8770229376379017, 27.04398900623682, 26.890928474147174, 0.173287688671379, 23, 1.4728147646028056),
        "enc_lv.b": (4.261291875990933, 6.023486811261272, 6.023486811261272, -4.737204499870738, 1, 3.1050487368477935),
        "pi_logits": (3.188261678949558e-05, 8.130293262382791e-05, -2.8421716206667585e-15, 3.9902467066599296e-05, 9, -2.2554777343231076e-05),
        "embed": (1.079255274662976, 8.120339128114225, 2.119282829273776, -0.8545139230111661, 2, 0.30859678742483954),
        "dec_z.W": (2.5950640864561887, 16.569674988440784, -1.8080496918888143, -0.3178041429204468, 28, -0.7949146516527105),
        "dec_z.b": (2.3962825679316424, 11.435096362199841, 8.972557976377193, 0.6405242436749301, 2, 0.973673688781682),
        "dec_e.W": (0.05423061911098264, 0.5634700323875068, 0.07576023772577245, 0.024183313196628135, 140, 0.01565961153759067),
        "dec_e.b": (2.187582912622864, 9.830348322545346, 2.0219929285311786, -1.5358683544048257, 15, 0.984873998841327),
        "dec0.W": (11.602111047112482, 418.05580854463096, 226.66577009209078, -7.501049487892797, 2478, 1.61088052256043),
        "dec0.b": (4.681820387868097, 39.066917859433154, 19.332848239859622, 5.320088355992112, 68, 1.670028293417841),
        "dec1.W": (16.568416550425063, 1417.400560978394, 665.050802791747, -3.372807889823, 26596, 1.252808086916852),
        "dec1.b": (6.8332167764162355, 72.08257997649739, 27.341628821054744, -7.809822491563622, 188, 1.6179069713224816),
        "dec2.W": (29.61845580804055, 7752.145594973688, 7437.51298034944, 30.880659242604608, 157522, 0.40441552095466604),
        "dec2.b": (11.544964196785445, 295.6580361318604, 293.2668781052821, 4.506608274169489, 722, 0.6027021860073307),
        "cls0.W": (0.26926379947003787, 2.1260599125467876, 0.4705854788343496, 0.23136415238315058, 117, 0.09373924700703642),
        "cls0.b": (0.26365100766077737, 1.616124366400732, 0.8478407289331558, -0.2802256711046892, 28, 0.0731641177168736),
        "cls1.W": (1.427555483142382, 41.42432356425403, 8.3950568769982, -1.9916859377796854, 1594, 0.19331338183595384),
        "cls1.b": (0.45044721049310654, 2.356708923571109, 0.7078040168671473, -0.10840011894857088, 58, 0.19698442866432944),
        "cls2.W": (1.697223882783332, 21.701619559418525, -4.579669976578771e-16, -3.050635489425303, 80, -0.47297200621312024),
        "cls2.b": (0.7013325507208007, 1.6747940893199822, 2.7755575615628914e-17, 1.1170311291901318, 0, -0.5703460030469466),
    },
}
FAST = {
    "loss": 644.7009215139104,
    "terms": {"recon": 550.1481686602395, "kl_z": 0.015656652054041542, "kl_c": 6.876572765567805e-06, "dirichlet": 92.10340371976184, "diversity": -0.11488278267019976, "cls": 2.548568387952441},
    "eval_terms": {"recon": 543.8611179929713, "kl_z": 0.015656652054041542, "kl_c": 6.8765727655678066e-06, "dirichlet": 92.10340371976184, "diversity": -0.11488278267019976, "cls": 2.3244766906209584, "loss": 638.1897791493108},
    "grads": {
        "enc0.W": (10.25536693489549, 1901.0228978204782, -167.82040605091544, -6.447529350868673, 104502, -0.284566795396926),
        "enc0.b": (1.2197678374953222, 13.656088874716318, -1.1456553242305405, -2.5577397201392493, 54, -0.3467743303715057),
        "enc1.W": (6.183577220873858, 560.4989030008978, 11.735536457469468, -2.3692015557639463, 10734, 0.3988659580677633),
        "enc1.b": (1.9303103218746223, 15.160202044839334, 0.16879759716900142, 1.9115178069939929, 110, 0.6811878793912562),
        "enc2.W": (4.647024381628021, 197.18611255480985, -12.417313582885761, -5.720057737467079, 3762, 0.7337139350360024),
        "enc2.b": (2.8551053219340705, 15.052518647210103, -1.7665934148265836, 1.5690538322829721, 50, 1.186461386115437),
        "enc_c.W": (0.016483197577498297, 0.20459546299854947, 6.835894697521105e-16, 0.0005957967704609546, 111, 0.006121906345802738),
        "enc_c.b": (0.02018239132084321, 0.049242089462372664, 1.0613905587764094e-14, 0.007707357106160441, 1, 0.015519540420777873),
        "enc_mu.W": (1.4270382789927372, 9.046907951392143, -7.288689463330507, -1.4383215113805736, 22, -0.8343961326047777),
        "enc_mu.b": (1.3398084423171235, 1.866427046535951, -1.866427046535951, 0.23711085765612125, 0, -1.0964797201425585),
        "enc_lv.W": (3.8770229376379013, 27.04398900623682, 26.890928474147174, 0.173287688671379, 23, 1.4728147646028056),
        "enc_lv.b": (4.261291875990934, 6.0234868112612725, 6.0234868112612725, -4.73720449987074, 1, 3.1050487368477944),
        "pi_logits": (3.1882616789873086e-05, 8.13029326202752e-05, -1.2079221764537199e-14, 3.990246706056155e-05, 9, -2.255477734465216e-05),
        "embed": (1.0792552746629762, 8.120339128114225, 2.1192828292737764, -0.8545139230111662, 2, 0.3085967874248396),
        "dec_z.W": (2.595064086456189, 16.569674988440788, -1.8080496918888145, -0.31780414292044723, 28, -0.7949146516527106),
        "dec_z.b": (2.3962825679316424, 11.43509636219984, 8.972557976377193, 0.6405242436749301, 2, 0.973673688781682),
        "dec_e.W": (0.05423061911098264, 0.5634700323875068, 0.07576023772577246, 0.02418331319662813, 140, 0.01565961153759067),
        "dec_e.b": (2.187582912622864, 9.830348322545346, 2.0219929285311786, -1.5358683544048257, 15, 0.9848739988413271),
        "dec0.W": (11.602111047112482, 418.05580854463096, 226.6657700920908, -7.501049487892798, 2478, 1.6108805225604301),
        "dec0.b": (4.681820387868097, 39.06691785943315, 19.332848239859622, 5.320088355992115, 68, 1.6700282934178403),
        "dec1.W": (16.568416550425063, 1417.400560978394, 665.050802791747, -3.3728078898229983, 26596, 1.2528080869168523),
        "dec1.b": (6.8332167764162355, 72.08257997649739, 27.34162882105474, -7.809822491563626, 188, 1.6179069713224827),
        "dec2.W": (29.61845580804055, 7752.14559497369, 7437.51298034944, 30.880659242604533, 157522, 0.40441552095466593),
        "dec2.b": (11.544964196785445, 295.65803613186034, 293.2668781052821, 4.506608274169478, 722, 0.6027021860073305),
        "cls0.W": (0.2692637994700378, 2.1260599125467876, 0.4705854788343496, 0.2313641523831505, 117, 0.09373924700703644),
        "cls0.b": (0.26365100766077737, 1.6161243664007319, 0.8478407289331558, -0.28022567110468916, 28, 0.07316411771687362),
        "cls1.W": (1.427555483142382, 41.42432356425404, 8.395056876998199, -1.991685937779685, 1594, 0.1933133818359538),
        "cls1.b": (0.45044721049310654, 2.356708923571109, 0.7078040168671473, -0.10840011894857085, 58, 0.19698442866432944),
        "cls2.W": (1.6972238827833317, 21.701619559418525, 9.020562075079397e-16, -3.0506354894253036, 80, -0.4729720062131202),
        "cls2.b": (0.7013325507208007, 1.6747940893199822, 2.7755575615628914e-17, 1.1170311291901318, 0, -0.5703460030469466),
    },
}
