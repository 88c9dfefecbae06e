"""Metrics, thresholds and plots of a finished run: out-of-fold and dev, seen and unseen languages, per task;
the refit model's threshold and dev figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from relevance.evaluation import metrics, plots, thresholds
from relevance.tasks import task_kind

if TYPE_CHECKING:  # the rows of a run; evaluation never calls into training
    from relevance.data.training_data import TrainingData


@dataclass(frozen=True)
class ReportSettings:
    """How a run is judged: its task code and parts, the threshold.* group, the seed of the threshold search, the
    number of folds, and the backbone's name on the plots."""

    task_code: str
    tasks: tuple[str, ...]
    threshold: object  # method, unseen, per_language, min_language_rows, refit
    seed: int
    n_folds: int
    title: str


@dataclass
class Report:
    """A finished run's figures: the summary metrics, the decision thresholds per task (and per language), the
    per-language rows, and the refit model's thresholds; `tracking` logs it, the bundle keeps the thresholds."""

    summary: dict
    decision: dict
    per_language: dict
    by_language: dict
    refit_decision: dict = field(default_factory=dict)


def run_report(settings: ReportSettings, data: TrainingData, oof, dev, dev_scores, refit_scores, plots_dir) -> Report:
    """The fold models' report, and the refit model's figures added when it was trained."""
    report = Report(*fold_report(settings, data, oof, dev, dev_scores, plots_dir))
    if refit_scores is not None:
        refit_summary, report.refit_decision = refit_report(settings, data, report.summary, refit_scores, dev)
        report.summary |= refit_summary
    return report


def evaluate(labels, scores, languages, seen: set[str], threshold: float | None = None) -> dict:
    """F1 at 0.5 and at the best threshold, the floor, and per-language F1 at `threshold` (default: the best)."""
    at_half = metrics.scores_at(labels, scores, 0.5)
    best = metrics.best_f1_threshold(labels, scores)
    threshold = best.threshold if threshold is None else threshold
    return {
        "at_half": at_half,
        "best": best,
        "floor": metrics.all_positive_f1(labels),
        "at_threshold": metrics.scores_at(labels, scores, threshold),
        "languages": metrics.per_language(languages, labels, scores, threshold, seen),
    }


def _metric_dict(result: dict, prefix: str) -> dict[str, float]:
    values = {
        **result["at_half"].as_dict(f"{prefix}at_0.5_"),
        **result["best"].as_dict(f"{prefix}best_"),
        f"{prefix}all_positive_f1": result["floor"],
    }
    values.pop(f"{prefix}at_0.5_threshold")
    for row in result["languages"]:
        if not row["one_label"]:
            values[f"{prefix}f1_{row['language']}"] = row["f1"]
    return values


def _seen_unseen(labels, scores, languages, seen: set[str], decide: np.ndarray, prefix: str) -> dict[str, float]:
    """F1 of the rows in languages seen in training and of the others (at 0.5 and at the decision thresholds):
    the split the competition's unseen languages are about."""
    in_seen = np.isin(languages, sorted(seen))
    values = {}
    for group, rows in (("seen", in_seen), ("unseen", ~in_seen)):
        if rows.any():
            values[f"{prefix}{group}_f1_at_0.5"] = metrics.scores_at(labels[rows], scores[rows], 0.5).f1
            values[f"{prefix}{group}_f1_at_oof_threshold"] = metrics.scores_at(
                labels[rows], scores[rows], decide[rows]
            ).f1
            values[f"{prefix}{group}_all_positive_f1"] = metrics.all_positive_f1(labels[rows])
    return values


