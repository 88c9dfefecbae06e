"""Hydra callbacks of a sweep: when it ends, the best trial's model becomes the registry's champion."""

from __future__ import annotations

import logging

import optuna
from hydra.experimental.callback import Callback
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from relevance import champion, interrupts, tracking
from relevance.errors import RelevanceError
from relevance.sweep.parent_run import RUN_ATTR
from relevance.sweep.study import open_storage, storage_url

log = logging.getLogger(__name__)


def register_champion(cfg: DictConfig) -> str | None:
    """Register the best trial's model under `register.name` (default relevance-<task>) and point
    `register.alias` at it. Nothing new when the alias already names that run's model (a second worker)."""
    storage = open_storage(storage_url(cfg.sweep.storage, cfg.paths.root))
    study = optuna.load_study(study_name=cfg.sweep.study, storage=storage)
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        log.warning("no trial of study %s completed; no champion registered", study.study_name)
        return None
    run_id = study.best_trial.user_attrs.get("mlflow_run_id")
    if run_id is None:
        return None
    uri, artifact_root = tracking.store_of(cfg.tracking.uri, cfg.tracking.artifact_root, cfg.paths.root)
    tracking.setup(uri, cfg.tracking.experiment, artifact_root)
    refused = champion.may_be_champion(run_id, cfg.sweep.metric)
    if refused:
        print(f"best trial {study.best_trial.number} (run {run_id}) is not registered: {refused}")
        return None
    name = cfg.register.name or f"relevance-{cfg.task.name}"
    alias = cfg.register.alias or "champion"
    client = MlflowClient()
    try:
        current = client.get_model_version_by_alias(name, alias)
        if current.run_id == run_id:
            return f"{name}/{current.version}"
    except Exception:  # noqa: BLE001 - no such model or alias yet: register below
        pass
    version = tracking.register(tracking.model_uri(run_id), name, alias)
    if RUN_ATTR in study.user_attrs:
        client.set_tag(study.user_attrs[RUN_ATTR], "relevance.champion", f"{name}/{version}")
    print(
        f"best trial {study.best_trial.number} (F1 {study.best_value:.4f}, run {run_id}) registered as "
        f"models:/{name}/{version} (alias @{alias})"
    )
    return f"{name}/{version}"


class RegisterChampion(Callback):
    """Turned off with sweep.register_champion=false (or tracking.log_model=false: then there is no model)."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if not config.sweep.register_champion or not config.tracking.log_model:
            return
        if interrupts.received is not None:  # the last line says so, and how to resume (cli.exit_on_interrupt)
            return
        try:
            register_champion(config)
        except RelevanceError as error:  # the sweep itself has already reported a bad storage
            log.debug("champion not registered: %s", error)
