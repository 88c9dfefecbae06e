"""K-fold cross-validation splits. Each returns a fold number per row; grouping splits keep a group in one fold,
so no query (or category family) is scored by a model that saw it in training."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

from relevance.data.records import Record, category_prefix
from relevance.errors import ConfigError
from relevance.tasks import task_kind

SPLITTERS = {}  # split.name -> function(records, n_folds, seed, strata, category_depth) -> (train, validation) pairs


def splitter(name: str):
    """Register a split under the name `conf/split/<name>.yaml` carries."""

    def register(function):
        SPLITTERS[name] = function
        return function

    return register


def _check_groups(name: str, n_groups: int, n_folds: int) -> None:
    if n_groups < n_folds:
        raise ConfigError(
            f"split={name} found {n_groups} groups but split.n_folds={n_folds}; "
            f"lower split.n_folds or use split=stratified."
        )


def check_split_for_task(name: str, task: str) -> None:
    if name == "category_aware" and not all(part.target_is_path for part in task_kind(task).parts):
        raise ConfigError(
            "split=category_aware groups category paths, which only QC rows have; use split=query_group for task=qi."
        )


@splitter("random")
def _random(records, n_folds, seed, strata, category_depth):
    return KFold(n_folds, shuffle=True, random_state=seed).split(strata)


@splitter("stratified")
def _stratified(records, n_folds, seed, strata, category_depth):
    return StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(strata, strata)


@splitter("query_group")
def _query_group(records, n_folds, seed, strata, category_depth):
    groups = np.array([r.query for r in records])
    _check_groups("query_group", len(set(groups)), n_folds)
    return StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed).split(strata, strata, groups)


@splitter("category_aware")
def _category_aware(records, n_folds, seed, strata, category_depth):
    check_split_for_task("category_aware", records[0].task)
    groups = np.array([category_prefix(r.target, category_depth) for r in records])
    _check_groups("category_aware", len(set(groups)), n_folds)
    # GroupKFold balances fold sizes; shuffling the group ids makes the assignment depend on the seed.
    unique = np.unique(groups)
    shuffled = dict(zip(unique, np.random.default_rng(seed).permutation(len(unique))))
    return GroupKFold(n_folds).split(strata, None, [shuffled[g] for g in groups])


def assign_folds(records: list[Record], name: str, n_folds: int, seed: int, category_depth: int = 2) -> np.ndarray:
    """Fold index (0..n_folds-1) for every record."""
    if n_folds < 2:
        raise ConfigError(f"split.n_folds={n_folds}; cross-validation needs at least 2 folds.")
    if len(records) < n_folds:
        raise ConfigError(f"split.n_folds={n_folds} is more than the {len(records)} training rows.")
    if name not in SPLITTERS:
        raise ConfigError(f"split.name={name!r} is not known; choose one of {', '.join(SPLITTERS)}.")
    # Stratify by language and label together, so every fold sees each language's balance.
    strata = np.array([f"{r.language}:{r.label}" for r in records])
    folds = np.full(len(records), -1, dtype=int)
    for fold, (_, validation) in enumerate(SPLITTERS[name](records, n_folds, seed, strata, category_depth)):
        folds[validation] = fold
    return folds
