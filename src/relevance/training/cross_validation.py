"""K-fold training: one model per fold (a child MLflow run each), out-of-fold scores, dev scores per fold.
Who wants to hear about each finished fold (the sweep's pruning) passes an observer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import torch

from relevance import tracking
from relevance.data.training_data import TrainingData
from relevance.evaluation.reporting import evaluate
from relevance.training import health, resume
from relevance.training.fold import FoldTrainer

log = logging.getLogger(__name__)


FoldObserver = Callable[[int, np.ndarray, dict], None]  # (fold, out-of-fold scores so far (NaN: not yet), its result)


@dataclass(frozen=True)
class FoldPlan:
    """How a run's folds train (build.fold_plan): how many there are, how many of them train (the first N), whether
    a run in which none learned fails, the run's parameters (logged on each fold's run too, so that filtering runs
    by a parameter keeps their folds) and where folds keep their progress (None: nowhere)."""

    n_folds: int
    folds_trained: int | None
    require_learning: bool
    run_params: dict
    progress_root: Path | None


@dataclass
class OutOfFold:
    """What cross-validation scored: each training row by the fold that held it out (NaN for rows of folds not
    trained), and dev by each fold's model."""

    scores: np.ndarray
    dev_scores: list[np.ndarray]


def cross_validate(
    plan: FoldPlan,
    trainer: FoldTrainer,
    data: TrainingData,
    dev_inputs,
    adapters: Path | None,
    stage: str = "",
    observers: tuple[FoldObserver, ...] = (),
) -> OutOfFold:
    """Train one model per fold (a child MLflow run each), or for the plan's first `folds_trained` only. Each
    observer hears of every finished fold (the sweep's pruning is one; it may stop the run by raising)."""
    oof = np.full(len(data.records), np.nan)
    dev_scores = []
    folds_health: list[health.FoldHealth] = []
    seen = set(data.languages)
    for fold in range(plan.folds_trained or plan.n_folds):
        held_out = np.flatnonzero(data.folds == fold)
        name = f"{stage}fold-{fold}"
        weights = adapters / f"fold_{fold}" if adapters else None
        reused = resume.load_fold(name, weights)
        if reused:
            scored, learned = reused
            result = evaluate(data.labels[held_out], scored[0], [data.languages[i] for i in held_out], seen)
            log.info("%sfold %d/%d: finished before the interruption; reused", stage, fold + 1, plan.n_folds)
        else:
            scored, learned, result = _train_fold_run(plan, trainer, data, dev_inputs, fold, stage, weights)
        folds_health.append(learned)
        oof[held_out] = scored[0]
        dev_scores += scored[1:]
        for observer in observers:
            observer(fold, oof, result)
    if plan.require_learning:
        health.check_run(folds_health)
    return OutOfFold(oof, dev_scores)


def _train_fold_run(
    plan: FoldPlan, trainer: FoldTrainer, data: TrainingData, dev_inputs, fold: int, stage: str, weights
):
    """One fold in its own child run: train, score its held-out rows (and dev), log, keep a checkpoint. Returns
    the scores, the fold's health and its held-out evaluation."""
    held_out = np.flatnonzero(data.folds == fold)
    rows = data.training_rows(fold)
    progress = resume.progress_folder(plan.progress_root, f"{stage}fold-{fold}")
    with tracking.start_run(
        run_name=tracking.child_run_name(f"{stage}fold-{fold}"),
        nested=True,
        tags={
            "relevance.level": "fold",
            "relevance.stage": stage.rstrip("/") or "final",
            resume.FOLD_TAG: f"{stage}fold-{fold}",
        },
    ):
        mlflow.log_params(plan.run_params)
        log.info(
            "%sfold %d/%d: training on %d rows, scoring %d",
            stage,
            fold + 1,
            plan.n_folds,
            len(rows),
            len(held_out),
        )
        to_score = [[data.inputs[i] for i in held_out]] + ([dev_inputs] if dev_inputs else [])
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        scored, learned = trainer.train(
            rows,
            to_score,
            fold,
            weights,
            name=f"{stage}fold {fold + 1}/{plan.n_folds}",  # as the log counts folds: from 1
            heldout_labels=data.labels[held_out],
            progress=progress,
            catalogue=data.catalogue,
        )
        mlflow.log_metrics(
            {
                "fold_seconds": time.perf_counter() - started,
                "train_loss_final": learned.final_loss,
                "train_loss_constant_guess": learned.guess_loss,
                "score_std": learned.score_std,
                "heldout_gain_over_floor": learned.heldout_gain,
                **memory_metrics(),
            }
        )
        mlflow.set_tag("relevance.learned", str(not learned.degenerate).lower())
        result = evaluate(data.labels[held_out], scored[0], [data.languages[i] for i in held_out], set(data.languages))
        mlflow.log_metrics(
            {
                "f1_at_0.5": result["at_half"].f1,
                "best_f1": result["best"].f1,
                "best_threshold": result["best"].threshold,
                "rows_validation": len(held_out),
                "rows_trained": len(rows),
            }
        )
        resume.save_fold(scored, learned, weights)
        resume.forget_progress(progress)
    return scored, learned, result


def memory_metrics() -> dict[str, float]:
    """What this process holds once a fold ended (its model should be gone: a fold's memory must not add up over
    folds), and on a GPU the fold's peak allocation, which `relevance plan` predicts."""
    import gc

    import psutil

    gc.collect()
    metrics = {"process_rss_gb": psutil.Process().memory_info().rss / 1e9}
    if torch.cuda.is_available():
        metrics["gpu_peak_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return metrics


def refit(plan: FoldPlan, trainer: FoldTrainer, data: TrainingData, dev_inputs, adapters: Path) -> list[np.ndarray]:
    """One more model on every training row (a child run "refit"); its scores of the training rows and of dev."""
    rows = data.training_rows(None)
    reused = resume.load_fold("refit", adapters / "refit")
    if reused:
        log.info("refit: finished before the interruption; reused")
        return reused[0]
    progress = resume.progress_folder(plan.progress_root, "refit")
    with tracking.start_run(
        run_name=tracking.child_run_name("refit"),
        nested=True,
        tags={"relevance.level": "fold", "relevance.stage": "refit", resume.FOLD_TAG: "refit"},
    ):
        mlflow.log_params(plan.run_params)
        log.info("refit: training on all %d rows", len(rows))
        scores, learned = trainer.train(
            rows,
            [data.inputs] + ([dev_inputs] if dev_inputs else []),
            plan.n_folds,
            adapters / "refit",
            name="refit",
            progress=progress,
            catalogue=data.catalogue,
        )
        resume.save_fold(scores, learned, adapters / "refit")
        resume.forget_progress(progress)
    return scores
