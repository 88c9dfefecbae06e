import collections

import numpy as np
import pytest

from relevance.data.reader import read_records
from relevance.data.records import category_prefix
from relevance.data.splits import assign_folds
from relevance.errors import ConfigError
from relevance.synthetic.demo import DemoSpec, generate_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = generate_demo(tmp_path_factory.mktemp("d") / "demo", DemoSpec(train_rows=1200, seed=3))
    return {task: read_records(folder / f"train_{task}.txt", task, require_label=True) for task in ("QC", "QI")}


def groups_per_fold(records, folds, key):
    owner = collections.defaultdict(set)
    for record, fold in zip(records, folds):
        owner[key(record)].add(fold)
    return owner


@pytest.mark.parametrize("name", ["random", "stratified", "query_group", "category_aware"])
def test_every_row_gets_one_fold_and_folds_are_balanced_in_size(demo, name):
    folds = assign_folds(demo["QC"], name, 4, seed=0)
    sizes = np.bincount(folds, minlength=4)
    assert folds.min() == 0 and folds.max() == 3
    assert sizes.min() > 0.5 * len(folds) / 4


def test_query_group_keeps_each_query_in_one_fold_and_balances_language_and_label(demo):
    records = demo["QI"]
    folds = assign_folds(records, "query_group", 4, seed=0)
    assert all(len(f) == 1 for f in groups_per_fold(records, folds, lambda r: r.query).values())
    assert len({r.query for r in records}) < len(records)  # the property is not trivially true
    overall = np.mean([r.label for r in records])
    for fold in range(4):
        fold_rows = [r for r, f in zip(records, folds) if f == fold]
        assert abs(np.mean([r.label for r in fold_rows]) - overall) < 0.08
        assert {r.language for r in fold_rows} == {r.language for r in records}


def test_random_split_does_leak_queries(demo):
    folds = assign_folds(demo["QI"], "random", 4, seed=0)
    assert any(len(f) > 1 for f in groups_per_fold(demo["QI"], folds, lambda r: r.query).values())


def test_category_aware_keeps_each_prefix_in_one_fold(demo):
    records = demo["QC"]
    for depth in (1, 2):
        folds = assign_folds(records, "category_aware", 3, seed=1, category_depth=depth)
        owners = groups_per_fold(records, folds, lambda r: category_prefix(r.target, depth))
        assert all(len(f) == 1 for f in owners.values()) and len(owners) > 3


def test_stratified_keeps_label_rate_and_seed_changes_assignment(demo):
    records = demo["QC"]
    labels = np.array([r.label for r in records])
    folds = assign_folds(records, "stratified", 5, seed=0)
    assert max(abs(labels[folds == k].mean() - labels.mean()) for k in range(5)) < 0.02
    assert not np.array_equal(folds, assign_folds(records, "stratified", 5, seed=1))


def test_impossible_splits_fail_with_a_sentence(demo):
    with pytest.raises(ConfigError, match="only QC rows"):
        assign_folds(demo["QI"], "category_aware", 3, seed=0)
    with pytest.raises(ConfigError, match="at least 2 folds"):
        assign_folds(demo["QC"], "stratified", 1, seed=0)
    with pytest.raises(ConfigError, match="not known"):
        assign_folds(demo["QC"], "by_moon_phase", 3, seed=0)
