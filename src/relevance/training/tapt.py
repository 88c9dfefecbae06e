"""Task-adaptive pre-training, stage 1: train on the other task's rows first (the 1st place team's recipe), or take
that stage's weights from an earlier run; stage 2 (the folds) starts from them."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import mlflow
import numpy as np

from relevance import tracking
from relevance.data.records import TASKS
from relevance.errors import ConfigError
from relevance.model.heads import prompt_template
from relevance.ranks import folder_digest, share_folder
from relevance.runtime import global_rank
from relevance.text.preprocess import Preprocessor
from relevance.training.fold import FoldTrainer
from relevance.training.rows import TrainingRows, query_groups, read_task_rows

log = logging.getLogger(__name__)


def _logged_tapt_adapter(run_id: str, scratch: Path, tracking_uri: str) -> Path:
    """The stage-1 adapter of an earlier run: the run itself (a stage-1 child) or the stage-1 child of a parent.
    Read from the shared store by name, so that every rank of a distributed run finds it."""
    client = mlflow.tracking.MlflowClient(tracking_uri)
    candidates = [run_id]
    try:
        experiment = client.get_run(run_id).info.experiment_id
        children = client.search_runs(
            [experiment], f"tags.mlflow.parentRunId = '{run_id}' and tags.`relevance.stage` = 'tapt'"
        )
        candidates += [child.info.run_id for child in children]
    except mlflow.exceptions.MlflowException:
        raise ConfigError(
            f"tapt.from_run={run_id} is not a run in this tracking store; give the id of a run trained "
            f"with tapt=from_other_task, or leave tapt.from_run null."
        ) from None
    for candidate in candidates:
        try:
            return Path(
                mlflow.artifacts.download_artifacts(
                    run_id=candidate,
                    artifact_path="tapt_adapter",
                    dst_path=str(scratch / "tapt_download"),
                    tracking_uri=tracking_uri,
                )
            )
        except (mlflow.exceptions.MlflowException, OSError):
            continue
    raise ConfigError(
        f"tapt.from_run={run_id}: that run has no tapt_adapter artifact; give the id of a run trained "
        f"with tapt=from_other_task, or leave tapt.from_run null."
    )


def tapt_stage(cfg, trainer: FoldTrainer, preprocessor: Preprocessor, scratch: Path, tracking_uri: str) -> Path:
    """Stage 1 of task-adaptive pre-training: the adapter trained on the other task (a child run, its adapter
    logged as `tapt_adapter`), or downloaded from the run named by tapt.from_run."""
    if cfg.tapt.from_run:
        return _logged_tapt_adapter(str(cfg.tapt.from_run), scratch, tracking_uri)
    other = TASKS[cfg.task.code].other
    other_task = cfg.tapt.tasks[other.lower()]
    records, _ = read_task_rows(cfg, other, cfg.tapt.max_rows, preprocessor)
    records = preprocessor.rewrite(records)  # the same text rewrites as stage 2
    inputs = preprocessor.format(records, prompt_template(other_task, cfg.head, cfg.backbone))
    adapter = scratch / "tapt_adapter"
    with tracking.start_run(
        run_name=f"tapt-stage1-{other.lower()}",
        nested=True,
        tags={"relevance.level": "stage", "relevance.stage": "tapt"},
    ):
        log.info("TAPT stage 1: training on %d %s rows", len(inputs), other)
        started = time.perf_counter()
        stage_one = trainer.but(epochs=cfg.tapt.epochs, lr=cfg.tapt.lr, wise_ft=1.0)  # kept whole: folds start there
        stage_one.train(
            TrainingRows(inputs, np.array([r.label for r in records]), query_groups(records)),
            [],
            -1,
            adapter,
            name="TAPT stage 1",
        )
        share_folder(adapter)  # rank 0 saved it; every rank starts its folds from it
        mlflow.log_metrics({"rows_trained": len(inputs), "stage_seconds": time.perf_counter() - started})
        mlflow.log_artifacts(str(adapter), "tapt_adapter")
    log.info("rank %d: the folds start from TAPT stage 1's adapter, digest %s", global_rank(), folder_digest(adapter))
    return adapter
