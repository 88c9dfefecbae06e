"""Did a fold learn? A fold whose training loss ended where a constant guess would be, or whose held-out scores are
(nearly) all the same, is degenerate: the run says so by name, and a run whose every fold is degenerate fails
instead of logging a model that answers the same for every row."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from relevance.errors import RelevanceError

log = logging.getLogger(__name__)

LOSS_MARGIN = 0.95  # a final loss above 95% of the constant guess's loss has learned (almost) nothing
MIN_SCORE_STD = 0.01  # held-out scores that vary less than this are a constant answer
MIN_HELDOUT_GAIN = 0.02  # held-out best F1 this far above the all-positive floor shows a slow fold did learn


class TrainingDegenerate(RelevanceError):
    """Every fold of a run ended without learning: no model is logged."""


def constant_guess_loss(labels: np.ndarray) -> float:
    """The binary cross-entropy of always answering the positive rate: what a model that ignores its input gets."""
    p = float(np.mean(labels)) if len(labels) else 0.5
    if p in (0.0, 1.0):
        return 0.0
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


@dataclass(frozen=True)
class FoldHealth:
    name: str  # "fold 1", "refit", ...
    final_loss: float  # mean training loss over the last steps
    guess_loss: float  # the constant guess's loss on the same labels
    score_std: float  # spread of the scores the fold gave its held-out rows
    heldout_gain: float = float("nan")  # best F1 minus the all-positive floor on its held-out rows (NaN: none)

    @property
    def loss_stuck(self) -> bool:
        return self.guess_loss > 0 and self.final_loss > LOSS_MARGIN * self.guess_loss

    @property
    def constant_scores(self) -> bool:
        return self.score_std < MIN_SCORE_STD

    @property
    def suspect(self) -> bool:
        """Worth a warning: the loss ended near the constant guess's, or the scores barely vary."""
        return self.loss_stuck or self.constant_scores

    @property
    def degenerate(self) -> bool:
        """Learned nothing: constant scores, or a stuck loss with no gain over the floor on held-out rows (a slow
        fold that still ranks its held-out rows better than the floor is warned about, not counted)."""
        return self.constant_scores or (self.loss_stuck and not self.heldout_gain > MIN_HELDOUT_GAIN)

    def describe(self) -> str:
        reasons = []
        if self.loss_stuck:
            reasons.append(
                f"its training loss ended at {self.final_loss:.3f}, where always answering the positive "
                f"rate scores {self.guess_loss:.3f}"
            )
        if self.constant_scores:
            reasons.append(f"its held-out scores spread only {self.score_std:.4f} (standard deviation)")
        verdict = "did not learn" if self.degenerate else "learned slowly"
        has_gain = not math.isnan(self.heldout_gain)
        gain = f"; held-out best F1 {self.heldout_gain:+.3f} over the floor" if has_gain else ""
        return f"{self.name} {verdict}: {' and '.join(reasons)}{gain}"


ADVICE = (
    "lower train.lr (or train.head_lr), raise train.epochs or train.warmup_ratio, try another seed, "
    "or check that the labels follow the text"
)


def warn_if_suspect(health: FoldHealth) -> None:
    if health.suspect:
        log.warning("%s; %s.", health.describe(), ADVICE)


def check_run(folds: list[FoldHealth]) -> None:
    """Refuse a run in which no fold learned (one degenerate fold of several is warned about, not fatal)."""
    if folds and all(f.degenerate for f in folds):
        raise TrainingDegenerate(f"no fold learned ({folds[0].describe()}); no model was logged; {ADVICE}.")


def heldout_gain(labels: np.ndarray, scores: np.ndarray) -> float:
    """Best F1 on held-out rows minus their all-positive floor: whether the fold ranks unseen rows at all."""
    from relevance.evaluation import metrics

    return metrics.best_f1_threshold(labels, scores).f1 - metrics.all_positive_f1(labels)


def scores_std(scores: np.ndarray) -> float:
    scores = np.asarray(scores, dtype=float)
    return float(np.nanstd(scores)) if len(scores) else float("nan")
