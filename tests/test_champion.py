"""Issue 30, item 1: `relevance register --best` crowns only a run that learned and beats its floor, among runs of
one task and one data set, breaks ties by a stated rule, and says what it chose out of what.

The runs are written straight into a real MLflow store with the tags, params and metrics a training run logs
(training dozens of real runs for each case would take an hour); `tests/test_end_to_end.py` registers a trained one.
"""

import time

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from relevance import champion
from relevance.errors import RelevanceError


@pytest.fixture
def store(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_experiment("relevance")
    return tmp_path


def _run(
    f1: float,
    floor: float = 0.80,
    task: str = "QC",
    data: str = "taxonomy",
    learned=("true", "true"),
    status="FINISHED",
) -> str:
    """A parent training run with its final-stage folds, as the pipeline logs them."""
    with mlflow.start_run(tags={"relevance.level": "parent"}) as parent:
        mlflow.log_params({"task.code": task, "data.name": data, "data.dir": "None"})
        mlflow.log_metrics({"oof_best_f1": f1, "oof_all_positive_f1": floor})
        for value in learned:
            with mlflow.start_run(nested=True, tags={"relevance.level": "fold", "relevance.stage": "final"}):
                mlflow.set_tag("relevance.learned", value)
    if status != "FINISHED":
        MlflowClient().set_terminated(parent.info.run_id, status)
    time.sleep(0.01)  # distinct start times
    return parent.info.run_id


def test_a_run_that_did_not_learn_or_sits_at_its_floor_is_never_crowned(store):
    good = _run(0.85)
    _run(0.95, learned=("true", "false"))  # higher F1, but one fold learned nothing
    _run(0.90, floor=0.895)  # above its floor by less than 0.01
    _run(0.99, status="KILLED")
    chosen = champion.choose("relevance", "oof_best_f1", "relevance-qc")
    assert chosen.winner.run_id == good and chosen.considered == 3
    said = chosen.describe("relevance")
    assert "skipped 1 run(s): a fold did not learn (relevance.learned=false)" in said
    assert "skipped 1 run(s): F1 not 0.01 above its floor" in said
    assert f"best of 3 finished QC run(s) on taxonomy in experiment 'relevance' by oof_best_f1: {good}" in said


def test_no_run_fit_to_be_champion_is_refused_saying_why(store):
    _run(0.95, learned=("false", "false"))
    _run(0.80, floor=0.80)
    with pytest.raises(
        RelevanceError, match=r"none of the 2 finished QC runs on taxonomy may be a champion \(1 F1 not"
    ):
        champion.choose("relevance", "oof_best_f1", "relevance-qc")


def test_runs_of_another_task_or_data_set_never_compete(store):
    qc = _run(0.85)
    _run(0.97, task="QI")
    _run(0.99, data="demo")
    assert champion.choose("relevance", "oof_best_f1", "relevance-qc", data="taxonomy").winner.run_id == qc
    with pytest.raises(RelevanceError, match=r"several data sets \(demo, taxonomy\); choose one with --data"):
        champion.choose("relevance", "oof_best_f1", "relevance-qc")
    with pytest.raises(RelevanceError, match="several tasks"):
        champion.choose("relevance", "oof_best_f1", "my-model")


def test_the_registered_names_data_set_is_kept(store):
    from relevance import tracking

    first = _run(0.85)
    with mlflow.start_run(run_id=first):
        mlflow.log_text("x", "model/MLmodel")  # something to register
    tracking.register(f"runs:/{first}/model", "relevance-qc", "champion")
    _run(0.99, data="demo")  # better, on the synthetic demo: not a taxonomy champion
    later = _run(0.90)
    assert champion.choose("relevance", "oof_best_f1", "relevance-qc").winner.run_id == later


def test_a_tie_goes_to_the_earliest_run_and_is_said(store):
    first, second, third = _run(0.85), _run(0.85), _run(0.85)
    chosen = champion.choose("relevance", "oof_best_f1", "relevance-qc")
    assert chosen.winner.run_id == first and chosen.tied == [second, third]
    assert f"tie at 0.8500 with {second}, {third}: the earliest run wins" in chosen.describe("relevance")


def test_the_floor_follows_the_metric():
    assert champion.floor_metric("oof_best_f1") == "oof_all_positive_f1"
    assert champion.floor_metric("dev_f1") == "dev_all_positive_f1"
    assert champion.floor_metric("QC_oof_best_f1") == "QC_oof_all_positive_f1"
