"""Active learning (issue 15): each query strategy picks what its definition says, the loop's
bookkeeping, the command's files, and the interactive annotator fed through stdin."""
from __future__ import annotations

import csv
import io
import math
import shutil

import numpy as np
import pytest

from npvae.experiments.active import query as Q
from npvae.experiments.active.command import main
from npvae.experiments.active.report import MergeError, goal, merge, read_rows, rerender
from npvae.experiments.active.loop import Options, initial_labels, run, simulated, train_model
from npvae.experiments.active.annotate import Annotator
from npvae.core.config import Config
from npvae.training.data import load_data

RNG = np.random.default_rng


def onehotish(rows):
    """Rows of probabilities (each normalised)."""
    p = np.asarray(rows, float)
    return p / p.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------- strategies

def test_candidates_exclude_labeled_and_held_out_and_fewer_than_batch_returns_all():
    probs = onehotish(np.ones((6, 3)) + np.arange(6)[:, None] * np.eye(3)[[0, 1, 2, 0, 1, 2]])
    y_known = np.array([-1, 2, -1, -1, -1, -1])
    pool = np.array([True, True, True, False, True, True])   # 3 is held out
    emb = RNG(1).normal(size=(6, 2))
    for name, fn in Q.STRATEGIES.items():
        got = fn(probs, probs, y_known, pool, 10, RNG(0), emb=emb)
        assert sorted(got.tolist()) == [0, 2, 4, 5], name     # every candidate, once
        one = fn(probs, probs, y_known, pool, 2, RNG(0), emb=emb)
        assert len(set(one.tolist())) == 2 and set(one.tolist()) <= {0, 2, 4, 5}, name


def test_random_is_uniform_over_candidates_and_follows_its_generator():
    probs = onehotish(np.ones((50, 4)))
    y_known = np.full(50, -1)
    y_known[:10] = 0
    pool = np.ones(50, bool)
    a = Q.random(probs, probs, y_known, pool, 5, RNG(3))
    assert np.array_equal(a, Q.random(probs, probs, y_known, pool, 5, RNG(3)))
    seen = np.concatenate([Q.random(probs, probs, y_known, pool, 5, RNG(s)) for s in range(200)])
    assert seen.min() >= 10 and np.unique(seen).size == 40   # every candidate, never a labeled one


def test_entropy_and_margin_rank_by_their_own_definitions():
    # row 0: two-way tie (margin 0, entropy log 2); row 1: spread over three (margin 0.1,
    # entropy 1.09 > log 2); row 2: confident; rows 3/4 equal to row 1 (ties -> lower index)
    probs = onehotish([[0.5, 0.5, 0.0], [0.4, 0.3, 0.3], [0.9, 0.05, 0.05],
                       [0.4, 0.3, 0.3], [0.4, 0.3, 0.3]])
    y_known, pool = np.full(5, -1), np.ones(5, bool)
    assert Q.entropy(probs, probs, y_known, pool, 1, None).tolist() == [1]
    assert Q.margin(probs, probs, y_known, pool, 1, None).tolist() == [0]
    assert Q.entropy(probs, probs, y_known, pool, 3, None).tolist() == [1, 3, 4]
    assert Q.margin(probs, probs, y_known, pool, 5, None).tolist() == [0, 1, 3, 4, 2]
    assert np.allclose(Q.entropy_scores(probs)[:2], [math.log(2), -(0.4 * math.log(0.4) +
                                                                  0.6 * math.log(0.3))])


def test_responsibility_asks_unlabeled_components_first_then_unclear_ones():
    # 3 components: 0 has two labeled images that disagree, 1 has one labeled image, 2 none.
    q = onehotish([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1],      # labeled (component 0): 3, 5
                   [0.1, 0.8, 0.1],                          # labeled (component 1): 7
                   [0.1, 0.1, 0.8], [0.2, 0.1, 0.7],         # component 2, no label: 3 first
                   [0.6, 0.3, 0.1], [0.5, 0.4, 0.1],         # component 0, uncertain
                   [0.1, 0.6, 0.3]])                          # component 1
    y_known = np.array([3, 5, 7, -1, -1, -1, -1, -1])
    pool = np.ones(8, bool)
    unclear = Q.unclear(q.argmax(1), y_known, 3)
    assert np.allclose(unclear, [1 - 1 / 3, 1 - 1 / 2, 1.0])
    got = Q.responsibility(q, q, y_known, pool, 8, None).tolist()
    assert got[0] == 3                                  # the most typical of component 2
    rest = {i: unclear[q[i].argmax()] * (1 - q[i].max()) for i in (4, 5, 6, 7)}
    assert got[1:] == sorted(rest, key=lambda i: -rest[i])


