"""The only module that knows the order of the stages; each stage lives in the module named for it:

checks -> training_data (read, clean, augment, split, format: preprocess.Preprocessor) -> [tapt stage 1] ->
[self_validation pass] -> cross_validation (training per fold) -> [refit] -> reporting (metrics, thresholds,
plots) -> tracking (MLflow) -> bundle (the logged model) -> registry."""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import torch
from omegaconf import DictConfig

from relevance import build, interrupts, tracking
from relevance.checks import check_config
from relevance.evaluation.reporting import headline, refit_report, report
from relevance.observer import RunObserver
from relevance.runtime import global_rank, inference_device, resolve_runtime
from relevance.serving.logged_model import log_model
from relevance.serving.model_card import model_card
from relevance.tracking import parent_run
from relevance.training import distill
from relevance.training.cross_validation import cross_validate, refit
from relevance.training.rows import make_preprocessor, prepare_data
from relevance.training.self_validation import self_validation_stage
from relevance.training.tapt import tapt_stage

log = logging.getLogger(__name__)


def run(cfg: DictConfig, trial: RunObserver | None = None) -> dict:
    """Train K folds (after TAPT and self-validation when chosen), log everything to MLflow, and return the
    headline metrics and the run and model ids. `trial`: who follows the run (a sweep's trial, connected by the
    entry point). SIGTERM or Ctrl-C raises Interrupted (a KeyboardInterrupt) at once, wherever it is called from,
    with its MLflow runs marked KILLED and resumable."""
    with interrupts.interruptible():
        return _run(cfg, trial or RunObserver())


def _run(cfg: DictConfig, trial: RunObserver) -> dict:
    interrupts.check()  # a signal swallowed before this job (between a multirun's jobs) stops it here
    check_config(cfg)
    runtime = resolve_runtime(
        cfg.strategy, cfg.train.precision, cfg.backbone.dtype, cfg.strategy.devices, cfg.strategy.num_nodes
    )
    if runtime.accelerator == "gpu":  # before any model moves: "cuda" alone means this rank's GPU, not GPU 0
        torch.cuda.set_device(inference_device())
    preprocessor = make_preprocessor(cfg)
    translations = preprocessor.translations
    data, clean_report, dev, extra_counts = prepare_data(cfg, preprocessor)
    dev_inputs = preprocessor.format(dev) if dev else None
    source = build.model_source(cfg, preprocessor)
    data.catalogue = build.catalogue(cfg, preprocessor, source.tokenizer, data.inputs + (dev_inputs or []))

    tracking_uri, artifact_root = tracking.store_of(cfg)
    if cfg.distill.teachers:  # every rank, before any rank's store is set up (the teacher lives in the run's)
        data.teacher = distill.teacher_logits(
            cfg.distill, data.originals, len(data.records), tracking_uri, Path(cfg.paths.cache), cfg.progress
        )
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        parent_run.open_store(cfg, tracking_uri, artifact_root, scratch)
        with parent_run.opened(cfg, trial, runtime, tracking_uri, preprocessor.templates) as parent:
            mlflow.log_metrics(
                {
                    "rows_train": len(data.records),
                    "rows_dropped_empty_query": clean_report.dropped_empty_query,
                    **extra_counts,
                    **distill.teacher_metrics(data.labels, data.teacher),
                }
            )
            trainer, plan = build.fold_trainer(cfg, runtime, source), build.fold_plan(cfg, runtime)
            if cfg.tapt.name != "none":
                source.init_adapter = tapt_stage(cfg, trainer, preprocessor, scratch, tracking_uri)
            if cfg.get("augmentation") and cfg.augmentation.get("self_validation"):
                mlflow.log_metrics(self_validation_stage(cfg.augmentation.self_validation, plan, trainer, data))
            adapters = scratch / "bundle" / "adapters"
            after_fold = trial.fold_observer(
                cfg.sweep.metric, data.labels, np.array([r.task for r in data.records]), parent.info.run_id
            )
            scored = cross_validate(plan, trainer, data, dev_inputs, adapters, observers=(after_fold,))
            oof, dev_scores = scored.scores, scored.dev_scores
            refit_scores = refit(plan, trainer, data, dev_inputs, adapters) if cfg.train.refit else None
            mlflow.log_metrics(
                {"translations_computed": translations.computed, "translations_reused": translations.reused}
            )
            summary, decision, per_language, by_language = report(cfg, data, oof, dev, dev_scores, scratch / "plots")
            refit_decision = {}
            if refit_scores is not None:
                refit_summary, refit_decision = refit_report(cfg, data, summary, refit_scores, dev)
                summary |= refit_summary
            tracking.log_report(summary, by_language, data, oof, scratch / "plots")
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", mlflow.active_run().info.run_name or cfg.tracking.run_name)
            card = model_card(
                cfg,
                summary,
                sorted(set(data.languages)),
                [r.language for r in dev or []],
                len(data.records),
                f"runs:/{parent.info.run_id}/{name}",
            )
            mlflow.log_text(card, tracking.CARD_FILE)
            mlflow.set_tag("mlflow.note.content", headline(summary))  # the run's description in the UI
            model_uri = None
            if cfg.tracking.log_model and global_rank() == 0:  # only rank 0 saved the adapters
                bundle = build.bundle(
                    cfg, preprocessor, source, data, summary, decision, per_language, refit_decision, parent.info.run_id
                )
                (bundle.save(scratch / "bundle") / "README.md").write_text(card)
                model_uri = log_model(scratch / "bundle", cfg.task.code, bundle.backbone, name)
                mlflow.set_tag("relevance.model_uri", model_uri)
            tracking.log_hydra_output()
            if cfg.register.name and model_uri:
                version = tracking.register(model_uri, cfg.register.name, cfg.register.alias)
                mlflow.set_tag("relevance.registered", f"{cfg.register.name}/{version}")
            return {
                **summary,
                "languages": by_language,
                "run_id": parent.info.run_id,
                "model_uri": model_uri,
                "tracking_uri": mlflow.get_tracking_uri(),
                "translations_computed": translations.computed,
                "translations_reused": translations.reused,
                **extra_counts,
            }
