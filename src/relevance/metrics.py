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
    """F1 at every distinct score used as threshold: one sort, one cumulative sweep (exact, O(n log n))."""
    labels = np.asarray(labels).astype(float)
    scores = np.asarray(scores, dtype=float)
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    true_positives = np.cumsum(sorted_labels)
    predicted_positives = np.arange(1, len(scores) + 1)
    # Only the last position of each run of equal scores is a reachable cut ("score >= t").
    last_of_run = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    tp, pp = true_positives[last_of_run], predicted_positives[last_of_run]
    f1 = 2 * tp / (pp + labels.sum())
    return sorted_scores[last_of_run], f1


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> BinaryScores:
    """The threshold with the highest F1 on these scores (ties: the higher threshold)."""
    thresholds, f1 = threshold_curve(labels, scores)
    best = int(np.argmax(f1))
    return scores_at(labels, scores, thresholds[best])


def all_positive_f1(labels: np.ndarray) -> float:
    """F1 of predicting 'relevant' everywhere, 2p / (1 + p): the floor every model must beat."""
    p = float(np.mean(np.asarray(labels)))
    return 2 * p / (1 + p) if p else 0.0


def per_language(languages: list[str], labels: np.ndarray, scores: np.ndarray, threshold,
                 seen: set[str]) -> list[dict]:
    """One row per language: F1 at the threshold (one, or one per row), the language's floor, its size, seen
    in training or not."""
    languages = np.asarray(languages)
    rows = []
    for language in sorted(set(languages.tolist())):
        mask = languages == language
        result = scores_at(labels[mask], scores[mask], threshold if np.ndim(threshold) == 0 else threshold[mask])
        rows.append({"language": language, "f1": result.f1, "floor": all_positive_f1(labels[mask]),
                     "rows": int(mask.sum()), "seen": language in seen})
    return rows