def test_diversity_caps_picks_per_component_and_fills_when_short():
    # the margin grows with the index; images 0-5 in component 0, 6-9 in component 1
    n, K = 10, 2
    probs = onehotish([[1.0, 1.0 - 0.08 * i] for i in range(n)])
    q = np.zeros((n, K))
    q[:6, 0] = q[6:, 1] = 1
    y_known, pool = np.full(n, -1), np.ones(n, bool)
    got = Q.diversity(probs, q, y_known, pool, 4, None).tolist()
    cap = math.ceil(4 / K) + 1                          # 3
    assert got == [0, 1, 2, 6] and cap == 3
    assert Q.margin(probs, q, y_known, pool, 4, None).tolist() == [0, 1, 2, 3]
    pool[6:] = False                                    # only component 0 left: filled anyway
    assert Q.diversity(probs, q, y_known, pool, 4, None).tolist() == [0, 1, 2, 3]


def blob(centre, extra=0):
    """A hand-made cluster: its centre, 4 points at distance 1 around it, one outlier at
    distance 3 and `extra` points at distance 1.5 (a larger blob)."""
    around = [(1, 0), (-1, 0), (0, 1), (0, -1), (0, 3)] + [(1.5, 0)] * extra
    return np.asarray(centre, float) + np.array([(0.0, 0.0)] + around)


def test_typical_picks_the_most_typical_image_of_each_unlabeled_cluster_largest_first():
    # three well-separated blobs in a 2-d latent space; blob A holds the one labeled image,
    # blob C is larger than blob B; rows shuffled so that the answer is not the index order
    emb = np.concatenate([blob((0, 0)), blob((50, 0)), blob((0, 50), extra=2)])
    perm = RNG(7).permutation(len(emb))
    emb = emb[perm]
    where = np.argsort(perm)                            # where[i]: the new row of old row i
    a, b, c = where[0], where[6], where[12]            # the three centres
    y_known = np.full(len(emb), -1)
    y_known[where[1]] = 4                               # one labeled image, in blob A
    pool = np.ones(len(emb), bool)
    pool[where[13]] = False                             # held out (blob C): never returned
    probs = onehotish(np.ones((len(emb), 3)))
    for seed in range(5):                               # the k-means seed does not matter
        got = Q.typical(probs, probs, y_known, pool, 2, RNG(seed), emb=emb)
        assert got.tolist() == [c, b]                   # centres, larger blob first; not A
    three = Q.typical(probs, probs, y_known, pool, 3, RNG(0), emb=emb).tolist()
    assert len(set(three)) == 3 and where[1] not in three and where[13] not in three
    t = Q.typicality(blob((0, 0)))
    assert t.argmax() == 0 and np.isclose(t[0], 1 / np.mean([1, 1, 1, 1, 3]))
    with pytest.raises(ValueError, match="embeddings"):
        Q.typical(probs, probs, y_known, pool, 2, RNG(0))


# ----------------------------------------------------------------------------- the loop

TINY = dict(model="gmm", latent_dim=3, hidden_dims=(16,), decoder_dims=(16,), num_samples=240,
            labeled_per_batch=4, batch_size=64, warmup_epochs=1, anneal_epochs=1, w_dir=0.0,
            w_div=0.0, w_cls=12.0, seed=5)


@pytest.mark.parametrize("strategy, retrain", [("random", False), ("responsibility", True)])
def test_loop_bookkeeping(strategy, retrain):
    cfg = Config(**TINY).validate()
    x, y, splits = load_data(cfg)
    opt = Options(initial=5, batch=10, budget=32, init_epochs=1, round_epochs=1, retrain=retrain)
    asked = []
    truth = simulated(y)
    reveal = lambda idx: (asked.append(np.asarray(idx).copy()), truth(idx))[1]  # noqa: E731
    y_known = np.full(len(y), -1)
    first = initial_labels(splits.train, opt.initial, cfg.seed)
    y_known[first] = y[first]
    start = train_model(cfg, x, y_known, splits, opt.init_epochs, None)
    rounds = run(cfg, x, y, splits, strategy, opt, reveal, y_known, start, RNG(0))
    assert [r["labels"] for r in rounds] == [5, 15, 25, 32]
    every = np.concatenate([first, *asked])
    assert np.unique(every).size == every.size == 32          # no label revealed twice
    assert not np.isin(every, splits.val).any()                # held-out never queried
    assert np.array_equal(np.flatnonzero(y_known >= 0), np.sort(every))
    assert all(np.array_equal(r["revealed"], y[r["queried"]]) for r in rounds)
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rounds)
    assert start.state.epoch == opt.init_epochs + 1            # the warm start's position


