"""The self-validation pass: a first K-fold pass whose out-of-fold scores flag contradicted rows (the rule is in
augment/self_validation.py), dropped or relabelled before the real folds train."""

from __future__ import annotations

import logging
from dataclasses import replace

import mlflow
import numpy as np

from relevance.augment.self_validation import flag_contradictions, removal_counts
from relevance.data.training_data import TrainingData
from relevance.training.cross_validation import FoldPlan, cross_validate
from relevance.training.fold import FoldTrainer

log = logging.getLogger(__name__)


def self_validation_stage(options, plan: FoldPlan, trainer: FoldTrainer, data: TrainingData) -> dict:
    """First K-fold pass over every fold (`options`: augmentation.self_validation); flag contradicted rows, drop or
    relabel them in `data`; log counts and the list."""
    every_fold = replace(plan, folds_trained=None)
    oof = cross_validate(every_fold, trainer.but(epochs=options.epochs), data, None, None, "self-validation/").scores
    flagged = flag_contradictions(
        data.labels, oof, options, [r.query for r in data.records], [r.target for r in data.records]
    )
    if options.action == "relabel":
        data.train_labels = np.where(flagged, 1 - data.labels, data.labels)
    else:
        data.keep = ~flagged
    counts = removal_counts(data.languages, data.labels, flagged)
    rows = np.flatnonzero(flagged)
    mlflow.log_table(
        {
            "id": [data.records[i].id for i in rows],
            "language": [data.languages[i] for i in rows],
            "label": data.labels[rows].tolist(),
            "score": oof[rows].tolist(),
            "query": [data.records[i].query for i in rows],
            "target": [data.records[i].target for i in rows],
            "action": [options.action] * len(rows),
        },
        "self_validation/flagged_rows.json",
    )
    log.info("self-validation: %d of %d rows flagged (%s)", len(rows), len(data.records), options.action)
    return counts
