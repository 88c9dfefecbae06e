"""A training run's parent MLflow run: the store it is kept in (rank 0's; a throwaway one for the other ranks),
whether it resumes an interrupted run of the same config, what it records when it opens, and what the pipeline logs
to it (`ParentRun`). It takes `ParentRunSettings`, which `relevance.build` makes from the config."""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow

from relevance import disk, interrupts, multirun, tracking
from relevance.observer import RunObserver
from relevance.runtime import global_rank, launched_per_rank
from relevance.training import resume

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParentRunSettings:
    """What the parent run needs of the config: its store, name and resume policy, and what a new run records."""

    tracking_uri: str
    artifact_root: Path
    experiment: str
    run_name: str  # tracking.run_name; a trial's number or a multirun's swept values are added when it opens
    min_free_gb: float
    progress: Path | None  # where training folds keep their progress (its disk is watched), None when not kept
    resume: str  # never, auto or a run id
    fingerprint: str  # of everything that decides the results (training/resume.py)
    study: str  # sweep.study, tagged on a trial's run
    sweep_parent: str | None  # the sweep's parent run, under which a trial's run opens
    system_metrics: bool
    params: dict[str, str]  # the flattened config
    config_yaml: str
    data_files: dict[tuple[str, str], Path]  # (task, train|dev) -> the file read


@dataclass(frozen=True)
class ParentRun:
    """The open parent run as the pipeline sees it: its scratch folders and what it logs (rank 0 logs to the run's
    store, the other ranks to their throwaway one)."""

    run_id: str
    name: str  # the run's name as a file name: the logged model's
    scratch: Path

    @property
    def adapters(self) -> Path:
        return self.scratch / "bundle" / "adapters"

    @property
    def plots(self) -> Path:
        return self.scratch / "plots"

    @property
    def tracking_uri(self) -> str:
        return mlflow.get_tracking_uri()

    def log_metrics(self, metrics: dict) -> None:
        mlflow.log_metrics(metrics)

    def log_report(self, report, data, oof) -> None:
        tracking.log_report(report.summary, report.by_language, data, oof, self.plots)

    def log_card(self, card: str, headline: str) -> None:
        mlflow.log_text(card, tracking.CARD_FILE)
        mlflow.set_tag("mlflow.note.content", headline)  # the run's description in the UI

    def log_model(self, bundle, card: str) -> str | None:
        """The bundle (with the fold adapters the folds saved here) logged as the run's model; its URI. None on
        ranks > 0, which saved no adapters."""
        from relevance.serving.logged_model import log_model

        if global_rank() != 0:
            return None
        (bundle.save(self.scratch / "bundle") / "README.md").write_text(card)
        model_uri = log_model(self.scratch / "bundle", bundle.task, bundle.backbone, self.name)
        mlflow.set_tag("relevance.model_uri", model_uri)
        return model_uri

    def finish(self, model_uri: str | None, register_as: str | None, alias: str | None) -> None:
        """Hydra's output folder logged; the model registered under `register_as` when one was logged."""
        tracking.log_hydra_output()
        if register_as and model_uri:
            version = tracking.register(model_uri, register_as, alias)
            mlflow.set_tag("relevance.registered", f"{register_as}/{version}")


def _open_store(settings: ParentRunSettings, scratch: Path) -> None:
    """Rank 0 logs to the run's store (warned when its disk runs low; runs whose process died marked FAILED); the
    other ranks train and score beside it, and what they would log goes to a throwaway store in `scratch`."""
    if global_rank() != 0:
        tracking.setup(f"sqlite:///{scratch / 'rank_store.db'}", settings.experiment, scratch / "rank_artifacts")
        return
    tracking.setup(settings.tracking_uri, settings.experiment, settings.artifact_root)
    disk.warn_if_low(
        {
            "the MLflow store": disk.local_path(settings.tracking_uri),
            "the artifact folder": settings.artifact_root,
            "the progress folder": settings.progress,
        },
        settings.min_free_gb,
    )
    abandoned = tracking.fail_abandoned_runs(settings.experiment)
    if abandoned:
        log.warning("marked %d run(s) FAILED whose process died while running: %s", len(abandoned), abandoned)


def _to_resume(settings: ParentRunSettings, trial: RunObserver, runtime) -> str | None:
    """The interrupted run of the same config that this one continues, if any (rank 0 finds it; the other ranks
    read rank 0's finished folds). Sweep trials, and ranks that torchrun or srun start (no rank 0 to follow), start
    afresh."""
    if trial.number is not None or (runtime.world_size > 1 and launched_per_rank()):
        return None
    if global_rank() == 0:
        resumed = resume.run_to_resume(settings.resume, settings.fingerprint, settings.experiment)
        if resumed:
            log.warning("resuming run %s (interrupted, same config): its finished folds are reused", resumed)
        return resumed
    if resume.read_folds_of_rank_zero(settings.fingerprint):
        log.info("rank %d: rank 0's finished folds are reused", global_rank())
    return None


def _resume_hint() -> str:
    again = (
        "run the same command again: the interrupted job resumes from its finished folds, finished jobs train again."
        if multirun.in_multirun()
        else "run the same command again to resume it (finished folds are reused)."
    )
    return f"its MLflow runs are marked KILLED; {again}"


def _run_name(settings: ParentRunSettings, trial_number: int | None) -> str:
    """`tracking.run_name`, with what tells this run from its siblings (the trial, or the values a multirun
    sweeps), and a number when the experiment already has a run of that name."""
    if trial_number is not None:
        name = f"trial-{trial_number}-{settings.run_name}"
    else:
        name = "-".join([settings.run_name, *multirun.swept_overrides()])
    return tracking.unique_run_name(name, settings.experiment)


@contextlib.contextmanager
def opened(settings: ParentRunSettings, trial: RunObserver, runtime):
    """The run's parent MLflow run, new or resumed, as a `ParentRun` with a scratch folder that lasts as long as it;
    a new one records the config, its params and the data files. The trial hears of it, and the other ranks can
    find it."""
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        _open_store(settings, scratch)
        resumed = _to_resume(settings, trial, runtime)
        tags = {"relevance.level": "parent", resume.FINGERPRINT_TAG: settings.fingerprint}
        if trial.number is not None:
            tags |= {"relevance.study": settings.study, "relevance.trial": str(trial.number)}
        opened = {"run_id": resumed} if resumed else {"run_name": _run_name(settings, trial.number)}
        with tracking.start_run(
            **opened, tags=tags, parent_run_id=settings.sweep_parent, log_system_metrics=settings.system_metrics
        ) as parent:
            trial.started(parent.info.run_id)
            if trial.number is None:  # a sweep's own line says how to resume the study
                interrupts.set_hint(_resume_hint())
            if global_rank() == 0:
                resume.share_parent_with_ranks(parent.info.run_id, settings.tracking_uri)
            if not resumed:  # a resumed run has them already (and MLflow refuses a param logged twice)
                mlflow.log_params(settings.params)
                mlflow.log_text(settings.config_yaml, "config.yaml")
                tracking.log_datasets(settings.data_files)
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", mlflow.active_run().info.run_name or settings.run_name)
            yield ParentRun(parent.info.run_id, name, scratch)
