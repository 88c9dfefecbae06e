"""Every fold learns, or the run says why: a trivially learnable signal is learned in every fold with the default
settings, a fold that learns nothing is named, and a run in which no fold learned fails without a model."""

import json
import math

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from relevance import build
from relevance.training import health
from tests.conftest import compose_train

RELEVANT = ["hats", "caps", "shoes", "boots", "lamps", "candles"]
OTHER = ["flour", "sugar", "phones", "cables", "pillows", "towels"]
QUERIES = ["casquette", "zapatos", "mehl", "telefon", "lampe", "sukienka"]


def write_signal_data(folder, rows: int = 192, seed: int = 0) -> None:
    """QC rows whose label is 1 exactly when the category path is made of words from RELEVANT: a signal that
    any model that reads its input learns."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(rows):
        label = int(rng.random() < 0.6)
        path = rng.choice(RELEVANT if label else OTHER, 2, replace=False)
        lines.append(
            {
                "id": i + 1,
                "task": "QC",
                "language": ["en", "fr", "es"][i % 3],
                "origin_query": str(rng.choice(QUERIES)),
                "category_path": ",".join(map(str, path)),
                "label": label,
            }
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train_QC.txt").write_text("\n".join(json.dumps(line) for line in lines) + "\n")


def _fold_runs(summary):
    client = MlflowClient()
    parent = client.get_run(summary["run_id"])
    return client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{summary['run_id']}'")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_trivial_signal_is_learned_in_every_fold_with_defaults(tmp_path, cache_dir, seed):
    write_signal_data(tmp_path / "data", rows=480, seed=seed)
    cfg = compose_train(
        [
            "backbone=tiny",
            "data=competition",
            f"data.dir={tmp_path / 'data'}",
            f"seed={seed}",
            "tracking.log_model=false",
            "train.require_learning=true",
        ],
        tmp_path,
        cache_dir,
    )
    summary = build.train(cfg)
    folds = _fold_runs(summary)
    assert len(folds) == cfg.split.n_folds
    for run in folds:
        assert run.data.tags["relevance.learned"] == "true", run.info.run_name
        assert run.data.metrics["train_loss_final"] < 0.7 * run.data.metrics["train_loss_constant_guess"]
        assert run.data.metrics["best_f1"] > 0.85  # the all-positive floor is about 0.75
    assert summary["oof_best_f1"] > summary["oof_all_positive_f1"] + 0.15


def test_a_run_in_which_no_fold_learned_fails_and_logs_no_model(tmp_path, cache_dir):
    write_signal_data(tmp_path / "data")
    cfg = compose_train(
        [
            "backbone=tiny",
            "data=competition",
            f"data.dir={tmp_path / 'data'}",
            "train.lr=1e-12",
            "train.head_lr=1e-12",
            "train.require_learning=true",
        ],
        tmp_path,
        cache_dir,
    )
    with pytest.raises(health.TrainingDegenerate, match=r"no fold learned .*fold 1/\d did not learn"):
        build.train(cfg)
    client = MlflowClient(cfg.tracking.uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`relevance.level` = 'parent'")
    assert parent.info.status == "FAILED"
    assert "relevance.model_uri" not in parent.data.tags
    folds = client.search_runs([experiment.experiment_id], "tags.`relevance.level` = 'fold'")
    assert folds and all(run.data.tags["relevance.learned"] == "false" for run in folds)


def test_fold_health_names_the_fold_and_the_reason():
    labels = np.array([1, 1, 0, 1, 0, 1])
    guess = health.constant_guess_loss(labels)
    assert math.isclose(guess, -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)))
    assert health.constant_guess_loss(np.ones(4)) == 0.0
    stuck = health.FoldHealth("fold 1", final_loss=0.694, guess_loss=guess, score_std=0.2)
    flat = health.FoldHealth("fold 2", final_loss=0.1, guess_loss=guess, score_std=0.001)
    fine = health.FoldHealth("fold 3", final_loss=0.2, guess_loss=guess, score_std=0.3)
    assert stuck.degenerate and "fold 1 did not learn: its training loss ended at 0.694" in stuck.describe()
    assert flat.degenerate and "spread only 0.0010" in flat.describe()
    assert not fine.degenerate and not fine.suspect
    slow = health.FoldHealth("fold 4", final_loss=0.62, guess_loss=guess, score_std=0.1, heldout_gain=0.2)
    assert slow.suspect and not slow.degenerate  # a stuck-looking loss, but it ranks held-out rows well
    assert "fold 4 learned slowly" in slow.describe() and "+0.200 over the floor" in slow.describe()
    health.check_run([stuck, slow])  # warnings, not a failure
    health.check_run([stuck, fine])  # one fold of two: a warning, not a failure
    with pytest.raises(health.TrainingDegenerate, match="no fold learned"):
        health.check_run([stuck, flat])


def test_warning_names_the_fold(caplog):
    with caplog.at_level("WARNING", logger="relevance.training.health"):
        health.warn_if_suspect(health.FoldHealth("fold 1", 0.69, 0.64, 0.2))
    assert "fold 1 did not learn" in caplog.text and "train.lr" in caplog.text
