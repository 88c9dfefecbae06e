"""A training run's parent MLflow run: the store it is kept in (rank 0's; a throwaway one for the other ranks),
whether it resumes an interrupted run of the same config, and what it records when it opens."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import mlflow
from omegaconf import OmegaConf

from relevance import build, disk, interrupts, multirun, tracking
from relevance.data.sources import data_file
from relevance.observer import RunObserver
from relevance.runtime import global_rank, launched_per_rank
from relevance.training import resume

log = logging.getLogger(__name__)


def open_store(cfg, tracking_uri: str, artifact_root, scratch: Path) -> None:
    """Rank 0 logs to the run's store (warned when its disk runs low; runs whose process died marked FAILED); the
    other ranks train and score beside it, and what they would log goes to a throwaway store in `scratch`."""
    if global_rank() != 0:
        tracking.setup(f"sqlite:///{scratch / 'rank_store.db'}", cfg.tracking.experiment, scratch / "rank_artifacts")
        return
    tracking.setup(tracking_uri, cfg.tracking.experiment, artifact_root)
    progress = Path(cfg.paths.checkpoints) if cfg.train.get("checkpoint_minutes") else None
    disk.warn_if_low(
        {
            "the MLflow store": disk.local_path(tracking_uri),
            "the artifact folder": artifact_root,
            "the progress folder": progress,
        },
        cfg.tracking.min_free_gb,
    )
    abandoned = tracking.fail_abandoned_runs(cfg.tracking.experiment)
    if abandoned:
        log.warning("marked %d run(s) FAILED whose process died while running: %s", len(abandoned), abandoned)


def _to_resume(cfg, trial: RunObserver, runtime) -> str | None:
    """The interrupted run of the same config that this one continues, if any (rank 0 finds it; the other ranks
    read rank 0's finished folds). Sweep trials, and ranks that torchrun or srun start (no rank 0 to follow), start
    afresh."""
    if trial.number is not None or (runtime.world_size > 1 and launched_per_rank()):
        return None
    if global_rank() == 0:
        resumed = resume.run_to_resume(cfg, cfg.tracking.experiment)
        if resumed:
            log.warning("resuming run %s (interrupted, same config): its finished folds are reused", resumed)
        return resumed
    if resume.read_folds_of_rank_zero(cfg):
        log.info("rank %d: rank 0's finished folds are reused", global_rank())
    return None


def _resume_hint() -> str:
    again = (
        "run the same command again: the interrupted job resumes from its finished folds, finished jobs train again."
        if multirun.in_multirun()
        else "run the same command again to resume it (finished folds are reused)."
    )
    return f"its MLflow runs are marked KILLED; {again}"


@contextlib.contextmanager
def opened(cfg, trial: RunObserver, runtime, tracking_uri: str, tasks):
    """The run's parent MLflow run, new or resumed; a new one records the config, its params and the data files
    of `tasks`. The trial hears of it, and the other ranks can find it."""
    resumed = _to_resume(cfg, trial, runtime)
    tags = {"relevance.level": "parent", resume.FINGERPRINT_TAG: resume.fingerprint(cfg)}
    if trial.number is not None:
        tags |= {"relevance.study": cfg.sweep.study, "relevance.trial": str(trial.number)}
    opened = {"run_id": resumed} if resumed else {"run_name": build.run_name(cfg, trial.number)}
    with tracking.start_run(
        **opened, tags=tags, parent_run_id=cfg.sweep.parent_run, log_system_metrics=cfg.tracking.system_metrics
    ) as parent:
        trial.started(parent.info.run_id)
        if trial.number is None:  # a sweep's own line says how to resume the study
            interrupts.set_hint(_resume_hint())
        if global_rank() == 0:
            resume.share_parent_with_ranks(parent.info.run_id, tracking_uri)
        if not resumed:  # a resumed run has them already (and MLflow refuses a param logged twice)
            mlflow.log_params(tracking.flatten(cfg))
            mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
            tracking.log_datasets(
                {
                    (task, which): data_file(cfg.data, cfg.paths.cache, task, which)
                    for task in tasks
                    for which in ("train", "dev")
                }
            )
        yield parent
