"""The only module that knows the order of the stages, over a `Run` that `relevance.build` made from the config:

[tapt stage 1] -> [self-validation pass] -> cross-validation (a model per fold) -> [refit] -> report (metrics,
thresholds, plots) -> the parent run logs it -> model card and bundle (the logged model) -> registry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from relevance.evaluation.reporting import headline, run_report
from relevance.observer import RunObserver
from relevance.tracking import parent_run
from relevance.training.cross_validation import cross_validate, refit
from relevance.training.self_validation import self_validation_stage

if TYPE_CHECKING:
    from relevance.build import Run


def run(job: Run, observer: RunObserver) -> dict:
    """Train and judge the run's models, log everything to its parent MLflow run; the headline metrics and the run
    and model ids."""
    data, trainer, plan = job.data, job.trainer, job.plan
    with parent_run.opened(job.tracking, observer, job.runtime) as parent:
        parent.log_metrics(job.counts)
        if job.tapt:
            job.source.init_adapter = job.tapt.adapter(trainer, parent.scratch, job.tracking.tracking_uri)
        if job.self_validation:
            parent.log_metrics(self_validation_stage(job.self_validation, plan, trainer, data))
        after_fold = observer.fold_observer(job.sweep_metric, data.labels, data.tasks, parent.run_id)
        scored = cross_validate(plan, trainer, data, job.dev_inputs, parent.adapters, observers=(after_fold,))
        refit_scores = refit(plan, trainer, data, job.dev_inputs, parent.adapters) if job.refit else None
        parent.log_metrics(job.translation_counts())
        report = run_report(job.reporting, data, scored.scores, job.dev, scored.dev_scores, refit_scores, parent.plots)
        parent.log_report(report, data, scored.scores)
        card = job.model_card(report, f"runs:/{parent.run_id}/{parent.name}")
        parent.log_card(card, headline(report.summary))
        model_uri = parent.log_model(job.model_bundle(report, parent.run_id), card) if job.log_model else None
        parent.finish(model_uri, job.register_as, job.register_alias)
        return {
            **report.summary,
            "languages": report.by_language,
            "run_id": parent.run_id,
            "model_uri": model_uri,
            "tracking_uri": parent.tracking_uri,
            **job.translation_counts(),
            **job.extra_counts,
        }