def _task_report(
    settings: ReportSettings, task: str, labels, oof, languages, folds, dev, dev_scores, plots_dir: Path, prefix: str
) -> tuple[dict, float, dict[str, float], dict]:
    """One task's metrics and plots; its decision threshold (and per-language ones) tuned on out-of-fold scores,
    at which the per-language rows and dev are judged."""
    seen = set(languages)
    options = settings.threshold
    threshold, tuned = thresholds.tune(labels, oof, options, settings.seed)
    by_language_thresholds = (
        thresholds.by_language(labels, oof, languages, options, settings.seed) if options.per_language else {}
    )
    decide = thresholds.row_thresholds(languages, threshold, by_language_thresholds)
    result = evaluate(labels, oof, languages, seen, decide)
    summary = _metric_dict(result, f"{prefix}oof_") | thresholds.as_metrics(tuned, prefix)
    fold_f1 = [metrics.scores_at(labels[folds == k], oof[folds == k], 0.5).f1 for k in range(settings.n_folds)]
    summary[f"{prefix}oof_fold_mean_f1_at_0.5"] = float(np.mean(fold_f1))
    summary[f"{prefix}oof_fold_std_f1_at_0.5"] = float(np.std(fold_f1))
    summary[f"{prefix}decision_threshold"] = threshold
    summary[f"{prefix}oof_f1_at_decision_thresholds"] = result["at_threshold"].f1
    summary[f"{prefix}oof_positive_rate_at_decision"] = float(np.mean(oof >= decide))
    summary |= {f"{prefix}decision_threshold_{language}": value for language, value in by_language_thresholds.items()}
    title = f"{settings.title} {task}"
    plots.threshold_plot(
        *metrics.threshold_curve(labels, oof),
        result["best"],
        result["floor"],
        f"{title}: out-of-fold F1 ({len(labels)} rows)",
        plots_dir / f"{prefix}threshold_f1.png",
    )
    at = f"at the decision threshold {threshold:.3f}" + (
        " (languages with enough rows: their own)" if by_language_thresholds else ""
    )
    plots.language_plot(
        result["languages"], f"{title}: out-of-fold F1 per language", at, plots_dir / f"{prefix}language_f1.png"
    )
    by_language = {f"{prefix}out-of-fold": result["languages"]}
    if dev_scores is not None:
        dev_labels = np.array([r.label for r in dev])
        dev_languages = [r.language for r in dev]
        rate = summary[f"{prefix}oof_positive_rate_at_decision"]
        matched = thresholds.matched_rate(dev_languages, dev_scores, seen, rate, options.min_language_rows)
        # the out-of-fold thresholds (named so) beside the run's own decisions (which with
        # threshold.unseen=matched_rate give unseen languages their own quantile)
        at_oof = thresholds.row_thresholds(dev_languages, threshold, by_language_thresholds)
        at_matched = thresholds.row_thresholds(dev_languages, threshold, by_language_thresholds | matched)
        if matched:
            unseen_rows = ~np.isin(dev_languages, sorted(seen))
            summary[f"{prefix}dev_unseen_f1_at_matched_rate"] = metrics.scores_at(
                dev_labels[unseen_rows], dev_scores[unseen_rows], at_matched[unseen_rows]
            ).f1
        dev_thresholds = at_matched if options.unseen == "matched_rate" else at_oof
        dev_result = evaluate(dev_labels, dev_scores, dev_languages, seen, dev_thresholds)
        summary.update(_metric_dict(dev_result, f"{prefix}dev_"))
        summary[f"{prefix}dev_f1_at_decision"] = dev_result["at_threshold"].f1
        summary[f"{prefix}dev_f1_at_oof_threshold"] = metrics.scores_at(dev_labels, dev_scores, at_oof).f1
        summary |= _seen_unseen(dev_labels, dev_scores, dev_languages, seen, at_oof, f"{prefix}dev_")
        dev_at = at + (" (unseen: matched positive rate)" if options.unseen == "matched_rate" and matched else "")
        plots.language_plot(
            dev_result["languages"],
            f"{title}: dev F1 per language (fold ensemble)",
            dev_at,
            plots_dir / f"{prefix}dev_language_f1.png",
        )
        by_language[f"{prefix}dev"] = dev_result["languages"]
    return summary, threshold, by_language_thresholds, by_language


