"""The job's end of an Optuna trial: after every fold, report the out-of-fold F1 so far and stop when the
pruner says the trial cannot catch up. Outside a sweep the same calls do nothing."""

from __future__ import annotations

import time

import numpy as np
import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig

from relevance.errors import ConfigError
from relevance.evaluation import metrics
from relevance.observer import RunObserver
from relevance.runtime import global_rank, launched_per_rank
from relevance.sweep.study import open_storage, storage_url, trial_id
from relevance.tasks import task_kind

OBJECTIVES = ("oof_best_f1", "qc_oof_best_f1", "qi_oof_best_f1")
DECISION = "relevance.pruning_after_fold_"


class TrialReporter(RunObserver):
    """What a running trial tells its study: after each fold, the objective so far, which its pruner judges."""

    def report(self, value: float, step: int) -> None:
        raise NotImplementedError

    def fold_observer(self, metric: str, labels: np.ndarray, tasks: np.ndarray, parent_run_id: str):
        """After each fold, the objective on the folds done so far goes to the trial's MLflow run (the curve its
        pruner judged; each fold's own F1 is on its fold run) and to the trial, whose pruner may stop the run."""
        import mlflow

        def after_fold(fold: int, oof: np.ndarray, result: dict) -> None:
            so_far = objective_so_far(metric, labels, oof, tasks)
            mlflow.log_metric("oof_best_f1_so_far", so_far, step=fold, run_id=parent_run_id)
            self.report(so_far, fold)

        return after_fold


class OptunaTrial(TrialReporter):
    """A running trial in the shared storage; the sweeper asked for it, the job reports to it."""

    def __init__(self, cfg: DictConfig):
        sweep = cfg.sweep
        storage = open_storage(storage_url(sweep.storage, cfg.paths.root))
        pruner = (
            instantiate(sweep.pruner, _execution_whitelist_=("optuna.pruners.*",))
            if sweep.get("pruner")
            else optuna.pruners.NopPruner()
        )
        study = optuna.load_study(study_name=sweep.study, storage=storage, pruner=pruner)
        self.number = int(sweep.trial)
        self.trial = optuna.trial.Trial(study, trial_id(storage, sweep.study, self.number))

    def started(self, mlflow_run_id: str) -> None:
        """Link the trial to its MLflow run: the sweeper marks the run's state, the callback registers it."""
        self.trial.set_user_attr("mlflow_run_id", mlflow_run_id)

    def report(self, value: float, step: int) -> None:
        """Report, ask the pruner, and leave the decision where the other ranks of this trial can read it."""
        self.trial.report(value, step)
        prune = self.trial.should_prune()
        self.trial.set_user_attr(f"{DECISION}{step}", "prune" if prune else "continue")
        if prune:
            raise optuna.TrialPruned(f"pruned after fold {step} at out-of-fold F1 {value:.4f}")


class FollowerTrial(TrialReporter):
    """Rank > 0 of a distributed trial: it reports nothing and stops exactly when rank 0 stops, or it would wait
    forever in the next fold's collective operations."""

    def __init__(self, cfg: DictConfig, wait_seconds: float = 1800.0):
        self.storage = open_storage(storage_url(cfg.sweep.storage, cfg.paths.root))
        self.trial_id = trial_id(self.storage, cfg.sweep.study, int(cfg.sweep.trial))
        self.wait_seconds = wait_seconds

    def report(self, value: float, step: int) -> None:
        deadline = time.monotonic() + self.wait_seconds
        while (decision := self.storage.get_trial(self.trial_id).user_attrs.get(f"{DECISION}{step}")) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"rank 0 gave no pruning decision for fold {step} in {self.wait_seconds:.0f} s")
            time.sleep(1.0)
        if decision == "prune":
            raise optuna.TrialPruned(f"pruned after fold {step} (rank 0's decision)")


def connect(cfg: DictConfig) -> RunObserver:
    """The entry point's observer of a run: its Optuna trial when the sweeper started it, else one that hears
    nothing."""
    if cfg.get("sweep") is None or cfg.sweep.get("trial") is None:
        return RunObserver()
    if cfg.strategy.devices * cfg.strategy.num_nodes > 1 and not launched_per_rank():
        raise ConfigError(
            f"a sweep trial on strategy.devices={cfg.strategy.devices} x strategy.num_nodes="
            f"{cfg.strategy.num_nodes} needs its ranks started by SLURM (hydra/launcher=slurm) or "
            f"torchrun; on one machine run one sweep worker per GPU instead (CUDA_VISIBLE_DEVICES=k)."
        )
    if cfg.sweep.metric not in OBJECTIVES:
        raise ConfigError(
            f"sweep.metric={cfg.sweep.metric!r} is not an objective; use one of "
            f"{', '.join(OBJECTIVES)} (oof_best_f1 is the mean of both tasks for task=joint)."
        )
    if cfg.sweep.metric != "oof_best_f1" and len(task_kind(cfg.task.code).parts) == 1:
        raise ConfigError(
            f"sweep.metric={cfg.sweep.metric} picks one task of task=joint; task={cfg.task.name} has "
            f"one task, so use sweep.metric=oof_best_f1."
        )
    return OptunaTrial(cfg) if global_rank() == 0 else FollowerTrial(cfg)


def objective_so_far(metric: str, labels: np.ndarray, scores: np.ndarray, tasks: np.ndarray) -> float:
    """The sweep objective on the rows scored so far (NaN scores: folds not trained yet): best-threshold F1
    of one task, or the mean over the tasks present. After the last fold it equals the final objective."""
    scored = ~np.isnan(scores)
    per_task = {}
    for task in sorted(set(tasks.tolist())):
        rows = scored & (tasks == task)
        per_task[task] = metrics.best_f1_threshold(labels[rows], scores[rows]).f1 if rows.any() else 0.0
    if metric != "oof_best_f1":
        return per_task.get(metric[:2].upper(), 0.0)
    return float(np.mean(list(per_task.values())))
