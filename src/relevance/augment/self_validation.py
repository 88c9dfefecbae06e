"""Self-validation filtering (Yin et al., sec. 3.2.3) with DILAB's optional lexical agreement gate (their
"quality refinement", sec. 2.1): out-of-fold scores from a first K-fold pass flag rows whose label the model
contradicts with high confidence; flagged rows are dropped from training, or relabelled.

The final models train without them, but every row is still scored against its original label, so out-of-fold
F1 is not inflated by removing the rows the model found hard."""

from __future__ import annotations

import re

import numpy as np

from relevance.augment.base import Augmentation, register
from relevance.errors import ConfigError


def lexical_similarity(queries: list[str], targets: list[str]) -> np.ndarray:
    """Per pair, the larger of character TF-IDF cosine and word Jaccard overlap."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True).fit(queries + targets)
    q, t = vectorizer.transform(queries), vectorizer.transform(targets)
    cosine = np.asarray(q.multiply(t).sum(axis=1)).ravel()
    words = [(set(re.findall(r"\w+", a)), set(re.findall(r"\w+", b))) for a, b in zip(queries, targets)]
    jaccard = np.array([len(a & b) / len(a | b) if a | b else 0.0 for a, b in words])
    return np.maximum(cosine, jaccard)


def flag_contradictions(
    labels: np.ndarray, scores: np.ndarray, options, queries: list[str] | None = None, targets: list[str] | None = None
) -> np.ndarray:
    """Boolean mask of rows to drop or relabel: label 1 scored below 1 - confidence, or label 0 above confidence.
    With the lexical gate on, a flag stands only when the text overlap agrees with the model."""
    flagged = ((labels == 1) & (scores < 1 - options.confidence)) | ((labels == 0) & (scores > options.confidence))
    gate = options.get("lexical_gate")
    if gate and gate.enabled:
        similarity = lexical_similarity(queries, targets)
        agrees = np.where(labels == 1, similarity < gate.positive_below, similarity > gate.negative_above)
        flagged &= agrees
    return flagged


def removal_counts(languages: list[str], labels: np.ndarray, flagged: np.ndarray) -> dict[str, int]:
    """`self_validation_flagged_<language>_label<y>` counts, and the total."""
    counts = {"self_validation_flagged": int(flagged.sum())}
    for language in sorted(set(languages)):
        for label in (0, 1):
            mask = np.array([lang == language for lang in languages]) & (labels == label)
            counts[f"self_validation_flagged_{language}_label{label}"] = int((flagged & mask).sum())
    return counts


@register
class SelfValidation(Augmentation):
    """augmentation=[self_validation]: no rows or text of its own; the run adds a first K-fold pass whose
    out-of-fold scores flag the rows to drop or relabel (training/self_validation.py)."""

    name = "self_validation"
    order = 40

    def check(self, options) -> None:
        if not isinstance(options.confidence, (int, float)) or not 0.5 < options.confidence < 1:
            raise ConfigError(
                f"augmentation.self_validation.confidence={options.confidence!r} must be between "
                f"0.5 and 1 (a row is flagged when the model is at least this sure of the other label)."
            )
        if options.action not in ("drop", "relabel"):
            raise ConfigError(f"augmentation.self_validation.action={options.action!r}; use drop or relabel.")