def fold_report(
    settings: ReportSettings, data: TrainingData, oof, dev, dev_scores, plots_dir: Path
) -> tuple[dict, dict, dict, dict]:
    """Headline metrics, per-language rows and plots, per task; thresholds come from out-of-fold scores only
    (one per task) and dev is judged at them. For task=joint each key carries a qc_/qi_ prefix and the unprefixed
    headline is the competition score, the mean of the two tasks."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    tasks = np.array([r.task for r in data.records])
    dev_tasks = np.array([r.task for r in dev]) if dev else None
    dev_mean = np.mean(dev_scores, axis=0) if dev_scores else None
    kind = task_kind(settings.task_code)
    summary, decision, per_language, by_language = {}, {}, {}, {}
    for task in settings.tasks:
        rows = np.flatnonzero((tasks == task) & np.isfinite(oof))  # held out by a trained fold
        dev_rows = np.flatnonzero(dev_tasks == task) if dev_mean is not None else None
        part, decision[task], per_language[task], languages = _task_report(
            settings,
            task,
            data.labels[rows],
            oof[rows],
            [data.languages[i] for i in rows],
            data.folds[rows],
            [dev[i] for i in dev_rows] if dev_rows is not None else None,
            dev_mean[dev_rows] if dev_rows is not None else None,
            plots_dir,
            kind.metric_prefix(task),
        )
        summary.update(part)
        by_language.update(languages)
    if len(kind.parts) > 1:  # the headline is the mean of the parts' figures (the competition score)
        for key in (
            "oof_best_f1",
            "oof_at_0.5_f1",
            "oof_all_positive_f1",
            "dev_at_0.5_f1",
            "dev_f1_at_oof_threshold",
            "dev_f1_at_decision",
        ):
            parts = [f"{kind.metric_prefix(part.code)}{key}" for part in kind.parts]
            if all(part in summary for part in parts):
                summary[key] = float(np.mean([summary[part] for part in parts]))
    return summary, decision, per_language, by_language


def refit_report(
    settings: ReportSettings, data: TrainingData, summary: dict, refit_scores: list[np.ndarray], dev
) -> tuple[dict, dict[str, float]]:
    """The refit model's threshold per task, and its dev metrics. `threshold.refit=folds` (default) keeps the fold
    models' out-of-fold threshold; `matched_rate` takes the score at which the refit calls as many of its (in-sample)
    training rows relevant as the folds did out of fold. Both are logged; on the taxonomy benchmark the folds'
    threshold carried over better (BENCHMARKS.md)."""
    tasks = np.array([r.task for r in data.records])
    kind = task_kind(settings.task_code)
    values, decision = {}, {}
    for task in settings.tasks:
        prefix = kind.metric_prefix(task)
        rows = tasks == task
        rate = summary[f"{prefix}oof_positive_rate_at_decision"]
        matched_threshold = float(np.quantile(refit_scores[0][rows], 1.0 - rate, method="higher"))
        values[f"{prefix}refit_threshold_matched_rate"] = matched_threshold
        decision[task] = (
            matched_threshold
            if settings.threshold.get("refit", "folds") == "matched_rate"
            else summary[f"{prefix}decision_threshold"]
        )
        values[f"{prefix}refit_threshold"] = decision[task]
        if dev and len(refit_scores) > 1:
            dev_rows = np.array([r.task == task for r in dev])
            labels = np.array([r.label for r in dev])[dev_rows]
            scores = refit_scores[1][dev_rows]
            languages = [r.language for r, keep in zip(dev, dev_rows) if keep]
            seen = set(np.asarray(data.languages)[rows].tolist())
            in_seen = np.isin(languages, sorted(seen))
            matched = thresholds.matched_rate(languages, scores, seen, rate, settings.threshold.min_language_rows)
            if matched:
                row_thresholds = thresholds.row_thresholds(languages, decision[task], matched)
                values[f"{prefix}dev_refit_unseen_f1_at_matched_rate"] = metrics.scores_at(
                    labels[~in_seen], scores[~in_seen], row_thresholds[~in_seen]
                ).f1
            for name, threshold in (
                ("refit_threshold", decision[task]),
                ("matched_threshold", matched_threshold),
                ("oof_threshold", summary[f"{prefix}decision_threshold"]),
                ("0.5", 0.5),
            ):
                values[f"{prefix}dev_refit_f1_at_{name}"] = metrics.scores_at(labels, scores, threshold).f1
                for group, group_rows in (("seen", in_seen), ("unseen", ~in_seen)):
                    if group_rows.any():
                        values[f"{prefix}dev_refit_{group}_f1_at_{name}"] = metrics.scores_at(
                            labels[group_rows], scores[group_rows], threshold
                        ).f1
    return values, decision


# A metric that would only repeat another under a second name is logged once, under the name people look for: with
# the exact threshold search the decision threshold is the best out-of-fold threshold, and the F1 at it the best F1.
REPEATS = {
    "threshold_exact": "decision_threshold",
    "oof_best_threshold": "decision_threshold",
    "threshold_exact_f1": "oof_best_f1",
    "oof_f1_at_decision_thresholds": "oof_best_f1",
    "dev_f1_at_decision": "dev_f1_at_oof_threshold",  # they differ when unseen languages get their own thresholds
}


def distinct_metrics(summary: dict) -> dict:
    """`summary` without the metrics that repeat another's value (REPEATS, per task prefix)."""
    kept = {}
    for key, value in summary.items():
        prefix = next((p for p in ("qc_", "qi_") if key.startswith(p)), "")
        twin = REPEATS.get(key.removeprefix(prefix))
        if twin is None or summary.get(prefix + twin) != value:
            kept[key] = value
    return kept


def headline(summary: dict) -> str:
    """The run's F1 lines: one per task (task=joint adds the competition score, their mean)."""
    lines = []
    for prefix in ("", "qc_", "qi_"):
        if f"{prefix}oof_best_f1" not in summary or (not prefix and "qc_oof_best_f1" in summary):
            continue
        name = prefix.rstrip("_").upper() + " " if prefix else ""
        lines.append(
            f"{name}out-of-fold F1 {summary[prefix + 'oof_best_f1']:.4f} at threshold "
            f"{summary[prefix + 'oof_best_threshold']:.3f} ({summary[prefix + 'oof_at_0.5_f1']:.4f} at 0.5; "
            f"all-positive floor {summary[prefix + 'oof_all_positive_f1']:.4f}); decision threshold "
            f"{summary[prefix + 'decision_threshold']:.3f}"
        )
        if f"{prefix}dev_f1_at_decision" in summary:
            lines.append(
                f"{name}dev F1 (fold ensemble, the run's decisions): "
                f"{summary[prefix + 'dev_f1_at_decision']:.4f} "
                f"(floor {summary[prefix + 'dev_all_positive_f1']:.4f})"
            )
    if "qc_oof_best_f1" in summary:
        lines.append(f"competition score (mean of QC and QI out-of-fold F1): {summary['oof_best_f1']:.4f}")
    return "\n".join(lines)
