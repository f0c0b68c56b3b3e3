"""What a person tuning model gmm's settings watches per epoch, beside the loss: the
consistency term as trained, the share of confident targets, and the accuracy on the held-out
(validation) split.

Nothing here changes training. The consistency figures are read from values the step already
computes (Consistency.loss_and_grads returns the term and the share of confident targets);
the held-out accuracy is one eval-mode pass (z = mu, no random numbers) over the validation
split after the epoch's evaluation. The accuracy is shown only: early stopping and the best
weights still follow the validation loss alone.

History columns (only for the runs they describe, so the seed's model's history is as it was):

    cons_loss       model gmm with w_cons > 0: the consistency term per unlabeled image, as
                    trained (weighted: w_cons times the masked KL), over the epoch's
                    unlabeled images
    cons_confident  model gmm with w_cons > 0: the share of the epoch's unlabeled images whose
                    target reached cons_threshold
    heldout_acc     model gmm, when fit is given the validation labels: the share of labeled
                    validation images whose argmax q(c|x) is their label
"""
from __future__ import annotations

import numpy as np

from npvae.core import gmm
from npvae.core.config import Config
from npvae.core.tau import predict

__all__ = ["CONS_KEYS", "HELDOUT_KEY", "Monitor"]

CONS_KEYS = ("cons_loss", "cons_confident")
HELDOUT_KEY = "heldout_acc"


class Monitor:
    """Accumulates the consistency figures over an epoch's steps and appends the epoch's row.

    The running sums live in the TrainState (run.epoch_sums: the weighted term times the
    images, the confident images, the images) so that a run stopped mid-epoch and resumed
    records the same row as one that never stopped."""

    def __init__(self, cfg: Config, val_labels, ops=None):
        self.cfg, self.ops = cfg, ops
        gmm_run = cfg.model == "gmm"
        self.cons = gmm_run and cfg.w_cons > 0
        self.val_labels = (np.asarray(val_labels) if gmm_run and val_labels is not None
                           else None)

    def step(self, run, term: float, share: float, images: int) -> None:
        """Add one step's consistency term (the mean over its `images` unlabeled images) and
        share of confident targets to the epoch's sums."""
        s = run.epoch_sums
        s["cons"] = s.get("cons", 0.0) + term * images
        s["confident"] = s.get("confident", 0) + int(round(share * images))
        s["images"] = s.get("images", 0) + images

    def record(self, run, p, xva) -> dict:
        """Append the epoch's figures to run.history (a column that is new to a resumed
        history starts with NaN for the epochs before), reset the sums; returns the row."""
        row = {}
        if self.cons:
            s, nan = run.epoch_sums, float("nan")
            n = s.get("images", 0)
            row["cons_loss"] = s.get("cons", 0.0) / n if n else nan
            row["cons_confident"] = s.get("confident", 0) / n if n else nan
        if self.val_labels is not None:
            row[HELDOUT_KEY] = self.heldout_accuracy(p, xva, run.tau)
        run.epoch_sums = {}
        before = len(run.history["epoch"]) - 1
        for k, v in row.items():
            run.history.setdefault(k, [float("nan")] * before).append(float(v))
        return row

    def heldout_accuracy(self, p, xva, tau=None) -> float:
        """The share of labeled validation images whose predicted class (eval mode, in chunks
        of eval_batch_size) is their label: argmax q(c|x), or argmax q(c|x) tau with the tau
        classifier's map (K, C); NaN when none has a label."""
        known = self.val_labels >= 0
        if not known.any():
            return float("nan")
        lq = gmm.class_log_posterior_chunks(p, xva, self.cfg, self.ops,
                                            self.cfg.eval_batch_size)       # (N, K)
        scores = lq if tau is None else predict(np.exp(lq), tau)            # (N, K) or (N, C)
        return float(np.mean(scores.argmax(axis=1)[known] == self.val_labels[known]))
