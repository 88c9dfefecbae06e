"""Which run may become a registered champion: one whose every fold learned and whose F1 beats its all-positive
floor by `MIN_GAIN`, chosen among finished runs of one task and one data set (a QI run, or the synthetic demo,
never becomes `relevance-qc@champion`). Ties go to the earliest run: a later run must do better, not as well, to
replace a champion, and rerunning the choice picks the same run."""

from __future__ import annotations

from dataclasses import dataclass, field

import mlflow
from mlflow.tracking import MlflowClient

from relevance.errors import RelevanceError
from relevance.tasks import KINDS

MIN_GAIN = 0.01  # F1 above the all-positive floor; a model at its floor learned nothing a threshold can't say


def _task_of_name(name: str) -> str | None:
    """relevance-qc -> QC: the task a registered model's name ends in, if it names one."""
    suffix = name.rsplit("-", 1)[-1].upper()
    return suffix if suffix in KINDS else None


@dataclass
class Candidate:
    run_id: str
    name: str
    value: float
    floor: float | None
    task: str
    data: str
    started: int
    learned: bool | None  # None: the run's folds say nothing (logged before the learned tag)

    def reason_not(self, min_gain: float) -> str | None:
        """Why this run may not be a champion (None: it may)."""
        if self.learned is None:
            return "no fold records whether it learned"
        if not self.learned:
            return "a fold did not learn (relevance.learned=false)"
        if self.floor is None:
            return "no all-positive floor logged"
        if self.value < self.floor + min_gain:
            return f"F1 not {min_gain} above its floor"
        return None


@dataclass
class Choice:
    winner: Candidate
    metric: str
    considered: int
    skipped: dict[str, int] = field(default_factory=dict)
    tied: list[str] = field(default_factory=list)

    def describe(self, experiment: str) -> str:
        w = self.winner
        lines = [
            f"best of {self.considered} finished {w.task} run(s) on {w.data} in experiment {experiment!r} by "
            f"{self.metric}: {w.run_id} ({w.name}, {w.value:.4f}; all-positive floor {w.floor:.4f})"
        ]
        if self.tied:
            lines.append(
                f"tie at {w.value:.4f} with {', '.join(self.tied)}: the earliest run wins (a later run must beat it)"
            )
        for reason, count in sorted(self.skipped.items()):
            lines.append(f"skipped {count} run(s): {reason}")
        return "\n".join(lines)


def floor_metric(metric: str) -> str:
    """The all-positive floor `metric` is judged against: the one of its own rows (QC_dev_f1 -> QC_dev_...)."""
    for rows in ("dev_", "oof_"):
        if rows in metric:
            return metric[: metric.index(rows) + len(rows)] + "all_positive_f1"
    return "oof_all_positive_f1"


def data_set(params: dict) -> str:
    """A run's data set as a name: the source, and its folder when it reads one."""
    source, folder = params.get("data.name", "?"), params.get("data.dir")
    return f"{source} ({folder})" if folder not in (None, "", "None") else source


def candidates(experiment: str, metric: str) -> list[Candidate]:
    """Every finished training run of `experiment` that logged `metric`, with what choosing needs."""
    found = MlflowClient().get_experiment_by_name(experiment)
    if found is None:
        raise RelevanceError(
            f"no experiment named {experiment!r} in {mlflow.get_tracking_uri()}; check --experiment and --tracking-uri."
        )
    client = MlflowClient()
    runs = client.search_runs(
        [found.experiment_id],
        f"tags.`relevance.level` = 'parent' and attributes.status = 'FINISHED' and metrics.`{metric}` > -1",
        max_results=5000,
    )
    folds = client.search_runs(
        [found.experiment_id], "tags.`relevance.level` = 'fold' and tags.`relevance.stage` = 'final'", max_results=50000
    )
    learned: dict[str, list[str]] = {}
    for fold in folds:
        if "relevance.learned" in fold.data.tags:
            learned.setdefault(fold.data.tags.get("mlflow.parentRunId"), []).append(fold.data.tags["relevance.learned"])
    return [
        Candidate(
            run_id=run.info.run_id,
            name=run.info.run_name or run.info.run_id,
            value=run.data.metrics[metric],
            floor=run.data.metrics.get(floor_metric(metric)),
            task=run.data.params.get("task.code", "?"),
            data=data_set(run.data.params),
            started=run.info.start_time or 0,
            learned=all(v == "true" for v in learned[run.info.run_id]) if run.info.run_id in learned else None,
        )
        for run in runs
    ]


def _only(values: set[str], what: str, flag: str) -> str:
    if len(values) == 1:
        return next(iter(values))
    raise RelevanceError(f"the runs hold several {what} ({', '.join(sorted(values))}); choose one with {flag}.")


def choose(
    experiment: str,
    metric: str,
    name: str,
    task: str | None = None,
    data: str | None = None,
    min_gain: float = MIN_GAIN,
) -> Choice:
    """The champion for registered model `name`: of the runs of one task (--task, else the name's: relevance-qc
    is QC) and one data set (--data, else the one of the name's current versions, else the only one), the best
    by `metric` among those that may be champions; refused in one sentence when none may."""
    found = candidates(experiment, metric)
    if not found:
        raise RelevanceError(
            f"experiment {experiment!r} has no finished training run with metric {metric!r}; run `python train.py` "
            f"first."
        )
    task = (task or _task_of_name(name) or _only({c.task for c in found}, "tasks", "--task")).upper()
    found = [c for c in found if c.task == task]
    if not found:
        raise RelevanceError(f"experiment {experiment!r} has no finished {task} run; check --task or --experiment.")
    data = data or _registered_data(name) or _only({c.data for c in found}, "data sets", "--data")
    same = [c for c in found if c.data == data or c.data.split(" (")[0] == data]
    if not same:
        raise RelevanceError(
            f"no finished {task} run on data {data!r} (runs hold {', '.join(sorted({c.data for c in found}))}); "
            f"choose one with --data."
        )
    skipped: dict[str, int] = {}
    fit = []
    for candidate in same:
        reason = candidate.reason_not(min_gain)
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
        else:
            fit.append(candidate)
    if not fit:
        why = "; ".join(f"{count} {reason}" for reason, count in sorted(skipped.items()))
        raise RelevanceError(
            f"none of the {len(same)} finished {task} runs on {same[0].data} may be a champion ({why}); nothing "
            f"registered: train a model that learns (README, 'Did every fold learn?')."
        )
    best = max(c.value for c in fit)
    tied = sorted((c for c in fit if c.value == best), key=lambda c: (c.started, c.run_id))
    return Choice(tied[0], metric, len(same), skipped, [c.run_id for c in tied[1:]])


def _registered_data(name: str) -> str | None:
    """The data set of the runs behind `name`'s registered versions (the newest that says), if any."""
    client = MlflowClient()
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except mlflow.exceptions.MlflowException:
        return None
    for version in sorted(versions, key=lambda v: -int(v.version)):
        if version.run_id:
            try:
                return data_set(client.get_run(version.run_id).data.params)
            except mlflow.exceptions.MlflowException:
                continue
    return None


def may_be_champion(run_id: str, metric: str, min_gain: float = MIN_GAIN) -> str | None:
    """Why run `run_id` may not be a champion (None: it may): its folds and its F1 against its floor."""
    run = MlflowClient().get_run(run_id)
    for candidate in candidates(MlflowClient().get_experiment(run.info.experiment_id).name, metric):
        if candidate.run_id == run_id:
            return candidate.reason_not(min_gain)
    return f"it is not a finished run with {metric}"
