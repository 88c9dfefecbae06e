"""The sweep's MLflow run: every trial's run is its child; it carries the study's counts, the best trial and
the compute pruning saved, updated after every batch, and the study's plots at the end."""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from relevance.sweep.study import INTERRUPTED, OVERRIDES_ATTR, counts, fail_reason_of

log = logging.getLogger(__name__)
RUN_ATTR = "relevance.mlflow_run_id"


def sweep_run(study: optuna.Study, created: bool, experiment: str, wait_seconds: float = 60.0) -> str:
    """The id of the study's MLflow run. The worker that created the study creates it; others (and a resume)
    find it in the study's attributes, so every trial of the study lands under one run."""
    client = MlflowClient()
    if created:
        experiment_id = client.get_experiment_by_name(experiment).experiment_id
        run = client.create_run(
            experiment_id,
            run_name=f"sweep-{study.study_name}",
            tags={"relevance.level": "sweep", "relevance.study": study.study_name},
        )
        study.set_user_attr(RUN_ATTR, run.info.run_id)
        return run.info.run_id
    deadline = time.monotonic() + wait_seconds
    while RUN_ATTR not in study.user_attrs:
        # A study made elsewhere (Optuna's own API) has no creator linking a run; one made by a worker that
        # died before linking it never will: make the run here.
        if OVERRIDES_ATTR not in study.user_attrs or time.monotonic() > deadline:
            return sweep_run(study, True, experiment)
        time.sleep(0.5)
    run_id = study.user_attrs[RUN_ATTR]
    client.update_run(run_id, status="RUNNING")
    return run_id


def describe(
    run_id: str, study: optuna.Study, searched: dict[str, str], metric: str, n_trials: int, sampler, pruner
) -> None:
    """What the sweep run is, where the UI shows it: its description, and its settings as params (logged once; a
    resumed study's run has them). The objective is named in the study too, for optuna-dashboard."""
    client = MlflowClient()
    sampler_name, pruner_name = type(sampler).__name__, (pruner or {}).get("_target_", "none").rsplit(".", 1)[-1]
    space = ", ".join(f"{name} ({text})" for name, text in searched.items()) or "nothing"
    client.set_tag(
        run_id,
        "mlflow.note.content",
        f"Optuna study `{study.study_name}`: maximizes `{metric}` over {n_trials} trials ({sampler_name}, "
        f"pruner {pruner_name}); searches {space}. Each trial is a child run; the best "
        f"trial's model is registered when the study ends, if it learned.",
    )
    existing = client.get_run(run_id).data.params
    settings = {
        "study": study.study_name,
        "metric": metric,
        "n_trials": n_trials,
        "sampler": sampler_name,
        "pruner": pruner_name,
        **{f"space.{name}": text for name, text in searched.items()},
    }
    for key, value in settings.items():
        if key not in existing:
            client.log_param(run_id, key, str(value)[:6000])
    with warnings.catch_warnings():  # experimental in Optuna, stable in use
        warnings.simplefilter("ignore")
        if study.metric_names != [metric]:
            study.set_metric_names([metric])


def trial_outcome(study: optuna.Study, number: int) -> None:
    """Mark a finished trial's MLflow run with the trial's state (and reason): pruned and interrupted runs end
    KILLED, failed ones FAILED."""
    trial = study.get_trials(deepcopy=False)[number]
    run_id = trial.user_attrs.get("mlflow_run_id")
    if run_id is None:  # failed before its run started (e.g. a config mistake)
        return
    client = MlflowClient()
    client.set_tag(run_id, "relevance.trial_state", trial.state.name)
    if trial.state == TrialState.FAIL:
        reason = fail_reason_of(trial)
        client.set_tag(run_id, "relevance.fail_reason", reason)
        client.set_terminated(run_id, "KILLED" if reason.startswith(INTERRUPTED) else "FAILED")
    elif trial.state == TrialState.PRUNED:
        client.set_terminated(run_id, "KILLED")


def compute(study: optuna.Study, n_folds: int) -> dict[str, float]:
    """Folds trained and folds pruning skipped (a trial pruned after fold k trained k + 1 of n_folds)."""
    finished = [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    trained = sum(n_folds if t.state == TrialState.COMPLETE else (t.last_step or 0) + 1 for t in finished)
    return {
        "folds_trained": trained,
        "folds_saved_by_pruning": n_folds * len(finished) - trained,
        "trial_seconds_total": sum(t.duration.total_seconds() for t in finished if t.duration),
    }


def summarize(run_id: str, study: optuna.Study, n_folds: int) -> None:
    """Counts, compute and the best trial so far, on the sweep's run (metrics keep their history per step)."""
    client = MlflowClient()
    step = len(study.get_trials(deepcopy=False))
    values = {f"trials_{state}": n for state, n in counts(study).items()} | compute(study, n_folds)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if complete:
        best = study.best_trial
        values["best_value"] = best.value
        values["best_trial"] = best.number
        client.set_tag(run_id, "relevance.best_trial", best.number)
        if "mlflow_run_id" in best.user_attrs:
            client.set_tag(run_id, "relevance.best_run_id", best.user_attrs["mlflow_run_id"])
        for name, value in best.params.items():
            client.set_tag(run_id, f"best.{name}", value)
    for key, value in values.items():
        client.log_metric(run_id, key, float(value), step=step)


def stop(run_id: str, status: str) -> None:
    MlflowClient().set_terminated(run_id, status)


def finish(run_id: str, study: optuna.Study) -> None:
    """The study's plots and trial table as artifacts, and the run marked finished."""
    client = MlflowClient()
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "duration", "user_attrs"))
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        frame.to_csv(scratch / "trials.csv", index=False)
        _plots(study, scratch)
        client.log_artifacts(run_id, str(scratch), "study")
    client.set_terminated(run_id, "FINISHED")


def _plots(study: optuna.Study, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return
    for name, draw in (
        ("history", optuna_plots.plot_optimization_history),
        ("folds", optuna_plots.plot_intermediate_values),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                axes = draw(study)
        except (ValueError, RuntimeError) as error:  # e.g. no intermediate values yet
            log.info("study plot %s skipped: %s", name, error)
            continue
        axes.figure.tight_layout()
        axes.figure.savefig(folder / f"{name}.png", dpi=120)
        plt.close(axes.figure)
