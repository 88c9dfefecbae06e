"""Distillation's teacher: what logged models (`distill.teachers`) score each training row and each extra row, as one
logit per row, which a distillation loss (model/losses.py: soft_labels, margin_mse, kl) trains the student towards.
The path from a fold ensemble of 12-14B models on GPUs to a model that serves on a CPU: train the big ones, log
them, then train the small one on their scores.

The teacher is the mean probability of its models (each by its `ensemble`: the refit or the fold mean, as
predict.py serves it), turned into a logit. The rows are scored as the teacher's own run would score them (its
bundle's preprocessing), from the student's cleaned rows before the student's own rewrites. Scores are kept in the
cache under a digest of the teacher's files and the rows, so folds, reruns and a sweep's trials score once."""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import torch

from relevance import tracking
from relevance.data.records import Record
from relevance.errors import ConfigError, RelevanceError

log = logging.getLogger(__name__)

SCORES = ("out_of_fold", "model")
CLIP = 1e-6  # a teacher's probability of exactly 0 or 1 would be an infinite logit


def loss_needs_teacher(head_cfg) -> bool:
    from relevance.model.heads import head_class
    from relevance.model.losses import LOSSES

    loss = LOSSES.get(head_class(head_cfg.name).loss_name(head_cfg))  # yes_no's pair and vocab are not in LOSSES
    return bool(loss and loss.needs_teacher)


def check(cfg) -> None:
    """A distillation loss needs teachers and teachers need a distillation loss; TAPT's stage 1 trains on the other
    task's rows, which no teacher scored."""
    from relevance.serving.scorer import ENSEMBLES

    teachers, loss = list(cfg.distill.teachers or []), cfg.head.get("loss")
    if any(not isinstance(t, str) or not t.strip() for t in teachers):
        raise ConfigError(f"distill.teachers={teachers!r} must list logged models (models:/name@alias or a run id).")
    if cfg.distill.ensemble not in ENSEMBLES:
        raise ConfigError(f"distill.ensemble={cfg.distill.ensemble!r} is not known; use {', '.join(ENSEMBLES)}.")
    if cfg.distill.scores not in SCORES:
        raise ConfigError(f"distill.scores={cfg.distill.scores!r} is not known; use {', '.join(SCORES)}.")
    needs = loss_needs_teacher(cfg.head)
    if needs and not teachers:
        raise ConfigError(
            f"head.loss={loss} learns from a teacher's scores; give distill.teachers=[<logged model: "
            f"models:/name@alias, models:/name/version or a run id>]."
        )
    if teachers and not needs:
        raise ConfigError(
            f"distill.teachers is given but head.loss={loss or 'its default'} does not read a teacher; use "
            f"head.loss=soft_labels, margin_mse or kl, or drop distill.teachers."
        )
    if needs and cfg.tapt.name != "none":
        raise ConfigError(
            f"head.loss={loss} learns from a teacher's scores of this task's rows, and tapt={cfg.tapt.name} trains "
            f"stage 1 on the other task's rows, which no teacher scored; use tapt=none."
        )


def teacher_logits(settings, records: list[Record], own: int, tracking_uri: str, cache: Path, progress: bool):
    """Each row's teacher logit: the logit of the mean probability the teachers (`settings`: the distill config)
    give it. `own`: how many of `records` are the run's own rows (the rest are extras, which no teacher's run
    held out)."""
    mlflow.set_tracking_uri(tracking.existing_store(tracking_uri))
    scores = np.mean([_scores(t, settings, records, own, cache, progress) for t in settings.teachers], axis=0)
    if np.ptp(scores) < 1e-6:
        raise ConfigError(
            f"distill.teachers={list(settings.teachers)}: every training row gets the same score ({scores[0]:.4f}), "
            f"so there is nothing to learn from it; give a teacher that learned (its oof_best_f1 above its floor)."
        )
    scores = np.clip(scores, CLIP, 1 - CLIP)
    return np.log(scores) - np.log1p(-scores)


def teacher_metrics(labels: np.ndarray, teacher: np.ndarray | None) -> dict[str, float]:
    """How well the teacher's scores fit the training labels (rows it may have trained on: a check that it is a
    teacher, not a held-out figure)."""
    if teacher is None:
        return {}
    from relevance.evaluation.metrics import best_f1_threshold

    probability = 1 / (1 + np.exp(-teacher[: len(labels)]))
    return {"teacher_train_best_f1": best_f1_threshold(labels, probability).f1}


