"""The tasks' one home: each kind a model can be trained for answers for itself (its parts, how its metrics are
named, the rows a client sends), so a new task is one object plus one YAML file."""

import pytest

from relevance.serving.logged_model import input_example, signature
from relevance.tasks import JOINT, KINDS, QC, QI, TASKS, task_kind
from tests.conftest import ROOT


def test_every_kind_has_its_config_file_and_is_found_by_code():
    assert set(KINDS) == {"QC", "QI", "JOINT"} and set(TASKS) == {"QC", "QI"}
    for code, kind in KINDS.items():
        assert task_kind(code.lower()) is kind and (ROOT / "conf" / "task" / f"{code.lower()}.yaml").is_file()
    with pytest.raises(KeyError):
        task_kind("QX")


def test_a_joint_task_is_its_parts():
    assert JOINT.parts == (QC, QI) and QC.parts == (QC,)
    assert JOINT.rows_name_their_task and not QC.rows_name_their_task
    assert [JOINT.metric_prefix(p.code) for p in JOINT.parts] == ["qc_", "qi_"] and QI.metric_prefix("QI") == ""
    assert JOINT.target_fields == ("category_path", "item_title") and QI.target_fields == ("item_title",)
    assert {QC.other, QI.other, JOINT.other} == {"QI", "QC", None}


@pytest.mark.parametrize("code", sorted(KINDS))
def test_each_kind_gives_rows_a_client_can_send_with_its_own_columns(code):
    kind = task_kind(code)
    frame = input_example(code)
    columns = signature(code).inputs.input_names()
    assert set(frame.columns) <= set(columns) and set(kind.target_fields) <= set(frame.columns)
    assert set(frame["task"]) == {part.code for part in kind.parts} and len(frame) == 2
    for part in kind.parts:
        row = frame[frame["task"] == part.code].iloc[0]
        assert isinstance(row[part.target_field], str) and row["origin_query"]
