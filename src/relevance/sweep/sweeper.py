"""A Hydra sweeper on Optuna that closes the gaps of Hydra's own Optuna sweeper: the study is stored and
resumed by name, trials that fail (exception, NaN loss, out of memory) are recorded with their reason while the
sweep goes on up to a failure budget, jobs report each fold so a pruner can stop weak trials, an interrupted
trial is retried on resume, workers on one storage share the study, and MLflow gets one run per sweep.

The search space is written as in Hydra's Optuna sweeper (`interval`, `tag(log, ...)`, `choice`, `range`),
parsed by that plugin's own parser; the sampler configs are its `hydra/sweeper/sampler` group."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading
from pathlib import Path

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from relevance import interrupts, tracking
from relevance.disk import DiskFull
from relevance.errors import ConfigError
from relevance.sweep import parent_run
from relevance.sweep.study import (
    INTERRUPTED,
    counts,
    failure_reason,
    open_storage,
    open_study,
    quiet_optuna,
    release_locks,
    storage_url,
    trial_id,
)
from relevance.training.health import TrainingDegenerate

log = logging.getLogger(__name__)


class Heartbeat:
    """Records a heartbeat for the trials this worker is running, so that another worker (or a resume) can
    tell a trial whose worker died from one still training."""

    def __init__(self, storage, interval: int):
        self.storage, self.interval = storage, interval
        self.trial_ids: set[int] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name="optuna-heartbeat")

    def watch(self, trial_ids: list[int]) -> None:
        for trial in trial_ids:
            self.storage.record_heartbeat(trial)
        self.trial_ids = set(trial_ids)
        if not self.thread.is_alive():
            self.thread.start()

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            for trial in list(self.trial_ids):
                self.storage.record_heartbeat(trial)


class StudySweeper(Sweeper):
    def __init__(
        self,
        sampler,
        direction: str,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        heartbeat_interval: int,
        grace_period: int,
        max_retry: int,
        params: DictConfig | None,
    ):
        if direction != "maximize":
            raise ConfigError(f"hydra.sweeper.direction={direction}: the objective is an F1, so it is maximized.")
        if not isinstance(n_trials, int) or n_trials < 1 or not isinstance(n_jobs, int) or n_jobs < 1:
            raise ConfigError(f"hydra.sweeper.n_trials={n_trials} and n_jobs={n_jobs} must be integers >= 1.")
        if not 0 <= max_failure_rate <= 1:
            raise ConfigError(f"hydra.sweeper.max_failure_rate={max_failure_rate} must be between 0 and 1.")
        self.sampler_config = sampler
        self.sampler = self._sampler()
        if isinstance(self.sampler, functools.partial):
            raise ConfigError(
                "hydra/sweeper/sampler=grid is not supported here; for a grid, list the values with "
                "Hydra's basic sweeper (python train.py -m train.lr=1e-4,3e-4)."
            )
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.heartbeat_interval, self.grace_period, self.max_retry = heartbeat_interval, grace_period, max_retry
        self.params = params or {}
        self.job_idx = 0

    def _sampler(self, fresh_seed: bool = False):
        """The configured sampler; with `fresh_seed` its seed is left to the OS, for a worker joining (or
        resuming) a study: from the configured seed it would repeat the first worker's draws."""
        config = self.sampler_config
        if fresh_seed and "seed" in config:
            config = OmegaConf.merge(config, {"seed": None})
        return instantiate(config, _execution_whitelist_=("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*"))

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> None:
        cfg = self.config
        if not cfg.sweep.study:
            raise ConfigError(
                "sweep.study is not set; give the study a name (the hparams_search configs do), e.g. sweep.study=lr-qc."
            )
        space = [f"{key}={value}" for key, value in self.params.items()] + list(arguments)
        distributions, fixed, fixed_overrides = create_params_from_overrides(space)
        for name in fixed:
            distributions.pop(name, None)
        fixed_overrides += [f"{name}={value}" for name, value in fixed.items()]
        storage = open_storage(
            storage_url(cfg.sweep.storage, cfg.paths.root), self.heartbeat_interval, self.grace_period, self.max_retry
        )
        study, created = open_study(storage, cfg.sweep.study, self.sampler, space)
        if not created:
            study = optuna.load_study(study_name=study.study_name, storage=storage, sampler=self._sampler(True))
        uri, artifact_root = tracking.store_of(cfg.tracking.uri, cfg.tracking.artifact_root, cfg.paths.root)
        tracking.setup(uri, cfg.tracking.experiment, artifact_root)
        run_id = parent_run.sweep_run(study, created, cfg.tracking.experiment)
        interrupts.set_hint(
            f"the sweep's runs are marked KILLED and no champion is registered; run the same command again to "
            f"resume study {study.study_name} (finished trials are kept, interrupted ones run again)."
        )
        heartbeat = Heartbeat(storage, self.heartbeat_interval)
        try:
            searched = {name: _short(distribution) for name, distribution in distributions.items()}
            parent_run.describe(
                run_id, study, searched, cfg.sweep.metric, self.n_trials, self.sampler, cfg.sweep.get("pruner")
            )
            log.info(
                "study %s in %s (%s): %s", study.study_name, storage.url, "new" if created else "resumed", counts(study)
            )
            self._loop(study, storage, distributions, fixed_overrides, run_id, heartbeat)
        except BaseException as error:  # stopped by failures or a signal: the sweep's run says so
            with contextlib.suppress(Exception):  # a store too full to take them must not hide the error
                parent_run.summarize(run_id, study, cfg.split.n_folds)
            with contextlib.suppress(Exception):
                parent_run.stop(run_id, "KILLED" if interrupts.was_interrupted(error) else "FAILED")
            raise
        finally:
            heartbeat.stop.set()
        parent_run.summarize(run_id, study, cfg.split.n_folds)
        parent_run.finish(run_id, study)
        Path(cfg.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(self._results(study)), Path(cfg.hydra.sweep.dir) / "optimization_results.yaml")

    def _loop(self, study, storage, distributions, fixed_overrides, run_id, heartbeat) -> None:
        while True:
            trials: list[optuna.Trial] = []  # the batch running now, filled by _batch as it asks for them
            try:
                if not self._batch(study, storage, distributions, fixed_overrides, run_id, heartbeat, trials):
                    return
            except BaseException as error:  # a signal, wherever it landed: a job, Optuna, MLflow, between trials
                if interrupts.was_interrupted(error):
                    self._interrupted(study, trials, error)
                raise

    def _batch(self, study, storage, distributions, fixed_overrides, run_id, heartbeat, trials: list) -> bool:
        """Ask for up to n_jobs trials, run them, tell the study; False once the study has its n_trials."""
        interrupts.check()  # a signal swallowed on its way (in a finalizer) stops the sweep here
        with quiet_optuna():
            optuna.storages.fail_stale_trials(study)  # dead workers' trials: failed, parameters queued again
        now = counts(study)
        if now["failed"] > math.floor(self.max_failure_rate * self.n_trials):
            raise ConfigError(
                f"the sweep stopped: {now['failed']} trials failed, more than "
                f"hydra.sweeper.max_failure_rate={self.max_failure_rate} of n_trials="
                f"{self.n_trials}; the reasons are on the failed runs (tag relevance.fail_reason)."
            )
        to_go = self.n_trials - now["complete"] - now["pruned"] - now["running"]
        if to_go <= 0:
            return False
        with quiet_optuna():
            for _ in range(min(self.n_jobs, to_go)):
                trials.append(study.ask(fixed_distributions=distributions))
        heartbeat.watch([trial_id(storage, study.study_name, t.number) for t in trials])
        overrides = [
            tuple(f"{name}={value}" for name, value in t.params.items())
            + tuple(fixed_overrides)
            + (f"sweep.trial={t.number}", f"sweep.parent_run={run_id}")
            for t in trials
        ]
        for t in trials:
            log.info("trial %d: %s", t.number, " ".join(f"{k}={v}" for k, v in t.params.items()))
        returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
        interrupts.check()  # a job that ran on after a swallowed signal: its result is not told
        self.job_idx += len(returns)
        stops = [self._tell(study, trial, result) for trial, result in zip(trials, returns)]
        for trial in trials:
            parent_run.trial_outcome(study, trial.number)
        parent_run.summarize(run_id, study, self.config.split.n_folds)
        for stop in filter(None, stops):  # a full disk: every next trial would fail the same way
            raise stop
        return True

    @staticmethod
    def _tell(study: optuna.Study, trial: optuna.Trial, result: JobReturn) -> DiskFull | None:
        """Record the job's outcome in the study; a full disk is handed back, to stop the sweep. The job's
        exception is read directly: JobReturn.return_value would print "Error executing job" for a pruned trial
        too, which is not an error."""
        outcome = result._return_value
        if result.status == JobStatus.FAILED and isinstance(outcome, optuna.TrialPruned):
            study.tell(trial, state=TrialState.PRUNED)
            log.info("trial %d %s", trial.number, outcome)
            return None
        if result.status == JobStatus.FAILED and isinstance(outcome, TrainingDegenerate):
            # Its hyperparameters gave a model that learned nothing: an outcome of the search, set aside like a
            # pruned trial, not a failure of the setup counted against hydra.sweeper.max_failure_rate.
            trial.set_user_attr("pruned_reason", str(outcome).splitlines()[0][:500])
            study.tell(trial, state=TrialState.PRUNED)
            log.info("trial %d did not learn (set aside as pruned): %s", trial.number, str(outcome).splitlines()[0])
            return None
        try:
            value = float(result.return_value)  # re-raises the job's exception, with its traceback on stderr
        except Exception as error:  # noqa: BLE001 - any failure of a trial is recorded, the sweep goes on
            reason = failure_reason(error)
            trial.set_user_attr("fail_reason", reason)
            study.tell(trial, state=TrialState.FAIL)
            log.warning("trial %d failed: %s", trial.number, reason)
            return error if isinstance(error, DiskFull) else None
        if math.isnan(value):
            trial.set_user_attr("fail_reason", "the objective is NaN")
            study.tell(trial, state=TrialState.FAIL)
            return None
        study.tell(trial, value)
        log.info("trial %d: %.4f", trial.number, value)

    @staticmethod
    def _interrupted(study: optuna.Study, trials: list[optuna.Trial], error: BaseException) -> None:
        """A signal: the trials still running are failed as interrupted (their runs KILLED) and queued again, so a
        resume retries them. A second signal while this runs is the user insisting: it is not stopped."""
        tracking.release_store_locks(error)  # the interrupted job may have been inside a write to either store
        release_locks()
        for trial in trials:
            try:
                if study.get_trials(deepcopy=False)[trial.number].state != TrialState.RUNNING:
                    continue
                trial.set_user_attr("fail_reason", f"{INTERRUPTED} by {interrupts.signal_name()}")
                study.tell(trial, state=TrialState.FAIL)
                study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
                parent_run.trial_outcome(study, trial.number)
            except Exception as error:  # noqa: BLE001 - never hide the interruption; a stale trial is retried anyway
                log.warning("trial %d could not be marked interrupted: %s", trial.number, str(error).splitlines()[0])

    @staticmethod
    def _results(study: optuna.Study) -> dict:
        summary = {"name": "relevance-optuna", "study": study.study_name, "trials": counts(study)}
        if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            summary |= {
                "best_trial": study.best_trial.number,
                "best_value": study.best_value,
                "best_params": study.best_params,
            }
        return summary


def _short(distribution) -> str:
    """An Optuna distribution as a short text: `log-float 1e-05..0.001`, `choice 8, 16`."""
    if hasattr(distribution, "choices"):
        return "choice " + ", ".join(map(str, distribution.choices))
    log_scale = "log-" if getattr(distribution, "log", False) else ""
    kind = type(distribution).__name__.removesuffix("Distribution").lower()
    return f"{log_scale}{kind} {distribution.low}..{distribution.high}"