def test_warm_start_continues_the_same_run_bit_for_bit():
    cfg = Config(**TINY).validate()
    x, y, splits = load_data(cfg)
    y_known = np.full(len(y), -1)
    y_known[splits.train[:8]] = y[splits.train[:8]]
    whole = train_model(cfg, x, y_known, splits, 3, None)
    first = train_model(cfg, x, y_known, splits, 2, None)
    more = train_model(cfg, x, y_known, splits, 1, first)
    assert more.state.epoch == whole.state.epoch == 4
    assert np.array_equal(more.params.flat, whole.params.flat)
    assert not np.array_equal(first.params.flat, whole.params.flat)


def test_command_writes_report_for_every_seed_and_strategy(tmp_path):
    toml = tmp_path / "tiny.toml"
    toml.write_text("\n".join(f"{k} = {_toml(v)}" for k, v in TINY.items() if k != "seed"))
    out = tmp_path / "run"
    code = main(["--config", str(toml), "--seed", "1", "2", "--strategy", "random", "margin",
                 "--initial", "4", "--batch", "6", "--budget", "16", "--init-epochs", "1",
                 "--round-epochs", "1", "--jobs", "1", "--out", str(out)])
    assert code == 0
    rows = list(csv.DictReader(open(out / "active.csv")))
    assert {(r["seed"], r["strategy"]) for r in rows} == {(s, m) for s in "12"
                                                          for m in ("random", "margin")}
    assert sorted({int(r["labels"]) for r in rows}) == [4, 10, 16]
    text = (out / "ACTIVE.md").read_text()
    for rel in ("curves.png", "queries/random_seed1.png", "queries/margin_seed2.png"):
        assert (out / rel).is_file() and rel in text
    assert "| 16 |" in text and "Goal" in text
    (out / "ACTIVE.md").unlink()
    assert rerender(out).read_text() == text            # from active.csv + active.json alone


def test_merge_joins_runs_of_other_strategies_only_when_their_first_models_agree(tmp_path):
    toml = tmp_path / "tiny.toml"
    toml.write_text("\n".join(f"{k} = {_toml(v)}" for k, v in TINY.items() if k != "seed"))
    common = ["--config", str(toml), "--initial", "4", "--batch", "6", "--budget", "10",
              "--init-epochs", "1", "--round-epochs", "1", "--jobs", "1"]
    for name, strategy in (("a", "random"), ("b", "typical")):
        assert main([*common, "--seed", "1", "--strategy", strategy,
                     "--out", str(tmp_path / name)]) == 0
    text = merge(tmp_path / "ab", [tmp_path / "a", tmp_path / "b"]).read_text()
    rows = read_rows(tmp_path / "ab" / "active.csv")
    assert sorted({r["strategy"] for r in rows}) == ["random", "typical"]
    assert len(rows) == 4 and "| random | typical |" in text
    shutil.copytree(tmp_path / "b", tmp_path / "c")    # the same run, said to be of seed 2
    info = tmp_path / "c" / "active.json"
    info.write_text(info.read_text().replace('"seeds": [\n  1\n ]', '"seeds": [\n  2\n ]'))
    with pytest.raises(MergeError, match="seeds"):
        merge(tmp_path / "ac", [tmp_path / "a", tmp_path / "c"])
    b = tmp_path / "b" / "active.csv"                   # another first model: refused
    lines = b.read_text().splitlines()
    cells = lines[1].split(",")
    cells[5] = str(float(cells[5]) + 0.5)               # round 0's held-out accuracy
    b.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    with pytest.raises(MergeError, match="first model"):
        merge(tmp_path / "ab2", [tmp_path / "a", tmp_path / "b"])


