"""The decision threshold of a task (and optionally of each language), tuned on out-of-fold scores: exactly
(every distinct score tried, one sort), by an Optuna search over [0, 1], or fixed by the user. The exact one is
always computed, so a run that asks for Optuna shows both, with their F1 and time."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import optuna

from relevance.errors import ConfigError
from relevance.evaluation import metrics

METHODS = ("exact", "optuna", "fixed")


@dataclass(frozen=True)
class Tuned:
    method: str
    threshold: float
    f1: float
    seconds: float


def exact(labels: np.ndarray, scores: np.ndarray) -> Tuned:
    started = time.perf_counter()
    best = metrics.best_f1_threshold(labels, scores)
    return Tuned("exact", best.threshold, best.f1, time.perf_counter() - started)


def optuna_search(labels: np.ndarray, scores: np.ndarray, trials: int, seed: int) -> Tuned:
    """A TPE search of the threshold: what teams did with a generic tuner; here to compare with `exact`."""
    started = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(
        lambda trial: metrics.scores_at(labels, scores, trial.suggest_float("threshold", 0.0, 1.0)).f1, n_trials=trials
    )
    return Tuned("optuna", study.best_params["threshold"], study.best_value, time.perf_counter() - started)


def check(options) -> None:
    if options.method not in METHODS:
        raise ConfigError(f"threshold.method={options.method!r} is not known; use exact, optuna or fixed.")
    value = options.value
    if options.method == "fixed" and not (
        isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
    ):
        raise ConfigError(f"threshold.method=fixed needs threshold.value between 0 and 1 (got {value!r}).")
    if options.method == "optuna" and not (isinstance(options.optuna_trials, int) and options.optuna_trials >= 1):
        raise ConfigError(f"threshold.optuna_trials={options.optuna_trials!r} must be an integer >= 1.")
    if options.get("refit", "folds") not in ("folds", "matched_rate"):
        raise ConfigError(f"threshold.refit={options.refit!r} is not known; use folds or matched_rate.")
    if options.get("unseen", "shared") not in UNSEEN:
        raise ConfigError(f"threshold.unseen={options.unseen!r} is not known; use shared or matched_rate.")
    if not isinstance(options.min_language_rows, int) or options.min_language_rows < 1:
        raise ConfigError(f"threshold.min_language_rows={options.min_language_rows!r} must be an integer >= 1.")


def tune(labels: np.ndarray, scores: np.ndarray, options, seed: int) -> tuple[float, dict[str, Tuned]]:
    """The decision threshold by `options.method`, and every method computed (keyed by name) for the log."""
    found = {"exact": exact(labels, scores)}
    if options.method == "optuna":
        found["optuna"] = optuna_search(labels, scores, options.optuna_trials, seed)
    if options.method == "fixed":
        return float(options.value), found
    return found[options.method].threshold, found


def by_language(labels: np.ndarray, scores: np.ndarray, languages: list[str], options, seed: int) -> dict[str, float]:
    """One threshold per language with at least `min_language_rows` out-of-fold rows of both labels; the
    others (and languages never seen in training) keep the task's threshold."""
    languages = np.asarray(languages)
    found = {}
    for language in sorted(set(languages.tolist())):
        rows = languages == language
        if rows.sum() >= options.min_language_rows and 0 < labels[rows].sum() < rows.sum():
            found[language] = tune(labels[rows], scores[rows], options, seed)[0]
    return found


def row_thresholds(languages: list[str], task_threshold: float, language_thresholds: dict[str, float]) -> np.ndarray:
    """The threshold that decides each row: its language's when it has one, else the task's."""
    return np.array([language_thresholds.get(language, task_threshold) for language in languages], dtype=float)


def as_metrics(found: dict[str, Tuned], prefix: str) -> dict[str, float]:
    values = {}
    for name, tuned in found.items():
        values |= {
            f"{prefix}threshold_{name}": tuned.threshold,
            f"{prefix}threshold_{name}_f1": tuned.f1,
            f"{prefix}threshold_{name}_seconds": tuned.seconds,
        }
    return values


UNSEEN = ("shared", "matched_rate")


def matched_rate(languages, scores: np.ndarray, seen: set[str], rate: float, min_rows: int) -> dict[str, float]:
    """Thresholds for languages with no labels (unseen in training), from their own scores: each such language with
    at least `min_rows` rows to score gets the score quantile at which it is predicted relevant as often as the
    training rows were at the task's threshold (`rate`). Scores of a new language tend to sit lower or higher as a
    whole; this moves its threshold with them. Needs the rows scored together (a file), not one REST row."""
    languages = np.asarray(languages)
    scores = np.asarray(scores, dtype=float)
    found = {}
    for language in sorted(set(languages.tolist()) - set(seen)):
        rows = languages == language
        if rows.sum() >= min_rows:
            found[language] = float(np.quantile(scores[rows], 1.0 - rate, method="higher"))
    return found
