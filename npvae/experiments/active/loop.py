"""The active-learning loop: train, score the unlabeled training images, reveal a batch, repeat.

    Options                                   initial / batch / budget / epochs / retrain
    initial_labels(train, n, seed)            the first labels: n images of the training split
    pool_mask(n, train)                       the pool: the images a strategy may query
    train_model(cfg, x, y_known, splits, epochs, start)   a model, from scratch or continued
    run(cfg, x, y_eval, splits, strategy, opt, reveal, y_known, start, rng)   the rounds

Labels: y_known (N,) holds the labels revealed so far (-1 unknown). Only images of the
training split are ever queried (`pool`); the held-out (validation) split is scored with the
true labels y_eval when they exist and is never shown to a strategy or trained on as labeled.
`reveal(indices) -> labels` is the annotator: the data set's own labels in a simulation
(`simulated(y)`), a person in `--annotate` mode (npvae/experiments/active/annotate.py); a label -1
means skipped (the image is then never asked again); an annotator whose `stopped` attribute turns
True ends the loop after that round's labels are recorded.

Training: the first model trains `init_epochs` epochs on the first labels. Each round then
continues it for `round_epochs` more (warm start: the parameters, AdamW moments, generator
states and epoch count carry over through an npvae.training.loop.TrainState, so the staged KL
schedule does not restart), or with `retrain` fits a new model from scratch for `init_epochs`
epochs. The labeled rows, the grown set, join every batch as the config says
(labeled_per_batch).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from npvae.core.config import Config
from npvae.reporting import metrics as M
from npvae.reporting.summary import model_outputs, predictors
from npvae.training.loop import TrainState, fit

from .query import STRATEGIES


@dataclass(frozen=True)
class Options:
    initial: int = 10          # labels to start from, drawn at random from the training split
    batch: int = 10            # labels revealed per round (B)
    budget: int = 100          # stop once this many labels are known
    init_epochs: int = 120     # epochs of the first model (and of every retrain)
    round_epochs: int = 30     # epochs added per round (warm start); (120, 15) and
                               # (40, 20) did worse for margin on seed 42 (docs/active-learning.md)
    retrain: bool = False      # fit a new model every round instead


@dataclass
class Start:
    """A trained model and where its training stands (the warm start of the next round)."""
    params: object
    state: TrainState | None
    seconds: float = 0.0
    history_len: int = 0
    extra: dict = field(default_factory=dict)


class LoopError(RuntimeError):
    """Training failed (diverged) in a round; the message says which."""


def initial_labels(train: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n indices of the training split drawn without replacement by default_rng(seed)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(train, min(n, len(train)), replace=False)).astype(np.int64)


def pool_mask(n: int, train: np.ndarray) -> np.ndarray:
    """(n,) True on the training split: the only images a strategy may query."""
    pool = np.zeros(n, bool)
    pool[train] = True
    return pool


def simulated(y: np.ndarray):
    """The simulated annotator: the data set's own label of each queried image."""
    return lambda idx: np.asarray(y)[idx]


def train_model(cfg: Config, x, y_known, splits, epochs: int, start: Start | None) -> Start:
    """Train `epochs` epochs on the labels y_known: from scratch (start None) or continuing
    start.state. Returns the new model with the state that continues it."""
    first = 1 if start is None or start.state is None else start.state.epoch
    end = first - 1 + epochs
    run_cfg = cfg.replace(epochs=end, patience=max(end, 1))
    last: dict = {}
    t0 = time.perf_counter()
    res = fit(run_cfg, x, y_known, splits.train, splits.val, progress=False,
              state=None if start is None else start.state,
              on_epoch_end=lambda s: last.update(state=s))
    if res.diverged:
        raise LoopError(f"training {res.diverged}")
    return Start(res.params, last.get("state"), time.perf_counter() - t0)


def scores(p, cfg: Config, x, y_known) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """The run's first predictor (model gmm: q(c|x)) as (name, probs (N, C)), q (N, K) and
    the encoder means mu (N, d), the embeddings a strategy may use."""
    out = model_outputs(p, x, cfg)
    name, probs = next(iter(predictors(p, cfg, out, np.asarray(y_known)).items()))
    return name, probs, out["q"], out["mu"]


def heldout_accuracy(probs, y_eval, val) -> float:
    return float("nan") if y_eval is None else M.accuracy(probs[val], np.asarray(y_eval)[val])


def run(cfg: Config, x, y_eval, splits, strategy: str, opt: Options, reveal, y_known,
        start: Start, rng: np.random.Generator, on_round=None) -> list[dict]:
    """The rounds after the first model `start` (trained on y_known's labels): query, reveal,
    train, score, until opt.budget labels are known (or the annotator stops, or nothing is
    left to query). Returns one dict per round, round 0 being the start: round, labels,
    accuracy (held-out), queried, revealed, seconds. y_known is updated in place."""
    choose = STRATEGIES[strategy]
    pool = pool_mask(len(x), splits.train)
    asked = np.zeros(len(x), bool)
    asked[y_known >= 0] = True
    model = start
    name, probs, q, mu = scores(model.params, cfg, x, y_known)

    def row(queried, revealed, seconds) -> dict:
        return {"round": len(rounds), "labels": int((y_known >= 0).sum()), "predictor": name,
                "accuracy": heldout_accuracy(probs, y_eval, splits.val), "queried": queried,
                "revealed": revealed, "seconds": seconds}

    rounds: list[dict] = []
    rounds.append(row(np.flatnonzero(y_known >= 0), y_known[y_known >= 0], start.seconds))
    if on_round:
        on_round(rounds[-1])
    while (count := int((y_known >= 0).sum())) < opt.budget:
        want = min(opt.batch, opt.budget - count)
        idx = np.asarray(choose(probs, q, y_known, pool & ~asked, want, rng, emb=mu), np.int64)
        _check_query(idx, pool, asked, want)
        if idx.size == 0:
            break                                       # nothing left to ask
        labels = np.asarray(reveal(idx), np.int64)
        asked[idx] = True
        y_known[idx] = labels                           # -1 stays unknown: skipped
        if getattr(reveal, "stopped", False):
            break                                       # the annotator quit mid-round
        t0 = time.perf_counter()
        model = train_model(cfg, x, y_known, splits,
                            opt.init_epochs if opt.retrain else opt.round_epochs,
                            None if opt.retrain else model)
        name, probs, q, mu = scores(model.params, cfg, x, y_known)
        rounds.append(row(idx, labels, time.perf_counter() - t0))
        if on_round:
            on_round(rounds[-1])
    rounds[-1]["params"] = model.params
    return rounds


def _check_query(idx, pool, asked, want) -> None:
    """A strategy's answer must be new, distinct, queryable and at most `want` long."""
    if idx.size > want or np.unique(idx).size != idx.size:
        raise LoopError(f"a strategy returned {idx.size} indices ({np.unique(idx).size} "
                        f"distinct) for a batch of {want}.")
    if idx.size and (not pool[idx].all() or asked[idx].any()):
        raise LoopError("a strategy returned an image outside the pool or already asked.")


STRATEGY_NAMES = tuple(STRATEGIES)
