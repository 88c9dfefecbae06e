"""Issue 29, item 2: a bundle is checked when it loads; a damaged, edited or incomplete one is refused in one
sentence naming the field (or folder) and the file, before any weight loads."""

import json

import pytest

from relevance.errors import RelevanceError
from relevance.serving.bundle import BUNDLE_FILE, BUNDLE_VERSION, ModelBundle


@pytest.fixture
def saved(tmp_path):
    """A two-fold bundle with adapter files (bytes standing in for weights: nothing here loads them)."""
    for fold in ("fold_0", "fold_1"):
        weights = tmp_path / "adapters" / fold
        weights.mkdir(parents=True)
        (weights / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/base"}))
        (weights / "adapter_model.safetensors").write_bytes(fold.encode() * 100)
    ModelBundle(
        task="QC",
        backbone={"name": "tiny", "hub_id": "org/base"},
        head={"name": "classifier"},
        templates={"QC": "{query} {target}"},
        encoder=False,
        lowercase=True,
        augmentation={},
        translator={},
        max_length=64,
        eval_batch_size=8,
        folds=["fold_0", "fold_1"],
        thresholds={"QC": 0.4},
        language_thresholds={"QC": {"en": 0.5}},
        positive_rates={"QC": 0.6},
    ).save(tmp_path)
    return tmp_path


def _edit(folder, **changes):
    path = folder / BUNDLE_FILE
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


def test_a_bundle_as_saved_loads_with_the_digest_of_each_fold(saved):
    bundle = ModelBundle.load(saved)
    assert set(bundle.digests) == {"fold_0", "fold_1"} and len(set(bundle.digests.values())) == 2
    assert bundle.decision_thresholds("refit") == {"QC": 0.4}  # no refit thresholds: the folds'


def test_a_foreign_version_or_a_missing_field_gets_one_sentence(saved):
    values = json.loads((saved / BUNDLE_FILE).read_text())
    for version, fix in ((1, "retrain it"), (BUNDLE_VERSION + 1, "upgrade relevance")):
        _edit(saved, version=version)
        with pytest.raises(RelevanceError, match=f"version {version} model bundle .* {fix}"):
            ModelBundle.load(saved)
    without_order = {k: v for k, v in values.items() if k != "category_order"}  # written before the option
    (saved / BUNDLE_FILE).write_text(json.dumps(without_order))
    assert ModelBundle.load(saved).category_order == "root_first"
    (saved / BUNDLE_FILE).write_text(json.dumps({k: v for k, v in values.items() if k != "thresholds"}))
    with pytest.raises(RelevanceError, match="missing thresholds"):
        ModelBundle.load(saved)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"thresholds": {"QC": 5.0}}, "`thresholds` holds {'QC': 5.0}, outside [0, 1]"),
        ({"language_thresholds": {"QC": {"en": -0.1}}}, "`language_thresholds.QC` holds {'en': -0.1}"),
        ({"positive_rates": {"QC": 1.5}}, "`positive_rates` holds {'QC': 1.5}"),
        ({"thresholds": {"QI": 0.4}}, "`thresholds` covers ['QI'], not ['QC']"),
        ({"max_length": "64"}, "`max_length` is '64', not <class 'int'>"),
        ({"max_length": 0}, "`max_length` is under 1"),
        ({"encoder": "no"}, "`encoder` is 'no', not <class 'bool'>"),
        ({"folds": "fold_0"}, "`folds` is 'fold_0', not list[str]"),
        ({"folds": []}, "`folds` lists no fold"),
        ({"task": "XX"}, "`task` 'XX' is not QC, QI or JOINT"),
        ({"templates": {"QX": "{query}"}}, "`templates` names the tasks ['QX']"),
        ({"unseen_threshold": "median"}, "`unseen_threshold` is not shared or matched_rate"),
        ({"refit": 3}, "`refit` is 3"),
        ({"head": {"prompt": "x"}}, "`head` has no name"),
        ({"precision": "int4"}, "`precision` is not fp32 or int8"),
        ({"precision": "int8"}, "`precision_check` is empty for int8"),
    ],
)
def test_an_edited_field_is_refused_naming_the_field_and_the_file(saved, changes, words):
    _edit(saved, **changes)
    with pytest.raises(RelevanceError) as caught:
        ModelBundle.load(saved)
    said = str(caught.value)
    assert words in said and str(saved / BUNDLE_FILE) in said and "\n" not in said


def test_a_truncated_description_is_called_damaged(saved):
    path = saved / BUNDLE_FILE
    path.write_text(path.read_text()[:200])
    with pytest.raises(RelevanceError, match=f"{path} is damaged"):
        ModelBundle.load(saved)
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(RelevanceError, match="is damaged"):
        ModelBundle.load(saved)
    path.write_text("[1, 2]")
    with pytest.raises(RelevanceError, match="is damaged"):
        ModelBundle.load(saved)


def test_a_missing_fold_a_changed_weight_file_and_another_base_are_refused(saved):
    weights = saved / "adapters" / "fold_1" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])  # a copy cut short
    with pytest.raises(RelevanceError, match="fold_1 does not hold the weights that were logged"):
        ModelBundle.load(saved)
    for path in weights.parent.iterdir():
        path.unlink()
    weights.parent.rmdir()
    with pytest.raises(RelevanceError, match="lists `fold_1` but .*fold_1 is missing; copy the whole model folder"):
        ModelBundle.load(saved)
    _edit(saved, folds=["fold_0"], backbone={"name": "tiny", "hub_id": "org/other"})
    with pytest.raises(RelevanceError, match="trained on 'org/base' but .* names the base 'org/other'"):
        ModelBundle.load(saved)


def test_a_bundle_logged_before_digests_loads_with_a_warning(saved, caplog):
    _edit(saved, digests={})
    assert ModelBundle.load(saved).folds == ["fold_0", "fold_1"]
    assert "records no digests" in caplog.text
