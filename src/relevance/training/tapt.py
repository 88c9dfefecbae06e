"""Task-adaptive pre-training, stage 1: train on the other task's rows first (the 1st place team's recipe), or take
that stage's weights from an earlier run; stage 2 (the folds) starts from them."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np

from relevance import tracking
from relevance.data.training_data import TrainingRows, query_groups
from relevance.errors import ConfigError
from relevance.ranks import folder_digest, share_folder
from relevance.runtime import global_rank
from relevance.text.preprocess import Preprocessor
from relevance.training.fold import FoldTrainer

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


@dataclass(frozen=True)
class TaptStage:
    """Stage 1 of task-adaptive pre-training, ready to run: the other task's rows, read and formatted as stage 2's
    are, with stage 1's epochs and learning rate; or (`from_run`) the run whose stage-1 adapter is taken instead."""

    other: str  # the other task's code
    rows: TrainingRows | None
    epochs: int
    lr: float
    from_run: str | None = None

    def adapter(self, trainer: FoldTrainer, scratch: Path, tracking_uri: str) -> Path:
        """The adapter the folds start from: trained here (a child run, logged as `tapt_adapter`) or downloaded."""
        if self.from_run:
            return _logged_tapt_adapter(self.from_run, scratch, tracking_uri)
        adapter = scratch / "tapt_adapter"
        with tracking.start_run(
            run_name=f"tapt-stage1-{self.other.lower()}",
            nested=True,
            tags={"relevance.level": "stage", "relevance.stage": "tapt"},
        ):
            log.info("TAPT stage 1: training on %d %s rows", len(self.rows.inputs), self.other)
            started = time.perf_counter()
            stage_one = trainer.but(epochs=self.epochs, lr=self.lr, wise_ft=1.0)  # kept whole: folds start there
            stage_one.train(self.rows, [], -1, adapter, name="TAPT stage 1")
            share_folder(adapter)  # rank 0 saved it; every rank starts its folds from it
            mlflow.log_metrics({"rows_trained": len(self.rows.inputs), "stage_seconds": time.perf_counter() - started})
            mlflow.log_artifacts(str(adapter), "tapt_adapter")
        log.info(
            "rank %d: the folds start from TAPT stage 1's adapter, digest %s", global_rank(), folder_digest(adapter)
        )
        return adapter


def tapt_rows(records, preprocessor: Preprocessor, template: str) -> TrainingRows:
    """Stage 1's rows: the other task's records with stage 2's text rewrites, in the other task's template."""
    records = preprocessor.rewrite(records)
    inputs = preprocessor.format(records, template)
    return TrainingRows(inputs, np.array([r.label for r in records]), query_groups(records))