def test_goal_compares_at_the_largest_measured_count_within_half_the_budget():
    # rounds at 10, 20, 30 labels: half the budget (15) is not measured, 10 is
    acc = {("random", 10): 0.3, ("random", 20): 0.5, ("random", 30): 0.6,
           ("typical", 10): 0.3, ("typical", 20): 0.7, ("typical", 30): 0.8}
    rows = [{"seed": seed, "strategy": s, "labels": n, "accuracy": a + 0.01 * seed}
            for seed in (1, 2) for (s, n), a in acc.items()]
    g = goal(rows, ["random", "typical"])
    assert (g["labels"], g["half"]) == (30, 10)
    assert g["reach"] == {"typical": 20} and g["met"] is False
    assert g["best_at_half"] == "typical" and g["seeds_above"] == (0, 2)


def test_bad_values_are_refused(tmp_path, capsys):
    assert main(["--budget", "0", "--out", str(tmp_path / "a")]) == 2
    assert "--budget 0" in capsys.readouterr().err
    assert main(["--initial", "20", "--budget", "10", "--out", str(tmp_path / "b")]) == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ----------------------------------------------------------------------------- annotate

def test_annotator_asks_again_on_bad_answers_skips_and_quits(tmp_path):
    x = RNG(0).random((20, 784)).astype(np.float32)
    out = io.StringIO()
    ask = Annotator(x, tmp_path, 10, io.StringIO("7\nseven\n12\n-1\n3\ns\n q \n"), out)
    labels = ask(np.array([4, 9, 11, 2]))
    assert labels.tolist() == [7, 3, -1, -1] and ask.stopped
    said = out.getvalue()
    assert said.count("label of image #9") == 4               # 'seven', 12, -1, then 3
    assert said.count("is not a label") == 3
    assert (tmp_path / "queries" / "round_00.png").is_file() and "round_00.png" in said


def test_annotate_mode_on_images_without_labels_through_stdin(tmp_path, monkeypatch, capsys):
    x, y, _ = load_data(Config(**TINY))
    data = tmp_path / "unlabeled.npz"
    np.savez(data, x=x)                                       # no y at all
    toml = tmp_path / "tiny.toml"
    toml.write_text("\n".join(f"{k} = {_toml(v)}" for k, v in TINY.items()
                              if k not in ("num_samples", "seed")) + f'\ndata = "{data}"\n')
    # 3 first labels (one bad answer first), then one round of 2 (a skip), then quit
    monkeypatch.setattr("sys.stdin", io.StringIO("1\nx\n2\n3\n4\ns\nq\n"))
    out = tmp_path / "ann"
    code = main(["--annotate", "--config", str(toml), "--strategy", "entropy", "--initial", "3",
                 "--batch", "2", "--budget", "9", "--init-epochs", "1", "--round-epochs", "1",
                 "--out", str(out)])
    assert code == 0
    said = capsys.readouterr().out
    assert "is not a label" in said and "round_01.png" in said
    rows = list(csv.DictReader(open(out / "annotations.csv")))
    assert [(r["round"], r["label"]) for r in rows] == [("0", "1"), ("0", "2"), ("0", "3"),
                                                        ("1", "4")]  # skip and quit: not written
    assert len({r["index"] for r in rows}) == 4
    assert (out / "checkpoints" / "final.npz").is_file()


def _toml(v):
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, tuple):
        return "[" + ", ".join(map(str, v)) + "]"
    return str(v)


def test_query_grids_draw_colour_images_titled_with_class_names(tmp_path, monkeypatch):
    """ACTIVE.md's query grids draw 8x12 RGB images at their shape, titled with the revealed
    label's name (? for a skipped image)."""
    from npvae.experiments.active.report import plot_queries
    from npvae.reporting import plots

    figures, close = [], plots.plt.close
    monkeypatch.setattr(plots.plt, "close", lambda fig=None: figures.append(fig))
    x = np.random.default_rng(0).random((10, 3 * 8 * 12), dtype=np.float32)
    rounds = [{"round": 0, "queried": [1, 2], "revealed": [2, -1]},
              {"round": 1, "queried": [3], "revealed": [0]}]
    out = plot_queries(x, rounds, tmp_path / "q.png", "queries", (8, 12, 3),
                       ("cat", "dog", "fox"))
    assert out.is_file()
    axes = figures[-1].axes
    assert [ax.get_title() for ax in axes if ax.get_images()] == ["#1: fox", "#2: ?", "#3: cat"]
    assert axes[0].get_images()[0].get_array().shape == (8, 12, 3)
    close(figures[-1])
