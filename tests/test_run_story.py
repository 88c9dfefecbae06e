"""Issue 30, item 6: a failed or killed run says why in the MLflow UI, and two runs never share a name."""

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from relevance import interrupts, tracking
from relevance.errors import RelevanceError


@pytest.fixture
def store(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_experiment("relevance")
    return tmp_path


def test_a_failed_run_carries_its_one_line_reason_as_a_tag_and_its_description(store):
    with pytest.raises(RelevanceError), tracking.start_run(run_name="x") as run:
        raise RelevanceError("train.lr=-1 must be positive; set train.lr=1e-4.\nsecond line")
    ended = MlflowClient().get_run(run.info.run_id)
    assert ended.info.status == "FAILED"
    assert ended.data.tags["relevance.fail_reason"] == "train.lr=-1 must be positive; set train.lr=1e-4."
    assert ended.data.tags["mlflow.note.content"] == "**Failed**: train.lr=-1 must be positive; set train.lr=1e-4."
    with pytest.raises(ZeroDivisionError), tracking.start_run(run_name="y") as run:
        1 / 0  # noqa: B018 - a bug, not a user's mistake: the reason names the exception
    assert MlflowClient().get_run(run.info.run_id).data.tags["relevance.fail_reason"] == (
        "ZeroDivisionError: division by zero"
    )


def test_a_killed_run_says_it_was_interrupted_and_how_to_resume(store):
    with pytest.raises(interrupts.Interrupted), tracking.start_run(run_name="z") as run:
        raise interrupts.Interrupted("SIGTERM")
    ended = MlflowClient().get_run(run.info.run_id)
    assert ended.info.status == "KILLED"
    assert ended.data.tags["relevance.fail_reason"].startswith("interrupted (")
    assert "run the same command again to resume" in ended.data.tags["mlflow.note.content"]


def test_run_names_are_numbered_when_taken(store):
    assert tracking.unique_run_name("tiny-qc-query_group", "relevance") == "tiny-qc-query_group"
    for _ in range(2):
        with mlflow.start_run(run_name=tracking.unique_run_name("tiny-qc-query_group", "relevance")):
            pass
    with mlflow.start_run(run_name="tiny-qc-query_group-seed=1"):
        pass
    names = {
        r.info.run_name for r in MlflowClient().search_runs([mlflow.get_experiment_by_name("relevance").experiment_id])
    }
    assert {"tiny-qc-query_group", "tiny-qc-query_group-2"} <= names
    assert tracking.unique_run_name("tiny-qc-query_group", "relevance") == "tiny-qc-query_group-3"
    assert tracking.unique_run_name("anything", "no such experiment") == "anything"


def test_a_data_file_is_logged_as_a_local_dataset_without_mlflows_ambiguity_warning(store, recwarn):
    (store / "train_QC.txt").write_text('{"id": 1}\n')
    with mlflow.start_run() as run:
        tracking.log_datasets({("QC", "train"): store / "train_QC.txt"})
    assert not [w for w in recwarn if "interpreted in multiple ways" in str(w.message)]
    logged = MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs[0].dataset
    assert str(store / "train_QC.txt") in logged.source and logged.name == "train_QC.txt"
