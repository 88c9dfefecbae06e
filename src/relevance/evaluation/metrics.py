"""Positive-class F1, the exact best-F1 threshold, the all-positive floor, and per-language breakdowns."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class BinaryScores:
    f1: float
    precision: float
    recall: float
    threshold: float

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{key}": value for key, value in asdict(self).items()}


def scores_at(labels: np.ndarray, scores: np.ndarray, threshold) -> BinaryScores:
    """F1, precision and recall of the positive class when `score >= threshold` predicts relevant. The
    threshold may be one per row (per-language thresholds); then the reported threshold is NaN."""
    labels = np.asarray(labels).astype(bool)
    predicted = np.asarray(scores) >= threshold
    tp = float(np.sum(predicted & labels))
    precision = tp / max(float(predicted.sum()), 1.0)
    recall = tp / max(float(labels.sum()), 1.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return BinaryScores(f1, precision, recall, float(threshold) if np.ndim(threshold) == 0 else float("nan"))


def threshold_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F1 at every distinct score used as threshold (highest first), exact in O(n log n): sort all scores and the
    positives' scores (value sorts, about 3x faster than an argsort), then count how many of each lie at or above
    every distinct score by binary search."""
    labels = np.asarray(labels).astype(bool)
    everything = np.sort(np.asarray(scores, dtype=float))
    positives = np.sort(np.asarray(scores, dtype=float)[labels])
    distinct = everything[np.r_[everything[1:] != everything[:-1], True]]
    predicted_positives = len(everything) - np.searchsorted(everything, distinct, "left")
    true_positives = len(positives) - np.searchsorted(positives, distinct, "left")
    f1 = 2 * true_positives / (predicted_positives + len(positives))
    return distinct[::-1], f1[::-1]


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> BinaryScores:
    """The threshold with the highest F1 on these scores (ties: the higher threshold)."""
    thresholds, f1 = threshold_curve(labels, scores)
    best = int(np.argmax(f1))
    return scores_at(labels, scores, thresholds[best])


def all_positive_f1(labels: np.ndarray) -> float:
    """F1 of predicting 'relevant' everywhere, 2p / (1 + p): the floor every model must beat."""
    p = float(np.mean(np.asarray(labels)))
    return 2 * p / (1 + p) if p else 0.0


def per_language(languages: list[str], labels: np.ndarray, scores: np.ndarray, threshold, seen: set[str]) -> list[dict]:
    """One row per language: F1 at the threshold (one, or one per row), the language's floor, its size, seen
    in training or not. A language whose rows carry one label has no F1 worth reporting (its floor is 0 or 1):
    its row says `one_label` and its F1 is NaN."""
    languages = np.asarray(languages)
    rows = []
    for language in sorted(set(languages.tolist())):
        mask = languages == language
        result = scores_at(labels[mask], scores[mask], threshold if np.ndim(threshold) == 0 else threshold[mask])
        one_label = len(set(labels[mask].tolist())) == 1
        rows.append(
            {
                "language": language,
                "f1": float("nan") if one_label else result.f1,
                "one_label": one_label,
                "floor": all_positive_f1(labels[mask]),
                "rows": int(mask.sum()),
                "seen": language in seen,
            }
        )
    return rows
