"""The rows of one run, read, cleaned, augmented and split: what cross-validation trains and scores."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from relevance.augment import chosen
from relevance.data.reader import read_records
from relevance.data.records import Record
from relevance.data.splits import assign_folds
from relevance.errors import ConfigError, DataError

if TYPE_CHECKING:  # the preprocessor is handed in: data/ reads rows, text/ formats them
    from relevance.text.preprocess import Preprocessor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSettings:
    """Where a run's rows come from and how they split: each task's train and dev files, the seed, the sample of
    training rows (data.max_rows), whether dev is scored, the cache (hard negatives' embeddings) and the split."""

    train_files: dict[str, Path]
    dev_files: dict[str, Path]
    seed: int
    max_rows: int | None
    evaluate_dev: bool
    cache: Path
    split: str
    n_folds: int
    category_depth: int = 2


@dataclass
class TrainingRows:
    """What one model trains on, row by row: its model inputs and labels, each row's query (a head whose loss reads
    a query's rows together batches by it; none: each row is its own query) and, for distillation, each row's
    teacher logit."""

    inputs: list
    labels: np.ndarray
    groups: np.ndarray | None = None
    teacher: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class TrainingData:
    """The rows of one run. `records` are scored out of fold against `labels`; extras (synthesized translations,
    hard negatives) only train, in the folds where the row they came from trains. Self-validation may clear
    `keep` or flip `train_labels`, which changes what trains, never what is judged."""

    records: list[Record]
    inputs: list
    labels: np.ndarray
    folds: np.ndarray
    extra_inputs: list = field(default_factory=list)
    extra_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    extra_source: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    extra_follows_source: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    keep: np.ndarray | None = None
    train_labels: np.ndarray | None = None
    catalogue: list[str] = field(default_factory=list)  # the categories a margin-scoring head compares with
    groups: np.ndarray | None = None  # each row's query (query_groups), then each extra's; none: a row each
    extra_groups: np.ndarray | None = None
    originals: list[Record] = field(default_factory=list)  # records, then extras, cleaned, before any rewrite
    teacher: np.ndarray | None = None  # each of `originals`' teacher logit (distillation), when distill.teachers

    def __post_init__(self):
        self.keep = np.ones(len(self.records), dtype=bool) if self.keep is None else self.keep
        self.train_labels = self.labels.copy() if self.train_labels is None else self.train_labels
        if self.groups is None:
            self.groups = np.arange(len(self.records))
            self.extra_groups = np.arange(len(self.records), len(self.records) + len(self.extra_inputs))

    @property
    def tasks(self) -> np.ndarray:
        """Each scored row's task code."""
        return np.array([r.task for r in self.records])

    @property
    def languages(self) -> list[str]:
        return [r.language for r in self.records]

    def _training(self, fold: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Which rows and which extras train the model of `fold`."""
        outside = np.ones(len(self.folds), dtype=bool) if fold is None else self.folds != fold
        source = self.extra_source
        return self.keep & outside, outside[source] & (self.keep[source] | ~self.extra_follows_source)

    def training_rows(self, fold: int | None) -> TrainingRows:
        """The rows that train the model of `fold` (None: every row, for the full-data refit), extras last."""
        own, extra = self._training(fold)
        source = self.extra_source
        flip = self.extra_follows_source & (self.train_labels[source] != self.labels[source])
        extra_labels = np.where(flip, 1 - self.extra_labels, self.extra_labels)
        n = len(self.records)
        return TrainingRows(
            [self.inputs[i] for i in np.flatnonzero(own)] + [self.extra_inputs[j] for j in np.flatnonzero(extra)],
            np.concatenate([self.train_labels[own], extra_labels[extra]]).astype(int),
            np.concatenate([self.groups[own], self.extra_groups[extra]]).astype(int),
            None if self.teacher is None else np.concatenate([self.teacher[:n][own], self.teacher[n:][extra]]),
        )


def query_groups(records: list[Record]) -> np.ndarray:
    """Each row's query as a number: rows of one task with the same query text share it (a query's candidates, its
    hard negatives; a translated row is its translated query's)."""
    ids: dict[tuple[str, str], int] = {}
    return np.array([ids.setdefault((r.task, r.query), len(ids)) for r in records], dtype=int)


def read_task_rows(path: Path, task: str, max_rows: int | None, seed: int, preprocessor: Preprocessor):
    """Cleaned training rows of one task, optionally a random subset; refused when nothing is left to learn from."""
    records, report = preprocessor.clean(read_records(path, task, require_label=True, max_rows=max_rows, seed=seed))
    check_learnable(records, path)
    return records, report


def check_learnable(records: list[Record], path: Path) -> None:
    """Rows a classifier can learn from: some left after cleaning, both labels present; a language with one label
    is only worth a warning (its own threshold and F1 are then meaningless)."""
    if not records:
        raise DataError(path, None, "every row's query is empty after cleaning; fill origin_query.")
    labels = {r.label for r in records}
    if len(labels) == 1:
        raise DataError(
            path,
            None,
            f"every training row is labelled {labels.pop()}; a relevance model needs rows of both labels (0 and 1) "
            f"to learn to tell them apart.",
        )
    by_language: dict[str, set] = {}
    for r in records:
        by_language.setdefault(r.language, set()).add(r.label)
    for language, found in sorted(by_language.items()):
        if len(found) == 1:
            log.warning(
                "%s: every %s row is labelled %s; its per-language figures will mean little.", path, language, *found
            )


def check_folds(labels: np.ndarray, folds: np.ndarray, n_folds: int, split: str) -> None:
    """Every fold trains on both labels and holds out rows to score (else its model or its F1 is meaningless)."""
    for fold in range(n_folds):
        trained, held_out = labels[folds != fold], labels[folds == fold]
        if len(held_out) == 0 or len(set(trained.tolist())) < 2:
            raise ConfigError(
                f"with split={split} and split.n_folds={n_folds}, fold {fold + 1} "
                f"{'holds out no rows' if len(held_out) == 0 else 'trains on rows of one label only'}; "
                f"use fewer folds or another split."
            )


def _task_rows(settings: DataSettings, task: str, preprocessor: Preprocessor, counts: dict):
    """One task's cleaned rows, its training-only extras (with their source index) and its labelled dev rows; the
    last item is the rows and extras as cleaned, before the text rewrites (what a teacher scores)."""
    augmentation, translations = preprocessor.augmentation, preprocessor.translations
    records, report = read_task_rows(settings.train_files[task], task, settings.max_rows, settings.seed, preprocessor)
    extras, sources, follows = [], [], []
    for step, options in chosen(augmentation):
        if step.adds_rows(options):
            seed = settings.seed + step.seed_offset
            rows, source = step.extra_rows(records, options, translations, settings.cache, seed)
            extras, sources = extras + rows, sources + [source]
            follows += [step.extra_rows_follow_source] * len(rows)
            counts[step.count_metric] = counts.get(step.count_metric, 0) + len(rows)
    rewritten = preprocessor.rewrite(records + extras)
    dev = None
    dev_path = settings.dev_files[task]
    if settings.evaluate_dev and dev_path.is_file():
        dev_rows, _ = preprocessor.clean(read_records(dev_path, task))
        labels = {r.label for r in dev_rows}
        if len(labels) == 1 and None not in labels:  # F1 against a floor of 0 or 1 says nothing: not a result
            (label,) = labels
            log.warning("%s: every row is labelled %s, so its F1 would restate its floor; not scored", dev_path, label)
        elif dev_rows and None not in labels:
            dev = preprocessor.rewrite(dev_rows)  # only the generated data's dev files carry labels
    source = np.concatenate(sources).astype(int) if sources else np.zeros(0, dtype=int)
    return rewritten[: len(records)], rewritten[len(records) :], source, follows, report, dev, (records, extras)


def prepare_data(settings: DataSettings, preprocessor: Preprocessor):
    """Read, clean, add training-only rows, rewrite text, split (all tasks together for task=joint, so a query
    never sits on both sides of a fold). Returns the TrainingData, the cleaning report, the labelled dev rows (or
    None) and how many extra rows each augmentation made."""
    records, extras, sources, follows, dev, counts = [], [], [], [], [], {}
    originals, original_extras = [], []
    dropped = 0
    for task in preprocessor.templates:
        task_records, task_extras, source, task_follows, report, task_dev, cleaned = _task_rows(
            settings, task, preprocessor, counts
        )
        originals, original_extras = originals + cleaned[0], original_extras + cleaned[1]
        sources.append(source + len(records))
        records, extras, follows = records + task_records, extras + task_extras, follows + task_follows
        dev = dev + task_dev if (dev is not None and task_dev) else None
        dropped += report.dropped_empty_query
    report.dropped_empty_query = dropped
    if dropped:
        log.warning("dropped %d training row(s) whose query is empty (or null) after cleaning", dropped)
    folds = assign_folds(records, settings.split, settings.n_folds, settings.seed, settings.category_depth)
    check_folds(np.array([r.label for r in records]), folds, settings.n_folds, settings.split)
    data = TrainingData(
        records,
        preprocessor.format(records),
        np.array([r.label for r in records]),
        folds,
        preprocessor.format(extras),
        np.array([r.label for r in extras], dtype=int),
        np.concatenate(sources).astype(int),
        np.array(follows, dtype=bool),
        originals=originals + original_extras,
    )
    groups = query_groups(records + extras)
    data.groups, data.extra_groups = groups[: len(records)], groups[len(records) :]
    return data, report, dev, counts