def _rows_digest(records: list[Record], own: int) -> str:
    digest = hashlib.sha256(str(own).encode())
    for r in records:
        digest.update("\0".join((str(r.id), r.task, r.language, r.query, r.target, str(r.label))).encode() + b"\n")
    return digest.hexdigest()[:16]


def _scores(reference: str, settings, records: list[Record], own: int, cache: Path, progress: bool) -> np.ndarray:
    """One teacher's probability of each row, from the cache when this teacher scored these rows before."""
    from relevance.serving.predict import download_bundle, download_bundle_file

    with tempfile.TemporaryDirectory(prefix="relevance-teacher-") as download:
        try:  # the bundle file alone first: the weights download only when its models must score rows
            bundle_file = download_bundle_file(reference, Path(download) / "description")
        except RelevanceError as error:
            raise ConfigError(f"distill.teachers: {error}") from None
        # the bundle file names its run and the digest of every weight folder: it stands for the whole model
        model = hashlib.sha256(bundle_file.read_bytes()).hexdigest()[:16]
        how = f"{settings.ensemble}-{settings.scores}"
        kept = cache / "teacher_scores" / f"{model}-{how}-{_rows_digest(records, own)}.npy"
        if kept.is_file():
            log.info("teacher %s: its scores of the %d training rows reused from %s", reference, len(records), kept)
            return np.load(kept)
        scores = np.full(len(records), np.nan)
        if settings.scores == "out_of_fold":
            run_id = json.loads(bundle_file.read_text()).get("run_id")  # the file alone: no weights to check yet
            scores[:own] = _out_of_fold(reference, run_id, records[:own])
        missing = np.flatnonzero(np.isnan(scores))
        log.info(
            "teacher %s: %d rows scored out of fold by its run, %d by its models (%s)",
            reference,
            len(records) - len(missing),
            len(missing),
            settings.ensemble,
        )
        if len(missing):
            _, folder = download_bundle(reference, Path(download) / "model")
            scores[missing] = _model_scores(
                reference, folder, settings.ensemble, [records[i] for i in missing], cache, progress
            )
    kept.parent.mkdir(parents=True, exist_ok=True)
    staging = kept.with_suffix(f".{os.getpid()}.npy")
    np.save(staging, scores)
    staging.replace(kept)  # whole or not at all: ranks scoring at once each write their own, then rename
    return scores


def _out_of_fold(reference: str, run_id: str | None, records: list[Record]) -> np.ndarray:
    """The score the teacher's own run logged for each row it held out (oof_scores.json), NaN for the others;
    refused when the rows it shares with this run carry other labels (it trained on other data)."""
    import pandas as pd

    try:
        table = mlflow.artifacts.load_dict(f"runs:/{run_id}/oof_scores.json")
    except Exception:  # a missing artifact or run: either way there is nothing to read
        raise ConfigError(
            f"distill.scores=out_of_fold: {reference} has no out-of-fold scores logged with its run ({run_id}); "
            f"use distill.scores=model."
        ) from None
    frame = pd.DataFrame(table["data"], columns=table["columns"])
    logged = {(t, str(i)): (label, score) for t, i, label, score in zip(frame.task, frame.id, frame.label, frame.score)}
    scores = np.full(len(records), np.nan)
    for row, r in enumerate(records):
        label, score = logged.get((r.task, str(r.id)), (None, np.nan))
        if label is not None and np.isfinite(score):
            if label != r.label:
                raise ConfigError(
                    f"distill.scores=out_of_fold: row {r.id} ({r.task}) is labelled {r.label} here and {label} in "
                    f"{reference}'s run, which trained on other data; use distill.scores=model."
                )
            scores[row] = score
    return scores


def _model_scores(reference: str, folder: Path, ensemble: str, records: list[Record], cache: Path, progress: bool):
    from relevance.serving.scorer import RelevanceScorer

    scorer = RelevanceScorer(folder, cache=cache, ensemble=ensemble)
    missing = sorted({r.task for r in records} - set(scorer.tasks))
    if missing:
        raise ConfigError(
            f"distill.teachers: {reference} scores {'/'.join(scorer.tasks)} rows and this run trains "
            f"{'/'.join(missing)} rows; give a teacher trained on the same task."
        )
    scores = scorer.predict_records(records, progress=progress)
    del scorer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the student loads next on the same device
    return scores
